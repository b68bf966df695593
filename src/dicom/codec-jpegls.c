/*
 * JPEG-LS (ITU-T T.87 / ISO 14495-1) frames through CharLS's C API.
 *
 * DICOM transfer syntaxes 1.2.840.10008.1.2.4.80 (lossless) and .4.81
 * (near-lossless), PS3.5 A.4.3.  CharLS hands back samples of 1 byte
 * (precision 2-8) or 2 bytes (9-16) in native order, pixel-interleaved for
 * line- and sample-interleaved scans and planar (one plane per component)
 * for non-interleaved scans; this file turns that into the layout codec.h
 * promises.
 *
 * CharLS is only asked to decode after its frame header has been checked
 * against the data set, and into a buffer whose size we computed ourselves:
 * a hostile header can neither make it allocate nor write past dst.
 */
#include <inttypes.h>
#include <string.h>

#include <charls/charls.h>

#include "dicom/codec.h"

/* Bytes per row x col x sample product for f, or 0 with err set. */
static covct_rc frame_bytes(const covct_codec_frame *f, size_t sample_bytes,
                            size_t *out, covct_error *err)
{
    size_t n;
    if (!covct_mul_size(f->rows, f->cols, &n) ||
        !covct_mul_size(n, f->samples, &n) ||
        !covct_mul_size(n, sample_bytes, &n))
        return COVCT_ERR(err, COVCT_ERR_LIMIT,
                         "JPEG-LS: frame %" PRIu32 " x %" PRIu32 " x %u "
                         "overflows size_t", f->rows, f->cols, f->samples);
    *out = n;
    return COVCT_OK;
}

static covct_rc check_frame_arg(const covct_codec_frame *f, covct_error *err)
{
    if (f->rows == 0 || f->cols == 0 ||
        (f->samples != 1 && f->samples != 3) ||
        (f->out_bytes != 1 && f->out_bytes != 2 && f->out_bytes != 4) ||
        f->bits_alloc == 0 || f->bits_alloc > 32)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "JPEG-LS: bad frame description: %" PRIu32 " x %"
                         PRIu32 ", %u samples, %u bits allocated, "
                         "%u output bytes", f->rows, f->cols, f->samples,
                         f->bits_alloc, f->out_bytes);
    return COVCT_OK;
}

/* CharLS error codes that mean "valid JPEG-LS we cannot handle" rather
 * than "damaged stream". */
static covct_rc map_errc(charls_jpegls_errc ec)
{
    switch (ec) {
    case CHARLS_JPEGLS_ERRC_NOT_ENOUGH_MEMORY:
        return COVCT_ERR_NOMEM;
    case CHARLS_JPEGLS_ERRC_PARAMETER_VALUE_NOT_SUPPORTED:
    case CHARLS_JPEGLS_ERRC_BIT_DEPTH_FOR_TRANSFORM_NOT_SUPPORTED:
    case CHARLS_JPEGLS_ERRC_COLOR_TRANSFORM_NOT_SUPPORTED:
    case CHARLS_JPEGLS_ERRC_ENCODING_NOT_SUPPORTED:
    case CHARLS_JPEGLS_ERRC_JPEGLS_PRESET_EXTENDED_PARAMETER_TYPE_NOT_SUPPORTED:
        return COVCT_ERR_UNSUPPORTED;
    default:
        return COVCT_ERR_CORRUPT;
    }
}

static covct_rc charls_fail(covct_error *err, charls_jpegls_errc ec,
                            const char *step, size_t len)
{
    const char *msg = charls_get_error_message(ec);
    return COVCT_ERR(err, map_errc(ec),
                     "JPEG-LS frame of %zu bytes: %s: CharLS error %d: %s",
                     len, step, (int)ec, msg ? msg : "(no message)");
}

static void put_sample(uint8_t *p, unsigned out_bytes, uint32_t v)
{
    if (out_bytes == 1) {
        *p = (uint8_t)v;
    } else if (out_bytes == 2) {
        uint16_t s = (uint16_t)v;
        memcpy(p, &s, 2);
    } else {
        memcpy(p, &v, 4);
    }
}

static uint32_t get_sample(const uint8_t *p, unsigned in_bytes)
{
    if (in_bytes == 1)
        return *p;
    uint16_t s;
    memcpy(&s, p, 2);
    return s;
}

covct_rc covct_codec_jpegls_decode(const uint8_t *src, size_t len,
                                   covct_codec_frame *f, uint8_t *dst,
                                   covct_error *err)
{
    covct_rc rc = COVCT_OK;
    charls_jpegls_decoder *dec = NULL;
    uint8_t *tmp = NULL;
    uint8_t *padded = NULL;

    if (!f || !dst || (!src && len))
        return COVCT_ERR(err, COVCT_ERR_ARG, "JPEG-LS: NULL argument");
    rc = check_frame_arg(f, err);
    if (rc)
        return rc;
    f->converted_rgb = 0;
    if (len < 4)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "JPEG-LS frame of %zu bytes is too short for a "
                         "SOI and a frame header", len);

    /* CharLS 2.4.1 spins for seconds (whatever the image size) when the
     * scan data runs out without a marker, as in every truncated frame.
     * A frame that does not end in EOI (T.81 B.1.1.3: FFD9; DICOM may add
     * one 00 to make the fragment even) therefore gets an EOI appended to
     * a copy, where the scan then ends promptly with an error. */
    const uint8_t *buf = src;
    size_t buf_len = len, end = len;
    if (end >= 3 && src[end - 1] == 0x00)
        end--;
    if (!(src[end - 2] == 0xFF && src[end - 1] == 0xD9)) {
        if (!covct_add_size(len, 2, &buf_len))
            return COVCT_ERR(err, COVCT_ERR_LIMIT,
                             "JPEG-LS frame of %zu bytes", len);
        padded = covct_malloc(buf_len);
        if (!padded)
            return COVCT_ERR(err, COVCT_ERR_NOMEM,
                             "JPEG-LS: cannot allocate %zu bytes", buf_len);
        memcpy(padded, src, len);
        padded[len] = 0xFF;
        padded[len + 1] = 0xD9;
        buf = padded;
    }

    dec = charls_jpegls_decoder_create();
    if (!dec) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                       "JPEG-LS: cannot create a CharLS decoder");
        goto done;
    }

    charls_jpegls_errc ec =
        charls_jpegls_decoder_set_source_buffer(dec, buf, buf_len);
    if (ec) {
        rc = charls_fail(err, ec, "setting the source", len);
        goto done;
    }
    /* A SPIFF header (T.87 Annex G) is optional; reading it first lets
     * CharLS skip it when present. */
    charls_spiff_header spiff;
    int32_t spiff_found = 0;
    ec = charls_jpegls_decoder_read_spiff_header(dec, &spiff, &spiff_found);
    if (ec) {
        rc = charls_fail(err, ec, "reading the SPIFF header", len);
        goto done;
    }
    ec = charls_jpegls_decoder_read_header(dec);
    if (ec) {
        rc = charls_fail(err, ec, "reading the frame header", len);
        goto done;
    }

    charls_frame_info fi;
    ec = charls_jpegls_decoder_get_frame_info(dec, &fi);
    if (ec) {
        rc = charls_fail(err, ec, "reading the frame info", len);
        goto done;
    }
    charls_interleave_mode ilv;
    ec = charls_jpegls_decoder_get_interleave_mode(dec, &ilv);
    if (ec) {
        rc = charls_fail(err, ec, "reading the interleave mode", len);
        goto done;
    }

    /* T.87 C.2.2: SOF55 gives X (columns), Y (rows), P (2..16), Nf. */
    if (fi.width != f->cols || fi.height != f->rows) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "JPEG-LS frame header: %" PRIu32 " x %" PRIu32
                       " (columns x rows) but the data set says %" PRIu32
                       " x %" PRIu32, fi.width, fi.height, f->cols, f->rows);
        goto done;
    }
    if (fi.component_count != (int32_t)f->samples) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "JPEG-LS frame header: %d components but Samples "
                       "per Pixel is %u", (int)fi.component_count,
                       f->samples);
        goto done;
    }
    /* Some writers code a precision other than Bits Stored (fewer bits,
     * or Bits Allocated); tolerate that as long as it fits. */
    if (fi.bits_per_sample < 2 || fi.bits_per_sample > 16 ||
        fi.bits_per_sample > (int32_t)f->bits_alloc ||
        fi.bits_per_sample > (int32_t)f->out_bytes * 8) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "JPEG-LS frame header: precision %d bits does not "
                       "fit Bits Allocated %u", (int)fi.bits_per_sample,
                       f->bits_alloc);
        goto done;
    }
    if (ilv != CHARLS_INTERLEAVE_MODE_NONE &&
        ilv != CHARLS_INTERLEAVE_MODE_LINE &&
        ilv != CHARLS_INTERLEAVE_MODE_SAMPLE) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "JPEG-LS scan header: interleave mode %d",
                       (int)ilv);
        goto done;
    }

    unsigned in_bytes = fi.bits_per_sample <= 8 ? 1 : 2;
    size_t need, dst_len;
    rc = frame_bytes(f, in_bytes, &need, err);
    if (rc)
        goto done;
    /* Also proves that every index computed below fits a size_t. */
    rc = frame_bytes(f, f->out_bytes, &dst_len, err);
    if (rc)
        goto done;

    size_t charls_need = 0;
    ec = charls_jpegls_decoder_get_destination_size(dec, 0, &charls_need);
    if (ec) {
        rc = charls_fail(err, ec, "computing the output size", len);
        goto done;
    }
    if (charls_need != need) {
        rc = COVCT_ERR(err, COVCT_ERR_INTERNAL,
                       "JPEG-LS: CharLS wants %zu output bytes, expected "
                       "%zu", charls_need, need);
        goto done;
    }

    /* Planar output (interleave mode none, 3 components) and a sample size
     * other than out_bytes need a staging buffer; otherwise decode in
     * place. */
    int planar = f->samples > 1 && ilv == CHARLS_INTERLEAVE_MODE_NONE;
    uint8_t *out = dst;
    if (planar || in_bytes != f->out_bytes) {
        tmp = covct_malloc(need);
        if (!tmp) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                           "JPEG-LS: cannot allocate %zu bytes", need);
            goto done;
        }
        out = tmp;
    }
    ec = charls_jpegls_decoder_decode_to_buffer(dec, out, need, 0);
    if (ec) {
        rc = charls_fail(err, ec, "decoding", len);
        goto done;
    }
    if (out == dst)
        goto done;

    size_t npix = (size_t)f->rows * f->cols; /* fits: need did */
    unsigned ns = f->samples;
    for (size_t i = 0; i < npix; i++) {
        for (unsigned c = 0; c < ns; c++) {
            size_t from = planar ? (size_t)c * npix + i : i * ns + c;
            uint32_t v = get_sample(tmp + from * in_bytes, in_bytes);
            put_sample(dst + (i * ns + c) * f->out_bytes, f->out_bytes, v);
        }
    }

done:
    covct_free(tmp);
    covct_free(padded);
    charls_jpegls_decoder_destroy(dec);
    return rc;
}
