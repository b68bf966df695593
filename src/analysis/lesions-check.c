/*
 * Density check of the network's lesions (docs/internals/lesions-nn.md,
 * "The density check"): three rules on the CT's HU, applied after the
 * network's maps have been put into the lung mask.
 *
 *  1. Well-aerated lung is not lesion: a lesion voxel whose HU, averaged
 *     with its 8 neighbours in the slice, is below -700 (the upper end of
 *     well-aerated lung, -950..-700, Colombi et al., Radiology 2020, the
 *     range measures.c reports) is dropped.  The network's masks are drawn
 *     generously, as its training masks were; without this rule a voxel
 *     could count both as lesion and as well aerated.
 *  2. Dense pieces are consolidation: lung of soft-tissue density (HU >=
 *     -300, the density method's consolidation floor) whose centre lies at
 *     least 5 mm from aerated lung is consolidation, with the dense voxels
 *     of such centres' 5 mm balls.  The ball separates a
 *     solid opacity from vessels, which inside the lung mask are narrower
 *     (the hilar vessels lie outside it).  Only aerated lung bounds the
 *     ball: consolidation against the chest wall or the diaphragm is cut
 *     by the lung's border and still counts.  A centre must lie 3 mm
 *     inside the lung mask, so that soft tissue the mask took in at a
 *     crease of its border (pericardial fat, seen on normal001) does not.
 *     The network does not call a homogeneous consolidation that has no
 *     ground glass around it.
 *  3. The rim of consolidation is consolidation: the scanner blurs an
 *     opacity's edge, so the voxels around it mix consolidation and
 *     aerated lung.  Those at least half solid (RIM_MIN_HU, half way from
 *     aerated lung to consolidation: the half-maximum rule of CT
 *     volumetry) within 1.5 mm of it in the slice are added; neither the
 *     network (trained on masks drawn on the visible edge) nor rule 2
 *     (the 3 x 3 mean of an edge voxel is below -300) takes them.  On the
 *     phantom consolidation was about 10 % short of its truth without
 *     this rule (docs/internals/lesions-nn.md).
 *
 * Also here, for either lesion method: the thick-slice check
 * (covct_lesions_thick_slice_check, docs/internals/lesions-nn.md, "Thick
 * slices"): on slices over 2.5 mm, lesion voxels on the lungs' top or
 * bottom surface are the slab's partial volume and are dropped.
 *
 * Speed: the balls are looked for on a grid of 2 x 2 in-plane blocks when
 * pixels are under 1 mm (a block is dense when its mean is and all of it
 * is lung), so the distance transform runs on a quarter of the voxels; the
 * full-resolution transform runs only around the balls found, which in
 * lungs without consolidation is nowhere.
 */
#include <math.h>
#include <string.h>

#include "covct/analysis.h"
#include "analysis/analysis_int.h"
#include "analysis/filters_int.h"

/* Rule 1: below this (mean9) a voxel is well-aerated lung. */
#define AERATED_MAX_HU (-700.0)
/* Rule 2: dense = HU at least this (a block's mean on the coarse grid,
 * mean9 at full resolution); a centre is dense lung farther than BALL_MM
 * from aerated lung, and the dense voxels within BALL_MM of a centre
 * become consolidation (until session 11 also those 2 mm farther, which
 * rule 3 now covers at the opacity's edge without running along a vessel
 * that touches it). */
#define DENSE_MIN_HU (-300.0)
#define BALL_MM 5.0
/* ... and a centre lies at least this deep inside the lung mask. */
#define DEEP_MM 3.0
/* In-plane pixels under this are grouped 2 x 2 for the ball search. */
#define COARSE_BELOW_MM 1.0
/* Rule 3: the partial-volume rim of consolidation, up to RIM_MM wide, is
 * consolidation where its voxels are at least RIM_MIN_HU dense: half way
 * between aerated lung (about -850 HU) and consolidation (about +50). */
#define RIM_MIN_HU (-400.0)
#define RIM_MM 1.5
/* A rim voxel while rule 3 runs (not yet a lesion class). */
#define RIM_MARK 0x80

/* Coarse cells. */
enum { CELL_DENSE = 1, CELL_LUNG = 2 /* all lung */, CELL_CENTRE = 4 };

/* Whether every cell within DEEP_MM of cell (i, j, z) is all lung: a
 * ball's centre lies inside the lung mask, not in a crease of its border
 * where it took in some chest wall or pericardial fat. */
static bool deep_in_lung(const uint8_t *m, size_t cx, size_t cy, size_t cz,
                         const double sp[3], size_t i, size_t j, size_t z)
{
    const long r[3] = {(long)(DEEP_MM / sp[0]), (long)(DEEP_MM / sp[1]),
                       (long)(DEEP_MM / sp[2])};
    for (long dz = -r[2]; dz <= r[2]; dz++)
        for (long dy = -r[1]; dy <= r[1]; dy++)
            for (long dx = -r[0]; dx <= r[0]; dx++) {
                double ex = dx * sp[0], ey = dy * sp[1], ez = dz * sp[2];
                if (ex * ex + ey * ey + ez * ez > DEEP_MM * DEEP_MM)
                    continue;
                long X = (long)i + dx, Y = (long)j + dy, Z = (long)z + dz;
                if (X < 0 || Y < 0 || Z < 0 || X >= (long)cx ||
                    Y >= (long)cy || Z >= (long)cz ||
                    !(m[((size_t)Z * cy + (size_t)Y) * cx + (size_t)X] &
                      CELL_LUNG))
                    return false;
            }
    return true;
}

/* HU of voxel (x, y) of slice z averaged with its 8 neighbours in the
 * slice (those inside it): a little smoothing against quantum noise. */
static double mean9(const covct_volume *ct, size_t x, size_t y, size_t z)
{
    const size_t nx = ct->nx, ny = ct->ny, o = z * nx * ny;
    double sum = 0;
    int n = 0;
    for (size_t j = y > 0 ? y - 1 : 0; j <= y + 1 && j < ny; j++)
        for (size_t i = x > 0 ? x - 1 : 0; i <= x + 1 && i < nx; i++, n++)
            sum += covct_hu_filter(ct, o + j * nx + i);
    return sum / n;
}

/* Rule 3: the rim of consolidation, grown in the slice (4-neighbours)
 * over lung that is not lesion and at least RIM_MIN_HU dense, for as many
 * steps as RIM_MM holds pixels (at least one).  Not across slices: on
 * thick slices that took in the partial volume of the vessels above and
 * below a lesion (the phantom at 5 mm: consolidation 14.7 ml for a truth
 * of 11.2, against 12.6 in the slice only).
 *
 * The voxels added are listed in step order; a step's sources are the
 * last step's additions (the consolidation itself for the first), so the
 * volume is scanned once. */
static covct_rc rim_rule(const covct_volume *ct, covct_seg *seg, size_t *added,
                         covct_error *err)
{
    const size_t nx = ct->nx, ny = ct->ny, n = nx * ny * (size_t)ct->nz;
    const double px = fmin(ct->spacing[0], ct->spacing[1]);
    int steps = px > 0 ? (int)floor(RIM_MM / px) : 1;
    steps = steps < 1 ? 1 : steps > 8 ? 8 : steps;
    uint8_t *les = seg->lesions;
    size_t *list = NULL, len = 0, cap = 0, from = 0;
    covct_rc rc = COVCT_OK;
    *added = 0;
    for (int s = 0; s < steps && rc == COVCT_OK; s++) {
        const size_t to = len;
        size_t v = s == 0 ? 0 : from;
        const size_t end = s == 0 ? n : to;
        for (; v < end && rc == COVCT_OK; v++) {
            size_t src = s == 0 ? v : list[v];
            if (s == 0 && les[src] != COVCT_LESION_CONSOLIDATION)
                continue;
            const size_t x = src % nx, y = src / nx % ny;
            const size_t nb[4] = {x > 0 ? src - 1 : src,
                                  x + 1 < nx ? src + 1 : src,
                                  y > 0 ? src - nx : src,
                                  y + 1 < ny ? src + nx : src};
            for (int j = 0; j < 4; j++) {
                size_t u = nb[j];
                if (les[u] || !seg->lungs[u] ||
                    covct_hu_filter(ct, u) < RIM_MIN_HU)
                    continue;
                if (len == cap) {
                    size_t nc = cap ? 2 * cap : 4096;
                    size_t *nl = covct_realloc(list, nc * sizeof *nl);
                    if (!nl) {
                        rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                                       "lesions check: out of memory for "
                                       "the rim of consolidation");
                        break;
                    }
                    list = nl;
                    cap = nc;
                }
                les[u] = RIM_MARK;
                list[len++] = u;
            }
        }
        from = to;
        if (len == to)
            break; /* nothing added: nothing to grow from */
    }
    for (size_t i = 0; i < len; i++)
        les[list[i]] = rc == COVCT_OK ? COVCT_LESION_CONSOLIDATION : 0;
    covct_free(list);
    if (rc == COVCT_OK)
        *added = len;
    return rc;
}

covct_rc covct_lesions_density_check(const covct_volume *ct, covct_seg *seg,
                                     covct_lesions_check_stats *stats,
                                     covct_error *err)
{
    covct_lesions_check_stats st = {0};
    if (stats)
        *stats = st;
    if (!ct || !ct->data || !seg || !seg->lungs || !seg->lesions)
        return COVCT_ERR(err, COVCT_ERR_ARG, "lesions check: missing input");
    if (seg->nx != ct->nx || seg->ny != ct->ny || seg->nz != ct->nz)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "lesions check: segmentation and CT differ in size");
    const size_t nx = ct->nx, ny = ct->ny, nz = ct->nz, plane = nx * ny;

    /* Rule 1. */
    for (size_t z = 0; z < nz; z++)
        for (size_t y = 0; y < ny; y++)
            for (size_t x = 0; x < nx; x++) {
                size_t v = z * plane + y * nx + x;
                if (seg->lesions[v] && mean9(ct, x, y, z) < AERATED_MAX_HU) {
                    seg->lesions[v] = 0;
                    st.aerated_voxels++;
                }
            }

    /* Rule 2, on the lungs' box: a coarse grid of k x k in-plane blocks. */
    covct_box b;
    covct_rc rc = COVCT_OK;
    float *d = NULL;
    uint8_t *m = NULL;
    if (!covct_mask_box(seg->lungs, nx, ny, nz, ct->spacing, 0, &b))
        goto done;
    const size_t k = ct->spacing[0] < COARSE_BELOW_MM &&
                             ct->spacing[1] < COARSE_BELOW_MM
                         ? 2
                         : 1;
    const size_t cx = (b.nx + k - 1) / k, cy = (b.ny + k - 1) / k;
    const size_t cn = cx * cy * b.nz;
    const double csp[3] = {ct->spacing[0] * (double)k,
                           ct->spacing[1] * (double)k, ct->spacing[2]};
    d = covct_malloc(cn * sizeof *d);
    m = covct_malloc(cn);
    if (!d || !m) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                       "lesions check: cannot allocate the %zux%zux%zu grid",
                       cx, cy, b.nz);
        goto done;
    }
    /* Coarse cells: CELL_DENSE when all lung and dense on average,
     * CELL_LUNG when all lung; aerated (d = 0, where the distances are
     * measured from) when some lung and its lung voxels are not dense on
     * average.  Outside the lung is neither: consolidation against the
     * chest wall or the diaphragm still reaches BALL_MM from aerated
     * lung. */
    bool any_dense = false;
    for (size_t z = 0; z < b.nz; z++)
        for (size_t j = 0; j < cy; j++)
            for (size_t i = 0; i < cx; i++) {
                double sum = 0;
                int n = 0, cells = 0;
                for (size_t y = b.y0 + j * k; y < b.y0 + (j + 1) * k; y++)
                    for (size_t x = b.x0 + i * k; x < b.x0 + (i + 1) * k;
                         x++, cells++) {
                        if (x >= b.x0 + b.nx || y >= b.y0 + b.ny)
                            continue;
                        size_t v = (z + b.z0) * plane + y * nx + x;
                        if (!seg->lungs[v])
                            continue;
                        sum += covct_hu_filter(ct, v);
                        n++;
                    }
                size_t c = (z * cy + j) * cx + i;
                bool dense = n == cells && sum >= DENSE_MIN_HU * n;
                bool aerated = n > 0 && sum < DENSE_MIN_HU * n;
                m[c] = (uint8_t)((dense ? CELL_DENSE : 0) |
                                 (n == cells ? CELL_LUNG : 0));
                d[c] = aerated ? 0.0f : COVCT_FILTER_FAR;
                any_dense |= dense;
            }
    if (!any_dense)
        goto done;
    rc = covct_filter_edt_sq_inplace(d, cx, cy, b.nz, csp, 0, err);
    if (rc != COVCT_OK)
        goto done;
    /* Ball centres, and the full-resolution box around them. */
    const float ball2 = (float)(BALL_MM * BALL_MM);
    const double reach = BALL_MM;
    size_t lo[3] = {SIZE_MAX, SIZE_MAX, SIZE_MAX}, hi[3] = {0, 0, 0};
    for (size_t z = 0; z < b.nz; z++)
        for (size_t j = 0; j < cy; j++)
            for (size_t i = 0; i < cx; i++) {
                size_t ci = (z * cy + j) * cx + i;
                if (!(m[ci] & CELL_DENSE) || !(d[ci] > ball2) ||
                    !deep_in_lung(m, cx, cy, b.nz, csp, i, j, z))
                    continue;
                m[ci] |= CELL_CENTRE;
                size_t c[3] = {b.x0 + i * k, b.y0 + j * k, b.z0 + z};
                for (int a = 0; a < 3; a++) {
                    lo[a] = c[a] < lo[a] ? c[a] : lo[a];
                    size_t e = c[a] + (a < 2 ? k - 1 : 0);
                    hi[a] = e > hi[a] ? e : hi[a];
                }
            }
    if (lo[0] == SIZE_MAX)
        goto done;
    /* The fine box: centres' box grown by the reach, within the volume. */
    const size_t dim[3] = {nx, ny, nz};
    size_t f0[3], fn[3];
    for (int a = 0; a < 3; a++) {
        size_t pad = (size_t)ceil(reach / ct->spacing[a]) + 1;
        f0[a] = lo[a] > pad ? lo[a] - pad : 0;
        size_t e = hi[a] + pad < dim[a] ? hi[a] + pad : dim[a] - 1;
        fn[a] = e - f0[a] + 1;
    }
    const size_t fplane = fn[0] * fn[1], fnv = fplane * fn[2];
    float *fd = covct_malloc(fnv * sizeof *fd);
    if (!fd) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                       "lesions check: cannot allocate the %zux%zux%zu box",
                       fn[0], fn[1], fn[2]);
        goto done;
    }
    for (size_t z = 0; z < fn[2]; z++)
        for (size_t y = 0; y < fn[1]; y++)
            for (size_t x = 0; x < fn[0]; x++) {
                size_t X = x + f0[0], Y = y + f0[1], Z = z + f0[2];
                bool centre = false;
                if (X >= b.x0 && Y >= b.y0 && Z >= b.z0 &&
                    X < b.x0 + cx * k && Y < b.y0 + cy * k &&
                    Z < b.z0 + b.nz) {
                    size_t ci = ((Z - b.z0) * cy + (Y - b.y0) / k) * cx +
                                (X - b.x0) / k;
                    centre = (m[ci] & CELL_CENTRE) != 0;
                }
                fd[z * fplane + y * fn[0] + x] =
                    centre ? 0.0f : COVCT_FILTER_FAR;
            }
    rc = covct_filter_edt_sq_inplace(fd, fn[0], fn[1], fn[2], ct->spacing, 0,
                                     err);
    if (rc == COVCT_OK) {
        const float reach2 = (float)(reach * reach);
        for (size_t z = 0; z < fn[2]; z++)
            for (size_t y = 0; y < fn[1]; y++)
                for (size_t x = 0; x < fn[0]; x++) {
                    if (fd[z * fplane + y * fn[0] + x] > reach2)
                        continue;
                    size_t v = (z + f0[2]) * plane + (y + f0[1]) * nx + x +
                               f0[0];
                    if (seg->lesions[v] != COVCT_LESION_CONSOLIDATION &&
                        seg->lungs[v] &&
                        mean9(ct, x + f0[0], y + f0[1], z + f0[2]) >=
                            DENSE_MIN_HU) {
                        seg->lesions[v] = COVCT_LESION_CONSOLIDATION;
                        st.dense_voxels++;
                    }
                }
    }
    covct_free(fd);
done:
    covct_free(d);
    covct_free(m);
    if (rc == COVCT_OK)
        rc = rim_rule(ct, seg, &st.rim_voxels, err);
    if (stats)
        *stats = st;
    return rc;
}

/* ---- thick slices: the lung's top and bottom surfaces ---------------------- */

covct_rc covct_lesions_thick_slice_check(const covct_volume *ct, covct_seg *seg,
                                         size_t *dropped, covct_error *err)
{
    if (dropped)
        *dropped = 0;
    if (!ct || !seg || !seg->lungs || !seg->lesions)
        return COVCT_ERR(err, COVCT_ERR_ARG, "thick-slice check: missing input");
    if (seg->nx != ct->nx || seg->ny != ct->ny || seg->nz != ct->nz)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "thick-slice check: segmentation and CT differ in size");
    if (!(ct->spacing[2] > COVCT_THICK_SLICE_MM))
        return COVCT_OK;
    const size_t plane = (size_t)ct->nx * ct->ny, nz = ct->nz;
    size_t n = 0;
    for (size_t z = 0; z < nz; z++)
        for (size_t i = 0; i < plane; i++) {
            size_t v = z * plane + i;
            if (!seg->lesions[v])
                continue;
            /* Beyond the scan counts as lung: nothing is known there. */
            bool below = z == 0 || seg->lungs[v - plane];
            bool above = z + 1 == nz || seg->lungs[v + plane];
            if (!(below && above)) {
                seg->lesions[v] = 0;
                n++;
            }
        }
    if (dropped)
        *dropped = n;
    return COVCT_OK;
}
