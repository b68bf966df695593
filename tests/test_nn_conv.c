/*
 * oneDNN convolutions and transposed convolutions (ops-dnnl.c) against
 * the reference loops (ops-ref.c) on random tensors: forward with and
 * without bias, backward with each of dx, dw, db left out in turn (and
 * with db alone), accumulation into dw and db, the primitive cache
 * (reuse, eviction, release, the kind in its key) and the error messages.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "nn/nn_int.h"
#include "test.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

/* splitmix64, uniform in [-1, 1). */
static float urand(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1u << 23) - 1.0);
}

static float *rand_array(size_t n)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; p && i < n; i++)
        p[i] = urand();
    return p;
}

static float *copy_array(const float *src, size_t n)
{
    float *p = malloc(n * sizeof *p);
    if (p)
        memcpy(p, src, n * sizeof *p);
    return p;
}

/* Largest |got - want| / (1 + |want|); NaN counts as infinitely wrong. */
static double max_err(const float *got, const float *want, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]) / (1 + fabs(want[i]));
        if (!(e <= worst))
            worst = isnan(e) ? INFINITY : e;
    }
    return worst;
}

#define TOL 1e-4

/* A convolution or a transposed one: reference and oneDNN kernels. */
typedef struct conv_impl {
    const char *name;
    void (*ref_fwd)(const nn_conv_shape *, const float *, const float *,
                    const float *, float *);
    void (*ref_bwd)(const nn_conv_shape *, const float *, const float *,
                    const float *, float *, float *, float *);
    covct_rc (*fwd)(const nn_conv_shape *, const float *, const float *,
                    const float *, float *, covct_error *);
    covct_rc (*bwd)(const nn_conv_shape *, const float *, const float *,
                    const float *, float *, float *, float *, covct_error *);
} conv_impl;

static const conv_impl CONV = {"conv", nn_ref_conv_fwd, nn_ref_conv_bwd,
                               nn_dnnl_conv_fwd, nn_dnnl_conv_bwd};
static const conv_impl CONVT = {"convt", nn_ref_convt_fwd, nn_ref_convt_bwd,
                                nn_dnnl_convt_fwd, nn_dnnl_convt_bwd};

static char shape_str[160];

static const char *describe(const conv_impl *im, const nn_conv_shape *s)
{
    snprintf(shape_str, sizeof shape_str,
             "%s %dx%dx%dx%d -> %d (k%d s%d p%d d%d)", im->name, s->n, s->c,
             s->h, s->w, s->o, s->k, s->stride, s->pad, s->dil);
    return shape_str;
}

static nn_conv_shape make_shape(int n, int c, int h, int w, int o, int k,
                                int stride, int pad, int dil)
{
    nn_conv_shape s = {n, c, h, w, o,
                       nn_conv_out(h, k, stride, pad, dil),
                       nn_conv_out(w, k, stride, pad, dil),
                       k, stride, pad, dil};
    return s;
}

/* Transposed convolution: output (h - 1) * stride - 2 * pad + k. */
static nn_conv_shape make_shape_t(int n, int c, int h, int w, int o, int k,
                                  int stride, int pad)
{
    nn_conv_shape s = {n, c, h, w, o,
                       nn_convt_out(h, k, stride, pad),
                       nn_convt_out(w, k, stride, pad),
                       k, stride, pad, 1};
    return s;
}

/* Which backward outputs are requested: all, one of them left out, or
 * the bias gradient alone. */
enum { ALL, NO_DX, NO_DW, NO_DB, ONLY_DB, NMODES };

/* One shape: forward with and without bias, then backward twice (the
 * second call reuses the cached primitives and must add the same
 * gradient again to dw and db, which start from random values). */
static void check_shape(const conv_impl *im, const nn_conv_shape *s,
                        int mode)
{
    size_t nx = (size_t)s->n * s->c * s->h * s->w;
    size_t nw = (size_t)s->o * s->c * s->k * s->k;
    size_t ny = (size_t)s->n * s->o * s->oh * s->ow;
    size_t nb = (size_t)s->o;
    float *x = rand_array(nx), *w = rand_array(nw), *b = rand_array(nb);
    float *dy = rand_array(ny);
    float *y_ref = malloc(ny * sizeof *y_ref), *y = malloc(ny * sizeof *y);
    float *dx_ref = malloc(nx * sizeof *dx_ref), *dx = malloc(nx * sizeof *dx);
    float *dw_ref = rand_array(nw), *dw = copy_array(dw_ref, nw);
    float *db_ref = rand_array(nb), *db = copy_array(db_ref, nb);
    if (!x || !w || !b || !dy || !y_ref || !y || !dx_ref || !dx || !dw_ref ||
        !dw || !db_ref || !db) {
        CHECKF(0, "out of memory");
        goto done;
    }
    const char *d = describe(im, s);
    covct_error err;
    for (int bias = 0; bias < 2; bias++) {
        covct_error_clear(&err);
        im->ref_fwd(s, x, w, bias ? b : NULL, y_ref);
        for (size_t i = 0; i < ny; i++)
            y[i] = NAN;
        covct_rc rc = im->fwd(s, x, w, bias ? b : NULL, y, &err);
        CHECKF(rc == COVCT_OK, "%s forward: %s", d, err.msg);
        double e = max_err(y, y_ref, ny);
        CHECKF(e <= TOL, "%s forward bias %d: error %g", d, bias, e);
    }

    float *pdx = mode == NO_DX || mode == ONLY_DB ? NULL : dx;
    float *pdw = mode == NO_DW || mode == ONLY_DB ? NULL : dw;
    float *pdb = mode == NO_DB ? NULL : db;
    for (int call = 0; call < 2; call++) {
        covct_error_clear(&err);
        im->ref_bwd(s, x, w, dy, pdx ? dx_ref : NULL, pdw ? dw_ref : NULL,
                    pdb ? db_ref : NULL);
        for (size_t i = 0; i < nx; i++)
            dx[i] = NAN; /* dx must be overwritten, not added to */
        covct_rc rc = im->bwd(s, x, w, dy, pdx, pdw, pdb, &err);
        CHECKF(rc == COVCT_OK, "%s backward: %s", d, err.msg);
    }
    double e;
    if (pdx) {
        e = max_err(dx, dx_ref, nx);
        CHECKF(e <= TOL, "%s dx: error %g", d, e);
    }
    e = max_err(dw, dw_ref, nw);
    CHECKF(e <= TOL, "%s dw (%s): error %g", d, pdw ? "added twice" : "NULL",
           e);
    e = max_err(db, db_ref, nb);
    CHECKF(e <= TOL, "%s db (%s): error %g", d, pdb ? "added twice" : "NULL",
           e);
done:
    free(x);
    free(w);
    free(b);
    free(dy);
    free(y_ref);
    free(y);
    free(dx_ref);
    free(dx);
    free(dw_ref);
    free(dw);
    free(db_ref);
    free(db);
}

/* Batch 1 and 3, channels 1/3/8/16 in and out, three sizes, kernels 1
 * and 3, strides 1 and 2, padding 0/1 (2 with dilation 2), dilation 1
 * and 2: 288 shapes, so the 32-entry cache also evicts. */
static void test_grid(void)
{
    static const int chans[] = {1, 3, 8, 16};
    static const int sizes[][2] = {{7, 9}, {16, 16}, {33, 17}};
    static const int kpd[][3] = {{1, 0, 1}, {1, 1, 1}, {3, 0, 1},
                                 {3, 1, 1}, {3, 2, 2}, {3, 1, 2}};
    int count = 0;
    for (int n = 1; n <= 3; n += 2)
        for (int ci = 0; ci < 4; ci++)
            for (int si = 0; si < 3; si++)
                for (int ki = 0; ki < 6; ki++)
                    for (int stride = 1; stride <= 2; stride++) {
                        nn_conv_shape s = make_shape(
                            n, chans[ci], sizes[si][0], sizes[si][1],
                            chans[(ci + count) % 4], kpd[ki][0], stride,
                            kpd[ki][1], kpd[ki][2]);
                        check_shape(&CONV, &s, count % NMODES);
                        count++;
                    }
    CHECK(count == 288);
}

/* Transposed convolutions: batch 1 and 2, channels 1/3/8/16 in and out
 * (all 16 pairs), two sizes, the U-Net's k2 s2 p0 and k3 s2 p1, k3 s1 p1,
 * k4 s2 p1: 256 shapes; the backward mode turns with every parameter so
 * that each kernel and channel pair meets several modes. */
static void test_convt_grid(void)
{
    static const int chans[] = {1, 3, 8, 16};
    static const int sizes[][2] = {{5, 7}, {16, 16}};
    static const int ksp[][3] = {{2, 2, 0}, {3, 2, 1}, {3, 1, 1}, {4, 2, 1}};
    int count = 0;
    for (int n = 1; n <= 2; n++)
        for (int si = 0; si < 2; si++)
            for (int ki = 0; ki < 4; ki++)
                for (int ci = 0; ci < 4; ci++)
                    for (int co = 0; co < 4; co++) {
                        nn_conv_shape s = make_shape_t(
                            n, chans[ci], sizes[si][0], sizes[si][1],
                            chans[co], ksp[ki][0], ksp[ki][1], ksp[ki][2]);
                        check_shape(&CONVT, &s,
                                    (n + si + ki + ci + co) % NMODES);
                        count++;
                    }
    CHECK(count == 256);
}

/* A shape seen before the grid was evicted since; after a release every
 * object is created again.  k3 s1 p1 (and k1 s1 p0) give the same
 * nn_conv_shape for a convolution and a transposed one, with weights
 * laid out differently: the cache must keep them apart. */
static void test_cache(void)
{
    nn_conv_shape s = make_shape(1, 1, 7, 9, 1, 1, 1, 0, 1);
    check_shape(&CONV, &s, ALL);
    nn_dnnl_release();
    check_shape(&CONV, &s, ALL);
    nn_dnnl_release();
    nn_dnnl_release(); /* twice is harmless */
    s = make_shape(3, 16, 33, 17, 8, 3, 2, 2, 2);
    check_shape(&CONV, &s, ALL);

    s = make_shape(2, 3, 7, 9, 8, 3, 1, 1, 1);
    nn_conv_shape st = make_shape_t(2, 3, 7, 9, 8, 3, 1, 1);
    CHECK(memcmp(&s, &st, sizeof s) == 0);
    for (int i = 0; i < 2; i++) {
        check_shape(&CONV, &s, ALL);
        check_shape(&CONVT, &s, ALL);
    }
    s = make_shape(1, 16, 5, 7, 3, 1, 1, 0, 1);
    st = make_shape_t(1, 16, 5, 7, 3, 1, 1, 0);
    CHECK(memcmp(&s, &st, sizeof s) == 0);
    check_shape(&CONVT, &s, NO_DX);
    check_shape(&CONV, &s, NO_DW);
    check_shape(&CONVT, &s, ONLY_DB);
    check_shape(&CONVT, &s, ALL);
    nn_dnnl_release();
    /* db alone needs no primitive: also right on a fresh state */
    check_shape(&CONVT, &s, ONLY_DB);
}

/* An inconsistent shape: oneDNN refuses it, the message names the
 * primitive and the shape. */
static void test_error(void)
{
    nn_conv_shape s = make_shape(1, 3, 7, 9, 8, 3, 1, 1, 1);
    s.oh = 5;
    float x[3 * 7 * 9] = {0}, w[8 * 3 * 3 * 3] = {0}, y[8 * 5 * 9];
    covct_error err;
    covct_error_clear(&err);
    covct_rc rc = nn_dnnl_conv_fwd(&s, x, w, NULL, y, &err);
    CHECK(rc == COVCT_ERR_ARG);
    CHECKF(strstr(err.msg, "oneDNN convolution forward "
                           "1x3x7x9 -> 8 (k3 s1 p1 d1): ") != NULL,
           "message: %s", err.msg);
    covct_error_clear(&err);
    rc = nn_dnnl_conv_bwd(&s, x, w, y, x, w, NULL, &err);
    CHECK(rc == COVCT_ERR_ARG);
    CHECKF(strstr(err.msg, "oneDNN convolution backward") != NULL,
           "message: %s", err.msg);

    s = make_shape_t(1, 16, 32, 32, 8, 2, 2, 0);
    s.ow = 63;
    static float xt[16 * 32 * 32], wt[16 * 8 * 2 * 2], yt[8 * 64 * 64];
    covct_error_clear(&err);
    rc = nn_dnnl_convt_fwd(&s, xt, wt, NULL, yt, &err);
    CHECK(rc == COVCT_ERR_ARG);
    CHECKF(strstr(err.msg, "oneDNN transposed convolution forward "
                           "1x16x32x32 -> 8 (k2 s2 p0): ") != NULL,
           "message: %s", err.msg);
    covct_error_clear(&err);
    rc = nn_dnnl_convt_bwd(&s, xt, wt, yt, xt, wt, NULL, &err);
    CHECK(rc == COVCT_ERR_ARG);
    CHECKF(strstr(err.msg, "oneDNN transposed convolution backward") !=
               NULL,
           "message: %s", err.msg);
}

int main(void)
{
    test_grid();
    test_convt_grid();
    test_cache();
    test_error();
    nn_dnnl_release();
    return test_report();
}
