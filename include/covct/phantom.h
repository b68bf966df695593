/*
 * covct phantom: a synthetic chest CT with exact ground truth, for tests
 * and for demonstrations.  Never patient data, and labelled as such in
 * every file it writes.
 *
 * The anatomy is an analytic model in patient millimetres (LPS: x to the
 * patient's left, y to posterior, z to head; the origin at the centre of
 * the chest), sampled at voxel centres:
 *
 *   air outside the body (-1000 HU); an elliptic body (soft tissue 40 HU)
 *   with a subcutaneous fat layer (-100 HU); ribs (cortex 700 HU, marrow
 *   250 HU), spine, sternum; heart, aorta and liver (40-55 HU); a stomach
 *   gas bubble under the left diaphragm (air that is not lung); trachea
 *   (18 mm lumen, 2 mm wall) dividing at the carina into two main bronchi;
 *   two lungs (parenchyma about -850 HU, denser posteriorly) with domed
 *   diaphragm surfaces; in each lung branching vessels (40 HU, radius 5 mm
 *   at the hilum tapering to about 1 mm) and small airways (air lumen,
 *   soft-tissue wall); smooth fissure surfaces dividing the lungs into the
 *   five lobes (left oblique; right oblique and horizontal), drawn as faint
 *   sheets; lesions: ground-glass blobs (-550..-450 HU) that keep the
 *   vessels running through them, and consolidations (0..+40 HU) that hide
 *   them.  Every lesion lies wholly in one lobe at least 5 mm from any
 *   fissure; some touch the chest wall (subpleural).
 *
 * The vessel trees and the lesions (place, shape, attenuation) are drawn
 * from `seed`; the same parameters give the same bytes on every machine.
 * A mild in-plane blur (kernel 1-2-1 in x and y) imitates partial volume
 * at edges; then Gaussian noise of `noise_hu`; voxels outside the
 * scanner's 450 mm field-of-view circle are -3024 HU padding and are
 * marked in ct->outside.
 *
 * Ground truth is what was painted, voxel by voxel, before blur and noise:
 *   truth->body     1 inside the body outline (lungs and airways included)
 *   truth->airways  1 in the lumen of the trachea and the two main bronchi
 *                   (their walls are body; the airways beyond the hilum
 *                   belong to the lungs, as lung segmentations count them)
 *   truth->lungs    COVCT_LUNG_RIGHT / COVCT_LUNG_LEFT, vessels, small
 *                   airways, fissures and lesions inside them included
 *   truth->lobes    covct_lobe of every lung voxel (a partition of lungs)
 *   truth->lesions  COVCT_LESION_GGO / COVCT_LESION_CONSOLIDATION; vessel
 *                   and small-airway voxels inside a ground-glass blob are
 *                   not lesion (a lesion segmentation subtracts vessels)
 * Volumes in covct_phantom_truth are exact voxel counts of these masks
 * times the voxel volume; a lesion the grid does not cover has 0 voxels.
 */
#ifndef COVCT_PHANTOM_H
#define COVCT_PHANTOM_H

#include <stdbool.h>
#include <stdint.h>

#include "covct/analysis.h"
#include "covct/core.h"
#include "covct/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Designed attenuation of the lesion classes (HU, before blur and noise);
 * each lesion takes one value in its class's range. */
#define COVCT_PHANTOM_GGO_HU_MIN (-550.0)
#define COVCT_PHANTOM_GGO_HU_MAX (-450.0)
#define COVCT_PHANTOM_CONS_HU_MIN 0.0
#define COVCT_PHANTOM_CONS_HU_MAX 40.0
/* Every lesion keeps at least this distance (mm) from every fissure. */
#define COVCT_PHANTOM_FISSURE_MARGIN_MM 5.0
/* Out-of-field padding value (HU) and the field-of-view diameter (mm). */
#define COVCT_PHANTOM_PADDING_HU (-3024)
#define COVCT_PHANTOM_FOV_DIAMETER_MM 450.0

#define COVCT_PHANTOM_MAX_LESIONS 16

typedef struct covct_phantom_params {
    /* Grid.  nx, ny, nz of 0 are derived: nx = ny = round(fov_mm /
     * pixel_mm), nz = round(length_mm / slice_mm).  The grid is centred on
     * centre_mm; slices are axial, i along +x, j along +y, k along +z
     * (k = 0 is the slice nearest the feet). */
    uint32_t nx, ny, nz;
    double pixel_mm;     /* in-plane spacing; default 1.4 */
    double slice_mm;     /* slice spacing and thickness; default 2.5 */
    double fov_mm;       /* in-plane extent when nx/ny are 0; 358.4 */
    double length_mm;    /* cranio-caudal extent when nz is 0; 300 */
    double centre_mm[3]; /* patient position of the grid centre; 0,0,0 */

    uint64_t seed;       /* vessel trees, lesions and noise; default 1 */
    double noise_hu;     /* standard deviation of the noise; default 12 */
    bool lesions;        /* the standard lesion set; default true */
    bool fissures;       /* draw fissures as -700 HU sheets; default true */

    /* Analytic check: when sphere_radius_mm > 0 the standard lesions are
     * replaced by one exact sphere (no irregularity) of class
     * sphere_class centred at sphere_centre_mm (all zero: the default
     * position (-80, 40, -30), inside the right lower lobe).  The sphere
     * must lie inside one lobe, inside the lung and 5 mm from fissures,
     * else covct_phantom_make() fails with COVCT_ERR_ARG. */
    double sphere_radius_mm;
    double sphere_centre_mm[3];
    int sphere_class;    /* default COVCT_LESION_CONSOLIDATION */

    /* Dependent consolidation, the pattern of severe COVID-19 and ARDS in
     * a patient lying on the back: when > 0 (at most 0.8), the posterior
     * `dependent` fraction of the lungs' front-to-back extent (the voxel
     * centres of the truth lung mask) is consolidated in both lower
     * lobes, behind a gently undulating surface (+-3 mm), vessels and
     * airways included; the standard
     * lesions of the lower lobes are left out (those of the upper and
     * middle lobes stay).  Two lesions in the truth, one per lower lobe.
     * Default 0. */
    double dependent;
} covct_phantom_params;

/* The defaults listed above: a 256 x 256 x 120 volume of 1.4 x 1.4 x 2.5
 * mm, seed 1, noise 12 HU, lesions and fissures on. */
void covct_phantom_params_default(covct_phantom_params *p);

typedef struct covct_phantom_lesion {
    int cls;               /* COVCT_LESION_GGO / COVCT_LESION_CONSOLIDATION */
    int lobe;              /* covct_lobe that holds every voxel of it */
    uint64_t voxels;       /* voxels of the truth mask */
    double volume_ml;      /* voxels x voxel volume */
    double centre_mm[3];   /* centroid of its truth voxels, LPS mm (the
                              designed centre when voxels is 0) */
    double radius_mm;      /* nominal radius (the equal-volume sphere of
                              the shape before clipping to the lung) */
    double hu;             /* designed attenuation before blur and noise */
    bool subpleural;       /* placed against the chest wall */
} covct_phantom_lesion;

typedef struct covct_phantom_truth {
    uint64_t seed;
    double voxel_ml;       /* volume of one voxel */
    int n_lesions;
    covct_phantom_lesion lesion[COVCT_PHANTOM_MAX_LESIONS];
    /* Totals of the truth masks, ml. */
    double ggo_ml, consolidation_ml, lesion_ml;
    double lobe_ml[COVCT_N_LOBES + 1];     /* indexed by covct_lobe */
    double lobe_ggo_ml[COVCT_N_LOBES + 1];
    double lobe_consolidation_ml[COVCT_N_LOBES + 1];
    double right_ml, left_ml, lungs_ml;
    double airway_ml, body_ml;
} covct_phantom_truth;

/* Make a phantom.  p may be NULL (defaults).  On success *ct (INT16 HU,
 * with ->outside) and *truth (see above) belong to the caller, who frees
 * them with covct_volume_free() and covct_seg_free(); t is filled.  truth
 * and t may be NULL when not wanted.  On failure *ct and *truth are NULL
 * and nothing is left allocated. */
covct_rc covct_phantom_make(const covct_phantom_params *p, covct_volume **ct,
                            covct_seg **truth, covct_phantom_truth *t,
                            covct_error *err);

/* Write ct as a DICOM CT Image Storage series, one explicit VR little
 * endian file per slice, into dir (created if missing; one level).  The
 * files say SYNTHETIC PHANTOM - NOT PATIENT DATA in the study and series
 * descriptions and carry Patient Name SYNTHETIC^PHANTOM, Patient ID
 * SYNTH-PHANTOM, Image Type DERIVED\SECONDARY\AXIAL.  UIDs are under 2.25
 * (PS3.5 B.2), made from a hash of the voxel data, so the same seed and
 * parameters give the same UIDs.  Instance Number counts from the head
 * (1 = the top slice), as scanners number an axial chest series; the file
 * names (IM00001.dcm ...) are in an order unrelated to position.  ct must
 * be INT16 with an axial, axis-aligned affine (as covct_phantom_make
 * gives). */
covct_rc covct_phantom_write_dicom(const covct_volume *ct, const char *dir,
                                   covct_error *err);

/* Write the ground truth into dir (created if missing): truth_lungs.nii.gz,
 * truth_lobes.nii.gz, truth_lesions.nii.gz (int16 labels as in analysis.h,
 * on the CT's grid and affine) and truth.json (lesions with class, lobe,
 * volume and centre; totals per class; lobe and lung volumes). */
covct_rc covct_phantom_write_truth(const covct_seg *truth,
                                   const covct_phantom_truth *t,
                                   const covct_volume *ct, const char *dir,
                                   covct_error *err);

#ifdef __cplusplus
}
#endif
#endif
