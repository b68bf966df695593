/*
 * Pixel data (PS3.3 C.7.6.3 Image Pixel Module; PS3.5 Section 8 and
 * Annex A.4): frame geometry, native and bit-packed data, frame lookup in
 * encapsulated pixel data, and dispatch to the codecs in codec.h.
 */
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "covct/limits.h"
#include "dicom/codec.h"
#include "dicom/dicom_int.h"

#define T(g, e) COVCT_TAG(g, e)

static covct_rc get_us(const covct_dcm_dataset *ds, uint32_t tag, bool needed,
                       uint16_t def, uint16_t *out, covct_error *err)
{
    int64_t v;
    covct_error tmp = {0};
    covct_rc rc = covct_dcm_get_int(ds, tag, 0, &v, &tmp);
    if (rc == COVCT_ERR_NOT_FOUND && !needed) {
        *out = def;
        return COVCT_OK;
    }
    if (rc)
        return COVCT_ERR(err, rc, "%s", tmp.msg);
    if (v < 0 || v > 65535)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "(%04X,%04X) value %lld out of range 0..65535",
                         COVCT_TAG_GROUP(tag), COVCT_TAG_ELEM(tag),
                         (long long)v);
    *out = (uint16_t)v;
    return COVCT_OK;
}

static const covct_dcm_element *pixel_element(const covct_dcm_dataset *ds,
                                              uint16_t *float_bits)
{
    const covct_dcm_element *e = covct_dcm_dataset_get(ds, T(0x7FE0, 0x0010));
    *float_bits = 0;
    if (e)
        return e;
    if ((e = covct_dcm_dataset_get(ds, T(0x7FE0, 0x0008)))) {
        *float_bits = 32;
        return e;
    }
    if ((e = covct_dcm_dataset_get(ds, T(0x7FE0, 0x0009)))) {
        *float_bits = 64;
        return e;
    }
    return NULL;
}

covct_rc covct_dcm_pixel_info_get(const covct_dcm_file *f,
                                  covct_dcm_pixel_info *pi, covct_error *err)
{
    const covct_dcm_dataset *ds = f->ds;
    memset(pi, 0, sizeof *pi);
    uint16_t rows = 0, cols = 0, v = 0; /* set by get_us on success */
    covct_rc rc;
    const covct_dcm_element *pe = pixel_element(ds, &pi->float_bits);
    if (!pe)
        return COVCT_ERR(err, COVCT_ERR_NOT_FOUND,
                         "no pixel data: (7FE0,0010) is absent");
    if ((rc = get_us(ds, T(0x0028, 0x0010), true, 0, &rows, err)) ||
        (rc = get_us(ds, T(0x0028, 0x0011), true, 0, &cols, err)) ||
        (rc = get_us(ds, T(0x0028, 0x0002), false, 1, &pi->samples, err)) ||
        (rc = get_us(ds, T(0x0028, 0x0100), pi->float_bits == 0,
                     pi->float_bits, &pi->bits_alloc, err)) ||
        (rc = get_us(ds, T(0x0028, 0x0101), false, pi->bits_alloc,
                     &pi->bits_stored, err)) ||
        (rc = get_us(ds, T(0x0028, 0x0103), false, 0, &pi->pixel_rep, err)) ||
        (rc = get_us(ds, T(0x0028, 0x0006), false, 0, &pi->planar, err)))
        return rc;
    if ((rc = get_us(ds, T(0x0028, 0x0102), false,
                     (uint16_t)(pi->bits_stored ? pi->bits_stored - 1 : 0), &v,
                     err)))
        return rc;
    pi->high_bit = v;
    pi->rows = rows;
    pi->cols = cols;
    int64_t frames = 1;
    covct_error tmp = {0};
    if (covct_dcm_get_int(ds, T(0x0028, 0x0008), 0, &frames, &tmp) ==
        COVCT_ERR_CORRUPT) {
        /* Not a valid IS ("1A" is seen in the wild): like dcmtk, read the
         * leading digits and carry on. */
        char nb[32];
        covct_dcm_get_string(ds, T(0x0028, 0x0008), 0, nb, sizeof nb, NULL);
        frames = 0;
        for (const char *q = nb; *q >= '0' && *q <= '9' && frames < 1000000;
             q++)
            frames = frames * 10 + (*q - '0');
        covct_dcm_file_warn((covct_dcm_file *)f,
                            "(0028,0008) Number of Frames '%s' is not a "
                            "number; read as %lld",
                            nb, (long long)(frames ? frames : 1));
    }
    if (frames < 0)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "(0028,0008) Number of Frames %lld is negative",
                         (long long)frames);
    if (frames == 0)
        frames = 1; /* seen in the wild; dcmtk reads it as 1 */
    if (frames > COVCT_LIMIT_FRAMES)
        return COVCT_ERR(err, COVCT_ERR_LIMIT,
                         "(0028,0008) Number of Frames %lld exceeds %d",
                         (long long)frames, COVCT_LIMIT_FRAMES);
    pi->frames = (uint32_t)frames;
    covct_dcm_get_string(ds, T(0x0028, 0x0004), 0, pi->photometric,
                         sizeof pi->photometric, NULL);
    memcpy(pi->out_photometric, pi->photometric, sizeof pi->photometric);
    pi->encapsulated = pe->encapsulated;

    if (rows == 0 || cols == 0)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "image size %ux%u: Rows and Columns must be non-zero",
                         cols, rows);
    if (pi->samples != 1 && pi->samples != 3)
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "(0028,0002) Samples per Pixel %u (only 1 or 3 are "
                         "supported)",
                         pi->samples);
    if (pi->float_bits) {
        pi->out_bytes = (uint16_t)(pi->float_bits / 8);
    } else {
        switch (pi->bits_alloc) {
        case 1: case 8: pi->out_bytes = 1; break;
        case 16: pi->out_bytes = 2; break;
        case 32: pi->out_bytes = 4; break;
        default:
            return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                             "(0028,0100) Bits Allocated %u (supported: 1, 8, "
                             "16, 32)",
                             pi->bits_alloc);
        }
        if (pi->bits_stored == 0 || pi->bits_stored > pi->bits_alloc)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "(0028,0101) Bits Stored %u must be 1..%u (Bits "
                             "Allocated)",
                             pi->bits_stored, pi->bits_alloc);
        if (pi->high_bit >= pi->bits_alloc ||
            pi->high_bit + 1 < pi->bits_stored)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "(0028,0102) High Bit %u inconsistent with Bits "
                             "Stored %u and Bits Allocated %u",
                             pi->high_bit, pi->bits_stored, pi->bits_alloc);
    }
    size_t n;
    if (!covct_mul_size(pi->rows, pi->cols, &n) ||
        !covct_mul_size(n, pi->samples, &n) ||
        !covct_mul_size(n, pi->out_bytes, &n))
        return COVCT_ERR(err, COVCT_ERR_LIMIT, "frame size overflows");
    pi->frame_bytes = n;
    /* Uncompressed YBR_FULL_422 is stored subsampled and expanded on
     * decoding (PS3.3 C.7.6.3.1.2). */
    if (!pi->encapsulated && !strcmp(pi->photometric, "YBR_FULL_422"))
        memcpy(pi->out_photometric, "YBR_FULL", 9);
    const char *ts = f->ts;
    if (pi->encapsulated && pi->samples == 3 &&
        (!strcmp(ts, COVCT_TS_JPEG_BASELINE) ||
         !strcmp(ts, COVCT_TS_JPEG_EXTENDED)) &&
        !strncmp(pi->photometric, "YBR", 3))
        memcpy(pi->out_photometric, "RGB", 4);
    return COVCT_OK;
}

/* ---- native data --------------------------------------------------------- */

static covct_rc decode_native(const covct_dcm_file *f,
                              const covct_dcm_element *pe,
                              const covct_dcm_pixel_info *pi, uint32_t frame,
                              uint8_t *dst, covct_error *err)
{
    const uint8_t *src = pe->value;
    size_t src_len = pe->value_len;
    uint8_t *inflated = NULL;
    covct_rc rc = COVCT_OK;
    (void)f;
    size_t pixels = (size_t)pi->rows * pi->cols;
    size_t samples_per_frame = pixels * pi->samples;
    bool ybr422 = !strcmp(pi->photometric, "YBR_FULL_422");
    if (pi->bits_alloc == 1 && !pi->float_bits) {
        /* PS3.5 8.1.1: bit-packed frames follow each other without padding
         * to a byte boundary; bit 0 of each byte is the first pixel. */
        size_t first_bit, need_bits;
        if (!covct_mul_size(samples_per_frame, frame, &first_bit) ||
            !covct_add_size(first_bit, samples_per_frame, &need_bits) ||
            (need_bits + 7) / 8 > src_len)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "(7FE0,0010) has %zu bytes, too few for frame "
                             "%u of %ux%u 1-bit pixels",
                             src_len, frame + 1, pi->cols, pi->rows);
        for (size_t i = 0; i < samples_per_frame; i++) {
            size_t bit = first_bit + i;
            dst[i] = (uint8_t)((src[bit >> 3] >> (bit & 7)) & 1);
        }
        return COVCT_OK;
    }
    size_t bytes_per_sample = pi->float_bits ? pi->float_bits / 8u
                                             : pi->bits_alloc / 8u;
    size_t frame_len = samples_per_frame * bytes_per_sample;
    if (ybr422)
        frame_len = pixels * 2 * bytes_per_sample;
    size_t start;
    if (!covct_mul_size(frame_len, frame, &start) || start > src_len ||
        frame_len > src_len - start)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "(%04X,%04X) has %zu bytes, too few for frame %u of "
                         "%zu bytes",
                         COVCT_TAG_GROUP(pe->tag), COVCT_TAG_ELEM(pe->tag),
                         src_len, frame + 1, frame_len);
    const uint8_t *p = src + start;
    bool be = pe->big_endian;
    /* In big endian, OB-encoded 8-bit data is not swapped; OW-encoded 8-bit
     * data (PS3.5 Annex A.3 note) pairs bytes, which we undo here. */
    bool swap8 = be && pe->vr == COVCT_VR('O', 'W') && bytes_per_sample == 1;
    if (ybr422) {
        /* Y1 Y2 Cb Cr for each pair of pixels -> Y Cb Cr per pixel. */
        if (pixels & 1)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "YBR_FULL_422 image with an odd number of pixels "
                             "(%ux%u)",
                             pi->cols, pi->rows);
        for (size_t i = 0; i < pixels; i += 2) {
            for (size_t b = 0; b < bytes_per_sample; b++) {
                size_t q = (i / 2) * 4 * bytes_per_sample;
                const uint8_t *y1 = p + q, *y2 = p + q + bytes_per_sample,
                              *cb = p + q + 2 * bytes_per_sample,
                              *cr = p + q + 3 * bytes_per_sample;
                uint8_t *o = dst + i * 3 * bytes_per_sample;
                o[b] = y1[b];
                o[bytes_per_sample + b] = cb[b];
                o[2 * bytes_per_sample + b] = cr[b];
                o[3 * bytes_per_sample + b] = y2[b];
                o[4 * bytes_per_sample + b] = cb[b];
                o[5 * bytes_per_sample + b] = cr[b];
            }
        }
        goto done;
    }
    if (pi->samples == 3 && pi->planar == 1) {
        /* Colour-by-plane: RRR..GGG..BBB.. -> RGBRGB. */
        for (size_t s = 0; s < 3; s++)
            for (size_t i = 0; i < pixels; i++)
                memcpy(dst + (i * 3 + s) * bytes_per_sample,
                       p + (s * pixels + i) * bytes_per_sample,
                       bytes_per_sample);
    } else {
        memcpy(dst, p, frame_len);
    }
    if (swap8) {
        for (size_t i = 0; i + 1 < frame_len; i += 2) {
            uint8_t t = dst[i];
            dst[i] = dst[i + 1];
            dst[i + 1] = t;
        }
    }
    if (be && bytes_per_sample > 1) {
        for (size_t i = 0; i + bytes_per_sample <= frame_len;
             i += bytes_per_sample)
            for (size_t a = 0, z = bytes_per_sample - 1; a < z; a++, z--) {
                uint8_t t = dst[i + a];
                dst[i + a] = dst[i + z];
                dst[i + z] = t;
            }
    }
done:
    covct_free(inflated);
    return rc;
}

/* ---- encapsulated data: which fragments make frame N ------------------- */

static bool starts_codestream(const uint8_t *p, size_t n)
{
    if (n >= 2 && p[0] == 0xFF && p[1] == 0xD8)
        return true; /* JPEG SOI */
    if (n >= 4 && p[0] == 0xFF && p[1] == 0x4F && p[2] == 0xFF && p[3] == 0x51)
        return true; /* J2K SOC + SIZ */
    if (n >= 12 && !memcmp(p, "\0\0\0\x0CjP  \r\n\x87\n", 12))
        return true; /* JP2 signature box */
    return false;
}

/* Fragment range [*first, *last) of a frame (fragment 0 is the offset
 * table and never part of a frame). */
static covct_rc frame_fragments(const covct_dcm_file *f,
                                const covct_dcm_element *pe,
                                const covct_dcm_pixel_info *pi, uint32_t frame,
                                size_t *first, size_t *last, covct_error *err)
{
    size_t nf = pe->n_frags;
    if (nf < 2)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "(7FE0,0010): encapsulated pixel data has no "
                         "fragments");
    const covct_dcm_fragment *fr = pe->frags;
    size_t base = fr[1].offset - 8; /* first fragment's item tag */
    /* Extended Offset Table (7FE0,0001) with lengths (7FE0,0002), then the
     * Basic Offset Table: offsets of each frame's first item relative to
     * the first fragment's item tag (PS3.5 A.4). */
    const covct_dcm_element *eot = covct_dcm_dataset_get(f->ds, T(0x7FE0, 0x0001));
    uint64_t off = 0, next = UINT64_MAX;
    bool have = false;
    if (eot && eot->value_len >= 8 * (size_t)pi->frames) {
        const uint8_t *p = eot->value + 8 * (size_t)frame;
        off = ((uint64_t)covct_rd32(p + 4, false) << 32) | covct_rd32(p, false);
        if (frame + 1 < pi->frames) {
            p += 8;
            next = ((uint64_t)covct_rd32(p + 4, false) << 32) |
                   covct_rd32(p, false);
        }
        have = true;
    } else if (fr[0].len >= 4 * (size_t)pi->frames && fr[0].len > 0) {
        off = covct_rd32(fr[0].data + 4 * (size_t)frame, pe->big_endian);
        if (frame + 1 < pi->frames)
            next = covct_rd32(fr[0].data + 4 * (size_t)frame + 4,
                              pe->big_endian);
        have = true;
    }
    if (have) {
        size_t a = 0, b = 0;
        for (size_t i = 1; i < nf; i++) {
            uint64_t rel = fr[i].offset - 8 - base;
            if (!a && rel == off)
                a = i;
            if (rel >= next) {
                b = i;
                break;
            }
        }
        if (!b)
            b = nf;
        if (a && a < b) {
            *first = a;
            *last = b;
            return COVCT_OK;
        }
        covct_dcm_file_warn((covct_dcm_file *)f,
                            "(7FE0,0010): offset table entry %u (%llu) does "
                            "not point at a fragment; ignored",
                            frame + 1, (unsigned long long)off);
    }
    if (pi->frames == 1) {
        *first = 1;
        *last = nf;
        return COVCT_OK;
    }
    if (nf - 1 == pi->frames) {
        *first = 1 + frame;
        *last = 2 + frame;
        return COVCT_OK;
    }
    /* No usable table and more fragments than frames: a frame starts at a
     * fragment that begins a code stream. */
    uint32_t k = 0;
    for (size_t i = 1; i < nf; i++) {
        if (i > 1 && !starts_codestream(fr[i].data, fr[i].len))
            continue;
        if (k == frame) {
            size_t j = i + 1;
            while (j < nf && !starts_codestream(fr[j].data, fr[j].len))
                j++;
            *first = i;
            *last = j;
            return COVCT_OK;
        }
        k++;
    }
    return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                     "(7FE0,0010): cannot find frame %u among %zu fragments "
                     "(no offset table)",
                     frame + 1, nf - 1);
}

static covct_rc inflate_frame(const uint8_t *src, size_t len, uint8_t *dst,
                              size_t dst_len, size_t *got, covct_error *err)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    /* Deflated Image Frame Compression: each frame is a deflate stream
     * (RFC 1951) of the native frame. */
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "cannot initialise zlib");
    zs.next_in = (uint8_t *)src;
    zs.avail_in = (uInt)len;
    zs.next_out = dst;
    zs.avail_out = (uInt)dst_len;
    int z = inflate(&zs, Z_FINISH);
    *got = dst_len - zs.avail_out;
    inflateEnd(&zs);
    if (z != Z_STREAM_END && !(z == Z_BUF_ERROR && zs.avail_out == 0))
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "deflated frame: zlib error %d (%s)", z,
                         zs.msg ? zs.msg : "truncated stream");
    return COVCT_OK;
}

static void normalise(const covct_dcm_pixel_info *pi, uint8_t *dst,
                      size_t n_samples)
{
    if (pi->float_bits || pi->bits_alloc == 1)
        return;
    unsigned bits = pi->bits_stored, width = pi->out_bytes * 8u;
    unsigned shift = pi->high_bit + 1u - bits;
    if (bits == width && shift == 0)
        return;
    uint32_t mask = bits >= 32 ? 0xFFFFFFFFu : ((1u << bits) - 1u);
    uint32_t sign = 1u << (bits - 1);
    for (size_t i = 0; i < n_samples; i++) {
        uint32_t v;
        switch (pi->out_bytes) {
        case 1: v = dst[i]; break;
        case 2: { uint16_t t; memcpy(&t, dst + 2 * i, 2); v = t; break; }
        default: memcpy(&v, dst + 4 * i, 4); break;
        }
        v = (v >> shift) & mask;
        if (pi->pixel_rep && (v & sign))
            v |= ~mask; /* sign-extend two's complement */
        switch (pi->out_bytes) {
        case 1: dst[i] = (uint8_t)v; break;
        case 2: { uint16_t t = (uint16_t)v; memcpy(dst + 2 * i, &t, 2); break; }
        default: memcpy(dst + 4 * i, &v, 4); break;
        }
    }
}

covct_rc covct_dcm_pixel_decode_frame(const covct_dcm_file *f,
                                      const covct_dcm_pixel_info *pi,
                                      uint32_t frame, void *dstv,
                                      size_t dst_len, covct_error *err)
{
    uint8_t *dst = dstv;
    uint16_t fb;
    const covct_dcm_element *pe = pixel_element(f->ds, &fb);
    if (!pe)
        return COVCT_ERR(err, COVCT_ERR_NOT_FOUND,
                         "no pixel data: (7FE0,0010) is absent");
    if (frame >= pi->frames)
        return COVCT_ERR(err, COVCT_ERR_ARG, "frame %u requested, file has %u",
                         frame + 1, pi->frames);
    if (dst_len < pi->frame_bytes)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "frame buffer of %zu bytes, %zu needed", dst_len,
                         pi->frame_bytes);
    size_t n_samples = (size_t)pi->rows * pi->cols * pi->samples;
    covct_rc rc;
    if (!pe->encapsulated) {
        rc = decode_native(f, pe, pi, frame, dst, err);
        if (!rc)
            normalise(pi, dst, n_samples);
        return rc;
    }
    const char *ts = f->ts;
    size_t a = 0, b = 0;
    rc = frame_fragments(f, pe, pi, frame, &a, &b, err);
    if (rc)
        return rc;
    const uint8_t *src = pe->frags[a].data;
    size_t src_len = pe->frags[a].len;
    uint8_t *joined = NULL;
    if (b - a > 1) {
        size_t total = 0;
        for (size_t i = a; i < b; i++)
            total += pe->frags[i].len; /* bounded by the file size */
        joined = covct_malloc(total);
        if (!joined)
            return COVCT_ERR(err, COVCT_ERR_NOMEM,
                             "cannot allocate %zu bytes for frame %u", total,
                             frame + 1);
        size_t o = 0;
        for (size_t i = a; i < b; i++) {
            memcpy(joined + o, pe->frags[i].data, pe->frags[i].len);
            o += pe->frags[i].len;
        }
        src = joined;
        src_len = total;
    }
    covct_codec_frame cf = {
        .rows = pi->rows, .cols = pi->cols, .samples = pi->samples,
        .bits_alloc = pi->bits_alloc, .bits_stored = pi->bits_stored,
        .pixel_rep = pi->pixel_rep, .out_bytes = pi->out_bytes,
        .photometric = pi->photometric, .converted_rgb = 0,
    };
    if (!strcmp(ts, COVCT_TS_RLE)) {
        rc = covct_codec_rle_decode(src, src_len, &cf, dst, err);
    } else if (!strcmp(ts, COVCT_TS_JPEG_BASELINE) ||
               !strcmp(ts, COVCT_TS_JPEG_EXTENDED) ||
               !strcmp(ts, COVCT_TS_JPEG_LOSSLESS) ||
               !strcmp(ts, COVCT_TS_JPEG_LOSSLESS_SV1)) {
        rc = covct_codec_jpeg_decode(src, src_len, &cf, dst, err);
    } else if (!strcmp(ts, COVCT_TS_JPEGLS_LOSSLESS) ||
               !strcmp(ts, COVCT_TS_JPEGLS_NEAR)) {
        rc = covct_codec_jpegls_decode(src, src_len, &cf, dst, err);
    } else if (!strcmp(ts, COVCT_TS_J2K_LOSSLESS) || !strcmp(ts, COVCT_TS_J2K)) {
        rc = covct_codec_j2k_decode(src, src_len, &cf, dst, err);
    } else if (!strcmp(ts, COVCT_TS_DEFLATED_IMAGE)) {
        /* The inflated frame is in native form: inflate, then decode it as
         * native data (bit-packed frames each start on a byte). */
        size_t raw_len = pi->bits_alloc == 1 ? (n_samples + 7) / 8
                                             : n_samples * (pi->float_bits ? pi->float_bits / 8u : pi->bits_alloc / 8u);
        uint8_t *raw = covct_malloc(raw_len);
        size_t got = 0;
        if (!raw) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        } else {
            rc = inflate_frame(src, src_len, raw, raw_len, &got, err);
            if (!rc && got != raw_len)
                rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                               "deflated frame %u inflates to %zu bytes, %zu "
                               "expected",
                               frame + 1, got, raw_len);
            if (!rc) {
                covct_dcm_element tmp = *pe;
                tmp.encapsulated = false;
                tmp.value = raw;
                tmp.value_len = raw_len;
                tmp.big_endian = false;
                covct_dcm_pixel_info one = *pi;
                one.frames = 1;
                rc = decode_native(f, &tmp, &one, 0, dst, err);
            }
        }
        covct_free(raw);
    } else {
        const char *name = covct_dcm_ts_name(ts);
        rc = COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                       "unsupported transfer syntax %s%s%s%s: covct cannot "
                       "decode its pixel data",
                       ts, name ? " (" : "", name ? name : "", name ? ")" : "");
    }
    covct_free(joined);
    if (!rc)
        normalise(pi, dst, n_samples);
    return rc;
}
