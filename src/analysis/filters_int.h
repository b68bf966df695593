/*
 * Private filters of the analysis module: separable Gaussian smoothing in
 * millimetres, Frangi vesselness, Euclidean distance transform, and a
 * small parallel-for over pthreads.  Only src/analysis/ includes this.
 *
 * Volumes are float32, nx*ny*nz, x fastest (the CT layout); `spacing` is
 * the voxel size in mm along x, y, z.  `threads` 0 means "as many as the
 * machine has" (covct_filter_threads()).
 */
#ifndef COVCT_ANALYSIS_FILTERS_INT_H
#define COVCT_ANALYSIS_FILTERS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"

/* Number of worker threads to use: online cores, capped at 16. */
unsigned covct_filter_threads(void);

/* Run fn(ctx, i, tid) for i in [0, n) on up to `threads` threads (0:
 * covct_filter_threads()), dynamic scheduling one index at a time (give
 * it slices or rows).  tid < the resolved thread count, so callers can
 * keep per-thread scratch.  If a thread cannot be started its share runs
 * on the others; never fails. */
typedef void (*covct_filter_task)(void *ctx, size_t i, unsigned tid);
void covct_filter_parallel(size_t n, covct_filter_task fn, void *ctx,
                           unsigned threads);

/* Separable Gaussian with standard deviation sigma_mm[a] along axis a (0
 * leaves that axis alone).  The kernel is Lindeberg's discrete Gaussian
 * (e^-t I_n(t), t = sigma^2 in voxels^2) below 2 voxels, where a sampled
 * Gaussian would have the wrong variance, and the sampled normalised
 * Gaussian above; truncated at 4 sigma + 1 voxel and renormalised, so the
 * kernel sums to 1 and its variance is sigma^2 to better than 0.1 %.
 * Edges replicate the border voxel.  src may equal dst; tmp is nx*ny*nz
 * floats of scratch distinct from both. */
covct_rc covct_filter_gaussian(const float *src, float *dst, float *tmp,
                               size_t nx, size_t ny, size_t nz,
                               const double spacing[3],
                               const double sigma_mm[3], unsigned threads,
                               covct_error *err);

/* Frangi et al., MICCAI 1998, "Multiscale vessel enhancement filtering",
 * for bright tubes on a dark background.  At each scale s the image is
 * smoothed to total standard deviation s (mm, isotropic), the Hessian is
 * taken by central differences in mm and normalised by s^2, and with its
 * eigenvalues ordered |l1| <= |l2| <= |l3|:
 *   V = 0                                    if l2 >= 0 or l3 >= 0
 *   V = (1 - exp(-Ra^2/2a^2)) exp(-Rb^2/2b^2) (1 - exp(-S^2/2c^2))
 *   Ra = |l2|/|l3|, Rb = |l1|/sqrt(|l2 l3|), S = sqrt(l1^2+l2^2+l3^2).
 * out[i] = max over scales of V where where[i] != 0, 0 elsewhere.
 * With max_offset > 0, V is set to 0 where |grad f| / |l2| -- the distance
 * to the centre of curvature of the cross-section, which is the distance
 * to the axis inside a tube but the full radius at the rim of a blob --
 * exceeds max_offset * s: the rim of a sphere larger than the scale
 * otherwise looks exactly like a tube (two equal tangential curvatures,
 * none across the rim).  best (may be NULL) gets 1 + the index of the
 * scale that gave the maximum, 0 where V is 0.
 * `img` already carries an isotropic Gaussian of sigma0_mm (0 for none);
 * scales must be increasing and larger than sigma0_mm. */
typedef struct covct_vesselness_params {
    double alpha;   /* plate vs line (Ra); Frangi: 0.5 */
    double beta;    /* blob vs line (Rb); Frangi: 0.5 */
    double c;       /* structureness scale, image units (HU) */
    double max_offset; /* in units of the scale; 0: no offset test */
    double sigma0_mm;
    const double *scales_mm;
    int n_scales;
} covct_vesselness_params;

covct_rc covct_filter_vesselness(const float *img, size_t nx, size_t ny,
                                 size_t nz, const double spacing[3],
                                 const covct_vesselness_params *p,
                                 const uint8_t *where, float *out,
                                 uint8_t *best, unsigned threads,
                                 covct_error *err);

/* Vesselness of one Hessian (mm units, already scale-normalised); the
 * same formula as above, exposed for tests. */
double covct_filter_frangi(const double h[6], double alpha, double beta,
                           double c);

/* Eigenvalues of the symmetric 3x3 matrix (h[0] xx, h[1] yy, h[2] zz,
 * h[3] xy, h[4] xz, h[5] yz) by the closed-form trigonometric method
 * (Smith, CACM 1961), sorted by increasing absolute value. */
void covct_filter_eig3(const double h[6], double ev[3]);

/* Squared Euclidean distance in mm^2 from each voxel to the nearest voxel
 * with feature[i] != 0 (0 on features), by the separable lower-envelope
 * method of Felzenszwalb and Huttenlocher (Theory of Computing 2012) with
 * the anisotropic spacing.  With no feature voxel at all every value is
 * COVCT_FILTER_FAR. */
#define COVCT_FILTER_FAR 1e20f
/* The generalised transform, in place: d[i] <- min_j |i - j|^2 + d[j]
 * (mm^2), where d holds offsets on entry (0 on features, COVCT_FILTER_FAR
 * elsewhere gives the plain transform; a per-seed offset R^2max - R^2
 * turns "inside any seed's ball of radius R" into d <= R^2max). */
covct_rc covct_filter_edt_sq_inplace(float *d, size_t nx, size_t ny,
                                     size_t nz, const double spacing[3],
                                     unsigned threads, covct_error *err);
covct_rc covct_filter_edt_sq(const uint8_t *feature, size_t nx, size_t ny,
                             size_t nz, const double spacing[3], float *out,
                             unsigned threads, covct_error *err);

#endif
