/*
 * Internals of covct's ITU-T T.81 | ISO/IEC 10918-1 (JPEG) decoding, private
 * to src/dicom.  codec-jpeg.c parses the markers up to the first scan with
 * covct_codec_t81_probe() and dispatches: 8-bit sequential DCT goes to
 * libjpeg-turbo, 12-bit sequential DCT and lossless (process 14) go to the
 * decoder in jpeg-t81.c, which is declared here.  docs/internals/jpeg.md
 * explains why both exist.
 *
 * The own decoder works in two steps so that tests can look at each
 * component at its own size: covct_codec_t81_decode() fills one plane per
 * component, covct_codec_t81_output() upsamples, converts colour and writes
 * interleaved samples.
 */
#ifndef COVCT_DICOM_JPEG_T81_INT_H
#define COVCT_DICOM_JPEG_T81_INT_H

#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"

/* T.81 B.2.2 allows Nf up to 255; DICOM frames have 1 or 3 samples, and the
 * compliance streams of ITU-T T.83 use 4.  The own decoder stops at 4. */
#define COVCT_T81_MAX_COMPONENTS 4

/* What the markers before the first SOS say (T.81 B.2.2, JFIF, Adobe). */
typedef struct covct_t81_info {
    uint8_t sof;          /* second byte of the SOFn marker, 0xC0 ... 0xCF */
    size_t sof_offset;    /* stream offset of that marker */
    uint8_t precision;    /* P */
    uint16_t rows;        /* Y; 0 means a DNL segment defines it (B.2.5) */
    uint16_t cols;        /* X */
    uint16_t ncomp;       /* Nf; only the first 4 components are described */
    uint8_t comp_id[COVCT_T81_MAX_COMPONENTS];
    uint8_t h[COVCT_T81_MAX_COMPONENTS], v[COVCT_T81_MAX_COMPONENTS];
    uint8_t jfif;            /* an APP0 "JFIF" segment was seen */
    uint8_t adobe;           /* an APP14 "Adobe" segment was seen ... */
    uint8_t adobe_transform; /* ... with this colour transform code */
} covct_t81_info;

/* Parse the markers from SOI up to the first SOS (or EOI).  Fails with
 * COVCT_ERR_CORRUPT when there is no SOI, a segment overruns the stream, or
 * no SOF precedes the first scan. */
covct_rc covct_codec_t81_probe(const uint8_t *src, size_t len,
                               covct_t81_info *info, covct_error *err);

/* "SOF2 (progressive DCT, Huffman)" and so on, for messages. */
const char *covct_codec_t81_sof_name(uint8_t marker);

/* One decoded component at its own (possibly subsampled) size. */
typedef struct covct_t81_plane {
    uint16_t *px;          /* h rows of `stride` samples, w of them valid */
    uint32_t w, h, stride; /* w = ceil(X * H / Hmax), h likewise (A.1.1) */
    uint8_t hs, vs;        /* sampling factors H and V */
    uint8_t pt;            /* lossless: point transform Pt still to apply */
} covct_t81_plane;

typedef struct covct_t81_image {
    covct_t81_info info;
    uint32_t rows, cols;   /* frame size, rows taken from DNL if Y = 0 */
    int lossless;          /* SOF3: samples are replicated, never filtered */
    uint8_t hmax, vmax;
    covct_t81_plane comp[COVCT_T81_MAX_COMPONENTS];
} covct_t81_image;

/* Decode a whole SOF0/SOF1 (8 or 12 bit) or SOF3 (2 to 16 bit) stream with
 * covct's own decoder.  rows_hint is the number of lines when the frame
 * header says Y = 0 (lines given by DNL); 0 if unknown.  On success the
 * image owns its planes (free with covct_codec_t81_image_free); on failure
 * nothing is left allocated.  Other SOF types give COVCT_ERR_UNSUPPORTED. */
covct_rc covct_codec_t81_decode(const uint8_t *src, size_t len,
                                uint32_t rows_hint, covct_t81_image *img,
                                covct_error *err);

/* Free the planes; accepts a zeroed or already freed image. */
void covct_codec_t81_image_free(covct_t81_image *img);

/* Write the image as interleaved samples, each in out_bytes (1, 2 or 4)
 * native-endian bytes: rows * cols * ncomp * out_bytes bytes, which must be
 * exactly dst_len.  Subsampled components are upsampled as libjpeg does
 * (fancy triangle filter for 2:1 DCT cases, replication otherwise);
 * ycc_to_rgb converts a 3-component image from YCbCr (JFIF, T.871) to RGB. */
covct_rc covct_codec_t81_output(const covct_t81_image *img, int ycc_to_rgb,
                                unsigned out_bytes, uint8_t *dst,
                                size_t dst_len, covct_error *err);

#endif
