/*
 * Measures a radiologist reads from the segmentation: volumes, involvement
 * per lobe, the CT severity score of Pan et al. (Radiology 2020), well
 * aerated lung, distribution, and a pattern category after the RSNA expert
 * consensus (Simpson et al., Radiology: Cardiothoracic Imaging 2020), with
 * the features that led to it.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "analysis/analysis_int.h"
#include "covct/analysis.h"

/* ---- thresholds (see docs/internals/measures.md) ------------------------ */
/* Below this involvement of the lungs (and this volume) the scan is read as
 * negative for pneumonia: both lesion methods (the network and the density
 * method) leave small amounts of false-positive "lesion" in normal lungs
 * (dependent lung, fissures, partial volume at the diaphragm). */
#define NEGATIVE_MAX_PCT 1.0
#define NEGATIVE_MAX_ML 15.0
/* Both lungs count as involved ("bilateral") when each holds at least this
 * share of the opacity volume, and at least BILATERAL_MIN_ML or 1 % of its
 * own volume, whichever is smaller (so that stray false positives in one
 * lung do not make a unilateral process bilateral). */
#define BILATERAL_MIN_SHARE 0.10
#define BILATERAL_MIN_ML 2.0
/* Peripheral: within the outer third of the lung's depth on the slice. */
#define PERIPHERAL_FRACTION (1.0 / 3.0)

static void add_reason(covct_measures *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_reason(covct_measures *m, const char *fmt, ...)
{
    if (m->n_reasons >= COVCT_MAX_REASONS)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->reasons[m->n_reasons], sizeof m->reasons[0], fmt, ap);
    va_end(ap);
    m->n_reasons++;
}

/* The smaller of two distances (never NaN here; libm's fminf, which must
 * handle NaN, is a call in the inner loops below). */
static inline float dmin(float a, float b) { return a < b ? a : b; }

/* 2-D chamfer distance (mm) to the nearest non-lung pixel, for one slice
 * (3-4 chamfer weights scaled by the pixel spacing; good to a few %). */
static void slice_depth(const uint8_t *lung, uint32_t nx, uint32_t ny,
                        double sx, double sy, float *d)
{
    const float big = 1e9f;
    float dx = (float)sx, dy = (float)sy,
          dd = (float)sqrt(sx * sx + sy * sy);
    for (size_t i = 0; i < (size_t)nx * ny; i++)
        d[i] = lung[i] ? big : 0.0f;
    for (uint32_t y = 0; y < ny; y++)
        for (uint32_t x = 0; x < nx; x++) {
            float *p = &d[(size_t)y * nx + x];
            if (*p == 0.0f)
                continue;
            float v = *p;
            if (x == 0 || y == 0 || x + 1 == nx || y + 1 == ny) {
                v = dmin(v, dmin(dx, dy)); /* the image edge is outside */
            }
            if (x > 0)
                v = dmin(v, p[-1] + dx);
            if (y > 0) {
                v = dmin(v, p[-(ptrdiff_t)nx] + dy);
                if (x > 0)
                    v = dmin(v, p[-(ptrdiff_t)nx - 1] + dd);
                if (x + 1 < nx)
                    v = dmin(v, p[-(ptrdiff_t)nx + 1] + dd);
            }
            *p = v;
        }
    for (uint32_t y = ny; y-- > 0;)
        for (uint32_t x = nx; x-- > 0;) {
            float *p = &d[(size_t)y * nx + x];
            if (*p == 0.0f)
                continue;
            float v = *p;
            if (x + 1 < nx)
                v = dmin(v, p[1] + dx);
            if (y + 1 < ny) {
                v = dmin(v, p[nx] + dy);
                if (x + 1 < nx)
                    v = dmin(v, p[nx + 1] + dd);
                if (x > 0)
                    v = dmin(v, p[nx - 1] + dd);
            }
            *p = v;
        }
}

/* Counts of one slice; summed over the slices in order afterwards, so
 * the result does not depend on how the slices were shared out. */
typedef struct slice_acc {
    uint64_t lung_n[3], lobe_n[COVCT_N_LOBES + 1];
    uint64_t lobe_cls[COVCT_N_LOBES + 1][3];
    uint64_t cls_n[3], side_lesion[3], aerated, peripheral;
    uint64_t dense_n;  /* voxels of seg->dense_behind */
    double dense_hu;   /* and the sum of their HU */
} slice_acc;

typedef struct measure_job {
    const covct_volume *ct;
    const covct_seg *seg;
    const int64_t *instance_numbers;
    covct_measures *m;
    slice_acc *acc;
    double pixel_mm2;
} measure_job;

/* The slices z0..z1-1: their entries of m->slices and their counts. */
static int measure_range(uint32_t z0, uint32_t z1, void *p)
{
    const measure_job *j = p;
    const covct_volume *ct = j->ct;
    const covct_seg *seg = j->seg;
    const uint32_t nx = ct->nx, ny = ct->ny;
    const size_t plane = (size_t)nx * ny;
    const double pixel_mm2 = j->pixel_mm2;
    float *depth = covct_malloc(plane * sizeof *depth);
    uint8_t *body2d = covct_malloc(plane);
    if (!depth || !body2d) {
        covct_free(depth);
        covct_free(body2d);
        return 1;
    }
    for (uint32_t k = z0; k < z1; k++) {
        covct_slice_measures *sm = &j->m->slices[k];
        slice_acc *a = &j->acc[k];
        const size_t base = plane * k;
        /* Patient z of the slice centre. */
        sm->z_mm = ct->affine[2][0] * (nx - 1) / 2.0 +
                   ct->affine[2][1] * (ny - 1) / 2.0 + ct->affine[2][2] * k +
                   ct->affine[2][3];
        sm->instance_number = j->instance_numbers ? j->instance_numbers[k] : -1;
        bool any_lesion = false, any_body = false;
        for (size_t i = 0; i < plane; i++) {
            uint8_t l = seg->lungs[base + i];
            body2d[i] = seg->body[base + i] || l;
            any_body |= seg->body[base + i] != 0;
            any_lesion |= l && seg->lesions[base + i];
        }
        /* Peripheral vs central: depth below the body surface, measured
         * from where each lung comes closest to the chest wall; the outer
         * third of that lung's depth range on the slice is peripheral.
         * Lesions against the mediastinum are deep and so central. */
        float side_min[3] = {1e30f, 1e30f, 1e30f}, side_max[3] = {0, 0, 0};
        if (any_lesion) {
            if (!any_body)
                for (size_t i = 0; i < plane; i++)
                    body2d[i] = seg->lungs[base + i] != 0;
            slice_depth(body2d, nx, ny, ct->spacing[0], ct->spacing[1], depth);
            for (size_t i = 0; i < plane; i++) {
                uint8_t l = seg->lungs[base + i];
                if (l && l < 3) {
                    side_min[l] = dmin(side_min[l], depth[i]);
                    side_max[l] = fmaxf(side_max[l], depth[i]);
                }
            }
        }
        if (seg->dense_behind)
            for (size_t i = 0; i < plane; i++)
                if (seg->dense_behind[base + i]) {
                    a->dense_n++;
                    a->dense_hu += covct_hu(ct, base + i);
                }
        sm->dense_behind_mm2 = (double)a->dense_n * pixel_mm2;
        for (size_t i = 0; i < plane; i++) {
            uint8_t l = seg->lungs[base + i];
            if (!l || l > 2)
                continue;
            a->lung_n[l]++;
            sm->lung_mm2 += pixel_mm2;
            double hu = covct_hu(ct, base + i);
            a->aerated += hu >= -950.0 && hu <= -700.0;
            uint8_t lobe = seg->lobes[base + i];
            if (lobe > COVCT_N_LOBES)
                lobe = 0;
            a->lobe_n[lobe]++;
            uint8_t c = seg->lesions[base + i];
            if (c != COVCT_LESION_GGO && c != COVCT_LESION_CONSOLIDATION)
                continue;
            a->cls_n[c]++;
            a->side_lesion[l]++;
            a->lobe_cls[lobe][c]++;
            sm->lesion_mm2 += pixel_mm2;
            sm->lobe_lesion_mm2[lobe] += pixel_mm2;
            if (depth[i] - side_min[l] <=
                PERIPHERAL_FRACTION * (side_max[l] - side_min[l]))
                a->peripheral++;
        }
    }
    covct_free(depth);
    covct_free(body2d);
    return 0;
}

covct_rc covct_measures_compute(const covct_volume *ct, const covct_seg *seg,
                                const int64_t *instance_numbers,
                                covct_measures *m, covct_error *err)
{
    memset(m, 0, sizeof *m);
    const uint32_t nz = ct->nz;
    double det = ct->affine[0][0] * (ct->affine[1][1] * ct->affine[2][2] -
                                     ct->affine[1][2] * ct->affine[2][1]) -
                 ct->affine[0][1] * (ct->affine[1][0] * ct->affine[2][2] -
                                     ct->affine[1][2] * ct->affine[2][0]) +
                 ct->affine[0][2] * (ct->affine[1][0] * ct->affine[2][1] -
                                     ct->affine[1][1] * ct->affine[2][0]);
    const double voxel_ml = fabs(det) / 1000.0;
    if (!(voxel_ml > 0))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "volume has a degenerate affine (voxel volume 0)");
    m->slices = covct_calloc(nz ? nz : 1, sizeof *m->slices);
    slice_acc *acc = covct_calloc(nz ? nz : 1, sizeof *acc);
    if (!m->slices || !acc) {
        covct_free(acc);
        covct_measures_free(m);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory for measures");
    }
    m->n_slices = nz;
    measure_job job = {ct, seg, instance_numbers, m, acc,
                       ct->spacing[0] * ct->spacing[1]};
    if (covct_morph_parallel(nz, measure_range, &job) != 0) {
        covct_free(acc);
        covct_measures_free(m);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory for measures");
    }
    uint64_t lung_n[3] = {0, 0, 0};
    uint64_t lobe_n[COVCT_N_LOBES + 1] = {0};
    uint64_t lobe_cls[COVCT_N_LOBES + 1][3];
    memset(lobe_cls, 0, sizeof lobe_cls);
    uint64_t cls_n[3] = {0, 0, 0}, side_lesion[3] = {0, 0, 0};
    uint64_t aerated = 0, peripheral = 0, dense_n = 0;
    double dense_hu = 0;
    for (uint32_t k = 0; k < nz; k++) {
        const slice_acc *a = &acc[k];
        dense_n += a->dense_n;
        dense_hu += a->dense_hu;
        for (int l = 0; l < 3; l++) {
            lung_n[l] += a->lung_n[l];
            cls_n[l] += a->cls_n[l];
            side_lesion[l] += a->side_lesion[l];
        }
        for (int lb = 0; lb <= COVCT_N_LOBES; lb++) {
            lobe_n[lb] += a->lobe_n[lb];
            for (int c = 0; c < 3; c++)
                lobe_cls[lb][c] += a->lobe_cls[lb][c];
        }
        aerated += a->aerated;
        peripheral += a->peripheral;
    }
    covct_free(acc);

    m->right_ml = (double)lung_n[COVCT_LUNG_RIGHT] * voxel_ml;
    m->left_ml = (double)lung_n[COVCT_LUNG_LEFT] * voxel_ml;
    m->lungs_ml = m->right_ml + m->left_ml;
    m->ggo_ml = (double)cls_n[COVCT_LESION_GGO] * voxel_ml;
    m->consolidation_ml = (double)cls_n[COVCT_LESION_CONSOLIDATION] * voxel_ml;
    m->lesion_ml = m->ggo_ml + m->consolidation_ml;
    m->dense_behind_ml = (double)dense_n * voxel_ml;
    m->dense_behind_hu = dense_n ? dense_hu / (double)dense_n : NAN;
    uint64_t lung_total = lung_n[1] + lung_n[2];
    uint64_t lesion_total = cls_n[1] + cls_n[2];
    m->involvement_pct =
        lung_total ? 100.0 * (double)lesion_total / (double)lung_total : 0;
    m->well_aerated_pct =
        lung_total ? 100.0 * (double)aerated / (double)lung_total : 0;
    for (int lb = 1; lb <= COVCT_N_LOBES; lb++) {
        covct_lobe_measures *L = &m->lobe[lb];
        L->volume_ml = (double)lobe_n[lb] * voxel_ml;
        L->ggo_ml = (double)lobe_cls[lb][COVCT_LESION_GGO] * voxel_ml;
        L->consolidation_ml =
            (double)lobe_cls[lb][COVCT_LESION_CONSOLIDATION] * voxel_ml;
        L->lesion_ml = L->ggo_ml + L->consolidation_ml;
        uint64_t ln = lobe_cls[lb][1] + lobe_cls[lb][2];
        L->involvement_pct =
            lobe_n[lb] ? 100.0 * (double)ln / (double)lobe_n[lb] : 0;
        L->score = covct_lobe_score(L->involvement_pct);
        m->ct_severity_score += L->score;
        m->lobes_involved += L->score >= 1;
    }
    if (lesion_total) {
        m->peripheral_pct = 100.0 * (double)peripheral / (double)lesion_total;
        uint64_t lower = lobe_cls[COVCT_LOBE_LLL][1] + lobe_cls[COVCT_LOBE_LLL][2] +
                         lobe_cls[COVCT_LOBE_RLL][1] + lobe_cls[COVCT_LOBE_RLL][2];
        m->lower_pct = 100.0 * (double)lower / (double)lesion_total;
        m->right_pct = 100.0 * (double)side_lesion[COVCT_LUNG_RIGHT] /
                       (double)lesion_total;
    }
    m->bilateral = true;
    for (int l = 1; l <= 2; l++) {
        double ml = (double)side_lesion[l] * voxel_ml;
        double lung_ml = (double)lung_n[l] * voxel_ml;
        double need = fmin(BILATERAL_MIN_ML, 0.01 * lung_ml);
        if (!(ml >= need && ml > 0 &&
              (double)side_lesion[l] >= BILATERAL_MIN_SHARE * (double)lesion_total))
            m->bilateral = false;
    }

    /* ---- RSNA category, with the features that led to it ---------------- */
    double ggo_frac = m->lesion_ml > 0 ? m->ggo_ml / m->lesion_ml : 0;
    const bool behind = m->dense_behind_ml >= COVCT_DENSE_BEHIND_MIN_ML;
    if (behind)
        add_reason(m, "%.0f ml of dense tissue behind the lower lungs, "
                      "outside the lung mask: consolidated dependent lung or "
                      "pleural effusion, left out of volumes and scores",
                   m->dense_behind_ml);
    if (behind && m->involvement_pct < NEGATIVE_MAX_PCT &&
        m->lesion_ml < NEGATIVE_MAX_ML) {
        m->category = COVCT_CAT_INDETERMINATE;
        add_reason(m, "not called negative although the lungs hold little "
                      "opacity (%.1f ml): the dense tissue behind them may "
                      "be consolidated lung",
                   m->lesion_ml);
        return COVCT_OK;
    }
    if (m->involvement_pct < NEGATIVE_MAX_PCT && m->lesion_ml < NEGATIVE_MAX_ML) {
        m->category = COVCT_CAT_NEGATIVE;
        add_reason(m, "opacities cover %.1f%% of the lungs (%.1f ml): below "
                      "the %.0f%% / %.0f ml needed to call pneumonia",
                   m->involvement_pct, m->lesion_ml, NEGATIVE_MAX_PCT,
                   NEGATIVE_MAX_ML);
        /* A scan read as negative for pneumonia has no involved lobe: the
         * scattered detections are below the method's detection limit,
         * and a radiologist would score them 0.  The volumes stay in the
         * report as measured. */
        if (m->ct_severity_score > 0)
            add_reason(m, "lobe scores set to 0: %.1f ml is within what "
                          "covct also finds in normal lungs (under %.0f%% "
                          "of the lungs and %.0f ml)",
                       m->lesion_ml, NEGATIVE_MAX_PCT, NEGATIVE_MAX_ML);
        for (int lb = 1; lb <= COVCT_N_LOBES; lb++)
            m->lobe[lb].score = 0;
        m->ct_severity_score = 0;
        m->lobes_involved = 0;
        return COVCT_OK;
    }
    add_reason(m, "opacities in %d of 5 lobes, %.1f%% of the lungs (%.1f ml)",
               m->lobes_involved, m->involvement_pct, m->lesion_ml);
    add_reason(m, "%s: %.0f%% ground glass, %.0f%% consolidation",
               ggo_frac >= 0.5 ? "ground-glass predominant"
                               : "consolidation predominant",
               100 * ggo_frac, 100 * (1 - ggo_frac));
    add_reason(m, "%s: %.0f%% of opacity volume in the outer third of the "
                  "lung",
               m->peripheral_pct >= 50 ? "peripheral distribution"
                                       : "not predominantly peripheral",
               m->peripheral_pct);
    add_reason(m, "%s (right lung %.0f%% of opacity volume)",
               m->bilateral ? "bilateral" : "unilateral", m->right_pct);
    add_reason(m, "%s: %.0f%% of opacity volume in the lower lobes",
               m->lower_pct >= 50 ? "lower-lobe predominance"
                                  : "no lower-lobe predominance",
               m->lower_pct);
    if (m->bilateral && m->peripheral_pct >= 50 && ggo_frac >= 0.5) {
        m->category = COVCT_CAT_TYPICAL;
        add_reason(m, "peripheral, bilateral ground-glass opacities are the "
                      "typical appearance of COVID-19 pneumonia (RSNA "
                      "consensus)");
    } else if (ggo_frac < 0.4 && m->lobes_involved <= 2 &&
               !(m->bilateral && m->peripheral_pct >= 50)) {
        m->category = COVCT_CAT_ATYPICAL;
        add_reason(m, "consolidation confined to %d lobe(s) without "
                      "ground-glass predominance is atypical for COVID-19 "
                      "(RSNA consensus: lobar or segmental consolidation)",
                   m->lobes_involved);
    } else {
        m->category = COVCT_CAT_INDETERMINATE;
        add_reason(m, "opacities without the typical peripheral, bilateral "
                      "ground-glass pattern: indeterminate (RSNA consensus)");
    }
    return COVCT_OK;
}

void covct_measures_free(covct_measures *m)
{
    if (!m)
        return;
    COVCT_FREE(m->slices);
    m->n_slices = 0;
}
