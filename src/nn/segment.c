/*
 * Inference of a segmentation model on one 2-D slice: preprocessing,
 * padding to the network's stride, class probabilities back to bytes.
 */
#include <math.h>
#include <string.h>

#include "covct/nn.h"

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
    uint32_t pw = (width + mult - 1) / mult * mult;
    uint32_t ph = (height + mult - 1) / mult * mult;
    covct_tensor x = {0};
    covct_rc rc = covct_tensor_alloc(&x, 1, 1, (int)ph, (int)pw, err);
    if (rc != COVCT_OK)
        return rc;
    for (uint32_t y = 0; y < height; y++)
        covct_nn_pixels_to_input(pixels + (size_t)y * width, width,
                                 x.data + (size_t)y * pw);
    covct_nn_set_training(m->graph, 0);
    rc = covct_nn_forward(m->graph, &x, err);
    covct_tensor_free(&x);
    if (rc != COVCT_OK)
        return rc;
    const covct_tensor *z = covct_nn_value(m->graph, m->out_slot);
    int K = z->c;
    size_t plane = (size_t)ph * pw;
    for (uint32_t y = 0; y < height; y++)
        for (uint32_t xx = 0; xx < width; xx++) {
            size_t p = (size_t)y * pw + xx, o = (size_t)y * width + xx;
            double mx = z->data[p], sum = 0, e[16];
            for (int k = 1; k < K; k++)
                if (z->data[k * plane + p] > mx)
                    mx = z->data[k * plane + p];
            for (int k = 0; k < K; k++)
                sum += e[k] = exp(z->data[k * plane + p] - mx);
            if (infection)
                infection[o] = to_byte(1.0 - e[0] / sum);
            if (ggo)
                ggo[o] = K > 2 ? to_byte(e[1] / sum) : 0;
            if (consolidation)
                consolidation[o] = K > 2 ? to_byte(e[2] / sum) : 0;
        }
    return COVCT_OK;
}
