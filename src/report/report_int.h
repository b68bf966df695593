/* Internals of the report module; included only by the files in
 * src/report and the report tests.  The design is described in
 * docs/internals/report.md. */
#ifndef COVCT_REPORT_INT_H
#define COVCT_REPORT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "covct/analysis.h"
#include "covct/core.h"
#include "covct/report.h"
#include "covct/volume.h"

#ifndef COVCT_VERSION
#define COVCT_VERSION "0.1.0"
#endif

/* The AI notice, in the JSON and (in these words) on the page. */
#define COVCT_REPORT_AI_NOTICE \
    "AI-assisted result, to be confirmed by a radiologist"

/* Key images: at most this many axial slices, at least this far apart. */
#define COVCT_REPORT_MAX_KEY 6
#define COVCT_REPORT_MIN_KEY 4
#define COVCT_REPORT_KEY_GAP_MM 15.0

/* Lung window (W 1500, L -600), the usual setting for lung parenchyma. */
#define COVCT_REPORT_WINDOW_W 1500.0
#define COVCT_REPORT_WINDOW_L (-600.0)

/* True when the input describes a chest CT that has measures to show. */
int covct_report_has_measures(const covct_report_input *in);

/* Patient z (LPS, mm) of the centre of slice k, from m->slices when
 * present, else from the affine at the centre of the slice. */
double covct_report_slice_z(const covct_report_input *in, uint32_t k);

/* The key axial slices (k) in display order (head first): the slices with
 * the largest lesion area, COVCT_REPORT_KEY_GAP_MM apart; without lesions
 * the slice of largest lung area and the middles of the upper and lower
 * thirds of the lungs; without lungs the middle slice.  Returns how many
 * (0 only for an empty volume); ks holds COVCT_REPORT_MAX_KEY entries. */
int covct_report_pick_slices(const covct_report_input *in, uint32_t *ks);

/* Remove the files of dir named PREFIX*SUFFIX (with something between). */
void covct_report_remove_files(const char *dir, const char *prefix,
                               const char *suffix);

/* A rendered, PNG-encoded image. */
typedef struct covct_report_image {
    char file[64];        /* "key_axial_<k>.png" or "coronal.png" */
    int is_axial;
    uint32_t k;           /* axial: the slice */
    uint32_t width, height;
    uint8_t *png;         /* encoded PNG, covct_malloc'd */
    size_t png_len;
} covct_report_image;

typedef struct covct_report_images {
    covct_report_image img[COVCT_REPORT_MAX_KEY + 1]; /* axial..., coronal */
    int n;
} covct_report_images;

/* Render the key axial images and the coronal overview and encode them.
 * On failure everything is freed and *out is empty. */
covct_rc covct_report_images_make(const covct_report_input *in,
                                  covct_report_images *out, covct_error *err);
void covct_report_images_free(covct_report_images *im);

/* Render one image as RGB (covct_malloc'd, w*h*3): an axial slice k
 * (axial != 0) or the coronal overview.  Exposed for the tests. */
covct_rc covct_report_render(const covct_report_input *in, int axial,
                             uint32_t k, uint8_t **rgb, uint32_t *w,
                             uint32_t *h, covct_error *err);

/* Put a strip on top of an RGB image (w x *h, covct_malloc'd) with `text`
 * in white capitals on dark red, wrapped at spaces to the width, burned
 * into the pixels.  On success *rgb is replaced (the old buffer freed) and
 * *h grows by the strip; on failure both are unchanged. */
covct_rc covct_report_banner(uint8_t **rgb, uint32_t w, uint32_t *h,
                             const char *text, covct_error *err);

/* PNG bytes of an 8-bit RGB image appended to `out`. */
covct_rc covct_png_encode_rgb(const uint8_t *rgb, uint32_t width,
                              uint32_t height, covct_buf *out,
                              covct_error *err);

/* Standard base64 (RFC 4648 section 4, with padding) of n bytes appended
 * to `out` (no NUL). */
covct_rc covct_base64_append(covct_buf *out, const uint8_t *p, size_t n,
                             covct_error *err);

/* The HTML page as a covct_malloc'd NUL-terminated string. */
covct_rc covct_report_html(const covct_report_input *in,
                           const covct_report_images *im, char **out,
                           covct_error *err);

#endif
