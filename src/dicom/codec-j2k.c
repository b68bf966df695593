/*
 * JPEG 2000 (ISO 15444-1) frames through OpenJPEG.
 *
 * DICOM transfer syntaxes 1.2.840.10008.1.2.4.90 (lossless only) and .4.91
 * (lossless or lossy), PS3.5 A.4.4.  The frame is normally a bare code
 * stream (starts SOC FF4F, SIZ FF51); some writers wrap it in a JP2 file,
 * so the signature box is recognised as well.
 *
 * OpenJPEG reads from our memory stream (read/skip/seek callbacks bounded
 * by len), reports through handlers that store the message for the covct
 * error instead of printing, and runs in strict mode so that a truncated
 * code stream fails instead of yielding a half-decoded image.  The image
 * header is checked against the data set before any tile is decoded, so a
 * hostile SIZ cannot make OpenJPEG allocate more than the frame needs.
 *
 * OpenJPEG returns each component as int32 (already level-shifted and, for
 * a component marked signed in SIZ, negative where the value is); we store
 * the low out_bytes bytes of that value (two's complement), which is the
 * value "as stored" that the caller masks to Bits Stored.  With a
 * multiple-component transform (RCT/ICT, COD SGcod byte 4) OpenJPEG has
 * already inverted it, so 3-component output is RGB then.
 */
#include <inttypes.h>
#include <string.h>

#include <openjpeg.h>

#include "dicom/codec.h"

/* Precision is capped where DICOM's JPEG 2000 use ends: Bits Allocated 16
 * (PS3.5 8.2.4 allows up to 16 for .4.90/.4.91 monochrome and colour). */
#define J2K_MAX_PREC 16

#define STREAM_CHUNK ((size_t)8192)

typedef struct memstream {
    const uint8_t *data;
    size_t len;
    size_t pos;
} memstream;

#define MSG_MAX 256

typedef struct msgs {
    char error[MSG_MAX];   /* first error OpenJPEG reported */
    char warning[MSG_MAX]; /* first warning */
    unsigned n_errors, n_warnings;
} msgs;

/* ---- memory stream ------------------------------------------------------ */

static OPJ_SIZE_T ms_read(void *buf, OPJ_SIZE_T n, void *user)
{
    memstream *ms = user;
    size_t left = ms->len - ms->pos;
    if (left == 0)
        return (OPJ_SIZE_T)-1; /* OpenJPEG's end-of-stream value */
    if (n > left)
        n = left;
    memcpy(buf, ms->data + ms->pos, n);
    ms->pos += n;
    return n;
}

/* OpenJPEG only skips forward and loops until the count is used up, so at
 * the end we must say -1 (end of stream), never 0. */
static OPJ_OFF_T ms_skip(OPJ_OFF_T n, void *user)
{
    memstream *ms = user;
    size_t left = ms->len - ms->pos;
    if (n <= 0 || left == 0)
        return n == 0 ? 0 : (OPJ_OFF_T)-1;
    if ((uint64_t)n > left)
        n = (OPJ_OFF_T)left;
    ms->pos += (size_t)n;
    return n;
}

static OPJ_BOOL ms_seek(OPJ_OFF_T to, void *user)
{
    memstream *ms = user;
    if (to < 0 || (uint64_t)to > ms->len)
        return OPJ_FALSE;
    ms->pos = (size_t)to;
    return OPJ_TRUE;
}

/* ---- message handlers --------------------------------------------------- */

static void keep_first(char *slot, unsigned *count, const char *msg)
{
    if ((*count)++ || !msg)
        return;
    snprintf(slot, MSG_MAX, "%s", msg);
    /* OpenJPEG ends every message with a newline. */
    size_t n = strlen(slot);
    while (n > 0 && (slot[n - 1] == '\n' || slot[n - 1] == '\r'))
        slot[--n] = '\0';
}

static void on_error(const char *msg, void *user)
{
    msgs *m = user;
    keep_first(m->error, &m->n_errors, msg);
}

static void on_warning(const char *msg, void *user)
{
    msgs *m = user;
    keep_first(m->warning, &m->n_warnings, msg);
}

static void on_info(const char *msg, void *user)
{
    (void)msg;
    (void)user;
}

/* ---- helpers ------------------------------------------------------------ */

static covct_rc check_frame_arg(const covct_codec_frame *f, covct_error *err)
{
    if (f->rows == 0 || f->cols == 0 ||
        (f->samples != 1 && f->samples != 3) ||
        (f->out_bytes != 1 && f->out_bytes != 2 && f->out_bytes != 4) ||
        f->bits_alloc == 0 || f->bits_alloc > 32)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "JPEG 2000: bad frame description: %" PRIu32
                         " x %" PRIu32 ", %u samples, %u bits allocated, "
                         "%u output bytes", f->rows, f->cols, f->samples,
                         f->bits_alloc, f->out_bytes);
    return COVCT_OK;
}

/* Record an OpenJPEG failure with its own message when it gave one. */
static covct_rc opj_fail(covct_error *err, const msgs *m, const memstream *ms,
                         const char *step)
{
    const char *why = m->n_errors ? m->error
                      : m->n_warnings ? m->warning
                                      : "no message from OpenJPEG";
    /* OpenJPEG keeps its own read position private; ours runs ahead of
     * it by at most one chunk (STREAM_CHUNK). */
    return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                     "JPEG 2000 %s failed: %s (OpenJPEG had read %zu of "
                     "%zu bytes)", step, why, ms->pos, ms->len);
}

/* Check the decoded (or just parsed) image against the data set.  After
 * opj_read_header() the component data are not allocated yet, but the
 * geometry, precision and sign are final for a bare code stream; a JP2
 * palette or channel definition may change them during decoding, hence
 * the second call after opj_decode(). */
static covct_rc check_image(const opj_image_t *img, const covct_codec_frame *f,
                            covct_error *err, const char *when)
{
    if (img->numcomps != f->samples)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "JPEG 2000 SIZ (%s): %" PRIu32 " components but "
                         "Samples per Pixel is %u", when, img->numcomps,
                         f->samples);
    if (img->x1 <= img->x0 || img->y1 <= img->y0 ||
        img->x1 - img->x0 != f->cols || img->y1 - img->y0 != f->rows)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "JPEG 2000 SIZ (%s): image area (%" PRIu32 ",%"
                         PRIu32 ")-(%" PRIu32 ",%" PRIu32 ") is not %" PRIu32
                         " columns x %" PRIu32 " rows", when, img->x0,
                         img->y0, img->x1, img->y1, f->cols, f->rows);
    for (uint32_t c = 0; c < img->numcomps; c++) {
        const opj_image_comp_t *cp = &img->comps[c];
        if (cp->dx != 1 || cp->dy != 1)
            return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                             "JPEG 2000 SIZ (%s): component %" PRIu32
                             " is subsampled %" PRIu32 " x %" PRIu32, when,
                             c, cp->dx, cp->dy);
        if (cp->w != f->cols || cp->h != f->rows)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "JPEG 2000 SIZ (%s): component %" PRIu32
                             " is %" PRIu32 " x %" PRIu32 ", expected %"
                             PRIu32 " x %" PRIu32, when, c, cp->w, cp->h,
                             f->cols, f->rows);
        if (cp->factor != 0)
            return COVCT_ERR(err, COVCT_ERR_INTERNAL,
                             "JPEG 2000: component %" PRIu32 " decoded at "
                             "reduced resolution %" PRIu32, c, cp->factor);
        /* Some writers code a precision other than Bits Stored (PS3.5
         * 8.2.4 notes the mismatch); what matters is that it fits. */
        if (cp->prec < 1 || cp->prec > J2K_MAX_PREC ||
            cp->prec > f->bits_alloc || cp->prec > 8u * f->out_bytes)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "JPEG 2000 SIZ (%s): component %" PRIu32
                             " precision %" PRIu32 " bits does not fit Bits "
                             "Allocated %u", when, c, cp->prec,
                             f->bits_alloc);
    }
    return COVCT_OK;
}

static void copy_out(const opj_image_t *img, const covct_codec_frame *f,
                     uint8_t *dst)
{
    size_t npix = (size_t)f->rows * f->cols;
    unsigned ns = f->samples, ob = f->out_bytes;
    for (unsigned c = 0; c < ns; c++) {
        const OPJ_INT32 *s = img->comps[c].data;
        uint8_t *d = dst + (size_t)c * ob;
        size_t step = (size_t)ns * ob;
        if (ob == 1) {
            for (size_t i = 0; i < npix; i++, d += step)
                *d = (uint8_t)(uint32_t)s[i];
        } else if (ob == 2) {
            for (size_t i = 0; i < npix; i++, d += step) {
                uint16_t v = (uint16_t)(uint32_t)s[i];
                memcpy(d, &v, 2);
            }
        } else {
            for (size_t i = 0; i < npix; i++, d += step) {
                uint32_t v = (uint32_t)s[i];
                memcpy(d, &v, 4);
            }
        }
    }
}

/* JP2 signature box (ISO 15444-1 I.5.1) and SOC + SIZ markers (A.4.1, A.5.1). */
static const uint8_t jp2_magic[12] = {0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50,
                                      0x20, 0x20, 0x0D, 0x0A, 0x87, 0x0A};
static const uint8_t j2k_magic[4] = {0xFF, 0x4F, 0xFF, 0x51};

covct_rc covct_codec_j2k_decode(const uint8_t *src, size_t len,
                                covct_codec_frame *f, uint8_t *dst,
                                covct_error *err)
{
    covct_rc rc = COVCT_OK;
    opj_codec_t *codec = NULL;
    opj_stream_t *stream = NULL;
    opj_image_t *img = NULL;
    msgs m;
    memstream ms = {src, len, 0};

    if (!f || !dst || (!src && len))
        return COVCT_ERR(err, COVCT_ERR_ARG, "JPEG 2000: NULL argument");
    rc = check_frame_arg(f, err);
    if (rc)
        return rc;
    f->converted_rgb = 0;
    size_t dst_len;
    if (!covct_mul_size(f->rows, f->cols, &dst_len) ||
        !covct_mul_size(dst_len, f->samples, &dst_len) ||
        !covct_mul_size(dst_len, f->out_bytes, &dst_len))
        return COVCT_ERR(err, COVCT_ERR_LIMIT,
                         "JPEG 2000: frame %" PRIu32 " x %" PRIu32
                         " overflows size_t", f->rows, f->cols);

    OPJ_CODEC_FORMAT fmt;
    if (len >= sizeof jp2_magic && !memcmp(src, jp2_magic, sizeof jp2_magic))
        fmt = OPJ_CODEC_JP2;
    else if (len >= sizeof j2k_magic && !memcmp(src, j2k_magic, 4))
        fmt = OPJ_CODEC_J2K;
    else
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "JPEG 2000 frame of %zu bytes starts with neither "
                         "SOC+SIZ (FF4F FF51) nor a JP2 signature box", len);

    memset(&m, 0, sizeof m);
    codec = opj_create_decompress(fmt);
    if (!codec)
        return COVCT_ERR(err, COVCT_ERR_NOMEM,
                         "JPEG 2000: cannot create an OpenJPEG decoder");
    /* Set the handlers first: OpenJPEG's defaults print to stderr. */
    opj_set_error_handler(codec, on_error, &m);
    opj_set_warning_handler(codec, on_warning, &m);
    opj_set_info_handler(codec, on_info, &m);

    opj_dparameters_t par;
    opj_set_default_decoder_parameters(&par);
    par.cp_reduce = 0; /* full resolution */
    par.cp_layer = 0;  /* all quality layers */
    if (!opj_setup_decoder(codec, &par) ||
        !opj_decoder_set_strict_mode(codec, OPJ_TRUE)) {
        rc = opj_fail(err, &m, &ms, "decoder setup");
        goto done;
    }

    /* OpenJPEG copies marker segments through a buffer of this size and
     * reads tile data larger than it directly into place; a small chunk
     * costs nothing from memory and keeps ms.pos close to where OpenJPEG
     * is, for the error message. */
    stream = opj_stream_create(len < STREAM_CHUNK ? len : STREAM_CHUNK,
                               OPJ_TRUE);
    if (!stream) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                       "JPEG 2000: cannot create an OpenJPEG stream");
        goto done;
    }
    opj_stream_set_user_data(stream, &ms, NULL);
    opj_stream_set_user_data_length(stream, (OPJ_UINT64)len);
    opj_stream_set_read_function(stream, ms_read);
    opj_stream_set_skip_function(stream, ms_skip);
    opj_stream_set_seek_function(stream, ms_seek);

    if (!opj_read_header(stream, codec, &img) || !img) {
        rc = opj_fail(err, &m, &ms, "main header");
        goto done;
    }
    rc = check_image(img, f, err, "header");
    if (rc)
        goto done;

    if (!opj_decode(codec, stream, img)) {
        rc = opj_fail(err, &m, &ms, "decoding");
        goto done;
    }
    if (!opj_end_decompress(codec, stream)) {
        rc = opj_fail(err, &m, &ms, "end of code stream");
        goto done;
    }
    rc = check_image(img, f, err, "decoded");
    if (rc)
        goto done;
    for (uint32_t c = 0; c < img->numcomps; c++) {
        if (!img->comps[c].data) {
            rc = opj_fail(err, &m, &ms, "decoding (no component data)");
            goto done;
        }
    }

    if (f->samples == 3) {
        opj_codestream_info_v2_t *info = opj_get_cstr_info(codec);
        if (info) {
            f->converted_rgb = info->m_default_tile_info.mct != 0;
            opj_destroy_cstr_info(&info);
        }
    }
    copy_out(img, f, dst);
    if (m.n_warnings)
        covct_log(COVCT_LOG_DEBUG, "JPEG 2000: %u OpenJPEG warning(s), "
                  "first: %s", m.n_warnings, m.warning);

done:
    if (img)
        opj_image_destroy(img);
    if (stream)
        opj_stream_destroy(stream);
    if (codec)
        opj_destroy_codec(codec);
    return rc;
}
