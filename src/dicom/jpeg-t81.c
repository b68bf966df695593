/*
 * ITU-T T.81 | ISO/IEC 10918-1 decoder for the processes Debian 12's
 * libjpeg-turbo 2.1.5 cannot decode: extended sequential DCT with 12-bit
 * samples (Annex F, process 4) and lossless (Annex H, process 14), both
 * Huffman coded.  It also decodes 8-bit sequential DCT, which the tests use
 * to compare it with libjpeg-turbo; codec-jpeg.c sends 8-bit DCT streams
 * to libjpeg-turbo.  Why this exists and how it is tested:
 * docs/internals/jpeg.md.
 *
 * Numerical choices follow IJG libjpeg 6b, which dcmtk's libijg12 and
 * libijg16 are built from, so that the output matches dcmdjpeg exactly:
 * the "islow" integer IDCT (jidctint.c) with its range-limit table
 * (jdmaster.c), libjpeg's fancy upsampling (jdsample.c), its YCbCr to RGB
 * tables (jdcolor.c) and the lossless predictors of the IJG lossless patch.
 */
#include <string.h>

#include "dicom/jpeg_t81_int.h"

/* ---- markers (T.81 Table B.1) ------------------------------------------- */
#define M_SOF0 0xC0
#define M_SOF1 0xC1
#define M_SOF3 0xC3
#define M_DHT 0xC4
#define M_JPG 0xC8
#define M_DAC 0xCC
#define M_RST0 0xD0
#define M_RST7 0xD7
#define M_SOI 0xD8
#define M_EOI 0xD9
#define M_SOS 0xDA
#define M_DQT 0xDB
#define M_DNL 0xDC
#define M_DRI 0xDD
#define M_DHP 0xDE
#define M_EXP 0xDF
#define M_APP0 0xE0
#define M_APP14 0xEE
#define M_JPG0 0xF0
#define M_JPG13 0xFD
#define M_COM 0xFE
#define M_TEM 0x01

static int is_sof(uint8_t m)
{
    return m >= 0xC0 && m <= 0xCF && m != M_DHT && m != M_JPG && m != M_DAC;
}

/* Read a marker at *pos: 0xFF, any number of fill bytes 0xFF (B.1.1.2),
 * then the marker code.  Returns 0 if there is none. */
static int read_marker(const uint8_t *s, size_t len, size_t *pos, uint8_t *code)
{
    size_t p = *pos;
    if (p >= len || s[p] != 0xFF)
        return 0;
    while (p < len && s[p] == 0xFF)
        p++;
    if (p >= len || s[p] == 0x00)
        return 0;
    *code = s[p];
    *pos = p + 1;
    return 1;
}

/* Markers without a length field (B.1.1.3): SOI, EOI, RSTm, TEM. */
static int is_standalone(uint8_t m)
{
    return m == M_SOI || m == M_EOI || m == M_TEM ||
           (m >= M_RST0 && m <= M_RST7);
}

/* Read the 16-bit segment length at *pos (B.1.1.4) and check that the
 * segment lies inside the stream.  On success *seg and *n give the
 * parameters after the length field and *pos points past the segment. */
static covct_rc read_segment(const uint8_t *s, size_t len, size_t *pos,
                             uint8_t m, const uint8_t **seg, size_t *n,
                             covct_error *err)
{
    size_t p = *pos;
    if (len - p < 2)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "JPEG: marker 0xFF%02X at byte %zu: stream ends in "
                         "its length field", m, p - 2);
    size_t l = (size_t)s[p] << 8 | s[p + 1];
    if (l < 2 || l > len - p)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "JPEG: marker 0xFF%02X at byte %zu: segment length "
                         "%zu exceeds the %zu bytes left", m, p - 2, l,
                         len - p);
    *seg = s + p + 2;
    *n = l - 2;
    *pos = p + l;
    return COVCT_OK;
}

/* T.81 B.2.2 frame header into info. */
static covct_rc parse_sof(const uint8_t *seg, size_t n, size_t at, uint8_t m,
                          covct_t81_info *info, covct_error *err)
{
    if (n < 6)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "JPEG: SOF%d at byte %zu: header of %zu bytes is "
                         "too short", m - 0xC0, at, n);
    unsigned nf = seg[5];
    if (nf == 0 || n != 6 + 3 * (size_t)nf)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "JPEG: SOF%d at byte %zu: %u components do not fit "
                         "a header of %zu bytes", m - 0xC0, at, nf, n + 2);
    info->sof = m;
    info->sof_offset = at;
    info->precision = seg[0];
    info->rows = (uint16_t)(seg[1] << 8 | seg[2]);
    info->cols = (uint16_t)(seg[3] << 8 | seg[4]);
    info->ncomp = (uint16_t)nf;
    if (info->cols == 0)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "JPEG: SOF%d at byte %zu: zero samples per line",
                         m - 0xC0, at);
    for (unsigned i = 0; i < nf; i++) {
        const uint8_t *c = seg + 6 + 3 * (size_t)i;
        unsigned h = c[1] >> 4, v = c[1] & 15;
        /* B.2.2: H and V are 1 to 4, Tq is 0 to 3. */
        if (h < 1 || h > 4 || v < 1 || v > 4 || c[2] > 3)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "JPEG: SOF%d at byte %zu: component %u has "
                             "sampling %ux%u, table %u", m - 0xC0, at,
                             c[0], h, v, c[2]);
        if (i < COVCT_T81_MAX_COMPONENTS) {
            info->comp_id[i] = c[0];
            info->h[i] = (uint8_t)h;
            info->v[i] = (uint8_t)v;
        }
    }
    return COVCT_OK;
}

/* APP0 "JFIF" and APP14 "Adobe" say how colour is coded (T.871, Adobe
 * Technical Note 5116). */
static void parse_app(const uint8_t *seg, size_t n, uint8_t m,
                      covct_t81_info *info)
{
    if (m == M_APP0 && n >= 5 && memcmp(seg, "JFIF\0", 5) == 0)
        info->jfif = 1;
    if (m == M_APP14 && n >= 12 && memcmp(seg, "Adobe", 5) == 0) {
        info->adobe = 1;
        info->adobe_transform = seg[11];
    }
}

covct_rc covct_codec_t81_probe(const uint8_t *src, size_t len,
                               covct_t81_info *info, covct_error *err)
{
    memset(info, 0, sizeof *info);
    if (!src || len < 4 || src[0] != 0xFF || src[1] != M_SOI)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "JPEG: no SOI marker at byte 0 (stream of %zu bytes)",
                         len);
    size_t pos = 2;
    int have_sof = 0;
    for (;;) {
        size_t at = pos;
        uint8_t m;
        if (!read_marker(src, len, &pos, &m))
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "JPEG: expected a marker at byte %zu before the "
                             "first scan", at);
        at = pos - 2; /* the marker itself, after any fill bytes */
        if (m == M_SOS || m == M_EOI)
            break;
        if (is_standalone(m))
            continue;
        const uint8_t *seg = NULL;
        size_t n = 0;
        covct_rc rc = read_segment(src, len, &pos, m, &seg, &n, err);
        if (rc)
            return rc;
        if (is_sof(m)) {
            if (have_sof)
                return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                 "JPEG: second SOF marker at byte %zu", at);
            rc = parse_sof(seg, n, at, m, info, err);
            if (rc)
                return rc;
            have_sof = 1;
        } else if (m >= M_APP0 && m <= 0xEF) {
            parse_app(seg, n, m, info);
        }
    }
    if (!have_sof)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "JPEG: no SOF marker before the first scan");
    return COVCT_OK;
}

/* ---- Huffman tables (T.81 Annex C, F.2.2.3) ----------------------------- */

/* Codes up to FAST_BITS long are decoded with one table look-up; longer
 * ones with the MAXCODE comparison of Figure F.16. */
#define FAST_BITS 9

typedef struct huff_tbl {
    uint16_t fast[1 << FAST_BITS]; /* length << 8 | value; 0: longer code */
    int32_t maxcode[17];           /* largest code of each length, or -1 */
    int32_t valoff[17];            /* value index of code c of length l:
                                      valoff[l] + c */
    uint8_t bits[16];              /* BITS: number of codes of each length */
    uint8_t vals[256];
    uint16_t nvals;
    uint8_t defined;
} huff_tbl;

/* Build from the BITS and HUFFVAL lists of a DHT segment (C.2, Figures C.1
 * and C.2, F.15).  Returns 0 if the counts describe no valid code. */
static int huff_build(huff_tbl *t, const uint8_t bits[16], const uint8_t *vals,
                      unsigned nvals)
{
    memset(t->fast, 0, sizeof t->fast);
    memcpy(t->bits, bits, sizeof t->bits);
    memcpy(t->vals, vals, nvals);
    t->nvals = (uint16_t)nvals;
    uint32_t code = 0;
    unsigned k = 0;
    t->maxcode[0] = -1;
    for (unsigned l = 1; l <= 16; l++) {
        t->valoff[l] = (int32_t)k - (int32_t)code;
        for (unsigned i = 0; i < bits[l - 1]; i++, code++, k++) {
            if (code >= (1u << l))
                return 0; /* more codes of length l than fit */
            if (l <= FAST_BITS) {
                uint32_t base = code << (FAST_BITS - l);
                for (uint32_t j = 0; j < (1u << (FAST_BITS - l)); j++)
                    t->fast[base + j] = (uint16_t)(l << 8 | vals[k]);
            }
        }
        t->maxcode[l] = bits[l - 1] ? (int32_t)code - 1 : -1;
        /* C.2: a code of all ones is not allowed, so after each length the
         * next code must still fit in l bits (libjpeg's JERR_BAD_HUFF_TABLE
         * test). */
        if (code >= (1u << l))
            return 0;
        code <<= 1;
    }
    t->defined = 1;
    return 1;
}

/* ---- entropy-coded data reader (F.2.2.5, B.1.1.5) ------------------------
 * 64-bit buffer, most significant bit next.  A 0xFF data byte is followed
 * by a stuffed 0x00; 0xFF followed by anything else is a marker, where the
 * reader stops and feeds zero bits, counting them in `pad` so that reading
 * past the end of a segment is detected (a truncated stream). */
typedef struct bitrd {
    const uint8_t *s;
    size_t pos, end;
    uint64_t acc;
    int nbits;
    int pad;
} bitrd;

static void br_init(bitrd *b, const uint8_t *s, size_t pos, size_t end)
{
    b->s = s;
    b->pos = pos;
    b->end = end;
    b->acc = 0;
    b->nbits = 0;
    b->pad = 0;
}

static void br_fill_slow(bitrd *b)
{
    while (b->nbits <= 56) {
        uint64_t c = 0;
        if (b->pos < b->end) {
            c = b->s[b->pos];
            if (c != 0xFF) {
                b->pos++;
            } else if (b->pos + 1 < b->end && b->s[b->pos + 1] == 0x00) {
                b->pos += 2;
            } else {
                c = 0; /* a marker: stay on it */
                if (b->pad < (1 << 20))
                    b->pad += 8;
            }
        } else if (b->pad < (1 << 20)) {
            b->pad += 8;
        }
        b->acc |= c << (56 - b->nbits);
        b->nbits += 8;
    }
}

/* Fast path: the next 8 bytes hold no 0xFF, so as many whole bytes as
 * fit go in at once (at most 7, as nbits < 8 at the least). */
static inline void br_fill(bitrd *b)
{
    if (b->end - b->pos >= 8) {
        uint64_t w;
        memcpy(&w, b->s + b->pos, 8);
        uint64_t nw = ~w; /* a 0xFF byte is a zero byte of nw */
        if (!((nw - 0x0101010101010101ULL) & ~nw & 0x8080808080808080ULL)) {
            unsigned take = (unsigned)(63 - b->nbits) >> 3;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            w = __builtin_bswap64(w);
#endif
            w &= ~(~(uint64_t)0 >> (8 * take));
            b->acc |= w >> b->nbits;
            b->nbits += (int)(8 * take);
            b->pos += take;
            return;
        }
    }
    br_fill_slow(b);
}

/* Bits consumed beyond the real data of the segment. */
static inline int br_overrun(const bitrd *b) { return b->pad > b->nbits; }

/* Take s (1..16) bits; the caller made sure they are in the buffer. */
static inline uint32_t br_get(bitrd *b, unsigned s)
{
    uint32_t v = (uint32_t)(b->acc >> (64 - s));
    b->acc <<= s;
    b->nbits -= (int)s;
    return v;
}

/* F.2.2.1 Figure F.12: the s extra bits v as a signed difference. */
static inline int32_t extend(uint32_t v, unsigned s)
{
    return v < (1u << (s - 1)) ? (int32_t)v - (int32_t)((1u << s) - 1)
                               : (int32_t)v;
}

static int huff_slow(bitrd *b, const huff_tbl *t)
{
    for (unsigned l = FAST_BITS + 1; l <= 16; l++) {
        int32_t c = (int32_t)(b->acc >> (64 - l));
        if (c <= t->maxcode[l]) {
            int32_t i = t->valoff[l] + c;
            if (i < 0 || i >= t->nvals)
                return -1;
            b->acc <<= l;
            b->nbits -= (int)l;
            return t->vals[i];
        }
    }
    return -1; /* no code of 16 bits or fewer matches */
}

/* F.2.2.3 DECODE; needs at least 16 bits in the buffer. */
static inline int huff_decode(bitrd *b, const huff_tbl *t)
{
    unsigned e = t->fast[b->acc >> (64 - FAST_BITS)];
    if (e) {
        unsigned l = e >> 8;
        b->acc <<= l;
        b->nbits -= (int)l;
        return (int)(e & 0xFF);
    }
    return huff_slow(b, t);
}

/* Lossless differences whose code and extra bits together take at most
 * DIFF_LUT_BITS bits are decoded by one look-up of that many bits. */
#define DIFF_LUT_BITS 12

/* ---- decoder state ------------------------------------------------------ */

typedef struct comp_st {
    uint8_t id, h, v, tq;
    uint8_t coded;   /* decoded by an earlier scan */
    uint16_t q[64];  /* natural order, latched at the component's scan */
    uint32_t w, hgt; /* A.1.1: ceil(X * H / Hmax), ceil(Y * V / Vmax) */
} comp_st;

typedef struct dec {
    const uint8_t *s;
    size_t len;
    covct_error *err;
    covct_t81_image *img;
    int lossless;
    unsigned precision;
    uint32_t X, Y;
    uint32_t rows_hint;
    unsigned nf;
    comp_st c[COVCT_T81_MAX_COMPONENTS];
    unsigned hmax, vmax;
    uint32_t mcux, mcuy; /* MCUs of an interleaved scan (A.2.3) */
    huff_tbl dc[4], ac[4];
    int32_t dlut[4][1 << DIFF_LUT_BITS]; /* lossless: see diff_lut_build */
    uint16_t qt[4][64];
    uint8_t qdef[4];
    uint32_t ri; /* restart interval in MCUs, 0: none */
    int have_sof, dnl_lines;
    /* current scan (B.2.3) */
    unsigned ns;
    unsigned sc[4]; /* indices into c[] */
    uint8_t td[4], ta[4];
    unsigned ss, se, ah, al;
} dec;

/* F.1.1.5 / Figure A.6: zig-zag index to natural (row-major) index. */
static const uint8_t natural_order[64] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6,  7,  14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63};

const char *covct_codec_t81_sof_name(uint8_t m)
{
    switch (m) {
    case 0xC0: return "SOF0 (baseline DCT)";
    case 0xC1: return "SOF1 (extended sequential DCT, Huffman)";
    case 0xC2: return "SOF2 (progressive DCT, Huffman)";
    case 0xC3: return "SOF3 (lossless, Huffman)";
    case 0xC5: return "SOF5 (hierarchical sequential DCT, Huffman)";
    case 0xC6: return "SOF6 (hierarchical progressive DCT, Huffman)";
    case 0xC7: return "SOF7 (hierarchical lossless, Huffman)";
    case 0xC9: return "SOF9 (extended sequential DCT, arithmetic)";
    case 0xCA: return "SOF10 (progressive DCT, arithmetic)";
    case 0xCB: return "SOF11 (lossless, arithmetic)";
    case 0xCD: return "SOF13 (hierarchical sequential DCT, arithmetic)";
    case 0xCE: return "SOF14 (hierarchical progressive DCT, arithmetic)";
    case 0xCF: return "SOF15 (hierarchical lossless, arithmetic)";
    }
    return "unknown SOF";
}

/* ---- table segments ----------------------------------------------------- */

/* B.2.4.2 DHT: one or more tables. */
static covct_rc parse_dht(dec *d, const uint8_t *p, size_t n, size_t at)
{
    while (n > 0) {
        if (n < 17)
            return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                             "JPEG: DHT at byte %zu: table header cut short",
                             at);
        unsigned tc = p[0] >> 4, th = p[0] & 15;
        if (tc > 1 || th > 3)
            return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                             "JPEG: DHT at byte %zu: table class %u, "
                             "destination %u", at, tc, th);
        unsigned total = 0;
        for (unsigned i = 0; i < 16; i++)
            total += p[1 + i];
        if (total > 256 || total > n - 17)
            return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                             "JPEG: DHT at byte %zu: %u codes do not fit",
                             at, total);
        huff_tbl *t = tc ? &d->ac[th] : &d->dc[th];
        if (!huff_build(t, p + 1, p + 17, total)) {
            t->defined = 0;
            return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                             "JPEG: DHT at byte %zu: code lengths of table "
                             "%u/%u overflow the code space (T.81 C.2)",
                             at, tc, th);
        }
        p += 17 + total;
        n -= 17 + total;
    }
    return COVCT_OK;
}

/* B.2.4.1 DQT: values come in zig-zag order; 16-bit only for 12-bit P. */
static covct_rc parse_dqt(dec *d, const uint8_t *p, size_t n, size_t at)
{
    while (n > 0) {
        unsigned pq = p[0] >> 4, tq = p[0] & 15;
        size_t need = 1 + 64 * (size_t)(pq + 1);
        if (pq > 1 || tq > 3 || n < need)
            return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                             "JPEG: DQT at byte %zu: precision %u, table %u, "
                             "%zu bytes left", at, pq, tq, n);
        for (unsigned k = 0; k < 64; k++)
            d->qt[tq][natural_order[k]] =
                pq ? (uint16_t)(p[1 + 2 * k] << 8 | p[2 + 2 * k])
                   : p[1 + k];
        d->qdef[tq] = 1;
        p += need;
        n -= need;
    }
    return COVCT_OK;
}

/* ---- frame header ------------------------------------------------------- */

static uint32_t ceil_div(uint32_t a, uint32_t b) { return (a + b - 1) / b; }

static covct_rc start_frame(dec *d, const uint8_t *seg, size_t n, size_t at,
                            uint8_t m)
{
    covct_t81_image *img = d->img;
    covct_rc rc = parse_sof(seg, n, at, m, &img->info, d->err);
    if (rc)
        return rc;
    const covct_t81_info *in = &img->info;
    if (m != M_SOF0 && m != M_SOF1 && m != M_SOF3)
        return COVCT_ERR(d->err, COVCT_ERR_UNSUPPORTED,
                         "JPEG: %s at byte %zu is not supported; covct "
                         "decodes SOF0, SOF1 and SOF3",
                         covct_codec_t81_sof_name(m), at);
    d->lossless = m == M_SOF3;
    d->precision = in->precision;
    if (d->lossless ? (d->precision < 2 || d->precision > 16)
                    : (d->precision != 8 && d->precision != 12))
        return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                         "JPEG: %s at byte %zu: sample precision %u is not "
                         "allowed (T.81 B.2.2: %s)",
                         covct_codec_t81_sof_name(m), at,
                         d->precision,
                         d->lossless ? "2 to 16" : "8 or 12");
    if (in->ncomp > COVCT_T81_MAX_COMPONENTS)
        return COVCT_ERR(d->err, COVCT_ERR_UNSUPPORTED,
                         "JPEG: frame at byte %zu has %u components; covct "
                         "decodes at most %d", at, in->ncomp,
                         COVCT_T81_MAX_COMPONENTS);
    d->nf = in->ncomp;
    d->X = in->cols;
    d->Y = in->rows;
    if (d->Y == 0) {
        /* B.2.5: the number of lines comes in a DNL segment after the first
         * scan; the caller knows it (DICOM Rows). */
        if (d->rows_hint == 0 || d->rows_hint > 65535)
            return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                             "JPEG: frame at byte %zu has 0 lines (DNL) and "
                             "no line count was given", at);
        d->Y = d->rows_hint;
    }
    d->hmax = d->vmax = 1;
    for (unsigned i = 0; i < d->nf; i++) {
        comp_st *c = &d->c[i];
        c->id = in->comp_id[i];
        c->h = in->h[i];
        c->v = in->v[i];
        c->tq = seg[6 + 3 * i + 2];
        for (unsigned j = 0; j < i; j++)
            if (d->c[j].id == c->id)
                return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                                 "JPEG: frame at byte %zu: component id %u "
                                 "appears twice", at, c->id);
        if (c->h > d->hmax)
            d->hmax = c->h;
        if (c->v > d->vmax)
            d->vmax = c->v;
    }
    unsigned unit = d->lossless ? 1 : 8; /* data unit: sample or 8x8 block */
    d->mcux = ceil_div(d->X, unit * d->hmax);
    d->mcuy = ceil_div(d->Y, unit * d->vmax);
    img->rows = d->Y;
    img->cols = d->X;
    img->lossless = d->lossless;
    img->hmax = (uint8_t)d->hmax;
    img->vmax = (uint8_t)d->vmax;
    for (unsigned i = 0; i < d->nf; i++) {
        comp_st *c = &d->c[i];
        covct_t81_plane *pl = &img->comp[i];
        c->w = ceil_div(d->X * c->h, d->hmax);
        c->hgt = ceil_div(d->Y * c->v, d->vmax);
        pl->w = c->w;
        pl->h = c->hgt;
        pl->hs = c->h;
        pl->vs = c->v;
        /* DCT planes cover whole MCUs so the IDCT never needs clipping;
         * lossless planes are exact, dummy samples are dropped. */
        uint32_t pw = d->lossless ? c->w : d->mcux * c->h * 8;
        uint32_t ph = d->lossless ? c->hgt : d->mcuy * c->v * 8;
        size_t bytes;
        if (!covct_mul_size(pw, ph, &bytes) ||
            !covct_mul_size(bytes, sizeof(uint16_t), &bytes))
            return COVCT_ERR(d->err, COVCT_ERR_LIMIT,
                             "JPEG: %ux%u component is too large", pw, ph);
        pl->stride = pw;
        pl->px = covct_calloc(1, bytes);
        if (!pl->px)
            return COVCT_ERR(d->err, COVCT_ERR_NOMEM,
                             "JPEG: cannot allocate %zu bytes for a %ux%u "
                             "component", bytes, pw, ph);
    }
    d->have_sof = 1;
    return COVCT_OK;
}

/* ---- restarts (F.2.1.3.1 / E.2.4, H.2.1) -------------------------------- */

/* Byte offset of the next marker at or after p (its first 0xFF), skipping
 * stray bytes; len if there is none. */
static size_t find_marker(const uint8_t *s, size_t len, size_t p)
{
    for (; p + 1 < len; p++)
        if (s[p] == 0xFF && s[p + 1] != 0x00 && s[p + 1] != 0xFF)
            return p;
    return len;
}

static covct_rc truncated(dec *d, const bitrd *b)
{
    return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                     "JPEG: entropy-coded data ends too early at byte %zu "
                     "(truncated or damaged stream)", b->pos);
}

/* The interval just decoded must not have run past its data; then the
 * next marker must be RSTn with the expected n (modulo 8). */
static covct_rc restart(dec *d, bitrd *b, unsigned *next_rst)
{
    if (br_overrun(b))
        return truncated(d, b);
    size_t p = find_marker(d->s, d->len, b->pos);
    if (p >= d->len)
        return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                         "JPEG: stream ends where RST%u was expected "
                         "(byte %zu)", *next_rst, b->pos);
    uint8_t m = d->s[p + 1];
    if (m != M_RST0 + *next_rst)
        return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                         "JPEG: expected RST%u at byte %zu, found marker "
                         "0xFF%02X", *next_rst, p, m);
    br_init(b, d->s, p + 2, d->len);
    *next_rst = (*next_rst + 1) & 7;
    return COVCT_OK;
}

/* ---- sequential DCT (Annex F) ------------------------------------------- */

/* F.2.2.1-F.2.2.2: one 8x8 block of quantised coefficients, natural order.
 * Returns 0, or -1 on a bad code or a run past coefficient 63. */
static int decode_block(bitrd *b, const huff_tbl *dct, const huff_tbl *act,
                        int32_t *pred, int16_t blk[64], int *ac_nonzero)
{
    memset(blk, 0, 64 * sizeof blk[0]);
    if (b->nbits < 32)
        br_fill(b);
    int s = huff_decode(b, dct);
    if (s < 0 || s > 15)
        return -1;
    int32_t diff = s ? extend(br_get(b, (unsigned)s), (unsigned)s) : 0;
    /* libjpeg keeps the prediction in an int and stores a JCOEF (16 bits);
     * wrap like it rather than overflow on hostile input. */
    *pred = (int32_t)((uint32_t)*pred + (uint32_t)diff);
    blk[0] = (int16_t)(uint16_t)(uint32_t)*pred;
    int any = 0;
    for (unsigned k = 1; k < 64; k++) {
        if (b->nbits < 32)
            br_fill(b);
        int rs = huff_decode(b, act);
        if (rs < 0)
            return -1;
        unsigned r = (unsigned)rs >> 4, sz = (unsigned)rs & 15;
        if (sz) {
            k += r;
            if (k > 63)
                return -1;
            blk[natural_order[k]] =
                (int16_t)extend(br_get(b, sz), sz);
            any = 1;
        } else {
            if (r != 15)
                break; /* EOB */
            k += 15;   /* ZRL: sixteen zeros */
        }
    }
    *ac_nonzero = any;
    return 0;
}

/* IJG jidctint.c ("islow"): CONST_BITS 13; PASS1_BITS 2 for 8-bit and 1 for
 * 12-bit samples.  Arithmetic is done in 64 bits (IJG's INT32 is a long on
 * LP64 systems), so hostile coefficients cannot overflow. */
#define CONST_BITS 13
#define FIX_0_298631336 2446
#define FIX_0_390180644 3196
#define FIX_0_541196100 4433
#define FIX_0_765366865 6270
#define FIX_0_899976223 7373
#define FIX_1_175875602 9633
#define FIX_1_501321110 12299
#define FIX_1_847759065 15137
#define FIX_1_961570560 16069
#define FIX_2_053119869 16819
#define FIX_2_562915447 20995
#define FIX_3_072711026 25172

static inline int64_t descale(int64_t x, int n)
{
    /* Right shift of a negative value is arithmetic on every compiler covct
     * supports (gcc, clang); IJG's RIGHT_SHIFT relies on the same. */
    return (x + ((int64_t)1 << (n - 1))) >> n;
}

/* The post-IDCT part of IJG's sample_range_limit table (jdmaster.c,
 * prepare_range_limit_table): index x & (4N-1) for N = 2^P, level shift
 * by N/2 (F.2.1.5) and clamping to 0..N-1 folded in. */
static inline uint16_t idct_limit(int64_t x, uint32_t n)
{
    uint32_t center = n >> 1, m = (uint32_t)((uint64_t)x & (4 * n - 1));
    if (m < center)
        return (uint16_t)(m + center);
    if (m < 2 * n)
        return (uint16_t)(n - 1);
    if (m < 4 * n - center)
        return 0;
    return (uint16_t)(m - (4 * n - center));
}

/* One-dimensional 8-point IDCT shared by both passes (A.3.3, computed as
 * in jidctint.c).  in[i*step] are the inputs; out[0..7] the unscaled
 * outputs before DESCALE. */
static inline void idct_1d(int64_t i0, int64_t i1, int64_t i2, int64_t i3,
                           int64_t i4, int64_t i5, int64_t i6, int64_t i7,
                           int64_t out[8])
{
    /* Even part: the rotator is sqrt(2)*c(-6). */
    int64_t z1 = (i2 + i6) * FIX_0_541196100;
    int64_t tmp2 = z1 + i6 * -FIX_1_847759065;
    int64_t tmp3 = z1 + i2 * FIX_0_765366865;
    int64_t tmp0 = (i0 + i4) * ((int64_t)1 << CONST_BITS);
    int64_t tmp1 = (i0 - i4) * ((int64_t)1 << CONST_BITS);
    int64_t tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3;
    int64_t tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
    /* Odd part, per figure 8 of Loeffler, Ligtenberg and Moschytz. */
    tmp0 = i7;
    tmp1 = i5;
    tmp2 = i3;
    tmp3 = i1;
    z1 = tmp0 + tmp3;
    int64_t z2 = tmp1 + tmp2, z3 = tmp0 + tmp2, z4 = tmp1 + tmp3;
    int64_t z5 = (z3 + z4) * FIX_1_175875602;
    tmp0 *= FIX_0_298631336;
    tmp1 *= FIX_2_053119869;
    tmp2 *= FIX_3_072711026;
    tmp3 *= FIX_1_501321110;
    z1 *= -FIX_0_899976223;
    z2 *= -FIX_2_562915447;
    z3 *= -FIX_1_961570560;
    z4 *= -FIX_0_390180644;
    z3 += z5;
    z4 += z5;
    tmp0 += z1 + z3;
    tmp1 += z2 + z4;
    tmp2 += z2 + z3;
    tmp3 += z1 + z4;
    out[0] = tmp10 + tmp3;
    out[7] = tmp10 - tmp3;
    out[1] = tmp11 + tmp2;
    out[6] = tmp11 - tmp2;
    out[2] = tmp12 + tmp1;
    out[5] = tmp12 - tmp1;
    out[3] = tmp13 + tmp0;
    out[4] = tmp13 - tmp0;
}

/* Dequantise (F.2.1.4), inverse DCT and level shift one block into out. */
static void idct_islow(const int16_t *in, const uint16_t *q, uint16_t *out,
                       size_t stride, unsigned precision, int ac_nonzero)
{
    const int pass1 = precision <= 8 ? 2 : 1;
    const uint32_t n = 1u << precision;
    if (!ac_nonzero) {
        /* Both passes' zero-AC shortcuts of jidctint.c; exact. */
        int32_t dc = (int32_t)((int64_t)in[0] * q[0] * (1 << pass1));
        uint16_t v = idct_limit(descale(dc, pass1 + 3), n);
        for (unsigned r = 0; r < 8; r++)
            for (unsigned x = 0; x < 8; x++)
                out[r * stride + x] = v;
        return;
    }
    int32_t ws[64];
    int64_t o[8];
    for (unsigned c = 0; c < 8; c++) {
        const int16_t *ip = in + c;
        const uint16_t *qp = q + c;
        if (!ip[8] && !ip[16] && !ip[24] && !ip[32] && !ip[40] && !ip[48] &&
            !ip[56]) {
            int32_t dc = (int32_t)((int64_t)ip[0] * qp[0] * (1 << pass1));
            for (unsigned r = 0; r < 8; r++)
                ws[r * 8 + c] = dc;
            continue;
        }
        idct_1d((int64_t)ip[0] * qp[0], (int64_t)ip[8] * qp[8],
                (int64_t)ip[16] * qp[16], (int64_t)ip[24] * qp[24],
                (int64_t)ip[32] * qp[32], (int64_t)ip[40] * qp[40],
                (int64_t)ip[48] * qp[48], (int64_t)ip[56] * qp[56], o);
        /* IJG stores the work array in ints. */
        for (unsigned r = 0; r < 8; r++)
            ws[r * 8 + c] = (int32_t)descale(o[r], CONST_BITS - pass1);
    }
    for (unsigned r = 0; r < 8; r++) {
        const int32_t *w = ws + (size_t)r * 8;
        uint16_t *op = out + r * stride;
        if (!w[1] && !w[2] && !w[3] && !w[4] && !w[5] && !w[6] && !w[7]) {
            uint16_t v = idct_limit(descale(w[0], pass1 + 3), n);
            for (unsigned x = 0; x < 8; x++)
                op[x] = v;
            continue;
        }
        idct_1d(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], o);
        for (unsigned x = 0; x < 8; x++)
            op[x] = idct_limit(descale(o[x], CONST_BITS + pass1 + 3), n);
    }
}

static covct_rc scan_dct(dec *d, bitrd *b)
{
    int16_t blk[64];
    int32_t pred[4] = {0, 0, 0, 0};
    unsigned next_rst = 0;
    uint32_t mcux, mcuy, todo = d->ri;
    if (d->ns == 1) {
        /* A.2.2: a non-interleaved scan codes the component's own blocks,
         * one per MCU, without the MCU padding of the frame. */
        const comp_st *c = &d->c[d->sc[0]];
        mcux = ceil_div(c->w, 8);
        mcuy = ceil_div(c->hgt, 8);
    } else {
        mcux = d->mcux;
        mcuy = d->mcuy;
    }
    for (uint32_t my = 0; my < mcuy; my++) {
        for (uint32_t mx = 0; mx < mcux; mx++) {
            if (d->ri) {
                if (todo == 0) {
                    covct_rc rc = restart(d, b, &next_rst);
                    if (rc)
                        return rc;
                    memset(pred, 0, sizeof pred); /* F.2.1.3.1 */
                    todo = d->ri;
                }
                todo--;
            }
            for (unsigned k = 0; k < d->ns; k++) {
                unsigned ci = d->sc[k];
                const comp_st *c = &d->c[ci];
                covct_t81_plane *pl = &d->img->comp[ci];
                unsigned bh = d->ns == 1 ? 1 : c->h;
                unsigned bv = d->ns == 1 ? 1 : c->v;
                for (unsigned v = 0; v < bv; v++) {
                    for (unsigned h = 0; h < bh; h++) {
                        int ac_nonzero = 0;
                        if (decode_block(b, &d->dc[d->td[k]], &d->ac[d->ta[k]],
                                         &pred[k], blk, &ac_nonzero))
                            return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                                             "JPEG: bad Huffman code or "
                                             "coefficient run near byte %zu",
                                             b->pos);
                        size_t x0 = ((size_t)mx * bh + h) * 8;
                        size_t y0 = ((size_t)my * bv + v) * 8;
                        idct_islow(blk, c->q,
                                   pl->px + y0 * pl->stride + x0, pl->stride,
                                   d->precision, ac_nonzero);
                    }
                }
            }
        }
        if (b->pad > 64)
            return truncated(d, b);
    }
    if (br_overrun(b))
        return truncated(d, b);
    return COVCT_OK;
}

/* ---- lossless (Annex H) ------------------------------------------------- */

/* Fill lut with diff << 8 | bits used, for every DIFF_LUT_BITS-bit prefix
 * that holds a whole Huffman code and its extra bits (Table H.2); 0 where
 * decode_diff must take the long way. */
static void diff_lut_build(const huff_tbl *t, int32_t *lut)
{
    const unsigned lb = DIFF_LUT_BITS;
    memset(lut, 0, sizeof(int32_t) << lb);
    uint32_t code = 0;
    unsigned k = 0;
    for (unsigned l = 1; l <= 16; l++, code <<= 1) {
        for (unsigned i = 0; i < t->bits[l - 1]; i++, code++, k++) {
            unsigned s = t->vals[k];
            if (l > lb || s > 16)
                continue;
            if (s == 0 || s == 16) {
                int32_t e = (s ? 32768 : 0) * 256 + (int32_t)l;
                for (uint32_t j = 0; j < (1u << (lb - l)); j++)
                    lut[(code << (lb - l)) + j] = e;
            } else if (l + s <= lb) {
                for (uint32_t v = 0; v < (1u << s); v++) {
                    int32_t e = extend(v, s) * 256 + (int32_t)(l + s);
                    uint32_t base = ((code << s) | v) << (lb - l - s);
                    for (uint32_t j = 0; j < (1u << (lb - l - s)); j++)
                        lut[base + j] = e;
                }
            }
        }
    }
}

/* H.2.2 / Table H.2 the long way: Huffman code, then SSSS extra bits;
 * SSSS = 16 means 32768 with no extra bits.  Returns 0, or -1 on a bad
 * code. */
static int decode_diff_slow(bitrd *b, const huff_tbl *t, int32_t *out)
{
    int s = huff_decode(b, t);
    if (s <= 0) {
        *out = 0;
        return s;
    }
    if (s < 16) {
        *out = extend(br_get(b, (unsigned)s), (unsigned)s);
        return 0;
    }
    *out = 32768;
    return s == 16 ? 0 : -1;
}

/* The difference for one sample, usually with one look-up. */
static inline int decode_diff(bitrd *b, const huff_tbl *t, const int32_t *lut,
                              int32_t *out)
{
    if (b->nbits < 32)
        br_fill(b);
    int32_t e = lut[b->acc >> (64 - DIFF_LUT_BITS)];
    if (e & 0xFF) {
        unsigned n = (unsigned)e & 0xFF;
        b->acc <<= n;
        b->nbits -= (int)n;
        *out = e >> 8; /* arithmetic, like descale() */
        return 0;
    }
    return decode_diff_slow(b, t, out);
}

static covct_rc bad_diff(dec *d, const bitrd *b)
{
    return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                     "JPEG: bad Huffman code for a lossless difference near "
                     "byte %zu", b->pos);
}

/* Table H.1 predictors; Ra left, Rb above, Rc above-left.  The right shifts
 * are arithmetic (H.1.2.1: "/2" is a shift), as in the IJG lossless code. */
static inline int32_t predict(unsigned psv, int32_t ra, int32_t rb, int32_t rc)
{
    switch (psv) {
    case 1: return ra;
    case 2: return rb;
    case 3: return rc;
    case 4: return ra + rb - rc;
    case 5: return ra + ((rb - rc) >> 1);
    case 6: return rb + ((ra - rc) >> 1);
    default: return (ra + rb) >> 1;
    }
}

/* One component per scan, restarts (if any) at line starts: the common
 * DICOM case (CT, MR), kept tight.  H.1.2.1: the first line of the scan and
 * of each restart interval is predicted from the left (its first sample
 * from 2^(P-Pt-1)), the first sample of other lines from above.
 * Reconstruction is modulo 2^16 (H.2.1). */
#define ROW_LOOP(EXPR)                                                     \
    for (uint32_t x = 1; x < w; x++) {                                     \
        if (decode_diff(&br, t, lut, &df))                                 \
            goto bad;                                                      \
        row[x] = (uint16_t)((EXPR) + df);                                  \
    }

static covct_rc lossless_one(dec *d, bitrd *b, uint32_t lines_per_ri)
{
    const unsigned ci = d->sc[0];
    covct_t81_plane *pl = &d->img->comp[ci];
    const huff_tbl *t = &d->dc[d->td[0]];
    const int32_t *lut = d->dlut[d->td[0]];
    const uint32_t w = pl->w, hgt = pl->h;
    const int32_t dflt = 1 << (d->precision - d->al - 1);
    const unsigned psv = d->ss;
    unsigned next_rst = 0;
    uint32_t left = lines_per_ri;
    bitrd br = *b;
    for (uint32_t y = 0; y < hgt; y++) {
        int first = y == 0;
        if (lines_per_ri) {
            if (left == 0) {
                covct_rc rc = restart(d, &br, &next_rst);
                if (rc)
                    return rc;
                left = lines_per_ri;
                first = 1;
            }
            left--;
        }
        uint16_t *row = pl->px + (size_t)y * pl->stride;
        int32_t df;
        if (decode_diff(&br, t, lut, &df))
            goto bad;
        if (first) {
            row[0] = (uint16_t)(dflt + df);
            ROW_LOOP(row[x - 1])
        } else {
            const uint16_t *up = row - pl->stride;
            row[0] = (uint16_t)(up[0] + df);
            switch (psv) {
            case 1: ROW_LOOP(row[x - 1]) break;
            case 2: ROW_LOOP(up[x]) break;
            case 3: ROW_LOOP(up[x - 1]) break;
            case 4: ROW_LOOP((int32_t)row[x - 1] + up[x] - up[x - 1]) break;
            case 5:
                ROW_LOOP((int32_t)row[x - 1] +
                         (((int32_t)up[x] - up[x - 1]) >> 1))
                break;
            case 6:
                ROW_LOOP((int32_t)up[x] +
                         (((int32_t)row[x - 1] - up[x - 1]) >> 1))
                break;
            default: ROW_LOOP(((int32_t)row[x - 1] + up[x]) >> 1) break;
            }
        }
        if (br.pad > 64) {
            *b = br;
            return truncated(d, b);
        }
    }
    *b = br;
    if (br_overrun(b))
        return truncated(d, b);
    return COVCT_OK;
bad:
    *b = br;
    return bad_diff(d, b);
}
#undef ROW_LOOP

/* Any other layout: interleaved components (A.2.3, each MCU holds H x V
 * samples of each), or restarts that do not fall on line starts.  The
 * rules of H.1.2.1 are applied from the position of the restart: the
 * sample at the restart is predicted from 2^(P-Pt-1), the rest of that
 * line from the left; lines below follow the normal rules. */
static covct_rc lossless_any(dec *d, bitrd *b)
{
    const int32_t dflt = 1 << (d->precision - d->al - 1);
    const unsigned psv = d->ss;
    uint32_t mcux, mcuy, todo = d->ri;
    uint32_t fl[4] = {0, 0, 0, 0}, fx[4] = {0, 0, 0, 0};
    unsigned next_rst = 0;
    if (d->ns == 1) {
        mcux = d->img->comp[d->sc[0]].w;
        mcuy = d->img->comp[d->sc[0]].h;
    } else {
        mcux = d->mcux;
        mcuy = d->mcuy;
    }
    for (uint32_t my = 0; my < mcuy; my++) {
        for (uint32_t mx = 0; mx < mcux; mx++) {
            if (d->ri) {
                if (todo == 0) {
                    covct_rc rc = restart(d, b, &next_rst);
                    if (rc)
                        return rc;
                    todo = d->ri;
                    for (unsigned k = 0; k < d->ns; k++) {
                        unsigned hs = d->ns == 1 ? 1 : d->c[d->sc[k]].h;
                        unsigned vs = d->ns == 1 ? 1 : d->c[d->sc[k]].v;
                        fl[k] = my * vs;
                        fx[k] = mx * hs;
                    }
                }
                todo--;
            }
            for (unsigned k = 0; k < d->ns; k++) {
                covct_t81_plane *pl = &d->img->comp[d->sc[k]];
                const huff_tbl *t = &d->dc[d->td[k]];
                const int32_t *lut = d->dlut[d->td[k]];
                unsigned hs = d->ns == 1 ? 1 : pl->hs;
                unsigned vs = d->ns == 1 ? 1 : pl->vs;
                for (unsigned v = 0; v < vs; v++) {
                    for (unsigned h = 0; h < hs; h++) {
                        int32_t df;
                        if (decode_diff(b, t, lut, &df))
                            return bad_diff(d, b);
                        uint32_t x = mx * hs + h, y = my * vs + v;
                        if (x >= pl->w || y >= pl->h)
                            continue; /* A.2.4 padding sample */
                        uint16_t *row = pl->px + (size_t)y * pl->stride;
                        int32_t p;
                        if (y == fl[k])
                            p = (x == fx[k] || x == 0) ? dflt : row[x - 1];
                        else if (x == 0)
                            p = row[(ptrdiff_t)0 - (ptrdiff_t)pl->stride];
                        else {
                            const uint16_t *up = row - pl->stride;
                            p = predict(psv, row[x - 1], up[x], up[x - 1]);
                        }
                        row[x] = (uint16_t)(p + df);
                    }
                }
            }
        }
        if (b->pad > 64)
            return truncated(d, b);
    }
    if (br_overrun(b))
        return truncated(d, b);
    return COVCT_OK;
}

static covct_rc scan_lossless(dec *d, bitrd *b)
{
    if (d->ns == 1) {
        uint32_t w = d->img->comp[d->sc[0]].w;
        if (d->ri == 0)
            return lossless_one(d, b, 0);
        if (d->ri % w == 0)
            return lossless_one(d, b, d->ri / w);
    }
    return lossless_any(d, b);
}

/* ---- scans (B.2.3) ------------------------------------------------------ */

static covct_rc start_scan(dec *d, const uint8_t *p, size_t n, size_t at)
{
    if (!d->have_sof)
        return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                         "JPEG: SOS at byte %zu before any SOF", at);
    unsigned ns = n ? p[0] : 0;
    if (ns < 1 || ns > 4 || n != 4 + 2 * (size_t)ns)
        return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                         "JPEG: SOS at byte %zu: %u components in a header "
                         "of %zu bytes", at, ns, n + 2);
    d->ns = ns;
    unsigned units = 0;
    for (unsigned k = 0; k < ns; k++) {
        uint8_t id = p[1 + 2 * k];
        unsigned ci = 0;
        while (ci < d->nf && d->c[ci].id != id)
            ci++;
        if (ci == d->nf)
            return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                             "JPEG: SOS at byte %zu names component %u, "
                             "which the frame lacks", at, id);
        for (unsigned j = 0; j < k; j++)
            if (d->sc[j] == ci)
                return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                                 "JPEG: SOS at byte %zu names component %u "
                                 "twice", at, id);
        if (d->c[ci].coded)
            return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                             "JPEG: component %u is coded again by the scan "
                             "at byte %zu (a sequential frame codes each "
                             "component once)", id, at);
        d->sc[k] = ci;
        d->td[k] = p[2 + 2 * k] >> 4;
        d->ta[k] = p[2 + 2 * k] & 15;
        if (d->td[k] > 3 || d->ta[k] > 3)
            return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                             "JPEG: SOS at byte %zu: table selector %u/%u",
                             at, d->td[k], d->ta[k]);
        units += d->c[ci].h * d->c[ci].v;
    }
    /* B.2.3: at most 10 data units in an interleaved MCU. */
    if (ns > 1 && units > 10)
        return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                         "JPEG: SOS at byte %zu: %u data units per MCU "
                         "(at most 10)", at, units);
    d->ss = p[1 + 2 * ns];
    d->se = p[2 + 2 * ns];
    d->ah = p[3 + 2 * ns] >> 4;
    d->al = p[3 + 2 * ns] & 15;
    for (unsigned k = 0; k < ns; k++) {
        comp_st *c = &d->c[d->sc[k]];
        if (!d->dc[d->td[k]].defined ||
            (!d->lossless && !d->ac[d->ta[k]].defined))
            return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                             "JPEG: scan at byte %zu uses an undefined "
                             "Huffman table for component %u", at, c->id);
        if (!d->lossless) {
            if (!d->qdef[c->tq])
                return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                                 "JPEG: scan at byte %zu uses undefined "
                                 "quantisation table %u", at, c->tq);
            /* B.2.4.1: the table in force when the scan starts applies. */
            memcpy(c->q, d->qt[c->tq], sizeof c->q);
        }
    }
    if (d->lossless) {
        /* H.1.2.1, Table H.1: Ss is the predictor 1..7 (0 only in
         * hierarchical mode); Al is the point transform Pt < P. */
        if (d->ss < 1 || d->ss > 7)
            return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                             "JPEG: lossless scan at byte %zu has predictor "
                             "%u (1 to 7 allowed)", at, d->ss);
        if (d->al >= d->precision)
            return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                             "JPEG: lossless scan at byte %zu has point "
                             "transform %u for %u-bit samples", at, d->al,
                             d->precision);
        for (unsigned k = 0; k < ns; k++) {
            d->img->comp[d->sc[k]].pt = (uint8_t)d->al;
            diff_lut_build(&d->dc[d->td[k]], d->dlut[d->td[k]]);
        }
    }
    /* A sequential DCT scan should have Ss=0, Se=63, Ah=Al=0; libjpeg only
     * warns (JWRN_NOT_SEQUENTIAL) and real DICOM encoders write Se=0, so
     * these are ignored like dcmtk does. */
    return COVCT_OK;
}

/* ---- the marker loop (B.2, B.3) ----------------------------------------- */

static covct_rc run(dec *d)
{
    const uint8_t *s = d->s;
    size_t len = d->len;
    if (len < 4 || s[0] != 0xFF || s[1] != M_SOI)
        return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                         "JPEG: no SOI marker at byte 0 (stream of %zu bytes)",
                         len);
    size_t pos = 2;
    int after_scan = 0;
    for (;;) {
        size_t at = pos;
        uint8_t m;
        if (pos >= len)
            break; /* no EOI: accepted if every component was decoded */
        if (!read_marker(s, len, &pos, &m)) {
            if (!after_scan)
                return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                                 "JPEG: expected a marker at byte %zu, found "
                                 "0x%02X", at, s[at]);
            /* Stray bytes after entropy-coded data: libjpeg skips them
             * with a warning (JWRN_EXTRANEOUS_DATA); so does covct. */
            pos = find_marker(s, len, at);
            continue;
        }
        at = pos - 2;
        if (m == M_EOI)
            break;
        if (m == M_SOI)
            return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                             "JPEG: second SOI marker at byte %zu", at);
        if (is_standalone(m))
            continue; /* TEM, or a stray RSTn between segments */
        const uint8_t *seg = NULL;
        size_t n = 0;
        covct_rc rc = read_segment(s, len, &pos, m, &seg, &n, d->err);
        if (rc)
            return rc;
        if (is_sof(m)) {
            if (d->have_sof)
                return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                                 "JPEG: second SOF marker at byte %zu", at);
            rc = start_frame(d, seg, n, at, m);
        } else if (m == M_DHT) {
            rc = parse_dht(d, seg, n, at);
        } else if (m == M_DQT) {
            rc = parse_dqt(d, seg, n, at);
        } else if (m == M_DRI) {
            /* B.2.4.4 */
            if (n != 2)
                return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                                 "JPEG: DRI at byte %zu has length %zu",
                                 at, n + 2);
            d->ri = (uint32_t)seg[0] << 8 | seg[1];
        } else if (m == M_DNL) {
            /* B.2.5 */
            if (n != 2)
                return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                                 "JPEG: DNL at byte %zu has length %zu",
                                 at, n + 2);
            uint32_t nl = (uint32_t)seg[0] << 8 | seg[1];
            if (d->have_sof && d->img->info.rows == 0 && nl != d->Y)
                return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                                 "JPEG: DNL at byte %zu gives %u lines, "
                                 "expected %u", at, nl, d->Y);
        } else if (m == M_DHP || m == M_EXP) {
            return COVCT_ERR(d->err, COVCT_ERR_UNSUPPORTED,
                             "JPEG: hierarchical mode (marker 0xFF%02X at "
                             "byte %zu) is not supported", m, at);
        } else if (m == M_SOS) {
            rc = start_scan(d, seg, n, at);
            if (rc)
                return rc;
            bitrd b;
            br_init(&b, s, pos, len);
            rc = d->lossless ? scan_lossless(d, &b) : scan_dct(d, &b);
            if (rc)
                return rc;
            for (unsigned k = 0; k < d->ns; k++)
                d->c[d->sc[k]].coded = 1;
            pos = find_marker(s, len, b.pos);
            after_scan = 1;
            continue;
        } else if ((m >= M_APP0 && m <= 0xEF) || m == M_COM ||
                   (m >= M_JPG0 && m <= M_JPG13) || m == M_DAC ||
                   m == M_JPG) {
            /* B.2.4.5-6 and reserved segments: skipped. */
        } else {
            return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                             "JPEG: unknown marker 0xFF%02X at byte %zu", m,
                             at);
        }
        if (rc)
            return rc;
        after_scan = 0;
    }
    if (!d->have_sof)
        return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                         "JPEG: stream ends at byte %zu without a frame",
                         pos);
    for (unsigned i = 0; i < d->nf; i++)
        if (!d->c[i].coded)
            return COVCT_ERR(d->err, COVCT_ERR_CORRUPT,
                             "JPEG: stream ends at byte %zu before component "
                             "%u was coded", pos < len ? pos : len, d->c[i].id);
    return COVCT_OK;
}

covct_rc covct_codec_t81_decode(const uint8_t *src, size_t len,
                                uint32_t rows_hint, covct_t81_image *img,
                                covct_error *err)
{
    memset(img, 0, sizeof *img);
    if (!src)
        return COVCT_ERR(err, COVCT_ERR_ARG, "JPEG: no input");
    dec *d = covct_calloc(1, sizeof *d);
    if (!d)
        return COVCT_ERR(err, COVCT_ERR_NOMEM,
                         "JPEG: cannot allocate decoder state");
    d->s = src;
    d->len = len;
    d->err = err;
    d->img = img;
    d->rows_hint = rows_hint;
    covct_rc rc = run(d);
    if (rc)
        covct_codec_t81_image_free(img);
    covct_free(d);
    return rc;
}

void covct_codec_t81_image_free(covct_t81_image *img)
{
    if (!img)
        return;
    for (unsigned i = 0; i < COVCT_T81_MAX_COMPONENTS; i++)
        COVCT_FREE(img->comp[i].px);
}

/* ---- output: upsampling (jdsample.c) and colour (jdcolor.c) ------------- */

/* libjpeg's h2v1 "fancy" upsampling: triangle filter, 3/4 nearer sample
 * plus 1/4 further, with alternating rounding bias. */
static void up_h2v1(const uint16_t *in, uint32_t w, uint16_t *out)
{
    int32_t v = in[0];
    out[0] = (uint16_t)v;
    out[1] = (uint16_t)((v * 3 + in[1] + 2) >> 2);
    for (size_t i = 1; i + 1 < w; i++) {
        v = in[i] * 3;
        out[2 * i] = (uint16_t)((v + in[i - 1] + 1) >> 2);
        out[2 * i + 1] = (uint16_t)((v + in[i + 1] + 2) >> 2);
    }
    v = in[w - 1];
    out[2 * (size_t)w - 2] = (uint16_t)((v * 3 + in[w - 2] + 1) >> 2);
    out[2 * (size_t)w - 1] = (uint16_t)v;
}

/* libjpeg's h2v2 "fancy" upsampling for one output row: near is the
 * nearest input row, far the next nearest (above for the upper output
 * row, below for the lower); the image edges repeat the edge row
 * (jdmainct.c context rows). */
static void up_h2v2(const uint16_t *near, const uint16_t *far, uint32_t w,
                    uint16_t *out)
{
    int32_t last, cur = near[0] * 3 + far[0];
    int32_t next = near[1] * 3 + far[1];
    out[0] = (uint16_t)((cur * 4 + 8) >> 4);
    out[1] = (uint16_t)((cur * 3 + next + 7) >> 4);
    last = cur;
    cur = next;
    for (size_t i = 1; i + 1 < w; i++) {
        next = near[i + 1] * 3 + far[i + 1];
        out[2 * i] = (uint16_t)((cur * 3 + last + 8) >> 4);
        out[2 * i + 1] = (uint16_t)((cur * 3 + next + 7) >> 4);
        last = cur;
        cur = next;
    }
    out[2 * (size_t)w - 2] = (uint16_t)((cur * 3 + last + 8) >> 4);
    out[2 * (size_t)w - 1] = (uint16_t)((cur * 4 + 7) >> 4);
}

/* Upsample one plane to cols x rows (into out, stride cols). */
static covct_rc upsample(const covct_t81_image *img, const covct_t81_plane *pl,
                         uint16_t *out, uint16_t *tmp, covct_error *err)
{
    unsigned hf = img->hmax / pl->hs, vf = img->vmax / pl->vs;
    if (img->hmax % pl->hs || img->vmax % pl->vs)
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "JPEG: sampling factors %ux%u against %ux%u are not "
                         "an integral ratio", pl->hs, pl->vs, img->hmax,
                         img->vmax);
    const uint32_t cols = img->cols, rows = img->rows, w = pl->w;
    /* jdsample.c uses the filters for 2:1 only when the component is more
     * than 2 samples wide; lossless data are never filtered. */
    int fancy = !img->lossless && hf == 2 && (vf == 1 || vf == 2) && w > 2;
    for (uint32_t y = 0; y < rows; y++) {
        uint16_t *o = out + (size_t)y * cols;
        uint32_t sy = y / vf;
        const uint16_t *in = pl->px + (size_t)sy * pl->stride;
        if (fancy && vf == 1) {
            up_h2v1(in, w, tmp);
            memcpy(o, tmp, cols * sizeof *o);
        } else if (fancy) {
            uint32_t fy = (y & 1) ? (sy + 1 < pl->h ? sy + 1 : sy)
                                  : (sy > 0 ? sy - 1 : 0);
            up_h2v2(in, pl->px + (size_t)fy * pl->stride, w, tmp);
            memcpy(o, tmp, cols * sizeof *o);
        } else {
            for (uint32_t x = 0; x < cols; x++)
                o[x] = in[x / hf];
        }
    }
    return COVCT_OK;
}

static void put_sample(uint8_t *dst, size_t i, unsigned out_bytes, uint32_t v)
{
    switch (out_bytes) {
    case 1:
        dst[i] = (uint8_t)v;
        break;
    case 2: {
        uint16_t s = (uint16_t)v;
        memcpy(dst + 2 * i, &s, 2);
        break;
    }
    default:
        memcpy(dst + 4 * i, &v, 4);
        break;
    }
}

/* jdcolor.c: R = Y + 1.402 Cr', G = Y - 0.34414 Cb' - 0.71414 Cr',
 * B = Y + 1.772 Cb' (T.871), in 16-bit fixed point with libjpeg's
 * rounding, clamped to the sample range. */
#define YCC_SCALEBITS 16
#define YCC_HALF ((int64_t)1 << (YCC_SCALEBITS - 1))
#define YCC_FIX_1_40200 91881
#define YCC_FIX_1_77200 116130
#define YCC_FIX_0_71414 46802
#define YCC_FIX_0_34414 22554

static inline uint32_t clamp_sample(int64_t v, int64_t maxv)
{
    return (uint32_t)(v < 0 ? 0 : v > maxv ? maxv : v);
}

covct_rc covct_codec_t81_output(const covct_t81_image *img, int ycc_to_rgb,
                                unsigned out_bytes, uint8_t *dst,
                                size_t dst_len, covct_error *err)
{
    const unsigned nc = img->info.ncomp;
    const uint32_t rows = img->rows, cols = img->cols;
    size_t npix, need;
    if (out_bytes != 1 && out_bytes != 2 && out_bytes != 4)
        return COVCT_ERR(err, COVCT_ERR_ARG, "JPEG: %u bytes per sample",
                         out_bytes);
    if (nc < 1 || nc > COVCT_T81_MAX_COMPONENTS || (ycc_to_rgb && nc != 3))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "JPEG: cannot write %u components%s", nc,
                         ycc_to_rgb ? " as RGB" : "");
    if (!covct_mul_size(rows, cols, &npix) ||
        !covct_mul_size(npix, nc, &need) ||
        !covct_mul_size(need, out_bytes, &need) || need != dst_len)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "JPEG: output buffer of %zu bytes for %ux%ux%u "
                         "samples of %u bytes", dst_len, cols, rows, nc,
                         out_bytes);
    const uint16_t *src[COVCT_T81_MAX_COMPONENTS];
    size_t stride[COVCT_T81_MAX_COMPONENTS];
    uint16_t *owned[COVCT_T81_MAX_COMPONENTS] = {NULL, NULL, NULL, NULL};
    uint16_t *tmp = NULL;
    covct_rc rc = COVCT_OK;
    for (unsigned c = 0; c < nc; c++) {
        const covct_t81_plane *pl = &img->comp[c];
        if (!pl->px) {
            rc = COVCT_ERR(err, COVCT_ERR_ARG, "JPEG: component %u missing",
                           c);
            goto out;
        }
        if (pl->hs == img->hmax && pl->vs == img->vmax) {
            src[c] = pl->px;
            stride[c] = pl->stride;
            continue;
        }
        size_t bytes;
        if (!covct_mul_size(npix, sizeof(uint16_t), &bytes) ||
            !(owned[c] = covct_malloc(bytes))) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                           "JPEG: cannot allocate an upsampled component");
            goto out;
        }
        /* A 2:1 filtered row is 2w >= cols samples wide. */
        if (!(tmp = covct_malloc(((size_t)pl->w * 2 + cols) *
                                 sizeof(uint16_t)))) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                           "JPEG: cannot allocate an upsampling row");
            goto out;
        }
        rc = upsample(img, pl, owned[c], tmp, err);
        if (rc)
            goto out;
        src[c] = owned[c];
        stride[c] = cols;
        COVCT_FREE(tmp);
    }
    if (ycc_to_rgb) {
        const int64_t maxv = ((int64_t)1 << img->info.precision) - 1;
        const int64_t center = ((int64_t)1 << img->info.precision) >> 1;
        size_t i = 0;
        for (uint32_t y = 0; y < rows; y++) {
            const uint16_t *py = src[0] + y * stride[0];
            const uint16_t *pb = src[1] + y * stride[1];
            const uint16_t *pr = src[2] + y * stride[2];
            for (uint32_t x = 0; x < cols; x++, i += 3) {
                int64_t yy = py[x], cb = pb[x] - center, cr = pr[x] - center;
                int64_t r = yy + ((YCC_FIX_1_40200 * cr + YCC_HALF) >>
                                  YCC_SCALEBITS);
                int64_t g = yy + ((-YCC_FIX_0_34414 * cb + YCC_HALF -
                                   YCC_FIX_0_71414 * cr) >> YCC_SCALEBITS);
                int64_t b = yy + ((YCC_FIX_1_77200 * cb + YCC_HALF) >>
                                  YCC_SCALEBITS);
                put_sample(dst, i, out_bytes, clamp_sample(r, maxv));
                put_sample(dst, i + 1, out_bytes, clamp_sample(g, maxv));
                put_sample(dst, i + 2, out_bytes, clamp_sample(b, maxv));
            }
        }
        goto out;
    }
    if (nc == 1 && out_bytes == 2 && img->comp[0].pt == 0) {
        /* The CT case: rows copy straight out. */
        for (uint32_t y = 0; y < rows; y++)
            memcpy(dst + (size_t)y * cols * 2, src[0] + y * stride[0],
                   (size_t)cols * 2);
        goto out;
    }
    for (unsigned c = 0; c < nc; c++) {
        unsigned pt = img->comp[c].pt;
        for (uint32_t y = 0; y < rows; y++) {
            const uint16_t *p = src[c] + y * stride[c];
            size_t i = (size_t)y * cols * nc + c;
            /* H.1.2.1: undo the point transform; IJG keeps 16 bits. */
            for (uint32_t x = 0; x < cols; x++, i += nc)
                put_sample(dst, i, out_bytes,
                           (uint32_t)(uint16_t)((uint32_t)p[x] << pt));
        }
    }
out:
    covct_free(tmp);
    for (unsigned c = 0; c < nc; c++)
        covct_free(owned[c]);
    return rc;
}
