/* Filters for the analysis stages: Gaussian smoothing, Frangi vesselness,
 * Euclidean distance transform, parallel-for.  See filters_int.h. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "analysis/filters_int.h"

/* ---- threads -------------------------------------------------------------- */

unsigned covct_filter_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > 16 ? 16u : (unsigned)n;
}

typedef struct par_job {
    atomic_size_t next;
    size_t n;
    covct_filter_task fn;
    void *ctx;
} par_job;

typedef struct par_arg {
    par_job *job;
    unsigned tid;
} par_arg;

static void *par_worker(void *p)
{
    par_arg *a = p;
    for (;;) {
        size_t i = atomic_fetch_add(&a->job->next, 1);
        if (i >= a->job->n)
            break;
        a->job->fn(a->job->ctx, i, a->tid);
    }
    return NULL;
}

void covct_filter_parallel(size_t n, covct_filter_task fn, void *ctx,
                           unsigned threads)
{
    if (threads == 0)
        threads = covct_filter_threads();
    if (threads > 16)
        threads = 16;
    if ((size_t)threads > n)
        threads = n ? (unsigned)n : 1;
    par_job job = {.n = n, .fn = fn, .ctx = ctx};
    atomic_init(&job.next, 0);
    pthread_t th[16];
    par_arg args[16];
    bool started[16] = {false};
    for (unsigned t = 0; t < threads; t++) {
        args[t].job = &job;
        args[t].tid = t;
    }
    /* Thread 0 is the caller; a worker that cannot start leaves its
     * indices to the others through the shared counter. */
    for (unsigned t = 1; t < threads; t++)
        started[t] = pthread_create(&th[t], NULL, par_worker, &args[t]) == 0;
    par_worker(&args[0]);
    for (unsigned t = 1; t < threads; t++)
        if (started[t])
            pthread_join(th[t], NULL);
}

/* ---- Gaussian ------------------------------------------------------------- */

/* Half kernel w[0..r] (w[k] for offsets +-k), unit sum over -r..r. */
static int gauss_kernel(double sigma_vox, double *w, int max_r)
{
    if (!(sigma_vox > 0)) {
        w[0] = 1;
        return 0;
    }
    int r = (int)ceil(4 * sigma_vox) + 1;
    if (r > max_r)
        r = max_r;
    double t = sigma_vox * sigma_vox;
    if (sigma_vox < 2) {
        /* Lindeberg's discrete Gaussian T(n, t) = e^-t I_n(t): the
         * kernel of the discrete diffusion equation, whose variance is t
         * exactly; the sampled Gaussian would give 0.21 instead of 0.25
         * voxels^2 at sigma = 0.5 voxel (1 mm on 2 mm slices). */
        for (int n = 0; n <= r; n++) {
            double term = 1;
            for (int k = 1; k <= n; k++)
                term *= t / 2 / k;
            double sum = 0;
            for (int k = 0; k < 200; k++) {
                sum += term;
                term *= (t / 2) * (t / 2) / ((double)(k + 1) * (k + 1 + n));
                if (term < 1e-18 * sum)
                    break;
            }
            w[n] = exp(-t) * sum;
        }
    } else {
        for (int n = 0; n <= r; n++)
            w[n] = exp(-0.5 * n * n / t);
    }
    double s = w[0];
    for (int n = 1; n <= r; n++)
        s += 2 * w[n];
    for (int n = 0; n <= r; n++)
        w[n] /= s;
    return r;
}

#define GAUSS_MAX_R 256

typedef struct gauss_ctx {
    const float *src;
    float *dst;
    size_t nx, ny, nz;
    float w[GAUSS_MAX_R + 1];
    int r;
    float *scratch; /* per thread, nx + 2 r floats */
} gauss_ctx;

/* Along x, one slice; in place is allowed (each row is copied first). */
static void gauss_x(void *p, size_t z, unsigned tid)
{
    gauss_ctx *c = p;
    size_t nx = c->nx, r = (size_t)c->r;
    float *buf = c->scratch + (size_t)tid * (nx + 2 * r);
    for (size_t y = 0; y < c->ny; y++) {
        const float *in = c->src + (z * c->ny + y) * nx;
        float *out = c->dst + (z * c->ny + y) * nx;
        for (size_t i = 0; i < r; i++) {
            buf[i] = in[0];
            buf[r + nx + i] = in[nx - 1];
        }
        memcpy(buf + r, in, nx * sizeof *buf);
        const float *b = buf + r;
        for (size_t x = 0; x < nx; x++) {
            float acc = c->w[0] * b[x];
            for (size_t k = 1; k <= r; k++)
                acc += c->w[k] * (b[x - k] + b[x + k]);
            out[x] = acc;
        }
    }
}

/* Along y, one slice, src -> dst (distinct). */
static void gauss_y(void *p, size_t z, unsigned tid)
{
    (void)tid;
    gauss_ctx *c = p;
    size_t nx = c->nx, ny = c->ny;
    const float *in = c->src + z * nx * ny;
    float *out = c->dst + z * nx * ny;
    for (size_t y = 0; y < ny; y++) {
        float *o = out + y * nx;
        const float *r0 = in + y * nx;
        for (size_t x = 0; x < nx; x++)
            o[x] = c->w[0] * r0[x];
        for (int k = 1; k <= c->r; k++) {
            size_t ym = y >= (size_t)k ? y - (size_t)k : 0;
            size_t yp = y + (size_t)k < ny ? y + (size_t)k : ny - 1;
            const float *a = in + ym * nx, *b = in + yp * nx;
            float wk = c->w[k];
            for (size_t x = 0; x < nx; x++)
                o[x] += wk * (a[x] + b[x]);
        }
    }
}

/* Along z, output slice z, src -> dst (distinct). */
static void gauss_z(void *p, size_t z, unsigned tid)
{
    (void)tid;
    gauss_ctx *c = p;
    size_t plane = c->nx * c->ny, nz = c->nz;
    float *o = c->dst + z * plane;
    const float *r0 = c->src + z * plane;
    for (size_t i = 0; i < plane; i++)
        o[i] = c->w[0] * r0[i];
    for (int k = 1; k <= c->r; k++) {
        size_t zm = z >= (size_t)k ? z - (size_t)k : 0;
        size_t zp = z + (size_t)k < nz ? z + (size_t)k : nz - 1;
        const float *a = c->src + zm * plane, *b = c->src + zp * plane;
        float wk = c->w[k];
        for (size_t i = 0; i < plane; i++)
            o[i] += wk * (a[i] + b[i]);
    }
}

static void set_kernel(gauss_ctx *c, double sigma_vox)
{
    double w[GAUSS_MAX_R + 1];
    c->r = gauss_kernel(sigma_vox, w, GAUSS_MAX_R);
    for (int k = 0; k <= c->r; k++)
        c->w[k] = (float)w[k];
}

covct_rc covct_filter_gaussian(const float *src, float *dst, float *tmp,
                               size_t nx, size_t ny, size_t nz,
                               const double spacing[3],
                               const double sigma_mm[3], unsigned threads,
                               covct_error *err)
{
    size_t n;
    if (!covct_mul_size(nx, ny, &n) || !covct_mul_size(n, nz, &n))
        return COVCT_ERR(err, COVCT_ERR_ARG, "gaussian: volume too large");
    if (n == 0)
        return COVCT_OK;
    for (int a = 0; a < 3; a++)
        if (!(spacing[a] > 0) || !(sigma_mm[a] >= 0) ||
            sigma_mm[a] / spacing[a] > GAUSS_MAX_R / 4.0 - 1)
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "gaussian: sigma %g mm on spacing %g mm along "
                             "axis %d is out of range",
                             sigma_mm[a], spacing[a], a);
    if (threads == 0)
        threads = covct_filter_threads();
    gauss_ctx *c = covct_malloc(sizeof *c);
    if (!c)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "gaussian: out of memory");
    c->nx = nx;
    c->ny = ny;
    c->nz = nz;
    c->scratch = NULL;

    /* x: src -> dst (row by row through a padded copy, so in place). */
    if (sigma_mm[0] > 0 && nx > 1) {
        set_kernel(c, sigma_mm[0] / spacing[0]);
        c->scratch = covct_malloc((size_t)threads *
                                  (nx + 2 * (size_t)c->r) * sizeof(float));
        if (!c->scratch) {
            covct_free(c);
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "gaussian: out of memory");
        }
        c->src = src;
        c->dst = dst;
        covct_filter_parallel(nz, gauss_x, c, threads);
        COVCT_FREE(c->scratch);
    } else if (src != dst) {
        memcpy(dst, src, n * sizeof *dst);
    }
    /* y: dst -> tmp; z: tmp -> dst. */
    float *cur = dst;
    if (sigma_mm[1] > 0 && ny > 1) {
        set_kernel(c, sigma_mm[1] / spacing[1]);
        c->src = dst;
        c->dst = tmp;
        covct_filter_parallel(nz, gauss_y, c, threads);
        cur = tmp;
    }
    if (sigma_mm[2] > 0 && nz > 1) {
        set_kernel(c, sigma_mm[2] / spacing[2]);
        if (cur == dst) {
            memcpy(tmp, dst, n * sizeof *dst);
            cur = tmp;
        }
        c->src = tmp;
        c->dst = dst;
        covct_filter_parallel(nz, gauss_z, c, threads);
        cur = dst;
    }
    if (cur == tmp)
        memcpy(dst, tmp, n * sizeof *dst);
    covct_free(c);
    return COVCT_OK;
}

/* ---- Hessian eigenvalues and Frangi vesselness ---------------------------- */

void covct_filter_eig3(const double h[6], double ev[3])
{
    double a11 = h[0], a22 = h[1], a33 = h[2];
    double a12 = h[3], a13 = h[4], a23 = h[5];
    double p1 = a12 * a12 + a13 * a13 + a23 * a23;
    double q = (a11 + a22 + a33) / 3;
    double d1 = a11 - q, d2 = a22 - q, d3 = a33 - q;
    double p2 = d1 * d1 + d2 * d2 + d3 * d3 + 2 * p1;
    double e[3];
    if (p2 <= 1e-30 * (q * q + 1e-30)) {
        e[0] = e[1] = e[2] = q;
    } else {
        /* Smith 1961: B = (A - qI)/p has eigenvalues 2 cos(phi + 2 pi k/3)
         * with cos(3 phi) = det(B)/2. */
        double p = sqrt(p2 / 6);
        double b11 = d1 / p, b22 = d2 / p, b33 = d3 / p;
        double b12 = a12 / p, b13 = a13 / p, b23 = a23 / p;
        double det = b11 * (b22 * b33 - b23 * b23) -
                     b12 * (b12 * b33 - b23 * b13) +
                     b13 * (b12 * b23 - b22 * b13);
        double r = det / 2;
        r = r < -1 ? -1 : r > 1 ? 1 : r;
        double phi = acos(r) / 3;
        e[0] = q + 2 * p * cos(phi);
        e[2] = q + 2 * p * cos(phi + 2.0943951023931957);
        e[1] = 3 * q - e[0] - e[2];
    }
    /* Sort by absolute value. */
    for (int i = 0; i < 2; i++)
        for (int j = i + 1; j < 3; j++)
            if (fabs(e[j]) < fabs(e[i])) {
                double t = e[i];
                e[i] = e[j];
                e[j] = t;
            }
    ev[0] = e[0];
    ev[1] = e[1];
    ev[2] = e[2];
}

double covct_filter_frangi(const double h[6], double alpha, double beta,
                           double c)
{
    double l[3];
    covct_filter_eig3(h, l);
    if (l[1] >= 0 || l[2] >= 0)
        return 0;
    double ra = fabs(l[1]) / fabs(l[2]);
    double rb = fabs(l[0]) / sqrt(fabs(l[1] * l[2]));
    double s2 = l[0] * l[0] + l[1] * l[1] + l[2] * l[2];
    return (1 - exp(-ra * ra / (2 * alpha * alpha))) *
           exp(-rb * rb / (2 * beta * beta)) * (1 - exp(-s2 / (2 * c * c)));
}

typedef struct vess_ctx {
    const float *g;
    const uint8_t *where;
    float *out;
    uint8_t *best;
    uint8_t scale_no;
    double max_off_mm;
    size_t nx, ny, nz;
    double sp[3];
    double norm; /* s^2 */
    double alpha, beta, c;
} vess_ctx;

static void vess_slice(void *p, size_t z, unsigned tid)
{
    (void)tid;
    vess_ctx *c = p;
    size_t nx = c->nx, ny = c->ny, nz = c->nz, plane = nx * ny;
    const float *g = c->g;
    size_t zm = z > 0 ? z - 1 : z, zp = z + 1 < nz ? z + 1 : z;
    double hz = (double)(zp - zm) * c->sp[2];
    for (size_t y = 0; y < ny; y++) {
        size_t ym = y > 0 ? y - 1 : y, yp = y + 1 < ny ? y + 1 : y;
        double hy = (double)(yp - ym) * c->sp[1];
        size_t row = z * plane + y * nx;
        for (size_t x = 0; x < nx; x++) {
            size_t i = row + x;
            if (!c->where[i])
                continue;
            size_t xm = x > 0 ? x - 1 : x, xp = x + 1 < nx ? x + 1 : x;
            double hx = (double)(xp - xm) * c->sp[0];
            double f = g[i];
            double h[6] = {0, 0, 0, 0, 0, 0};
            /* Second differences over the actual neighbour distances (one
             * voxel, or none at a clamped border). */
            if (hx > 0) {
                double dx = c->sp[0];
                h[0] = (g[row + xp] - 2 * f + g[row + xm]) / (dx * dx);
            }
            if (hy > 0) {
                double dy = c->sp[1];
                h[1] = (g[z * plane + yp * nx + x] - 2 * f +
                        g[z * plane + ym * nx + x]) / (dy * dy);
            }
            if (hz > 0) {
                double dz = c->sp[2];
                h[2] = (g[zp * plane + y * nx + x] - 2 * f +
                        g[zm * plane + y * nx + x]) / (dz * dz);
            }
            if (hx > 0 && hy > 0)
                h[3] = (g[z * plane + yp * nx + xp] - g[z * plane + ym * nx + xp] -
                        g[z * plane + yp * nx + xm] + g[z * plane + ym * nx + xm]) /
                       (hx * hy);
            if (hx > 0 && hz > 0)
                h[4] = (g[zp * plane + y * nx + xp] - g[zm * plane + y * nx + xp] -
                        g[zp * plane + y * nx + xm] + g[zm * plane + y * nx + xm]) /
                       (hx * hz);
            if (hy > 0 && hz > 0)
                h[5] = (g[zp * plane + yp * nx + x] - g[zm * plane + yp * nx + x] -
                        g[zp * plane + ym * nx + x] + g[zm * plane + ym * nx + x]) /
                       (hy * hz);
            if (c->max_off_mm > 0) {
                double gx = hx > 0 ? (g[row + xp] - g[row + xm]) / hx : 0;
                double gy = hy > 0 ? (g[z * plane + yp * nx + x] -
                                      g[z * plane + ym * nx + x]) / hy : 0;
                double gz = hz > 0 ? (g[zp * plane + y * nx + x] -
                                      g[zm * plane + y * nx + x]) / hz : 0;
                double l[3];
                covct_filter_eig3(h, l);
                double gn = sqrt(gx * gx + gy * gy + gz * gz);
                if (!(l[1] < 0) || gn > c->max_off_mm * fabs(l[1]))
                    continue;
            }
            for (int k = 0; k < 6; k++)
                h[k] *= c->norm;
            double v = covct_filter_frangi(h, c->alpha, c->beta, c->c);
            if (v > c->out[i]) {
                c->out[i] = (float)v;
                if (c->best)
                    c->best[i] = c->scale_no;
            }
        }
    }
}

covct_rc covct_filter_vesselness(const float *img, size_t nx, size_t ny,
                                 size_t nz, const double spacing[3],
                                 const covct_vesselness_params *p,
                                 const uint8_t *where, float *out,
                                 uint8_t *best, unsigned threads,
                                 covct_error *err)
{
    size_t n;
    if (!covct_mul_size(nx, ny, &n) || !covct_mul_size(n, nz, &n))
        return COVCT_ERR(err, COVCT_ERR_ARG, "vesselness: volume too large");
    if (!(p->alpha > 0) || !(p->beta > 0) || !(p->c > 0) || p->n_scales < 1)
        return COVCT_ERR(err, COVCT_ERR_ARG, "vesselness: bad parameters");
    if (p->n_scales > 250)
        return COVCT_ERR(err, COVCT_ERR_ARG, "vesselness: too many scales");
    memset(out, 0, n * sizeof *out);
    if (best)
        memset(best, 0, n);
    if (n == 0)
        return COVCT_OK;
    float *g = covct_malloc(n * sizeof *g);
    float *tmp = covct_malloc(n * sizeof *tmp);
    covct_rc rc = COVCT_OK;
    if (!g || !tmp) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                       "vesselness: cannot allocate 2 x %zu floats", n);
        goto done;
    }
    double prev = p->sigma0_mm > 0 ? p->sigma0_mm : 0;
    const float *src = img;
    for (int s = 0; s < p->n_scales; s++) {
        double sc = p->scales_mm[s];
        if (!(sc > prev)) {
            rc = COVCT_ERR(err, COVCT_ERR_ARG,
                           "vesselness: scale %g mm not above %g mm", sc,
                           prev);
            goto done;
        }
        /* Gaussians compose by adding variances: smooth the previous
         * scale by the difference instead of starting from the image. */
        double inc = sqrt(sc * sc - prev * prev);
        double sig[3] = {inc, inc, inc};
        rc = covct_filter_gaussian(src, g, tmp, nx, ny, nz, spacing, sig,
                                   threads, err);
        if (rc != COVCT_OK)
            goto done;
        src = g;
        prev = sc;
        vess_ctx c = {.g = g, .where = where, .out = out, .best = best,
                      .scale_no = (uint8_t)(s + 1),
                      .max_off_mm = p->max_offset * sc, .nx = nx,
                      .ny = ny, .nz = nz, .norm = sc * sc,
                      .alpha = p->alpha, .beta = p->beta, .c = p->c};
        memcpy(c.sp, spacing, sizeof c.sp);
        covct_filter_parallel(nz, vess_slice, &c, threads);
    }
done:
    covct_free(g);
    covct_free(tmp);
    return rc;
}

/* ---- Euclidean distance transform ----------------------------------------- */

typedef struct edt_ctx {
    float *d;
    size_t nx, ny, nz;
    double sp;
    int axis;
    double *scratch; /* per thread: f, dist (n each), z (n + 1), v (n) */
    size_t line;     /* longest line */
} edt_ctx;

/* Lower envelope of parabolas (Felzenszwalb & Huttenlocher), positions
 * q*s, in place on f[0..n-1]. */
static void edt_1d(double *f, size_t n, double s, double *d, double *zb,
                   size_t *v)
{
    size_t k = 0;
    v[0] = 0;
    zb[0] = -INFINITY;
    zb[1] = INFINITY;
    for (size_t q = 1; q < n; q++) {
        double sq = q * s;
        for (;;) {
            double sv = v[k] * s;
            double sx = ((f[q] + sq * sq) - (f[v[k]] + sv * sv)) /
                        (2 * (sq - sv));
            if (sx <= zb[k] && k > 0) {
                k--;
                continue;
            }
            if (sx <= zb[k]) {
                /* k == 0: the new parabola dominates everywhere. */
                v[0] = q;
                zb[0] = -INFINITY;
                zb[1] = INFINITY;
                break;
            }
            k++;
            v[k] = q;
            zb[k] = sx;
            zb[k + 1] = INFINITY;
            break;
        }
    }
    k = 0;
    for (size_t q = 0; q < n; q++) {
        while (zb[k + 1] < q * s)
            k++;
        double dq = ((double)q - (double)v[k]) * s;
        d[q] = dq * dq + f[v[k]];
    }
    memcpy(f, d, n * sizeof *f);
}

/* One line of the current pass: gather, envelope, scatter. */
static void edt_line(edt_ctx *c, size_t base, size_t len, size_t stride,
                     unsigned tid)
{
    double *f = c->scratch + (size_t)tid * (4 * c->line + 2);
    double *d = f + c->line;
    double *zb = d + c->line;
    size_t *v = (size_t *)(zb + c->line + 2);
    bool any = false;
    for (size_t q = 0; q < len; q++) {
        f[q] = c->d[base + q * stride];
        if (f[q] < COVCT_FILTER_FAR)
            any = true;
    }
    if (!any)
        return;
    edt_1d(f, len, c->sp, d, zb, v);
    for (size_t q = 0; q < len; q++)
        c->d[base + q * stride] =
            f[q] < COVCT_FILTER_FAR ? (float)f[q] : COVCT_FILTER_FAR;
}

/* Tasks are whole slices (x and y passes) or whole rows (z pass), so one
 * thread walks neighbouring columns and reuses their cache lines. */
static void edt_task(void *p, size_t t, unsigned tid)
{
    edt_ctx *c = p;
    size_t plane = c->nx * c->ny;
    if (c->axis == 0) {
        for (size_t y = 0; y < c->ny; y++)
            edt_line(c, t * plane + y * c->nx, c->nx, 1, tid);
    } else if (c->axis == 1) {
        for (size_t x = 0; x < c->nx; x++)
            edt_line(c, t * plane + x, c->ny, c->nx, tid);
    } else {
        for (size_t x = 0; x < c->nx; x++)
            edt_line(c, t * c->nx + x, c->nz, plane, tid);
    }
}

covct_rc covct_filter_edt_sq(const uint8_t *feature, size_t nx, size_t ny,
                             size_t nz, const double spacing[3], float *out,
                             unsigned threads, covct_error *err)
{
    size_t n;
    if (!covct_mul_size(nx, ny, &n) || !covct_mul_size(n, nz, &n))
        return COVCT_ERR(err, COVCT_ERR_ARG, "edt: volume too large");
    for (size_t i = 0; i < n; i++)
        out[i] = feature[i] ? 0.0f : COVCT_FILTER_FAR;
    return covct_filter_edt_sq_inplace(out, nx, ny, nz, spacing, threads,
                                       err);
}

covct_rc covct_filter_edt_sq_inplace(float *out, size_t nx, size_t ny,
                                     size_t nz, const double spacing[3],
                                     unsigned threads, covct_error *err)
{
    size_t n;
    if (!covct_mul_size(nx, ny, &n) || !covct_mul_size(n, nz, &n))
        return COVCT_ERR(err, COVCT_ERR_ARG, "edt: volume too large");
    if (n == 0)
        return COVCT_OK;
    if (threads == 0)
        threads = covct_filter_threads();
    size_t line = nx > ny ? nx : ny;
    line = line > nz ? line : nz;
    /* size_t and double are both 8 bytes on every platform covct builds
     * for; the v array shares the double scratch. */
    _Static_assert(sizeof(size_t) <= sizeof(double), "scratch layout");
    double *scratch = covct_malloc((size_t)threads * (4 * line + 2) *
                                   sizeof(double));
    if (!scratch)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "edt: out of memory");
    edt_ctx c = {.d = out, .nx = nx, .ny = ny, .nz = nz, .scratch = scratch,
                 .line = line};
    c.axis = 0;
    c.sp = spacing[0];
    covct_filter_parallel(nz, edt_task, &c, threads);
    c.axis = 1;
    c.sp = spacing[1];
    covct_filter_parallel(nz, edt_task, &c, threads);
    c.axis = 2;
    c.sp = spacing[2];
    covct_filter_parallel(ny, edt_task, &c, threads);
    covct_free(scratch);
    return COVCT_OK;
}
