/*
 * Reference kernels of the nn module: plain loops, written for clarity,
 * the yardstick the fast kernels and PyTorch are compared with.
 * Accumulation is in double where a sum runs over many terms (batch norm
 * statistics, weight gradients) so the reference is the more exact side.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "nn/nn_int.h"

/* Index helpers for NCHW arrays. */
#define AT4(C, H, W, n, c, y, x) \
    ((((size_t)(n) * (C) + (c)) * (H) + (y)) * (W) + (x))

void nn_bias_grad(int n, int o, size_t hw, const float *dy, float *db)
{
    for (int c = 0; c < o; c++) {
        double acc = 0;
        for (int b = 0; b < n; b++) {
            const float *p = dy + ((size_t)b * o + c) * hw;
            for (size_t i = 0; i < hw; i++)
                acc += p[i];
        }
        db[c] += (float)acc;
    }
}

void nn_ref_conv_fwd(const nn_conv_shape *s, const float *x, const float *w,
                     const float *b, float *y)
{
    for (int n = 0; n < s->n; n++)
        for (int o = 0; o < s->o; o++)
            for (int oy = 0; oy < s->oh; oy++)
                for (int ox = 0; ox < s->ow; ox++) {
                    double acc = b ? b[o] : 0.0;
                    for (int c = 0; c < s->c; c++)
                        for (int ky = 0; ky < s->k; ky++) {
                            int iy = oy * s->stride - s->pad + ky * s->dil;
                            if (iy < 0 || iy >= s->h)
                                continue;
                            for (int kx = 0; kx < s->k; kx++) {
                                int ix = ox * s->stride - s->pad + kx * s->dil;
                                if (ix < 0 || ix >= s->w)
                                    continue;
                                acc += (double)x[AT4(s->c, s->h, s->w, n, c, iy, ix)] *
                                       w[AT4(s->c, s->k, s->k, o, c, ky, kx)];
                            }
                        }
                    y[AT4(s->o, s->oh, s->ow, n, o, oy, ox)] = (float)acc;
                }
}

void nn_ref_conv_bwd(const nn_conv_shape *s, const float *x, const float *w,
                     const float *dy, float *dx, float *dw, float *db)
{
    if (dx)
        memset(dx, 0, (size_t)s->n * s->c * s->h * s->w * sizeof *dx);
    if (db)
        nn_bias_grad(s->n, s->o, (size_t)s->oh * s->ow, dy, db);
    for (int o = 0; o < s->o; o++)
        for (int c = 0; c < s->c; c++)
            for (int ky = 0; ky < s->k; ky++)
                for (int kx = 0; kx < s->k; kx++) {
                    double gw = 0;
                    float wv = w[AT4(s->c, s->k, s->k, o, c, ky, kx)];
                    for (int n = 0; n < s->n; n++)
                        for (int oy = 0; oy < s->oh; oy++) {
                            int iy = oy * s->stride - s->pad + ky * s->dil;
                            if (iy < 0 || iy >= s->h)
                                continue;
                            for (int ox = 0; ox < s->ow; ox++) {
                                int ix = ox * s->stride - s->pad + kx * s->dil;
                                if (ix < 0 || ix >= s->w)
                                    continue;
                                float g = dy[AT4(s->o, s->oh, s->ow, n, o, oy, ox)];
                                size_t xi = AT4(s->c, s->h, s->w, n, c, iy, ix);
                                gw += (double)g * x[xi];
                                if (dx)
                                    dx[xi] += g * wv;
                            }
                        }
                    if (dw)
                        dw[AT4(s->c, s->k, s->k, o, c, ky, kx)] += (float)gw;
                }
}

/* Transposed convolution: every input pixel scatters its kernel-weighted
 * value into the output (the adjoint of a convolution). */
void nn_ref_convt_fwd(const nn_conv_shape *s, const float *x, const float *w,
                      const float *b, float *y)
{
    size_t ny = (size_t)s->n * s->o * s->oh * s->ow;
    for (size_t i = 0; i < ny; i++)
        y[i] = 0;
    for (int n = 0; n < s->n; n++)
        for (int c = 0; c < s->c; c++)
            for (int iy = 0; iy < s->h; iy++)
                for (int ix = 0; ix < s->w; ix++) {
                    float v = x[AT4(s->c, s->h, s->w, n, c, iy, ix)];
                    for (int o = 0; o < s->o; o++)
                        for (int ky = 0; ky < s->k; ky++) {
                            int oy = iy * s->stride - s->pad + ky;
                            if (oy < 0 || oy >= s->oh)
                                continue;
                            for (int kx = 0; kx < s->k; kx++) {
                                int ox = ix * s->stride - s->pad + kx;
                                if (ox < 0 || ox >= s->ow)
                                    continue;
                                y[AT4(s->o, s->oh, s->ow, n, o, oy, ox)] +=
                                    v * w[AT4(s->o, s->k, s->k, c, o, ky, kx)];
                            }
                        }
                }
    if (b)
        for (int n = 0; n < s->n; n++)
            for (int o = 0; o < s->o; o++)
                for (int i = 0; i < s->oh * s->ow; i++)
                    y[AT4(s->o, s->oh, s->ow, n, o, 0, 0) + (size_t)i] += b[o];
}

void nn_ref_convt_bwd(const nn_conv_shape *s, const float *x, const float *w,
                      const float *dy, float *dx, float *dw, float *db)
{
    if (db)
        nn_bias_grad(s->n, s->o, (size_t)s->oh * s->ow, dy, db);
    for (int n = 0; n < s->n; n++)
        for (int c = 0; c < s->c; c++)
            for (int iy = 0; iy < s->h; iy++)
                for (int ix = 0; ix < s->w; ix++) {
                    size_t xi = AT4(s->c, s->h, s->w, n, c, iy, ix);
                    double gx = 0;
                    for (int o = 0; o < s->o; o++)
                        for (int ky = 0; ky < s->k; ky++) {
                            int oy = iy * s->stride - s->pad + ky;
                            if (oy < 0 || oy >= s->oh)
                                continue;
                            for (int kx = 0; kx < s->k; kx++) {
                                int ox = ix * s->stride - s->pad + kx;
                                if (ox < 0 || ox >= s->ow)
                                    continue;
                                float g = dy[AT4(s->o, s->oh, s->ow, n, o, oy, ox)];
                                size_t wi = AT4(s->o, s->k, s->k, c, o, ky, kx);
                                gx += (double)g * w[wi];
                                if (dw)
                                    dw[wi] += g * x[xi];
                            }
                        }
                    if (dx)
                        dx[xi] = (float)gx;
                }
}

void nn_ref_bn_fwd_train(int n, int c, int hw, const float *x,
                         const float *gamma, const float *beta, float eps,
                         float momentum, float *run_mean, float *run_var,
                         float *y, float *xhat, float *invstd)
{
    double m = (double)n * hw;
    for (int ch = 0; ch < c; ch++) {
        double sum = 0, sq = 0;
        for (int b = 0; b < n; b++) {
            const float *p = x + ((size_t)b * c + ch) * hw;
            for (int i = 0; i < hw; i++)
                sum += p[i];
        }
        double mean = sum / m;
        for (int b = 0; b < n; b++) {
            const float *p = x + ((size_t)b * c + ch) * hw;
            for (int i = 0; i < hw; i++)
                sq += (p[i] - mean) * (p[i] - mean);
        }
        double var = sq / m;
        double is = 1.0 / sqrt(var + eps);
        invstd[ch] = (float)is;
        for (int b = 0; b < n; b++) {
            size_t o = ((size_t)b * c + ch) * hw;
            for (int i = 0; i < hw; i++) {
                float xh = (float)((x[o + i] - mean) * is);
                xhat[o + i] = xh;
                y[o + i] = gamma[ch] * xh + beta[ch];
            }
        }
        double unbiased = m > 1 ? sq / (m - 1) : var;
        run_mean[ch] = (float)((1 - momentum) * run_mean[ch] + momentum * mean);
        run_var[ch] = (float)((1 - momentum) * run_var[ch] + momentum * unbiased);
    }
}

void nn_ref_bn_fwd_infer(int n, int c, int hw, const float *x,
                         const float *gamma, const float *beta, float eps,
                         const float *run_mean, const float *run_var,
                         float *y)
{
    for (int ch = 0; ch < c; ch++) {
        float is = (float)(1.0 / sqrt((double)run_var[ch] + eps));
        float sc = gamma[ch] * is, sh = beta[ch] - run_mean[ch] * sc;
        for (int b = 0; b < n; b++) {
            size_t o = ((size_t)b * c + ch) * hw;
            for (int i = 0; i < hw; i++)
                y[o + i] = x[o + i] * sc + sh;
        }
    }
}

/* dx = gamma invstd / m (m dy - sum(dy) - xhat sum(dy xhat)). */
void nn_ref_bn_bwd(int n, int c, int hw, const float *dy, const float *xhat,
                   const float *invstd, const float *gamma, float *dx,
                   float *dgamma, float *dbeta)
{
    double m = (double)n * hw;
    for (int ch = 0; ch < c; ch++) {
        double sdy = 0, sdyx = 0;
        for (int b = 0; b < n; b++) {
            size_t o = ((size_t)b * c + ch) * hw;
            for (int i = 0; i < hw; i++) {
                sdy += dy[o + i];
                sdyx += (double)dy[o + i] * xhat[o + i];
            }
        }
        if (dgamma)
            dgamma[ch] += (float)sdyx;
        if (dbeta)
            dbeta[ch] += (float)sdy;
        if (!dx)
            continue;
        double k = gamma[ch] * invstd[ch] / m;
        for (int b = 0; b < n; b++) {
            size_t o = ((size_t)b * c + ch) * hw;
            for (int i = 0; i < hw; i++)
                dx[o + i] = (float)(k * (m * dy[o + i] - sdy - xhat[o + i] * sdyx));
        }
    }
}

void nn_ref_maxpool_fwd(int n, int c, int h, int w, int k, const float *x,
                        float *y, int32_t *argmax)
{
    int oh = h / k, ow = w / k;
    for (int p = 0; p < n * c; p++) {
        const float *in = x + (size_t)p * h * w;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                float best = -FLT_MAX;
                int32_t bi = 0;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        int32_t i = (oy * k + ky) * w + ox * k + kx;
                        /* NaN propagates, as in PyTorch */
                        if (in[i] > best || isnan(in[i])) {
                            best = in[i];
                            bi = i;
                            if (isnan(best))
                                goto done;
                        }
                    }
            done:
                y[(size_t)p * oh * ow + (size_t)oy * ow + ox] = best;
                argmax[(size_t)p * oh * ow + (size_t)oy * ow + ox] = bi;
            }
    }
}

void nn_ref_maxpool_bwd(int n, int c, int h, int w, int k, const float *dy,
                        const int32_t *argmax, float *dx)
{
    int oh = h / k, ow = w / k;
    memset(dx, 0, (size_t)n * c * h * w * sizeof *dx);
    for (int p = 0; p < n * c; p++)
        for (int i = 0; i < oh * ow; i++)
            dx[(size_t)p * h * w + (size_t)argmax[(size_t)p * oh * ow + i]] +=
                dy[(size_t)p * oh * ow + i];
}

void nn_ref_avgpool_fwd(int n, int c, int h, int w, int k, const float *x,
                        float *y)
{
    int oh = h / k, ow = w / k;
    for (int p = 0; p < n * c; p++) {
        const float *in = x + (size_t)p * h * w;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                double acc = 0;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++)
                        acc += in[(oy * k + ky) * w + ox * k + kx];
                y[(size_t)p * oh * ow + (size_t)oy * ow + ox] =
                    (float)(acc / (k * k));
            }
    }
}

void nn_ref_avgpool_bwd(int n, int c, int h, int w, int k, const float *dy,
                        float *dx)
{
    int oh = h / k, ow = w / k;
    memset(dx, 0, (size_t)n * c * h * w * sizeof *dx);
    for (int p = 0; p < n * c; p++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                float g = dy[(size_t)p * oh * ow + (size_t)oy * ow + ox] /
                          (float)(k * k);
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++)
                        dx[(size_t)p * h * w +
                           (size_t)(oy * k + ky) * w + ox * k + kx] = g;
            }
}

void nn_ref_upsample2x_fwd(int n, int c, int h, int w, const float *x,
                           float *y)
{
    int oh = 2 * h, ow = 2 * w;
    for (int p = 0; p < n * c; p++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                y[(size_t)p * oh * ow + (size_t)oy * ow + ox] =
                    x[(size_t)p * h * w + (size_t)(oy / 2) * w + ox / 2];
}

void nn_ref_upsample2x_bwd(int n, int c, int h, int w, const float *dy,
                           float *dx)
{
    int oh = 2 * h, ow = 2 * w;
    memset(dx, 0, (size_t)n * c * h * w * sizeof *dx);
    for (int p = 0; p < n * c; p++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                dx[(size_t)p * h * w + (size_t)(oy / 2) * w + ox / 2] +=
                    dy[(size_t)p * oh * ow + (size_t)oy * ow + ox];
}
