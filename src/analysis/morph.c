/* Binary morphology on uint8 masks: connected components, hole filling,
 * distance transform, erosion and dilation.  See analysis_int.h. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "analysis/analysis_int.h"

/* ---- threads ------------------------------------------------------------ */

unsigned covct_morph_threads(void)
{
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    if (nc < 1)
        nc = 1;
    if (nc > 16)
        nc = 16;
    return (unsigned)nc;
}

typedef struct range_job {
    covct_morph_range_fn fn;
    void *ctx;
    uint32_t z0, z1;
    int rc;
} range_job;

static void *range_main(void *p)
{
    range_job *j = p;
    j->rc = j->fn(j->z0, j->z1, j->ctx);
    return NULL;
}

int covct_morph_parallel(uint32_t nz, covct_morph_range_fn fn, void *ctx)
{
    unsigned nt = covct_morph_threads();
    if (nt > nz)
        nt = nz;
    if (nt <= 1)
        return nz ? fn(0, nz, ctx) : 0;
    range_job jobs[16];
    pthread_t tid[16];
    bool started[16];
    for (unsigned t = 0; t < nt; t++) {
        jobs[t].fn = fn;
        jobs[t].ctx = ctx;
        jobs[t].z0 = (uint32_t)((uint64_t)nz * t / nt);
        jobs[t].z1 = (uint32_t)((uint64_t)nz * (t + 1) / nt);
        jobs[t].rc = 0;
        started[t] = false;
    }
    /* Thread 0's range runs on the calling thread; a range whose thread
     * cannot be created also runs here, so the result never depends on
     * thread creation. */
    for (unsigned t = 1; t < nt; t++)
        started[t] = pthread_create(&tid[t], NULL, range_main, &jobs[t]) == 0;
    range_main(&jobs[0]);
    int rc = jobs[0].rc;
    for (unsigned t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            range_main(&jobs[t]);
        rc |= jobs[t].rc;
    }
    return rc;
}

/* ---- union-find ------------------------------------------------------------
 * Roots are always the smallest index of their set, so parent[i] <= i and
 * a single increasing pass numbers the sets in order of first appearance. */

static uint32_t uf_find(uint32_t *p, uint32_t a)
{
    while (p[a] != a) {
        p[a] = p[p[a]];
        a = p[a];
    }
    return a;
}

static void uf_union(uint32_t *p, uint32_t a, uint32_t b)
{
    a = uf_find(p, a);
    b = uf_find(p, b);
    if (a < b)
        p[b] = a;
    else if (b < a)
        p[a] = b;
}

/* Replace p[i] for i in [lo, n) by the compact number (from 1) of its set;
 * returns the number of sets. */
static uint32_t uf_flatten(uint32_t *p, uint32_t lo, uint32_t n)
{
    uint32_t k = 0;
    for (uint32_t i = lo; i < n; i++) {
        if (p[i] == i)
            p[i] = ++k;
        else
            p[i] = p[p[i]]; /* p[i] < i was already numbered */
    }
    return k;
}

/* ---- 2-D labelling ------------------------------------------------------- */

size_t covct_morph_label2d_scratch(uint32_t w, uint32_t h)
{
    /* Provisional labels: at most one per pixel, plus the unused 0. */
    return (size_t)w * h + 1;
}

uint32_t covct_morph_label2d(const uint8_t *m, uint32_t w, uint32_t h,
                             bool conn8, uint32_t *lab, uint32_t *parent)
{
    uint32_t next = 1;
    parent[0] = 0;
    for (uint32_t y = 0; y < h; y++) {
        const uint8_t *mr = m + (size_t)y * w;
        uint32_t *lr = lab + (size_t)y * w;
        const uint32_t *up = y ? lr - w : NULL;
        for (uint32_t x = 0; x < w; x++) {
            if (!mr[x]) {
                lr[x] = 0;
                continue;
            }
            uint32_t l = x ? lr[x - 1] : 0;
            if (up) {
                uint32_t cand[3] = {up[x], 0, 0};
                if (conn8) {
                    cand[1] = x ? up[x - 1] : 0;
                    cand[2] = x + 1 < w ? up[x + 1] : 0;
                }
                for (int c = 0; c < 3; c++) {
                    if (!cand[c])
                        continue;
                    if (!l)
                        l = cand[c];
                    else if (cand[c] != l)
                        uf_union(parent, l, cand[c]);
                }
            }
            if (!l) {
                l = next++;
                parent[l] = l;
            }
            lr[x] = l;
        }
    }
    uint32_t n = uf_flatten(parent, 1, next);
    size_t np = (size_t)w * h;
    for (size_t i = 0; i < np; i++)
        lab[i] = parent[lab[i]];
    return n;
}

/* ---- 3-D labelling over runs ------------------------------------------------ */

void covct_morph_cc3_free(covct_cc3 *cc)
{
    if (!cc)
        return;
    COVCT_FREE(cc->stat);
    COVCT_FREE(cc->row);
    COVCT_FREE(cc->x0);
    COVCT_FREE(cc->x1);
    COVCT_FREE(cc->lab);
    cc->n = 0;
    cc->n_runs = 0;
}

static int grow_runs(covct_cc3 *cc, size_t *cap)
{
    size_t nc = *cap ? *cap * 2 : 4096;
    if (nc > UINT32_MAX)
        nc = UINT32_MAX;
    if (nc <= cc->n_runs)
        return -1;
    uint32_t *a = covct_realloc(cc->x0, nc * sizeof *a);
    if (!a)
        return -1;
    cc->x0 = a;
    a = covct_realloc(cc->x1, nc * sizeof *a);
    if (!a)
        return -1;
    cc->x1 = a;
    a = covct_realloc(cc->lab, nc * sizeof *a);
    if (!a)
        return -1;
    cc->lab = a;
    *cap = nc;
    return 0;
}

/* Union the runs of row a with those of row b that overlap them, where a
 * run [x0, x1) of b touches [x0 - e, x1 + e) of a (e 0: faces, 1: also
 * diagonal neighbours). */
static void join_rows(covct_cc3 *cc, uint32_t a0, uint32_t a1, uint32_t b0,
                      uint32_t b1, uint32_t e)
{
    uint32_t i = a0, j = b0;
    while (i < a1 && j < b1) {
        uint32_t s = cc->x0[i] >= e ? cc->x0[i] - e : 0;
        uint32_t t = cc->x1[i] + e;
        if (cc->x1[j] <= s) {
            j++;
            continue;
        }
        if (cc->x0[j] >= t) {
            i++;
            continue;
        }
        uf_union(cc->lab, i, j);
        /* Advance the one that ends first. */
        if (cc->x1[j] < t)
            j++;
        else
            i++;
    }
}

covct_rc covct_morph_cc3(const uint8_t *mask, uint32_t nx, uint32_t ny,
                         uint32_t nz, int conn, covct_cc3 *cc,
                         covct_error *err)
{
    memset(cc, 0, sizeof *cc);
    cc->nx = nx;
    cc->ny = ny;
    cc->nz = nz;
    cc->conn = conn;
    size_t nrows = (size_t)ny * nz, cap = 0;
    cc->row = covct_malloc((nrows + 1) * sizeof *cc->row);
    if (!cc->row)
        goto nomem;
    /* Runs along x, row by row, and the unions with earlier rows. */
    for (size_t r = 0; r < nrows; r++) {
        const uint8_t *m = mask + r * nx;
        cc->row[r] = (uint32_t)cc->n_runs;
        uint32_t x = 0;
        while (x < nx) {
            while (x < nx && !m[x])
                x++;
            if (x >= nx)
                break;
            uint32_t s = x;
            while (x < nx && m[x])
                x++;
            if (cc->n_runs >= cap && grow_runs(cc, &cap) != 0)
                goto nomem;
            cc->x0[cc->n_runs] = s;
            cc->x1[cc->n_runs] = x;
            cc->lab[cc->n_runs] = (uint32_t)cc->n_runs;
            cc->n_runs++;
        }
        uint32_t a0 = cc->row[r], a1 = (uint32_t)cc->n_runs;
        if (a0 == a1)
            continue;
        uint32_t y = (uint32_t)(r % ny), z = (uint32_t)(r / ny);
        uint32_t e = conn == 26 ? 1 : 0;
        if (y > 0)
            join_rows(cc, a0, a1, cc->row[r - 1], a0, e);
        if (z > 0) {
            size_t q = r - ny;
            if (conn == 26) {
                for (int dy = -1; dy <= 1; dy++) {
                    if ((dy < 0 && y == 0) || (dy > 0 && y + 1 >= ny))
                        continue;
                    size_t qq = q + (size_t)(ptrdiff_t)dy;
                    join_rows(cc, a0, a1, cc->row[qq], cc->row[qq + 1], 1);
                }
            } else {
                join_rows(cc, a0, a1, cc->row[q], cc->row[q + 1], 0);
            }
        }
    }
    cc->row[nrows] = (uint32_t)cc->n_runs;
    cc->n = uf_flatten(cc->lab, 0, (uint32_t)cc->n_runs);
    cc->stat = covct_calloc((size_t)cc->n + 1, sizeof *cc->stat);
    if (!cc->stat)
        goto nomem;
    for (uint32_t l = 1; l <= cc->n; l++) {
        cc->stat[l].lo[0] = cc->stat[l].lo[1] = cc->stat[l].lo[2] = UINT32_MAX;
    }
    for (size_t r = 0; r < nrows; r++) {
        uint32_t y = (uint32_t)(r % ny), z = (uint32_t)(r / ny);
        for (uint32_t i = cc->row[r]; i < cc->row[r + 1]; i++) {
            covct_cc3_stat *st = &cc->stat[cc->lab[i]];
            uint64_t len = cc->x1[i] - cc->x0[i];
            st->size += len;
            st->sum[0] += (uint64_t)(cc->x0[i] + cc->x1[i] - 1) * len / 2;
            st->sum[1] += (uint64_t)y * len;
            st->sum[2] += (uint64_t)z * len;
            if (cc->x0[i] < st->lo[0])
                st->lo[0] = cc->x0[i];
            if (cc->x1[i] - 1 > st->hi[0])
                st->hi[0] = cc->x1[i] - 1;
            if (y < st->lo[1])
                st->lo[1] = y;
            if (y > st->hi[1])
                st->hi[1] = y;
            if (z < st->lo[2])
                st->lo[2] = z;
            if (z > st->hi[2])
                st->hi[2] = z;
        }
    }
    return COVCT_OK;
nomem:
    covct_morph_cc3_free(cc);
    return COVCT_ERR(err, COVCT_ERR_NOMEM,
                     "out of memory labelling components of %ux%ux%u", nx,
                     ny, nz);
}

void covct_morph_cc3_slice(const covct_cc3 *cc, uint32_t z, uint32_t *lab)
{
    memset(lab, 0, (size_t)cc->nx * cc->ny * sizeof *lab);
    for (uint32_t y = 0; y < cc->ny; y++) {
        size_t r = (size_t)z * cc->ny + y;
        uint32_t *l = lab + (size_t)y * cc->nx;
        for (uint32_t i = cc->row[r]; i < cc->row[r + 1]; i++)
            for (uint32_t x = cc->x0[i]; x < cc->x1[i]; x++)
                l[x] = cc->lab[i];
    }
}

void covct_morph_cc3_relabel(const covct_cc3 *cc, const uint8_t *value,
                             uint8_t *out)
{
    size_t nrows = (size_t)cc->ny * cc->nz;
    memset(out, 0, nrows * cc->nx);
    for (size_t r = 0; r < nrows; r++) {
        uint8_t *o = out + r * cc->nx;
        for (uint32_t i = cc->row[r]; i < cc->row[r + 1]; i++) {
            uint8_t v = value[cc->lab[i]];
            if (v)
                memset(o + cc->x0[i], v, cc->x1[i] - cc->x0[i]);
        }
    }
}

void covct_morph_cc3_labels(const covct_cc3 *cc, uint32_t *labels)
{
    for (uint32_t z = 0; z < cc->nz; z++)
        covct_morph_cc3_slice(cc, z, labels + (size_t)z * cc->nx * cc->ny);
}

covct_rc covct_morph_keep_largest(uint8_t *mask, uint32_t nx, uint32_t ny,
                                  uint32_t nz, int conn, uint64_t *kept,
                                  covct_error *err)
{
    covct_cc3 cc;
    covct_rc rc = covct_morph_cc3(mask, nx, ny, nz, conn, &cc, err);
    if (rc != COVCT_OK)
        return rc;
    uint32_t best = 0;
    for (uint32_t l = 1; l <= cc.n; l++)
        if (!best || cc.stat[l].size > cc.stat[best].size)
            best = l;
    uint8_t *val = covct_calloc((size_t)cc.n + 1, 1);
    if (!val) {
        covct_morph_cc3_free(&cc);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    if (best)
        val[best] = 1;
    if (kept)
        *kept = best ? cc.stat[best].size : 0;
    covct_morph_cc3_relabel(&cc, val, mask);
    covct_free(val);
    covct_morph_cc3_free(&cc);
    return COVCT_OK;
}

/* ---- hole filling ---------------------------------------------------------- */

void covct_morph_fill_holes_slice(uint8_t *m, uint32_t w, uint32_t h,
                                  uint8_t value, uint32_t *stack)
{
    /* Mark the background reachable from the border with 2 in a scan over
     * a private copy would cost a slice; instead background reached is
     * tagged in place with the value 0xFF and restored at the end. */
    const uint8_t REACHED = 0xFF;
    size_t sp = 0;
#define PUSH(i)                                                           \
    do {                                                                  \
        if (!m[i]) {                                                      \
            m[i] = REACHED;                                               \
            stack[sp++] = (uint32_t)(i);                                  \
        }                                                                 \
    } while (0)
    for (uint32_t x = 0; x < w; x++) {
        PUSH(x);
        PUSH((size_t)(h - 1) * w + x);
    }
    for (uint32_t y = 0; y < h; y++) {
        PUSH((size_t)y * w);
        PUSH((size_t)y * w + w - 1);
    }
    while (sp) {
        uint32_t i = stack[--sp];
        uint32_t x = i % w, y = i / w;
        if (x > 0)
            PUSH(i - 1);
        if (x + 1 < w)
            PUSH(i + 1);
        if (y > 0)
            PUSH(i - w);
        if (y + 1 < h)
            PUSH(i + w);
    }
#undef PUSH
    size_t np = (size_t)w * h;
    for (size_t i = 0; i < np; i++) {
        if (m[i] == REACHED)
            m[i] = 0;
        else if (!m[i])
            m[i] = value;
    }
}

typedef struct holes_job {
    uint8_t *mask;
    uint32_t nx, ny;
    uint8_t value;
} holes_job;

static int holes_range(uint32_t z0, uint32_t z1, void *ctx)
{
    holes_job *j = ctx;
    size_t np = (size_t)j->nx * j->ny;
    uint32_t *stack = covct_malloc(np * sizeof *stack);
    if (!stack)
        return 1;
    for (uint32_t z = z0; z < z1; z++)
        covct_morph_fill_holes_slice(j->mask + np * z, j->nx, j->ny,
                                     j->value, stack);
    covct_free(stack);
    return 0;
}

covct_rc covct_morph_fill_holes2d(uint8_t *mask, uint32_t nx, uint32_t ny,
                                  uint32_t nz, uint8_t value,
                                  covct_error *err)
{
    holes_job j = {mask, nx, ny, value};
    if (covct_morph_parallel(nz, holes_range, &j) != 0)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory filling holes");
    return COVCT_OK;
}

covct_rc covct_morph_fill_holes3d(uint8_t *mask, uint32_t nx, uint32_t ny,
                                  uint32_t nz, bool z_faces,
                                  covct_error *err)
{
    size_t n = (size_t)nx * ny * nz;
    uint8_t *inv = covct_malloc(n);
    if (!inv)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory filling holes");
    for (size_t i = 0; i < n; i++)
        inv[i] = !mask[i];
    covct_cc3 cc;
    covct_rc rc = covct_morph_cc3(inv, nx, ny, nz, 6, &cc, err);
    covct_free(inv);
    if (rc != COVCT_OK)
        return rc;
    uint8_t *val = covct_calloc((size_t)cc.n + 1, 1);
    if (!val) {
        covct_morph_cc3_free(&cc);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory filling holes");
    }
    for (uint32_t l = 1; l <= cc.n; l++) {
        const covct_cc3_stat *s = &cc.stat[l];
        bool border = s->lo[0] == 0 || s->hi[0] + 1 == nx || s->lo[1] == 0 ||
                      s->hi[1] + 1 == ny;
        if (z_faces && (s->lo[2] == 0 || s->hi[2] + 1 == nz))
            border = true;
        val[l] = border ? 0 : 1;
    }
    /* Write the holes into the mask: relabel into a scratch would need a
     * volume; walk the runs instead. */
    for (size_t r = 0; r < (size_t)ny * nz; r++)
        for (uint32_t i = cc.row[r]; i < cc.row[r + 1]; i++)
            if (val[cc.lab[i]])
                memset(mask + r * nx + cc.x0[i], 1, cc.x1[i] - cc.x0[i]);
    covct_free(val);
    covct_morph_cc3_free(&cc);
    return COVCT_OK;
}

/* ---- distance transform ---------------------------------------------------- */

size_t covct_morph_edt2d_scratch(uint32_t w, uint32_t h)
{
    size_t m = w > h ? w : h;
    /* g (the column pass result, w*h), then f, d, z (m + 1) and v. */
    return (size_t)w * h + 4 * (m + 1) + 2;
}

/* Felzenszwalb & Huttenlocher (2012), 1-D squared distance of sampled
 * function f with sample spacing s: d[q] = min_p f[p] + (s (q - p))^2. */
static void edt1d(const double *f, uint32_t n, double s2, double *d,
                  double *zb, uint32_t *v)
{
    uint32_t k = 0;
    /* Skip leading infinite samples: they never form the lower envelope. */
    uint32_t q0 = 0;
    while (q0 < n && f[q0] >= DBL_MAX)
        q0++;
    if (q0 == n) {
        for (uint32_t q = 0; q < n; q++)
            d[q] = DBL_MAX;
        return;
    }
    v[0] = q0;
    zb[0] = -DBL_MAX;
    zb[1] = DBL_MAX;
    for (uint32_t q = q0 + 1; q < n; q++) {
        if (f[q] >= DBL_MAX)
            continue;
        double sq;
        for (;;) {
            uint32_t p = v[k];
            sq = ((f[q] + s2 * (double)q * q) - (f[p] + s2 * (double)p * p)) /
                 (2.0 * s2 * ((double)q - p));
            if (sq <= zb[k] && k > 0)
                k--;
            else
                break;
        }
        if (sq <= zb[k]) { /* k == 0 and the new parabola wins everywhere */
            v[0] = q;
            zb[0] = -DBL_MAX;
            zb[1] = DBL_MAX;
            continue;
        }
        k++;
        v[k] = q;
        zb[k] = sq;
        zb[k + 1] = DBL_MAX;
    }
    k = 0;
    for (uint32_t q = 0; q < n; q++) {
        while (zb[k + 1] < (double)q)
            k++;
        double dq = (double)q - v[k];
        d[q] = s2 * dq * dq + f[v[k]];
    }
}

void covct_morph_edt2d(const uint8_t *m, uint32_t w, uint32_t h, double sx,
                       double sy, float *out, double *scratch)
{
    size_t mx = w > h ? w : h;
    double *g = scratch;
    double *f = g + (size_t)w * h;
    double *d = f + mx + 1;
    double *zb = d + mx + 1;
    uint32_t *v = (uint32_t *)(zb + mx + 2);
    /* v needs mx uint32 = mx/2 doubles: fits in the last (mx + 1) block. */
    double sx2 = sx * sx, sy2 = sy * sy;
    /* Columns: squared distance along y to the nearest unset pixel. */
    for (uint32_t x = 0; x < w; x++) {
        for (uint32_t y = 0; y < h; y++)
            f[y] = m[(size_t)y * w + x] ? DBL_MAX : 0.0;
        edt1d(f, h, sy2, d, zb, v);
        for (uint32_t y = 0; y < h; y++)
            g[(size_t)y * w + x] = d[y];
    }
    /* Rows. */
    for (uint32_t y = 0; y < h; y++) {
        edt1d(g + (size_t)y * w, w, sx2, d, zb, v);
        float *o = out + (size_t)y * w;
        for (uint32_t x = 0; x < w; x++)
            o[x] = d[x] >= DBL_MAX ? FLT_MAX : (float)sqrt(d[x]);
    }
}

/* Bounding box of set (want 1) or unset (want 0) pixels of a slice;
 * false when there are none. */
static bool slice_bbox(const uint8_t *m, uint32_t w, uint32_t h, int want,
                       uint32_t *x0, uint32_t *x1, uint32_t *y0, uint32_t *y1)
{
    uint32_t lx = w, hx = 0, ly = h, hy = 0;
    for (uint32_t y = 0; y < h; y++) {
        const uint8_t *r = m + (size_t)y * w;
        uint32_t a = 0;
        while (a < w && (r[a] != 0) != want)
            a++;
        if (a == w)
            continue;
        uint32_t b = w - 1;
        while ((r[b] != 0) != want)
            b--;
        if (a < lx)
            lx = a;
        if (b > hx)
            hx = b;
        if (y < ly)
            ly = y;
        hy = y;
    }
    if (lx > hx)
        return false;
    *x0 = lx;
    *x1 = hx + 1;
    *y0 = ly;
    *y1 = hy + 1;
    return true;
}

/* Distance job over a crop of each slice. mode 0: u8 half-mm inside
 * distance; 1: erosion by r; 2: dilation by r. */
typedef struct edt_job {
    uint8_t *mask;
    uint8_t *out;
    uint32_t nx, ny;
    double sx, sy, r;
    int mode;
} edt_job;

static int edt_range(uint32_t z0, uint32_t z1, void *ctx)
{
    edt_job *j = ctx;
    size_t np = (size_t)j->nx * j->ny;
    uint8_t *crop = covct_malloc(np);
    float *dist = covct_malloc(np * sizeof *dist);
    double *scr = covct_malloc(covct_morph_edt2d_scratch(j->nx, j->ny) *
                               sizeof *scr);
    if (!crop || !dist || !scr) {
        covct_free(crop);
        covct_free(dist);
        covct_free(scr);
        return 1;
    }
    /* Margin of the crop in pixels for dilation: beyond it no pixel is
     * within r of the set pixels. */
    uint32_t mx = 1, my = 1;
    if (j->mode == 2) {
        mx = (uint32_t)fmin(j->nx, ceil(j->r / j->sx) + 1);
        my = (uint32_t)fmin(j->ny, ceil(j->r / j->sy) + 1);
    }
    for (uint32_t z = z0; z < z1; z++) {
        uint8_t *m = j->mask + np * z;
        uint8_t *o = j->out ? j->out + np * z : NULL;
        uint32_t x0, x1, y0, y1;
        if (!slice_bbox(m, j->nx, j->ny, 1, &x0, &x1, &y0, &y1)) {
            if (o)
                memset(o, 0, np);
            continue;
        }
        x0 = x0 > mx ? x0 - mx : 0;
        y0 = y0 > my ? y0 - my : 0;
        x1 = x1 + mx < j->nx ? x1 + mx : j->nx;
        y1 = y1 + my < j->ny ? y1 + my : j->ny;
        uint32_t w = x1 - x0, h = y1 - y0;
        /* The crop holds what the distance is measured from: set pixels
         * for inside distances, unset pixels for dilation. */
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++) {
                uint8_t s = m[(size_t)(y + y0) * j->nx + x + x0] != 0;
                crop[(size_t)y * w + x] = j->mode == 2 ? !s : s;
            }
        covct_morph_edt2d(crop, w, h, j->sx, j->sy, dist, scr);
        if (j->mode == 0) {
            memset(o, 0, np);
            for (uint32_t y = 0; y < h; y++)
                for (uint32_t x = 0; x < w; x++) {
                    float dv = dist[(size_t)y * w + x] * 2.0f;
                    o[(size_t)(y + y0) * j->nx + x + x0] =
                        dv >= 255.0f ? 255 : (uint8_t)(dv + 0.5f);
                }
        } else if (j->mode == 1) {
            /* Pixels beyond the slice count as set: a set pixel at the
             * crop border whose only unset neighbours are off-slice keeps
             * FLT_MAX-like distances only if the crop reaches the border;
             * the crop margin of 1 keeps real unset pixels inside it. */
            float r = (float)j->r;
            for (uint32_t y = 0; y < h; y++)
                for (uint32_t x = 0; x < w; x++)
                    if (dist[(size_t)y * w + x] <= r)
                        m[(size_t)(y + y0) * j->nx + x + x0] = 0;
        } else {
            float r = (float)j->r;
            for (uint32_t y = 0; y < h; y++)
                for (uint32_t x = 0; x < w; x++)
                    if (dist[(size_t)y * w + x] <= r)
                        m[(size_t)(y + y0) * j->nx + x + x0] = 1;
        }
    }
    covct_free(crop);
    covct_free(dist);
    covct_free(scr);
    return 0;
}

covct_rc covct_morph_edt2d_u8(const uint8_t *mask, uint32_t nx, uint32_t ny,
                              uint32_t nz, double sx, double sy,
                              uint8_t *out_half_mm, covct_error *err)
{
    edt_job j = {(uint8_t *)(uintptr_t)mask, out_half_mm, nx, ny, sx, sy, 0,
                 0};
    if (covct_morph_parallel(nz, edt_range, &j) != 0)
        return COVCT_ERR(err, COVCT_ERR_NOMEM,
                         "out of memory in the distance transform");
    return COVCT_OK;
}

covct_rc covct_morph_erode2d(uint8_t *mask, uint32_t nx, uint32_t ny,
                             uint32_t nz, double sx, double sy, double r_mm,
                             covct_error *err)
{
    edt_job j = {mask, NULL, nx, ny, sx, sy, r_mm, 1};
    if (covct_morph_parallel(nz, edt_range, &j) != 0)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory in erosion");
    return COVCT_OK;
}

covct_rc covct_morph_dilate2d(uint8_t *mask, uint32_t nx, uint32_t ny,
                              uint32_t nz, double sx, double sy, double r_mm,
                              covct_error *err)
{
    edt_job j = {mask, NULL, nx, ny, sx, sy, r_mm, 2};
    if (covct_morph_parallel(nz, edt_range, &j) != 0)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory in dilation");
    return COVCT_OK;
}

/* ---- box erosion and dilation ------------------------------------------------ */

/* 1-D dilation of a strided line by radius r (in place, via buf). */
static void dilate_line(uint8_t *p, size_t n, size_t stride, uint32_t r,
                        uint8_t *buf)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = p[i * stride] != 0;
    /* Distance to the last set sample on the left and on the right. */
    size_t last = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        if (buf[i])
            last = i;
        p[i * stride] = last != SIZE_MAX && i - last <= r;
    }
    last = SIZE_MAX;
    for (size_t i = n; i-- > 0;) {
        if (buf[i])
            last = i;
        if (last != SIZE_MAX && last - i <= r)
            p[i * stride] = 1;
    }
}

static covct_rc box(uint8_t *mask, uint32_t nx, uint32_t ny, uint32_t nz,
                    uint32_t rx, uint32_t ry, uint32_t rz, bool erode,
                    covct_error *err)
{
    size_t n = (size_t)nx * ny * nz;
    size_t mx = nx > ny ? nx : ny;
    if (nz > mx)
        mx = nz;
    uint8_t *buf = covct_malloc(mx);
    if (!buf)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory in morphology");
    /* Erosion is the dilation of the complement; the border counts as set
     * because the complement's outside is empty. */
    if (erode)
        for (size_t i = 0; i < n; i++)
            mask[i] = !mask[i];
    size_t sxy = (size_t)nx * ny;
    if (rx)
        for (size_t r = 0; r < (size_t)ny * nz; r++)
            dilate_line(mask + r * nx, nx, 1, rx, buf);
    if (ry)
        for (uint32_t z = 0; z < nz; z++)
            for (uint32_t x = 0; x < nx; x++)
                dilate_line(mask + sxy * z + x, ny, nx, ry, buf);
    if (rz)
        for (size_t i = 0; i < sxy; i++)
            dilate_line(mask + i, nz, sxy, rz, buf);
    if (erode)
        for (size_t i = 0; i < n; i++)
            mask[i] = !mask[i];
    covct_free(buf);
    return COVCT_OK;
}

covct_rc covct_morph_dilate_box(uint8_t *mask, uint32_t nx, uint32_t ny,
                                uint32_t nz, uint32_t rx, uint32_t ry,
                                uint32_t rz, covct_error *err)
{
    return box(mask, nx, ny, nz, rx, ry, rz, false, err);
}

covct_rc covct_morph_erode_box(uint8_t *mask, uint32_t nx, uint32_t ny,
                               uint32_t nz, uint32_t rx, uint32_t ry,
                               uint32_t rz, covct_error *err)
{
    return box(mask, nx, ny, nz, rx, ry, rz, true, err);
}

/* ---- 3-D ball closing ---------------------------------------------------------- */

/* Squared 3-D distance (mm2) from each voxel to the nearest voxel whose
 * mask value is `want` (0 or 1), separable: rows, columns, then along z.
 * With `edge`, the voxels beyond the grid count as such voxels too (each
 * 1-D line is padded with one at both ends). */
typedef struct ball_job {
    const uint8_t *mask;
    float *g;
    uint32_t nx, ny, nz;
    double s2[3];
    int want;
    bool edge;
} ball_job;

/* One padded 1-D pass over n samples read and written with `stride`. */
static void sq_line(float *p, size_t n, size_t stride, double s2, bool edge,
                    double *f, double *d, double *zb, uint32_t *v)
{
    uint32_t o = edge ? 1 : 0, m = (uint32_t)n + 2 * o;
    if (edge)
        f[0] = f[m - 1] = 0.0;
    for (size_t i = 0; i < n; i++) {
        float x = p[i * stride];
        f[i + o] = x >= FLT_MAX ? DBL_MAX : (double)x;
    }
    edt1d(f, m, s2, d, zb, v);
    for (size_t i = 0; i < n; i++) {
        double x = d[i + o];
        p[i * stride] = x >= (double)FLT_MAX ? FLT_MAX : (float)x;
    }
}

static bool line_alloc(size_t n, double **buf, uint32_t **v)
{
    *buf = covct_malloc(3 * (n + 3) * sizeof **buf);
    *v = covct_malloc((n + 3) * sizeof **v);
    return *buf && *v;
}

static int ball_xy_range(uint32_t z0, uint32_t z1, void *p)
{
    ball_job *j = p;
    size_t np = (size_t)j->nx * j->ny, mx = j->nx > j->ny ? j->nx : j->ny;
    double *b;
    uint32_t *v;
    int rc = 1;
    if (!line_alloc(mx, &b, &v))
        goto done;
    for (uint32_t z = z0; z < z1; z++) {
        float *g = j->g + np * z;
        const uint8_t *m = j->mask + np * z;
        /* Rows: the input is binary, so two sweeps give the distance to
         * the nearest wanted voxel of the row (no parabolas needed). */
        for (uint32_t y = 0; y < j->ny; y++) {
            const uint8_t *r = m + (size_t)y * j->nx;
            float *o = g + (size_t)y * j->nx;
            int64_t n = j->nx, last = j->edge ? -1 : INT64_MIN / 2;
            for (int64_t x = 0; x < n; x++) {
                if ((r[x] != 0) == j->want)
                    last = x;
                double d = (double)(x - last);
                o[x] = last == INT64_MIN / 2 ? FLT_MAX
                                              : (float)(d * d * j->s2[0]);
            }
            last = j->edge ? n : INT64_MAX / 2;
            for (int64_t x = n; x-- > 0;) {
                if ((r[x] != 0) == j->want)
                    last = x;
                if (last != INT64_MAX / 2) {
                    double d = (double)(last - x);
                    float f = (float)(d * d * j->s2[0]);
                    if (f < o[x])
                        o[x] = f;
                }
            }
        }
        for (uint32_t x = 0; x < j->nx; x++)
            sq_line(g + x, j->ny, j->nx, j->s2[1], j->edge, b, b + mx + 3,
                    b + 2 * (mx + 3), v);
    }
    rc = 0;
done:
    covct_free(b);
    covct_free(v);
    return rc;
}

static int ball_z_range(uint32_t y0, uint32_t y1, void *p)
{
    ball_job *j = p;
    size_t np = (size_t)j->nx * j->ny, n = j->nz, nx = j->nx;
    double *b;
    uint32_t *v;
    /* The lines along z of one row y, transposed so each is contiguous:
     * reading and writing whole rows keeps the strided access cheap. */
    float *t = covct_malloc(nx * n * sizeof *t);
    int rc = 1;
    if (!line_alloc(n, &b, &v) || !t)
        goto done;
    for (uint32_t y = y0; y < y1; y++) {
        for (size_t z = 0; z < n; z++) {
            const float *r = j->g + np * z + (size_t)y * nx;
            for (size_t x = 0; x < nx; x++)
                t[x * n + z] = r[x];
        }
        for (size_t x = 0; x < nx; x++)
            sq_line(t + x * n, n, 1, j->s2[2], j->edge, b, b + n + 3,
                    b + 2 * (n + 3), v);
        for (size_t z = 0; z < n; z++) {
            float *r = j->g + np * z + (size_t)y * nx;
            for (size_t x = 0; x < nx; x++)
                r[x] = t[x * n + z];
        }
    }
    rc = 0;
done:
    covct_free(b);
    covct_free(v);
    covct_free(t);
    return rc;
}

/* Dilation (grow) or erosion of mask by the ball, in place, through g. */
static int ball_pass(uint8_t *mask, float *g, uint32_t nx, uint32_t ny,
                     uint32_t nz, const double sp[3], double r, bool grow)
{
    ball_job j = {mask, g, nx, ny, nz,
                  {sp[0] * sp[0], sp[1] * sp[1], sp[2] * sp[2]},
                  grow ? 1 : 0, !grow};
    if (covct_morph_parallel(nz, ball_xy_range, &j) != 0 ||
        covct_morph_parallel(ny, ball_z_range, &j) != 0)
        return 1;
    float r2 = (float)(r * r);
    size_t n = (size_t)nx * ny * nz;
    for (size_t i = 0; i < n; i++)
        if (g[i] <= r2)
            mask[i] = grow ? 1 : 0;
    return 0;
}

covct_rc covct_morph_close_ball(uint8_t *mask, uint32_t nx, uint32_t ny,
                                uint32_t nz, const double sp[3], double r_mm,
                                covct_error *err)
{
    size_t n = (size_t)nx * ny * nz;
    if (n == 0)
        return COVCT_OK;
    for (size_t i = 0; i < n; i++)
        mask[i] = mask[i] != 0;
    float *g = covct_malloc(n * sizeof *g);
    if (!g || ball_pass(mask, g, nx, ny, nz, sp, r_mm, true) ||
        ball_pass(mask, g, nx, ny, nz, sp, r_mm, false)) {
        covct_free(g);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory in closing");
    }
    covct_free(g);
    return COVCT_OK;
}
