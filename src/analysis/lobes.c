/*
 * Lobes: an anatomical model of the fissures, placed in each lung by its
 * own extent and volume.  See docs/internals/lobes.md for the reasoning,
 * the numbers and what the model cannot do.
 *
 * In the sagittal plane of each lung (patient y, z; LPS: +y posterior,
 * +z head) the oblique fissure is modelled as the plane
 *
 *     z = c + slope * y
 *
 * rising from the anterior base to the posterior lung at about T4-T5.  The
 * slope comes from the lung's extent (posterior end at POST_H of the lung
 * height, anterior end at ANT_H); the offset c is chosen so that the lower
 * lobe holds its typical share of the lung's volume, then clamped so that
 * the fissure meets the posterior lung within the anatomical band
 * POST_H_MIN..POST_H_MAX whatever the volume says.  On the right, the
 * horizontal fissure is the plane z = z_h in front of (above) the oblique
 * fissure, placed the same way: the middle lobe takes its typical share,
 * clamped to HORIZ_H_MIN..HORIZ_H_MAX of the lung height.
 *
 * Cost: four passes over the lungs' bounding box, histograms of a few
 * thousand bins, no per-voxel temporaries.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "covct/analysis.h"
#include "filters_int.h"

/* Model constants; heights are fractions of the lung's height (0 base,
 * 1 apex), depths fractions of its antero-posterior depth. */
/* Oblique fissure: posteriorly at T4-T5, about 0.6 of the way up from
 * the posterior costophrenic recess to the apex; anteriorly it reaches the
 * diaphragm. */
#define POST_H 0.62
#define ANT_H 0.0
/* Band in which the oblique fissure may meet the posterior lung. */
#define POST_H_MIN 0.45
#define POST_H_MAX 0.85
/* Horizontal fissure (4th costal cartilage anteriorly): band of heights. */
#define HORIZ_H_MIN 0.30
#define HORIZ_H_MAX 0.70
/* Typical shares of lung volume in healthy adults (approximate, CT
 * volumetry: RUL ~20 %, RML ~8.5 %, RLL ~25 %, LUL ~23 %, LLL ~22 % of
 * both lungs), here as fractions of their own lung. */
#define RLL_OF_RIGHT 0.47
#define RML_OF_RIGHT 0.16
#define LLL_OF_LEFT 0.49
/* Slope bounds (dz/dy): the fissure is never flatter than ~27 degrees or
 * steeper than ~56 degrees from the axial plane. */
#define SLOPE_MIN 0.5
#define SLOPE_MAX 1.5
/* Robust extent: ignore this fraction of voxels at each end. */
#define EXTENT_TAIL 0.002
/* Histogram bins at most; a larger range gets wider bins. */
#define MAX_BINS 8192

typedef struct hist {
    double lo, w; /* bin b covers [lo + b w, lo + (b+1) w) */
    uint32_t n;
    uint64_t *count;
    uint64_t total;
} hist;

typedef struct box {
    uint32_t i0, i1, j0, j1, k0, k1; /* inclusive voxel bounds */
    bool any;
} box;

static double coord(const double a[4][4], int row, double i, double j,
                    double k)
{
    return a[row][0] * i + a[row][1] * j + a[row][2] * k + a[row][3];
}

/* Range of a linear function of the voxel index over the volume: its
 * extremes are at the corners. */
static void corner_range(const covct_volume *v, const double f[4],
                         double *mn, double *mx)
{
    *mn = INFINITY;
    *mx = -INFINITY;
    for (int c = 0; c < 8; c++) {
        double i = (c & 1) ? v->nx - 1.0 : 0, j = (c & 2) ? v->ny - 1.0 : 0;
        double k = (c & 4) ? v->nz - 1.0 : 0;
        double val = f[0] * i + f[1] * j + f[2] * k + f[3];
        if (val < *mn)
            *mn = val;
        if (val > *mx)
            *mx = val;
    }
}

static covct_rc hist_init(hist *h, double lo, double hi, double w,
                          covct_error *err)
{
    if (!(hi >= lo) || !isfinite(lo) || !isfinite(hi))
        return COVCT_ERR(err, COVCT_ERR_ARG, "lobes: bad coordinate range");
    if (!(w > 0))
        w = 1;
    double nb = (hi - lo) / w + 3;
    if (nb > MAX_BINS) {
        w = (hi - lo) / (MAX_BINS - 3);
        nb = MAX_BINS;
    }
    h->lo = lo - w;
    h->w = w;
    h->n = (uint32_t)nb;
    h->total = 0;
    h->count = covct_calloc(h->n, sizeof *h->count);
    if (!h->count)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "lobes: out of memory");
    return COVCT_OK;
}

static void hist_add(hist *h, double x)
{
    double b = floor((x - h->lo) / h->w);
    uint32_t bi = b < 0 ? 0 : b >= h->n ? h->n - 1 : (uint32_t)b;
    h->count[bi]++;
    h->total++;
}

/* Value below which fraction q of the samples lie (upper edge of the bin
 * where the cumulative count reaches q). */
static double hist_quantile(const hist *h, double q)
{
    if (h->total == 0)
        return h->lo;
    double want = q * (double)h->total;
    uint64_t cum = 0;
    for (uint32_t b = 0; b < h->n; b++) {
        cum += h->count[b];
        if ((double)cum >= want)
            return h->lo + (b + 1) * h->w;
    }
    return h->lo + h->n * h->w;
}

/* Number of samples below x, counting whole bins. */
static uint64_t hist_below(const hist *h, double x)
{
    uint64_t cum = 0;
    for (uint32_t b = 0; b < h->n && h->lo + (b + 1) * h->w <= x; b++)
        cum += h->count[b];
    return cum;
}

static double clampd(double x, double lo, double hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

/* Per-lung model, side 0 right (label 1), 1 left (label 2). */
typedef struct lung_model {
    double z_bot, z_top, y_ant, y_post;
    double slope, c; /* oblique fissure z = c + slope y */
    double z_h;      /* horizontal fissure (right only) */
} lung_model;

/* ---- fissure refinement ---------------------------------------------------
 *
 * Each model plane is the initial surface.  Along its normal, within
 * +-FIS_SEARCH_MM, every interior lung voxel scores how much it looks like
 * a fissure: a bright thin sheet whose normal is close to the plane's, i.e.
 * a strongly negative second derivative across the plane and little
 * curvature along it (a vessel lying in the plane curves along it too), on
 * an in-plane smoothed image, and brighter than the voxels FIS_RIDGE_MM to
 * either side (the edge of a lesion is not a sheet).  Scores are binned by
 * position on the plane (FIS_BIN_MM squares) and signed distance from it
 * (FIS_DBIN_MM), averaged over a neighbourhood of the plane, and each
 * position takes the distance with the highest mean score when it stands
 * out.  The distances are median filtered and smoothed, and fall back to
 * the model plane where evidence is sparse. */
/* Off by default: it follows the phantom's fissures closely but did not
 * improve the covid-ct-md lobe AUCs (see docs/internals/lobes.md).  The
 * environment variable COVCT_LOBES_FISSURES=1 turns it on (=0 off). */
#define FIS_ENABLE 0
#define FIS_SEARCH_MM 18.0   /* oblique fissures */
#define FIS_SEARCH_H_MM 30.0 /* horizontal fissure: more variable */
#define FIS_DBIN_MM 1.0
#define FIS_BIN_MM 2.0
#define FIS_RIDGE_MM 2.0
#define FIS_ALPHA 1.0     /* weight of the curvature along the plane */
#define FIS_HU_MIN (-950.0) /* fissure sheets are denser than this ... */
#define FIS_HU_MAX (-400.0) /* ... and lighter than this (vessels) */
#define FIS_AGG_MM 6.0    /* sigma, averaging scores over the plane */
#define FIS_REG_MM 8.0    /* sigma, smoothing the displacement map */
#define FIS_CONF_MIN 1.0  /* peak over the column's mean score (HU/mm^2) */
#define FIS_W_MIN 0.3     /* evidence density for a full displacement */
#define FIS_H_GAP_MM 4.0  /* horizontal fissure: this far above the oblique */

typedef struct fissure {
    int lung;         /* COVCT_LUNG_RIGHT / LEFT */
    bool horizontal;
    double n[3], t[3], off; /* e = n.p - off; map coords u = p.x, v = t.p */
    double u0, v0;
    uint32_t nu, nv;
    double search;    /* mm searched either side of the plane */
    double dbin;      /* mm per distance bin */
    int nd;           /* distance bins, odd; the middle one is the plane */
    float *sum, *cnt; /* nu*nv*nd, d fastest */
    float *disp;      /* nu*nv, mm along n */
    long dq;          /* buffer offset of FIS_RIDGE_MM along n */
    int di[3];
    uint32_t n_found; /* map cells with a fissure found */
    double cnt_min;   /* voxels in a cell for its mean score to count */
} fissure;

typedef struct fis_ctx {
    const covct_volume *ct;
    const uint8_t *lung;
    box bb;
    size_t bx, by, bz;
    float *g; /* smoothed HU over the bounding box */
    double b[3][3]; /* voxel steps per mm: b[a][r] = d i_a / d p_r */
} fis_ctx;

static void fis_free(fissure *f)
{
    covct_free(f->sum);
    covct_free(f->cnt);
    covct_free(f->disp);
    f->sum = f->cnt = f->disp = NULL;
}

/* Range of the linear form coef . p over the corners of the box. */
static void box_range(const double a[4][4], const box *bb,
                      const double coef[3], double *lo, double *hi)
{
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int c = 0; c < 8; c++) {
        double i = (c & 1) ? bb->i1 : bb->i0, j = (c & 2) ? bb->j1 : bb->j0;
        double k = (c & 4) ? bb->k1 : bb->k0, val = 0;
        for (int r = 0; r < 3; r++)
            val += coef[r] * coord(a, r, i, j, k);
        if (val < *lo)
            *lo = val;
        if (val > *hi)
            *hi = val;
    }
}

static covct_rc fis_init(fissure *f, const fis_ctx *x, covct_error *err)
{
    const double (*a)[4] = (const double (*)[4])x->ct->affine;
    const double ex[3] = {1, 0, 0};
    double lo, hi;
    box_range(a, &x->bb, ex, &lo, &hi);
    f->u0 = lo - FIS_BIN_MM;
    f->nu = (uint32_t)((hi - lo) / FIS_BIN_MM) + 3;
    box_range(a, &x->bb, f->t, &lo, &hi);
    f->v0 = lo - FIS_BIN_MM;
    f->nv = (uint32_t)((hi - lo) / FIS_BIN_MM) + 3;
    /* Distance bins of FIS_DBIN_MM, or of the slice spacing when the
     * normal is (nearly) along a voxel axis, so that no bin is empty by
     * construction. */
    f->dbin = FIS_DBIN_MM;
    for (int q = 0; q < 3; q++) {
        double len = 0, dot = 0;
        for (int r = 0; r < 3; r++) {
            len += a[r][q] * a[r][q];
            dot += a[r][q] * f->n[r];
        }
        len = sqrt(len);
        if (len > 0 && fabs(dot) > 0.9 * len && fabs(dot) > f->dbin)
            f->dbin = fabs(dot);
    }
    f->search = f->horizontal ? FIS_SEARCH_H_MM : FIS_SEARCH_MM;
    f->nd = 2 * (int)(f->search / f->dbin) + 1;
    size_t cells = (size_t)f->nu * f->nv;
    f->sum = covct_calloc(cells * (size_t)f->nd, sizeof *f->sum);
    f->cnt = covct_calloc(cells * (size_t)f->nd, sizeof *f->cnt);
    f->disp = covct_calloc(cells, sizeof *f->disp);
    if (!f->sum || !f->cnt || !f->disp) {
        fis_free(f);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "lobes: out of memory");
    }
    /* Voxel offset of FIS_RIDGE_MM along n (nearest voxel). */
    for (int q = 0; q < 3; q++) {
        double m = 0;
        for (int r = 0; r < 3; r++)
            m += x->b[q][r] * f->n[r];
        f->di[q] = (int)lround(FIS_RIDGE_MM * m);
    }
    /* A cell counts when lung fills a third of it. */
    double vox = fabs(1.0 / (x->b[0][0] * (x->b[1][1] * x->b[2][2] -
                                           x->b[1][2] * x->b[2][1]) -
                             x->b[0][1] * (x->b[1][0] * x->b[2][2] -
                                           x->b[1][2] * x->b[2][0]) +
                             x->b[0][2] * (x->b[1][0] * x->b[2][1] -
                                           x->b[1][1] * x->b[2][0])));
    f->cnt_min = FIS_BIN_MM * FIS_BIN_MM * f->dbin / 3.0 / vox;
    f->dq = f->di[0] + (long)f->di[1] * (long)x->bx +
            (long)f->di[2] * (long)(x->bx * x->by);
    return COVCT_OK;
}

/* Displacement (mm along n) at map position (u, v), bilinear between cell
 * centres, 0 outside the map. */
static double fis_disp_at(const fissure *f, double u, double v)
{
    double fu = (u - f->u0) / FIS_BIN_MM - 0.5;
    double fv = (v - f->v0) / FIS_BIN_MM - 0.5;
    if (!(fu >= 0 && fv >= 0 && fu <= f->nu - 1.0 && fv <= f->nv - 1.0))
        return 0;
    uint32_t iu = (uint32_t)fu, iv = (uint32_t)fv;
    if (iu >= f->nu - 1)
        iu = f->nu - 2;
    if (iv >= f->nv - 1)
        iv = f->nv - 2;
    double wu = fu - iu, wv = fv - iv;
    const float *d = f->disp + (size_t)iv * f->nu + iu;
    return (1 - wv) * ((1 - wu) * d[0] + wu * d[1]) +
           wv * ((1 - wu) * d[f->nu] + wu * d[f->nu + 1]);
}

/* Signed distance of patient point p from the refined surface of f. */
static double fis_side(const fissure *f, const double p[3])
{
    double e = f->n[0] * p[0] + f->n[1] * p[1] + f->n[2] * p[2] - f->off;
    if (!f->disp)
        return e;
    double v = f->t[0] * p[0] + f->t[1] * p[1] + f->t[2] * p[2];
    return e - fis_disp_at(f, p[0], v);
}

/* Plate score of the smoothed image at buffer index q for the fissure
 * normal n: -d2/dn2 minus FIS_ALPHA times the Frobenius norm of the
 * Hessian projected on the plane, 0 when negative or not a ridge. */
static double fis_score(const fis_ctx *x, const fissure *f, size_t q,
                        uint32_t i, uint32_t j, uint32_t k)
{
    const float *g = x->g;
    const size_t sx = 1, sy = x->bx, sz = x->bx * x->by;
    double c = g[q];
    if (c < FIS_HU_MIN || c > FIS_HU_MAX)
        return 0;
    /* Two-sided ridge test, within the buffer. */
    long ii = (long)(i - x->bb.i0), jj = (long)(j - x->bb.j0);
    long kk = (long)(k - x->bb.k0);
    if (ii - labs(f->di[0]) < 0 || ii + labs(f->di[0]) >= (long)x->bx ||
        jj - labs(f->di[1]) < 0 || jj + labs(f->di[1]) >= (long)x->by ||
        kk - labs(f->di[2]) < 0 || kk + labs(f->di[2]) >= (long)x->bz)
        return 0;
    if (!(c > g[(long)q + f->dq] && c > g[(long)q - f->dq]))
        return 0;
    double hv[3][3];
    hv[0][0] = g[q + sx] - 2 * c + g[q - sx];
    hv[1][1] = g[q + sy] - 2 * c + g[q - sy];
    hv[2][2] = g[q + sz] - 2 * c + g[q - sz];
    hv[0][1] = hv[1][0] = 0.25 * (g[q + sx + sy] - g[q - sx + sy] -
                                  g[q + sx - sy] + g[q - sx - sy]);
    hv[0][2] = hv[2][0] = 0.25 * (g[q + sx + sz] - g[q - sx + sz] -
                                  g[q + sx - sz] + g[q - sx - sz]);
    hv[1][2] = hv[2][1] = 0.25 * (g[q + sy + sz] - g[q - sy + sz] -
                                  g[q + sy - sz] + g[q - sy - sz]);
    /* Patient Hessian hp = b^T hv b. */
    double t1[3][3], hp[3][3];
    for (int a = 0; a < 3; a++)
        for (int r = 0; r < 3; r++)
            t1[a][r] = hv[a][0] * x->b[0][r] + hv[a][1] * x->b[1][r] +
                       hv[a][2] * x->b[2][r];
    for (int r = 0; r < 3; r++)
        for (int s = 0; s < 3; s++)
            hp[r][s] = x->b[0][r] * t1[0][s] + x->b[1][r] * t1[1][s] +
                       x->b[2][r] * t1[2][s];
    double hn[3], hnn = 0, f2 = 0, hn2 = 0;
    for (int r = 0; r < 3; r++) {
        hn[r] = hp[r][0] * f->n[0] + hp[r][1] * f->n[1] + hp[r][2] * f->n[2];
        hnn += f->n[r] * hn[r];
        hn2 += hn[r] * hn[r];
        for (int s = 0; s < 3; s++)
            f2 += hp[r][s] * hp[r][s];
    }
    double t2 = f2 - 2 * hn2 + hnn * hnn;
    double sc = -hnn - FIS_ALPHA * sqrt(t2 > 0 ? t2 : 0);
    return sc > 0 ? sc : 0;
}

/* Interior: the same lung 2 voxels away along i and j, 1 along k. */
static bool fis_interior(const fis_ctx *x, size_t p, uint32_t i, uint32_t j,
                         uint32_t k, uint8_t l)
{
    const box *bb = &x->bb;
    if (i < bb->i0 + 2 || i + 2 > bb->i1 || j < bb->j0 + 2 ||
        j + 2 > bb->j1 || k < bb->k0 + 1 || k + 1 > bb->k1)
        return false;
    size_t nx = x->ct->nx, nxy = nx * x->ct->ny;
    const uint8_t *m = x->lung;
    return m[p - 2] == l && m[p + 2] == l && m[p - 2 * nx] == l &&
           m[p + 2 * nx] == l && m[p - nxy] == l && m[p + nxy] == l;
}

/* Accumulate scores of the nf fissures over the bounding box.  gate (may
 * be NULL): for the horizontal fissure, the refined right oblique. */
static void fis_accumulate(const fis_ctx *x, fissure *const *fs, int nf,
                           const fissure *gate)
{
    const covct_volume *ct = x->ct;
    const double (*a)[4] = (const double (*)[4])ct->affine;
    const size_t nx = ct->nx, nxy = nx * ct->ny;
    const box *bb = &x->bb;
    for (uint32_t k = bb->k0; k <= bb->k1; k++) {
        for (uint32_t j = bb->j0; j <= bb->j1; j++) {
            size_t row = k * nxy + (size_t)j * nx;
            size_t qrow = ((size_t)(k - bb->k0) * x->by + (j - bb->j0)) *
                              x->bx - bb->i0;
            double p0[3];
            for (int r = 0; r < 3; r++)
                p0[r] = coord(a, r, 0, j, k);
            for (uint32_t i = bb->i0; i <= bb->i1; i++) {
                uint8_t l = x->lung[row + i];
                if (l != COVCT_LUNG_RIGHT && l != COVCT_LUNG_LEFT)
                    continue;
                double p[3] = {p0[0] + a[0][0] * i, p0[1] + a[1][0] * i,
                               p0[2] + a[2][0] * i};
                int interior = -1;
                for (int q = 0; q < nf; q++) {
                    fissure *f = fs[q];
                    if (f->lung != l)
                        continue;
                    double e = f->n[0] * p[0] + f->n[1] * p[1] +
                               f->n[2] * p[2] - f->off;
                    if (fabs(e) > (f->nd / 2 + 0.5) * f->dbin)
                        continue;
                    if (gate && f->horizontal &&
                        fis_side(gate, p) < FIS_H_GAP_MM)
                        continue;
                    if (interior < 0)
                        interior = fis_interior(x, row + i, i, j, k, l);
                    if (!interior)
                        break;
                    double v = f->t[0] * p[0] + f->t[1] * p[1] +
                               f->t[2] * p[2];
                    long iu = lround((p[0] - f->u0) / FIS_BIN_MM - 0.5);
                    long iv = lround((v - f->v0) / FIS_BIN_MM - 0.5);
                    long id = lround(e / f->dbin) + f->nd / 2;
                    if (iu < 0 || iv < 0 || iu >= (long)f->nu ||
                        iv >= (long)f->nv || id < 0 || id >= f->nd)
                        continue;
                    size_t c = ((size_t)iv * f->nu + (size_t)iu) * (size_t)f->nd +
                               (size_t)id;
                    f->sum[c] += (float)fis_score(x, f, qrow + i, i, j, k);
                    f->cnt[c] += 1;
                }
            }
        }
    }
}

/* Approximate Gaussian (zero padded): three running boxes along axis 1
 * (stride n0) or 2 (stride n0 n1) of an n0 x n1 x n2 array; line is
 * scratch of max(n1, n2) floats. */
static void blur_axis(float *v, size_t n0, size_t n1, size_t n2, int axis,
                      double sigma, float *line)
{
    /* Three boxes of width 2r+1 have variance 3 ((2r+1)^2 - 1) / 12. */
    long r = lround(0.5 * (sqrt(4 * sigma * sigma + 1) - 1));
    if (r < 1)
        return;
    const float inv = 1.0f / (float)(2 * r + 1);
    size_t len = axis == 1 ? n1 : n2, step = axis == 1 ? n0 : n0 * n1;
    size_t outer = axis == 1 ? n2 : n1, ostep = axis == 1 ? n0 * n1 : n0;
    for (size_t o = 0; o < outer; o++)
        for (size_t i0 = 0; i0 < n0; i0++) {
            float *base = v + o * ostep + i0;
            for (size_t s = 0; s < len; s++)
                line[s] = base[s * step];
            for (int pass = 0; pass < 3; pass++) {
                float *dst = pass == 2 ? NULL : line;
                double acc = 0;
                for (long t = 0; t < r && t < (long)len; t++)
                    acc += line[t];
                /* Windows [s - r, s + r], written to the scratch's second
                 * half. */
                float *tmp = line + len; /* second half of the scratch */
                for (long s2 = 0; s2 < (long)len; s2++) {
                    if (s2 + r < (long)len)
                        acc += line[s2 + r];
                    if (s2 - r - 1 >= 0)
                        acc -= line[s2 - r - 1];
                    tmp[s2] = (float)acc * inv;
                }
                if (dst)
                    memcpy(line, tmp, len * sizeof *line);
                else
                    for (size_t s = 0; s < len; s++)
                        base[s * step] = tmp[s];
            }
        }
}

static int cmp_float(const void *pa, const void *pb)
{
    float fa = *(const float *)pa, fb = *(const float *)pb;
    return (fa > fb) - (fa < fb);
}

/* From the accumulated scores to the regularised displacement map. */
static covct_rc fis_solve(fissure *f, covct_error *err)
{
    const size_t nu = f->nu, nv = f->nv, cells = nu * nv;
    size_t lmax = 2 * ((nu > nv ? nu : nv) + 1);
    float *line = covct_malloc(lmax * sizeof *line);
    float *w = covct_calloc(cells, sizeof *w);
    float *d = covct_calloc(cells, sizeof *d);
    if (!line || !w || !d) {
        covct_free(line);
        covct_free(w);
        covct_free(d);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "lobes: out of memory");
    }
    double sb = FIS_AGG_MM / FIS_BIN_MM;
    for (int ax = 1; ax <= 2; ax++) {
        blur_axis(f->sum, (size_t)f->nd, nu, nv, ax, sb, line);
        blur_axis(f->cnt, (size_t)f->nd, nu, nv, ax, sb, line);
    }
    /* Peak per cell. */
    f->n_found = 0;
    for (size_t c = 0; c < cells; c++) {
        const float *s = f->sum + c * (size_t)f->nd;
        const float *n = f->cnt + c * (size_t)f->nd;
        double best = -1, mean = 0;
        int bi = -1, valid = 0;
        for (int q = 0; q < f->nd; q++) {
            if (n[q] < f->cnt_min)
                continue;
            double m = s[q] / n[q];
            valid++;
            mean += m;
            if (m > best) {
                best = m;
                bi = q;
            }
        }
        if (valid < f->nd / 2 || bi < 0)
            continue;
        mean /= valid;
        if (best - mean < FIS_CONF_MIN)
            continue;
        double pos = bi - f->nd / 2;
        if (bi > 0 && bi < f->nd - 1 && n[bi - 1] >= f->cnt_min && n[bi + 1] >= f->cnt_min) {
            double ym = s[bi - 1] / n[bi - 1], yp = s[bi + 1] / n[bi + 1];
            double den = ym - 2 * best + yp;
            if (den < 0)
                pos += clampd(0.5 * (ym - yp) / den, -0.5, 0.5);
        }
        d[c] = (float)(pos * f->dbin);
        w[c] = 1;
        f->n_found++;
    }
    /* 5x5 median of the found displacements. */
    for (size_t iv = 0; iv < nv; iv++)
        for (size_t iu = 0; iu < nu; iu++) {
            size_t c = iv * nu + iu;
            if (!w[c])
                continue;
            float vals[25];
            int nvals = 0;
            for (long dv = -2; dv <= 2; dv++)
                for (long du = -2; du <= 2; du++) {
                    long u = (long)iu + du, v = (long)iv + dv;
                    if (u < 0 || v < 0 || u >= (long)nu || v >= (long)nv)
                        continue;
                    size_t c2 = (size_t)v * nu + (size_t)u;
                    if (w[c2])
                        vals[nvals++] = d[c2];
                }
            qsort(vals, (size_t)nvals, sizeof *vals, cmp_float);
            f->disp[c] = vals[nvals / 2];
        }
    /* Weighted Gaussian, shrunk towards the model where evidence is
     * sparse. */
    for (size_t c = 0; c < cells; c++) {
        f->disp[c] = w[c] ? f->disp[c] : 0;
        d[c] = f->disp[c];
    }
    double sr = FIS_REG_MM / FIS_BIN_MM;
    for (int ax = 1; ax <= 2; ax++) {
        blur_axis(d, 1, nu, nv, ax, sr, line);
        blur_axis(w, 1, nu, nv, ax, sr, line);
    }
    for (size_t c = 0; c < cells; c++) {
        double dd = w[c] > 1e-6 ? d[c] / w[c] : 0;
        double shrink = w[c] < FIS_W_MIN ? w[c] / FIS_W_MIN : 1;
        f->disp[c] = (float)clampd(dd * shrink, -f->search, f->search);
    }
    covct_free(line);
    covct_free(w);
    covct_free(d);
    /* The score arrays are no longer needed. */
    COVCT_FREE(f->sum);
    COVCT_FREE(f->cnt);
    return COVCT_OK;
}

typedef struct smooth_job {
    const fis_ctx *x;
    float *rows; /* per thread: 2 rows of bx floats */
} smooth_job;

/* One slice of the bounding box: HU to float, then twice the binomial
 * [1 2 1] / 4 along i and j (a Gaussian of 1 voxel in the plane). */
static void smooth_slice(void *ctx, size_t k, unsigned tid)
{
    const smooth_job *sj = ctx;
    const fis_ctx *x = sj->x;
    const covct_volume *ct = x->ct;
    const box *bb = &x->bb;
    const size_t bx = x->bx, by = x->by, nx = ct->nx, cnxy = nx * ct->ny;
    float *sl = x->g + k * bx * by;
    float *prev = sj->rows + (size_t)tid * 2 * bx, *cur = prev + bx;
    for (size_t j = 0; j < by; j++) {
        size_t src = (k + bb->k0) * cnxy + (j + bb->j0) * nx + bb->i0;
        float *dst = sl + j * bx;
        if (ct->dtype == COVCT_DTYPE_INT16) {
            const int16_t *h = (const int16_t *)ct->data + src;
            for (size_t i = 0; i < bx; i++)
                dst[i] = h[i];
        } else {
            memcpy(dst, (const float *)ct->data + src, bx * sizeof *dst);
        }
        for (int it = 0; it < 2; it++) {
            float pv = dst[0];
            for (size_t i = 0; i < bx; i++) {
                float c = dst[i], nv = i + 1 < bx ? dst[i + 1] : c;
                dst[i] = 0.25f * (pv + 2 * c + nv);
                pv = c;
            }
        }
    }
    for (int it = 0; it < 2; it++) {
        memcpy(prev, sl, bx * sizeof *prev);
        for (size_t j = 0; j < by; j++) {
            float *row = sl + j * bx;
            const float *next = j + 1 < by ? row + bx : row;
            memcpy(cur, row, bx * sizeof *cur);
            for (size_t i = 0; i < bx; i++)
                row[i] = 0.25f * (prev[i] + 2 * cur[i] + next[i]);
            float *t = prev;
            prev = cur;
            cur = t;
        }
    }
}

/* Smoothed HU of the bounding box into x->g (allocated here). */
static covct_rc fis_image(fis_ctx *x, covct_error *err)
{
    const box *bb = &x->bb;
    x->bx = bb->i1 - bb->i0 + 1;
    x->by = bb->j1 - bb->j0 + 1;
    x->bz = bb->k1 - bb->k0 + 1;
    unsigned th = covct_filter_threads();
    if (th < 1)
        th = 1;
    x->g = covct_malloc(x->bx * x->by * x->bz * sizeof *x->g);
    float *rows = covct_malloc(2 * x->bx * th * sizeof *rows);
    if (!x->g || !rows) {
        covct_free(rows);
        COVCT_FREE(x->g);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "lobes: out of memory");
    }
    smooth_job job = {x, rows};
    covct_filter_parallel(x->bz, smooth_slice, &job, th);
    covct_free(rows);
    return COVCT_OK;
}

/* Inverse of the affine's 3x3 part; false when singular. */
static bool inv3(const double a[4][4], double b[3][3])
{
    double det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) -
                 a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
                 a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
    if (!(fabs(det) > 1e-12))
        return false;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++) {
            int r1 = (c + 1) % 3, r2 = (c + 2) % 3;
            int c1 = (r + 1) % 3, c2 = (r + 2) % 3;
            b[r][c] = (a[r1][c1] * a[r2][c2] - a[r1][c2] * a[r2][c1]) / det;
        }
    return true;
}

covct_rc covct_lobes_segment(const covct_volume *ct, covct_seg *seg,
                             covct_error *err)
{
    if (!ct || !seg || !seg->lungs || !seg->lobes)
        return COVCT_ERR(err, COVCT_ERR_ARG, "lobes: missing volume or masks");
    if (seg->nx != ct->nx || seg->ny != ct->ny || seg->nz != ct->nz)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "lobes: masks %ux%ux%u do not match CT %ux%ux%u",
                         seg->nx, seg->ny, seg->nz, ct->nx, ct->ny, ct->nz);

    const uint32_t nx = ct->nx, ny = ct->ny, nz = ct->nz;
    const size_t nxy = (size_t)nx * ny;
    const uint8_t *lung = seg->lungs;
    uint8_t *lobe = seg->lobes;
    const double (*a)[4] = (const double (*)[4])ct->affine;
    covct_rc rc = COVCT_OK;
    hist hy[2], hz[2], hs[2], hzu;
    memset(hy, 0, sizeof hy);
    memset(hz, 0, sizeof hz);
    memset(hs, 0, sizeof hs);
    memset(&hzu, 0, sizeof hzu);
    lung_model m[2];
    memset(m, 0, sizeof m);
    box bb = {nx, 0, ny, 0, nz, 0, false};
    fissure fo[2], fh;
    memset(fo, 0, sizeof fo);
    memset(&fh, 0, sizeof fh);
    fis_ctx fx;
    memset(&fx, 0, sizeof fx);

    memset(lobe, 0, nxy * nz);

    /* Pass 1: patient y and z histograms of each lung (1 mm bins), and the
     * voxel bounding box of all lung. */
    double ylo, yhi, zlo, zhi;
    corner_range(ct, a[1], &ylo, &yhi);
    corner_range(ct, a[2], &zlo, &zhi);
    for (int s = 0; s < 2; s++) {
        if ((rc = hist_init(&hy[s], ylo, yhi, 1.0, err)) != COVCT_OK ||
            (rc = hist_init(&hz[s], zlo, zhi, 1.0, err)) != COVCT_OK)
            goto done;
    }
    for (uint32_t k = 0; k < nz; k++) {
        for (uint32_t j = 0; j < ny; j++) {
            const uint8_t *row = lung + k * nxy + (size_t)j * nx;
            double y0 = coord(a, 1, 0, j, k), z0 = coord(a, 2, 0, j, k);
            for (uint32_t i = 0; i < nx; i++) {
                uint8_t l = row[i];
                if (l != COVCT_LUNG_RIGHT && l != COVCT_LUNG_LEFT)
                    continue;
                int s = l - 1;
                hist_add(&hy[s], y0 + a[1][0] * i);
                hist_add(&hz[s], z0 + a[2][0] * i);
                if (i < bb.i0) bb.i0 = i;
                if (i > bb.i1) bb.i1 = i;
                if (j < bb.j0) bb.j0 = j;
                if (j > bb.j1) bb.j1 = j;
                if (k < bb.k0) bb.k0 = k;
                if (k > bb.k1) bb.k1 = k;
                bb.any = true;
            }
        }
    }
    if (!bb.any)
        goto done; /* no lungs: no lobes */

    /* The fissure slope of each lung from its own extent. */
    for (int s = 0; s < 2; s++) {
        if (hz[s].total == 0)
            continue;
        lung_model *lm = &m[s];
        lm->z_bot = hist_quantile(&hz[s], EXTENT_TAIL);
        lm->z_top = hist_quantile(&hz[s], 1 - EXTENT_TAIL);
        lm->y_ant = hist_quantile(&hy[s], EXTENT_TAIL);
        lm->y_post = hist_quantile(&hy[s], 1 - EXTENT_TAIL);
        double height = lm->z_top - lm->z_bot, depth = lm->y_post - lm->y_ant;
        lm->slope = depth > 1 ? (POST_H - ANT_H) * height / depth : 1;
        lm->slope = clampd(lm->slope, SLOPE_MIN, SLOPE_MAX);
    }

    /* Pass 2: histogram of s = z - slope y; the oblique fissure is s = c. */
    for (int s = 0; s < 2; s++) {
        double f[4], lo, hi;
        for (int q = 0; q < 4; q++)
            f[q] = a[2][q] - m[s].slope * a[1][q];
        corner_range(ct, f, &lo, &hi);
        if ((rc = hist_init(&hs[s], lo, hi, 1.0, err)) != COVCT_OK)
            goto done;
    }
    for (uint32_t k = bb.k0; k <= bb.k1; k++) {
        for (uint32_t j = bb.j0; j <= bb.j1; j++) {
            const uint8_t *row = lung + k * nxy + (size_t)j * nx;
            double y0 = coord(a, 1, 0, j, k), z0 = coord(a, 2, 0, j, k);
            for (uint32_t i = bb.i0; i <= bb.i1; i++) {
                uint8_t l = row[i];
                if (l != COVCT_LUNG_RIGHT && l != COVCT_LUNG_LEFT)
                    continue;
                int s = l - 1;
                double y = y0 + a[1][0] * i, z = z0 + a[2][0] * i;
                hist_add(&hs[s], z - m[s].slope * y);
            }
        }
    }
    for (int s = 0; s < 2; s++) {
        if (hs[s].total == 0)
            continue;
        lung_model *lm = &m[s];
        double c = hist_quantile(&hs[s], s == 0 ? RLL_OF_RIGHT : LLL_OF_LEFT);
        /* Where this fissure meets the posterior lung, as a height. */
        double height = lm->z_top - lm->z_bot;
        double hp = height > 0
                        ? (c + lm->slope * lm->y_post - lm->z_bot) / height
                        : POST_H;
        double hpc = clampd(hp, POST_H_MIN, POST_H_MAX);
        if (hpc != hp)
            c = lm->z_bot + hpc * height - lm->slope * lm->y_post;
        /* Never leave a lobe empty: keep c strictly inside the range of
         * s that the lung occupies. */
        uint64_t below = hist_below(&hs[s], c);
        if (below == 0 || below == hs[s].total)
            c = hist_quantile(&hs[s], 0.5);
        lm->c = c;
        covct_log(COVCT_LOG_DEBUG,
                  "lobes: %s lung height %.0f mm depth %.0f mm, oblique "
                  "fissure slope %.2f meets the posterior lung at %.2f of "
                  "its height%s",
                  s == 0 ? "right" : "left", height,
                  lm->y_post - lm->y_ant, lm->slope, hpc,
                  hpc != hp ? " (clamped)" : "");
    }

    /* Pass 3 (right lung): z histogram above the oblique fissure, for the
     * horizontal fissure. */
    if (hs[0].total > 0) {
        if ((rc = hist_init(&hzu, zlo, zhi, 1.0, err)) != COVCT_OK)
            goto done;
        for (uint32_t k = bb.k0; k <= bb.k1; k++) {
            for (uint32_t j = bb.j0; j <= bb.j1; j++) {
                const uint8_t *row = lung + k * nxy + (size_t)j * nx;
                double y0 = coord(a, 1, 0, j, k), z0 = coord(a, 2, 0, j, k);
                for (uint32_t i = bb.i0; i <= bb.i1; i++) {
                    if (row[i] != COVCT_LUNG_RIGHT)
                        continue;
                    double y = y0 + a[1][0] * i, z = z0 + a[2][0] * i;
                    if (z - m[0].slope * y >= m[0].c)
                        hist_add(&hzu, z);
                }
            }
        }
        lung_model *lm = &m[0];
        double height = lm->z_top - lm->z_bot;
        uint64_t right = hs[0].total;
        double q = hzu.total > 0
                       ? RML_OF_RIGHT * (double)right / (double)hzu.total
                       : 0.5;
        double zq = hist_quantile(&hzu, q < 0.9 ? q : 0.5), zh = zq;
        if (height > 0)
            zh = clampd(zq, lm->z_bot + HORIZ_H_MIN * height,
                        lm->z_bot + HORIZ_H_MAX * height);
        covct_log(COVCT_LOG_DEBUG,
                  "lobes: horizontal fissure at %.2f of the right lung's "
                  "height%s",
                  height > 0 ? (zh - lm->z_bot) / height : 0.0,
                  zh != zq ? " (clamped)" : "");
        uint64_t below = hist_below(&hzu, zh);
        if (hzu.total > 1 && (below == 0 || below == hzu.total))
            zh = hist_quantile(&hzu, 0.5);
        lm->z_h = zh;
    }

    /* Fissure refinement: oblique fissures first, then the horizontal one
     * above the refined right oblique. */
    for (int s = 0; s < 2; s++) {
        double L = sqrt(1 + m[s].slope * m[s].slope);
        fo[s].lung = s + 1;
        fo[s].n[1] = -m[s].slope / L;
        fo[s].n[2] = 1 / L;
        fo[s].off = m[s].c / L;
        fo[s].t[1] = 1 / L;
        fo[s].t[2] = m[s].slope / L;
    }
    fh.lung = COVCT_LUNG_RIGHT;
    fh.horizontal = true;
    fh.n[2] = 1;
    fh.off = m[0].z_h;
    fh.t[1] = 1;
    const char *fis_env = getenv("COVCT_LOBES_FISSURES");
    bool refine = fis_env && *fis_env ? fis_env[0] != '0' : FIS_ENABLE;
    if (refine && inv3(a, fx.b)) {
        fx.ct = ct;
        fx.lung = lung;
        fx.bb = bb;
        double t0 = covct_now();
        if ((rc = fis_image(&fx, err)) != COVCT_OK)
            goto done;
        double t1 = covct_now();
        fissure *obl[2] = {&fo[0], &fo[1]}, *hor[1] = {&fh};
        for (int s = 0; s < 2; s++)
            if (hs[s].total > 0 &&
                (rc = fis_init(&fo[s], &fx, err)) != COVCT_OK)
                goto done;
        if (fo[0].sum && fo[1].sum)
            fis_accumulate(&fx, obl, 2, NULL);
        else if (fo[0].sum || fo[1].sum)
            fis_accumulate(&fx, fo[0].sum ? &obl[0] : &obl[1], 1, NULL);
        double t2 = covct_now();
        for (int s = 0; s < 2; s++)
            if (fo[s].sum && (rc = fis_solve(&fo[s], err)) != COVCT_OK)
                goto done;
        if (hs[0].total > 0) {
            if ((rc = fis_init(&fh, &fx, err)) != COVCT_OK)
                goto done;
            fis_accumulate(&fx, hor, 1, &fo[0]);
            if ((rc = fis_solve(&fh, err)) != COVCT_OK)
                goto done;
        }
        COVCT_FREE(fx.g);
        covct_log(COVCT_LOG_DEBUG,
                  "lobes: fissure found in %u / %u / %u map cells "
                  "(right oblique / left oblique / horizontal); smoothing "
                  "%.2f oblique %.2f horizontal %.2f s",
                  fo[0].n_found, fo[1].n_found, fh.n_found, t1 - t0,
                  t2 - t1, covct_now() - t2);
    }

    /* Pass 4: labels. */
    for (uint32_t k = bb.k0; k <= bb.k1; k++) {
        for (uint32_t j = bb.j0; j <= bb.j1; j++) {
            size_t off = k * nxy + (size_t)j * nx;
            const uint8_t *row = lung + off;
            uint8_t *out = lobe + off;
            double x0 = coord(a, 0, 0, j, k), y0 = coord(a, 1, 0, j, k);
            double z0 = coord(a, 2, 0, j, k);
            for (uint32_t i = bb.i0; i <= bb.i1; i++) {
                uint8_t l = row[i];
                if (l != COVCT_LUNG_RIGHT && l != COVCT_LUNG_LEFT)
                    continue;
                int s = l - 1;
                double p[3] = {x0 + a[0][0] * i, y0 + a[1][0] * i,
                               z0 + a[2][0] * i};
                bool lower = fis_side(&fo[s], p) < 0;
                if (s == 1)
                    out[i] = lower ? COVCT_LOBE_LLL : COVCT_LOBE_LUL;
                else if (lower)
                    out[i] = COVCT_LOBE_RLL;
                else
                    out[i] = fis_side(&fh, p) < 0 ? COVCT_LOBE_RML
                                                  : COVCT_LOBE_RUL;
            }
        }
    }

done:
    covct_free(fx.g);
    fis_free(&fh);
    for (int s = 0; s < 2; s++) {
        fis_free(&fo[s]);
        covct_free(hy[s].count);
        covct_free(hz[s].count);
        covct_free(hs[s].count);
    }
    covct_free(hzu.count);
    return rc;
}
