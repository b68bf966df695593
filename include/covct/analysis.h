/*
 * covct analysis: lungs, lobes, lesions and the measures a radiologist
 * reads on a chest CT of a COVID-19 suspect.
 *
 * Everything works on the CT grid of a covct_volume (HU, LPS affine; see
 * volume.h).  Label volumes are uint8, nx*ny*nz, x fastest, the same
 * layout as the CT.  The pipeline:
 *
 *   covct_lungs_segment()    body, airways, lungs (1 right, 2 left)
 *   covct_lobes_segment()    five lobes inside the lungs
 *   covct_lesions_segment()  ground glass and consolidation in the lungs
 *   covct_measures_compute() volumes, involvement, CT severity score,
 *                            distribution, RSNA category with reasons
 *
 * Each stage reads what the previous ones wrote into the covct_seg and
 * fills its own fields.  A stage may be replaced (the neural network of a
 * later issue replaces the lesion stage) as long as it keeps the labels.
 */
#ifndef COVCT_ANALYSIS_H
#define COVCT_ANALYSIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"
#include "covct/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Labels of lungs.nii.gz. */
enum { COVCT_LUNG_RIGHT = 1, COVCT_LUNG_LEFT = 2 };

/* Labels of lobes.nii.gz, as lungmask's LTRCLobes model numbers them. */
typedef enum covct_lobe {
    COVCT_LOBE_NONE = 0,
    COVCT_LOBE_LUL = 1, /* left upper lobe (with the lingula) */
    COVCT_LOBE_LLL = 2, /* left lower lobe */
    COVCT_LOBE_RUL = 3, /* right upper lobe */
    COVCT_LOBE_RML = 4, /* right middle lobe */
    COVCT_LOBE_RLL = 5  /* right lower lobe */
} covct_lobe;
#define COVCT_N_LOBES 5
/* "LUL", "LLL", "RUL", "RML", "RLL" for 1..5; "none" for 0. */
const char *covct_lobe_name(int lobe);

/* Labels of lesions.nii.gz. */
enum { COVCT_LESION_GGO = 1, COVCT_LESION_CONSOLIDATION = 2 };

/* Patient directions of the volume's voxel axes, from its affine: for
 * patient axis a (0 = x to the left, 1 = y to posterior, 2 = z to head),
 * axis[a] is the voxel axis (0 i, 1 j, 2 k) closest to it and sign[a] is
 * +1 when increasing that voxel index moves along +a, -1 otherwise. */
typedef struct covct_axes {
    int axis[3];
    int sign[3];
} covct_axes;
void covct_volume_axes(const covct_volume *v, covct_axes *out);

typedef struct covct_seg {
    uint32_t nx, ny, nz;
    uint8_t *body;    /* 1 inside the patient's body (incl. lungs) */
    uint8_t *airways; /* 1 trachea and main bronchi (not lung) */
    uint8_t *lungs;   /* COVCT_LUNG_RIGHT / COVCT_LUNG_LEFT */
    uint8_t *lobes;   /* covct_lobe */
    uint8_t *lesions; /* COVCT_LESION_GGO / COVCT_LESION_CONSOLIDATION */
    uint8_t *vessels; /* optional: 1 where the lesion stage saw a vessel */
    uint8_t *dense_behind; /* optional: 1 dense tissue behind the lungs
                              (covct_lungs_dense_behind; NULL when none) */
    bool body_ready;  /* body is final (covct_body_segment or the lungs) */
} covct_seg;

/* Allocate an empty segmentation for a volume (all label arrays zeroed;
 * vessels left NULL). */
covct_rc covct_seg_new(const covct_volume *ct, covct_seg **out,
                       covct_error *err);
void covct_seg_free(covct_seg *s);
/* Swap the in-plane axes of every label array, as
 * covct_volume_transpose_xy does for the CT (nx and ny swap).  On failure
 * (out of memory) s is unchanged. */
covct_rc covct_seg_transpose_xy(covct_seg *s, covct_error *err);

/* ---- lungs ---------------------------------------------------------------- */
typedef struct covct_lung_info {
    bool is_chest;        /* false: no plausible pair of lungs found */
    char why_not[256];    /* when !is_chest: what was missing, plainly */
    double right_ml, left_ml;
    double airway_ml;
    uint32_t z_first, z_last; /* slice range (k) that holds lung */
    /* Dense tissue behind the lower lungs that the lung mask leaves out
     * (consolidation of the dependent lower lobes, or pleural effusion),
     * ml (covct_lungs_dense_behind; its voxels: seg->dense_behind). */
    double dense_behind_ml;
    /* Of that tissue, what held air bronchograms and was taken into the
     * lung mask as airless lung (covct_lungs_dense_lung), ml; already in
     * right_ml / left_ml and not in dense_behind_ml. */
    double dense_lung_ml;
} covct_lung_info;

/* Dense tissue behind the lungs (docs/internals/lungs.md): soft tissue
 * (-300 to +150 HU) inside the rib cage, behind the back of the lung in
 * its column, in the lower two thirds of the lungs and the back half of
 * each slice's lungs, away from the midline, in regions reaching 15 mm
 * or more behind the lung: dependent consolidation too thick for the
 * lung mask, or pleural effusion (density cannot tell them apart).
 * *ml is its volume; `found` (optional, nx*ny*nz) marks its voxels (its
 * mean density is a measure: covct_measures.dense_behind_hu).
 * Needs a volume whose rows run along the patient's x and columns along
 * y (else *ml = 0). */
covct_rc covct_lungs_dense_behind(const covct_volume *ct, const covct_seg *seg,
                                  uint8_t *found, double *ml,
                                  covct_error *err);

/* What covct_lungs_dense_lung took into the lungs. */
typedef struct covct_dense_lung {
    double right_ml, left_ml; /* added to each lung */
    double bronchi_ml;        /* air bronchograms in all the dense tissue */
    size_t regions;           /* regions taken */
} covct_dense_lung;

/* Which of the dense tissue behind the lungs is lung (docs/internals/
 * lungs.md, "Air bronchograms"): a 3-D region of `found` (the mask of
 * covct_lungs_dense_behind) holding at least 0.2 ml of air bronchograms
 * (pockets of air of at most 80 mm2 in a slice, enclosed by the region)
 * is airless lung, consolidated or collapsed: effusion holds no air.
 * Such regions and their pockets join seg->lungs (the side they touch
 * most) and leave `found`. */
covct_rc covct_lungs_dense_lung(const covct_volume *ct, covct_seg *seg,
                                uint8_t *found, covct_dense_lung *out,
                                covct_error *err);

/* The body alone (the first step of covct_lungs_segment, which then keeps
 * it): largest connected region above -500 HU, holes filled per slice.
 * Lets the lesion network start before the lungs are found. */
covct_rc covct_body_segment(const covct_volume *ct, covct_seg *seg,
                            covct_error *err);

/* Body, airways and lungs.  Dense pathology (consolidation, ground glass)
 * against the pleura is kept inside the lung.  When the volume holds no
 * lungs (not a chest CT), returns COVCT_OK with info->is_chest false and
 * empty masks: the caller reports it instead of inventing lungs. */
covct_rc covct_lungs_segment(const covct_volume *ct, covct_seg *seg,
                             covct_lung_info *info, covct_error *err);

/* ---- lobes ---------------------------------------------------------------- */
covct_rc covct_lobes_segment(const covct_volume *ct, covct_seg *seg,
                             covct_error *err);

/* ---- lesions -------------------------------------------------------------- */
/* Density method: ground glass -700..-300 HU and consolidation -300..+100
 * HU (after light smoothing) inside the lungs, minus vessels (Hessian
 * vesselness) and airway walls. */
covct_rc covct_lesions_segment(const covct_volume *ct, covct_seg *seg,
                               covct_error *err);

/* Network method (the default of covct analyze; docs/internals/lesions-nn.md):
 * each axial slice with lung is windowed (L -400 / W 1350 HU, the grey
 * levels of the training slices: docs/internals/hu-window.md), cropped to
 * the body and oriented as the training slices (rows patient right to
 * left, columns anterior to posterior), and segmented by the lesion
 * network m (covct_nn_segment_slice).  Voxels of the lung mask whose
 * infection map reaches `threshold` (0..255; 128: probability 0.5, as
 * covct segment's masks) become ground glass or consolidation, whichever
 * of the two the network finds more probable. */
struct covct_nn_model;
typedef struct covct_lesions_nn_options {
    int threshold;
    int workers; /* slices segmented side by side; 0: one per core, at
                  * most 4 (each splits the cores left over) */
    bool density_check; /* default true: covct_lesions_density_check on
                         * the network's lesions */
} covct_lesions_nn_options;
void covct_lesions_nn_options_default(covct_lesions_nn_options *o);
covct_rc covct_lesions_segment_nn(const covct_volume *ct, covct_seg *seg,
                                  struct covct_nn_model *m,
                                  const covct_lesions_nn_options *opt,
                                  covct_error *err);

/* The same in two halves, so that the network runs while the lungs are
 * found: start needs the body only (covct_body_segment), segments in
 * worker threads every slice with air inside the body, and returns at
 * once; finish waits for the workers and writes seg->lesions, keeping
 * what lies in seg->lungs (so the lungs must be found by then); cancel
 * stops the workers and drops the job (e.g. not a chest CT).  ct, the
 * body and m must stay unchanged until finish or cancel. */
typedef struct covct_lesions_nn_job covct_lesions_nn_job;
covct_rc covct_lesions_nn_start(const covct_volume *ct, const covct_seg *seg,
                                struct covct_nn_model *m,
                                const covct_lesions_nn_options *opt,
                                covct_lesions_nn_job **job, covct_error *err);
covct_rc covct_lesions_nn_finish(covct_lesions_nn_job *job, covct_seg *seg,
                                 covct_error *err);
void covct_lesions_nn_cancel(covct_lesions_nn_job *job);

/* The density check of the network's lesions (docs/internals/
 * lesions-nn.md): lesion voxels whose HU, averaged with their 8 in-plane
 * neighbours, is below -700 (well-aerated lung) are dropped; lung of at
 * least -300 HU that lies 5 mm or more from aerated lung and 3 mm inside
 * the lung mask -- with the dense voxels up to 5 mm from such points --
 * becomes consolidation; and the rim of consolidation, lung of at least
 * -400 HU within 1.5 mm of it in the slice, becomes consolidation.  Run by
 * covct_lesions_nn_finish unless the options turn it off; stats (may be
 * NULL) count the voxels each rule changed. */
typedef struct covct_lesions_check_stats {
    size_t aerated_voxels; /* lesion voxels dropped as well aerated */
    size_t dense_voxels;   /* voxels made consolidation */
    size_t rim_voxels;     /* consolidation's partial-volume rim added */
} covct_lesions_check_stats;
covct_rc covct_lesions_density_check(const covct_volume *ct, covct_seg *seg,
                                     covct_lesions_check_stats *stats,
                                     covct_error *err);

/* Thick slices (spacing along z above COVCT_THICK_SLICE_MM): a slab that
 * cuts the lung's top or bottom surface obliquely (the diaphragm's dome,
 * the apex, the heart's lower border) mixes lung and soft tissue into
 * ground-glass density.  Lesion voxels of such slices with no lung
 * directly above or below them in the next slice are therefore dropped
 * (beyond the scan counts as lung).  Nothing changes on thinner slices.
 * dropped (may be NULL) counts the voxels.  Run by covct analyze after
 * either lesion method; docs/internals/lesions-nn.md, "Thick slices". */
#define COVCT_THICK_SLICE_MM 2.5
covct_rc covct_lesions_thick_slice_check(const covct_volume *ct, covct_seg *seg,
                                         size_t *dropped, covct_error *err);

/* ---- measures -------------------------------------------------------------- */
typedef enum covct_category {
    COVCT_CAT_NEGATIVE = 0,     /* negative for pneumonia */
    COVCT_CAT_TYPICAL,          /* typical appearance of COVID-19 */
    COVCT_CAT_INDETERMINATE,    /* indeterminate appearance */
    COVCT_CAT_ATYPICAL          /* atypical appearance */
} covct_category;
/* "negative", "typical", "indeterminate", "atypical". */
const char *covct_category_name(covct_category c);

typedef struct covct_lobe_measures {
    double volume_ml;
    double ggo_ml, consolidation_ml, lesion_ml;
    double involvement_pct; /* lesion / lobe volume x 100 */
    int score;              /* Pan et al. 0-5 */
} covct_lobe_measures;

typedef struct covct_slice_measures {
    double z_mm;            /* patient z of the slice centre (LPS z) */
    int64_t instance_number; /* from the DICOM file, -1 when unknown */
    double lung_mm2, lesion_mm2;
    double lobe_lesion_mm2[COVCT_N_LOBES + 1]; /* indexed by covct_lobe */
    double dense_behind_mm2; /* dense tissue behind the lungs (outside) */
} covct_slice_measures;

#define COVCT_MAX_REASONS 12
typedef struct covct_measures {
    double right_ml, left_ml, lungs_ml;
    covct_lobe_measures lobe[COVCT_N_LOBES + 1]; /* indexed by covct_lobe */
    double ggo_ml, consolidation_ml, lesion_ml;
    double involvement_pct;        /* lesion / lung volume x 100 */
    double well_aerated_pct;       /* lung voxels in -950..-700 HU */
    int ct_severity_score;         /* 0-25, sum of the lobe scores */
    /* Distribution of lesion volume. */
    double peripheral_pct;         /* outer third of the lung (by distance
                                      to the pleura) */
    double lower_pct;              /* in LLL + RLL */
    double right_pct;              /* in the right lung */
    bool bilateral;                /* lesion >= 1 ml in each lung */
    int lobes_involved;            /* lobes with score >= 1 */
    covct_category category;
    /* Dense tissue behind the lower lungs outside the lung mask (the
     * segmentation's dense_behind mask), ml and mean HU (NaN when none);
     * from COVCT_DENSE_BEHIND_MIN_ML on, the scan is never called negative
     * and the reasons say why. */
    double dense_behind_ml, dense_behind_hu;
    /* Plain-language features that led to the category. */
    char reasons[COVCT_MAX_REASONS][160];
    int n_reasons;
    /* One entry per slice of the volume (k order). */
    covct_slice_measures *slices;
    uint32_t n_slices;
} covct_measures;

/* Dense tissue behind the lungs from this volume on is reported (the
 * check finds 0.0 ml on COVID-CT-MD's three scans and on the standard
 * phantoms; docs/internals/lungs.md). */
#define COVCT_DENSE_BEHIND_MIN_ML 50.0

/* Pan et al., Radiology 2020: 0 none, 1 <5 %, 2 5-25 %, 3 26-50 %,
 * 4 51-75 %, 5 >75 % of the lobe involved. */
int covct_lobe_score(double involvement_pct);

/* instance_numbers (may be NULL): Instance Number of slice k, or -1. */
covct_rc covct_measures_compute(const covct_volume *ct, const covct_seg *seg,
                                const int64_t *instance_numbers,
                                covct_measures *m, covct_error *err);
void covct_measures_free(covct_measures *m);

#ifdef __cplusplus
}
#endif
#endif
