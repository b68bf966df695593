/*
 * ITU-T T.81 | ISO/IEC 10918-1 (JPEG) frames of DICOM transfer syntaxes
 * 1.2.840.10008.1.2.4.50, .51, .57 and .70 (PS3.5 8.2.1, A.4.1).
 *
 * The markers up to the first scan decide who decodes (docs/internals/
 * jpeg.md):
 *   - 8-bit sequential DCT (SOF0, SOF1): libjpeg-turbo, as fast as it gets;
 *   - 12-bit sequential DCT (SOF1, also SOF0 as some encoders write it) and
 *     lossless (SOF3, process 14, precision 2-16): jpeg-t81.c, because
 *     Debian 12's libjpeg-turbo 2.1.5 is built for 8-bit samples only and
 *     has no lossless mode;
 *   - progressive, arithmetic and hierarchical frames: unsupported (no
 *     DICOM transfer syntax in use needs them).
 *
 * Colour follows dcmtk's dcmdjpeg default (convert if the Photometric
 * Interpretation says YCbCr) with one addition: a lossy stream whose JFIF
 * or Adobe marker says YCbCr is converted too, since its data set label is
 * then wrong.
 */
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE and size_t */
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "dicom/codec.h"
#include "dicom/jpeg_t81_int.h"

/* ---- libjpeg-turbo, 8-bit sequential DCT -------------------------------- */

typedef struct ljt_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int data_lost;               /* a warning that means damaged data */
    char msg[JMSG_LENGTH_MAX];   /* its text */
} ljt_err;

typedef struct ljt_job {
    struct jpeg_decompress_struct cinfo;
    ljt_err jerr;
    const uint8_t *src;
    size_t len;
    const covct_codec_frame *f;
    uint8_t *dst;
    uint8_t *row;  /* one 8-bit row, when out_bytes > 1 */
    int ycc;       /* convert YCbCr to RGB */
    int created;
    const char *fail; /* set by ljt_body when it gives up by itself */
} ljt_job;

/* libjpeg's default error_exit calls exit(); this one returns to ljt_run. */
static void ljt_error_exit(j_common_ptr cinfo)
{
    ljt_err *e = (ljt_err *)cinfo->err;
    longjmp(e->jb, 1);
}

/* Warnings (level -1) that mean pixel data were lost or guessed: libjpeg
 * carries on with zeros, covct reports the stream as corrupt.  Others
 * (extraneous bytes, missing EOI after complete data, Ss/Se of a
 * sequential scan) are tolerated as dcmtk does. */
static void ljt_emit(j_common_ptr cinfo, int level)
{
    ljt_err *e = (ljt_err *)cinfo->err;
    if (level >= 0)
        return; /* trace messages */
    e->pub.num_warnings++;
    int code = e->pub.msg_code;
    if (!e->data_lost && (code == JWRN_HIT_MARKER ||
                          code == JWRN_HUFF_BAD_CODE ||
                          code == JWRN_MUST_RESYNC)) {
        e->data_lost = 1;
        e->pub.format_message(cinfo, e->msg);
    }
}

/* Library code never prints. */
static void ljt_output(j_common_ptr cinfo) { (void)cinfo; }

static void ljt_body(ljt_job *job)
{
    struct jpeg_decompress_struct *ci = &job->cinfo;
    const covct_codec_frame *f = job->f;
    /* Before the call: if it fails half way, jpeg_destroy_decompress()
     * still frees what it got (the struct starts zeroed). */
    job->created = 1;
    jpeg_create_decompress(ci);
    jpeg_mem_src(ci, job->src, (unsigned long)job->len);
    jpeg_read_header(ci, TRUE);
    if (ci->image_width != f->cols || ci->image_height != f->rows ||
        ci->num_components != (int)f->samples || ci->data_precision != 8) {
        job->fail = "frame header does not match the data set";
        return;
    }
    if (f->samples == 3) {
        /* Choose the colour transform ourselves instead of libjpeg's guess
         * from markers and component ids. */
        ci->jpeg_color_space = job->ycc ? JCS_YCbCr : JCS_RGB;
        ci->out_color_space = JCS_RGB;
    } else {
        ci->out_color_space = JCS_GRAYSCALE;
    }
    /* dcmtk decodes with IJG's defaults: the accurate integer IDCT and
     * fancy upsampling. */
    ci->dct_method = JDCT_ISLOW;
    ci->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(ci);
    if (ci->output_width != f->cols || ci->output_height != f->rows ||
        ci->output_components != (int)f->samples) {
        job->fail = "decoder output does not match the data set";
        return;
    }
    const size_t n = (size_t)f->cols * f->samples;
    while (ci->output_scanline < ci->output_height) {
        size_t y = ci->output_scanline;
        JSAMPROW r = f->out_bytes == 1 ? job->dst + y * n : job->row;
        if (jpeg_read_scanlines(ci, &r, 1) != 1) {
            job->fail = "decoder returned no scanline";
            return;
        }
        if (job->jerr.data_lost)
            return;
        if (f->out_bytes == 2) {
            uint8_t *o = job->dst + y * n * 2;
            for (size_t i = 0; i < n; i++) {
                uint16_t v = r[i];
                memcpy(o + 2 * i, &v, 2);
            }
        } else if (f->out_bytes == 4) {
            uint8_t *o = job->dst + y * n * 4;
            for (size_t i = 0; i < n; i++) {
                uint32_t v = r[i];
                memcpy(o + 4 * i, &v, 4);
            }
        }
    }
    jpeg_finish_decompress(ci);
}

/* setjmp lives here, with no local state that longjmp could clobber. */
static covct_rc ljt_run(ljt_job *job, covct_error *err)
{
    if (setjmp(job->jerr.jb)) {
        char msg[JMSG_LENGTH_MAX];
        job->jerr.pub.format_message((j_common_ptr)&job->cinfo, msg);
        size_t left = job->cinfo.src ? job->cinfo.src->bytes_in_buffer : 0;
        if (job->jerr.pub.msg_code == JERR_OUT_OF_MEMORY)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "JPEG (libjpeg-turbo): %s",
                             msg);
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "JPEG (libjpeg-turbo): %s (at or before byte %zu)",
                         msg, job->len - left);
    }
    ljt_body(job);
    size_t left = job->cinfo.src ? job->cinfo.src->bytes_in_buffer : 0;
    if (job->jerr.data_lost)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "JPEG (libjpeg-turbo): %s (at or before byte %zu)",
                         job->jerr.msg, job->len - left);
    if (job->fail)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT, "JPEG (libjpeg-turbo): %s",
                         job->fail);
    return COVCT_OK;
}

static covct_rc decode_libjpeg(const uint8_t *src, size_t len,
                               const covct_t81_info *in,
                               const covct_codec_frame *f, int ycc,
                               uint8_t *dst, covct_error *err)
{
    covct_rc rc = COVCT_OK;
    uint8_t *patched = NULL;
    ljt_job *job = covct_calloc(1, sizeof *job);
    if (!job)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "JPEG: cannot allocate %zu "
                         "bytes of decoder state", sizeof *job);
    if (in->rows == 0) {
        /* T.81 B.2.5: Y = 0, the line count follows in DNL.  libjpeg
         * cannot do that; hand it a copy whose frame header has the line
         * count from the data set (it skips the DNL segment). */
        patched = covct_malloc(len);
        if (!patched) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                           "JPEG: cannot copy a %zu-byte stream", len);
            goto out;
        }
        memcpy(patched, src, len);
        patched[in->sof_offset + 5] = (uint8_t)(f->rows >> 8);
        patched[in->sof_offset + 6] = (uint8_t)f->rows;
        src = patched;
    }
    if (f->out_bytes > 1) {
        job->row = covct_malloc((size_t)f->cols * f->samples);
        if (!job->row) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                           "JPEG: cannot allocate a row buffer");
            goto out;
        }
    }
    job->src = src;
    job->len = len;
    job->f = f;
    job->dst = dst;
    job->ycc = ycc;
    job->cinfo.err = jpeg_std_error(&job->jerr.pub);
    job->jerr.pub.error_exit = ljt_error_exit;
    job->jerr.pub.emit_message = ljt_emit;
    job->jerr.pub.output_message = ljt_output;
    rc = ljt_run(job, err);
out:
    if (job->created)
        jpeg_destroy_decompress(&job->cinfo);
    covct_free(job->row);
    covct_free(job);
    covct_free(patched);
    return rc;
}

/* ---- dispatch ----------------------------------------------------------- */

/* Photometric Interpretation equals name, allowing DICOM's trailing
 * space padding. */
static int pi_is(const char *pi, const char *name)
{
    if (!pi)
        return 0;
    size_t n = strlen(name);
    if (strncmp(pi, name, n) != 0)
        return 0;
    for (pi += n; *pi; pi++)
        if (*pi != ' ')
            return 0;
    return 1;
}

/* Whether a 3-component frame holds YCbCr to be converted to RGB. */
static int want_ycc(const covct_t81_info *in, const char *pi, int lossless)
{
    if (in->ncomp != 3)
        return 0;
    /* dcmdjpeg's default (+cp): convert if the data set says YCbCr. */
    if (pi_is(pi, "YBR_FULL") || pi_is(pi, "YBR_FULL_422"))
        return 1;
    /* Lossless colour is RGB in practice (PS3.5 8.2.1), whatever markers
     * an encoder copied in; dcmtk leaves it alone too. */
    if (lossless)
        return 0;
    /* Adobe APP14 transform 0 means no transform (RGB), 1 YCbCr. */
    if (in->adobe)
        return in->adobe_transform == 1;
    if (in->comp_id[0] == 'R' && in->comp_id[1] == 'G' &&
        in->comp_id[2] == 'B')
        return 0;
    /* JFIF (T.871) mandates YCbCr.  Without any marker the data set's
     * word stands, as in dcmtk. */
    return in->jfif;
}

covct_rc covct_codec_jpeg_decode(const uint8_t *src, size_t len,
                                 covct_codec_frame *f, uint8_t *dst,
                                 covct_error *err)
{
    if (!src || !f || !dst)
        return COVCT_ERR(err, COVCT_ERR_ARG, "JPEG: missing argument");
    f->converted_rgb = 0;
    if ((f->samples != 1 && f->samples != 3) ||
        (f->out_bytes != 1 && f->out_bytes != 2 && f->out_bytes != 4) ||
        f->rows == 0 || f->cols == 0)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "JPEG: cannot decode into %ux%u, %u samples of %u "
                         "bytes", f->cols, f->rows, f->samples, f->out_bytes);
    size_t need;
    if (!covct_mul_size(f->rows, f->cols, &need) ||
        !covct_mul_size(need, f->samples, &need) ||
        !covct_mul_size(need, f->out_bytes, &need))
        return COVCT_ERR(err, COVCT_ERR_LIMIT, "JPEG: frame size overflows");

    covct_t81_info in;
    covct_rc rc = covct_codec_t81_probe(src, len, &in, err);
    if (rc)
        return rc;
    int own, lossless = 0;
    switch (in.sof) {
    case 0xC0:
    case 0xC1:
        if (in.precision != 8 && in.precision != 12)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "JPEG: %s at byte %zu has %u-bit samples "
                             "(T.81 B.2.2: 8 or 12)",
                             covct_codec_t81_sof_name(in.sof), in.sof_offset,
                             in.precision);
        own = in.precision == 12;
        break;
    case 0xC3:
        own = lossless = 1;
        break;
    default:
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "JPEG: %s at byte %zu is not supported; covct "
                         "decodes baseline, extended sequential (Huffman) "
                         "and lossless (Huffman) JPEG",
                         covct_codec_t81_sof_name(in.sof), in.sof_offset);
    }

    /* The frame header must describe the frame the data set declares.
     * Bits Stored may differ from P in real files; what matters is that
     * the samples fit Bits Allocated and the output width. */
    if (in.cols != f->cols || (in.rows != 0 && in.rows != f->rows))
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "JPEG: frame header at byte %zu is %ux%u, the data "
                         "set says %ux%u", in.sof_offset, in.cols, in.rows,
                         f->cols, f->rows);
    if (in.ncomp != f->samples)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "JPEG: frame header at byte %zu has %u components, "
                         "the data set %u samples per pixel", in.sof_offset,
                         in.ncomp, f->samples);
    if (in.precision > f->bits_alloc || in.precision > 8u * f->out_bytes)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "JPEG: %u-bit samples (frame header at byte %zu) "
                         "do not fit Bits Allocated %u", in.precision,
                         in.sof_offset, f->bits_alloc);

    int ycc = want_ycc(&in, f->photometric, lossless);
    if (!own) {
        rc = decode_libjpeg(src, len, &in, f, ycc, dst, err);
    } else {
        covct_t81_image img;
        rc = covct_codec_t81_decode(src, len, f->rows, &img, err);
        if (rc)
            return rc;
        if (img.rows != f->rows || img.cols != f->cols ||
            img.info.ncomp != f->samples)
            rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                           "JPEG: decoded frame is %ux%ux%u, the data set "
                           "says %ux%ux%u", img.cols, img.rows,
                           img.info.ncomp, f->cols, f->rows, f->samples);
        else
            rc = covct_codec_t81_output(&img, ycc, f->out_bytes, dst, need,
                                        err);
        covct_codec_t81_image_free(&img);
    }
    if (rc == COVCT_OK)
        f->converted_rgb = ycc;
    return rc;
}
