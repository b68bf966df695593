/* Body, airways and lungs on a chest CT.  Method and limits:
 * docs/internals/lungs.md. */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "analysis/analysis_int.h"

/* Thresholds in HU.  Body: fat is about -100, lung about -850, so -500
 * separates the patient from the air around him.  Air-like: -320 keeps
 * partial-volume lung at the pleura and vessels' edges out of the body
 * wall.  Airway growth: -900 is conservative, the lumen is -1000 and the
 * parenchyma beside it rarely that low, so a grow that stays below it
 * stays in the lumen. */
#define BODY_HU (-500.0)
#define AIR_HU (-320.0)
#define AIRWAY_HU (-900.0)
/* Concavity filling accepts tissue up to +100 HU: consolidation is 0..60
 * unenhanced, bone and contrast-filled vessels above. */
#define POCKET_HU_MAX 100.0
#define POCKET_DEPTH_MM 40.0
/* Holes up to this area (mm2) in a slice are vessels, bronchi, small
 * nodules: filled without the 3-D test. */
#define SMALL_HOLE_MM2 300.0
/* z-closing: reach above and below (mm) and the densest tissue taken
 * (unenhanced consolidation is 0..60 HU; cortical bone, contrast-filled
 * vessels and calcium are above). */
#define ZCLOSE_MM 30.0
#define ZCLOSE_HU_MAX 150.0
#define ZCLOSE_WALL_MM 30.0
/* A z-closed voxel is kept only when lung of its side lies within this
 * distance of it towards the midline (rows), or, for voxels behind the
 * lung's centre, towards the front (columns): pleural consolidation has
 * aerated lung on its inner side; the rims of the heart and mediastinum,
 * whose inner side is the mediastinum, do not. */
#define ZCLOSE_RAY_MM 35.0
/* Rolling ball (3-D closing of each lung, step 9): a ball of this radius
 * (mm) fills the dents that dense disease against the pleura leaves in the
 * aerated lung, where the z-closing has no lung on both sides (base, apex)
 * and the slice's hull pocket merges with the diaphragm dome.  The heart
 * and the dome are far wider than the ball and stay out; the hilar vessels
 * do not, so only voxels within BALL_WALL_MM of the outline of the hull of
 * both lungs are taken (as for the z-closing).  The closing runs on a grid
 * of about BALL_GRID_MM, ample for a 15 mm ball. */
#define BALL_MM 15.0
#define BALL_GRID_MM 2.0
#define BALL_WALL_MM 40.0
/* Adult single-lung volumes: a small or collapsed-but-aerated lung is
 * about 0.5 L, a hyperinflated one about 4.5 L; the margins allow for
 * partial scan range and disease. */
#define LUNG_MIN_ML 300.0
#define LUNG_MAX_ML 5000.0
/* Air inside the body of at least this size is the lung candidate. */
#define CAND_MIN_ML 300.0

typedef struct ctx {
    const covct_volume *ct;
    covct_seg *seg;
    uint32_t nx, ny, nz;
    size_t np, n;
    double sx, sy, sz, vox_ml, px_mm2;
    double mid_x;   /* patient x of the midline (mm) */
    uint32_t zr;    /* z-closing reach in slices */
    uint16_t *ext;  /* [lung 1, 2][z][y][first, last x] of the lung rows
                       (UINT16_MAX: none); see row_ends() */
    uint8_t *air;   /* working mask */
    uint8_t *work;  /* second working mask */
    uint32_t ox, oy, oz; /* where this ctx's grid starts in the volume's
                            (a crop; 0 for the whole volume) */
    double wall_mm; /* wall_range(): hull outline distance kept */
    bool wall_rays; /* wall_range(): also require lung on the inner side */
    const uint32_t *wall_count; /* wall_range(): c->work voxels per slice,
                                   or NULL (unknown) */
    covct_error *err;
} ctx;

static double patient_x(const covct_volume *ct, double i, double j, double k)
{
    return ct->affine[0][0] * i + ct->affine[0][1] * j +
           ct->affine[0][2] * k + ct->affine[0][3];
}

/* ---- thresholds ------------------------------------------------------------ */

/* Coordinates of voxel i (volumes have at most 2^32 voxels, checked on
 * entry): 32-bit division, two of them; the breadth-first growths call
 * this for millions of voxels. */
static inline void vox_xyz(uint32_t i, uint32_t nx, uint32_t np, uint32_t *x,
                           uint32_t *y, uint32_t *z)
{
    uint32_t zz = i / np, r = i - zz * np, yy = r / nx;
    *x = r - yy * nx;
    *y = yy;
    *z = zz;
}

typedef struct thr_job {
    const covct_volume *ct;
    uint8_t *body, *air;
    size_t np;
} thr_job;

static int thr_range(uint32_t z0, uint32_t z1, void *p)
{
    thr_job *j = p;
    const uint8_t *out = j->ct->outside;
    for (size_t i = j->np * z0; i < j->np * z1; i++) {
        double v = covct_hu(j->ct, i);
        bool o = out && out[i];
        if (j->body)
            j->body[i] = !o && v > BODY_HU;
        if (j->air)
            j->air[i] = !o && v < AIR_HU;
    }
    return 0;
}

/* ---- airways ----------------------------------------------------------------
 * Trachea: the topmost round air component near the middle of the body.
 * Then grown slice by slice (2-D components of HU < AIRWAY_HU inside the
 * air mask that overlap the airway of the previous slice), up to the top
 * of the volume and down through the carina into the main bronchi.  A
 * component more than twice the area of the trachea has merged with the
 * parenchyma (a leak): it is not taken and its branch stops there.  Below
 * the carina a branch stops after MAIN_BRONCHUS_MM. */
#define MAIN_BRONCHUS_MM 45.0

typedef struct airway_scratch {
    uint8_t *m, *prev, *cur;
    uint32_t *lab, *parent;
} airway_scratch;

typedef struct comp_stat {
    uint32_t x0, x1, y0, y1;
    double cnt, cx;
} comp_stat;

static uint32_t slice_of(const ctx *c, int step, uint32_t s)
{
    return step > 0 ? s : c->nz - 1 - s;
}

/* One step of the growth: from airway pixels `prev` into slice z. Returns
 * the number of pixels taken. */
static size_t grow_slice(ctx *c, airway_scratch *w, uint32_t z,
                         double max_area_mm2)
{
    const uint8_t *air = c->air + c->np * z;
    for (size_t i = 0; i < c->np; i++)
        w->m[i] = air[i] && covct_hu(c->ct, c->np * z + i) < AIRWAY_HU;
    uint32_t nl = covct_morph_label2d(w->m, c->nx, c->ny, false, w->lab,
                                      w->parent);
    memset(w->cur, 0, c->np);
    if (!nl)
        return 0;
    /* Reuse parent[] as per-label area and overlap counters. */
    uint32_t *area = w->parent, *over = w->parent + nl + 1;
    memset(area, 0, (size_t)(nl + 1) * 2 * sizeof *area);
    for (size_t i = 0; i < c->np; i++) {
        area[w->lab[i]]++;
        if (w->prev[i])
            over[w->lab[i]]++;
    }
    size_t taken = 0;
    for (size_t i = 0; i < c->np; i++) {
        uint32_t l = w->lab[i];
        if (l && over[l] && area[l] * c->px_mm2 <= max_area_mm2) {
            w->cur[i] = 1;
            taken++;
        }
    }
    return taken;
}

static covct_rc find_airways(ctx *c, bool *found)
{
    *found = false;
    uint32_t nx = c->nx, ny = c->ny, nz = c->nz;
    size_t np = c->np;
    airway_scratch w = {0};
    w.m = covct_malloc(np);
    w.prev = covct_malloc(np);
    w.cur = covct_malloc(np);
    w.lab = covct_malloc(np * sizeof *w.lab);
    w.parent = covct_malloc((covct_morph_label2d_scratch(nx, ny) + np + 2) *
                            sizeof *w.parent);
    comp_stat *st = covct_malloc((covct_morph_label2d_scratch(nx, ny) + 1) *
                                 sizeof *st);
    covct_rc rc = COVCT_OK;
    if (!w.m || !w.prev || !w.cur || !w.lab || !w.parent || !st) {
        rc = COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory (airways)");
        goto done;
    }
    /* step +1: increasing k goes to the head. Iterate from the head. */
    int head = c->ct->affine[2][2] >= 0 ? 1 : -1;
    uint32_t first = UINT32_MAX, last = 0; /* in head-to-feet order */
    for (uint32_t s = 0; s < nz; s++) {
        uint32_t z = slice_of(c, -head, s);
        const uint8_t *a = c->air + np * z;
        if (memchr(a, 1, np)) {
            if (first == UINT32_MAX)
                first = s;
            last = s;
        }
    }
    if (first == UINT32_MAX)
        goto done;
    /* Search the top 40 % of the air's extent for the trachea. */
    uint32_t seed_s = UINT32_MAX;
    double seed_area = 0;
    uint32_t s_end = first + (uint32_t)((last - first) * 0.4) + 1;
    for (uint32_t s = first; s < s_end && seed_s == UINT32_MAX; s++) {
        uint32_t z = slice_of(c, -head, s);
        const uint8_t *a = c->air + np * z;
        const uint8_t *body = c->seg->body + np * z;
        /* Body centre of the slice in patient x. */
        double bx = 0, bn = 0;
        for (uint32_t y = 0; y < ny; y += 2)
            for (uint32_t x = 0; x < nx; x += 2)
                if (body[(size_t)y * nx + x]) {
                    bx += patient_x(c->ct, x, y, z);
                    bn++;
                }
        if (bn == 0)
            continue;
        bx /= bn;
        uint32_t nl = covct_morph_label2d(a, nx, ny, false, w.lab, w.parent);
        if (!nl)
            continue;
        for (uint32_t l = 1; l <= nl; l++) {
            st[l].x0 = nx;
            st[l].y0 = ny;
            st[l].x1 = st[l].y1 = 0;
            st[l].cnt = st[l].cx = 0;
        }
        for (uint32_t y = 0; y < ny; y++)
            for (uint32_t x = 0; x < nx; x++) {
                uint32_t l = w.lab[(size_t)y * nx + x];
                if (!l)
                    continue;
                comp_stat *q = &st[l];
                q->cnt++;
                q->cx += patient_x(c->ct, x, y, z);
                if (x < q->x0) q->x0 = x;
                if (x > q->x1) q->x1 = x;
                if (y < q->y0) q->y0 = y;
                if (y > q->y1) q->y1 = y;
            }
        for (uint32_t l = 1; l <= nl; l++) {
            uint32_t x0 = st[l].x0, x1 = st[l].x1, y0 = st[l].y0,
                     y1 = st[l].y1;
            double cnt = st[l].cnt, cx = st[l].cx;
            double area = cnt * c->px_mm2;
            double bw = (x1 - x0 + 1) * c->sx, bh = (y1 - y0 + 1) * c->sy;
            double round = area / (M_PI / 4 * bw * bh);
            cx /= cnt;
            /* Trachea: 12-30 mm across (area 80-1000 mm2), round, within
             * 30 mm of the body's centre. */
            if (area >= 80 && area <= 1000 && round >= 0.6 &&
                fabs(cx - bx) <= 30 && bw <= 40 && bh <= 40) {
                seed_s = s;
                seed_area = area;
                for (size_t i = 0; i < np; i++)
                    w.prev[i] = w.lab[i] == l;
                break;
            }
        }
    }
    if (seed_s == UINT32_MAX)
        goto done;
    *found = true;
    c->mid_x = 0;
    {
        double cnt = 0;
        uint32_t z = slice_of(c, -head, seed_s);
        for (uint32_t y = 0; y < ny; y++)
            for (uint32_t x = 0; x < nx; x++)
                if (w.prev[(size_t)y * nx + x]) {
                    c->mid_x += patient_x(c->ct, x, y, z);
                    cnt++;
                }
        c->mid_x /= cnt;
    }
    double max_area = 2.0 * (seed_area > 150 ? seed_area : 150);
    uint8_t *seed = covct_malloc(np);
    if (!seed) {
        rc = COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory (airways)");
        goto done;
    }
    memcpy(seed, w.prev, np);
    /* Up to the head, then down to the feet. */
    for (int dir = -1; dir <= 1; dir += 2) {
        memcpy(w.prev, seed, np);
        uint32_t z0 = slice_of(c, -head, seed_s);
        uint8_t *out = c->seg->airways + np * z0;
        for (size_t i = 0; i < np; i++)
            out[i] |= seed[i];
        double carina_mm = -1, travelled = 0;
        for (uint32_t s = seed_s + (dir > 0 ? 1u : 0u);
             dir > 0 ? s < nz : s-- > 0; dir > 0 ? s++ : 0) {
            uint32_t z = slice_of(c, -head, s);
            size_t taken = grow_slice(c, &w, z, max_area);
            if (!taken)
                break;
            travelled += c->sz;
            if (dir > 0) {
                /* Carina: the airway of a slice first splits in two. */
                uint32_t nl = covct_morph_label2d(w.cur, nx, ny, false,
                                                  w.lab, w.parent);
                if (nl >= 2 && carina_mm < 0)
                    carina_mm = travelled;
                if (carina_mm >= 0 && travelled - carina_mm > MAIN_BRONCHUS_MM)
                    break;
                if (travelled > 250)
                    break;
            }
            out = c->seg->airways + np * z;
            for (size_t i = 0; i < np; i++)
                out[i] |= w.cur[i];
            memcpy(w.prev, w.cur, np);
        }
    }
    covct_free(seed);
done:
    covct_free(st);
    covct_free(w.m);
    covct_free(w.prev);
    covct_free(w.cur);
    covct_free(w.lab);
    covct_free(w.parent);
    return rc;
}

/* ---- left/right split ---------------------------------------------------------
 * Erode (per slice, by a distance threshold) until the air splits into two
 * large 3-D components, then grow both back over the air in breadth-first
 * order, so every voxel goes to the nearer (geodesically) seed and the
 * boundary falls on the thin junction. */
static covct_rc split_lungs(ctx *c, bool *two)
{
    *two = false;
    covct_rc rc;
    uint8_t *dist = c->work;
    bool have_dist = false;
    uint8_t *seedm = covct_malloc(c->n);
    uint32_t *queue = NULL;
    if (!seedm)
        return COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory (split)");
    static const double radii[] = {0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20};
    uint8_t lab_of[3] = {0, 0, 0};
    covct_cc3 cc = {0};
    for (size_t ri = 0; ri < sizeof radii / sizeof radii[0]; ri++) {
        uint8_t t = (uint8_t)(radii[ri] * 2);
        if (ri == 0) {
            memcpy(seedm, c->air, c->n);
        } else {
            if (!have_dist) {
                rc = covct_morph_edt2d_u8(c->air, c->nx, c->ny, c->nz, c->sx,
                                          c->sy, dist, c->err);
                if (rc != COVCT_OK)
                    goto done;
                have_dist = true;
            }
            for (size_t i = 0; i < c->n; i++)
                seedm[i] = c->air[i] && dist[i] > t;
        }
        rc = covct_morph_cc3(seedm, c->nx, c->ny, c->nz, 6, &cc, c->err);
        if (rc != COVCT_OK)
            goto done;
        uint32_t b1 = 0, b2 = 0;
        for (uint32_t l = 1; l <= cc.n; l++) {
            uint64_t s = cc.stat[l].size;
            if (!b1 || s > cc.stat[b1].size) {
                b2 = b1;
                b1 = l;
            } else if (!b2 || s > cc.stat[b2].size) {
                b2 = l;
            }
        }
        if (b2 && cc.stat[b2].size * c->vox_ml >= 100 &&
            cc.stat[b2].size >= cc.stat[b1].size / 8) {
            /* Side by patient x: LPS +x is the patient's left. */
            double x1 = patient_x(
                c->ct,
                c->ox + (double)cc.stat[b1].sum[0] / cc.stat[b1].size,
                c->oy + (double)cc.stat[b1].sum[1] / cc.stat[b1].size,
                c->oz + (double)cc.stat[b1].sum[2] / cc.stat[b1].size);
            double x2 = patient_x(
                c->ct,
                c->ox + (double)cc.stat[b2].sum[0] / cc.stat[b2].size,
                c->oy + (double)cc.stat[b2].sum[1] / cc.stat[b2].size,
                c->oz + (double)cc.stat[b2].sum[2] / cc.stat[b2].size);
            uint8_t *val = covct_calloc((size_t)cc.n + 1, 1);
            if (!val) {
                rc = COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory");
                goto done;
            }
            val[b1] = x1 > x2 ? COVCT_LUNG_LEFT : COVCT_LUNG_RIGHT;
            val[b2] = x1 > x2 ? COVCT_LUNG_RIGHT : COVCT_LUNG_LEFT;
            covct_morph_cc3_relabel(&cc, val, c->seg->lungs);
            covct_free(val);
            covct_log(COVCT_LOG_DEBUG,
                      "lungs: the two lungs part at an erosion of %.0f mm "
                      "(%zu of %zu radii tried)",
                      radii[ri], ri + 1, sizeof radii / sizeof radii[0]);
            *two = true;
            lab_of[1] = 1;
            covct_morph_cc3_free(&cc);
            break;
        }
        if (b1 && ri + 1 == sizeof radii / sizeof radii[0]) {
            /* Never split: one lung only; label it by side for the
             * message, the caller rejects it. */
            uint8_t *val = covct_calloc((size_t)cc.n + 1, 1);
            if (!val) {
                rc = COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory");
                goto done;
            }
            val[b1] = 1;
            covct_morph_cc3_relabel(&cc, val, c->seg->lungs);
            covct_free(val);
        }
        covct_morph_cc3_free(&cc);
    }
    (void)lab_of;
    /* Breadth-first growth of the labels over the air mask. */
    size_t nq = 0;
    for (size_t i = 0; i < c->n; i++)
        nq += c->air[i] != 0;
    queue = covct_malloc((nq ? nq : 1) * sizeof *queue);
    if (!queue) {
        rc = COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory (split)");
        goto done;
    }
    size_t head = 0, tail = 0;
    uint8_t *L = c->seg->lungs;
    for (size_t i = 0; i < c->n; i++)
        if (L[i])
            queue[tail++] = (uint32_t)i;
    size_t np = c->np, nxs = c->nx;
    while (head < tail) {
        size_t i = queue[head++];
        uint32_t x, y, z;
        vox_xyz((uint32_t)i, (uint32_t)nxs, (uint32_t)np, &x, &y, &z);
        size_t nb[6];
        int k = 0;
        if (x > 0) nb[k++] = i - 1;
        if (x + 1 < nxs) nb[k++] = i + 1;
        if (y > 0) nb[k++] = i - nxs;
        if (y + 1 < c->ny) nb[k++] = i + nxs;
        if (z > 0) nb[k++] = i - np;
        if (z + 1 < c->nz) nb[k++] = i + np;
        for (int q = 0; q < k; q++) {
            size_t j = nb[q];
            if (c->air[j] && !L[j] && tail < nq) {
                L[j] = L[i];
                queue[tail++] = (uint32_t)j;
            }
        }
    }
done:
    covct_morph_cc3_free(&cc);
    covct_free(seedm);
    covct_free(queue);
    return rc;
}

/* ---- working on the lungs' box ---------------------------------------------
 * The split and the gas removal below visit every voxel of their grid
 * (distance maps, connected components, growth), and the lungs fill about
 * a third of a chest CT's field of view.  So they run on the bounding box
 * of the air mask plus one voxel of non-air around it: a copy of c->air
 * and of the lung labels, both copied back afterwards (outside the box
 * they are zero before and after).  The result is the same as on the whole grid: nothing
 * in the box touches its sides, so each voxel's nearest outside voxel in
 * its slice, and every component, lie inside. */
typedef struct box {
    uint32_t x0, y0, z0, nx, ny, nz;
    bool use; /* false: the box is most of the grid, or there is no air */
} box;

static void air_box(const ctx *c, box *b)
{
    uint32_t x0 = c->nx, x1 = 0, y0 = c->ny, y1 = 0, z0 = c->nz, z1 = 0;
    for (uint32_t z = 0; z < c->nz; z++)
        for (uint32_t y = 0; y < c->ny; y++) {
            const uint8_t *row = c->air + (size_t)z * c->np + (size_t)y * c->nx;
            uint32_t xl = 0, xr = c->nx;
            while (xl < c->nx && !row[xl])
                xl++;
            if (xl == c->nx)
                continue;
            while (!row[xr - 1])
                xr--;
            x0 = xl < x0 ? xl : x0;
            x1 = xr - 1 > x1 ? xr - 1 : x1;
            y0 = y < y0 ? y : y0;
            y1 = y > y1 ? y : y1;
            z0 = z < z0 ? z : z0;
            z1 = z;
        }
    memset(b, 0, sizeof *b);
    if (x0 > x1)
        return;
    b->x0 = x0 ? x0 - 1 : 0;
    b->y0 = y0 ? y0 - 1 : 0;
    b->z0 = z0 ? z0 - 1 : 0;
    b->nx = (x1 + 1 < c->nx ? x1 + 1 : x1) - b->x0 + 1;
    b->ny = (y1 + 1 < c->ny ? y1 + 1 : y1) - b->y0 + 1;
    b->nz = (z1 + 1 < c->nz ? z1 + 1 : z1) - b->z0 + 1;
    b->use = (size_t)b->nx * b->ny * b->nz * 10 <= c->n * 9;
}

/* Copy the box's rows between the grid (g) and the box (s). */
static void box_copy(const ctx *c, const box *b, uint8_t *g, uint8_t *s,
                     bool to_box)
{
    for (uint32_t z = 0; z < b->nz; z++)
        for (uint32_t y = 0; y < b->ny; y++) {
            uint8_t *gr = g + (size_t)(z + b->z0) * c->np +
                          (size_t)(y + b->y0) * c->nx + b->x0;
            uint8_t *sr = s + ((size_t)z * b->ny + y) * b->nx;
            if (to_box)
                memcpy(sr, gr, b->nx);
            else
                memcpy(gr, sr, b->nx);
        }
}

/* A ctx for the box b of c: copies of c->air and of the lung labels
 * (freed by box_leave).  Without b->use, *sub is c itself. */
static covct_rc box_enter(ctx *c, const box *b, ctx *sub, covct_seg *sseg)
{
    *sub = *c;
    if (!b->use)
        return COVCT_OK;
    sub->nx = b->nx;
    sub->ny = b->ny;
    sub->nz = b->nz;
    sub->np = (size_t)b->nx * b->ny;
    sub->n = sub->np * b->nz;
    sub->ox = c->ox + b->x0;
    sub->oy = c->oy + b->y0;
    sub->oz = c->oz + b->z0;
    *sseg = *c->seg; /* only its lungs are used */
    sub->seg = sseg;
    sub->air = covct_malloc(sub->n);
    sseg->lungs = covct_malloc(sub->n);
    if (!sub->air || !sseg->lungs) {
        covct_free(sub->air);
        covct_free(sseg->lungs);
        return COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory (lungs)");
    }
    /* c->work serves the box as scratch: it only needs sub->n bytes */
    box_copy(c, b, c->air, sub->air, true);
    box_copy(c, b, c->seg->lungs, sseg->lungs, true);
    return COVCT_OK;
}

/* Back from the box: on success its air and labels go back into c (the
 * voxels outside the box are zero in both and stay so), then the copies
 * are freed. */
static covct_rc box_leave(ctx *c, const box *b, ctx *sub, covct_rc rc)
{
    if (!b->use)
        return rc;
    if (rc == COVCT_OK) {
        box_copy(c, b, c->air, sub->air, false);
        box_copy(c, b, c->seg->lungs, sub->seg->lungs, false);
    }
    covct_free(sub->air);
    covct_free(sub->seg->lungs);
    return rc;
}

/* ---- gas under the diaphragm ------------------------------------------------
 * Stomach or colon gas under a thin diaphragm joins the lung base through
 * partial-volume voxels.  Cores of the lungs (air farther than GAS_CORE_MM
 * from non-air in the slice) are split in 3-D components; a component
 * other than its lung's largest that lies mostly below that largest core
 * (in the same (x, y) columns) is gas under the diaphragm.  The lung
 * voxels are given to the geodesically nearest core (breadth-first, as in
 * the left/right split) and those reached from dropped cores removed. */
#define GAS_CORE_MM 3.0

static covct_rc drop_subphrenic(ctx *c)
{
    uint8_t *L = c->seg->lungs, *core = c->air;
    size_t np = c->np;
    covct_rc rc = covct_morph_edt2d_u8(L, c->nx, c->ny, c->nz, c->sx, c->sy,
                                       c->work, c->err);
    if (rc != COVCT_OK)
        return rc;
    uint8_t t = (uint8_t)(GAS_CORE_MM * 2);
    for (size_t i = 0; i < c->n; i++)
        core[i] = L[i] && c->work[i] > t;
    covct_cc3 cc;
    rc = covct_morph_cc3(core, c->nx, c->ny, c->nz, 6, &cc, c->err);
    if (rc != COVCT_OK)
        return rc;
    uint8_t *val = covct_calloc((size_t)cc.n + 1, 1);
    uint64_t *below = covct_calloc((size_t)cc.n + 1, sizeof *below);
    uint32_t *top = covct_malloc(2 * np * sizeof *top);
    uint32_t *queue = NULL;
    if (!val || !below || !top) {
        rc = COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory (lungs)");
        goto done;
    }
    size_t nrows = (size_t)c->ny * c->nz;
    /* Lung of each component, and each lung's largest. */
    uint32_t main_of[3] = {0, 0, 0};
    for (size_t r = 0; r < nrows; r++)
        for (uint32_t k = cc.row[r]; k < cc.row[r + 1]; k++)
            val[cc.lab[k]] = L[r * c->nx + cc.x0[k]];
    for (uint32_t l = 1; l <= cc.n; l++) {
        uint8_t s = val[l];
        if (s >= 1 && s <= 2 &&
            (!main_of[s] || cc.stat[l].size > cc.stat[main_of[s]].size))
            main_of[s] = l;
    }
    /* Head-most slice of each lung's main core per column. */
    bool head_up = c->ct->affine[2][2] >= 0;
    const uint32_t NONE = UINT32_MAX;
    for (size_t i = 0; i < 2 * np; i++)
        top[i] = NONE;
    for (size_t r = 0; r < nrows; r++) {
        uint32_t z = (uint32_t)(r / c->ny);
        size_t y = r % c->ny;
        for (uint32_t k = cc.row[r]; k < cc.row[r + 1]; k++) {
            uint32_t l = cc.lab[k];
            if (l != main_of[val[l]])
                continue;
            uint32_t *tp = top + np * (val[l] - 1) + y * c->nx;
            for (uint32_t x = cc.x0[k]; x < cc.x1[k]; x++)
                if (tp[x] == NONE || (head_up ? z > tp[x] : z < tp[x]))
                    tp[x] = z;
        }
    }
    bool any = false;
    for (size_t r = 0; r < nrows; r++) {
        uint32_t z = (uint32_t)(r / c->ny);
        size_t y = r % c->ny;
        for (uint32_t k = cc.row[r]; k < cc.row[r + 1]; k++) {
            uint32_t l = cc.lab[k];
            if (l == main_of[val[l]])
                continue;
            const uint32_t *tp = top + np * (val[l] - 1) + y * c->nx;
            for (uint32_t x = cc.x0[k]; x < cc.x1[k]; x++)
                below[l] += tp[x] != NONE && (head_up ? tp[x] > z : tp[x] < z);
        }
    }
    for (uint32_t l = 1; l <= cc.n; l++)
        if (l != main_of[val[l]] && below[l] * 2 > cc.stat[l].size) {
            val[l] += 2;
            any = true;
        }
    if (!any)
        goto done;
    covct_morph_cc3_relabel(&cc, val, core);
    size_t nq = 0;
    for (size_t i = 0; i < c->n; i++)
        nq += L[i] != 0;
    queue = covct_malloc((nq ? nq : 1) * sizeof *queue);
    if (!queue) {
        rc = COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory (lungs)");
        goto done;
    }
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < c->n; i++)
        if (core[i])
            queue[tail++] = (uint32_t)i;
    while (head < tail) {
        size_t i = queue[head++];
        uint8_t v = core[i], side = (uint8_t)((v - 1) % 2 + 1);
        uint32_t x, y, z;
        vox_xyz((uint32_t)i, c->nx, (uint32_t)np, &x, &y, &z);
        size_t nb[6];
        int k = 0;
        if (x > 0) nb[k++] = i - 1;
        if (x + 1 < c->nx) nb[k++] = i + 1;
        if (y > 0) nb[k++] = i - c->nx;
        if (y + 1 < c->ny) nb[k++] = i + c->nx;
        if (z > 0) nb[k++] = i - np;
        if (z + 1 < c->nz) nb[k++] = i + np;
        for (int q = 0; q < k; q++) {
            size_t j = nb[q];
            if (L[j] == side && !core[j] && tail < nq) {
                core[j] = v;
                queue[tail++] = (uint32_t)j;
            }
        }
    }
    for (size_t i = 0; i < c->n; i++)
        if (core[i] > 2)
            L[i] = 0;
done:
    covct_free(queue);
    covct_free(top);
    covct_free(below);
    covct_free(val);
    covct_morph_cc3_free(&cc);
    return rc;
}

/* First and last x of each lung row, per lung, into c->ext: the hulls of
 * the pocket stage read neighbouring slices from this snapshot while other
 * threads write their own slices. */
static int ends_range(uint32_t z0, uint32_t z1, void *p)
{
    const ctx *c = p;
    for (uint32_t z = z0; z < z1; z++)
        for (uint32_t y = 0; y < c->ny; y++) {
            const uint8_t *r = c->seg->lungs + c->np * z + (size_t)y * c->nx;
            for (uint8_t l = 1; l <= 2; l++) {
                uint16_t *e = c->ext + 2 * ((size_t)(l - 1) * c->nz * c->ny +
                                            (size_t)z * c->ny + y);
                e[0] = e[1] = UINT16_MAX;
                uint32_t a = 0;
                while (a < c->nx && r[a] != l)
                    a++;
                if (a == c->nx)
                    continue;
                uint32_t b = c->nx - 1;
                while (r[b] != l)
                    b--;
                e[0] = (uint16_t)a;
                e[1] = (uint16_t)b;
            }
        }
    return 0;
}

/* ---- per-slice completion: holes and pleural concavities ------------------ */

typedef struct fin_scratch {
    uint8_t *m, *hull, *crop;
    uint32_t *lab, *parent, *stack;
    float *dist;
    double *edt;
    double *lo, *hi;
    int32_t *px, *py;
    uint32_t cx0, cy0, cw, ch; /* crop of slice_holes() */
    size_t nh; /* hull vertices in stack[0..nh] (stack[nh] == stack[0]) */
} fin_scratch;

static double cross(int32_t ox, int32_t oy, int32_t ax, int32_t ay,
                    int32_t bx, int32_t by)
{
    return (double)(ax - ox) * (by - oy) - (double)(ay - oy) * (bx - ox);
}

/* Whether lung L (in this slice's `lung`) lies within ZCLOSE_RAY_MM of
 * (x, y) towards the midline along the row: the inner side of a pleural
 * opacity is aerated lung, the inner side of a heart or mediastinal rim
 * is the mediastinum. */
static bool inner_lung(const ctx *c, const uint8_t *lung, uint32_t z, int x,
                       int y, uint8_t L)
{
    double px = patient_x(c->ct, x, y, z);
    int step = ((c->mid_x - px) * c->ct->affine[0][0] > 0) ? 1 : -1;
    int rx = (int)ceil(ZCLOSE_RAY_MM / c->sx);
    for (int t = 1; t <= rx; t++) {
        int xx = x + step * t;
        if (xx < 0 || xx >= (int)c->nx)
            return false;
        if (lung[(size_t)y * c->nx + (size_t)xx] == L)
            return true;
    }
    return false;
}

/* Convex hull of lung label L (0: either lung) in slice z into w->hull;
 * false if none.
 * The points are the end pixels of each row, already sorted by (y, x),
 * so Andrew's monotone chain needs no sort. */
static bool slice_hull(const ctx *c, uint32_t z, uint8_t L, uint32_t zr,
                       fin_scratch *w, uint32_t *ylo, uint32_t *yhi)
{
    uint32_t nx = c->nx, ny = c->ny;
    size_t npts = 0;
    /* Row ends over the slices z, z +- zr/2, z +- zr (c->ext). */
    uint32_t offs[5] = {0, zr / 2, zr, zr / 2, zr};
    for (uint32_t y = 0; y < ny; y++) {
        uint32_t a = UINT32_MAX, b = 0;
        for (int o = 0; o < 5; o++) {
            if (o && !offs[o])
                continue;
            int64_t zz = o < 3 ? (int64_t)z + offs[o] : (int64_t)z - offs[o];
            if (zz < 0 || zz >= (int64_t)c->nz)
                continue;
            for (uint8_t l = 1; l <= 2; l++) {
                if (L && l != L)
                    continue;
                const uint16_t *e = c->ext + 2 * ((size_t)(l - 1) * c->nz * ny +
                                                  (size_t)zz * ny + y);
                if (e[0] == UINT16_MAX)
                    continue;
                if (e[0] < a)
                    a = e[0];
                if (e[1] > b)
                    b = e[1];
            }
        }
        if (a == UINT32_MAX)
            continue;
        w->px[npts] = (int32_t)a;
        w->py[npts++] = (int32_t)y;
        if (b != a) {
            w->px[npts] = (int32_t)b;
            w->py[npts++] = (int32_t)y;
        }
    }
    if (npts < 3)
        return false;
    /* Hull vertices into stack (indices), lower then upper chain, with y
     * as the primary coordinate. */
    uint32_t *h = w->stack;
    size_t k = 0;
    for (size_t i = 0; i < npts; i++) {
        while (k >= 2 && cross(w->py[h[k - 2]], w->px[h[k - 2]],
                               w->py[h[k - 1]], w->px[h[k - 1]], w->py[i],
                               w->px[i]) <= 0)
            k--;
        h[k++] = (uint32_t)i;
    }
    for (size_t i = npts - 1, t = k + 1; i-- > 0;) {
        while (k >= t && cross(w->py[h[k - 2]], w->px[h[k - 2]],
                               w->py[h[k - 1]], w->px[h[k - 1]], w->py[i],
                               w->px[i]) <= 0)
            k--;
        h[k++] = (uint32_t)i;
    }
    /* k - 1 distinct vertices, h[k-1] == h[0]. Rasterise: x span per row. */
    w->nh = k - 1;
    uint32_t y0 = (uint32_t)w->py[0], y1 = (uint32_t)w->py[npts - 1];
    for (uint32_t y = y0; y <= y1; y++) {
        w->lo[y] = DBL_MAX;
        w->hi[y] = -DBL_MAX;
    }
    for (size_t e = 0; e + 1 < k; e++) {
        double ax = w->px[h[e]], ay = w->py[h[e]];
        double bx = w->px[h[e + 1]], by = w->py[h[e + 1]];
        if (ay > by) {
            double t = ax; ax = bx; bx = t;
            t = ay; ay = by; by = t;
        }
        for (uint32_t y = (uint32_t)ay; y <= (uint32_t)by; y++) {
            double x = by > ay ? ax + (bx - ax) * (y - ay) / (by - ay) : ax;
            double xa = by > ay ? x : fmin(ax, bx);
            double xb = by > ay ? x : fmax(ax, bx);
            if (xa < w->lo[y]) w->lo[y] = xa;
            if (xb > w->hi[y]) w->hi[y] = xb;
        }
    }
    memset(w->hull, 0, c->np);
    for (uint32_t y = y0; y <= y1; y++) {
        if (w->lo[y] > w->hi[y])
            continue;
        long a = lround(ceil(w->lo[y] - 1e-9)), b = lround(floor(w->hi[y] + 1e-9));
        if (a < 0) a = 0;
        if (b >= (long)nx) b = (long)nx - 1;
        for (long x = a; x <= b; x++)
            w->hull[(size_t)y * nx + (size_t)x] = 1;
    }
    *ylo = y0;
    *yhi = y1;
    return true;
}

static void fill_pockets(const ctx *c, uint32_t z, uint8_t L, fin_scratch *w)
{
    uint32_t nx = c->nx, ny = c->ny;
    size_t off = c->np * z;
    uint8_t *lung = c->seg->lungs + off;
    const uint8_t *body = c->seg->body + off;
    const uint8_t *aw = c->seg->airways + off;
    const uint8_t *outside = c->ct->outside ? c->ct->outside + off : NULL;
    uint32_t y0, y1;
    if (!slice_hull(c, z, L, 0, w, &y0, &y1))
        return;
    /* Lung area and centre in this slice (patient x is affine in the
     * voxel indices: the x of the mean index is the mean x). */
    double la = 0, li = 0, lj = 0;
    for (uint32_t y = y0; y <= y1; y++)
        for (uint32_t x = 0; x < nx; x++)
            if (lung[(size_t)y * nx + x] == L) {
                la++;
                li += x;
                lj += y;
            }
    if (la < 20)
        return;
    double lx = patient_x(c->ct, li / la, lj / la, z);
    /* The pockets lie in the hull: work on its bounding box plus a margin
     * of one pixel (background at the crop's border).  Depth: distance
     * inside the hull to its outline (the costly part of this stage). */
    uint32_t cx0 = nx, cx1 = 0;
    for (uint32_t y = y0; y <= y1; y++) {
        if (w->lo[y] > w->hi[y])
            continue;
        double a = floor(w->lo[y]), b = ceil(w->hi[y]);
        if (a < cx0) cx0 = a < 0 ? 0 : (uint32_t)a;
        if (b > cx1) cx1 = b >= nx ? nx - 1 : (uint32_t)b;
    }
    cx0 = cx0 > 0 ? cx0 - 1 : 0;
    cx1 = cx1 + 1 < nx ? cx1 + 1 : nx - 1;
    uint32_t cy0 = y0 > 0 ? y0 - 1 : 0, cy1 = y1 + 1 < ny ? y1 + 1 : ny - 1;
    uint32_t cw = cx1 - cx0 + 1, ch = cy1 - cy0 + 1;
    size_t nc = (size_t)cw * ch;
    for (uint32_t y = 0; y < ch; y++)
        memcpy(w->crop + (size_t)y * cw, w->hull + (size_t)(y + cy0) * nx + cx0,
               cw);
    covct_morph_edt2d(w->crop, cw, ch, c->sx, c->sy, w->dist, w->edt);
    for (size_t k = 0; k < nc; k++) {
        size_t i = (size_t)(k / cw + cy0) * nx + k % cw + cx0;
        uint8_t in = w->crop[k] && !lung[i] && !aw[i] && body[i] &&
                     !(outside && outside[i]);
        if (in) {
            double v = covct_hu(c->ct, off + i);
            in = v > -1000.0 && v <= POCKET_HU_MAX;
        }
        w->m[k] = in;
    }
    uint32_t nl = covct_morph_label2d(w->m, cw, ch, false, w->lab, w->parent);
    if (!nl)
        return;
    /* Per pocket: area, depth, mean voxel index (for its centre x). */
    double *area = w->edt, *depth = w->edt + nl + 1;
    double *si = w->edt + 2 * ((size_t)nl + 1), *sj = w->edt + 3 * ((size_t)nl + 1);
    for (uint32_t l = 0; l <= nl; l++)
        area[l] = depth[l] = si[l] = sj[l] = 0;
    for (size_t k = 0; k < nc; k++) {
        uint32_t l = w->lab[k];
        if (!l)
            continue;
        area[l] += 1;
        if (w->dist[k] > depth[l])
            depth[l] = w->dist[k];
        si[l] += (double)(k % cw + cx0);
        sj[l] += (double)(k / cw + cy0);
    }
    double lung_mm2 = la * c->px_mm2;
    for (uint32_t l = 1; l <= nl; l++) {
        double cx = patient_x(c->ct, si[l] / area[l], sj[l] / area[l], z);
        bool ok = depth[l] <= POCKET_DEPTH_MM &&
                  area[l] * c->px_mm2 <= 0.5 * lung_mm2 &&
                  fabs(cx - c->mid_x) >= 0.6 * fabs(lx - c->mid_x);
        depth[l] = ok ? 1 : 0;
    }
    /* Decide every voxel against the lung as it was, then add them. */
    for (size_t k = 0; k < nc; k++)
        if (w->lab[k] && depth[w->lab[k]] == 1 &&
            !inner_lung(c, lung, z, (int)(k % cw + cx0), (int)(k / cw + cy0),
                        L))
            w->lab[k] = 0;
    for (size_t k = 0; k < nc; k++)
        if (w->lab[k] && depth[w->lab[k]] == 1)
            lung[(size_t)(k / cw + cy0) * nx + k % cw + cx0] = L;
}

static bool fin_alloc(const ctx *c, fin_scratch *w)
{
    size_t np = c->np;
    size_t ne = covct_morph_edt2d_scratch(c->nx, c->ny);
    if (ne < 3 * (np + 1))
        ne = 3 * (np + 1);
    w->m = covct_malloc(np);
    w->hull = covct_malloc(np);
    w->crop = covct_malloc(np);
    w->lab = covct_malloc(np * sizeof *w->lab);
    w->parent = covct_malloc(covct_morph_label2d_scratch(c->nx, c->ny) *
                             sizeof *w->parent);
    w->stack = covct_malloc((np + 2) * sizeof *w->stack);
    w->dist = covct_malloc(np * sizeof *w->dist);
    w->edt = covct_malloc(ne * sizeof *w->edt);
    w->lo = covct_malloc(c->ny * sizeof *w->lo);
    w->hi = covct_malloc(c->ny * sizeof *w->hi);
    w->px = covct_malloc(2 * (size_t)c->ny * sizeof *w->px);
    w->py = covct_malloc(2 * (size_t)c->ny * sizeof *w->py);
    return w->m && w->hull && w->crop && w->lab && w->parent && w->stack &&
           w->dist && w->edt && w->lo && w->hi && w->px && w->py;
}

static void fin_free(fin_scratch *w)
{
    covct_free(w->m);
    covct_free(w->hull);
    covct_free(w->crop);
    covct_free(w->lab);
    covct_free(w->parent);
    covct_free(w->stack);
    covct_free(w->dist);
    covct_free(w->edt);
    covct_free(w->lo);
    covct_free(w->hi);
    covct_free(w->px);
    covct_free(w->py);
}

/* 2-D holes of lung L in slice z (not airway, not the other lung), split in
 * 4-connected holes.  Returns the number of holes; w->lab labels them and
 * w->edt[l] holds the area (mm2) of hole l. */
static uint32_t slice_holes(const ctx *c, uint32_t z, uint8_t L,
                            fin_scratch *w)
{
    size_t np = c->np;
    uint32_t nx = c->nx;
    const uint8_t *lung = c->seg->lungs + np * z;
    const uint8_t *aw = c->seg->airways + np * z;
    /* Holes lie inside the lung's bounding box: work on it plus a margin
     * of one pixel (the crop's border is then background). */
    uint32_t x0 = nx, x1 = 0, y0 = c->ny, y1 = 0;
    for (uint32_t y = 0; y < c->ny; y++) {
        const uint8_t *r = lung + (size_t)y * nx;
        uint32_t a = 0;
        while (a < nx && r[a] != L)
            a++;
        if (a == nx)
            continue;
        uint32_t b = nx - 1;
        while (r[b] != L)
            b--;
        if (a < x0) x0 = a;
        if (b > x1) x1 = b;
        if (y < y0) y0 = y;
        y1 = y;
    }
    if (x0 > x1)
        return 0;
    x0 = x0 > 0 ? x0 - 1 : 0;
    y0 = y0 > 0 ? y0 - 1 : 0;
    x1 = x1 + 1 < nx ? x1 + 1 : nx - 1;
    y1 = y1 + 1 < c->ny ? y1 + 1 : c->ny - 1;
    uint32_t cw = x1 - x0 + 1, ch = y1 - y0 + 1;
    w->cx0 = x0;
    w->cy0 = y0;
    w->cw = cw;
    w->ch = ch;
    for (uint32_t y = 0; y < ch; y++) {
        const uint8_t *r = lung + (size_t)(y + y0) * nx + x0;
        uint8_t *m = w->m + (size_t)y * cw;
        for (uint32_t x = 0; x < cw; x++)
            m[x] = r[x] == L;
    }
    covct_morph_fill_holes_slice(w->m, cw, ch, 1, w->stack);
    bool any = false;
    for (uint32_t y = 0; y < ch; y++) {
        size_t o = (size_t)(y + y0) * nx + x0;
        uint8_t *m = w->m + (size_t)y * cw;
        for (uint32_t x = 0; x < cw; x++) {
            m[x] = m[x] && !lung[o + x] && !aw[o + x];
            any |= m[x];
        }
    }
    if (!any)
        return 0;
    uint32_t nl = covct_morph_label2d(w->m, cw, ch, false, w->lab,
                                      w->parent);
    double *area = w->edt;
    for (uint32_t l = 0; l <= nl; l++)
        area[l] = 0;
    for (size_t i = 0; i < (size_t)cw * ch; i++)
        area[w->lab[i]] += c->px_mm2;
    return nl;
}

/* Slice index of pixel i of the crop of slice_holes(). */
static size_t crop_to_slice(const ctx *c, const fin_scratch *w, size_t i)
{
    return (size_t)(i / w->cw + w->cy0) * c->nx + i % w->cw + w->cx0;
}

static bool slice_has(const uint8_t *lung, size_t np, uint8_t L)
{
    for (size_t i = 0; i < np; i++)
        if (lung[i] == L)
            return true;
    return false;
}

/* Pass 1: holes of each lung into c->work: the lung's label, plus
 * HOLE_BIG when the 2-D hole is larger than SMALL_HOLE_MM2. */
#define HOLE_BIG 4
static int holes_range(uint32_t z0, uint32_t z1, void *p)
{
    const ctx *c = p;
    size_t np = c->np;
    fin_scratch w;
    int rc = 1;
    if (!fin_alloc(c, &w))
        goto done;
    for (uint32_t z = z0; z < z1; z++) {
        const uint8_t *lung = c->seg->lungs + np * z;
        uint8_t *hole = c->work + np * z;
        memset(hole, 0, np);
        for (uint8_t L = 1; L <= 2; L++) {
            if (!slice_has(lung, np, L))
                continue;
            uint32_t nl = slice_holes(c, z, L, &w);
            size_t nc = nl ? (size_t)w.cw * w.ch : 0;
            for (size_t i = 0; i < nc; i++) {
                uint32_t l = w.lab[i];
                if (l)
                    hole[crop_to_slice(c, &w, i)] =
                        (uint8_t)(L | (w.edt[l] > SMALL_HOLE_MM2 ? HOLE_BIG
                                                                 : 0));
            }
        }
    }
    rc = 0;
done:
    fin_free(&w);
    return rc;
}

/* Pass 2 (after the 3-D decision and the z-closing): pleural concavities,
 * then the small holes the new lung encloses. */
static int pockets_range(uint32_t z0, uint32_t z1, void *p)
{
    const ctx *c = p;
    size_t np = c->np;
    fin_scratch w;
    int rc = 1;
    if (!fin_alloc(c, &w))
        goto done;
    for (uint32_t z = z0; z < z1; z++) {
        uint8_t *lung = c->seg->lungs + np * z;
        for (uint8_t L = 1; L <= 2; L++) {
            if (!slice_has(lung, np, L))
                continue;
            fill_pockets(c, z, L, &w);
            uint32_t nl = slice_holes(c, z, L, &w);
            size_t nc = nl ? (size_t)w.cw * w.ch : 0;
            for (size_t i = 0; i < nc; i++) {
                uint32_t l = w.lab[i];
                if (l && w.edt[l] <= SMALL_HOLE_MM2)
                    lung[crop_to_slice(c, &w, i)] = L;
            }
        }
    }
    rc = 0;
done:
    fin_free(&w);
    return rc;
}

/* Keep only the voxels of c->work near the chest wall: within c->wall_mm
 * of the outline of the convex hull of both lungs in the slice (or
 * outside it).  The heart's and the hila's rims, whose columns are lung
 * above and below too, lie deep inside that hull.  With c->wall_rays, a
 * voxel must also have lung on its inner side (ZCLOSE_RAY_MM). */
static int wall_range(uint32_t z0, uint32_t z1, void *p)
{
    const ctx *c = p;
    size_t np = c->np;
    fin_scratch w;
    int rc = 1;
    /* At most two hull vertices per row. */
    double *lines = covct_malloc(3 * (2 * (size_t)c->ny + 2) * sizeof *lines);
    if (!fin_alloc(c, &w) || !lines)
        goto done;
    for (uint32_t z = z0; z < z1; z++) {
        uint8_t *wk = c->work + np * z;
        if (c->wall_count ? !c->wall_count[z]
                          : !memchr(wk, 1, np) && !memchr(wk, 2, np))
            continue;
        uint32_t y0, y1;
        if (!slice_hull(c, z, 0, 0, &w, &y0, &y1)) {
            memset(wk, 0, np);
            continue;
        }
        /* A voxel is deep when it lies farther than wall_mm inside every
         * edge's line (inside a convex polygon, the distance to the
         * outline is the smallest distance to the edges' lines).  Each
         * line bounds x on a row, so the deep voxels of a row form one
         * interval: O(edges) per row, O(1) per voxel. */
        const uint32_t *h = w.stack;
        double gx = 0, gy = 0;
        for (size_t e = 0; e < w.nh; e++) {
            gx += w.px[h[e]] * c->sx;
            gy += w.py[h[e]] * c->sy;
        }
        gx /= (double)w.nh;
        gy /= (double)w.nh;
        size_t ne = 0;
        for (size_t e = 0; e < w.nh; e++) {
            double ax = w.px[h[e]] * c->sx, ay = w.py[h[e]] * c->sy;
            double dx = w.px[h[e + 1]] * c->sx - ax;
            double dy = w.py[h[e + 1]] * c->sy - ay;
            double l = sqrt(dx * dx + dy * dy);
            if (l <= 0)
                continue;
            /* Unit normal pointing inwards (towards the vertex mean). */
            double nxe = -dy / l, nye = dx / l;
            if (nxe * (gx - ax) + nye * (gy - ay) < 0) {
                nxe = -nxe;
                nye = -nye;
            }
            double *q = lines + 3 * ne++;
            q[0] = nxe;
            q[1] = nye;
            q[2] = nxe * ax + nye * ay + c->wall_mm;
        }
        for (uint32_t y = y0; y <= y1; y++) {
            /* Deep: nx * X + ny * Y > k for every line, X, Y in mm. */
            double lo = -DBL_MAX, hi = DBL_MAX, qy = y * c->sy;
            for (size_t e = 0; e < ne && lo < hi; e++) {
                const double *q = lines + 3 * e;
                double k = q[2] - q[1] * qy;
                if (q[0] > 1e-12)
                    lo = fmax(lo, k / q[0]);
                else if (q[0] < -1e-12)
                    hi = fmin(hi, k / q[0]);
                else if (k >= 0)
                    hi = lo; /* 0 > k fails: no deep voxel on this row */
            }
            if (!(lo < hi))
                continue;
            uint8_t *r = wk + (size_t)y * c->nx;
            for (uint32_t x = 0; x < c->nx; x++) {
                double qx = x * c->sx;
                if (r[x] && qx > lo && qx < hi)
                    r[x] = 0;
            }
        }
        if (!c->wall_rays)
            continue;
        /* Inner side must be lung (see ZCLOSE_RAY_MM). */
        const uint8_t *lg = c->seg->lungs + np * z;
        double cy[3] = {0, 0, 0}, cn[3] = {0, 0, 0};
        for (size_t i = 0; i < np; i++)
            if (lg[i] == 1 || lg[i] == 2) {
                cy[lg[i]] += (double)(i / c->nx);
                cn[lg[i]] += 1;
            }
        int rx = (int)ceil(ZCLOSE_RAY_MM / c->sx);
        int ry = (int)ceil(ZCLOSE_RAY_MM / c->sy);
        for (size_t i = 0; i < np; i++) {
            uint8_t L = wk[i];
            if (!L || L > 2)
                continue;
            int x = (int)(i % c->nx), y = (int)(i / c->nx);
            /* Towards the midline along the row. */
            double px = patient_x(c->ct, x, y, z);
            int step = ((c->mid_x - px) * c->ct->affine[0][0] > 0) ? 1 : -1;
            bool inner = false;
            for (int t = 1; t <= rx && !inner; t++) {
                int xx = x + step * t;
                if (xx < 0 || xx >= (int)c->nx)
                    break;
                inner = lg[(size_t)y * c->nx + (size_t)xx] == L;
            }
            /* Towards the front along the column, behind the centre. */
            if (!inner && cn[L] > 0) {
                double ycen = cy[L] / cn[L];
                int ystep = ycen < y ? -1 : 1;
                for (int t = 1; t <= ry && !inner; t++) {
                    int yy = y + ystep * t;
                    if (yy < 0 || yy >= (int)c->ny)
                        break;
                    inner = lg[(size_t)yy * c->nx + (size_t)x] == L;
                }
            }
            if (!inner)
                wk[i] = 0;
        }
    }
    rc = 0;
done:
    covct_free(lines);
    fin_free(&w);
    return rc;
}

/* 3-D decision on the holes of c->work.  Small 2-D holes (vessels,
 * bronchi, small nodules) are lung.  The large ones form 3-D components
 * of their own (6-connected, large-hole voxels only): a component is
 * filled unless it touches, through a slice face, something that is
 * neither lung nor hole (the liver under the diaphragm dome, the
 * mediastinum at the hilum).  Components over all holes would join a
 * consolidation to the hilum through the vessel tree, and leave it out. */
static covct_rc fill_holes_3d(ctx *c)
{
    uint8_t *lungs = c->seg->lungs;
    for (size_t i = 0; i < c->n; i++)
        if (c->work[i] && !(c->work[i] & HOLE_BIG)) {
            lungs[i] = c->work[i] & 3;
            c->work[i] = 0;
        }
    covct_cc3 cc;
    covct_rc rc = covct_morph_cc3(c->work, c->nx, c->ny, c->nz, 6, &cc,
                                  c->err);
    if (rc != COVCT_OK)
        return rc;
    uint8_t *touch = covct_calloc((size_t)cc.n + 1, 1);
    if (!touch) {
        covct_morph_cc3_free(&cc);
        return COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory (lungs)");
    }
    size_t np = c->np, nrows = (size_t)c->ny * c->nz;
    for (size_t r = 0; r < nrows; r++) {
        uint32_t z = (uint32_t)(r / c->ny);
        for (uint32_t k = cc.row[r]; k < cc.row[r + 1]; k++) {
            uint32_t l = cc.lab[k];
            size_t i0 = r * c->nx;
            for (uint32_t x = cc.x0[k]; x < cc.x1[k] && !touch[l]; x++) {
                size_t i = i0 + x;
                if ((z > 0 && !lungs[i - np] && !c->work[i - np]) ||
                    (z + 1 < c->nz && !lungs[i + np] && !c->work[i + np]))
                    touch[l] = 1;
            }
        }
    }
    for (size_t r = 0; r < nrows; r++)
        for (uint32_t k = cc.row[r]; k < cc.row[r + 1]; k++) {
            if (touch[cc.lab[k]])
                continue;
            size_t i0 = r * c->nx;
            for (uint32_t x = cc.x0[k]; x < cc.x1[k]; x++)
                lungs[i0 + x] = c->work[i0 + x] & 3;
        }
    covct_free(touch);
    covct_morph_cc3_free(&cc);
    return COVCT_OK;
}

/* z-closing: a candidate voxel (inside the body, not airway, not outside,
 * -1000 < HU <= ZCLOSE_HU_MAX) becomes lung L when its column is lung L on
 * some slice within c->zr slices above and on some slice within c->zr
 * slices below.  Runs over ranges of rows y; c->work holds, per voxel, the
 * label found below (pass up), then the fill flag. */
static int zclose_range(uint32_t y0, uint32_t y1, void *p)
{
    const ctx *c = p;
    uint32_t nx = c->nx, nz = c->nz, zr = c->zr;
    size_t np = c->np;
    uint32_t *last = covct_malloc((size_t)nx * sizeof *last);
    uint8_t *lastl = covct_malloc(nx);
    if (!last || !lastl) {
        covct_free(last);
        covct_free(lastl);
        return 1;
    }
    const uint8_t *out = c->ct->outside;
    for (uint32_t y = y0; y < y1; y++) {
        /* Upwards in k: nearest lung below. */
        memset(lastl, 0, nx);
        for (uint32_t z = 0; z < nz; z++) {
            size_t o = np * z + (size_t)y * nx;
            const uint8_t *lg = c->seg->lungs + o;
            const uint8_t *bd = c->seg->body + o;
            const uint8_t *aw = c->seg->airways + o;
            uint8_t *wk = c->work + o;
            for (uint32_t x = 0; x < nx; x++) {
                wk[x] = 0;
                if (lg[x]) {
                    last[x] = z;
                    lastl[x] = lg[x];
                    continue;
                }
                if (!lastl[x] || z - last[x] > zr || !bd[x] || aw[x] ||
                    (out && out[o + x]))
                    continue;
                double v = covct_hu(c->ct, o + x);
                if (v > -1000.0 && v <= ZCLOSE_HU_MAX)
                    wk[x] = lastl[x];
            }
        }
        /* Downwards: nearest lung above, same label. */
        memset(lastl, 0, nx);
        for (uint32_t z = nz; z-- > 0;) {
            size_t o = np * z + (size_t)y * nx;
            const uint8_t *lg = c->seg->lungs + o;
            uint8_t *wk = c->work + o;
            for (uint32_t x = 0; x < nx; x++) {
                if (lg[x]) {
                    last[x] = z;
                    lastl[x] = lg[x];
                    continue;
                }
                if (wk[x] && !(lastl[x] == wk[x] && last[x] - z <= zr))
                    wk[x] = 0;
            }
        }
    }
    covct_free(last);
    covct_free(lastl);
    return 0;
}

/* Bounding box (inclusive) of lung L, or of both lungs for L = 0, from
 * the row ends in c->ext; false when there is none. */
static bool ext_bbox(const ctx *c, uint8_t L, uint32_t lo[3], uint32_t hi[3])
{
    for (int a = 0; a < 3; a++) {
        lo[a] = UINT32_MAX;
        hi[a] = 0;
    }
    for (uint8_t l = 1; l <= 2; l++) {
        if (L && l != L)
            continue;
        for (uint32_t z = 0; z < c->nz; z++)
            for (uint32_t y = 0; y < c->ny; y++) {
                const uint16_t *e = c->ext + 2 * ((size_t)(l - 1) * c->nz *
                                                  c->ny + (size_t)z * c->ny + y);
                if (e[0] == UINT16_MAX)
                    continue;
                uint32_t v[3][2] = {{e[0], e[1]}, {y, y}, {z, z}};
                for (int a = 0; a < 3; a++) {
                    if (v[a][0] < lo[a]) lo[a] = v[a][0];
                    if (v[a][1] > hi[a]) hi[a] = v[a][1];
                }
            }
    }
    return lo[0] != UINT32_MAX;
}

/* ---- rolling ball ----------------------------------------------------------- */

/* Coarse grid of one lung for the closing: factor f per axis, origin o
 * (coarse index of the grid's first voxel, may lie before the volume). */
typedef struct ball_grid {
    uint32_t f[3], n[3];
    int64_t o[3];
    uint8_t *m;
} ball_grid;

typedef struct ball_fill_job {
    const ctx *c;
    ball_grid *g;
    uint8_t L;
} ball_fill_job;

/* Coarse voxel (cx, cy, cz) of g is set when its whole block is lung L;
 * over ranges of cz. */
static int ball_fill_range(uint32_t z0, uint32_t z1, void *p)
{
    const ball_fill_job *j = p;
    const ctx *c = j->c;
    ball_grid *g = j->g;
    const uint32_t *f = g->f;
    uint32_t dim[3] = {c->nx, c->ny, c->nz};
    for (uint32_t cz = z0; cz < z1; cz++)
        for (uint32_t cy = 0; cy < g->n[1]; cy++)
            for (uint32_t cx = 0; cx < g->n[0]; cx++) {
                int64_t q[3] = {(g->o[0] + cx) * f[0], (g->o[1] + cy) * f[1],
                                (g->o[2] + cz) * f[2]};
                bool all = true;
                for (int a = 0; a < 3 && all; a++)
                    all = q[a] >= 0 && q[a] + f[a] <= dim[a];
                for (uint32_t z = 0; z < f[2] && all; z++)
                    for (uint32_t y = 0; y < f[1] && all; y++) {
                        const uint8_t *r = c->seg->lungs +
                                           c->np * (size_t)(q[2] + z) +
                                           (size_t)(q[1] + y) * c->nx +
                                           (size_t)q[0];
                        for (uint32_t x = 0; x < f[0] && all; x++)
                            all = r[x] == j->L;
                    }
                g->m[((size_t)cz * g->n[1] + cy) * g->n[0] + cx] = all;
            }
    return 0;
}

/* Voxel indices of the rolling ball's candidates, with a count per slice
 * for wall_range(). */
typedef struct ball_take {
    uint32_t *idx, *per_z;
    size_t n, cap;
} ball_take;

static bool take_push(ball_take *t, size_t i, uint32_t z)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 65536;
        uint32_t *p = covct_realloc(t->idx, cap * sizeof *p);
        if (!p)
            return false;
        t->idx = p;
        t->cap = cap;
    }
    t->idx[t->n++] = (uint32_t)i;
    t->per_z[z]++;
    return true;
}

/* The tissue of lung L's closed dents into c->work and t: the fine voxels
 * of coarse voxels the closing set (and that were not lung before), if
 * air-like to +100 HU, in the body, not airway, not outside the scan. */
static bool ball_take_lung(ctx *c, const ball_grid *g, const uint8_t *before,
                           uint8_t L, ball_take *t)
{
    uint32_t dim[3] = {c->nx, c->ny, c->nz};
    const uint8_t *out = c->ct->outside;
    for (uint32_t cz = 0; cz < g->n[2]; cz++)
        for (uint32_t cy = 0; cy < g->n[1]; cy++)
            for (uint32_t cx = 0; cx < g->n[0]; cx++) {
                size_t ci = ((size_t)cz * g->n[1] + cy) * g->n[0] + cx;
                if (!g->m[ci] || before[ci])
                    continue;
                int64_t q[3] = {(g->o[0] + cx) * g->f[0],
                                (g->o[1] + cy) * g->f[1],
                                (g->o[2] + cz) * g->f[2]};
                for (uint32_t z = 0; z < g->f[2]; z++)
                    for (uint32_t y = 0; y < g->f[1]; y++)
                        for (uint32_t x = 0; x < g->f[0]; x++) {
                            int64_t p[3] = {q[0] + x, q[1] + y, q[2] + z};
                            bool in = true;
                            for (int a = 0; a < 3 && in; a++)
                                in = p[a] >= 0 && p[a] < dim[a];
                            if (!in)
                                continue;
                            size_t i = c->np * (size_t)p[2] +
                                       (size_t)p[1] * c->nx + (size_t)p[0];
                            if (c->seg->lungs[i] || c->work[i] ||
                                !c->seg->body[i] || c->seg->airways[i] ||
                                (out && out[i]))
                                continue;
                            double v = covct_hu(c->ct, i);
                            if (!(v > AIR_HU && v <= POCKET_HU_MAX))
                                continue;
                            c->work[i] = L;
                            if (!take_push(t, i, (uint32_t)p[2]))
                                return false;
                        }
            }
    return true;
}

/* Step 9: closing of each lung by a ball of BALL_MM (see above) on a
 * coarse grid; the tissue of the closed dents near the chest wall becomes
 * lung. */
static covct_rc roll_ball(ctx *c)
{
    double sp[3] = {c->sx, c->sy, c->sz}, csp[3];
    covct_rc rc = COVCT_OK;
    ball_take t = {0};
    ball_grid g = {0};
    uint8_t *before = NULL;
    t.per_z = covct_calloc(c->nz, sizeof *t.per_z);
    if (!t.per_z)
        goto nomem;
    covct_morph_parallel(c->nz, ends_range, c);
    memset(c->work, 0, c->n);
    for (uint8_t L = 1; L <= 2; L++) {
        uint32_t lo[3], hi[3];
        if (!ext_bbox(c, L, lo, hi))
            continue;
        /* Coarse grid over the box plus the ball's reach. */
        size_t cn = 1;
        for (int a = 0; a < 3; a++) {
            long f = lround(BALL_GRID_MM / sp[a]);
            g.f[a] = f < 1 ? 1 : (uint32_t)f;
            csp[a] = sp[a] * g.f[a];
            uint32_t m = (uint32_t)ceil(BALL_MM / csp[a]) + 1;
            g.o[a] = (int64_t)(lo[a] / g.f[a]) - m;
            g.n[a] = hi[a] / g.f[a] - lo[a] / g.f[a] + 1 + 2 * m;
            cn *= g.n[a];
        }
        g.m = covct_malloc(cn);
        before = covct_malloc(cn);
        if (!g.m || !before)
            goto nomem;
        ball_fill_job fj = {c, &g, L};
        covct_morph_parallel(g.n[2], ball_fill_range, &fj);
        memcpy(before, g.m, cn);
        rc = covct_morph_close_ball(g.m, g.n[0], g.n[1], g.n[2], csp, BALL_MM,
                                    c->err);
        if (rc != COVCT_OK)
            goto done;
        if (!ball_take_lung(c, &g, before, L, &t))
            goto nomem;
        covct_free(g.m);
        covct_free(before);
        g.m = before = NULL;
    }
    /* Near the chest wall only (the hila's vessels are dents too). */
    c->wall_mm = BALL_WALL_MM;
    c->wall_rays = false;
    c->wall_count = t.per_z;
    int wrc = covct_morph_parallel(c->nz, wall_range, c);
    c->wall_count = NULL;
    if (wrc != 0)
        goto nomem;
    for (size_t k = 0; k < t.n; k++)
        if (c->work[t.idx[k]])
            c->seg->lungs[t.idx[k]] = c->work[t.idx[k]];
    goto done;
nomem:
    rc = COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory (lungs)");
done:
    covct_free(g.m);
    covct_free(before);
    covct_free(t.idx);
    covct_free(t.per_z);
    return rc;
}

/* ---- a field of view that cuts the lungs -----------------------------------
 * Where a lung reaches the edge of the field of view (or of the image),
 * its air meets the padding, the slice's hole filling reaches it from
 * outside, and it is not body, so not a lung candidate (normal001 with its
 * field of view cut to a 135 mm radius: 460 ml of lung lost on 55 slices).
 * A region of such air (c->work: air in the field of view the body leaves
 * out; 4-connected in its slice) becomes a candidate when at least
 * CUT_OVERLAP of its area lies over candidates of the slice before, in a
 * sweep up the slices and one down: a lung cut on many slices is taken
 * back slice by slice from where it is enclosed.  The air around the
 * patient never lies over the lungs (the chest wall is between them), nor
 * does air that a few slices enclose between the back, the table and a
 * blanket (not a candidate: too small).  These regions stay outside
 * seg->body, which the lesion network is reading meanwhile.  A slice is
 * looked at only when some of its left-out air lies over or under a
 * candidate, or the slice before took something. */
#define CUT_OVERLAP 0.3

static covct_rc cut_lungs(ctx *c, size_t *taken)
{
    *taken = 0;
    const uint32_t nx = c->nx, ny = c->ny, nz = c->nz;
    const size_t np = c->np;
    if (nz < 2)
        return COVCT_OK;
    uint8_t *seed = covct_calloc(nz, 1);
    if (!seed)
        return COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory (lungs)");
    bool any = false;
    for (uint32_t z = 0; z < nz; z++)
        for (size_t i = 0, o = (size_t)z * np; i < np; i++)
            if (c->work[o + i] &&
                ((z > 0 && c->air[o + i - np]) ||
                 (z + 1 < nz && c->air[o + i + np]))) {
                seed[z] = 1;
                any = true;
                break;
            }
    if (!any) {
        covct_free(seed);
        return COVCT_OK;
    }
    covct_rc rc = COVCT_OK;
    uint8_t *took = covct_calloc(nz, 1);
    uint32_t *lab = covct_malloc(np * sizeof *lab);
    /* Labelling scratch, then per-label area and overlap counters (as in
     * find_airways: 2 (labels + 1) fit in it). */
    uint32_t *parent = covct_malloc(
        (covct_morph_label2d_scratch(nx, ny) + np + 2) * sizeof *parent);
    if (!took || !lab || !parent) {
        rc = COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory (lungs)");
        goto done;
    }
    for (int dir = 1; dir >= -1; dir -= 2)
        for (uint32_t s = 1; s < nz; s++) {
            uint32_t z = dir > 0 ? s : nz - 1 - s;
            uint32_t prev = dir > 0 ? z - 1 : z + 1;
            if (!seed[z] && !took[prev])
                continue;
            const size_t o = (size_t)z * np, po = (size_t)prev * np;
            uint32_t nl =
                covct_morph_label2d(c->work + o, nx, ny, false, lab, parent);
            if (!nl)
                continue;
            uint32_t *area = parent, *over = parent + nl + 1;
            memset(area, 0, ((size_t)nl + 1) * 2 * sizeof *area);
            for (size_t i = 0; i < np; i++)
                if (lab[i]) {
                    area[lab[i]]++;
                    over[lab[i]] += c->air[po + i] != 0;
                }
            for (size_t i = 0; i < np; i++)
                if (lab[i] && over[lab[i]] >= CUT_OVERLAP * area[lab[i]]) {
                    c->air[o + i] = 1;
                    c->work[o + i] = 0;
                    took[z] = 1;
                    (*taken)++;
                }
        }
done:
    covct_free(seed);
    covct_free(took);
    covct_free(lab);
    covct_free(parent);
    return rc;
}

/* ---- driver ------------------------------------------------------------------ */

static void not_chest(ctx *c, covct_lung_info *info, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void not_chest(ctx *c, covct_lung_info *info, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(info->why_not, sizeof info->why_not, fmt, ap);
    va_end(ap);
    info->is_chest = false;
    info->right_ml = info->left_ml = info->airway_ml = 0;
    info->z_first = info->z_last = 0;
    memset(c->seg->lungs, 0, c->n);
    memset(c->seg->airways, 0, c->n);
    memset(c->seg->body, 0, c->n);
}

/* Body from the thresholded mask in seg->body: largest component above
 * BODY_HU, holes filled per slice, nothing outside the field of view. */
static covct_rc body_from_threshold(const covct_volume *ct, covct_seg *seg,
                                   covct_error *err)
{
    size_t n = covct_volume_voxels(ct);
    covct_rc rc = covct_morph_keep_largest(seg->body, ct->nx, ct->ny, ct->nz,
                                           6, NULL, err);
    if (rc == COVCT_OK)
        rc = covct_morph_fill_holes2d(seg->body, ct->nx, ct->ny, ct->nz, 1,
                                      err);
    if (rc == COVCT_OK && ct->outside)
        for (size_t i = 0; i < n; i++)
            if (ct->outside[i])
                seg->body[i] = 0;
    if (rc == COVCT_OK)
        seg->body_ready = true;
    return rc;
}

covct_rc covct_body_segment(const covct_volume *ct, covct_seg *seg,
                            covct_error *err)
{
    if (!ct || !seg || !ct->data || !seg->body)
        return COVCT_ERR(err, COVCT_ERR_ARG, "body: missing argument");
    if (seg->nx != ct->nx || seg->ny != ct->ny || seg->nz != ct->nz)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "body: segmentation and volume differ in size");
    thr_job tj = {ct, seg->body, NULL, (size_t)ct->nx * ct->ny};
    covct_morph_parallel(ct->nz, thr_range, &tj);
    return body_from_threshold(ct, seg, err);
}

covct_rc covct_lungs_segment(const covct_volume *ct, covct_seg *seg,
                             covct_lung_info *info, covct_error *err)
{
    if (!ct || !seg || !info || !ct->data)
        return COVCT_ERR(err, COVCT_ERR_ARG, "lungs: missing argument");
    memset(info, 0, sizeof *info);
    covct_free(seg->dense_behind);
    seg->dense_behind = NULL;
    if (seg->nx != ct->nx || seg->ny != ct->ny || seg->nz != ct->nz ||
        !seg->body || !seg->airways || !seg->lungs)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "lungs: segmentation %ux%ux%u does not match the "
                         "volume %ux%ux%u", seg->nx, seg->ny, seg->nz, ct->nx,
                         ct->ny, ct->nz);
    for (int a = 0; a < 3; a++)
        if (!(ct->spacing[a] > 0 && ct->spacing[a] < 1000))
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "lungs: voxel spacing %g mm along axis %d",
                             ct->spacing[a], a);
    ctx c = {0};
    c.ct = ct;
    c.seg = seg;
    c.err = err;
    c.nx = ct->nx;
    c.ny = ct->ny;
    c.nz = ct->nz;
    c.np = (size_t)c.nx * c.ny;
    c.n = c.np * c.nz;
    c.sx = ct->spacing[0];
    c.sy = ct->spacing[1];
    c.sz = ct->spacing[2];
    c.px_mm2 = c.sx * c.sy;
    c.vox_ml = c.px_mm2 * c.sz / 1000.0;
    if (c.n == 0 || c.n > UINT32_MAX || c.nx >= UINT16_MAX)
        return COVCT_ERR(err, COVCT_ERR_LIMIT,
                         "lungs: %zu voxels (at most %u)", c.n, UINT32_MAX);
    if (!seg->body_ready)
        memset(seg->body, 0, c.n);
    memset(seg->airways, 0, c.n);
    memset(seg->lungs, 0, c.n);
    covct_rc rc = COVCT_OK;
    c.air = covct_malloc(c.n);
    c.work = covct_malloc(c.n);
    c.ext = covct_malloc(4 * (size_t)c.nz * c.ny * sizeof *c.ext);
    if (!c.air || !c.work || !c.ext) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory (lungs)");
        goto done;
    }
    covct_axes ax;
    covct_volume_axes(ct, &ax);
    if (ax.axis[2] != 2) {
        not_chest(&c, info, "not an axial series: the lungs are found on "
                            "axial slices only");
        goto done;
    }

    double tm = covct_now();
    /* Body (unless covct_body_segment made it already) and air. */
    thr_job tj = {ct, seg->body_ready ? NULL : seg->body, c.air, c.np};
    covct_morph_parallel(c.nz, thr_range, &tj);
    if (!seg->body_ready && (rc = body_from_threshold(ct, seg, err)))
        goto done;

    tm = covct_debug_time("lungs", "body", tm);
    /* Lung candidates: air inside the body.  The air the body leaves out
     * (in the field of view) is kept in c.work for cut_lungs. */
    for (size_t i = 0; i < c.n; i++) {
        /* COVCT_OUTSIDE_HU: padding in a volume read without the series
         * reader's outside mark (NIfTI). */
        c.work[i] = c.air[i] && !seg->body[i] &&
                    covct_hu(ct, i) >= COVCT_OUTSIDE_HU;
        c.air[i] = c.air[i] && seg->body[i];
    }
    {
        covct_cc3 cc;
        rc = covct_morph_cc3(c.air, c.nx, c.ny, c.nz, 6, &cc, err);
        if (rc != COVCT_OK)
            goto done;
        uint32_t best = 0;
        for (uint32_t l = 1; l <= cc.n; l++)
            if (!best || cc.stat[l].size > cc.stat[best].size)
                best = l;
        double best_ml = best ? cc.stat[best].size * c.vox_ml : 0;
        if (best_ml < CAND_MIN_ML) {
            covct_morph_cc3_free(&cc);
            not_chest(&c, info, "no air-filled region of lung size inside "
                                "the body (largest %.0f ml)", best_ml);
            goto done;
        }
        uint8_t *val = covct_calloc((size_t)cc.n + 1, 1);
        if (!val) {
            covct_morph_cc3_free(&cc);
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory (lungs)");
            goto done;
        }
        /* A lung cut off from the other (an obstructed main bronchus) is a
         * second large component beside the first. */
        const covct_cc3_stat *b = &cc.stat[best];
        for (uint32_t l = 1; l <= cc.n; l++) {
            const covct_cc3_stat *s = &cc.stat[l];
            double zc = (double)s->sum[2] / s->size;
            val[l] = l == best ||
                     (s->size * 5 >= b->size && zc >= b->lo[2] &&
                      zc <= b->hi[2]);
        }
        covct_morph_cc3_relabel(&cc, val, c.air);
        covct_free(val);
        covct_morph_cc3_free(&cc);
    }

    {
        size_t cut = 0;
        if ((rc = cut_lungs(&c, &cut)) != COVCT_OK)
            goto done;
        if (cut)
            covct_log(COVCT_LOG_DEBUG,
                      "lungs: %.0f ml of lung cut by the edge of the field "
                      "of view taken back", cut * c.vox_ml);
    }
    tm = covct_debug_time("lungs", "air candidates", tm);
    /* Midline: body centre, replaced by the trachea when found. */
    {
        double sx = 0, cnt = 0;
        for (uint32_t z = 0; z < c.nz; z += 4)
            for (uint32_t y = 0; y < c.ny; y += 4)
                for (uint32_t x = 0; x < c.nx; x += 4)
                    if (seg->body[((size_t)z * c.ny + y) * c.nx + x]) {
                        sx += patient_x(ct, x, y, z);
                        cnt++;
                    }
        c.mid_x = cnt ? sx / cnt : 0;
    }
    bool have_trachea;
    rc = find_airways(&c, &have_trachea);
    if (rc != COVCT_OK)
        goto done;
    /* Airway walls' partial-volume voxels go with the airway. */
    memcpy(c.work, seg->airways, c.n);
    rc = covct_morph_dilate2d(c.work, c.nx, c.ny, c.nz, c.sx, c.sy, 1.5, err);
    if (rc != COVCT_OK)
        goto done;
    for (size_t i = 0; i < c.n; i++) {
        seg->airways[i] = c.work[i] && c.air[i];
        if (seg->airways[i])
            c.air[i] = 0;
    }
    tm = covct_debug_time("lungs", "airways", tm);
    /* Drop the small pieces the airway removal cut off. */
    {
        covct_cc3 cc;
        rc = covct_morph_cc3(c.air, c.nx, c.ny, c.nz, 6, &cc, err);
        if (rc != COVCT_OK)
            goto done;
        uint64_t big = 0;
        for (uint32_t l = 1; l <= cc.n; l++)
            if (cc.stat[l].size > big)
                big = cc.stat[l].size;
        uint8_t *val = covct_calloc((size_t)cc.n + 1, 1);
        if (!val) {
            covct_morph_cc3_free(&cc);
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory (lungs)");
            goto done;
        }
        for (uint32_t l = 1; l <= cc.n; l++)
            val[l] = cc.stat[l].size * 10 >= big;
        covct_morph_cc3_relabel(&cc, val, c.air);
        covct_free(val);
        covct_morph_cc3_free(&cc);
    }

    /* The lung labels are still all zero and the air lies in its box. */
    bool two = false;
    box lbox;
    air_box(&c, &lbox);
    ctx sub;
    covct_seg sseg;
    if ((rc = box_enter(&c, &lbox, &sub, &sseg)) == COVCT_OK) {
        rc = split_lungs(&sub, &two);
        if (rc == COVCT_OK)
            tm = covct_debug_time("lungs", "left/right split", tm);
        if (rc == COVCT_OK && two)
            rc = drop_subphrenic(&sub);
        rc = box_leave(&c, &lbox, &sub, rc);
    }
    if (rc != COVCT_OK)
        goto done;
    tm = covct_debug_time("lungs", "gas under the diaphragm", tm);
    /* Holes: small ones always, large ones only when enclosed in 3-D. */
    if (covct_morph_parallel(c.nz, holes_range, &c) != 0) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory (lungs)");
        goto done;
    }
    rc = fill_holes_3d(&c);
    if (rc != COVCT_OK)
        goto done;
    tm = covct_debug_time("lungs", "holes", tm);
    /* Dense pathology against the pleura: z-closing. */
    c.zr = (uint32_t)floor(ZCLOSE_MM / c.sz + 1e-6);
    if (c.zr >= 1) {
        if (covct_morph_parallel(c.ny, zclose_range, &c) != 0) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory (lungs)");
            goto done;
        }
        covct_morph_parallel(c.nz, ends_range, &c);
        c.wall_mm = ZCLOSE_WALL_MM;
        c.wall_rays = true;
        if (covct_morph_parallel(c.nz, wall_range, &c) != 0) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory (lungs)");
            goto done;
        }
        for (size_t i = 0; i < c.n; i++)
            if (c.work[i])
                seg->lungs[i] = c.work[i];
    }
    tm = covct_debug_time("lungs", "z-closing", tm);
    covct_morph_parallel(c.nz, ends_range, &c);
    if (covct_morph_parallel(c.nz, pockets_range, &c) != 0) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory (lungs)");
        goto done;
    }

    tm = covct_debug_time("lungs", "pleural pockets", tm);
    if ((rc = roll_ball(&c)) != COVCT_OK)
        goto done;
    tm = covct_debug_time("lungs", "rolling ball", tm);
    /* Each lung one connected component, on the lungs' bounding box (the
     * row ends of c->ext date from before the rolling ball, whose
     * closing stays inside each lung's box). */
    {
        uint32_t lo[3], hi[3];
        bool any = ext_bbox(&c, 0, lo, hi);
        uint32_t bw = any ? hi[0] - lo[0] + 1 : 0, bh = any ? hi[1] - lo[1] + 1 : 0,
                 bd = any ? hi[2] - lo[2] + 1 : 0;
        for (uint8_t L = 1; L <= 2 && any; L++) {
            for (uint32_t z = 0; z < bd; z++)
                for (uint32_t y = 0; y < bh; y++) {
                    const uint8_t *g = seg->lungs + (size_t)(z + lo[2]) * c.np +
                                       (size_t)(y + lo[1]) * c.nx + lo[0];
                    uint8_t *b = c.work + ((size_t)z * bh + y) * bw;
                    for (uint32_t x = 0; x < bw; x++)
                        b[x] = g[x] == L;
                }
            rc = covct_morph_keep_largest(c.work, bw, bh, bd, 6, NULL, err);
            if (rc != COVCT_OK)
                goto done;
            for (uint32_t z = 0; z < bd; z++)
                for (uint32_t y = 0; y < bh; y++) {
                    uint8_t *g = seg->lungs + (size_t)(z + lo[2]) * c.np +
                                 (size_t)(y + lo[1]) * c.nx + lo[0];
                    const uint8_t *b = c.work + ((size_t)z * bh + y) * bw;
                    for (uint32_t x = 0; x < bw; x++)
                        if (g[x] == L && !b[x])
                            g[x] = 0;
                }
        }
    }

    uint64_t nr = 0, nl = 0, na = 0;
    uint32_t zf = UINT32_MAX, zl = 0;
    for (uint32_t z = 0; z < c.nz; z++) {
        const uint8_t *l = seg->lungs + c.np * z;
        const uint8_t *a = seg->airways + c.np * z;
        uint64_t s = 0;
        for (size_t i = 0; i < c.np; i++) {
            nr += l[i] == COVCT_LUNG_RIGHT;
            nl += l[i] == COVCT_LUNG_LEFT;
            s += l[i] != 0;
            na += a[i] != 0;
        }
        if (s) {
            if (zf == UINT32_MAX)
                zf = z;
            zl = z;
        }
    }
    info->right_ml = nr * c.vox_ml;
    info->left_ml = nl * c.vox_ml;
    info->airway_ml = na * c.vox_ml;
    info->z_first = zf == UINT32_MAX ? 0 : zf;
    info->z_last = zl;
    info->is_chest = true;
    if (!two) {
        double tot = info->right_ml + info->left_ml;
        not_chest(&c, info, "only one air-filled region of lung size inside "
                            "the body (%.0f ml): no pair of lungs", tot);
    } else if (info->right_ml < LUNG_MIN_ML || info->right_ml > LUNG_MAX_ML ||
               info->left_ml < LUNG_MIN_ML || info->left_ml > LUNG_MAX_ML) {
        double r = info->right_ml, l = info->left_ml;
        not_chest(&c, info, "lung volumes implausible: right %.0f ml, left "
                            "%.0f ml (each should be %.0f-%.0f ml)", r, l,
                  LUNG_MIN_ML, LUNG_MAX_ML);
    }
    (void)have_trachea;
    tm = covct_debug_time("lungs", "components and volumes", tm);
    if (info->is_chest) {
        /* Its voxels are kept (for the measures, the report's images and
         * masks) when there are any: a scan without any keeps no mask. */
        uint8_t *found = covct_malloc(c.n);
        rc = covct_lungs_dense_behind(ct, seg, found, &info->dense_behind_ml,
                                      err);
        /* Regions holding air bronchograms are airless lung: they join
         * the lungs, the rest stays measured apart. */
        covct_dense_lung dl;
        memset(&dl, 0, sizeof dl);
        if (found && rc == COVCT_OK && info->dense_behind_ml > 0)
            rc = covct_lungs_dense_lung(ct, seg, found, &dl, err);
        if (dl.regions) {
            info->right_ml += dl.right_ml;
            info->left_ml += dl.left_ml;
            info->dense_lung_ml = dl.right_ml + dl.left_ml;
            uint64_t left = 0;
            for (size_t i = 0; i < c.n; i++)
                left += found[i];
            info->dense_behind_ml = (double)left * c.vox_ml;
        }
        covct_log(COVCT_LOG_DEBUG, "lungs: %.1f ml of it taken as lung "
                                   "(air bronchograms %.2f ml in all)",
                  info->dense_lung_ml, dl.bronchi_ml);
        covct_free(seg->dense_behind);
        seg->dense_behind = NULL;
        if (found && rc == COVCT_OK && info->dense_behind_ml > 0)
            seg->dense_behind = found;
        else
            covct_free(found);
        covct_log(COVCT_LOG_DEBUG, "lungs: %.1f ml of dense tissue behind "
                                   "the lungs", info->dense_behind_ml);
        covct_debug_time("lungs", "dense tissue behind the lungs", tm);
    }
done:
    covct_free(c.air);
    covct_free(c.work);
    covct_free(c.ext);
    return rc;
}
