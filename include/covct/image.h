/*
 * covct image: the 8-bit 2-D pictures of the segmentation commands (CT
 * slices as JPEG or PNG, label masks as grayscale or palette PNG), read
 * into one byte per pixel and written back as grayscale PNG.
 *
 * The format is sniffed from the bytes (JPEG SOI, PNG signature), never
 * from a file name.  Two ways to read:
 *
 *   COVCT_IMAGE_GRAY   a picture, as luminance 0..255 (what Pillow's
 *                      Image.convert("L") gives, with the two exceptions
 *                      marked *):
 *                      - JPEG, gray or colour: libjpeg's JCS_GRAYSCALE
 *                        output (the Y of YCbCr; RGB JPEG by libjpeg's
 *                        weights); * for colour JPEG that is Pillow's
 *                        draft("L"), not convert("L") of its RGB decode;
 *                      - PNG gray: as is; gray+alpha: alpha dropped;
 *                        1/2/4-bit gray scaled to 0..255 by bit
 *                        replication; 16-bit samples: the high byte (*
 *                        Pillow clips 16-bit gray to 255 instead);
 *                      - PNG RGB/RGBA (alpha ignored) and palette (the
 *                        palette colour): ITU-R BT.601 luminance as Pillow
 *                        computes it, (19595 R + 38470 G + 7471 B + 32768)
 *                        >> 16, i.e. R*299/1000 + G*587/1000 + B*114/1000
 *                        rounded.
 *   COVCT_IMAGE_INDEX  a label image, values as stored:
 *                      - palette PNG: the palette indices (the colours are
 *                        ignored);
 *                      - grayscale PNG (with or without alpha, which is
 *                        dropped): the sample values unscaled (a 1-bit
 *                        mask gives 0/1; 16-bit samples must all be at
 *                        most 255);
 *                      - anything else (RGB PNG, JPEG) is refused: a label
 *                        image must not be a colour or lossy picture.
 *
 * Ancillary chunks (gamma, tRNS, ICC, ...) are ignored, as Pillow ignores
 * them when it converts.  Images larger than COVCT_IMAGE_MAX_SIDE on
 * either side are refused.
 */
#ifndef COVCT_IMAGE_H
#define COVCT_IMAGE_H

#include <stdint.h>

#include "covct/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest width or height read or written (16384 x 16384 = 256 MiB). */
#define COVCT_IMAGE_MAX_SIDE 16384u

enum {
    COVCT_IMAGE_GRAY = 0,   /* luminance of a picture */
    COVCT_IMAGE_INDEX = 1   /* stored values of a label image */
};

typedef struct covct_image {
    uint32_t width, height;
    uint8_t *pixels; /* width * height bytes, row-major, top row first */
} covct_image;

/* Decode a JPEG or PNG held in memory.  On success *out owns its pixels
 * (free with covct_image_free); on failure *out is zeroed. */
covct_rc covct_image_decode(const uint8_t *buf, size_t len, int mode,
                            covct_image *out, covct_error *err);

/* Read a file; errors name it. */
covct_rc covct_image_read(const char *path, int mode, covct_image *out,
                          covct_error *err);

/* Encode as an 8-bit grayscale PNG into memory (appended to out). */
covct_rc covct_image_encode_png(const covct_image *img, covct_buf *out,
                                covct_error *err);

/* Write an 8-bit grayscale PNG atomically. */
covct_rc covct_image_write_png(const char *path, const covct_image *img,
                               covct_error *err);

/* Free the pixels and zero the struct (NULL and zeroed images are fine). */
void covct_image_free(covct_image *img);

#ifdef __cplusplus
}
#endif
#endif
