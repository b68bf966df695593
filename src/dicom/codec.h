/*
 * Pixel codecs, private to the dicom module.  Each decoder turns one
 * complete compressed frame (all fragments of the frame concatenated) into
 * raw samples:
 *
 *   - samples interleaved (colour-by-pixel), whatever the stream's layout;
 *   - each sample in f->out_bytes bytes (1, 2 or 4), native byte order;
 *   - values as coded in the stream; the caller masks to Bits Stored and
 *     sign-extends, so a decoder need not.
 *
 * dst has exactly rows * cols * samples * out_bytes bytes.  A decoder must
 * never write outside it, never read outside src, and must fail with
 * COVCT_ERR_CORRUPT (naming the stream offset) when the stream is damaged
 * or does not match the frame description in f (size, components,
 * precision).  A decoder that converts colour (YCbCr to RGB) sets
 * f->converted_rgb = 1.
 */
#ifndef COVCT_DICOM_CODEC_H
#define COVCT_DICOM_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"

typedef struct covct_codec_frame {
    uint32_t rows, cols;
    uint16_t samples;     /* 1 or 3 */
    uint16_t bits_alloc;  /* Bits Allocated of the data set */
    uint16_t bits_stored; /* Bits Stored of the data set */
    uint16_t pixel_rep;   /* 0 unsigned, 1 signed */
    uint16_t out_bytes;   /* 1, 2 or 4 */
    /* Photometric Interpretation in the data set ("YBR_FULL_422", ...). */
    const char *photometric;
    int converted_rgb;    /* out: decoder converted YCbCr to RGB */
} covct_codec_frame;

/* PS3.5 Annex G: DICOM RLE. */
covct_rc covct_codec_rle_decode(const uint8_t *src, size_t len,
                                covct_codec_frame *f, uint8_t *dst,
                                covct_error *err);

/* ITU-T T.81: baseline and extended (8 and 12 bit) sequential DCT, and
 * lossless process 14 (any selection value 1-7, precision 2-16). */
covct_rc covct_codec_jpeg_decode(const uint8_t *src, size_t len,
                                 covct_codec_frame *f, uint8_t *dst,
                                 covct_error *err);

/* ITU-T T.87 / ISO 14495-1: JPEG-LS lossless and near-lossless (CharLS). */
covct_rc covct_codec_jpegls_decode(const uint8_t *src, size_t len,
                                   covct_codec_frame *f, uint8_t *dst,
                                   covct_error *err);

/* ISO 15444-1: JPEG 2000 code stream or JP2 file (OpenJPEG). */
covct_rc covct_codec_j2k_decode(const uint8_t *src, size_t len,
                                covct_codec_frame *f, uint8_t *dst,
                                covct_error *err);

#endif
