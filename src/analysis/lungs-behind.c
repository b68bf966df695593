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
