/*
 * DICOM JSON Model encoder (PS3.18 Annex F.2).
 *
 * The encoder walks a parsed data set once and appends JSON text straight
 * into a covct_buf: no intermediate tree, no per-value allocation on the
 * common path (ASCII text needs no character set conversion).  A series of
 * several hundred instances is therefore a few hundred kilobytes of
 * appends.  Choices (DS/IS text, bulk data, character sets, invalid UTF-8)
 * and every difference from dcmtk's dcm2json are in
 * docs/internals/dicomweb-json.md.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "covct/limits.h"
#include "dicomweb_int.h"

#define TAG_CHARSET COVCT_TAG(0x0008, 0x0005)
#define TAG_PIXEL_DATA COVCT_TAG(0x7FE0, 0x0010)

#define TRY(x)                                                             \
    do {                                                                   \
        covct_rc rc_ = (x);                                                \
        if (rc_ != COVCT_OK)                                               \
            return rc_;                                                    \
    } while (0)

typedef struct enc {
    covct_buf *out;
    const dicomjson_opts *opts;
    dicomjson_stats st;
    covct_error *err;
    /* Sequence tags and item indexes above the current element, for bulk
     * data URIs of nested elements. */
    uint32_t path_tag[COVCT_LIMIT_SQ_DEPTH + 1];
    size_t path_item[COVCT_LIMIT_SQ_DEPTH + 1];
} enc;

static const char hexdig[] = "0123456789ABCDEF";

static inline covct_rc put(enc *e, const void *p, size_t n)
{
    return covct_buf_append(e->out, p, n, e->err);
}
#define PUTS(e, lit) put((e), (lit), sizeof(lit) - 1)

/* PS3.18 F.2.1.1: "the eight uppercase hexadecimal digits of the tag". */
static void hex8(char *d, uint32_t v)
{
    for (int i = 7; i >= 0; i--) {
        d[i] = hexdig[v & 15u];
        v >>= 4;
    }
}

static size_t fmt_u64(char *d, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        d[i] = tmp[n - 1 - i];
    return n;
}

static size_t fmt_i64(char *d, int64_t v)
{
    if (v < 0) {
        d[0] = '-';
        /* Negate in unsigned arithmetic: -INT64_MIN overflows int64_t. */
        return 1 + fmt_u64(d + 1, (uint64_t)0 - (uint64_t)v);
    }
    return fmt_u64(d, (uint64_t)v);
}

/* ---- JSON strings ------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at p (Unicode 15, Table 3-7), or 0;
 * when 0, *bad is the length of the maximal invalid subpart to replace by
 * one U+FFFD (at least 1), as the Unicode "best practice" (and WHATWG's
 * decoder) does. */
static size_t utf8_seq(const uint8_t *p, size_t n, size_t *bad)
{
    uint8_t c = p[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        *bad = 1;
        return 0;
    }
    for (size_t k = 1; k <= need; k++) {
        if (k >= n || p[k] < lo || p[k] > hi) {
            *bad = k;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

covct_rc dicomjson_escape(covct_buf *out, const char *s, size_t n,
                          size_t *n_invalid, covct_error *err)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0, run = 0, invalid = 0;
    covct_rc rc = COVCT_OK;
    while (i < n) {
        uint8_t c = p[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t bad = 0, k = utf8_seq(p + i, n - i, &bad);
            if (k) {
                i += k;
                continue;
            }
            if ((rc = covct_buf_append(out, p + run, i - run, err)) ||
                (rc = covct_buf_append(out, "\xEF\xBF\xBD", 3, err)))
                return rc;
            invalid++;
            i += bad;
            run = i;
            continue;
        }
        if ((rc = covct_buf_append(out, p + run, i - run, err)))
            return rc;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            /* RFC 8259 7: other control characters as \u00XX. */
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hexdig[c >> 4];
            esc[5] = hexdig[c & 15];
            el = 6;
        }
        if ((rc = covct_buf_append(out, esc, el, err)))
            return rc;
        i++;
        run = i;
    }
    rc = covct_buf_append(out, p + run, n - run, err);
    if (n_invalid)
        *n_invalid += invalid;
    return rc;
}

static covct_rc put_jstr(enc *e, const char *s, size_t n)
{
    TRY(PUTS(e, "\""));
    TRY(dicomjson_escape(e->out, s, n, &e->st.invalid_utf8, e->err));
    return PUTS(e, "\"");
}

/* ---- numbers ----------------------------------------------------------- */

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* PS3.5 6.2 DS: "A string of characters representing either a fixed point
 * number or a floating point number ... 0-9, +, -, E, e, ." (ANSI X3.9
 * real constants).  JSON (RFC 8259 6) is narrower: no '+' sign, no leading
 * zeros, at least one digit on both sides of '.'.  dcmtk bug #1079 is the
 * same normalisation. */
bool dicomjson_number_normalize(const char *s, size_t n, char *dst,
                                size_t cap)
{
    if (cap < n + 3)
        return false;
    size_t i = 0, o = 0;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-')) {
        neg = s[i] == '-';
        i++;
    }
    size_t int_start = i;
    while (i < n && is_digit(s[i]))
        i++;
    size_t int_end = i, frac_start = i, frac_end = i;
    if (i < n && s[i] == '.') {
        i++;
        frac_start = i;
        while (i < n && is_digit(s[i]))
            i++;
        frac_end = i;
    }
    if (int_end == int_start && frac_end == frac_start)
        return false; /* no digit at all: "", ".", "-", "E5" */
    size_t exp_start = i;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t d = i;
        while (i < n && is_digit(s[i]))
            i++;
        if (i == d)
            return false;
    }
    if (i != n)
        return false;
    if (neg)
        dst[o++] = '-';
    size_t k = int_start;
    while (k + 1 < int_end && s[k] == '0')
        k++;
    if (int_end == int_start) {
        dst[o++] = '0';
    } else {
        memcpy(dst + o, s + k, int_end - k);
        o += int_end - k;
    }
    if (frac_end > frac_start) {
        dst[o++] = '.';
        memcpy(dst + o, s + frac_start, frac_end - frac_start);
        o += frac_end - frac_start;
    }
    memcpy(dst + o, s + exp_start, n - exp_start);
    o += n - exp_start;
    dst[o] = '\0';
    return true;
}

/* Shortest text that reads back to the same float / double. */
static size_t fmt_real(char *d, size_t cap, double v, bool single)
{
    int n = 0;
    for (int prec = single ? 6 : 15; prec <= (single ? 9 : 17); prec++) {
        n = snprintf(d, cap, "%.*g", prec, v);
        if (single ? strtof(d, NULL) == (float)v : strtod(d, NULL) == v)
            break;
    }
    return n > 0 ? (size_t)n : 0;
}

/* ---- value representations --------------------------------------------- */

static bool vr_multi(uint16_t vr)
{
    /* PS3.5 6.2: ST, LT, UT and UR are single-valued; '\' is text there. */
    return vr != COVCT_VR('S', 'T') && vr != COVCT_VR('L', 'T') &&
           vr != COVCT_VR('U', 'T') && vr != COVCT_VR('U', 'R');
}

static bool vr_leading_significant(uint16_t vr)
{
    /* PS3.5 Table 6.2-1: leading spaces are part of the value of the
     * free-text VRs and UR may not have any; elsewhere they are padding. */
    return vr == COVCT_VR('S', 'T') || vr == COVCT_VR('L', 'T') ||
           vr == COVCT_VR('U', 'T') || vr == COVCT_VR('U', 'C') ||
           vr == COVCT_VR('U', 'R');
}

static bool vr_text(uint16_t vr)
{
    /* PS3.5 6.1.2.3: the VRs whose characters follow (0008,0005). */
    switch (vr) {
    case COVCT_VR('S', 'H'): case COVCT_VR('L', 'O'): case COVCT_VR('U', 'C'):
    case COVCT_VR('S', 'T'): case COVCT_VR('L', 'T'): case COVCT_VR('U', 'T'):
    case COVCT_VR('P', 'N'):
        return true;
    default:
        return false;
    }
}

/* Size of one value of a binary VR, or 0. */
static size_t vr_binary_size(uint16_t vr)
{
    switch (vr) {
    case COVCT_VR('U', 'S'): case COVCT_VR('S', 'S'):
        return 2;
    case COVCT_VR('U', 'L'): case COVCT_VR('S', 'L'): case COVCT_VR('F', 'L'):
    case COVCT_VR('A', 'T'):
        return 4;
    case COVCT_VR('F', 'D'): case COVCT_VR('S', 'V'): case COVCT_VR('U', 'V'):
        return 8;
    default:
        return 0;
    }
}

/* Word size of a bulk VR, for swapping big endian values to the little
 * endian byte stream that InlineBinary carries. */
static size_t vr_word(uint16_t vr)
{
    switch (vr) {
    case COVCT_VR('O', 'W'):
        return 2;
    case COVCT_VR('O', 'F'): case COVCT_VR('O', 'L'):
        return 4;
    case COVCT_VR('O', 'D'): case COVCT_VR('O', 'V'):
        return 8;
    default:
        return 1;
    }
}

static uint64_t rd(const uint8_t *p, size_t sz, bool be)
{
    uint64_t v = 0;
    for (size_t i = 0; i < sz; i++)
        v |= (uint64_t)p[be ? sz - 1 - i : i] << (8 * i);
    return v;
}

static void trim(const char **s, size_t *n, bool leading)
{
    const char *p = *s;
    size_t len = *n;
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\0'))
        len--;
    if (leading)
        while (len > 0 && p[0] == ' ') {
            p++;
            len--;
        }
    *s = p;
    *n = len;
}

/* PS3.5 6.2.1.1: "Trailing null components and their delimiters may be
 * omitted": "OB^^^^" is "OB".  Spaces are padding. */
static void trim_pn_group(const char **s, size_t *n)
{
    while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '^' ||
                      (*s)[*n - 1] == '\0'))
        (*n)--;
    while (*n > 0 && (*s)[0] == ' ') {
        (*s)++;
        (*n)--;
    }
}

/* PS3.18 F.2.2: a PN value is an object with up to three component
 * groups, split at '='; empty groups are left out, and a value with no
 * group left is empty (null, F.2.5). */
static covct_rc put_pn(enc *e, const char *s, size_t n)
{
    static const char *const names[3] = {"\"Alphabetic\":", "\"Ideographic\":",
                                         "\"Phonetic\":"};
    const char *gs[3] = {NULL, NULL, NULL};
    size_t gn[3] = {0, 0, 0}, start = 0;
    bool any = false;
    for (int g = 0; g < 3 && start <= n; g++) {
        size_t end = start;
        /* The third group takes the rest: a stray fourth '=' stays text
         * rather than losing data. */
        while (end < n && (g == 2 || s[end] != '='))
            end++;
        gs[g] = s + start;
        gn[g] = end - start;
        trim_pn_group(&gs[g], &gn[g]);
        any |= gn[g] > 0;
        start = end + 1;
    }
    if (!any)
        return PUTS(e, "null");
    TRY(PUTS(e, "{"));
    bool first = true;
    for (int g = 0; g < 3; g++) {
        if (!gn[g])
            continue;
        if (!first)
            TRY(PUTS(e, ","));
        first = false;
        TRY(put(e, names[g], strlen(names[g])));
        TRY(put_jstr(e, gs[g], gn[g]));
    }
    return PUTS(e, "}");
}

static covct_rc put_string_value(enc *e, uint16_t vr, const char *s, size_t n)
{
    if (n == 0)
        return PUTS(e, "null"); /* PS3.18 F.2.5: empty values are null */
    if (vr == COVCT_VR('P', 'N'))
        return put_pn(e, s, n);
    if (vr == COVCT_VR('D', 'S') || vr == COVCT_VR('I', 'S')) {
        char num[72];
        if (n + 3 <= sizeof num && dicomjson_number_normalize(s, n, num,
                                                              sizeof num))
            return put(e, num, strlen(num));
        /* Not a number: kept as a JSON string rather than lost (what
         * fo-dicom's PreferablyAsNumber and Orthanc do). */
        e->st.invalid_numbers++;
    }
    return put_jstr(e, s, n);
}

static covct_rc put_strings(enc *e, const covct_dcm_element *el, uint16_t vr,
                            const char *charset, bool ascii_g0)
{
    size_t n = 0;
    const uint8_t *v = covct_dcm_element_value(el, &n);
    if (!v)
        n = 0;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\0'))
        n--;
    if (n == 0)
        return COVCT_OK; /* PS3.18 F.2.5: present, no "Value" */

    bool text = vr_text(vr);
    bool fast = !text || ascii_g0;
    for (size_t i = 0; fast && i < n; i++)
        if (v[i] >= 0x80 || (text && v[i] == 0x1B))
            fast = false;
    const char *s = (const char *)v;
    char *conv = NULL;
    if (!fast) {
        /* Only the text VRs follow (0008,0005); bytes above 0x7F in the
         * others are invalid and read as Latin-1 (the default repertoire's
         * tolerance in dicom-charset.c). */
        covct_rc rc = covct_dcm_charset_to_utf8(text ? charset : "", v, n,
                                                vr == COVCT_VR('P', 'N'),
                                                &conv, e->err);
        if (rc)
            return rc;
        s = conv;
        n = strlen(conv);
    }

    bool multi = vr_multi(vr), lead = !vr_leading_significant(vr);
    covct_rc rc = COVCT_OK;
    /* A value of padding only ("  ") is empty, like length 0. */
    if (!multi || !memchr(s, '\\', n)) {
        const char *t = s;
        size_t tn = n;
        trim(&t, &tn, lead);
        if (vr == COVCT_VR('P', 'N'))
            while (tn > 0 && (t[tn - 1] == '^' || t[tn - 1] == '=' ||
                              t[tn - 1] == ' '))
                tn--;
        if (tn == 0)
            goto done;
    }
    if ((rc = PUTS(e, ",\"Value\":[")))
        goto done;
    size_t start = 0;
    for (size_t count = 0;; count++) {
        size_t end = start;
        if (multi)
            while (end < n && s[end] != '\\')
                end++;
        else
            end = n;
        const char *t = s + start;
        size_t tn = end - start;
        trim(&t, &tn, lead);
        if ((count && (rc = PUTS(e, ","))) ||
            (rc = put_string_value(e, vr, t, tn)))
            goto done;
        if (end >= n)
            break;
        start = end + 1;
    }
    rc = PUTS(e, "]");
done:
    covct_free(conv);
    return rc;
}

static covct_rc put_binary(enc *e, const covct_dcm_element *el, uint16_t vr,
                           bool be)
{
    size_t n = 0, sz = vr_binary_size(vr);
    const uint8_t *v = covct_dcm_element_value(el, &n);
    if (!v)
        n = 0;
    if (n % sz)
        e->st.odd_lengths++;
    size_t count = n / sz;
    if (count == 0)
        return COVCT_OK;
    TRY(PUTS(e, ",\"Value\":["));
    for (size_t i = 0; i < count; i++) {
        char num[48];
        size_t nl = 0;
        uint64_t x = rd(v + i * sz, sz, be);
        if (i)
            num[nl++] = ',';
        switch (vr) {
        case COVCT_VR('U', 'S'): case COVCT_VR('U', 'L'):
        case COVCT_VR('U', 'V'):
            nl += fmt_u64(num + nl, x);
            break;
        case COVCT_VR('S', 'S'):
            nl += fmt_i64(num + nl, (int16_t)(uint16_t)x);
            break;
        case COVCT_VR('S', 'L'):
            nl += fmt_i64(num + nl, (int32_t)(uint32_t)x);
            break;
        case COVCT_VR('S', 'V'):
            nl += fmt_i64(num + nl, (int64_t)x);
            break;
        case COVCT_VR('A', 'T'):
            /* PS3.18 F.2.3: AT as "GGGGEEEE"; each half is its own 16-bit
             * value in the data set's byte order. */
            num[nl++] = '"';
            hex8(num + nl, ((uint32_t)rd(v + i * sz, 2, be) << 16) |
                               (uint32_t)rd(v + i * sz + 2, 2, be));
            nl += 8;
            num[nl++] = '"';
            break;
        default: { /* FL, FD */
            double d;
            if (sz == 4) {
                uint32_t u = (uint32_t)x;
                float f;
                memcpy(&f, &u, 4);
                d = f;
            } else {
                memcpy(&d, &x, 8);
            }
            if (!isfinite(d)) {
                /* JSON has no NaN or infinity (RFC 8259 6). */
                e->st.nonfinite++;
                const char *t = isnan(d) ? "\"NaN\"" : d > 0 ? "\"Infinity\""
                                                               : "\"-Infinity\"";
                memcpy(num + nl, t, strlen(t));
                nl += strlen(t);
            } else {
                nl += fmt_real(num + nl, sizeof num - nl, d, sz == 4);
            }
        }
        }
        TRY(put(e, num, nl));
    }
    return PUTS(e, "]");
}

static covct_rc put_base64(enc *e, const uint8_t *p, size_t n)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t olen;
    if (!covct_mul_size((n + 2) / 3, 4, &olen))
        return COVCT_ERR(e->err, COVCT_ERR_LIMIT, "base64 of %zu bytes", n);
    TRY(covct_buf_reserve(e->out, olen, e->err));
    char *d = (char *)e->out->data + e->out->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t x = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8) |
                     p[i + 2];
        *d++ = b64[x >> 18];
        *d++ = b64[(x >> 12) & 63];
        *d++ = b64[(x >> 6) & 63];
        *d++ = b64[x & 63];
    }
    if (i < n) {
        uint32_t x = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            x |= (uint32_t)p[i + 1] << 8;
        *d++ = b64[x >> 18];
        *d++ = b64[(x >> 12) & 63];
        *d++ = i + 1 < n ? b64[(x >> 6) & 63] : '=';
        *d++ = '=';
    }
    e->out->len += olen;
    return COVCT_OK;
}

static covct_rc put_bulk_uri(enc *e, uint32_t tag, unsigned depth)
{
    TRY(PUTS(e, ",\"BulkDataURI\":\""));
    const char *pre = e->opts->bulk_uri_prefix;
    TRY(dicomjson_escape(e->out, pre, strlen(pre), &e->st.invalid_utf8,
                         e->err));
    char seg[32];
    for (unsigned d = 0; d < depth; d++) {
        hex8(seg, e->path_tag[d]);
        seg[8] = '/';
        size_t sl = 9 + fmt_u64(seg + 9, e->path_item[d]);
        seg[sl++] = '/';
        TRY(put(e, seg, sl));
    }
    hex8(seg, tag);
    seg[8] = '"';
    return put(e, seg, 9);
}

static covct_rc put_bulk(enc *e, const covct_dcm_element *el, uint32_t tag,
                         uint16_t vr, bool be, unsigned depth)
{
    const char *prefix = e->opts ? e->opts->bulk_uri_prefix : NULL;
    if (covct_dcm_element_encapsulated(el)) {
        /* PS3.18 F.2.7 has no inline form for encapsulated fragments. */
        if (prefix)
            return put_bulk_uri(e, tag, depth);
        e->st.bulk_omitted++;
        return COVCT_OK;
    }
    size_t n = 0;
    const uint8_t *v = covct_dcm_element_value(el, &n);
    if (!v || n == 0)
        return COVCT_OK;
    if (prefix && n > e->opts->bulk_threshold)
        return put_bulk_uri(e, tag, depth);
    TRY(PUTS(e, ",\"InlineBinary\":\""));
    size_t w = vr_word(vr);
    if (be && w > 1) {
        uint8_t *sw = covct_malloc(n);
        if (!sw)
            return COVCT_ERR(e->err, COVCT_ERR_NOMEM,
                             "(%04X,%04X): %zu bytes to swap",
                             COVCT_TAG_GROUP(tag), COVCT_TAG_ELEM(tag), n);
        for (size_t i = 0; i < n; i++) {
            size_t word = i - i % w;
            size_t j = word + (w - 1 - i % w);
            sw[i] = j < n ? v[j] : v[i];
        }
        covct_rc rc = put_base64(e, sw, n);
        covct_free(sw);
        TRY(rc);
    } else {
        TRY(put_base64(e, v, n));
    }
    return PUTS(e, "\"");
}

/* Whether value 1 of (0008,0005) puts a two-byte set in G0 (PS3.5
 * 6.1.2.5.1), where ASCII bytes are not ASCII characters. */
static bool g0_is_ascii(const char *charset)
{
    const char *end = strchr(charset, '\\');
    size_t n = end ? (size_t)(end - charset) : strlen(charset);
    while (n > 0 && charset[n - 1] == ' ')
        n--;
    return !((n >= 2 && !memcmp(charset + n - 2, "87", 2)) ||
             (n >= 3 && !memcmp(charset + n - 3, "159", 3)));
}

static covct_rc enc_dataset(enc *e, const covct_dcm_dataset *ds,
                            const char *charset, unsigned depth);

static covct_rc enc_element(enc *e, const covct_dcm_element *el,
                            const covct_dcm_dataset *ds, const char *charset,
                            bool ascii_g0, unsigned depth)
{
    uint32_t tag = covct_dcm_element_tag(el);
    uint16_t vr = covct_dcm_element_vr(el);
    size_t items = covct_dcm_element_item_count(el);
    if (vr == COVCT_VR('x', 's'))
        vr = COVCT_VR('U', 'S'); /* no Pixel Representation to decide */
    if (items > 0)
        vr = COVCT_VR('S', 'Q'); /* UN of undefined length (PS3.5 6.2.2) */
    if (!covct_dcm_vr_is_known(vr))
        vr = COVCT_VR('U', 'N');

    char head[32];
    head[0] = '"';
    hex8(head + 1, tag);
    memcpy(head + 9, "\":{\"vr\":\"", 9);
    char vrs[3];
    covct_dcm_vr_str(vr, vrs);
    head[18] = vrs[0];
    head[19] = vrs[1];
    head[20] = '"';
    TRY(put(e, head, 21));

    bool be = covct_dcm_dataset_big_endian(ds);
    if (vr == COVCT_VR('S', 'Q')) {
        if (items > 0) {
            if (depth >= COVCT_LIMIT_SQ_DEPTH)
                return COVCT_ERR(e->err, COVCT_ERR_LIMIT,
                                 "(%04X,%04X): sequences nested deeper than "
                                 "%d", COVCT_TAG_GROUP(tag),
                                 COVCT_TAG_ELEM(tag), COVCT_LIMIT_SQ_DEPTH);
            TRY(PUTS(e, ",\"Value\":["));
            for (size_t i = 0; i < items; i++) {
                if (i)
                    TRY(PUTS(e, ","));
                e->path_tag[depth] = tag;
                e->path_item[depth] = i;
                TRY(enc_dataset(e, covct_dcm_element_item(el, i), charset,
                                depth + 1));
            }
            TRY(PUTS(e, "]"));
        }
    } else if (tag == TAG_CHARSET && vr == COVCT_VR('C', 'S')) {
        /* Every string in the JSON text is UTF-8 now, so the data set it
         * describes is in ISO_IR 192 (what dcm2json writes too, even for
         * an empty value: covct reads stray high bytes there as Latin-1,
         * so the text may not be ASCII any more); keeping
         * the old term would make a client that turns the JSON back into
         * DICOM mislabel its text. */
        TRY(PUTS(e, ",\"Value\":[\"ISO_IR 192\"]"));
    } else if (covct_dcm_vr_is_string(vr)) {
        TRY(put_strings(e, el, vr, charset, ascii_g0));
    } else if (vr_binary_size(vr)) {
        TRY(put_binary(e, el, vr, be));
    } else {
        /* OB, OD, OF, OL, OV, OW, UN (PS3.18 F.2.3: InlineBinary or
         * BulkDataURI). */
        TRY(put_bulk(e, el, tag, vr, be, depth));
    }
    return PUTS(e, "}");
}

static covct_rc enc_dataset(enc *e, const covct_dcm_dataset *ds,
                            const char *charset, unsigned depth)
{
    /* PS3.5 6.1.2.5.2: an item without (0008,0005) keeps the character
     * set of the data set that contains it. */
    char own[256];
    const covct_dcm_element *cs = covct_dcm_dataset_get(ds, TAG_CHARSET);
    if (cs) {
        size_t n = 0;
        const uint8_t *v = covct_dcm_element_value(cs, &n);
        if (!v)
            n = 0;
        if (n > sizeof own - 1)
            n = sizeof own - 1;
        if (n)
            memcpy(own, v, n);
        own[n] = '\0';
        const char *t = own;
        trim(&t, &n, true);
        memmove(own, t, n);
        own[n] = '\0';
        charset = own;
    }
    bool ascii_g0 = g0_is_ascii(charset);
    bool meta = e->opts && e->opts->include_group_0002;

    TRY(PUTS(e, "{"));
    size_t count = covct_dcm_dataset_count(ds);
    bool first = true;
    uint32_t prev = 0;
    for (size_t i = 0; i < count; i++) {
        const covct_dcm_element *el = covct_dcm_dataset_at(ds, i);
        uint32_t tag = covct_dcm_element_tag(el);
        uint16_t group = COVCT_TAG_GROUP(tag);
        /* Group lengths (gggg,0000) are retired and carry no meaning once
         * the encoding is gone (PS3.5 7.2); item tags (FFFE,xxxx) are
         * structure, not attributes. */
        if (COVCT_TAG_ELEM(tag) == 0 || group == 0xFFFE ||
            tag == COVCT_TAG(0xFFFC, 0xFFFC) || /* PS3.10 7.2 padding */
            (group == 0x0002 && !meta))
            continue;
        /* A JSON object cannot repeat a name: the first of two equal tags
         * wins (a malformed file can hold both). */
        if (!first && tag == prev)
            continue;
        if (!first)
            TRY(PUTS(e, ","));
        first = false;
        prev = tag;
        TRY(enc_element(e, el, ds, charset, ascii_g0, depth));
    }
    return PUTS(e, "}");
}

covct_rc dicomjson_encode(const covct_dcm_dataset *ds,
                          const dicomjson_opts *opts, covct_buf *out,
                          covct_error *err)
{
    if (!ds || !out)
        return COVCT_ERR(err, COVCT_ERR_ARG, "dicomjson_encode: NULL %s",
                         ds ? "buffer" : "data set");
    enc *e = covct_calloc(1, sizeof *e);
    if (!e)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "dicomjson_encode: state");
    e->out = out;
    e->opts = opts;
    e->err = err;
    size_t start = out->len;
    covct_rc rc = enc_dataset(e, ds, "", 0);
    if (rc) {
        out->len = start;
        if (out->data && out->cap > start)
            out->data[start] = '\0';
    } else if (opts && opts->stats) {
        dicomjson_stats *s = opts->stats;
        s->invalid_utf8 += e->st.invalid_utf8;
        s->invalid_numbers += e->st.invalid_numbers;
        s->nonfinite += e->st.nonfinite;
        s->bulk_omitted += e->st.bulk_omitted;
        s->odd_lengths += e->st.odd_lengths;
    }
    covct_free(e);
    return rc;
}

covct_rc dicomjson_array_begin(dicomjson_array *a, covct_buf *out,
                               covct_error *err)
{
    a->out = out;
    a->count = 0;
    return covct_buf_append(out, "[", 1, err);
}

covct_rc dicomjson_array_append(dicomjson_array *a,
                                const covct_dcm_dataset *ds,
                                const dicomjson_opts *opts, covct_error *err)
{
    size_t start = a->out->len;
    covct_rc rc = COVCT_OK;
    if (a->count && (rc = covct_buf_append(a->out, ",", 1, err)))
        return rc;
    if ((rc = dicomjson_encode(ds, opts, a->out, err))) {
        a->out->len = start;
        return rc;
    }
    a->count++;
    return COVCT_OK;
}

covct_rc dicomjson_array_end(dicomjson_array *a, covct_error *err)
{
    return covct_buf_append(a->out, "]", 1, err);
}
