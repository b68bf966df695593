/*
 * Internals of the analysis module, included only by src/analysis and its
 * tests: binary morphology on uint8 masks (x fastest, then y, then z, the
 * layout of covct_volume), shared by the lung, lobe and lesion stages.
 *
 * Masks are "set" where the byte is non-zero.  Every function works on
 * whole volumes of nx*ny*nz bytes; 2-D functions treat each slice (fixed
 * z) on its own and run slices on several threads.  Functions returning
 * covct_rc fail only with COVCT_ERR_NOMEM (and leave the mask in an
 * unspecified state then).
 */
#ifndef COVCT_ANALYSIS_INT_H
#define COVCT_ANALYSIS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "covct/analysis.h"
#include "covct/core.h"

/* Voxel i of a CT in HU, whatever its sample type. */
static inline double covct_hu(const covct_volume *ct, size_t i)
{
    if (ct->dtype == COVCT_DTYPE_FLOAT32)
        return ((const float *)ct->data)[i];
    return ((const int16_t *)ct->data)[i];
}

/* The same for filtering: voxels outside the scanner's field of view read
 * as air (-1024 HU), and padding values (-2048, -3024) are clamped to
 * -1024 so that they do not ring through a smoothing. */
static inline float covct_hu_filter(const covct_volume *ct, size_t i)
{
    float v = (float)covct_hu(ct, i);
    if (ct->outside && ct->outside[i])
        v = -1024.0f;
    return v < -1024.0f ? -1024.0f : v;
}

/* A box of voxels: its first voxel and its size along x, y, z; n voxels. */
typedef struct covct_box {
    size_t x0, y0, z0, nx, ny, nz, n;
} covct_box;

/* The bounding box of the set voxels of mask (nx*ny*nz), grown by pad_mm
 * on every side and cut to the volume; false when nothing is set. */
bool covct_mask_box(const uint8_t *mask, size_t nx, size_t ny, size_t nz,
                    const double spacing[3], double pad_mm, covct_box *b);

/* ---- threads -------------------------------------------------------------
 * Run fn over slices [0, nz) split in contiguous ranges, one per thread
 * (up to the number of cores, at most 16).  fn returns 0 on success, non-
 * zero when it could not allocate its scratch; the result is 0 only if
 * every range succeeded.  Each range allocates its own scratch, so no
 * per-voxel allocation happens. */
typedef int (*covct_morph_range_fn)(uint32_t z0, uint32_t z1, void *ctx);
int covct_morph_parallel(uint32_t nz, covct_morph_range_fn fn, void *ctx);
unsigned covct_morph_threads(void);

/* ---- connected components -------------------------------------------------
 * 2-D: label the set pixels of a w x h slice with 4-connectivity (conn8
 * false) or 8-connectivity, as 1..n in raster order of first pixel; 0 for
 * background.  `parent` is scratch of covct_morph_label2d_scratch(w, h)
 * uint32 values.  Returns n. */
size_t covct_morph_label2d_scratch(uint32_t w, uint32_t h);
uint32_t covct_morph_label2d(const uint8_t *m, uint32_t w, uint32_t h,
                             bool conn8, uint32_t *lab, uint32_t *parent);

/* 3-D with 6-connectivity (conn 6: faces; 2-D labelling 4-connected) or
 * 26-connectivity (conn 26: faces, edges and corners).  Memory stays small
 * (no uint32 label volume): the mask is stored as runs along x, runs are
 * joined with union-find, and labels are written out on demand
 * (covct_morph_cc3_slice, _relabel, _labels).  Labels are 1..n, ordered by
 * their first voxel in z, y, x order. */
typedef struct covct_cc3_stat {
    uint64_t size;            /* voxels */
    uint64_t sum[3];          /* sums of x, y, z: centroid = sum / size */
    uint32_t lo[3], hi[3];    /* bounding box, inclusive */
} covct_cc3_stat;

typedef struct covct_cc3 {
    uint32_t nx, ny, nz;
    int conn;
    uint32_t n;               /* number of components */
    covct_cc3_stat *stat;     /* [n + 1]; stat[0] unused */
    /* internal: the set voxels as runs [x0, x1) along x, row by row */
    size_t n_runs;
    uint32_t *row;            /* [ny * nz + 1]: first run of row y + ny*z */
    uint32_t *x0, *x1;
    uint32_t *lab;            /* label of each run */
} covct_cc3;

covct_rc covct_morph_cc3(const uint8_t *mask, uint32_t nx, uint32_t ny,
                         uint32_t nz, int conn, covct_cc3 *cc,
                         covct_error *err);
void covct_morph_cc3_free(covct_cc3 *cc);
/* 3-D labels of slice z into lab (nx*ny values). */
void covct_morph_cc3_slice(const covct_cc3 *cc, uint32_t z, uint32_t *lab);
/* out[v] = value[label(v)] for the labelled voxels, 0 elsewhere (out may
 * be the labelled mask itself; value has n + 1 entries). */
void covct_morph_cc3_relabel(const covct_cc3 *cc, const uint8_t *value,
                             uint8_t *out);
/* A full uint32 label volume (nx*ny*nz) for callers that can afford it. */
void covct_morph_cc3_labels(const covct_cc3 *cc, uint32_t *labels);

/* Keep only the largest 3-D component of mask (set to 1); *kept gets its
 * voxel count (0 when the mask was empty; may be NULL). */
covct_rc covct_morph_keep_largest(uint8_t *mask, uint32_t nx, uint32_t ny,
                                  uint32_t nz, int conn, uint64_t *kept,
                                  covct_error *err);

/* ---- hole filling ---------------------------------------------------------
 * 2-D: per slice, background pixels not 4-connected to the slice border
 * become `value`. */
void covct_morph_fill_holes_slice(uint8_t *m, uint32_t w, uint32_t h,
                                  uint8_t value, uint32_t *stack);
covct_rc covct_morph_fill_holes2d(uint8_t *mask, uint32_t nx, uint32_t ny,
                                  uint32_t nz, uint8_t value,
                                  covct_error *err);
/* 3-D: background voxels not 6-connected to the border of the volume
 * become 1.  With z_faces false the first and last slices do not count as
 * border (a cavity cut open by the scan range is still filled). */
covct_rc covct_morph_fill_holes3d(uint8_t *mask, uint32_t nx, uint32_t ny,
                                  uint32_t nz, bool z_faces,
                                  covct_error *err);

/* ---- distance transform ----------------------------------------------------
 * Exact 2-D Euclidean distance (Felzenszwalb-Huttenlocher), per slice, with
 * pixel spacing sx (along x) and sy (along y) in mm: for set pixels the
 * distance to the nearest unset pixel of the same slice, 0 for unset
 * pixels; a slice with no unset pixel gives FLT_MAX.  Pixels outside the
 * slice do not count as unset.  The distance is in-plane only (2-D per
 * slice): that is enough for the morphology below and keeps the memory at
 * one slice.  Scratch: covct_morph_edt2d_scratch(w, h) doubles. */
size_t covct_morph_edt2d_scratch(uint32_t w, uint32_t h);
void covct_morph_edt2d(const uint8_t *m, uint32_t w, uint32_t h, double sx,
                       double sy, float *out, double *scratch);
/* Whole volume, quantised to half millimetres and saturated at 255
 * (127.5 mm), so the result takes one byte per voxel. */
covct_rc covct_morph_edt2d_u8(const uint8_t *mask, uint32_t nx, uint32_t ny,
                              uint32_t nz, double sx, double sy,
                              uint8_t *out_half_mm, covct_error *err);

/* ---- erosion and dilation -------------------------------------------------
 * Disc of radius r mm, per slice (exact, through the distance transform).
 * Erosion treats pixels beyond the slice border as set. */
covct_rc covct_morph_erode2d(uint8_t *mask, uint32_t nx, uint32_t ny,
                             uint32_t nz, double sx, double sy, double r_mm,
                             covct_error *err);
covct_rc covct_morph_dilate2d(uint8_t *mask, uint32_t nx, uint32_t ny,
                              uint32_t nz, double sx, double sy, double r_mm,
                              covct_error *err);
/* Box of (2rx+1) x (2ry+1) x (2rz+1) voxels, separable.  Erosion treats
 * voxels beyond the border as set. */
covct_rc covct_morph_dilate_box(uint8_t *mask, uint32_t nx, uint32_t ny,
                                uint32_t nz, uint32_t rx, uint32_t ry,
                                uint32_t rz, covct_error *err);
covct_rc covct_morph_erode_box(uint8_t *mask, uint32_t nx, uint32_t ny,
                               uint32_t nz, uint32_t rx, uint32_t ry,
                               uint32_t rz, covct_error *err);

/* ---- 3-D closing -----------------------------------------------------------
 * Closing (dilation, then erosion) by a ball of radius r mm, exact
 * Euclidean and anisotropic (spacing sp[0..2] mm along x, y, z), through
 * the separable squared distance transform: a voxel is in the result when
 * no ball of radius r that contains it fits outside the mask.  Voxels
 * beyond the grid count as unset, so give the mask a margin of at least
 * r where the result matters at its border.  In place; the mask becomes
 * 0/1.  Memory: one float per voxel. */
covct_rc covct_morph_close_ball(uint8_t *mask, uint32_t nx, uint32_t ny,
                                uint32_t nz, const double sp[3], double r_mm,
                                covct_error *err);

#endif
