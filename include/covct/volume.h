/*
 * covct volume: a 3-D CT volume in Hounsfield units with its patient
 * geometry; assembly from DICOM series; NIfTI-1 input and output.
 *
 * Geometry convention: `affine` maps a voxel index (i, j, k, 1) -- i along
 * a row (column index), j down the columns (row index), k across slices --
 * to DICOM patient coordinates in millimetres, LPS (x to the patient's
 * left, y to posterior, z to head).  NIfTI files are RAS; the NIfTI code
 * flips the first two axes on the way in and out.
 */
#ifndef COVCT_VOLUME_H
#define COVCT_VOLUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum covct_dtype {
    COVCT_DTYPE_INT16 = 0, /* HU as integers: the usual CT case */
    COVCT_DTYPE_FLOAT32    /* non-integer rescale, or read from float NIfTI */
} covct_dtype;

/* No tissue or air is below this: the series reader marks such voxels
 * outside (the out-of-field fills vendors use, -2048 and -3024 HU). */
#define COVCT_OUTSIDE_HU (-1500.0)

typedef struct covct_volume {
    uint32_t nx, ny, nz;  /* columns, rows, slices */
    covct_dtype dtype;
    void *data;           /* nx*ny*nz values, x fastest, then y, then z */
    /* Optional, may be NULL: 1 where the voxel is padding or outside the
     * scanner's field of view (Pixel Padding Value, or below
     * COVCT_OUTSIDE_HU: -2048, -3024). */
    uint8_t *outside;
    double spacing[3];    /* mm between voxel centres along i, j, k */
    double affine[4][4];  /* voxel index -> LPS mm (see above) */
} covct_volume;

/* Allocate an nx*ny*nz volume of `dtype`, zero-filled, identity geometry. */
covct_rc covct_volume_new(uint32_t nx, uint32_t ny, uint32_t nz,
                          covct_dtype dtype, covct_volume **out,
                          covct_error *err);
void covct_volume_free(covct_volume *v);
size_t covct_volume_voxels(const covct_volume *v);
/* Value of one voxel as a double (no bounds check beyond an assert). */
double covct_volume_get(const covct_volume *v, uint32_t x, uint32_t y,
                        uint32_t z);
/* Swap the in-plane axes i and j of every slice (data, outside mask,
 * spacing, affine columns): the same patient geometry, stored the other
 * way round; twice is the identity.  On failure (out of memory) v is
 * unchanged. */
covct_rc covct_volume_transpose_xy(covct_volume *v, covct_error *err);
/* out[z][i][j] = in[z][j][i] for nz planes of ny rows of nx elements of
 * `size` bytes (1, 2 or 4); out holds nz planes of nx rows of ny. */
void covct_planes_transpose(const void *in, void *out, uint32_t nx,
                            uint32_t ny, uint32_t nz, size_t size);

/* ---- NIfTI-1 (.nii, .nii.gz), single file, little endian on write ------ */
/* Write with qform and sform both set to the volume's RAS affine
 * (qform_code = sform_code = 1, scanner anatomical).  ".gz" suffix means
 * gzip compression. */
covct_rc covct_nifti_write(const covct_volume *v, const char *path,
                           covct_error *err);
/* The same for a label map on v's grid (its size, spacing and affine; its
 * samples are not read): one byte per voxel, datatype uint8 (2). */
covct_rc covct_nifti_write_labels(const covct_volume *grid,
                                  const uint8_t *labels, const char *path,
                                  covct_error *err);
/* Read a NIfTI-1 file (either endianness, gzip or not).  The geometry is
 * taken from the sform when sform_code > 0, else from the qform, else from
 * pixdim alone.  Data types int8/uint8/int16/uint16/int32/float32/float64
 * are accepted; scl_slope/scl_inter are applied; integral results that fit
 * in int16 give an INT16 volume, others FLOAT32. */
covct_rc covct_nifti_read(const char *path, covct_volume **out,
                          covct_error *err);
/* The same from memory (.nii bytes, or .nii.gz bytes: gzip is recognised
 * by its magic).  `data` is only read; the caller keeps it.  On failure
 * *out is NULL and err names the field that was wrong. */
covct_rc covct_nifti_parse(const uint8_t *data, size_t len,
                           covct_volume **out, covct_error *err);

/* ---- DICOM series to volume --------------------------------------------- */
typedef struct covct_series covct_series;
typedef struct covct_series_set covct_series_set;

/* Scan a file or folder (recursively), parse headers, group the files into
 * series: by Series Instance UID, then by orientation and image size, so a
 * scout or a second reconstruction in the same folder becomes its own
 * series.  Files that are not DICOM are counted, not fatal. */
covct_rc covct_series_scan(const char *path, covct_series_set **out,
                           covct_error *err);
void covct_series_set_free(covct_series_set *s);
size_t covct_series_set_count(const covct_series_set *s);
covct_series *covct_series_set_at(const covct_series_set *s, size_t i);
/* Files seen that were not DICOM or could not be parsed, with reasons. */
size_t covct_series_set_skipped(const covct_series_set *s);
const char *covct_series_set_skipped_report(const covct_series_set *s);
/* The series most likely to be the diagnostic CT volume: the most slices
 * among axial CT series; NULL if none. */
covct_series *covct_series_set_best(const covct_series_set *s);

typedef struct covct_series_summary {
    char series_uid[65];
    char study_uid[65];
    char modality[17];
    char description[65];
    char patient_name[130]; /* UTF-8, after Specific Character Set */
    char patient_id[65];
    char study_date[17];
    char series_number[13];
    uint32_t n_files;
    uint32_t n_slices;    /* after removing duplicates; frames count here */
    uint32_t rows, cols;
    double pixel_spacing[2];   /* row spacing, column spacing (mm) */
    double slice_spacing;      /* median distance between slice centres */
    double slice_thickness;    /* (0018,0050) of the first slice */
    double gantry_tilt_deg;    /* angle between slice normal and stacking */
    char transfer_syntax[65];
} covct_series_summary;

void covct_series_get_summary(const covct_series *s,
                              covct_series_summary *out);
/* Problems found (gaps, duplicates, varying spacing, tilt, mixed sizes),
 * one per line; "" when none. */
const char *covct_series_problems(const covct_series *s);

/* Number of slices of the volume covct_series_load() builds, and the
 * Instance Number (0020,0013) of each, in slice (k) order; -1 where a file
 * has none.  `out` holds covct_series_slice_count() values. */
size_t covct_series_slice_count(const covct_series *s);
void covct_series_instance_numbers(const covct_series *s, int64_t *out);

/* Where slice k of that volume came from, for objects that reference the
 * source images (DICOM SEG, SR, key images; src/report/report-dicom.c).
 * The strings point into the series and stay valid until its set is
 * freed; "" where the file had no such attribute.  Returns 0 (and zeroes
 * *out) when k is out of range. */
typedef struct covct_series_slice_ref {
    const char *path;             /* the file */
    uint32_t frame;               /* 0-based frame in that file */
    uint32_t n_frames;            /* frames in the file (1: single-frame) */
    const char *sop_class_uid;    /* (0008,0016) */
    const char *sop_instance_uid; /* (0008,0018) */
    const char *series_uid;       /* (0020,000E) */
    const char *study_uid;        /* (0020,000D) */
    const char *frame_of_ref_uid; /* (0020,0052) */
    bool has_position, has_orientation;
    double position[3];    /* Image Position (Patient), LPS mm */
    double orientation[6]; /* Image Orientation (Patient) */
    double pixel_spacing[2]; /* row spacing, column spacing (mm) */
    double thickness;      /* Slice Thickness, 0 when absent */
    int64_t instance_number; /* -1 when absent */
} covct_series_slice_ref;
int covct_series_slice_ref_get(const covct_series *s, size_t k,
                               covct_series_slice_ref *out);

typedef void (*covct_progress_fn)(double fraction, const char *what,
                                  void *user);

/* Decode and stack the series into a HU volume.  Uses up to `threads`
 * threads (0 = number of cores).  `progress` may be NULL. */
covct_rc covct_series_load(const covct_series *s, unsigned threads,
                           covct_progress_fn progress, void *user,
                           covct_volume **out, covct_error *err);

/* Shortcut: scan `path`, pick the best series and load it. */
covct_rc covct_volume_load_path(const char *path, unsigned threads,
                                covct_volume **out, covct_error *err);

#ifdef __cplusplus
}
#endif
#endif
