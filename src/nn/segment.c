/*
 * Inference of a segmentation model on one 2-D slice: preprocessing,
 * padding to the network's stride, class probabilities back to bytes.
 */
#include <math.h>
#include <string.h>

#include "covct/nn.h"
#include "nn/nn_int.h"

void covct_nn_pixels_to_input(const uint8_t *pixels, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)pixels[i] * (1.0f / 255.0f);
}

static uint8_t to_byte(double p)
{
    double v = floor(p * 255.0 + 0.5);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

covct_rc covct_nn_segment_slice(covct_nn_model *m, const uint8_t *pixels,
                                uint32_t width, uint32_t height,
                                uint8_t *infection, uint8_t *ggo,
                                uint8_t *consolidation, covct_error *err)
{
    if (!m || !m->graph || !pixels || !width || !height)
        return COVCT_ERR(err, COVCT_ERR_ARG, "segment: no model or no image");
    if (m->cfg.in_channels != 1)
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "segment: the model takes %d channels, slices have "
                         "one",
                         m->cfg.in_channels);
    if (width > 16384 || height > 16384)
        return COVCT_ERR(err, COVCT_ERR_LIMIT,
                         "segment: %ux%u image is too large (16384 at most)",
                         (unsigned)width, (unsigned)height);
    uint32_t mult = 1u << (m->cfg.depth - 1);
    int fixed = m->input_size > 0;
    uint32_t pw = fixed ? (uint32_t)m->input_size
                        : (width + mult - 1) / mult * mult;
    uint32_t ph = fixed ? (uint32_t)m->input_size
                        : (height + mult - 1) / mult * mult;
    covct_tensor x = {0};
    covct_rc rc = covct_tensor_alloc(&x, 1, 1, (int)ph, (int)pw, err);
    if (rc != COVCT_OK)
        return rc;
    if (fixed) {
        covct_nn_augment none;
        memset(&none, 0, sizeof none);
        rc = covct_nn_augment_sample(&none, 0, pixels, NULL, width, height,
                                     m->input_size, x.data, NULL, err);
    } else {
        for (uint32_t y = 0; y < height; y++)
            covct_nn_pixels_to_input(pixels + (size_t)y * width, width,
                                     x.data + (size_t)y * pw);
    }
    /* Logits: through the inference plan on the fast backend (made on
     * first use and kept for this input size), else the graph. */
    const float *logits = NULL;
    float *zbuf = NULL;
    int zc = 0;
    if (rc == COVCT_OK && m->graph->backend == COVCT_NN_FAST) {
        int pn = 0, pph = 0, ppw = 0;
        if (m->plan)
            covct_nn_plan_shape(m->plan, &pn, &pph, &ppw, NULL, NULL, NULL);
        if (m->plan && (pn != 1 || pph != (int)ph || ppw != (int)pw))
            covct_nn_model_forget_plan(m);
        if (!m->plan)
            rc = covct_nn_plan_new(m->graph, m->out_slot, 1, (int)ph, (int)pw,
                                   &m->plan, err);
        int oh = 0, ow = 0;
        if (rc == COVCT_OK)
            covct_nn_plan_shape(m->plan, NULL, NULL, NULL, &zc, &oh, &ow);
        if (rc == COVCT_OK && (oh != (int)ph || ow != (int)pw))
            rc = COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                           "segment: the network's output is %dx%d for a "
                           "%ux%u input",
                           oh, ow, (unsigned)pw, (unsigned)ph);
        if (rc == COVCT_OK &&
            !(zbuf = covct_malloc((size_t)zc * ph * pw * sizeof *zbuf)))
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "segment: out of memory");
        if (rc == COVCT_OK)
            rc = covct_nn_plan_run(m->plan, x.data, zbuf, err);
        logits = zbuf;
    } else if (rc == COVCT_OK) {
        covct_nn_set_training(m->graph, 0);
        rc = covct_nn_forward(m->graph, &x, err);
        if (rc == COVCT_OK) {
            const covct_tensor *z = covct_nn_value(m->graph, m->out_slot);
            logits = z->data;
            zc = z->c;
        }
    }
    covct_tensor_free(&x);
    if (rc != COVCT_OK) {
        covct_free(zbuf);
        return rc;
    }
    int K = zc < 16 ? zc : 16; /* classes <= 16 by the model's check */
    size_t plane = (size_t)ph * pw;
    /* Class probabilities on the network's grid: 0 infection, 1 ground
     * glass, 2 consolidation. */
    float *prob = covct_malloc(3 * plane * sizeof *prob);
    if (!prob) {
        covct_free(zbuf);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "segment: out of memory");
    }
    for (size_t p = 0; p < plane; p++) {
        double mx = logits[p], sum = 0, e[16] = {0};
        for (int k = 1; k < K; k++)
            if (logits[k * plane + p] > mx)
                mx = logits[k * plane + p];
        for (int k = 0; k < K; k++)
            sum += e[k] = exp(logits[k * plane + p] - mx);
        prob[p] = (float)(1.0 - e[0] / sum);
        prob[plane + p] = K > 2 ? (float)(e[1] / sum) : 0.0f;
        prob[2 * plane + p] = K > 2 ? (float)(e[2] / sum) : 0.0f;
    }
    /* Back to the slice's pixels: the same grid, or the inverse of the
     * square mapping sampled bilinearly. */
    double fit = (double)(width > height ? width : height) / (fixed ? pw : 1);
    double c_out = (pw - 1) / 2.0, cx = (width - 1) / 2.0,
           cy = (height - 1) / 2.0;
    uint8_t *outs[3] = {infection, ggo, consolidation};
    for (uint32_t y = 0; y < height; y++)
        for (uint32_t xx = 0; xx < width; xx++) {
            size_t o = (size_t)y * width + xx;
            for (int c = 0; c < 3; c++) {
                if (!outs[c])
                    continue;
                const float *pm = prob + (size_t)c * plane;
                double v;
                if (!fixed) {
                    v = pm[(size_t)y * pw + xx];
                } else {
                    double u = c_out + (xx - cx) / fit,
                           w = c_out + (y - cy) / fit;
                    int u0 = (int)floor(u), w0 = (int)floor(w);
                    double fu = u - u0, fw = w - w0;
                    v = 0;
                    for (int j = 0; j < 2; j++)
                        for (int i = 0; i < 2; i++) {
                            int uu = u0 + i, ww = w0 + j;
                            uu = uu < 0 ? 0 : uu >= (int)pw ? (int)pw - 1 : uu;
                            ww = ww < 0 ? 0 : ww >= (int)ph ? (int)ph - 1 : ww;
                            v += (i ? fu : 1 - fu) * (j ? fw : 1 - fw) *
                                 pm[(size_t)ww * pw + uu];
                        }
                }
                outs[c][o] = to_byte(v);
            }
        }
    covct_free(prob);
    covct_free(zbuf);
    return COVCT_OK;
}
