/*
 * 8-bit 2-D images (include/covct/image.h): JPEG through libjpeg-turbo,
 * PNG through libpng, both from memory.
 *
 * Both libraries report errors through a callback that must not return;
 * ours record what happened and longjmp back.  All state that survives a
 * longjmp lives in a job struct owned by the caller of the function that
 * calls setjmp, and that function has no locals of its own, so nothing is
 * left indeterminate (C11 7.13.2.1p3).
 *
 * Conversions follow Pillow, the reference the tests compare with:
 * Image.convert("L") for pictures (BT.601 luma in 16-bit fixed point, the
 * gray ramp for palette entries a PLTE does not define) and the raw palette
 * indices of mode "P" for labels.  Pillow refuses a JPEG that ends early,
 * even when only its EOI marker is missing; so does covct.
 */
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE and size_t */
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "covct/image.h"
#include "covct/limits.h"

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A,
                                   '\n'};

/* Pillow's L24 (libImaging/Convert.c): ITU-R BT.601, rounded. */
static inline uint8_t luma(unsigned r, unsigned g, unsigned b)
{
    return (uint8_t)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

static covct_rc check_size(uint32_t w, uint32_t h, const char *fmt,
                           covct_error *err)
{
    if (w == 0 || h == 0)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT, "%s: image is %u x %u "
                         "pixels (empty)", fmt, (unsigned)w, (unsigned)h);
    if (w > COVCT_IMAGE_MAX_SIDE || h > COVCT_IMAGE_MAX_SIDE ||
        (uint64_t)w * h > COVCT_LIMIT_ALLOC_MAX)
        return COVCT_ERR(err, COVCT_ERR_LIMIT, "%s: image is %u x %u "
                         "pixels; covct reads at most %u x %u", fmt,
                         (unsigned)w, (unsigned)h, COVCT_IMAGE_MAX_SIDE,
                         COVCT_IMAGE_MAX_SIDE);
    return COVCT_OK;
}

static covct_rc alloc_pixels(covct_image *img, uint32_t w, uint32_t h,
                             const char *fmt, covct_error *err)
{
    size_t n = (size_t)w * h; /* check_size bounds it */
    img->pixels = covct_malloc(n);
    if (!img->pixels)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "%s: cannot allocate %zu "
                         "bytes for a %u x %u image", fmt, n, (unsigned)w,
                         (unsigned)h);
    img->width = w;
    img->height = h;
    return COVCT_OK;
}

/* ---- JPEG (libjpeg-turbo) ------------------------------------------------ */

typedef struct jpg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int lost;                  /* a warning that means pixels were lost */
    int eof;                   /* the data ended before the decoder was done */
    char msg[JMSG_LENGTH_MAX]; /* the first such warning */
} jpg_err;

typedef struct jpg_job {
    struct jpeg_decompress_struct ci;
    jpg_err jerr;
    const uint8_t *src;
    size_t len;
    covct_image img;
    int created;
    covct_rc rc; /* set (with err) when jpg_body gives up by itself */
    covct_error *err;
} jpg_job;

static void jpg_error_exit(j_common_ptr cinfo)
{
    jpg_err *e = (jpg_err *)cinfo->err;
    longjmp(e->jb, 1);
}

/* libjpeg carries on after these with made-up data; covct, like Pillow,
 * refuses the image.  The end of the data (jpeg_mem_src then inserts an
 * EOI) counts too: Pillow calls that "image file is truncated". */
static void jpg_emit(j_common_ptr cinfo, int level)
{
    jpg_err *e = (jpg_err *)cinfo->err;
    if (level >= 0)
        return; /* trace messages */
    e->pub.num_warnings++;
    int code = e->pub.msg_code;
    if (code == JWRN_JPEG_EOF)
        e->eof = 1;
    if (!e->lost && (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER ||
                     code == JWRN_HUFF_BAD_CODE ||
                     code == JWRN_MUST_RESYNC)) {
        e->lost = 1;
        e->pub.format_message(cinfo, e->msg);
    }
}

static void jpg_output(j_common_ptr cinfo) { (void)cinfo; }

static void jpg_body(jpg_job *j)
{
    struct jpeg_decompress_struct *ci = &j->ci;
    j->created = 1; /* before the call: the struct starts zeroed */
    jpeg_create_decompress(ci);
    /* No backing store: a progressive image whose coefficients would need
     * more than this fails with JERR_NO_BACKING_STORE. */
    ci->mem->max_memory_to_use = (long)COVCT_LIMIT_ALLOC_MAX;
    jpeg_mem_src(ci, j->src, (unsigned long)j->len);
    jpeg_read_header(ci, TRUE);
    if (j->jerr.lost)
        return;
    j->rc = check_size(ci->image_width, ci->image_height, "JPEG", j->err);
    if (j->rc)
        return;
    /* Gray output: the Y of YCbCr as is, RGB by libjpeg's weights; what
     * Pillow's draft("L") and every libjpeg-based gray reader give. */
    ci->out_color_space = JCS_GRAYSCALE;
    ci->dct_method = JDCT_ISLOW;
    ci->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(ci);
    if (j->jerr.lost)
        return;
    if (ci->output_components != 1 || ci->output_width != ci->image_width ||
        ci->output_height != ci->image_height) {
        j->rc = COVCT_ERR(j->err, COVCT_ERR_INTERNAL, "JPEG: decoder gives "
                          "%u x %u x %d instead of %u x %u x 1",
                          ci->output_width, ci->output_height,
                          ci->output_components, ci->image_width,
                          ci->image_height);
        return;
    }
    j->rc = alloc_pixels(&j->img, ci->output_width, ci->output_height,
                         "JPEG", j->err);
    if (j->rc)
        return;
    while (ci->output_scanline < ci->output_height) {
        JSAMPROW row = j->img.pixels +
                       (size_t)ci->output_scanline * ci->output_width;
        if (jpeg_read_scanlines(ci, &row, 1) != 1) {
            j->rc = COVCT_ERR(j->err, COVCT_ERR_CORRUPT, "JPEG: decoder "
                              "returned no scanline at row %u",
                              ci->output_scanline);
            return;
        }
        if (j->jerr.lost)
            return;
    }
    jpeg_finish_decompress(ci);
}

/* setjmp lives here, with no local state that longjmp could clobber. */
static covct_rc jpg_run(jpg_job *j)
{
    if (setjmp(j->jerr.jb)) {
        char msg[JMSG_LENGTH_MAX];
        j->jerr.pub.format_message((j_common_ptr)&j->ci, msg);
        size_t left = j->ci.src ? j->ci.src->bytes_in_buffer : 0;
        switch (j->jerr.pub.msg_code) {
        case JERR_OUT_OF_MEMORY:
            return COVCT_ERR(j->err, COVCT_ERR_NOMEM, "JPEG: out of memory "
                             "(libjpeg-turbo: %s)", msg);
        case JERR_NO_BACKING_STORE:
            return COVCT_ERR(j->err, COVCT_ERR_LIMIT, "JPEG: decoding this "
                             "%u x %u image needs more than %zu bytes of "
                             "memory (libjpeg-turbo: %s)",
                             j->ci.image_width, j->ci.image_height,
                             (size_t)COVCT_LIMIT_ALLOC_MAX, msg);
        case JERR_BAD_PRECISION:
        case JERR_CONVERSION_NOTIMPL:
            return COVCT_ERR(j->err, COVCT_ERR_UNSUPPORTED, "JPEG: %s "
                             "(libjpeg-turbo)", msg);
        default:
            break;
        }
        if (j->jerr.eof)
            return COVCT_ERR(j->err, COVCT_ERR_CORRUPT, "JPEG: truncated: "
                             "the data end after %zu bytes, before the "
                             "image is complete (libjpeg-turbo: %s)", j->len,
                             msg);
        return COVCT_ERR(j->err, COVCT_ERR_CORRUPT,
                         "JPEG: %s (libjpeg-turbo, at or before byte %zu)",
                         msg, j->len - left);
    }
    jpg_body(j);
    if (j->rc)
        return j->rc;
    if (j->jerr.eof)
        return COVCT_ERR(j->err, COVCT_ERR_CORRUPT, "JPEG: truncated: the "
                         "data end after %zu bytes, before the image is "
                         "complete (libjpeg-turbo: %s)", j->len,
                         j->jerr.msg);
    if (j->jerr.lost) {
        size_t left = j->ci.src ? j->ci.src->bytes_in_buffer : 0;
        return COVCT_ERR(j->err, COVCT_ERR_CORRUPT, "JPEG: damaged data: "
                         "%s (libjpeg-turbo, at or before byte %zu)",
                         j->jerr.msg, j->len - left);
    }
    return COVCT_OK;
}

static covct_rc decode_jpeg(const uint8_t *buf, size_t len, covct_image *out,
                            covct_error *err)
{
    jpg_job *j = covct_calloc(1, sizeof *j);
    if (!j)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "JPEG: cannot allocate %zu "
                         "bytes of decoder state", sizeof *j);
    j->src = buf;
    j->len = len;
    j->err = err;
    j->ci.err = jpeg_std_error(&j->jerr.pub);
    j->jerr.pub.error_exit = jpg_error_exit;
    j->jerr.pub.emit_message = jpg_emit;
    j->jerr.pub.output_message = jpg_output;
    covct_rc rc = jpg_run(j);
    if (j->created)
        jpeg_destroy_decompress(&j->ci);
    if (rc)
        covct_free(j->img.pixels);
    else
        *out = j->img;
    covct_free(j);
    return rc;
}

/* ---- PNG (libpng) ------------------------------------------------------- */

typedef struct png_layout {
    int keep16;      /* INDEX of 16-bit gray: samples are checked <= 255 */
    int rgb;         /* three 8-bit samples per pixel */
    int use_lut;     /* palette to luminance */
    uint8_t lut[256];
} png_layout;

typedef struct png_job {
    jmp_buf jb;
    png_structp png;
    png_infop info;
    const uint8_t *src;
    size_t len, pos;
    size_t short_by; /* a read ran past the end by this many bytes */
    int mode;
    covct_image img;
    uint8_t *raw;    /* rows as libpng delivers them, if not 1 byte/pixel */
    png_bytep *rows; /* for interlaced images */
    png_layout lay;  /* what libpng delivers and how to convert it */
    covct_rc rc;     /* set (with err) when png_body gives up by itself */
    covct_error *err;
    char msg[200];   /* libpng's message */
} png_job;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_job *j = png_get_error_ptr(png);
    snprintf(j->msg, sizeof j->msg, "%s", msg ? msg : "unknown error");
    longjmp(j->jb, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* ancillary trouble (bad CRC, odd chunk) is not fatal */
}

static void png_on_read(png_structp png, png_bytep dst, size_t n)
{
    png_job *j = png_get_io_ptr(png);
    size_t left = j->len - j->pos;
    if (n > left) {
        j->short_by = n - left;
        png_error(png, "truncated");
    }
    memcpy(dst, j->src + j->pos, n);
    j->pos += n;
}

/* One row of libpng output to one byte per pixel; 0 or an error. */
static covct_rc png_convert_row(png_job *j, const uint8_t *src, uint8_t *dst,
                                uint32_t y)
{
    const png_layout *lay = &j->lay;
    uint32_t w = j->img.width;
    if (lay->rgb) {
        for (uint32_t x = 0; x < w; x++)
            dst[x] = luma(src[3 * x], src[3 * x + 1], src[3 * x + 2]);
    } else if (lay->keep16) {
        for (uint32_t x = 0; x < w; x++) {
            unsigned v = (unsigned)src[2 * x] << 8 | src[2 * x + 1];
            if (v > 255)
                return COVCT_ERR(j->err, COVCT_ERR_UNSUPPORTED,
                                 "PNG: 16-bit sample %u at x=%u y=%u does "
                                 "not fit an 8-bit label (at most 255)", v,
                                 (unsigned)x, (unsigned)y);
            dst[x] = (uint8_t)v;
        }
    } else if (lay->use_lut) {
        for (uint32_t x = 0; x < w; x++)
            dst[x] = lay->lut[src[x]];
    } else if (src != dst) {
        memcpy(dst, src, w);
    }
    return COVCT_OK;
}

static void png_body(png_job *j)
{
    png_layout *lay = &j->lay;
    png_structp png = j->png;
    png_infop info = j->info;
    png_set_read_fn(png, j, png_on_read);
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, ct, il;
    png_get_IHDR(png, info, &w, &h, &depth, &ct, &il, NULL, NULL);
    j->rc = check_size(w, h, "PNG", j->err);
    if (j->rc)
        return;
    int ch = 1;
    switch (ct) {
    case PNG_COLOR_TYPE_PALETTE:
        png_set_packing(png); /* 1/2/4-bit indices to bytes, unscaled */
        if (j->mode == COVCT_IMAGE_GRAY) {
            png_colorp pal = NULL;
            int n = 0;
            png_get_PLTE(png, info, &pal, &n);
            /* Pillow fills entries the PLTE lacks with the gray ramp. */
            for (int i = 0; i < 256; i++)
                lay->lut[i] = (uint8_t)i;
            for (int i = 0; i < n && i < 256 && pal; i++)
                lay->lut[i] = luma(pal[i].red, pal[i].green, pal[i].blue);
            lay->use_lut = 1;
        }
        break;
    case PNG_COLOR_TYPE_GRAY:
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        if (ct == PNG_COLOR_TYPE_GRAY_ALPHA)
            png_set_strip_alpha(png);
        if (depth < 8) {
            if (j->mode == COVCT_IMAGE_GRAY)
                png_set_expand_gray_1_2_4_to_8(png); /* bit replication */
            else
                png_set_packing(png);
        } else if (depth == 16) {
            if (j->mode == COVCT_IMAGE_GRAY)
                png_set_strip_16(png); /* the high byte */
            else
                lay->keep16 = 1;
        }
        break;
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_RGB_ALPHA:
        if (j->mode != COVCT_IMAGE_GRAY) {
            j->rc = COVCT_ERR(j->err, COVCT_ERR_UNSUPPORTED, "PNG: a colour "
                              "(%s) image cannot be a label image: labels "
                              "must be a palette or grayscale PNG",
                              ct == PNG_COLOR_TYPE_RGB ? "RGB" : "RGBA");
            return;
        }
        if (depth == 16)
            png_set_strip_16(png);
        if (ct == PNG_COLOR_TYPE_RGB_ALPHA)
            png_set_strip_alpha(png);
        lay->rgb = 1;
        ch = 3;
        break;
    default:
        j->rc = COVCT_ERR(j->err, COVCT_ERR_CORRUPT, "PNG: colour type %d "
                          "does not exist", ct);
        return;
    }
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t bpp = (size_t)ch * (lay->keep16 ? 2 : 1);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (png_get_channels(png, info) != ch ||
        png_get_bit_depth(png, info) != (lay->keep16 ? 16 : 8) ||
        rowbytes != bpp * w) {
        j->rc = COVCT_ERR(j->err, COVCT_ERR_INTERNAL, "PNG: libpng gives "
                          "%d channels of %d bits, %zu bytes a row, for "
                          "colour type %d depth %d", png_get_channels(png,
                          info), png_get_bit_depth(png, info), rowbytes, ct,
                          depth);
        return;
    }
    j->rc = alloc_pixels(&j->img, w, h, "PNG", j->err);
    if (j->rc)
        return;
    if (passes == 1) {
        /* Row by row: at most one wide row besides the pixels. */
        if (bpp > 1) {
            j->raw = covct_malloc(rowbytes);
            if (!j->raw) {
                j->rc = COVCT_ERR(j->err, COVCT_ERR_NOMEM, "PNG: cannot "
                                  "allocate a %zu-byte row", rowbytes);
                return;
            }
        }
        for (uint32_t y = 0; y < h; y++) {
            uint8_t *dst = j->img.pixels + (size_t)y * w;
            uint8_t *src = bpp > 1 ? j->raw : dst;
            png_read_row(png, src, NULL);
            j->rc = png_convert_row(j, src, dst, y);
            if (j->rc)
                return;
        }
        return;
    }
    /* Adam7: every pass touches every row, so all rows stay in memory. */
    size_t total;
    if (bpp > 1 && !covct_mul_size(rowbytes, h, &total)) {
        j->rc = COVCT_ERR(j->err, COVCT_ERR_LIMIT, "PNG: %u rows of %zu "
                          "bytes overflow", (unsigned)h, rowbytes);
        return;
    }
    if (bpp > 1) {
        j->raw = covct_malloc(total);
        if (!j->raw) {
            j->rc = COVCT_ERR(j->err, COVCT_ERR_NOMEM, "PNG: cannot allocate "
                              "%zu bytes for an interlaced image", total);
            return;
        }
    }
    j->rows = covct_malloc((size_t)h * sizeof *j->rows);
    if (!j->rows) {
        j->rc = COVCT_ERR(j->err, COVCT_ERR_NOMEM, "PNG: cannot allocate "
                          "%u row pointers", (unsigned)h);
        return;
    }
    for (uint32_t y = 0; y < h; y++)
        j->rows[y] = bpp > 1 ? j->raw + (size_t)y * rowbytes
                             : j->img.pixels + (size_t)y * w;
    png_read_image(png, j->rows);
    for (uint32_t y = 0; y < h; y++) {
        j->rc = png_convert_row(j, j->rows[y],
                                j->img.pixels + (size_t)y * w, y);
        if (j->rc)
            return;
    }
    /* The chunks after the image data (IEND included) are not read:
     * Pillow does not need them either. */
}

/* setjmp lives here, with no local state that longjmp could clobber. */
static covct_rc png_run(png_job *j)
{
    if (setjmp(j->jb)) {
        if (j->short_by)
            return COVCT_ERR(j->err, COVCT_ERR_CORRUPT, "PNG: truncated: "
                             "the data end after %zu bytes, %zu more were "
                             "needed", j->len, j->short_by);
        if (strcasestr(j->msg, "out of memory") ||
            strcasestr(j->msg, "insufficient memory"))
            return COVCT_ERR(j->err, COVCT_ERR_NOMEM, "PNG: %s (libpng)",
                             j->msg);
        return COVCT_ERR(j->err, COVCT_ERR_CORRUPT,
                         "PNG: %s (libpng, at or before byte %zu)", j->msg,
                         j->pos);
    }
    png_body(j);
    return j->rc;
}

static covct_rc decode_png(const uint8_t *buf, size_t len, int mode,
                           covct_image *out, covct_error *err)
{
    png_job *j = covct_calloc(1, sizeof *j);
    if (!j)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "PNG: cannot allocate "
                         "decoder state");
    j->src = buf;
    j->len = len;
    j->mode = mode;
    j->err = err;
    covct_rc rc;
    j->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, j, png_on_error,
                                    png_on_warning);
    if (j->png)
        j->info = png_create_info_struct(j->png);
    if (!j->png || !j->info)
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "PNG: out of memory");
    else
        rc = png_run(j);
    if (j->png)
        png_destroy_read_struct(&j->png, j->info ? &j->info : NULL, NULL);
    covct_free(j->raw);
    covct_free(j->rows);
    if (rc)
        covct_free(j->img.pixels);
    else
        *out = j->img;
    covct_free(j);
    return rc;
}

/* ---- entry points ------------------------------------------------------- */

covct_rc covct_image_decode(const uint8_t *buf, size_t len, int mode,
                            covct_image *out, covct_error *err)
{
    if (!out)
        return COVCT_ERR(err, COVCT_ERR_ARG, "image: no output image");
    memset(out, 0, sizeof *out);
    if (!buf && len)
        return COVCT_ERR(err, COVCT_ERR_ARG, "image: no data");
    if (mode != COVCT_IMAGE_GRAY && mode != COVCT_IMAGE_INDEX)
        return COVCT_ERR(err, COVCT_ERR_ARG, "image: unknown mode %d", mode);
    if (len == 0)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT, "image: empty (0 bytes), "
                         "not a JPEG or PNG image");
    if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) {
        if (mode == COVCT_IMAGE_INDEX)
            return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED, "JPEG: a lossy "
                             "JPEG cannot be a label image: labels must be "
                             "a palette or grayscale PNG");
        return decode_jpeg(buf, len, out, err);
    }
    if (len >= sizeof png_sig && memcmp(buf, png_sig, sizeof png_sig) == 0)
        return decode_png(buf, len, mode, out, err);
    if (len < sizeof png_sig && memcmp(buf, png_sig, len) == 0)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT, "PNG: truncated: the data "
                         "end after %zu bytes, inside the signature", len);
    if (len < 3 && buf[0] == 0xFF && (len == 1 || buf[1] == 0xD8))
        return COVCT_ERR(err, COVCT_ERR_CORRUPT, "JPEG: truncated: the data "
                         "end after %zu bytes, inside the SOI marker", len);
    char shown[40];
    size_t k = 0;
    for (size_t i = 0; i < len && i < 8; i++)
        k += (size_t)snprintf(shown + k, sizeof shown - k, "%s%02X",
                              i ? " " : "", buf[i]);
    return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED, "image: not a JPEG or PNG "
                     "image (it starts with %s%s)", shown,
                     len > 8 ? " ..." : "");
}

covct_rc covct_image_read(const char *path, int mode, covct_image *out,
                          covct_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!path || !out)
        return COVCT_ERR(err, COVCT_ERR_ARG, "image: missing argument");
    uint8_t *data = NULL;
    size_t len = 0;
    covct_rc rc = covct_file_read(path, &data, &len, err);
    if (rc)
        return rc; /* covct_file_read names the file */
    rc = covct_image_decode(data, len, mode, out, err);
    if (rc)
        covct_error_prefix(err, "%s: ", path);
    covct_free(data);
    return rc;
}

/* ---- writing ------------------------------------------------------------ */

typedef struct png_wjob {
    jmp_buf jb;
    png_structp png;
    png_infop info;
    const covct_image *img;
    covct_buf *out;
    covct_rc rc; /* set (with err) by our own write callback */
    covct_error *err;
    char msg[200];
} png_wjob;

static void png_on_werror(png_structp png, png_const_charp msg)
{
    png_wjob *j = png_get_error_ptr(png);
    snprintf(j->msg, sizeof j->msg, "%s", msg ? msg : "unknown error");
    longjmp(j->jb, 1);
}

static void png_on_write(png_structp png, png_bytep data, size_t len)
{
    png_wjob *j = png_get_io_ptr(png);
    if (covct_buf_append(j->out, data, len, j->err) != COVCT_OK) {
        j->rc = COVCT_ERR_NOMEM;
        png_error(png, "out of memory");
    }
}

static void png_on_flush(png_structp png) { (void)png; }

static void png_wbody(png_wjob *j)
{
    const covct_image *img = j->img;
    png_set_write_fn(j->png, j, png_on_write, png_on_flush);
    png_set_IHDR(j->png, j->info, img->width, img->height, 8,
                 PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(j->png, j->info);
    for (uint32_t y = 0; y < img->height; y++)
        png_write_row(j->png, (png_const_bytep)(img->pixels +
                                                (size_t)y * img->width));
    png_write_end(j->png, j->info);
}

static covct_rc png_wrun(png_wjob *j)
{
    if (setjmp(j->jb)) {
        if (j->rc)
            return j->rc; /* our callback already recorded the error */
        return COVCT_ERR(j->err, COVCT_ERR_INTERNAL, "PNG: libpng: %s",
                         j->msg);
    }
    png_wbody(j);
    return COVCT_OK;
}

covct_rc covct_image_encode_png(const covct_image *img, covct_buf *out,
                                covct_error *err)
{
    if (!img || !out || !img->pixels)
        return COVCT_ERR(err, COVCT_ERR_ARG, "PNG: missing image");
    if (img->width == 0 || img->height == 0 ||
        img->width > COVCT_IMAGE_MAX_SIDE ||
        img->height > COVCT_IMAGE_MAX_SIDE)
        return COVCT_ERR(err, COVCT_ERR_ARG, "PNG: cannot write a %u x %u "
                         "image (1 to %u pixels a side)",
                         (unsigned)img->width, (unsigned)img->height,
                         COVCT_IMAGE_MAX_SIDE);
    png_wjob *j = covct_calloc(1, sizeof *j);
    if (!j)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "PNG: cannot allocate "
                         "encoder state");
    j->img = img;
    j->out = out;
    j->err = err;
    size_t start_len = out->len;
    covct_rc rc;
    j->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, j, png_on_werror,
                                     png_on_warning);
    if (j->png)
        j->info = png_create_info_struct(j->png);
    if (!j->png || !j->info)
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "PNG: out of memory");
    else
        rc = png_wrun(j);
    if (j->png)
        png_destroy_write_struct(&j->png, j->info ? &j->info : NULL);
    if (rc)
        out->len = start_len;
    covct_free(j);
    return rc;
}

covct_rc covct_image_write_png(const char *path, const covct_image *img,
                               covct_error *err)
{
    if (!path)
        return COVCT_ERR(err, COVCT_ERR_ARG, "PNG: no path");
    covct_buf b = {0};
    covct_rc rc = covct_image_encode_png(img, &b, err);
    if (!rc) {
        rc = covct_file_write_bytes(path, b.data, b.len, err);
    } else {
        covct_error_prefix(err, "%s: ", path);
    }
    covct_buf_free(&b);
    return rc;
}

void covct_image_free(covct_image *img)
{
    if (!img)
        return;
    covct_free(img->pixels);
    memset(img, 0, sizeof *img);
}
