/*
 * Inference of a segmentation model on one 2-D slice: preprocessing,
 * padding to the network's stride, class probabilities back to bytes.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "covct/nn.h"
#include "nn/nn_int.h"

void covct_nn_pixels_to_input(const uint8_t *pixels, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)pixels[i] * (1.0f / 255.0f);
}

/* One pass of the network over x (1 x 1 x ph x pw), its class
 * probabilities added to prob (0 infection, 1 ground glass, 2
 * consolidation, each ph x pw) times `weight`.  With mirror_w > 0, the
 * first mirror_w columns of x are the left-right mirror of the slice, and
 * the maps are mirrored back. */
static covct_rc add_probs(covct_nn_model *m, const covct_tensor *x,
                          uint32_t ph, uint32_t pw, uint32_t mirror_w,
                          float weight, float *prob, covct_error *err)
{
    /* Logits: through the inference plan on the fast backend (made on
     * first use and kept for this input size), else the graph. */
    const float *logits = NULL;
    float *zbuf = NULL;
    int zc = 0;
    covct_rc rc = COVCT_OK;
    if (m->graph->backend == COVCT_NN_FAST) {
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
            rc = covct_nn_plan_run(m->plan, x->data, zbuf, err);
        logits = zbuf;
    } else {
        covct_nn_set_training(m->graph, 0);
        rc = covct_nn_forward(m->graph, x, err);
        if (rc == COVCT_OK) {
            const covct_tensor *z = covct_nn_value(m->graph, m->out_slot);
            logits = z->data;
            zc = z->c;
        }
    }
    if (rc != COVCT_OK) {
        covct_free(zbuf);
        return rc;
    }
    int K = zc < 16 ? zc : 16; /* classes <= 16 by the model's check */
    size_t plane = (size_t)ph * pw;
    for (size_t p = 0, col = 0; p < plane; p++, col = col + 1 < pw ? col + 1 : 0) {
        float mx = logits[p], e[16];
        e[0] = e[1] = e[2] = 0.0f;
        for (int k = 1; k < K; k++)
            if (logits[k * plane + p] > mx)
                mx = logits[k * plane + p];
        float sum = 0;
        for (int k = 0; k < K; k++)
            sum += e[k] = expf(logits[k * plane + p] - mx);
        float inv = weight / sum;
        size_t q = col < mirror_w ? p - col + (mirror_w - 1 - col) : p;
        prob[q] += weight - e[0] * inv;
        prob[plane + q] += K > 2 ? e[1] * inv : 0.0f;
        prob[2 * plane + q] += K > 2 ? e[2] * inv : 0.0f;
    }
    covct_free(zbuf);
    return COVCT_OK;
}

void covct_nn_grid(const covct_nn_model *m, uint32_t width, uint32_t height,
                   uint32_t *gw, uint32_t *gh)
{
    uint32_t mult = 1u << (m->cfg.depth - 1);
    if (m->input_size <= 0) {
        *gw = (width + mult - 1) / mult * mult;
        *gh = (height + mult - 1) / mult * mult;
        return;
    }
    uint32_t S = (uint32_t)m->input_size;
    *gw = *gh = S;
    if (!width || !height || width == height)
        return;
    /* The short side as the square holds it and a margin of black on
     * either side; the band is cut from the square in steps of 2^depth
     * (twice the size of a cell of the deepest level, 2^(depth-1)), so
     * that it starts on a whole cell: the cells, and the blocks they paint
     * back up through the decoder, stay where they lie in the square.
     * Off that grid the maps shifted (up to 195 of 255 in a region; 1.7 %
     * of P001's lesion voxels changed).  On it, the margin decides: at
     * 16 px COVID-SemiSeg's narrowest slice (52.jpg) had 0.8 % of its
     * lesion pixels flip, at 24 px 0.03 %, at 32 px none (test_nn_plan);
     * at 24 px P001, cap001 and normal001 keep their lesions voxel for
     * voxel (at 16 px all but 4 of 271,596). */
    uint32_t lo = width < height ? width : height;
    uint32_t hi = width < height ? height : width;
    uint32_t need =
        (uint32_t)ceil((double)lo * S / hi) + 2 * COVCT_NN_GRID_MARGIN;
    if (need >= S)
        return;
    uint32_t cut = (S - need) / (2 * mult) * (2 * mult);
    *(width < height ? gw : gh) = S - cut;
}

covct_rc covct_nn_segment_slice(covct_nn_model *m, const uint8_t *pixels,
                                uint32_t width, uint32_t height,
                                uint8_t *infection, uint8_t *ggo,
                                uint8_t *consolidation, covct_error *err)
{
    return covct_nn_segment_slice_tta(m, pixels, width, height, 0, infection,
                                      ggo, consolidation, err);
}

covct_rc covct_nn_segment_slice_tta(covct_nn_model *m, const uint8_t *pixels,
                                    uint32_t width, uint32_t height,
                                    unsigned tta, uint8_t *infection,
                                    uint8_t *ggo, uint8_t *consolidation,
                                    covct_error *err)
{
    return covct_nn_segment_slice_ens(&m, 1, pixels, width, height, tta,
                                      infection, ggo, consolidation, err);
}

covct_rc covct_nn_segment_slice_ens(covct_nn_model *const *models, int n_models,
                                    const uint8_t *pixels, uint32_t width,
                                    uint32_t height, unsigned tta,
                                    uint8_t *infection, uint8_t *ggo,
                                    uint8_t *consolidation, covct_error *err)
{
    if (!models || n_models < 1 || !pixels || !width || !height)
        return COVCT_ERR(err, COVCT_ERR_ARG, "segment: no model or no image");
    for (int k = 0; k < n_models; k++)
        if (!models[k] || !models[k]->graph)
            return COVCT_ERR(err, COVCT_ERR_ARG, "segment: network %d of %d "
                                                 "is not loaded",
                             k + 1, n_models);
    covct_nn_model *m = models[0];
    if (m->cfg.in_channels != 1)
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "segment: the model takes %d channels, slices have "
                         "one",
                         m->cfg.in_channels);
    /* Every network of an ensemble sees the same input grid. */
    for (int k = 1; k < n_models; k++)
        if (models[k]->cfg.in_channels != 1 ||
            models[k]->input_size != m->input_size ||
            models[k]->cfg.depth != m->cfg.depth)
            return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                             "segment: network %d of the ensemble differs from "
                             "the first in its input (%d channel(s), %d px, "
                             "depth %d against 1, %d px, depth %d)",
                             k + 1, models[k]->cfg.in_channels,
                             models[k]->input_size, models[k]->cfg.depth,
                             m->input_size, m->cfg.depth);
    if (width > 16384 || height > 16384)
        return COVCT_ERR(err, COVCT_ERR_LIMIT,
                         "segment: %ux%u image is too large (16384 at most)",
                         (unsigned)width, (unsigned)height);
    if (tta & ~(unsigned)(COVCT_NN_TTA_FLIP | COVCT_NN_GRID_TIGHT))
        return COVCT_ERR(err, COVCT_ERR_ARG, "segment: unknown flags 0x%x",
                         tta);
    uint32_t mult = 1u << (m->cfg.depth - 1);
    int fixed = m->input_size > 0;
    uint32_t pw = fixed ? (uint32_t)m->input_size
                        : (width + mult - 1) / mult * mult;
    uint32_t ph = fixed ? (uint32_t)m->input_size
                        : (height + mult - 1) / mult * mult;
    if (fixed && (tta & COVCT_NN_GRID_TIGHT))
        covct_nn_grid(m, width, height, &pw, &ph);
    covct_tensor x = {0};
    covct_rc rc = covct_tensor_alloc(&x, 1, 1, (int)ph, (int)pw, err);
    if (rc != COVCT_OK)
        return rc;
    if (fixed) {
        covct_nn_augment none;
        memset(&none, 0, sizeof none);
        /* The square, then (tight grid) its centred band. */
        uint32_t S = (uint32_t)m->input_size;
        float *sq = pw == S && ph == S
                        ? x.data
                        : covct_malloc((size_t)S * S * sizeof *sq);
        if (!sq)
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "segment: out of memory");
        else
            rc = covct_nn_augment_sample(&none, 0, pixels, NULL, width,
                                         height, m->input_size, sq, NULL,
                                         err);
        if (sq && sq != x.data) {
            uint32_t r0 = (S - ph) / 2, c0 = (S - pw) / 2;
            for (uint32_t y = 0; y < ph; y++)
                memcpy(x.data + (size_t)y * pw,
                       sq + (size_t)(r0 + y) * S + c0, pw * sizeof *sq);
            covct_free(sq);
        }
    } else {
        for (uint32_t y = 0; y < height; y++)
            covct_nn_pixels_to_input(pixels + (size_t)y * width, width,
                                     x.data + (size_t)y * pw);
    }
    size_t plane = (size_t)ph * pw;
    /* Class probabilities on the network's grid: 0 infection, 1 ground
     * glass, 2 consolidation (float: the outputs are bytes). */
    float *prob = covct_calloc(3 * plane, sizeof *prob);
    /* Bilinear taps of the inverse square mapping, separable: per output
     * column the grid column and weight, per row the grid row. */
    int32_t *tu = covct_malloc(((size_t)width + height) * sizeof *tu);
    float *fu = covct_malloc(((size_t)width + height) * sizeof *fu);
    if (rc == COVCT_OK && (!prob || !tu || !fu))
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "segment: out of memory");
    bool flip = tta & COVCT_NN_TTA_FLIP;
    /* Each pass's probabilities weigh 1 / (networks x passes): the maps
     * are the mean over the ensemble and the mirrored pass. */
    float w = 1.0f / (float)n_models / (flip ? 2.0f : 1.0f);
    for (int k = 0; k < n_models && rc == COVCT_OK; k++)
        rc = add_probs(models[k], &x, ph, pw, 0, w, prob, err);
    if (rc == COVCT_OK && flip) {
        /* The mirrored slice: on the square grid the slice sits centred,
         * so the whole row is mirrored; padded, only its own columns. */
        uint32_t mw = fixed ? pw : width;
        for (uint32_t y = 0; y < ph; y++) {
            float *row = x.data + (size_t)y * pw;
            for (uint32_t a = 0, b = mw - 1; a < b; a++, b--) {
                float t = row[a];
                row[a] = row[b];
                row[b] = t;
            }
        }
        for (int k = 0; k < n_models && rc == COVCT_OK; k++)
            rc = add_probs(models[k], &x, ph, pw, mw, w, prob, err);
    }
    covct_tensor_free(&x);
    if (rc != COVCT_OK) {
        covct_free(tu);
        covct_free(fu);
        covct_free(prob);
        return rc;
    }
    /* Back to the slice's pixels: the same grid, or the inverse of the
     * square mapping sampled bilinearly (taps clamped to the grid). */
    double fit = (double)(width > height ? width : height) /
                 (fixed ? (double)m->input_size : 1.0);
    int32_t *tw = tu + width;
    float *fw = fu + width;
    for (uint32_t t = 0; t < width + height; t++) {
        bool col = t < width;
        double c_out = ((col ? pw : ph) - 1) / 2.0;
        double q = fixed ? c_out + ((col ? t : t - width) -
                                    ((col ? width : height) - 1) / 2.0) /
                                       fit
                         : (double)(col ? t : t - width);
        uint32_t n = col ? pw : ph;
        double f = floor(q);
        int32_t i0 = (int32_t)f;
        float w1 = (float)(q - f);
        if (i0 < 0)
            i0 = 0, w1 = 0;
        if (i0 >= (int32_t)n - 1)
            i0 = (int32_t)n - 1, w1 = 0;
        (col ? tu : tw)[col ? t : t - width] = i0;
        (col ? fu : fw)[col ? t : t - width] = w1;
    }
    uint8_t *outs[3] = {infection, ggo, consolidation};
    for (int c = 0; c < 3; c++) {
        if (!outs[c])
            continue;
        const float *pm = prob + (size_t)c * plane;
        for (uint32_t y = 0; y < height; y++) {
            const float *r0 = pm + (size_t)tw[y] * pw;
            const float *r1 = fw[y] > 0 ? r0 + pw : r0;
            float b = fw[y], a = 1.0f - b;
            uint8_t *o = outs[c] + (size_t)y * width;
            for (uint32_t xo = 0; xo < width; xo++) {
                int32_t u = tu[xo];
                float g = fu[xo];
                int32_t u1 = g > 0 ? u + 1 : u;
                float v = a * ((1.0f - g) * r0[u] + g * r0[u1]) +
                          b * ((1.0f - g) * r1[u] + g * r1[u1]);
                float q = floorf(v * 255.0f + 0.5f);
                o[xo] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
            }
        }
    }
    covct_free(tu);
    covct_free(fu);
    covct_free(prob);
    return COVCT_OK;
}
