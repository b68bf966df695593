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
#include <string.h>

#include "covct/analysis.h"

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

    /* Pass 4: labels. */
    for (uint32_t k = bb.k0; k <= bb.k1; k++) {
        for (uint32_t j = bb.j0; j <= bb.j1; j++) {
            size_t off = k * nxy + (size_t)j * nx;
            const uint8_t *row = lung + off;
            uint8_t *out = lobe + off;
            double y0 = coord(a, 1, 0, j, k), z0 = coord(a, 2, 0, j, k);
            for (uint32_t i = bb.i0; i <= bb.i1; i++) {
                uint8_t l = row[i];
                if (l != COVCT_LUNG_RIGHT && l != COVCT_LUNG_LEFT)
                    continue;
                int s = l - 1;
                double y = y0 + a[1][0] * i, z = z0 + a[2][0] * i;
                bool lower = z - m[s].slope * y < m[s].c;
                if (s == 1)
                    out[i] = lower ? COVCT_LOBE_LLL : COVCT_LOBE_LUL;
                else if (lower)
                    out[i] = COVCT_LOBE_RLL;
                else
                    out[i] = z < m[0].z_h ? COVCT_LOBE_RML : COVCT_LOBE_RUL;
            }
        }
    }

done:
    for (int s = 0; s < 2; s++) {
        covct_free(hy[s].count);
        covct_free(hz[s].count);
        covct_free(hs[s].count);
    }
    covct_free(hzu.count);
    return rc;
}
