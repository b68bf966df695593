/*
 * Data augmentation for training on 2-D slices: one geometric map (flip,
 * rotation, scale, elastic displacement) applied to image and label alike,
 * then intensity changes to the image only.  Image samples are bilinear,
 * labels nearest-neighbour (a label is a class, not a quantity).
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "covct/nn.h"

/* splitmix64 */
static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double unif(uint64_t *s, double lo, double hi)
{
    return lo + (hi - lo) * (double)(next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static double gauss(uint64_t *s)
{
    double u = unif(s, 1e-12, 1.0), v = unif(s, 0.0, 1.0);
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

void covct_nn_augment_default(covct_nn_augment *a)
{
    memset(a, 0, sizeof *a);
    a->flip = 1;
    a->rotate_deg = 15.0;
    a->scale = 0.15;
    a->elastic_px = 6.0;
    a->elastic_sigma_px = 12.0;
    a->gamma = 0.25;
    a->contrast = 0.1;
    a->brightness = 0.1;
    a->noise = 0.02;
}

/* Separable box blur, three passes (close to a Gaussian of the given
 * sigma), in place on an n x n field; tmp holds n * n floats. */
static void smooth(float *f, float *tmp, int n, double sigma)
{
    /* Three box passes of radius r have variance r (r + 1). */
    int r = (int)floor(sigma);
    if (r < 1)
        return;
    for (int pass = 0; pass < 3; pass++) {
        for (int y = 0; y < n; y++)
            for (int x = 0; x < n; x++) {
                double acc = 0;
                int cnt = 0;
                for (int d = -r; d <= r; d++) {
                    int xx = x + d;
                    if (xx < 0 || xx >= n)
                        continue;
                    acc += f[y * n + xx];
                    cnt++;
                }
                tmp[y * n + x] = (float)(acc / cnt);
            }
        for (int y = 0; y < n; y++)
            for (int x = 0; x < n; x++) {
                double acc = 0;
                int cnt = 0;
                for (int d = -r; d <= r; d++) {
                    int yy = y + d;
                    if (yy < 0 || yy >= n)
                        continue;
                    acc += tmp[yy * n + x];
                    cnt++;
                }
                f[y * n + x] = (float)(acc / cnt);
            }
    }
}

static bool is_identity(const covct_nn_augment *a)
{
    return !a->flip && a->rotate_deg == 0 && a->scale == 0 &&
           !(a->elastic_px > 0) && a->gamma == 0 && a->contrast == 0 &&
           a->brightness == 0 && !(a->noise > 0);
}

/* The identity mapping (what inference uses), separable: the source
 * column of an output column and the source row of an output row are
 * computed once each, with the same arithmetic as the general path, so
 * the result is the same to the bit (tests/test_nn_augment.c). */
static covct_rc fit_square(const uint8_t *img, const uint8_t *lab,
                           uint32_t w, uint32_t h, int size, float *out_img,
                           uint8_t *out_lab, covct_error *err)
{
    double fit = (double)(w > h ? w : h) / size;
    double ca = cos(0.0) * fit, sa = sin(0.0) * fit;
    double cx_in = (w - 1) / 2.0, cy_in = (h - 1) / 2.0;
    double c_out = (size - 1) / 2.0;
    int *x0 = covct_malloc(2 * (size_t)size * sizeof *x0);
    double *fx = covct_malloc(4 * (size_t)size * sizeof *fx);
    if (!x0 || !fx) {
        covct_free(x0);
        covct_free(fx);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "augment: out of memory");
    }
    int *y0 = x0 + size;
    double *fy = fx + size, *xs = fx + 2 * size, *ys = fx + 3 * size;
    for (int t = 0; t < size; t++) {
        double p = t - c_out;
        xs[t] = cx_in + ca * p - sa * 0.0;
        ys[t] = cy_in + sa * 0.0 + ca * p;
        x0[t] = (int)floor(xs[t]);
        fx[t] = xs[t] - x0[t];
        y0[t] = (int)floor(ys[t]);
        fy[t] = ys[t] - y0[t];
    }
    for (int v = 0; v < size; v++)
        for (int u = 0; u < size; u++) {
            size_t o = (size_t)v * size + u;
            double val = 0;
            for (int j = 0; j < 2; j++)
                for (int i = 0; i < 2; i++) {
                    int xx = x0[u] + i, yy = y0[v] + j;
                    if (xx < 0 || yy < 0 || xx >= (int)w || yy >= (int)h)
                        continue;
                    double wt = (i ? fx[u] : 1 - fx[u]) *
                                (j ? fy[v] : 1 - fy[v]);
                    val += wt * img[(size_t)yy * w + xx];
                }
            val /= 255.0;
            val = (val - 0.5) * 1.0 + 0.5 + 0.0;
            out_img[o] = (float)val;
            if (out_lab) {
                int xn = (int)floor(xs[u] + 0.5);
                int yn = (int)floor(ys[v] + 0.5);
                out_lab[o] = lab && xn >= 0 && yn >= 0 && xn < (int)w &&
                                     yn < (int)h
                                 ? lab[(size_t)yn * w + xn]
                                 : 0;
            }
        }
    covct_free(x0);
    covct_free(fx);
    return COVCT_OK;
}

covct_rc covct_nn_augment_sample(const covct_nn_augment *a, uint64_t seed,
                                 const uint8_t *img, const uint8_t *lab,
                                 uint32_t w, uint32_t h, int size,
                                 float *out_img, uint8_t *out_lab,
                                 covct_error *err)
{
    if (!img || !w || !h || size <= 0 || size > 4096)
        return COVCT_ERR(err, COVCT_ERR_ARG, "augment: bad input or size %d",
                         size);
    if (is_identity(a))
        return fit_square(img, lab, w, h, size, out_img, out_lab, err);
    uint64_t s = seed ^ 0xD1B54A32D192ED03ull;
    /* Geometry: output pixel (u, v) around the crop centre maps to input
     * (x, y) = c_in + R S F (u - c_out) + elastic displacement. */
    int flip = a->flip && (next(&s) & 1);
    double ang = a->rotate_deg * M_PI / 180.0 * unif(&s, -1, 1);
    double sc = 1.0 + a->scale * unif(&s, -1, 1);
    /* The whole slice fits the crop at scale 1 (longest side -> size). */
    double fit = (double)(w > h ? w : h) / size;
    double ca = cos(ang) * fit / sc, sa = sin(ang) * fit / sc;
    double cx_in = (w - 1) / 2.0, cy_in = (h - 1) / 2.0;
    double c_out = (size - 1) / 2.0;
    size_t nn = (size_t)size * size;
    float *dx = NULL, *dy = NULL, *tmp = NULL;
    if (a->elastic_px > 0) {
        dx = covct_malloc(nn * sizeof *dx);
        dy = covct_malloc(nn * sizeof *dy);
        tmp = covct_malloc(nn * sizeof *tmp);
        if (!dx || !dy || !tmp) {
            covct_free(dx);
            covct_free(dy);
            covct_free(tmp);
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "augment: out of memory");
        }
        for (size_t i = 0; i < nn; i++) {
            dx[i] = (float)gauss(&s);
            dy[i] = (float)gauss(&s);
        }
        smooth(dx, tmp, size, a->elastic_sigma_px);
        smooth(dy, tmp, size, a->elastic_sigma_px);
        /* Rescale so the field's RMS is elastic_px. */
        double ss = 0;
        for (size_t i = 0; i < nn; i++)
            ss += (double)dx[i] * dx[i] + (double)dy[i] * dy[i];
        double k = ss > 0 ? a->elastic_px / sqrt(ss / (2.0 * nn)) : 0;
        for (size_t i = 0; i < nn; i++) {
            dx[i] = (float)(dx[i] * k);
            dy[i] = (float)(dy[i] * k);
        }
    }
    /* Intensity: gamma, then contrast and brightness, then noise. */
    double gam = exp(a->gamma * unif(&s, -1, 1));
    double con = 1.0 + a->contrast * unif(&s, -1, 1);
    double bri = a->brightness * unif(&s, -1, 1);
    for (int v = 0; v < size; v++)
        for (int u = 0; u < size; u++) {
            size_t o = (size_t)v * size + u;
            double pu = u - c_out, pv = v - c_out;
            if (flip)
                pu = -pu;
            double x = cx_in + ca * pu - sa * pv;
            double y = cy_in + sa * pu + ca * pv;
            if (dx) {
                x += dx[o] * fit;
                y += dy[o] * fit;
            }
            /* Outside the slice: black (air), background label. */
            double val = 0;
            int x0 = (int)floor(x), y0 = (int)floor(y);
            double fx = x - x0, fy = y - y0;
            for (int j = 0; j < 2; j++)
                for (int i = 0; i < 2; i++) {
                    int xx = x0 + i, yy = y0 + j;
                    if (xx < 0 || yy < 0 || xx >= (int)w || yy >= (int)h)
                        continue;
                    double wt = (i ? fx : 1 - fx) * (j ? fy : 1 - fy);
                    val += wt * img[(size_t)yy * w + xx];
                }
            val /= 255.0;
            if (val > 0 && gam != 1.0)
                val = pow(val, gam);
            val = (val - 0.5) * con + 0.5 + bri;
            if (a->noise > 0)
                val += a->noise * gauss(&s);
            out_img[o] = (float)val;
            if (out_lab) {
                int xn = (int)floor(x + 0.5), yn = (int)floor(y + 0.5);
                out_lab[o] = lab && xn >= 0 && yn >= 0 && xn < (int)w &&
                                     yn < (int)h
                                 ? lab[(size_t)yn * w + xn]
                                 : 0;
            }
        }
    covct_free(dx);
    covct_free(dy);
    covct_free(tmp);
    return COVCT_OK;
}
