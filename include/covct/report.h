/*
 * covct report: what `covct analyze` writes for a radiologist and for
 * software: report.json (versioned schema, docs/report-json.md),
 * report.html (one self-contained page), PNG key images with overlays, and
 * the masks as NIfTI (lungs.nii.gz, lobes.nii.gz, lesions.nii.gz).
 */
#ifndef COVCT_REPORT_H
#define COVCT_REPORT_H

#include "covct/analysis.h"
#include "covct/core.h"
#include "covct/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the report.json schema; bumped on any incompatible change. */
#define COVCT_REPORT_SCHEMA "covct-report/1"

typedef struct covct_report_input {
    const char *source;          /* what was analysed (path), for the page */
    const covct_volume *ct;
    const covct_seg *seg;
    const covct_lung_info *lungs;
    const covct_measures *m;
    /* Optional study description from DICOM (may be NULL or ""). */
    const char *patient_id, *study_date, *series_description;
    double seconds;              /* analysis time, shown on the page */
    /* How lesions were found: "network" or "density" (NULL: density), and
     * for the network the model's name and file (may be NULL). */
    const char *lesion_method, *lesion_model, *lesion_model_file;
    /* Network: whether its lesions passed the density check
     * (covct_lesions_density_check). */
    bool density_check;
    /* Thick slices: opacity (ml) left out by covct_lesions_thick_slice_check
     * on the lungs' top and bottom surfaces (0 on thin slices). */
    double thick_slice_ml;
} covct_report_input;

/* Write every output into `outdir` (created if missing).  Files are
 * written atomically; on failure err names the file. */
covct_rc covct_report_write(const char *outdir, const covct_report_input *in,
                            covct_error *err);

/* The JSON alone, as a malloc'd NUL-terminated string (for tests and the
 * server of a later issue). */
covct_rc covct_report_json(const covct_report_input *in, char **out,
                           covct_error *err);

/* ---- DICOM results (docs/internals/dicom-results.md) -----------------------
 * The analysis as standard DICOM objects of the source study, for a PACS:
 *
 *   seg.dcm      Segmentation Storage (BINARY): right and left lung, the
 *                five lobes, ground-glass opacity and consolidation, one
 *                frame per non-empty slice and segment, each frame
 *                derived from (and referencing) its source CT image;
 *   sr.dcm       Comprehensive SR, TID 1500 Measurement Report: volumes,
 *                lobe involvement, CT severity score per lobe and total,
 *                RSNA category and its reasons, referencing the SEG;
 *   key-NN.dcm   Secondary Capture images of the key slices and the
 *                coronal overview, overlays and an "AI RESULT - TO BE
 *                CONFIRMED BY A RADIOLOGIST" banner burned in.
 *
 * Each object is a new series (new UIDs under 2.25) of the source study,
 * with the patient and study attributes copied from the source images.
 * `series` must be the series `in->ct` was loaded from (its slices in the
 * volume's k order); a NIfTI volume has no source images to reference and
 * cannot be written.  Refused (COVCT_ERR_UNSUPPORTED, nothing written)
 * when a source image lacks a SOP Instance UID, SOP Class UID, Study or
 * Series Instance UID, or (for the SEG) the Frame of Reference UID, and
 * (COVCT_ERR_ARG) when the input has no lungs to report. */
typedef struct covct_dicom_result {
    char *path;                 /* the file written */
    const char *kind;           /* "SEG", "SR" or "SC" (static) */
    char sop_class_uid[65];
    char sop_instance_uid[65];
    char series_uid[65];
} covct_dicom_result;

typedef struct covct_dicom_results {
    covct_dicom_result *r;
    size_t n;
} covct_dicom_results;

/* Write the objects into `outdir` (created if missing; earlier key-*.dcm
 * removed), each file atomically.  `out` may be NULL; otherwise it is
 * filled on success (free it with covct_dicom_results_free) and left
 * empty on failure. */
covct_rc covct_report_write_dicom(const char *outdir,
                                  const covct_report_input *in,
                                  const covct_series *series,
                                  covct_dicom_results *out, covct_error *err);
void covct_dicom_results_free(covct_dicom_results *res);

/* An RGB image (8-bit, row-major) as a PNG file, written atomically. */
covct_rc covct_png_write_rgb(const char *path, const uint8_t *rgb,
                             uint32_t width, uint32_t height,
                             covct_error *err);

#ifdef __cplusplus
}
#endif
#endif
