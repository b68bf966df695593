/*
 * Lesion stage: ground-glass opacity and consolidation inside the lungs by
 * density, with vessels (Frangi vesselness) and airway walls taken out, the
 * partial-volume rim at the pleura dropped, and specks removed.  Method,
 * thresholds and their sources: docs/internals/lesions.md.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "covct/analysis.h"
#include "analysis/analysis_int.h"
#include "analysis/filters_int.h"

/* ---- thresholds (docs/internals/lesions.md) ------------------------------ */
/* Light smoothing against quantum noise before thresholding (D40s-like
 * kernels carry 10-20 HU of noise in lung). */
#define SMOOTH_SIGMA_MM 0.8
/* Density ranges after smoothing: GGO -700..-300, consolidation
 * -300..+100 HU.  -700 is the upper end of "well aerated" lung
 * (-950..-700) in Colombi et al., Radiology 2020, which measures.c uses
 * too; -300 as the GGO/consolidation split and +100 as the top (above it:
 * calcification, contrast-filled vessels) are the usual density-mask
 * choices (see docs/internals/lesions.md for what was and was not
 * checked). */
#define GGO_MIN_HU (-650.0f)
#define CONS_MIN_HU (-300.0f)
#define CONS_MAX_HU 100.0f
/* Vesselness: Frangi's alpha = beta = 0.5; c fixed in HU (scale
 * normalised Hessian) rather than half the image's largest Hessian norm,
 * so that the result does not depend on what else is in the field of view:
 * a vessel of +40 HU in -850 HU lung gives S of 250-600, ground glass
 * texture and noise stay under 30. */
#define VESSEL_ALPHA 0.5
#define VESSEL_BETA 0.5
#define VESSEL_C_HU 75.0
static const double vessel_scales_mm[] = {1.0, 2.0, 3.0};
/* Centre-line voxels: vesselness above VESSEL_MIN (a sphere gives at most
 * exp(-2) (1 - exp(-2)) = 0.12 since Rb = 1; a tube's axis about 0.86),
 * and the distance to the centre of curvature under VESSEL_MAX_OFFSET
 * scales (the rim of a blob wider than 1.5 x 3 mm would look tubular). */
#define VESSEL_MIN 0.40f
#define VESSEL_MAX_OFFSET 1.5
/* Everything bright within this many scales of a centre-line voxel is
 * vessel: the lumen (radius ~2 x scale) and its partial-volume shell,
 * which reads -700..-300 HU, GGO by density. */
#define VESSEL_RADIUS_K 2.0
/* Centre-line voxels sit in bright tissue at most this many vessel
 * radii (VESSEL_RADIUS_K x scale) deep on both sides, in the narrowest of
 * the 13 voxel directions (step 3). */
#define VESSEL_WIDTH_K 1.0
/* A connected piece of centre line shorter than this (diagonal of its
 * bounding box) is not a vessel. */
#define VESSEL_MIN_LEN_MM 15.0
/* Airway walls next to the trachea and main bronchi. */
#define AIRWAY_WALL_MM 2.0
/* Pleural rim: lesion voxels within RIM_MM of the lung border are kept
 * only within KEEP_MM of lesion voxels deeper than DEEP_MM. */
#define RIM_MM 2.0
#define DEEP_MM 3.0
#define KEEP_MM 3.5
/* Partial-volume rim of consolidation (step 5b). */
#define EDGE_MM 2.0
/* An opacity has a core: some voxel at least CORE_MM from lung outside
 * the opacity, a ball 6 mm across (step 6b). */
#define CORE_MM 3.0
/* Connected lesion pieces smaller than this are dropped; holes smaller
 * than this are filled. */
#define MIN_LESION_MM3 100.0
#define MAX_HOLE_MM3 30.0
/* Margin around the lungs' bounding box: 4 sigma of the largest scale, so
 * the smoothing near the lungs sees real neighbours. */
#define PAD_MM 12.0

/* Flags of the working mask. */
enum {
    F_LUNG = 1,
    F_BRIGHT = 2,  /* in lung, smoothed HU >= GGO_MIN_HU */
    F_VESSEL = 4,
    F_CAND = 8,    /* lesion candidate */
    F_SEEN = 16    /* scratch for the component walk */
};

typedef covct_box box;

typedef struct stack {
    size_t *v;
    size_t len, cap;
} stack;

static int stack_push(stack *s, size_t i)
{
    if (s->len == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        size_t *v = covct_realloc(s->v, cap * sizeof *v);
        if (!v)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->len++] = i;
    return 0;
}

/* Walk the component of `start` through voxels with (flags & want) == want
 * and not F_SEEN, 26- or 6-connected; marks F_SEEN and records the voxels
 * in `members` (cleared first). */
static int component(uint8_t *fl, const box *b, size_t start, uint8_t want,
                     int conn26, stack *todo, stack *members)
{
    todo->len = 0;
    members->len = 0;
    fl[start] |= F_SEEN;
    if (stack_push(todo, start))
        return -1;
    size_t plane = b->nx * b->ny;
    while (todo->len) {
        size_t i = todo->v[--todo->len];
        if (stack_push(members, i))
            return -1;
        size_t z = i / plane, y = (i / b->nx) % b->ny, x = i % b->nx;
        for (int dz = -1; dz <= 1; dz++) {
            if ((dz < 0 && z == 0) || (dz > 0 && z + 1 >= b->nz))
                continue;
            for (int dy = -1; dy <= 1; dy++) {
                if ((dy < 0 && y == 0) || (dy > 0 && y + 1 >= b->ny))
                    continue;
                for (int dx = -1; dx <= 1; dx++) {
                    if ((dx < 0 && x == 0) || (dx > 0 && x + 1 >= b->nx))
                        continue;
                    int m = (dx != 0) + (dy != 0) + (dz != 0);
                    if (m == 0 || (!conn26 && m > 1))
                        continue;
                    size_t j = (size_t)((ptrdiff_t)i + dx +
                                        dy * (ptrdiff_t)b->nx +
                                        dz * (ptrdiff_t)plane);
                    if ((fl[j] & want) == want && !(fl[j] & F_SEEN)) {
                        fl[j] |= F_SEEN;
                        if (stack_push(todo, j))
                            return -1;
                    }
                }
            }
        }
    }
    return 0;
}

static void clear_seen(uint8_t *fl, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fl[i] &= (uint8_t)~F_SEEN;
}

/* Smallest squared distance (mm^2) from voxel i to a voxel within
 * radius_mm whose flags & mask == want (outside the box counts as such a
 * voxel when want == 0); radius^2 + 1 when there is none. */
static double win_min_d2(const uint8_t *fl, const box *b, const double sp[3],
                         size_t i, double radius_mm, uint8_t mask,
                         uint8_t want)
{
    size_t bplane = b->nx * b->ny;
    ptrdiff_t z = (ptrdiff_t)(i / bplane), y = (ptrdiff_t)((i / b->nx) % b->ny),
              x = (ptrdiff_t)(i % b->nx);
    ptrdiff_t rx = (ptrdiff_t)floor(radius_mm / sp[0]),
              ry = (ptrdiff_t)floor(radius_mm / sp[1]),
              rz = (ptrdiff_t)floor(radius_mm / sp[2]);
    double best = radius_mm * radius_mm + 1;
    for (ptrdiff_t dz = -rz; dz <= rz; dz++)
        for (ptrdiff_t dy = -ry; dy <= ry; dy++)
            for (ptrdiff_t dx = -rx; dx <= rx; dx++) {
                double ex = dx * sp[0], ey = dy * sp[1], ez = dz * sp[2];
                double d2 = ex * ex + ey * ey + ez * ez;
                if (d2 >= best)
                    continue;
                ptrdiff_t X = x + dx, Y = y + dy, Z = z + dz;
                bool hit;
                if (X < 0 || Y < 0 || Z < 0 || X >= (ptrdiff_t)b->nx ||
                    Y >= (ptrdiff_t)b->ny || Z >= (ptrdiff_t)b->nz)
                    hit = want == 0;
                else
                    hit = (fl[(size_t)Z * bplane + (size_t)Y * b->nx +
                              (size_t)X] & mask) == want;
                if (hit)
                    best = d2;
            }
    return best;
}

/* Whether a voxel marked 3 (deep candidate) in w lies within radius_mm. */
static bool win_any_deep(const float *w, const box *b, const double sp[3],
                         size_t i, double radius_mm)
{
    size_t bplane = b->nx * b->ny;
    ptrdiff_t z = (ptrdiff_t)(i / bplane), y = (ptrdiff_t)((i / b->nx) % b->ny),
              x = (ptrdiff_t)(i % b->nx);
    ptrdiff_t rx = (ptrdiff_t)floor(radius_mm / sp[0]),
              ry = (ptrdiff_t)floor(radius_mm / sp[1]),
              rz = (ptrdiff_t)floor(radius_mm / sp[2]);
    for (ptrdiff_t dz = -rz; dz <= rz; dz++)
        for (ptrdiff_t dy = -ry; dy <= ry; dy++)
            for (ptrdiff_t dx = -rx; dx <= rx; dx++) {
                ptrdiff_t X = x + dx, Y = y + dy, Z = z + dz;
                if (X < 0 || Y < 0 || Z < 0 || X >= (ptrdiff_t)b->nx ||
                    Y >= (ptrdiff_t)b->ny || Z >= (ptrdiff_t)b->nz)
                    continue;
                double ex = dx * sp[0], ey = dy * sp[1], ez = dz * sp[2];
                if (ex * ex + ey * ey + ez * ez > radius_mm * radius_mm)
                    continue;
                if (w[(size_t)Z * bplane + (size_t)Y * b->nx + (size_t)X] ==
                    3.0f)
                    return true;
            }
    return false;
}

/* Whether every voxel within radius_mm of voxel i (inside the box) has
 * flag `want`. */
static bool win_all(const uint8_t *fl, const box *b, const double sp[3],
                    size_t i, double radius_mm, uint8_t want)
{
    size_t bplane = b->nx * b->ny;
    ptrdiff_t z = (ptrdiff_t)(i / bplane), y = (ptrdiff_t)((i / b->nx) % b->ny),
              x = (ptrdiff_t)(i % b->nx);
    ptrdiff_t rx = (ptrdiff_t)floor(radius_mm / sp[0]),
              ry = (ptrdiff_t)floor(radius_mm / sp[1]),
              rz = (ptrdiff_t)floor(radius_mm / sp[2]);
    if (x < rx || y < ry || z < rz || x + rx >= (ptrdiff_t)b->nx ||
        y + ry >= (ptrdiff_t)b->ny || z + rz >= (ptrdiff_t)b->nz)
        return false;
    for (ptrdiff_t dz = -rz; dz <= rz; dz++)
        for (ptrdiff_t dy = -ry; dy <= ry; dy++)
            for (ptrdiff_t dx = -rx; dx <= rx; dx++) {
                double ex = dx * sp[0], ey = dy * sp[1], ez = dz * sp[2];
                if (ex * ex + ey * ey + ez * ez >= radius_mm * radius_mm)
                    continue;
                if (!(fl[(size_t)(z + dz) * bplane + (size_t)(y + dy) * b->nx +
                         (size_t)(x + dx)] & want))
                    return false;
            }
    return true;
}

/* Distance (mm) from voxel i along the voxel direction (dx, dy, dz) to
 * the first voxel that is not bright, up to limit_mm. */
static double ray_bright(const uint8_t *fl, const box *b, const double sp[3],
                         size_t i, int dx, int dy, int dz, double limit_mm)
{
    size_t bplane = b->nx * b->ny;
    ptrdiff_t z = (ptrdiff_t)(i / bplane), y = (ptrdiff_t)((i / b->nx) % b->ny),
              x = (ptrdiff_t)(i % b->nx);
    double step = sqrt(dx * dx * sp[0] * sp[0] + dy * dy * sp[1] * sp[1] +
                       dz * dz * sp[2] * sp[2]);
    double dist = 0;
    for (;;) {
        x += dx;
        y += dy;
        z += dz;
        dist += step;
        if (dist > limit_mm)
            return limit_mm;
        if (x < 0 || y < 0 || z < 0 || x >= (ptrdiff_t)b->nx ||
            y >= (ptrdiff_t)b->ny || z >= (ptrdiff_t)b->nz)
            return dist;
        if (!(fl[(size_t)z * bplane + (size_t)y * b->nx + (size_t)x] &
              F_BRIGHT))
            return dist;
    }
}

/* Whether the bright region around voxel i is as narrow as a vessel of
 * the given radius: along at least one of the 13 voxel directions, both
 * ways to the edge are at most VESSEL_WIDTH_K x radius_mm plus one and a
 * half pixels (for sampling), and at least one step.  A vessel is narrow across its axis, even at
 * a branching (across the plane of the branches); a dense region wider
 * than the vessel in every direction is not a vessel. */
static bool narrow(const uint8_t *fl, const box *b, const double sp[3],
                   size_t i, double radius_mm)
{
    double vox = sp[0] > sp[1] ? sp[0] : sp[1];
    for (int dz = -1; dz <= 1; dz++)
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) {
                /* one of each opposite pair: the first non-zero is +1 */
                int first = dz ? dz : dy ? dy : dx;
                if (first != 1)
                    continue;
                double step = sqrt(dx * dx * sp[0] * sp[0] +
                                   dy * dy * sp[1] * sp[1] +
                                   dz * dz * sp[2] * sp[2]);
                double limit = VESSEL_WIDTH_K * radius_mm + 1.5 * vox;
                if (limit < step)
                    limit = step; /* one slice across thick slices */
                if (ray_bright(fl, b, sp, i, dx, dy, dz, 2 * limit) <= limit &&
                    ray_bright(fl, b, sp, i, -dx, -dy, -dz, 2 * limit) <= limit)
                    return true;
            }
    return false;
}

/* Seconds spent per step, for the debug log. */
typedef struct timing {
    double last, t[9];
} timing;

static void tmark(timing *tm, int step)
{
    double now = covct_now();
    tm->t[step] = now - tm->last;
    tm->last = now;
}

covct_rc covct_lesions_segment(const covct_volume *ct, covct_seg *seg,
                               covct_error *err)
{
    if (!ct || !seg || !ct->data || !seg->lungs || !seg->lesions)
        return COVCT_ERR(err, COVCT_ERR_ARG, "lesions: missing input");
    if (seg->nx != ct->nx || seg->ny != ct->ny || seg->nz != ct->nz)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "lesions: segmentation %ux%ux%u does not match CT "
                         "%ux%ux%u",
                         seg->nx, seg->ny, seg->nz, ct->nx, ct->ny, ct->nz);
    for (int a = 0; a < 3; a++)
        if (!(ct->spacing[a] > 0) || !(ct->spacing[a] < 100))
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "lesions: voxel spacing %g mm along axis %d",
                             ct->spacing[a], a);
    size_t nx = ct->nx, ny = ct->ny, nz = ct->nz, plane = nx * ny;
    size_t nvox = covct_volume_voxels(ct);
    memset(seg->lesions, 0, nvox);
    if (!seg->vessels) {
        seg->vessels = covct_calloc(nvox ? nvox : 1, 1);
        if (!seg->vessels)
            return COVCT_ERR(err, COVCT_ERR_NOMEM,
                             "lesions: cannot allocate the vessel mask");
    } else {
        memset(seg->vessels, 0, nvox);
    }

    /* Bounding box of the lungs, padded. */
    box b;
    if (!covct_mask_box(seg->lungs, nx, ny, nz, ct->spacing, PAD_MM, &b))
        return COVCT_OK;
    size_t bplane = b.nx * b.ny;
    double vox_mm3 = ct->spacing[0] * ct->spacing[1] * ct->spacing[2];
    unsigned threads = covct_filter_threads();

    timing tm = {.last = covct_now()};
    covct_rc rc = COVCT_OK;
    float *f = covct_malloc(b.n * sizeof *f);
    float *w = covct_malloc(b.n * sizeof *w);   /* scratch, then vesselness */
    float *d = NULL;                              /* distances */
    uint8_t *fl = covct_calloc(b.n, 1);
    stack todo = {0}, mem = {0};
    if (!f || !w || !fl) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                       "lesions: cannot allocate the %zux%zux%zu work box",
                       b.nx, b.ny, b.nz);
        goto done;
    }
    for (size_t z = 0; z < b.nz; z++)
        for (size_t y = 0; y < b.ny; y++) {
            size_t src = (z + b.z0) * plane + (y + b.y0) * nx + b.x0;
            size_t dst = z * bplane + y * b.nx;
            for (size_t x = 0; x < b.nx; x++) {
                f[dst + x] = covct_hu_filter(ct, src + x);
                if (seg->lungs[src + x])
                    fl[dst + x] = F_LUNG;
            }
        }

    tmark(&tm, 0);
    /* 1. Light smoothing, in place. */
    double s0[3] = {SMOOTH_SIGMA_MM, SMOOTH_SIGMA_MM, SMOOTH_SIGMA_MM};
    rc = covct_filter_gaussian(f, f, w, b.nx, b.ny, b.nz, ct->spacing, s0,
                               threads, err);
    if (rc != COVCT_OK)
        goto done;
    uint8_t *bright = covct_malloc(b.n);
    if (!bright) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "lesions: out of memory");
        goto done;
    }
    for (size_t i = 0; i < b.n; i++) {
        bright[i] = (fl[i] & F_LUNG) && f[i] >= GGO_MIN_HU;
        if (bright[i])
            fl[i] |= F_BRIGHT;
    }

    tmark(&tm, 1);
    /* 2. Vesselness where it matters: bright lung voxels only. */
    covct_vesselness_params vp = {
        .alpha = VESSEL_ALPHA, .beta = VESSEL_BETA, .c = VESSEL_C_HU,
        .max_offset = VESSEL_MAX_OFFSET,
        .sigma0_mm = SMOOTH_SIGMA_MM, .scales_mm = vessel_scales_mm,
        .n_scales = (int)(sizeof vessel_scales_mm / sizeof vessel_scales_mm[0])};
    uint8_t *best = covct_malloc(b.n);
    if (!best) {
        covct_free(bright);
        goto nomem;
    }
    rc = covct_filter_vesselness(f, b.nx, b.ny, b.nz, ct->spacing, &vp,
                                 bright, w, best, threads, err);
    covct_free(bright);
    if (rc != COVCT_OK) {
        covct_free(best);
        goto done;
    }

    tmark(&tm, 2);
    /* 3. Vessel mask: every voxel of the bright lung within
     * VESSEL_RADIUS_K x scale of a centre-line voxel (vesselness above
     * VESSEL_MIN at that best scale).  The optimal scale of a tube of
     * radius r is about r/2 (scale-normalised second derivative of a
     * disc), so this covers the vessel and its partial-volume shell. */
    d = covct_malloc(b.n * sizeof *d);
    uint8_t *m = covct_malloc(b.n);
    if (!d || !m) {
        covct_free(m);
        covct_free(best);
        goto nomem;
    }
    /* A centre line lies inside a vessel, so the bright tissue around it
     * is, in some direction, no wider than the vessel its scale implies.  A tubular response deep inside a wider dense region
     * (a consolidation a vessel runs into, which with the vessel looks
     * like a thick tube) is not a vessel: without this, the mask grown
     * from it ate the phantom's consolidation on a vessel whole. */
    for (size_t i = 0; i < b.n; i++)
        if (best[i] && w[i] >= VESSEL_MIN &&
            !narrow(fl, &b, ct->spacing, i,
                    VESSEL_RADIUS_K * vessel_scales_mm[best[i] - 1]))
            best[i] = 0;
    /* Centre lines must be long: a blob against the pleura or the end of
     * a finger of consolidation gives a short tubular response. */
    for (size_t i = 0; i < b.n; i++)
        if ((fl[i] & F_BRIGHT) && best[i] && w[i] >= VESSEL_MIN)
            fl[i] |= F_CAND; /* borrowed: "seed", cleared below */
    for (size_t i = 0; i < b.n; i++) {
        if (!(fl[i] & F_CAND) || (fl[i] & F_SEEN))
            continue;
        if (component(fl, &b, i, F_CAND, 1, &todo, &mem) != 0) {
            covct_free(m);
            covct_free(best);
            goto nomem;
        }
        size_t lo3[3] = {SIZE_MAX, SIZE_MAX, SIZE_MAX}, hi3[3] = {0, 0, 0};
        for (size_t k = 0; k < mem.len; k++) {
            size_t j = mem.v[k];
            size_t c3[3] = {j % b.nx, (j / b.nx) % b.ny, j / bplane};
            for (int a = 0; a < 3; a++) {
                if (c3[a] < lo3[a]) lo3[a] = c3[a];
                if (c3[a] > hi3[a]) hi3[a] = c3[a];
            }
        }
        double ext = 0;
        for (int a = 0; a < 3; a++) {
            double e = (double)(hi3[a] - lo3[a] + 1) * ct->spacing[a];
            ext += e * e;
        }
        if (ext < VESSEL_MIN_LEN_MM * VESSEL_MIN_LEN_MM)
            for (size_t k = 0; k < mem.len; k++)
                best[mem.v[k]] = 0;
    }
    for (size_t i = 0; i < b.n; i++)
        fl[i] &= (uint8_t) ~(F_CAND | F_SEEN);
    /* One generalised distance transform for all scales: a seed of
     * radius R starts at Rmax^2 - R^2, so d <= Rmax^2 exactly inside the
     * union of the balls.  Radii are at least one slice spacing, which
     * keeps the mask at least one voxel thick along z on 2 mm slices. */
    double rmax = VESSEL_RADIUS_K * vessel_scales_mm[vp.n_scales - 1];
    bool seeds = false;
    for (size_t i = 0; i < b.n; i++) {
        d[i] = COVCT_FILTER_FAR;
        if ((fl[i] & F_BRIGHT) && best[i] && w[i] >= VESSEL_MIN) {
            double r = VESSEL_RADIUS_K * vessel_scales_mm[best[i] - 1];
            d[i] = (float)(rmax * rmax - r * r);
            seeds = true;
        }
    }
    if (seeds) {
        rc = covct_filter_edt_sq_inplace(d, b.nx, b.ny, b.nz, ct->spacing,
                                         threads, err);
        if (rc != COVCT_OK) {
            covct_free(m);
            covct_free(best);
            goto done;
        }
        for (size_t i = 0; i < b.n; i++)
            if ((fl[i] & F_BRIGHT) && d[i] <= rmax * rmax)
                fl[i] |= F_VESSEL;
    }
    covct_free(best);

    tmark(&tm, 3);
    /* 4. Candidates: bright, not too dense, not vessel, not airway wall. */
    bool airway = false;
    if (seg->airways)
        for (size_t z = 0; z < b.nz; z++)
            for (size_t y = 0; y < b.ny; y++) {
                size_t src = (z + b.z0) * plane + (y + b.y0) * nx + b.x0;
                for (size_t x = 0; x < b.nx; x++) {
                    m[z * bplane + y * b.nx + x] = seg->airways[src + x] != 0;
                    airway |= seg->airways[src + x] != 0;
                }
            }
    if (airway) {
        rc = covct_filter_edt_sq(m, b.nx, b.ny, b.nz, ct->spacing, d,
                                 threads, err);
        if (rc != COVCT_OK) {
            covct_free(m);
            goto done;
        }
    }
    for (size_t i = 0; i < b.n; i++)
        if ((fl[i] & F_BRIGHT) && !(fl[i] & F_VESSEL) && f[i] <= CONS_MAX_HU &&
            !(airway && d[i] <= AIRWAY_WALL_MM * AIRWAY_WALL_MM))
            fl[i] |= F_CAND;

    tmark(&tm, 4);
    /* 5. Pleural rim: depth below the lung surface by a window scan over
     * the candidates only (they are a few per cent of the lung), then
     * distance from each rim candidate to a deep candidate. */
    covct_free(m);
    m = NULL;
    {
        /* w: 0 not candidate, 1 rim, 2 middle, 3 deep. */
        for (size_t i = 0; i < b.n; i++) {
            w[i] = 0;
            if (!(fl[i] & F_CAND))
                continue;
            double d2 = win_min_d2(fl, &b, ct->spacing, i, DEEP_MM, F_LUNG, 0);
            w[i] = d2 <= RIM_MM * RIM_MM ? 1.0f
                   : d2 > DEEP_MM * DEEP_MM ? 3.0f : 2.0f;
        }
        for (size_t i = 0; i < b.n; i++) {
            if (w[i] != 1.0f)
                continue;
            if (!win_any_deep(w, &b, ct->spacing, i, KEEP_MM))
                fl[i] |= F_SEEN;
        }
        for (size_t i = 0; i < b.n; i++)
            if (fl[i] & F_SEEN)
                fl[i] &= (uint8_t) ~(F_CAND | F_SEEN);
    }

    tmark(&tm, 5);
    /* 5b. Partial-volume edges of dense structures: a ground-glass
     * voxel with both consolidation-density lesion and aerated lung
     * within EDGE_MM is the blurred rim of the consolidation (a step of
     * 870 HU crosses -700..-300 HU within about 1.5 mm), not tissue of
     * its own.  A true ground-glass halo thinner than that cannot be told
     * from the blur and goes with it. */
    {
        int rx = (int)floor(EDGE_MM / ct->spacing[0]);
        int ry = (int)floor(EDGE_MM / ct->spacing[1]);
        int rz = (int)floor(EDGE_MM / ct->spacing[2]);
        for (size_t i = 0; i < b.n; i++) {
            if (!(fl[i] & F_CAND) || f[i] >= CONS_MIN_HU)
                continue;
            size_t z = i / bplane, y = (i / b.nx) % b.ny, x = i % b.nx;
            bool dense = false, air = false;
            for (int dz = -rz; dz <= rz && !(dense && air); dz++) {
                if ((ptrdiff_t)z + dz < 0 || (size_t)((ptrdiff_t)z + dz) >= b.nz)
                    continue;
                for (int dy = -ry; dy <= ry && !(dense && air); dy++) {
                    if ((ptrdiff_t)y + dy < 0 ||
                        (size_t)((ptrdiff_t)y + dy) >= b.ny)
                        continue;
                    for (int dx = -rx; dx <= rx; dx++) {
                        if ((ptrdiff_t)x + dx < 0 ||
                            (size_t)((ptrdiff_t)x + dx) >= b.nx)
                            continue;
                        double ex = dx * ct->spacing[0],
                               ey = dy * ct->spacing[1],
                               ez = dz * ct->spacing[2];
                        if (ex * ex + ey * ey + ez * ez > EDGE_MM * EDGE_MM)
                            continue;
                        size_t j = (size_t)((ptrdiff_t)i + dx +
                                            dy * (ptrdiff_t)b.nx +
                                            dz * (ptrdiff_t)bplane);
                        if (!(fl[j] & F_LUNG))
                            continue;
                        if ((fl[j] & F_CAND) && f[j] >= CONS_MIN_HU)
                            dense = true;
                        else if (f[j] < GGO_MIN_HU)
                            air = true;
                    }
                }
            }
            if (dense && air)
                fl[i] |= F_SEEN; /* drop after the scan */
        }
        for (size_t i = 0; i < b.n; i++)
            if (fl[i] & F_SEEN)
                fl[i] &= (uint8_t) ~(F_CAND | F_SEEN);
    }

    tmark(&tm, 6);
    /* 6. Specks out, small holes in. */
    size_t min_vox = (size_t)ceil(MIN_LESION_MM3 / vox_mm3);
    size_t max_hole = (size_t)floor(MAX_HOLE_MM3 / vox_mm3);
    clear_seen(fl, b.n);
    for (size_t i = 0; i < b.n; i++) {
        if (!(fl[i] & F_CAND) || (fl[i] & F_SEEN))
            continue;
        if (component(fl, &b, i, F_CAND, 1, &todo, &mem) != 0)
            goto nomem;
        /* A component with no voxel deeper than DEEP_MM below the lung
         * surface is a partial-volume sheet along the pleura, the heart or
         * the diaphragm (or fills a lung sliver thinner than 2 x DEEP_MM),
         * not an opacity of its own. */
        bool deep = false;
        for (size_t k = 0; k < mem.len && !deep; k++)
            deep = w[mem.v[k]] == 3.0f;
        if (mem.len < min_vox || !deep)
            for (size_t k = 0; k < mem.len; k++)
                fl[mem.v[k]] &= (uint8_t)~F_CAND;
    }
    clear_seen(fl, b.n);
    for (size_t i = 0; i < b.n; i++) {
        if ((fl[i] & (F_CAND | F_VESSEL | F_SEEN)) || !(fl[i] & F_LUNG))
            continue;
        /* Background of lung, 6-connected: the complement of a
         * 26-connected foreground. */
        size_t j0 = i;
        todo.len = mem.len = 0;
        fl[j0] |= F_SEEN;
        if (stack_push(&todo, j0))
            goto nomem;
        bool big = false;
        while (todo.len) {
            size_t j = todo.v[--todo.len];
            if (!big && stack_push(&mem, j))
                goto nomem;
            if (mem.len > max_hole) {
                big = true;
                mem.len = 0;
            }
            size_t z = j / bplane, y = (j / b.nx) % b.ny, x = j % b.nx;
            size_t nb[6];
            int cnt = 0;
            if (x > 0) nb[cnt++] = j - 1;
            if (x + 1 < b.nx) nb[cnt++] = j + 1;
            if (y > 0) nb[cnt++] = j - b.nx;
            if (y + 1 < b.ny) nb[cnt++] = j + b.nx;
            if (z > 0) nb[cnt++] = j - bplane;
            if (z + 1 < b.nz) nb[cnt++] = j + bplane;
            for (int k = 0; k < cnt; k++) {
                uint8_t g = fl[nb[k]];
                if ((g & F_LUNG) && !(g & (F_CAND | F_VESSEL | F_SEEN))) {
                    fl[nb[k]] |= F_SEEN;
                    if (stack_push(&todo, nb[k]))
                        goto nomem;
                }
            }
        }
        if (!big)
            for (size_t k = 0; k < mem.len; k++)
                fl[mem.v[k]] |= F_CAND;
    }

    /* 6b. Opacities have a core: a piece whose every voxel lies within
     * CORE_MM of lung outside it is a sheet or a shell (the wall of a
     * bronchus, the partial-volume shell of a vessel, a fissure, a rim
     * along the heart), not an opacity.  A window test per voxel, stopping
     * at the first core found: candidates are a few per cent of the box. */
    clear_seen(fl, b.n);
    for (size_t i = 0; i < b.n; i++) {
        if (!(fl[i] & F_CAND) || (fl[i] & F_SEEN))
            continue;
        if (component(fl, &b, i, F_CAND, 1, &todo, &mem) != 0)
            goto nomem;
        bool core = false;
        for (size_t k = 0; k < mem.len && !core; k++)
            core = win_all(fl, &b, ct->spacing, mem.v[k], CORE_MM, F_CAND);
        if (!core)
            for (size_t k = 0; k < mem.len; k++)
                fl[mem.v[k]] &= (uint8_t)~F_CAND;
    }
    clear_seen(fl, b.n);

    tmark(&tm, 7);
    /* 7. Labels: GGO or consolidation per voxel by smoothed density. */
    for (size_t z = 0; z < b.nz; z++)
        for (size_t y = 0; y < b.ny; y++) {
            size_t dst = (z + b.z0) * plane + (y + b.y0) * nx + b.x0;
            size_t src = z * bplane + y * b.nx;
            for (size_t x = 0; x < b.nx; x++) {
                uint8_t g = fl[src + x];
                if (g & F_CAND)
                    seg->lesions[dst + x] = f[src + x] >= CONS_MIN_HU
                                                ? COVCT_LESION_CONSOLIDATION
                                                : COVCT_LESION_GGO;
                if (g & F_VESSEL)
                    seg->vessels[dst + x] = 1;
            }
        }
    tmark(&tm, 8);
    covct_log(COVCT_LOG_DEBUG,
              "lesions: box %zux%zux%zu; setup %.2f smoothing %.2f "
              "vesselness %.2f vessel mask %.2f candidates %.2f rim %.2f "
              "edges %.2f components %.2f labels %.2f s",
              b.nx, b.ny, b.nz, tm.t[0], tm.t[1], tm.t[2], tm.t[3], tm.t[4],
              tm.t[5], tm.t[6], tm.t[7], tm.t[8]);
    goto done;

nomem:
    rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "lesions: out of memory");
done:
    covct_free(f);
    covct_free(w);
    covct_free(d);
    covct_free(fl);
    covct_free(todo.v);
    covct_free(mem.v);
    if (rc != COVCT_OK)
        memset(seg->lesions, 0, nvox);
    return rc;
}
