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
} covct_report_input;

/* Write every output into `outdir` (created if missing).  Files are
 * written atomically; on failure err names the file. */
covct_rc covct_report_write(const char *outdir, const covct_report_input *in,
                            covct_error *err);

/* The JSON alone, as a malloc'd NUL-terminated string (for tests and the
 * server of a later issue). */
covct_rc covct_report_json(const covct_report_input *in, char **out,
                           covct_error *err);

/* An RGB image (8-bit, row-major) as a PNG file, written atomically. */
covct_rc covct_png_write_rgb(const char *path, const uint8_t *rgb,
                             uint32_t width, uint32_t height,
                             covct_error *err);

#ifdef __cplusplus
}
#endif
#endif
