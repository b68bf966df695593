/*
 * Lesions by the network (docs/internals/lesions-nn.md): every axial slice
 * that holds lung is turned into the kind of image the lesion network was
 * trained on (COVID-SemiSeg: windowed 8-bit slices cropped to the body,
 * stored transposed against the radiological display) and segmented; the
 * network's ground-glass and consolidation probabilities are kept inside
 * the lung mask.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "covct/analysis.h"
#include "covct/image.h"
#include "covct/nn.h"

/* The HU window that maps CT onto the training slices' grey levels
 * (docs/internals/hu-window.md): v = (HU - LO) * 255 / WIDTH. */
#define WIN_LO (-1075.0)
#define WIN_WIDTH 1350.0

static uint8_t window(const covct_volume *ct, size_t i)
{
    double v = ct->dtype == COVCT_DTYPE_INT16
                   ? ((const int16_t *)ct->data)[i]
                   : ((const float *)ct->data)[i];
    if (ct->outside && ct->outside[i])
        v = -1024.0;
    double g = floor((v - WIN_LO) * 255.0 / WIN_WIDTH + 0.5);
    return (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g);
}

void covct_lesions_nn_options_default(covct_lesions_nn_options *o)
{
    memset(o, 0, sizeof *o);
    o->threshold = 128;
}

covct_rc covct_lesions_segment_nn(const covct_volume *ct, covct_seg *seg,
                                  covct_nn_model *m,
                                  const covct_lesions_nn_options *opt,
                                  covct_error *err)
{
    if (!ct || !seg || !ct->data || !seg->lungs || !seg->lesions ||
        !seg->body || !m || !m->graph)
        return COVCT_ERR(err, COVCT_ERR_ARG, "lesions: missing input");
    if (seg->nx != ct->nx || seg->ny != ct->ny || seg->nz != ct->nz)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "lesions: segmentation and CT differ in size");
    covct_lesions_nn_options defaults;
    if (!opt) {
        covct_lesions_nn_options_default(&defaults);
        opt = &defaults;
    }
    covct_axes ax;
    covct_volume_axes(ct, &ax);
    if (ax.axis[2] != 2)
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "lesions: the network reads axial slices; this "
                         "series is not axial");
    const uint32_t nx = ct->nx, ny = ct->ny, nz = ct->nz;
    const size_t plane = (size_t)nx * ny;
    /* Image rows follow patient x (right to left), columns patient y
     * (anterior to posterior): for row r and column c, the voxel steps
     * are (dr, dc) from the slice origin (r0, c0). */
    const uint32_t n_along[2] = {nx, ny};
    const int ar = ax.axis[0], ac = ax.axis[1]; /* voxel axis 0 (i) or 1 */
    const uint32_t rows_n = n_along[ar], cols_n = n_along[ac];
    const ptrdiff_t stride[2] = {1, (ptrdiff_t)nx};

    uint8_t *img = covct_malloc(plane), *inf = covct_malloc(plane),
            *ggo = covct_malloc(plane), *con = covct_malloc(plane);
    if (!img || !inf || !ggo || !con) {
        covct_free(img);
        covct_free(inf);
        covct_free(ggo);
        covct_free(con);
        return COVCT_ERR(err, COVCT_ERR_NOMEM,
                         "lesions: out of memory for slice buffers");
    }
    covct_nn_set_backend(m->graph, COVCT_NN_FAST);
    memset(seg->lesions, 0, plane * nz);
    covct_rc rc = COVCT_OK;
    /* COVCT_LESIONS_NN_DUMP=DIR writes each slice as the network got it
     * and its infection map (docs/internals/lesions-nn.md). */
    const char *dump = getenv("COVCT_LESIONS_NN_DUMP");
    double t_net = 0, t_all = covct_now();
    unsigned n_slices = 0;
    for (uint32_t z = 0; z < nz && rc == COVCT_OK; z++) {
        const uint8_t *lung = seg->lungs + (size_t)z * plane;
        const uint8_t *body = seg->body + (size_t)z * plane;
        /* Body and lung extent in image coordinates. */
        uint32_t r0 = UINT32_MAX, r1 = 0, c0 = UINT32_MAX, c1 = 0;
        bool any_lung = false;
        for (uint32_t j = 0; j < ny; j++)
            for (uint32_t i = 0; i < nx; i++) {
                size_t p = (size_t)j * nx + i;
                if (!body[p] && !lung[p])
                    continue;
                any_lung |= lung[p] != 0;
                uint32_t vi[2] = {i, j};
                uint32_t r = ax.sign[0] > 0 ? vi[ar] : rows_n - 1 - vi[ar];
                uint32_t c = ax.sign[1] > 0 ? vi[ac] : cols_n - 1 - vi[ac];
                r0 = r < r0 ? r : r0, r1 = r > r1 ? r : r1;
                c0 = c < c0 ? c : c0, c1 = c > c1 ? c : c1;
            }
        if (!any_lung)
            continue;
        const uint32_t h = r1 - r0 + 1, w = c1 - c0 + 1;
        /* Voxel offset of image pixel (r, c) inside slice z. */
        const ptrdiff_t step_r = ax.sign[0] * stride[ar];
        const ptrdiff_t step_c = ax.sign[1] * stride[ac];
        const uint32_t vr0 = ax.sign[0] > 0 ? r0 : rows_n - 1 - r0;
        const uint32_t vc0 = ax.sign[1] > 0 ? c0 : cols_n - 1 - c0;
        const ptrdiff_t origin = (ptrdiff_t)vr0 * stride[ar] +
                                 (ptrdiff_t)vc0 * stride[ac];
        const size_t zoff = (size_t)z * plane;
        for (uint32_t r = 0; r < h; r++)
            for (uint32_t c = 0; c < w; c++)
                img[(size_t)r * w + c] = window(
                    ct, zoff + (size_t)(origin + r * step_r + c * step_c));
        double t0 = covct_now();
        rc = covct_nn_segment_slice(m, img, w, h, inf, ggo, con, err);
        t_net += covct_now() - t0;
        n_slices++;
        if (rc != COVCT_OK) {
            covct_error_prefix(err, "lesions, slice %u: ", (unsigned)z + 1);
            break;
        }
        if (dump) { /* debugging: what the network saw and said */
            char path[4096];
            covct_error derr = {0};
            covct_image im = {.width = w, .height = h, .pixels = img};
            snprintf(path, sizeof path, "%s/z%03u.png", dump, (unsigned)z);
            covct_image_write_png(path, &im, &derr);
            im.pixels = inf;
            snprintf(path, sizeof path, "%s/z%03u_map.png", dump, (unsigned)z);
            covct_image_write_png(path, &im, &derr);
        }
        uint8_t *les = seg->lesions + zoff;
        for (uint32_t r = 0; r < h; r++)
            for (uint32_t c = 0; c < w; c++) {
                size_t q = (size_t)r * w + c;
                size_t p = (size_t)(origin + r * step_r + c * step_c);
                if (!lung[p] || inf[q] < opt->threshold)
                    continue;
                les[p] = con[q] > ggo[q] ? COVCT_LESION_CONSOLIDATION
                                         : COVCT_LESION_GGO;
            }
    }
    covct_log(COVCT_LOG_DEBUG,
              "lesions (network): %u slices, %.3f s in the network "
              "(%.4f s per slice), %.3f s in all",
              n_slices, t_net, n_slices ? t_net / n_slices : 0.0,
              covct_now() - t_all);
    covct_free(img);
    covct_free(inf);
    covct_free(ggo);
    covct_free(con);
    return rc;
}
