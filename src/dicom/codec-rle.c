/*
 * PS3.5 Annex G: RLE Lossless.  A frame is a 64-byte header (number of
 * segments, then 15 segment offsets) and segments that are PackBits-style
 * byte runs (G.3.1).  Segment order: for each sample, its bytes from most
 * to least significant (G.2), so a 16-bit RGB frame has 6 segments.
 */
#include <string.h>

#include "dicom/codec.h"
#include "dicom/dicom_int.h"

/* Decode one segment into every `stride`-th byte of out (n bytes). */
static covct_rc decode_segment(const uint8_t *p, size_t len, uint8_t *out,
                               size_t n, size_t stride, unsigned seg,
                               size_t seg_off, covct_error *err)
{
    size_t i = 0, o = 0;
    while (o < n) {
        if (i >= len)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "RLE segment %u (offset %zu) ends after %zu of "
                             "%zu bytes",
                             seg + 1, seg_off, o, n);
        int8_t h = (int8_t)p[i++];
        if (h >= 0) {
            size_t cnt = (size_t)h + 1;
            if (cnt > len - i)
                return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                 "RLE segment %u: literal run of %zu bytes "
                                 "at offset %zu passes the segment end",
                                 seg + 1, cnt, seg_off + i - 1);
            if (cnt > n - o)
                cnt = n - o; /* trailing padding run */
            for (size_t k = 0; k < cnt; k++)
                out[(o + k) * stride] = p[i + k];
            i += (size_t)h + 1;
            o += cnt;
        } else if (h != -128) {
            size_t cnt = (size_t)(1 - h);
            if (i >= len)
                return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                 "RLE segment %u: replicate run without its "
                                 "byte at offset %zu",
                                 seg + 1, seg_off + i - 1);
            uint8_t v = p[i++];
            if (cnt > n - o)
                cnt = n - o;
            for (size_t k = 0; k < cnt; k++)
                out[(o + k) * stride] = v;
            o += cnt;
        }
        /* -128 is a no-op (G.3.1) */
    }
    return COVCT_OK;
}

covct_rc covct_codec_rle_decode(const uint8_t *src, size_t len,
                                covct_codec_frame *f, uint8_t *dst,
                                covct_error *err)
{
    if (len < 64)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "RLE frame of %zu bytes is shorter than its 64-byte "
                         "header",
                         len);
    unsigned bytes = f->bits_alloc <= 8 ? 1u : f->bits_alloc / 8u;
    uint32_t nseg = covct_rd32(src, false);
    uint32_t want = (uint32_t)bytes * f->samples;
    if (nseg != want)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "RLE header has %u segments, %u expected for %u "
                         "samples of %u bits",
                         nseg, want, f->samples, f->bits_alloc);
    if (f->out_bytes != bytes)
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "RLE with %u bits allocated", f->bits_alloc);
    size_t pixels = (size_t)f->rows * f->cols;
    size_t stride = (size_t)f->samples * bytes;
    if (f->bits_alloc == 1) {
        /* Bit-packed frames are run-length coded as bytes (PS3.5 G.2),
         * then unpacked: bit 0 is the first pixel (PS3.5 8.1.1). */
        if (f->samples != 1)
            return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                             "1-bit RLE with %u samples", f->samples);
        size_t packed = (pixels + 7) / 8;
        uint8_t *tmp = covct_malloc(packed);
        if (!tmp)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        uint32_t off = covct_rd32(src + 4, false);
        covct_rc rc = off < 64 || off > len
                          ? COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                      "RLE segment 1 offset %u outside the "
                                      "%zu-byte frame",
                                      off, len)
                          : decode_segment(src + off, len - off, tmp, packed,
                                           1, 0, off, err);
        if (!rc)
            for (size_t i = 0; i < pixels; i++)
                dst[i] = (uint8_t)((tmp[i >> 3] >> (i & 7)) & 1);
        covct_free(tmp);
        return rc;
    }
    for (uint32_t s = 0; s < nseg; s++) {
        uint32_t off = covct_rd32(src + 4 + 4 * s, false);
        uint32_t end = s + 1 < nseg ? covct_rd32(src + 8 + 4 * s, false)
                                    : (uint32_t)(len > 0xFFFFFFFFu ? 0xFFFFFFFFu : len);
        if (off < 64 || off > len || end < off || end > len)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "RLE segment %u offset %u (next %u) outside the "
                             "%zu-byte frame",
                             s + 1, off, end, len);
        unsigned sample = s / bytes;
        unsigned byte_in_sample = s % bytes; /* 0 = most significant */
        /* Native little-endian output: most significant byte last. */
        size_t pos = (size_t)sample * bytes + (bytes - 1 - byte_in_sample);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        pos = (size_t)sample * bytes + byte_in_sample;
#endif
        covct_rc rc = decode_segment(src + off, end - off, dst + pos, pixels,
                                     stride, s, off, err);
        if (rc)
            return rc;
    }
    return COVCT_OK;
}
