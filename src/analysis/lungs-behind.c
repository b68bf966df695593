/*
 * Dense tissue behind the lungs (docs/internals/lungs.md, "Dense tissue
 * behind the lungs"): consolidation of the dependent lower lobes (severe
 * COVID-19, ARDS, a patient lying on the back) or pleural effusion, too
 * thick for the lung stage's completion steps (z-closing 20 mm, rolling
 * ball 15 mm), so that the lung mask stops at a flat front where the
 * aerated lung ends.  It is measured here, not added to the lungs: by
 * density, consolidation cannot be told from effusion, which is not lung.
 *
 * Per axial slice in the lower two thirds of the lungs' height, a voxel
 * counts when it is
 *   - inside the body, not lung, not airway, -300 to +150 HU;
 *   - inside the rib cage: nearer the thorax's centre than the innermost
 *     bone (>= 200 HU) in its direction within 15 mm above or below, less
 *     3 mm (180 directions; directions without bone interpolated from
 *     their neighbours, then a circular median of 5);
 *   - behind every lung voxel of its column (front to back), in the back
 *     half of the slice's lungs, and more than 45 mm to the side of the
 *     midline (spine, aorta, oesophagus and azygos stay out);
 * and the 8-connected region of such voxels holds one lying 15 mm or
 * more behind the lung in its column, touches the lung, and averages
 * -50 HU or more (fat does not count).  Columns
 * without lung (below the lung's base, where the liver and spleen lie
 * behind nothing) never count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/analysis_int.h"
#include "covct/analysis.h"

#define NANG 180
#define BONE_HU 200.0
#define SLAB_MM 15.0
#define CAGE_MARGIN_MM 3.0
#define MIN_RADIUS_MM 20.0
#define MEDIAL_MM 45.0
#define DEEP_MM 15.0
#define TISSUE_LO_HU (-300.0)
#define TISSUE_HI_HU 150.0
/* Extrapleural and paravertebral fat: -150 to -50 HU. */
#define FAT_MAX_HU (-50.0)
/* Ribs lie within a few cm of the lungs' outline. */
#define BOX_MARGIN_MM 40.0

typedef struct behind {
    const covct_volume *ct;
    const covct_seg *seg;
    uint8_t *found;      /* optional output mask */
    float *rb;           /* [z][NANG] innermost bone radius (mm), INFINITY */
    double cx, cy;       /* thorax centre, voxel coordinates */
    double mid_x;        /* patient x (LPS) of the midline */
    uint32_t z0, z1;     /* slices examined */
    uint32_t x0, x1, y0, y1; /* box searched: the lungs' + BOX_MARGIN_MM */
    uint32_t slab;       /* slices within SLAB_MM */
    uint64_t *count;     /* per slice */
} behind;

static double px(const covct_volume *ct, double i)
{
    return ct->affine[0][0] * i + ct->affine[0][3];
}

static double py(const covct_volume *ct, double j)
{
    return ct->affine[1][1] * j + ct->affine[1][3];
}

static int angle_bin(double dx, double dy)
{
    double a = atan2(dy, dx);
    int b = (int)floor((a + M_PI) / (2 * M_PI) * NANG);
    return b < 0 ? 0 : b >= NANG ? NANG - 1 : b;
}

/* Innermost bone per direction, slices z0..z1-1 of the examined range. */
static int bone_range(uint32_t z0, uint32_t z1, void *arg)
{
    behind *b = arg;
    const covct_volume *ct = b->ct;
    const uint32_t nx = ct->nx;
    const size_t np = (size_t)nx * ct->ny;
    for (uint32_t z = z0; z < z1; z++) {
        float *r = b->rb + (size_t)z * NANG;
        for (int a = 0; a < NANG; a++)
            r[a] = INFINITY;
        if (z + b->slab < b->z0 || z >= b->z1 + b->slab)
            continue; /* no examined slice reaches it */
        const size_t off = np * z;
        for (uint32_t j = b->y0; j <= b->y1; j++)
            for (uint32_t i = b->x0; i <= b->x1; i++) {
                size_t p = off + (size_t)j * nx + i;
                if (!b->seg->body[p] || b->seg->lungs[p] ||
                    covct_hu(ct, p) < BONE_HU)
                    continue;
                double dx = (i - b->cx) * ct->spacing[0];
                double dy = (j - b->cy) * ct->spacing[1];
                double d = sqrt(dx * dx + dy * dy);
                if (d < MIN_RADIUS_MM)
                    continue;
                int a = angle_bin(dx, dy);
                if (d < r[a])
                    r[a] = (float)d;
            }
    }
    return 0;
}

static int cmp_float(const void *x, const void *y)
{
    float a = *(const float *)x, c = *(const float *)y;
    return (a > c) - (a < c);
}

/* The cage radius per direction for slice z: the innermost bone within
 * the slab, gaps interpolated around the circle, a median of 5.  False
 * when fewer than half the directions meet bone. */
static bool cage(const behind *b, uint32_t z, float *out)
{
    const uint32_t nz = b->ct->nz;
    float r[NANG];
    int have = 0;
    uint32_t lo = z > b->slab ? z - b->slab : 0;
    uint32_t hi = z + b->slab < nz ? z + b->slab : nz - 1;
    for (int a = 0; a < NANG; a++) {
        r[a] = INFINITY;
        for (uint32_t k = lo; k <= hi; k++) {
            float v = b->rb[(size_t)k * NANG + a];
            if (v < r[a])
                r[a] = v;
        }
        have += isfinite(r[a]);
    }
    if (have < NANG / 2)
        return false;
    for (int a = 0; a < NANG; a++) {
        if (isfinite(r[a]))
            continue;
        int p = 1, n = 1;
        while (!isfinite(r[(a - p + NANG) % NANG]))
            p++;
        while (!isfinite(r[(a + n) % NANG]))
            n++;
        float rp = r[(a - p + NANG) % NANG], rn = r[(a + n) % NANG];
        out[a] = rp + (rn - rp) * (float)p / (float)(p + n);
    }
    for (int a = 0; a < NANG; a++)
        if (isfinite(r[a]))
            out[a] = r[a];
    float w[NANG];
    memcpy(w, out, sizeof w);
    for (int a = 0; a < NANG; a++) {
        float m[5];
        for (int t = 0; t < 5; t++)
            m[t] = w[(a + t - 2 + NANG) % NANG];
        qsort(m, 5, sizeof *m, cmp_float);
        out[a] = m[2];
    }
    return true;
}

static int slice_range(uint32_t z0, uint32_t z1, void *arg)
{
    behind *b = arg;
    const covct_volume *ct = b->ct;
    const covct_seg *seg = b->seg;
    const uint32_t nx = ct->nx, ny = ct->ny;
    const size_t np = (size_t)nx * ny;
    uint8_t *gap = covct_malloc(np);
    uint8_t *keep = covct_malloc(np);
    uint32_t *stack = covct_malloc(np * sizeof *stack);
    double *back = covct_malloc(nx * sizeof *back);
    int rc = !gap || !keep || !stack || !back;
    for (uint32_t z = z0; z < z1 && !rc; z++) {
        b->count[z] = 0;
        if (z < b->z0 || z >= b->z1)
            continue;
        float cr[NANG];
        if (!cage(b, z, cr))
            continue;
        const size_t off = np * z;
        const uint8_t *L = seg->lungs + off;
        /* The back of the lung per column, and the slice's lungs' front
         * and back (patient y grows towards the back). */
        double ylo = INFINITY, yhi = -INFINITY;
        for (uint32_t i = 0; i < nx; i++)
            back[i] = NAN;
        for (uint32_t j = b->y0; j <= b->y1; j++)
            for (uint32_t i = b->x0; i <= b->x1; i++)
                if (L[(size_t)j * nx + i]) {
                    double y = py(ct, j);
                    if (isnan(back[i]) || y > back[i])
                        back[i] = y;
                    ylo = y < ylo ? y : ylo;
                    yhi = y > yhi ? y : yhi;
                }
        if (!(yhi > ylo))
            continue;
        const double ymid = 0.5 * (ylo + yhi);
        bool any_deep = false;
        memset(gap, 0, np);
        for (uint32_t j = b->y0; j <= b->y1; j++) {
            const double y = py(ct, j);
            for (uint32_t i = b->x0; i <= b->x1; i++) {
                size_t q = (size_t)j * nx + i, p = off + q;
                if (isnan(back[i]) || y <= back[i] || y <= ymid ||
                    fabs(px(ct, i) - b->mid_x) <= MEDIAL_MM ||
                    !seg->body[p] || L[q] || seg->airways[p] ||
                    (ct->outside && ct->outside[p]))
                    continue;
                double v = covct_hu(ct, p);
                if (v < TISSUE_LO_HU || v > TISSUE_HI_HU)
                    continue;
                double dx = (i - b->cx) * ct->spacing[0];
                double dy = (j - b->cy) * ct->spacing[1];
                if (sqrt(dx * dx + dy * dy) >=
                    cr[angle_bin(dx, dy)] - CAGE_MARGIN_MM)
                    continue;
                gap[q] = fabs(y - back[i]) >= DEEP_MM ? 2 : 1;
                any_deep |= gap[q] == 2;
            }
        }
        if (!any_deep)
            continue;
        /* Regions (8-connected) holding a deep voxel and touching the
         * lung (4-neighbour). */
        memset(keep, 0, np);
        for (size_t s0 = (size_t)b->y0 * nx; s0 < ((size_t)b->y1 + 1) * nx;
             s0++) {
            if (gap[s0] != 2 || keep[s0])
                continue;
            size_t sp = 0;
            bool touches = false;
            stack[sp++] = (uint32_t)s0;
            keep[s0] = 1;
            /* The queue is also the region's list: [0, sp). */
            for (size_t t = 0; t < sp; t++) {
                uint32_t q = stack[t];
                uint32_t i = q % nx, j = q / nx;
                for (int dj = -1; dj <= 1; dj++)
                    for (int di = -1; di <= 1; di++) {
                        if (!di && !dj)
                            continue;
                        int64_t ii = (int64_t)i + di, jj = (int64_t)j + dj;
                        if (ii < 0 || jj < 0 || ii >= nx || jj >= ny)
                            continue;
                        size_t r = (size_t)jj * nx + (size_t)ii;
                        if (L[r] && (!di || !dj))
                            touches = true;
                        if (gap[r] && !keep[r]) {
                            keep[r] = 1;
                            stack[sp++] = (uint32_t)r;
                        }
                    }
            }
            /* Fat (a region averaging below FAT_MAX_HU) is neither
             * consolidation nor effusion. */
            double sum = 0;
            for (size_t t = 0; t < sp; t++)
                sum += covct_hu(ct, off + stack[t]);
            const bool kept = touches && sum / (double)sp >= FAT_MAX_HU;
            for (size_t t = 0; t < sp; t++) {
                uint32_t q = stack[t];
                keep[q] = kept ? 2 : 3; /* 3: seen, not kept */
                if (kept && b->found)
                    b->found[off + q] = 1;
            }
            if (kept)
                b->count[z] += sp;
        }
    }
    covct_free(gap);
    covct_free(keep);
    covct_free(stack);
    covct_free(back);
    return rc;
}

covct_rc covct_lungs_dense_behind(const covct_volume *ct, const covct_seg *seg,
                                  uint8_t *found, double *ml,
                                  covct_error *err)
{
    *ml = 0;
    if (found)
        memset(found, 0, covct_volume_voxels(ct));
    covct_axes ax;
    covct_volume_axes(ct, &ax);
    /* Rows along the patient's x, columns along y (covct analyze turns a
     * volume stored otherwise before the lungs are found). */
    if (ax.axis[0] != 0 || ax.axis[1] != 1 || ax.axis[2] != 2)
        return COVCT_OK;
    const uint32_t nx = ct->nx, ny = ct->ny, nz = ct->nz;
    const size_t np = (size_t)nx * ny;
    /* The lungs' height (patient z) and midline; the thorax's centre. */
    double zlo = INFINITY, zhi = -INFINITY, sx = 0;
    uint64_t cnt = 0;
    uint32_t bx0 = UINT32_MAX, bx1 = 0, by0 = UINT32_MAX, by1 = 0;
    for (uint32_t z = 0; z < nz; z++) {
        const uint8_t *L = seg->lungs + np * z;
        for (size_t q = 0; q < np; q++)
            if (L[q]) {
                double zz = ct->affine[2][2] * z + ct->affine[2][3];
                zlo = zz < zlo ? zz : zlo;
                zhi = zz > zhi ? zz : zhi;
                uint32_t i = (uint32_t)(q % nx), j = (uint32_t)(q / nx);
                sx += px(ct, i);
                cnt++;
                bx0 = i < bx0 ? i : bx0, bx1 = i > bx1 ? i : bx1;
                by0 = j < by0 ? j : by0, by1 = j > by1 ? j : by1;
            }
    }
    if (!cnt)
        return COVCT_OK;
    behind b = {.ct = ct, .seg = seg, .found = found};
    {
        /* (Spacings under 0.1 mm, never a CT's, are read as 0.1.) */
        double spx = fmax(fabs(ct->spacing[0]), 0.1);
        double spy = fmax(fabs(ct->spacing[1]), 0.1);
        uint32_t mx = (uint32_t)ceil(BOX_MARGIN_MM / spx);
        uint32_t my = (uint32_t)ceil(BOX_MARGIN_MM / spy);
        b.x0 = bx0 > mx ? bx0 - mx : 0;
        b.x1 = bx1 + mx < nx ? bx1 + mx : nx - 1;
        b.y0 = by0 > my ? by0 - my : 0;
        b.y1 = by1 + my < ny ? by1 + my : ny - 1;
    }
    b.mid_x = sx / (double)cnt;
    /* Lower two thirds of the lungs' height: the slices whose patient z
     * lies below zhi - (zhi - zlo) / 3. */
    const double zcut = zhi - (zhi - zlo) / 3.0;
    b.z0 = UINT32_MAX;
    b.z1 = 0;
    double cxs = 0, cys = 0;
    uint64_t nb = 0;
    for (uint32_t z = 0; z < nz; z++) {
        double zz = ct->affine[2][2] * z + ct->affine[2][3];
        if (zz < zlo || zz > zcut)
            continue;
        b.z0 = z < b.z0 ? z : b.z0;
        b.z1 = z + 1 > b.z1 ? z + 1 : b.z1;
        const uint8_t *body = seg->body + np * z;
        for (size_t q = 0; q < np; q++)
            if (body[q]) {
                cxs += (double)(q % nx);
                cys += (double)(q / nx);
                nb++;
            }
    }
    if (b.z0 >= b.z1 || !nb)
        return COVCT_OK;
    b.cx = cxs / (double)nb;
    b.cy = cys / (double)nb;
    const double sz = fabs(ct->spacing[2]);
    b.slab = sz > 0.1 ? (uint32_t)floor(SLAB_MM / sz + 1e-6) : 150;
    b.rb = covct_malloc((size_t)nz * NANG * sizeof *b.rb);
    b.count = covct_calloc(nz, sizeof *b.count);
    if (!b.rb || !b.count) {
        covct_free(b.rb);
        covct_free(b.count);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory (lungs)");
    }
    int bad = covct_morph_parallel(nz, bone_range, &b);
    if (!bad)
        bad = covct_morph_parallel(nz, slice_range, &b);
    uint64_t total = 0;
    for (uint32_t z = 0; z < nz; z++)
        total += b.count[z];
    covct_free(b.rb);
    covct_free(b.count);
    if (bad)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory (lungs)");
    *ml = (double)total * fabs(ct->spacing[0] * ct->spacing[1] *
                               ct->spacing[2]) /
          1000.0;
    return COVCT_OK;
}

/* ---- air bronchograms: which of the dense tissue is lung ------------------ */

/* An air bronchogram: a pocket of air (below TISSUE_LO_HU, 4-connected in
 * its slice) of at most POCKET_MAX_MM2 whose every in-plane neighbour is
 * dense tissue of the same region.  Effusion holds no air; airless lung
 * (consolidation, or collapse) keeps its bronchi open. */
#define POCKET_MAX_MM2 80.0
/* A 3-D region is lung when its pockets add up to this much. */
#define BRONCHI_MIN_ML 0.2

typedef struct region_stat {
    uint64_t vox, pocket;
    uint64_t touch[3]; /* in-plane lung neighbours: [COVCT_LUNG_RIGHT],
                          [COVCT_LUNG_LEFT] */
    uint8_t side;      /* the lung it joins; 0: it stays apart */
} region_stat;

enum { K_FOUND = 1, K_POCKET = 2 };

covct_rc covct_lungs_dense_lung(const covct_volume *ct, covct_seg *seg,
                                uint8_t *found, covct_dense_lung *out,
                                covct_error *err)
{
    memset(out, 0, sizeof *out);
    const uint32_t nx = ct->nx, ny = ct->ny, nz = ct->nz;
    const size_t np = (size_t)nx * ny;
    uint32_t x0 = UINT32_MAX, x1 = 0, y0 = UINT32_MAX, y1 = 0;
    uint32_t z0 = UINT32_MAX, z1 = 0;
    for (uint32_t z = 0; z < nz; z++) {
        const uint8_t *f = found + np * z;
        for (size_t q = 0; q < np; q++)
            if (f[q]) {
                uint32_t i = (uint32_t)(q % nx), j = (uint32_t)(q / nx);
                x0 = i < x0 ? i : x0, x1 = i > x1 ? i : x1;
                y0 = j < y0 ? j : y0, y1 = j > y1 ? j : y1;
                z0 = z < z0 ? z : z0, z1 = z > z1 ? z : z1;
            }
    }
    if (z0 > z1)
        return COVCT_OK;
    /* One voxel of margin: a pocket touching the box's edge is not
     * enclosed. */
    x0 -= x0 > 0, y0 -= y0 > 0, z0 -= z0 > 0;
    x1 += x1 + 1 < nx, y1 += y1 + 1 < ny, z1 += z1 + 1 < nz;
    const size_t bw = x1 - x0 + 1, bh = y1 - y0 + 1, bd = z1 - z0 + 1;
    const size_t bn = bw * bh * bd, bp = bw * bh;
    uint32_t *lab = covct_calloc(bn, sizeof *lab);
    uint8_t *kind = covct_calloc(bn, 1);
    uint32_t *stack = covct_malloc(bn * sizeof *stack);
    region_stat *rs = NULL;
    size_t nrs = 0, cap = 0;
    covct_rc rc = COVCT_OK;
    if (!lab || !kind || !stack)
        goto nomem;
    for (size_t b = 0; b < bn; b++) {
        size_t i = b % bw, j = (b / bw) % bh, k = b / bp;
        kind[b] = found[np * (z0 + k) + (size_t)(y0 + j) * nx + x0 + i]
                      ? K_FOUND
                      : 0;
    }
    /* Regions: 26-connected components of the dense tissue. */
    for (size_t s0 = 0; s0 < bn; s0++) {
        if (kind[s0] != K_FOUND || lab[s0])
            continue;
        if (nrs == cap) {
            size_t nc = cap ? 2 * cap : 16;
            region_stat *t = covct_realloc(rs, nc * sizeof *t);
            if (!t)
                goto nomem;
            rs = t, cap = nc;
        }
        region_stat *r = &rs[nrs++];
        memset(r, 0, sizeof *r);
        const uint32_t id = (uint32_t)nrs;
        size_t sp = 0;
        stack[sp++] = (uint32_t)s0;
        lab[s0] = id;
        while (sp) {
            size_t b = stack[--sp];
            size_t i = b % bw, j = (b / bw) % bh, k = b / bp;
            r->vox++;
            for (int dk = -1; dk <= 1; dk++)
                for (int dj = -1; dj <= 1; dj++)
                    for (int di = -1; di <= 1; di++) {
                        int64_t ii = (int64_t)i + di, jj = (int64_t)j + dj,
                                kk = (int64_t)k + dk;
                        if (ii < 0 || jj < 0 || kk < 0 || ii >= (int64_t)bw ||
                            jj >= (int64_t)bh || kk >= (int64_t)bd)
                            continue;
                        size_t c = (size_t)kk * bp + (size_t)jj * bw +
                                   (size_t)ii;
                        if (!dk && (!di ^ !dj)) {
                            size_t v = np * (z0 + k) +
                                       (size_t)(y0 + jj) * nx + x0 + (size_t)ii;
                            uint8_t l = seg->lungs[v];
                            if (l == COVCT_LUNG_RIGHT || l == COVCT_LUNG_LEFT)
                                r->touch[l]++;
                        }
                        if (kind[c] == K_FOUND && !lab[c]) {
                            lab[c] = id;
                            stack[sp++] = (uint32_t)c;
                        }
                    }
        }
    }
    /* Pockets: 4-connected air in a slice, enclosed by one region. */
    const double px_mm2 = fabs(ct->spacing[0] * ct->spacing[1]);
    const size_t pocket_max = (size_t)(POCKET_MAX_MM2 / fmax(px_mm2, 1e-3));
    for (size_t s0 = 0; s0 < bn; s0++) {
        if (kind[s0] || lab[s0])
            continue;
        size_t k = s0 / bp;
        size_t v0 = np * (z0 + k) + (size_t)(y0 + (s0 / bw) % bh) * nx + x0 +
                    s0 % bw;
        if (covct_hu(ct, v0) >= TISSUE_LO_HU ||
            (ct->outside && ct->outside[v0]))
            continue;
        /* lab marks visited air with UINT32_MAX while the pocket grows;
         * the pocket's list is stack[0, sp). */
        size_t sp = 0, t = 0;
        uint32_t owner = 0;
        bool enclosed = true;
        stack[sp++] = (uint32_t)s0;
        lab[s0] = UINT32_MAX;
        while (t < sp) {
            size_t b = stack[t++];
            size_t i = b % bw, j = (b / bw) % bh;
            static const int d4[4][2] = {{1, 0}, {-1, 0}, {0, 1}, {0, -1}};
            for (int n = 0; n < 4; n++) {
                int64_t ii = (int64_t)i + d4[n][0], jj = (int64_t)j + d4[n][1];
                if (ii < 0 || jj < 0 || ii >= (int64_t)bw ||
                    jj >= (int64_t)bh) {
                    enclosed = false;
                    continue;
                }
                size_t c = k * bp + (size_t)jj * bw + (size_t)ii;
                if (kind[c] == K_FOUND) {
                    if (owner && lab[c] != owner)
                        enclosed = false;
                    owner = lab[c];
                    continue;
                }
                if (lab[c] == UINT32_MAX)
                    continue;
                size_t v = np * (z0 + k) + (size_t)(y0 + jj) * nx + x0 +
                           (size_t)ii;
                if (lab[c] || covct_hu(ct, v) >= TISSUE_LO_HU ||
                    (ct->outside && ct->outside[v])) {
                    enclosed = false; /* tissue not of the region */
                    continue;
                }
                lab[c] = UINT32_MAX;
                stack[sp++] = (uint32_t)c;
            }
        }
        enclosed &= owner && sp <= pocket_max;
        for (size_t u = 0; u < sp; u++) {
            lab[stack[u]] = enclosed ? owner : UINT32_MAX;
            kind[stack[u]] = enclosed ? K_POCKET : 0;
        }
        if (enclosed)
            rs[owner - 1].pocket += sp;
    }
    const double vml = fabs(ct->spacing[0] * ct->spacing[1] * ct->spacing[2]) /
                       1000.0;
    for (size_t r = 0; r < nrs; r++) {
        region_stat *st = &rs[r];
        covct_log(COVCT_LOG_DEBUG,
                  "lungs: dense region %zu: %.1f ml, air bronchograms %.2f ml",
                  r + 1, (double)st->vox * vml, (double)st->pocket * vml);
        out->bronchi_ml += (double)st->pocket * vml;
        if ((double)st->pocket * vml < BRONCHI_MIN_ML)
            continue;
        st->side = st->touch[COVCT_LUNG_LEFT] > st->touch[COVCT_LUNG_RIGHT]
                       ? COVCT_LUNG_LEFT
                       : COVCT_LUNG_RIGHT;
        out->regions++;
    }
    /* The regions with air bronchograms join the lung they touch most. */
    uint64_t added[3] = {0};
    for (size_t b = 0; b < bn; b++) {
        uint32_t id = lab[b];
        if (!kind[b] || !id || id == UINT32_MAX || !rs[id - 1].side)
            continue;
        size_t v = np * (z0 + b / bp) + (size_t)(y0 + (b / bw) % bh) * nx +
                   x0 + b % bw;
        found[v] = 0;
        if (seg->lungs[v])
            continue; /* a bronchus the lung mask already held */
        seg->lungs[v] = rs[id - 1].side;
        added[rs[id - 1].side]++;
    }
    out->right_ml = (double)added[COVCT_LUNG_RIGHT] * vml;
    out->left_ml = (double)added[COVCT_LUNG_LEFT] * vml;
    goto done;
nomem:
    rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory (lungs)");
done:
    covct_free(lab);
    covct_free(kind);
    covct_free(stack);
    covct_free(rs);
    return rc;
}
