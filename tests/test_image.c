/*
 * The image module (src/image/image.c).
 *
 * Without arguments:
 *   - synthetic images: a PNG write/read round trip, a JPEG made here with
 *     libjpeg, PNGs made here with zlib (RGB, 16-bit, 1-bit, palette);
 *   - refused inputs, each checked by a substring of its message: empty,
 *     truncated JPEG and PNG at several lengths, a text file, colour and
 *     JPEG input as a label image, 16-bit labels over 255, oversized
 *     images, a bad CRC; every allocation failing in turn;
 *   - the 50 training slices of ../shared/data/covid-semiseg-train: every
 *     image decodes, masks have the size of their slice, binary masks hold
 *     only 0/255 and multi-class masks only 0/1/2 (pixel counts printed),
 *     and the two kinds of mask mark the same pixels.
 *
 * With `--expect FILE`: compare with Pillow.  tests/image_pil.py (run by
 * tests/image_pil.sh) writes FILE: for each image a line
 * "GROUP MODE WIDTH HEIGHT PATH" and then WIDTH*HEIGHT bytes, the pixels
 * Pillow decodes.  Every image must match exactly.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <zlib.h>

#include "covct/core.h"
#include "covct/image.h"
#include "test.h"

static char tmpdir[1024];

static const char *tpath(const char *name)
{
    static char bufs[4][4096];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, 4096, "%s/%s", tmpdir, name);
    return b;
}

static void make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/covct-image-XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", tmpdir, strerror(errno));
        exit(1);
    }
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        unlink(tpath(e->d_name));
    }
    closedir(d);
    rmdir(tmpdir);
}

static int has_text(const covct_error *e, const char *s)
{
    return strstr(e->msg, s) != NULL;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

/* Decode must fail with rc and a message containing `want`. */
#define REFUSED(buf, len, mode, want_rc, want)                              \
    do {                                                                    \
        covct_error e_ = {0};                                               \
        covct_image im_;                                                    \
        covct_rc r_ = covct_image_decode((buf), (len), (mode), &im_, &e_);  \
        CHECKF(r_ == (want_rc) && has_text(&e_, (want)) && !im_.pixels &&   \
                   !im_.width,                                              \
               "len %zu mode %d: rc %d msg '%s' (want '%s')", (size_t)(len), \
               (mode), (int)r_, e_.msg, (want));                            \
        covct_image_free(&im_);                                             \
    } while (0)

/* ---- synthetic inputs -------------------------------------------------- */

/* A PNG written chunk by chunk with zlib: any colour type and depth.
 * rows: height rows of rowbytes each (filter bytes are added here). */
static void put32(covct_buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                    (uint8_t)v};
    covct_buf_append(b, x, 4, NULL);
}

static void put_chunk(covct_buf *b, const char *type, const uint8_t *d,
                      size_t n)
{
    put32(b, (uint32_t)n);
    size_t at = b->len;
    covct_buf_append(b, type, 4, NULL);
    if (n)
        covct_buf_append(b, d, n, NULL);
    put32(b, (uint32_t)crc32(0, b->data + at, (uInt)(n + 4)));
}

static void make_png(covct_buf *b, uint32_t w, uint32_t h, int depth, int ct,
                     const uint8_t *rows, size_t rowbytes,
                     const uint8_t *plte, size_t nplte)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A,
                                   '\n'};
    b->len = 0;
    covct_buf_append(b, sig, 8, NULL);
    uint8_t ihdr[13] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16),
                        (uint8_t)(w >> 8),  (uint8_t)w,
                        (uint8_t)(h >> 24), (uint8_t)(h >> 16),
                        (uint8_t)(h >> 8),  (uint8_t)h,
                        (uint8_t)depth,     (uint8_t)ct, 0, 0, 0};
    put_chunk(b, "IHDR", ihdr, 13);
    if (plte)
        put_chunk(b, "PLTE", plte, nplte);
    size_t rawn = (size_t)h * (rowbytes + 1);
    uint8_t *raw = malloc(rawn);
    for (uint32_t y = 0; y < h; y++) {
        raw[(size_t)y * (rowbytes + 1)] = 0;
        memcpy(raw + (size_t)y * (rowbytes + 1) + 1, rows + y * rowbytes,
               rowbytes);
    }
    uLongf zn = compressBound((uLong)rawn);
    uint8_t *z = malloc(zn);
    if (compress(z, &zn, raw, (uLong)rawn) != Z_OK) {
        fprintf(stderr, "compress failed\n");
        exit(1);
    }
    put_chunk(b, "IDAT", z, zn);
    put_chunk(b, "IEND", NULL, 0);
    free(raw);
    free(z);
}

/* A gray or RGB JPEG made with libjpeg (quality 90). */
static void make_jpeg(uint8_t **out, unsigned long *outlen, uint32_t w,
                      uint32_t h, int comps, const uint8_t *px,
                      int progressive)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    *out = NULL;
    *outlen = 0;
    jpeg_mem_dest(&c, out, outlen);
    c.image_width = w;
    c.image_height = h;
    c.input_components = comps;
    c.in_color_space = comps == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    if (progressive)
        jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < h) {
        JSAMPROW r = (JSAMPROW)(px + (size_t)c.next_scanline * w * comps);
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
}

/* Deterministic texture, so that JPEGs have real entropy-coded data. */
static uint8_t texture(uint32_t x, uint32_t y, uint32_t k)
{
    uint32_t v = x * 2654435761u ^ y * 40503u ^ k * 97u;
    return (uint8_t)(((x * 7 + y * 3) & 0xff) ^ ((v >> 13) & 0x1f));
}

/* ---- tests ------------------------------------------------------------- */

static void test_round_trip(void)
{
    enum { W = 37, H = 23 };
    covct_image img = {W, H, malloc(W * H)};
    for (uint32_t y = 0; y < H; y++)
        for (uint32_t x = 0; x < W; x++)
            img.pixels[y * W + x] = (uint8_t)(x * 7 + y * 11 + (x ^ y));
    img.pixels[0] = 0;
    img.pixels[1] = 255;
    covct_error err = {0};
    const char *p = tpath("round.png");
    CHECKF(covct_image_write_png(p, &img, &err) == COVCT_OK, "%s", err.msg);
    for (int mode = COVCT_IMAGE_GRAY; mode <= COVCT_IMAGE_INDEX; mode++) {
        covct_image back;
        covct_error_clear(&err);
        CHECKF(covct_image_read(p, mode, &back, &err) == COVCT_OK, "%s",
               err.msg);
        CHECK(back.width == W && back.height == H);
        CHECK(back.pixels && !memcmp(back.pixels, img.pixels, W * H));
        covct_image_free(&back);
        CHECK(back.pixels == NULL && back.width == 0);
    }
    /* The file is an 8-bit grayscale PNG: colour type 0, depth 8. */
    uint8_t *data;
    size_t len;
    CHECK(covct_file_read(p, &data, &len, &err) == COVCT_OK);
    CHECK(len > 33 && !memcmp(data + 12, "IHDR", 4) && data[24] == 8 &&
          data[25] == 0);
    covct_free(data);
    /* Overwriting is atomic: no temporary file is left beside it. */
    img.pixels[5] ^= 0xff;
    CHECK(covct_image_write_png(p, &img, &err) == COVCT_OK);
    covct_image back;
    CHECK(covct_image_read(p, COVCT_IMAGE_GRAY, &back, &err) == COVCT_OK);
    CHECK(back.pixels && back.pixels[5] == img.pixels[5]);
    covct_image_free(&back);
    DIR *d = opendir(tmpdir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    CHECKF(n == 1, "%d files in the temporary folder", n);
    /* A bad image is not written. */
    covct_image bad = {0, 5, img.pixels};
    covct_error_clear(&err);
    CHECK(covct_image_write_png(tpath("bad.png"), &bad, &err) ==
          COVCT_ERR_ARG);
    CHECKF(has_text(&err, "bad.png") && has_text(&err, "0 x 5"), "%s",
           err.msg);
    CHECK(access(tpath("bad.png"), F_OK) != 0);
    /* A 1 x 1 image. */
    covct_image one = {1, 1, img.pixels};
    covct_buf b = {0};
    CHECK(covct_image_encode_png(&one, &b, &err) == COVCT_OK);
    CHECK(covct_image_decode(b.data, b.len, COVCT_IMAGE_INDEX, &back,
                             &err) == COVCT_OK);
    CHECK(back.width == 1 && back.height == 1 &&
          back.pixels[0] == img.pixels[0]);
    covct_image_free(&back);
    covct_buf_free(&b);
    free(img.pixels);
    printf("round trip: 37 x 23 gray PNG written and read back equal\n");
}

static void test_jpeg(void)
{
    enum { W = 64, H = 48 };
    uint8_t *px = malloc(W * H * 3);
    for (uint32_t y = 0; y < H; y++)
        for (uint32_t x = 0; x < W; x++)
            for (uint32_t k = 0; k < 3; k++)
                px[(y * W + x) * 3 + k] = texture(x, y, k);
    uint8_t *jpg;
    unsigned long jlen;
    make_jpeg(&jpg, &jlen, W, H, 1, px, 0);
    covct_error err = {0};
    covct_image img;
    CHECKF(covct_image_decode(jpg, jlen, COVCT_IMAGE_GRAY, &img, &err) ==
               COVCT_OK, "%s", err.msg);
    CHECK(img.width == W && img.height == H);
    /* Lossy, but close to what went in. */
    int maxd = 0;
    for (size_t i = 0; img.pixels && i < (size_t)W * H; i++) {
        int d = abs((int)img.pixels[i] - (int)px[i]);
        maxd = d > maxd ? d : maxd;
    }
    CHECKF(maxd < 40, "max difference %d", maxd);
    /* Truncated at several lengths, down to the EOI marker alone
     * (Pillow refuses that too). */
    size_t cuts[] = {1, 2, 3, 10, 20, 100, 300, jlen / 2, jlen - 40,
                     jlen - 3, jlen - 2};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++)
        REFUSED(jpg, cuts[i], COVCT_IMAGE_GRAY, COVCT_ERR_CORRUPT,
                "truncated");
    /* A label image must not be a JPEG. */
    REFUSED(jpg, jlen, COVCT_IMAGE_INDEX, COVCT_ERR_UNSUPPORTED,
            "lossy JPEG cannot be a label image");
    /* Damaged entropy-coded data: a marker in the middle of a scan. */
    uint8_t *dam = malloc(jlen);
    memcpy(dam, jpg, jlen);
    dam[jlen - 60] = 0xFF;
    dam[jlen - 59] = 0xD0 + 5;
    {
        covct_error e = {0};
        covct_image im;
        covct_rc rc = covct_image_decode(dam, jlen, COVCT_IMAGE_GRAY, &im,
                                         &e);
        CHECKF(rc == COVCT_ERR_CORRUPT && has_text(&e, "JPEG: damaged"),
               "rc %d %s", (int)rc, e.msg);
        covct_image_free(&im);
    }
    /* Oversized: patch the frame header's width to 20000. */
    memcpy(dam, jpg, jlen);
    for (size_t i = 2; i + 9 < jlen; i++) {
        if (dam[i] == 0xFF && dam[i + 1] == 0xC0) {
            dam[i + 7] = 20000 >> 8;
            dam[i + 8] = 20000 & 0xff;
            break;
        }
    }
    REFUSED(dam, jlen, COVCT_IMAGE_GRAY, COVCT_ERR_LIMIT,
            "JPEG: image is 20000 x 48 pixels; covct reads at most 16384 x "
            "16384");
    free(dam);
    /* Every allocation failing in turn: a clean error, no leak. */
    int failures = 0;
    for (uint64_t n = 1; n < 50; n++) {
        covct_error e = {0};
        covct_image im;
        covct_alloc_fail_at(n);
        covct_rc rc = covct_image_decode(jpg, jlen, COVCT_IMAGE_GRAY, &im,
                                         &e);
        covct_alloc_fail_at(0);
        if (rc == COVCT_OK) {
            covct_image_free(&im);
            break;
        }
        failures++;
        CHECKF(rc == COVCT_ERR_NOMEM && im.pixels == NULL, "rc %d %s",
               (int)rc, e.msg);
    }
    CHECK(failures >= 2);
    covct_image_free(&img);
    free(jpg);

    /* Colour JPEG, baseline and progressive: luminance. */
    for (int prog = 0; prog < 2; prog++) {
        make_jpeg(&jpg, &jlen, W, H, 3, px, prog);
        covct_error_clear(&err);
        CHECKF(covct_image_decode(jpg, jlen, COVCT_IMAGE_GRAY, &img, &err) ==
                   COVCT_OK, "%s", err.msg);
        maxd = 0;
        for (size_t i = 0; img.pixels && i < (size_t)W * H; i++) {
            int l = (px[3 * i] * 19595 + px[3 * i + 1] * 38470 +
                     px[3 * i + 2] * 7471 + 0x8000) >> 16;
            int d = abs((int)img.pixels[i] - l);
            maxd = d > maxd ? d : maxd;
        }
        CHECKF(maxd < 40, "colour JPEG: max luminance difference %d", maxd);
        covct_image_free(&img);
        /* A progressive JPEG that ends between scans is refused too. */
        size_t pcuts[] = {jlen / 3, jlen / 2, jlen - 2};
        for (size_t i = 0; i < 3; i++)
            REFUSED(jpg, pcuts[i], COVCT_IMAGE_GRAY, COVCT_ERR_CORRUPT,
                    "truncated");
        free(jpg);
    }
    free(px);
    printf("JPEG: gray, colour and progressive decode; truncated, damaged, "
           "oversized and label use refused\n");
}

static void test_png_kinds(void)
{
    covct_buf b = {0};
    covct_error err = {0};
    covct_image img;
    /* RGB 8-bit, 3 x 2: Pillow's luminance (checked against Pillow on
     * many more pixels by image_pil). */
    const uint8_t rgb[18] = {255, 0, 0, 0, 255, 0, 0, 0, 255,
                             1, 2, 3, 128, 128, 128, 250, 9, 8};
    make_png(&b, 3, 2, 8, 2, rgb, 9, NULL, 0);
    CHECKF(covct_image_decode(b.data, b.len, COVCT_IMAGE_GRAY, &img, &err) ==
               COVCT_OK, "%s", err.msg);
    const uint8_t want_rgb[6] = {76, 150, 29, 2, 128, 81};
    CHECK(img.pixels && !memcmp(img.pixels, want_rgb, 6));
    covct_image_free(&img);
    REFUSED(b.data, b.len, COVCT_IMAGE_INDEX, COVCT_ERR_UNSUPPORTED,
            "colour (RGB) image cannot be a label image");
    /* RGBA refused as a label too. */
    const uint8_t rgba[8] = {10, 20, 30, 0, 40, 50, 60, 255};
    make_png(&b, 2, 1, 8, 6, rgba, 8, NULL, 0);
    REFUSED(b.data, b.len, COVCT_IMAGE_INDEX, COVCT_ERR_UNSUPPORTED,
            "colour (RGBA) image");
    /* 16-bit gray: high byte as a picture; as a label, values <= 255 are
     * kept and larger ones refused. */
    const uint8_t g16[6] = {0x00, 0x02, 0x00, 0xff, 0x12, 0x34};
    make_png(&b, 3, 1, 16, 0, g16, 6, NULL, 0);
    CHECK(covct_image_decode(b.data, b.len, COVCT_IMAGE_GRAY, &img, &err) ==
          COVCT_OK);
    CHECK(img.pixels && img.pixels[0] == 0 && img.pixels[1] == 0 &&
          img.pixels[2] == 0x12);
    covct_image_free(&img);
    REFUSED(b.data, b.len, COVCT_IMAGE_INDEX, COVCT_ERR_UNSUPPORTED,
            "16-bit sample 4660 at x=2 y=0 does not fit an 8-bit label");
    make_png(&b, 2, 1, 16, 0, g16, 4, NULL, 0);
    CHECK(covct_image_decode(b.data, b.len, COVCT_IMAGE_INDEX, &img, &err) ==
          COVCT_OK);
    CHECK(img.pixels && img.pixels[0] == 2 && img.pixels[1] == 255);
    covct_image_free(&img);
    /* 1-bit gray: 0/255 as a picture, 0/1 as a label. */
    const uint8_t g1[1] = {0xA0};
    make_png(&b, 4, 1, 1, 0, g1, 1, NULL, 0);
    CHECK(covct_image_decode(b.data, b.len, COVCT_IMAGE_GRAY, &img, &err) ==
          COVCT_OK);
    CHECK(img.pixels && img.pixels[0] == 255 && img.pixels[1] == 0 &&
          img.pixels[2] == 255 && img.pixels[3] == 0);
    covct_image_free(&img);
    CHECK(covct_image_decode(b.data, b.len, COVCT_IMAGE_INDEX, &img, &err) ==
          COVCT_OK);
    CHECK(img.pixels && img.pixels[0] == 1 && img.pixels[1] == 0 &&
          img.pixels[2] == 1 && img.pixels[3] == 0);
    covct_image_free(&img);
    /* 2-bit palette of 3 colours: indices as labels, colours (and the gray
     * ramp for index 3, which the PLTE lacks) as a picture. */
    const uint8_t plte[9] = {0, 0, 0, 128, 0, 0, 0, 128, 0};
    const uint8_t p2[1] = {0x1B}; /* 0 1 2 3 */
    make_png(&b, 4, 1, 2, 3, p2, 1, plte, 9);
    CHECK(covct_image_decode(b.data, b.len, COVCT_IMAGE_INDEX, &img, &err) ==
          COVCT_OK);
    CHECK(img.pixels && img.pixels[0] == 0 && img.pixels[1] == 1 &&
          img.pixels[2] == 2 && img.pixels[3] == 3);
    covct_image_free(&img);
    CHECK(covct_image_decode(b.data, b.len, COVCT_IMAGE_GRAY, &img, &err) ==
          COVCT_OK);
    CHECK(img.pixels && img.pixels[0] == 0 && img.pixels[1] == 38 &&
          img.pixels[2] == 75 && img.pixels[3] == 3);
    covct_image_free(&img);

    /* Truncated at several lengths, from inside the signature to the last
     * byte of the image data's CRC. */
    enum { W = 40, H = 30 };
    uint8_t *rows = malloc(W * H * 3);
    for (uint32_t i = 0; i < W * H * 3; i++)
        rows[i] = texture(i % (W * 3), i / (W * 3), 0);
    make_png(&b, W, H, 8, 2, rows, W * 3, NULL, 0);
    free(rows);
    size_t cuts[] = {1, 4, 7, 8, 12, 20, 32, 33, 40, 45, b.len / 2,
                     b.len - 20, b.len - 13};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++)
        REFUSED(b.data, cuts[i], COVCT_IMAGE_GRAY, COVCT_ERR_CORRUPT,
                "truncated");
    /* Without only its IEND chunk the image is complete (Pillow reads it
     * too). */
    CHECK(covct_image_decode(b.data, b.len - 12, COVCT_IMAGE_GRAY, &img,
                             &err) == COVCT_OK);
    covct_image_free(&img);
    /* Every allocation failing in turn. */
    int failures = 0;
    for (uint64_t n = 1; n < 50; n++) {
        covct_error e = {0};
        covct_alloc_fail_at(n);
        covct_rc rc = covct_image_decode(b.data, b.len, COVCT_IMAGE_GRAY,
                                         &img, &e);
        covct_alloc_fail_at(0);
        if (rc == COVCT_OK) {
            covct_image_free(&img);
            break;
        }
        failures++;
        CHECKF(rc == COVCT_ERR_NOMEM && img.pixels == NULL, "rc %d %s",
               (int)rc, e.msg);
    }
    CHECK(failures >= 2);
    /* A flipped bit in IHDR: libpng's CRC check. */
    b.data[20] ^= 1;
    REFUSED(b.data, b.len, COVCT_IMAGE_GRAY, COVCT_ERR_CORRUPT, "CRC error");
    /* Oversized. */
    const uint8_t one[1] = {0};
    make_png(&b, 1, 1, 8, 0, one, 1, NULL, 0);
    b.data[16] = 0;
    b.data[17] = 0;
    b.data[18] = 0x4E; /* width 20000 */
    b.data[19] = 0x20;
    uint32_t crc = (uint32_t)crc32(0, b.data + 12, 17);
    b.data[29] = (uint8_t)(crc >> 24);
    b.data[30] = (uint8_t)(crc >> 16);
    b.data[31] = (uint8_t)(crc >> 8);
    b.data[32] = (uint8_t)crc;
    REFUSED(b.data, b.len, COVCT_IMAGE_INDEX, COVCT_ERR_LIMIT,
            "PNG: image is 20000 x 1 pixels; covct reads at most 16384 x "
            "16384");
    covct_buf_free(&b);
    printf("PNG: RGB, RGBA, 16-bit, 1-bit, 2-bit palette; truncated, bad "
           "CRC, oversized and colour labels refused\n");
}

static void test_refused_files(void)
{
    covct_error err = {0};
    covct_image img;
    REFUSED((const uint8_t *)"", 0, COVCT_IMAGE_GRAY, COVCT_ERR_CORRUPT,
            "empty (0 bytes)");
    REFUSED(NULL, 0, COVCT_IMAGE_INDEX, COVCT_ERR_CORRUPT, "empty");
    const uint8_t one[1] = {0};
    REFUSED(one, 1, 7, COVCT_ERR_ARG, "unknown mode 7");

    const char *empty = tpath("empty.png");
    write_file(empty, "", 0);
    CHECK(covct_image_read(empty, COVCT_IMAGE_GRAY, &img, &err) ==
          COVCT_ERR_CORRUPT);
    CHECKF(has_text(&err, empty) && has_text(&err, "empty (0 bytes)"), "%s",
           err.msg);

    const char *text = tpath("notes.png");
    const char *words = "This is not an image.\n";
    write_file(text, words, strlen(words));
    covct_error_clear(&err);
    CHECK(covct_image_read(text, COVCT_IMAGE_GRAY, &img, &err) ==
          COVCT_ERR_UNSUPPORTED);
    CHECKF(has_text(&err, text) &&
               has_text(&err, "not a JPEG or PNG image (it starts with 54 "
                              "68 69 73 20 69 73 20 ...)"),
           "%s", err.msg);
    CHECK(img.pixels == NULL && img.width == 0 && img.height == 0);

    covct_error_clear(&err);
    CHECK(covct_image_read(tpath("missing.png"), COVCT_IMAGE_GRAY, &img,
                           &err) != COVCT_OK);
    CHECKF(has_text(&err, "missing.png"), "%s", err.msg);
    printf("refused: empty, text, missing file, bad mode\n");
}

/* ---- the training set -------------------------------------------------- */

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_dataset(void)
{
    const char *root = test_data("covid-semiseg-train");
    char dir[4200], p[4400];
    snprintf(dir, sizeof dir, "%s/LungInfection-Train/Doctor-label/Imgs",
             root);
    DIR *d = opendir(dir);
    CHECKF(d != NULL, "%s", dir);
    if (!d)
        return;
    char *names[256];
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 256;) {
        size_t l = strlen(e->d_name);
        if (l > 4 && !strcmp(e->d_name + l - 4, ".jpg"))
            names[n++] = strndup(e->d_name, l - 4);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_names);
    CHECKF(n == 50, "%zu slices", n);
    uint64_t bin[256] = {0}, multi[256] = {0}, pixels = 0;
    size_t agree = 0, truncs = 0;
    for (size_t i = 0; i < n; i++) {
        covct_image img, img2, gt, gtg, mc;
        covct_error err = {0};
        snprintf(p, sizeof p, "%s/%s.jpg", dir, names[i]);
        CHECKF(covct_image_read(p, COVCT_IMAGE_GRAY, &img, &err) == COVCT_OK,
               "%s", err.msg);
        snprintf(p, sizeof p,
                 "%s/MultiClassInfection-Train/Imgs/%s.jpg", root, names[i]);
        CHECKF(covct_image_read(p, COVCT_IMAGE_GRAY, &img2, &err) ==
                   COVCT_OK, "%s", err.msg);
        snprintf(p, sizeof p, "%s/LungInfection-Train/Doctor-label/GT/%s.png",
                 root, names[i]);
        CHECKF(covct_image_read(p, COVCT_IMAGE_INDEX, &gt, &err) == COVCT_OK,
               "%s", err.msg);
        CHECKF(covct_image_read(p, COVCT_IMAGE_GRAY, &gtg, &err) == COVCT_OK,
               "%s", err.msg);
        snprintf(p, sizeof p, "%s/MultiClassInfection-Train/GT/%s.png", root,
                 names[i]);
        CHECKF(covct_image_read(p, COVCT_IMAGE_INDEX, &mc, &err) == COVCT_OK,
               "%s", err.msg);
        size_t np = (size_t)img.width * img.height;
        int same = img.pixels && img2.pixels && gt.pixels && gtg.pixels &&
                   mc.pixels && img2.width == img.width &&
                   img2.height == img.height && gt.width == img.width &&
                   gt.height == img.height && gtg.width == img.width &&
                   gtg.height == img.height && mc.width == img.width &&
                   mc.height == img.height;
        CHECKF(same, "%s: sizes differ", names[i]);
        if (same) {
            /* The two folders hold the same slices (PROVENANCE.md). */
            CHECKF(!memcmp(img.pixels, img2.pixels, np), "%s", names[i]);
            /* An 8-bit gray mask reads the same both ways. */
            CHECKF(!memcmp(gt.pixels, gtg.pixels, np), "%s", names[i]);
            int ok_bin = 1, ok_mc = 1, ok_agree = 1;
            for (size_t k = 0; k < np; k++) {
                bin[gt.pixels[k]]++;
                multi[mc.pixels[k]]++;
                ok_bin &= gt.pixels[k] == 0 || gt.pixels[k] == 255;
                ok_mc &= mc.pixels[k] <= 2;
                ok_agree &= (gt.pixels[k] != 0) == (mc.pixels[k] != 0);
            }
            CHECKF(ok_bin, "%s: binary mask value other than 0/255",
                   names[i]);
            CHECKF(ok_mc, "%s: multi-class label other than 0/1/2",
                   names[i]);
            agree += ok_agree;
            pixels += np;
        }
        /* A real slice truncated at a few lengths. */
        if (i < 5) {
            uint8_t *data;
            size_t len;
            snprintf(p, sizeof p, "%s/%s.jpg", dir, names[i]);
            if (covct_file_read(p, &data, &len, &err) == COVCT_OK) {
                size_t cuts[] = {len / 10, len / 2, len - 100, len - 2};
                for (size_t c = 0; c < 4; c++, truncs++)
                    REFUSED(data, cuts[c], COVCT_IMAGE_GRAY,
                            COVCT_ERR_CORRUPT, "truncated");
                covct_free(data);
            }
            snprintf(p, sizeof p,
                     "%s/MultiClassInfection-Train/GT/%s.png", root,
                     names[i]);
            if (covct_file_read(p, &data, &len, &err) == COVCT_OK) {
                size_t cuts[] = {len / 10, len / 2, len - 13};
                for (size_t c = 0; c < 3; c++, truncs++)
                    REFUSED(data, cuts[c], COVCT_IMAGE_INDEX,
                            COVCT_ERR_CORRUPT, "truncated");
                covct_free(data);
            }
        }
        covct_image_free(&img);
        covct_image_free(&img2);
        covct_image_free(&gt);
        covct_image_free(&gtg);
        covct_image_free(&mc);
        free(names[i]);
    }
    CHECKF(agree == n, "binary and multi-class masks agree on %zu of %zu",
           agree, n);
    CHECK(bin[0] + bin[255] == pixels && multi[0] + multi[1] + multi[2] ==
                                             pixels);
    CHECK(bin[255] > 0 && multi[1] > 0 && multi[2] > 0);
    printf("covid-semiseg-train: %zu slices, %llu pixels each kind; "
           "5 files decoded per slice\n", n, (unsigned long long)pixels);
    printf("  binary masks (Doctor-label/GT): 0: %llu, 255: %llu, other: "
           "%llu\n", (unsigned long long)bin[0],
           (unsigned long long)bin[255],
           (unsigned long long)(pixels - bin[0] - bin[255]));
    printf("  multi-class masks (MultiClassInfection-Train/GT): 0 "
           "background: %llu, 1 ground glass: %llu, 2 consolidation: %llu, "
           "other: %llu\n", (unsigned long long)multi[0],
           (unsigned long long)multi[1], (unsigned long long)multi[2],
           (unsigned long long)(pixels - multi[0] - multi[1] - multi[2]));
    printf("  GT > 0 equals multi-class > 0 on %zu of %zu slices; %zu "
           "truncated real files refused\n", agree, n, truncs);
}

/* ---- Pillow comparison ------------------------------------------------- */

typedef struct group {
    char name[64];
    size_t images, equal;
    uint64_t pixels, differ;
    int maxdiff;
} group;

static int compare_with_pillow(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return 1;
    }
    group groups[64];
    size_t ng = 0;
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        if (l && line[l - 1] == '\n')
            line[--l] = 0;
        /* GROUP MODE WIDTH HEIGHT PATH */
        char *fields[5];
        char *s = line;
        int k;
        for (k = 0; k < 4; k++) {
            fields[k] = s;
            s = strchr(s, ' ');
            if (!s)
                break;
            *s++ = 0;
        }
        fields[4] = s;
        if (k < 4 || !s) {
            fprintf(stderr, "bad line in %s\n", path);
            fclose(f);
            return 1;
        }
        int mode = !strcmp(fields[1], "INDEX") ? COVCT_IMAGE_INDEX
                                               : COVCT_IMAGE_GRAY;
        unsigned long w = strtoul(fields[2], NULL, 10);
        unsigned long h = strtoul(fields[3], NULL, 10);
        size_t np = (size_t)w * h;
        uint8_t *want = malloc(np ? np : 1);
        if (fread(want, 1, np, f) != np) {
            fprintf(stderr, "%s: short pixel data\n", path);
            free(want);
            fclose(f);
            return 1;
        }
        char gname[64];
        snprintf(gname, sizeof gname, "%s %s", fields[0], fields[1]);
        group *g = NULL;
        for (size_t i = 0; i < ng; i++)
            if (!strcmp(groups[i].name, gname))
                g = &groups[i];
        if (!g && ng < 64) {
            g = &groups[ng++];
            memset(g, 0, sizeof *g);
            snprintf(g->name, sizeof g->name, "%s", gname);
        }
        if (!g) {
            free(want);
            continue;
        }
        covct_image img;
        covct_error err = {0};
        covct_rc rc = covct_image_read(fields[4], mode, &img, &err);
        CHECKF(rc == COVCT_OK, "%s", err.msg);
        g->images++;
        g->pixels += np;
        if (rc == COVCT_OK) {
            CHECKF(img.width == w && img.height == h,
                   "%s: covct %ux%u, Pillow %lux%lu", fields[4], img.width,
                   img.height, w, h);
            if (img.width == w && img.height == h) {
                uint64_t differ = 0;
                for (size_t i = 0; i < np; i++) {
                    int d = abs((int)img.pixels[i] - (int)want[i]);
                    differ += d != 0;
                    g->maxdiff = d > g->maxdiff ? d : g->maxdiff;
                }
                g->differ += differ;
                g->equal += differ == 0;
                CHECKF(differ == 0, "%s (%s): %llu of %zu pixels differ "
                       "from Pillow", fields[4], fields[1],
                       (unsigned long long)differ, np);
            }
        }
        covct_image_free(&img);
        free(want);
    }
    fclose(f);
    size_t total = 0, equal = 0;
    uint64_t pixels = 0;
    for (size_t i = 0; i < ng; i++) {
        group *g = &groups[i];
        printf("Pillow vs covct, %-34s %3zu images, %9llu pixels, %3zu "
               "identical, %llu pixels differ (max %d)\n", g->name,
               g->images, (unsigned long long)g->pixels, g->equal,
               (unsigned long long)g->differ, g->maxdiff);
        total += g->images;
        equal += g->equal;
        pixels += g->pixels;
    }
    printf("Pillow vs covct: %zu of %zu images identical (%llu pixels)\n",
           equal, total, (unsigned long long)pixels);
    CHECK(total > 0);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--expect")) {
        if (compare_with_pillow(argv[2]))
            return 1;
        return test_report();
    }
    make_tmpdir();
    test_round_trip();
    test_jpeg();
    test_png_kinds();
    test_refused_files();
    remove_tmpdir();
    test_dataset();
    return test_report();
}
