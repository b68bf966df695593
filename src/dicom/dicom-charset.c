/*
 * Specific Character Set (0008,0005): decoding string values to UTF-8.
 *
 * PS3.3 C.12.1.1.2 lists the Defined Terms; PS3.5 6.1 says how values that
 * use ISO 2022 code extensions switch between character sets with escape
 * sequences, and where the switched state ends.  PS3.5 Annexes H (Japanese),
 * I (Korean), J (UTF-8, GB18030, GBK) and K (GB2312) give worked examples,
 * which the tests in tests/test_charset.c replay.
 *
 * The ISO 2022 machinery is ours; each run of bytes that belongs to one
 * coded character set is handed to glibc's iconv.  A hospital whose PACS
 * labels its data with the wrong character set must still be able to read
 * its studies, so nothing here fails on bad input: bytes that do not decode
 * become U+FFFD, unknown Defined Terms fall back to the default repertoire,
 * and only a bad argument or a failed allocation is an error.  See
 * docs/internals/charset.md.
 */
#include <errno.h>
#include <iconv.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "covct/core.h"
#include "covct/dicom.h"
#include "covct/limits.h"

#define ESC 0x1B

/* What is designated to G0, the 7-bit half (PS3.5 6.1.2.5.1). */
typedef enum g0_set {
    G0_ASCII,    /* ISO-IR 6, and ISO-IR 14 (JIS X 0201 Romaji) read as ASCII */
    G0_JISX0208, /* ISO-IR 87, two bytes 02/01..07/14 per character */
    G0_JISX0212  /* ISO-IR 159, likewise */
} g0_set;

/* What is designated to G1, the bytes with the high bit set. */
typedef enum g1_kind {
    G1_NONE,     /* nothing designated: every such byte is U+FFFD */
    G1_SBCS,     /* a 96-character set (ISO 8859 part), one byte each */
    G1_KATAKANA, /* ISO-IR 13, JIS X 0201 half-width katakana */
    G1_DBCS      /* ISO-IR 149 or 58: two bytes each, EUC form */
} g1_kind;

typedef struct g1_set {
    g1_kind kind;
    const char *iconv_name; /* G1_SBCS and G1_DBCS */
} g1_set;

static const g1_set g1_none = {G1_NONE, NULL};
/* The default repertoire is ISO-IR 6 only, but Latin-1 is what systems
 * that ignore (0008,0005) write, and reading it as such loses nothing. */
static const g1_set g1_latin1 = {G1_SBCS, "ISO-8859-1"};

/* The character sets of PS3.3 Tables C.12-2 to C.12-5, by ISO-IR number. */
typedef struct ir_set {
    unsigned ir;
    const char *esc;  /* what follows ESC to designate it, or NULL */
    bool to_g0;       /* the escape designates G0 (else G1) */
    g0_set g0;        /* when to_g0 */
    g1_set g1;        /* when !to_g0 */
} ir_set;

static const ir_set ir_sets[] = {
    /* Table C.12-3: single-byte sets with code extensions. */
    {6, "(B", true, G0_ASCII, {G1_NONE, NULL}},
    {100, "-A", false, G0_ASCII, {G1_SBCS, "ISO-8859-1"}},
    {101, "-B", false, G0_ASCII, {G1_SBCS, "ISO-8859-2"}},
    {109, "-C", false, G0_ASCII, {G1_SBCS, "ISO-8859-3"}},
    {110, "-D", false, G0_ASCII, {G1_SBCS, "ISO-8859-4"}},
    {144, "-L", false, G0_ASCII, {G1_SBCS, "ISO-8859-5"}},
    {127, "-G", false, G0_ASCII, {G1_SBCS, "ISO-8859-6"}},
    {126, "-F", false, G0_ASCII, {G1_SBCS, "ISO-8859-7"}},
    {138, "-H", false, G0_ASCII, {G1_SBCS, "ISO-8859-8"}},
    {148, "-M", false, G0_ASCII, {G1_SBCS, "ISO-8859-9"}},
    {203, "-b", false, G0_ASCII, {G1_SBCS, "ISO-8859-15"}},
    /* TIS 620-2533 is ISO 8859-11 without 0xA0; the 8859-11 table in glibc
     * also accepts a no-break space there. */
    {166, "-T", false, G0_ASCII, {G1_SBCS, "ISO-8859-11"}},
    {13, ")I", false, G0_ASCII, {G1_KATAKANA, NULL}},
    /* ISO-IR 14, JIS X 0201 Romaji, differs from ASCII only in 05/12 (Yen)
     * and 07/14 (overline).  05/12 is the DICOM value delimiter, so, like
     * pydicom and dcmtk, covct reads Romaji as ASCII. */
    {14, "(J", true, G0_ASCII, {G1_NONE, NULL}},
    /* Table C.12-4: multi-byte sets with code extensions. */
    {87, "$B", true, G0_JISX0208, {G1_NONE, NULL}},
    {159, "$(D", true, G0_JISX0212, {G1_NONE, NULL}},
    {149, "$)C", false, G0_ASCII, {G1_DBCS, "EUC-KR"}},
    {58, "$)A", false, G0_ASCII, {G1_DBCS, "GB2312"}},
};

/* Escape sequences not in PS3.3 that mean one of the sets above: ISO 2022
 * also designates JIS X 0208 with ESC $ @ (its 1978 edition) and ESC $ ( B. */
static const ir_set ir_alias_escapes[] = {
    {87, "$@", true, G0_JISX0208, {G1_NONE, NULL}},
    {87, "$(B", true, G0_JISX0208, {G1_NONE, NULL}},
};

static const ir_set *ir_set_find(unsigned ir)
{
    for (size_t i = 0; i < sizeof ir_sets / sizeof ir_sets[0]; i++)
        if (ir_sets[i].ir == ir)
            return &ir_sets[i];
    return NULL;
}

/* ---- output -------------------------------------------------------------
 * The buffer is sized once from the input length (see charset_to_utf8), so
 * no write below can run past it; put_* check anyway and report a bug. */
typedef struct outbuf {
    char *p;
    size_t len, cap; /* cap keeps one byte for the terminating NUL */
} outbuf;

static bool put_bytes(outbuf *o, const void *s, size_t n)
{
    if (n > o->cap - o->len)
        return false;
    memcpy(o->p + o->len, s, n);
    o->len += n;
    return true;
}

static bool put_fffd(outbuf *o)
{
    static const char fffd[3] = {'\xEF', '\xBF', '\xBD'};
    return put_bytes(o, fffd, sizeof fffd);
}

/* ---- iconv --------------------------------------------------------------
 * A value rarely uses more than two or three character sets, so a call keeps
 * the few converters it opens in a small cache and closes them at the end.
 * Nothing is shared between calls: the function is thread-safe. */
#define CD_CACHE 4

typedef struct conv {
    outbuf out;
    struct {
        const char *name; /* pointer into ir_sets or a literal */
        iconv_t cd;
    } cache[CD_CACHE];
    size_t next_evict;
} conv;

#define CD_INVALID ((iconv_t)-1)

/* Warn once per process when glibc lacks a converter (a system without
 * gconv modules); every value would otherwise repeat it. */
static atomic_flag warned_no_iconv = ATOMIC_FLAG_INIT;

static iconv_t conv_get(conv *c, const char *name)
{
    for (size_t i = 0; i < CD_CACHE; i++)
        if (c->cache[i].name == name)
            return c->cache[i].cd;
    size_t slot = CD_CACHE;
    for (size_t i = 0; i < CD_CACHE; i++) {
        if (!c->cache[i].name) {
            slot = i;
            break;
        }
    }
    if (slot == CD_CACHE) {
        slot = c->next_evict;
        c->next_evict = (c->next_evict + 1) % CD_CACHE;
        if (c->cache[slot].cd != CD_INVALID)
            iconv_close(c->cache[slot].cd);
    }
    iconv_t cd = iconv_open("UTF-8", name);
    if (cd == CD_INVALID && !atomic_flag_test_and_set(&warned_no_iconv))
        covct_log(COVCT_LOG_WARN,
                  "iconv cannot convert from %s (gconv modules missing?); "
                  "its characters will read as U+FFFD", name);
    c->cache[slot].name = name;
    c->cache[slot].cd = cd;
    return cd;
}

static void conv_close(conv *c)
{
    for (size_t i = 0; i < CD_CACHE; i++)
        if (c->cache[i].name && c->cache[i].cd != CD_INVALID)
            iconv_close(c->cache[i].cd);
}

/* Convert n bytes in character set `name` to UTF-8.  The input is made of
 * units of `unit` bytes (1, or a whole character for the rewritten JIS
 * pairs).  A unit that starts an invalid or truncated sequence becomes one
 * U+FFFD and decoding resumes at the next unit, as a tolerant reader
 * should. */
static covct_rc conv_run(conv *c, const char *name, const uint8_t *s,
                         size_t n, size_t unit, covct_error *err)
{
    iconv_t cd = conv_get(c, name);
    if (cd == CD_INVALID) {
        for (size_t i = 0; i < n; i += unit)
            if (!put_fffd(&c->out))
                goto overflow;
        return COVCT_OK;
    }
    /* iconv's prototype lacks const; it does not write through inp. */
    char *inp = (char *)(uintptr_t)s;
    size_t inleft = n;
    while (inleft > 0) {
        char *outp = c->out.p + c->out.len;
        size_t outleft = c->out.cap - c->out.len;
        size_t r = iconv(cd, &inp, &inleft, &outp, &outleft);
        c->out.len = (size_t)(outp - c->out.p);
        if (r != (size_t)-1)
            break;
        if (errno != EILSEQ && errno != EINVAL)
            goto overflow; /* E2BIG: the bound in charset_to_utf8 is wrong */
        /* Return the converter to its initial state before resuming. */
        iconv(cd, NULL, NULL, NULL, NULL);
        if (!put_fffd(&c->out))
            goto overflow;
        size_t done = (size_t)(inp - (char *)(uintptr_t)s);
        size_t next = (done / unit + 1) * unit;
        if (next > n)
            next = n;
        inp = (char *)(uintptr_t)(s + next);
        inleft = n - next;
    }
    iconv(cd, NULL, NULL, NULL, NULL);
    return COVCT_OK;
overflow:
    return COVCT_ERR(err, COVCT_ERR_INTERNAL,
                     "charset: UTF-8 output of %s text exceeded its bound",
                     name);
}

/* ---- the character sets -------------------------------------------------- */

/* One run of GR bytes (0x80..0xFF) under G1 set g1. */
static covct_rc decode_g1(conv *c, const g1_set *g1, const uint8_t *s,
                          size_t n, covct_error *err)
{
    switch (g1->kind) {
    case G1_SBCS:
    case G1_DBCS:
        return conv_run(c, g1->iconv_name, s, n, 1, err);
    case G1_KATAKANA:
        /* JIS X 0201 puts the 63 half-width katakana at 0xA1..0xDF, in the
         * same order as Unicode's U+FF61..U+FF9F. */
        for (size_t i = 0; i < n; i++) {
            bool ok;
            if (s[i] >= 0xA1 && s[i] <= 0xDF) {
                uint32_t u = 0xFF61u + (uint32_t)(s[i] - 0xA1);
                char e[3] = {(char)(0xE0 | (u >> 12)),
                             (char)(0x80 | ((u >> 6) & 0x3F)),
                             (char)(0x80 | (u & 0x3F))};
                ok = put_bytes(&c->out, e, sizeof e);
            } else {
                ok = put_fffd(&c->out);
            }
            if (!ok)
                return COVCT_ERR(err, COVCT_ERR_INTERNAL,
                                 "charset: katakana output exceeded its bound");
        }
        return COVCT_OK;
    case G1_NONE:
        break;
    }
    for (size_t i = 0; i < n; i++)
        if (!put_fffd(&c->out))
            return COVCT_ERR(err, COVCT_ERR_INTERNAL,
                             "charset: output exceeded its bound");
    return COVCT_OK;
}

/* One run of bytes 02/01..07/14 while JIS X 0208 or 0212 is in G0.  glibc
 * has no converter for the bare 94x94 sets, so each pair is rewritten in
 * its EUC-JP form (high bit set; JIS X 0212 behind the single shift 0x8F)
 * and decoded as EUC-JP. */
static covct_rc decode_jis(conv *c, g0_set g0, const uint8_t *s, size_t n,
                           covct_error *err)
{
    uint8_t euc[384]; /* a multiple of 3 and of 2 */
    size_t unit = g0 == G0_JISX0212 ? 3 : 2;
    size_t pairs = n / 2;
    size_t i = 0;
    while (i < pairs) {
        size_t k = 0;
        for (; i < pairs && k + 3 <= sizeof euc; i++) {
            if (g0 == G0_JISX0212)
                euc[k++] = 0x8F;
            euc[k++] = (uint8_t)(s[2 * i] | 0x80);
            euc[k++] = (uint8_t)(s[2 * i + 1] | 0x80);
        }
        covct_rc rc = conv_run(c, "EUC-JP", euc, k, unit, err);
        if (rc != COVCT_OK)
            return rc;
    }
    /* An odd byte left before a space, control or escape is half a
     * character. */
    if (n % 2 && !put_fffd(&c->out))
        return COVCT_ERR(err, COVCT_ERR_INTERNAL,
                         "charset: output exceeded its bound");
    return COVCT_OK;
}

/* ---- (0008,0005) ---------------------------------------------------------- */

typedef enum term_kind {
    TERM_DEFAULT,   /* empty or not understood: ISO-IR 6 (and Latin-1) */
    TERM_IR,        /* an ISO-IR number: ISO_IR n or ISO 2022 IR n */
    TERM_STANDALONE /* UTF-8, GB18030, GBK: no code extensions allowed */
} term_kind;

typedef struct term {
    term_kind kind;
    bool iso2022;         /* spelt "ISO 2022 ...": code extensions in use */
    const ir_set *set;    /* TERM_IR */
    const char *iconv_name; /* TERM_STANDALONE */
} term;

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

static int upper(char ch)
{
    int c = (unsigned char)ch;
    return (c >= 'a' && c <= 'z') ? c - 'a' + 'A' : c;
}

/* Does s[0..n) equal the upper-case literal lit, ignoring case? */
static bool term_is(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    if (n != l)
        return false;
    for (size_t i = 0; i < n; i++)
        if (upper(s[i]) != (unsigned char)lit[i])
            return false;
    return true;
}

static size_t skip_seps(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '_' || s[i] == '-' ||
                     s[i] == '+'))
        i++;
    return i;
}

/* Read one Defined Term (already trimmed).  Besides the spellings of
 * PS3.3, accept the misspellings seen in real files that pydicom also
 * accepts ("ISO IR 192", "ISO-IR 144", "ISO_2022-IR 100", "ISO_2022_IR+126")
 * and the CP 1234 draft terms "ISO 2022 58" and "ISO 2022 GBK". */
static term term_parse(const char *s, size_t n)
{
    term t = {TERM_DEFAULT, false, NULL, NULL};
    if (n == 0)
        return t;
    if (term_is(s, n, "GB18030")) {
        t.kind = TERM_STANDALONE;
        t.iconv_name = "GB18030";
        return t;
    }
    if (term_is(s, n, "GBK") || term_is(s, n, "ISO 2022 GBK")) {
        t.kind = TERM_STANDALONE;
        t.iconv_name = "GBK";
        return t;
    }
    if (n < 3 || upper(s[0]) != 'I' || upper(s[1]) != 'S' ||
        upper(s[2]) != 'O')
        return t;
    size_t i = skip_seps(s, n, 3);
    if (n - i >= 4 && memcmp(s + i, "2022", 4) == 0) {
        t.iso2022 = true;
        i = skip_seps(s, n, i + 4);
    }
    bool has_ir = n - i >= 2 && upper(s[i]) == 'I' && upper(s[i + 1]) == 'R';
    if (has_ir)
        i = skip_seps(s, n, i + 2);
    else if (!t.iso2022)
        return t;
    if (i == n)
        return t;
    unsigned ir = 0;
    for (; i < n; i++) {
        if (!is_digit(s[i]) || ir > 1000)
            return t;
        ir = ir * 10 + (unsigned)(s[i] - '0');
    }
    if (ir == 192) {
        t.kind = TERM_STANDALONE;
        t.iconv_name = "UTF-8";
        return t;
    }
    t.set = ir_set_find(ir);
    if (t.set)
        t.kind = TERM_IR;
    return t;
}

/* The state of the ISO 2022 decoder. */
typedef struct state {
    g0_set g0;
    const g1_set *g1;
} state;

/* The state at the start of the value and after each delimiter: the set of
 * value 1 (PS3.5 6.1.2.5.3).  An empty value 1 means ISO-IR 6. */
static state initial_state(const term *first)
{
    state st = {G0_ASCII, &g1_latin1};
    if (first->kind != TERM_IR)
        return st;
    if (!first->set->to_g0)
        st.g1 = &first->set->g1;
    else if (first->set->g0 != G0_ASCII)
        /* Value 1 is JIS X 0208 or 0212, which PS3.3 does not foresee:
         * pydicom reads the value as ISO 2022 JP, whose G1 is empty. */
        st.g1 = &g1_none;
    return st;
}

/* At s[0] == ESC: read an ISO 2022 escape sequence, ESC, intermediate bytes
 * 02/00..02/15, a final byte 03/00..07/14 (ISO/IEC 2022 13.1).  Return its
 * length and the designation it makes, or set *set = NULL when it is one
 * covct does not know.  Returns 1 for a lone ESC. */
static size_t escape_parse(const uint8_t *s, size_t n, const ir_set **set)
{
    *set = NULL;
    size_t j = 1;
    /* Real designations have at most two intermediate bytes; stopping at
     * three keeps a stray ESC from swallowing a run of spaces. */
    while (j < n && j <= 3 && s[j] >= 0x20 && s[j] <= 0x2F)
        j++;
    if (j >= n || s[j] < 0x30 || s[j] > 0x7E)
        return 1;
    size_t len = j + 1;
    const char *tail = (const char *)s + 1;
    for (size_t i = 0; i < sizeof ir_sets / sizeof ir_sets[0]; i++) {
        if (strlen(ir_sets[i].esc) == len - 1 &&
            memcmp(ir_sets[i].esc, tail, len - 1) == 0) {
            *set = &ir_sets[i];
            return len;
        }
    }
    for (size_t i = 0; i < sizeof ir_alias_escapes / sizeof ir_alias_escapes[0];
         i++) {
        if (strlen(ir_alias_escapes[i].esc) == len - 1 &&
            memcmp(ir_alias_escapes[i].esc, tail, len - 1) == 0) {
            *set = &ir_alias_escapes[i];
            return len;
        }
    }
    return len;
}

/* PS3.5 6.1.2.5.3: the character set returns to that of value 1 at the
 * value delimiter, at CR, LF, TAB and FF in text, and at the component
 * delimiters of a Person Name. */
static bool is_reset_byte(uint8_t b, bool is_pn)
{
    switch (b) {
    case '\\':
    case '\r':
    case '\n':
    case '\t':
    case '\f':
        return true;
    case '^':
    case '=':
        return is_pn;
    default:
        return false;
    }
}

static covct_rc decode_iso2022(conv *c, const term *first, bool extensions,
                               const uint8_t *in, size_t len, bool is_pn,
                               covct_error *err)
{
    const state init = initial_state(first);
    state st = init;
    covct_rc rc = COVCT_OK;
    size_t i = 0;
    while (i < len) {
        uint8_t b = in[i];
        if (b == ESC && extensions) {
            const ir_set *set;
            size_t n = escape_parse(in + i, len - i, &set);
            if (!set) {
                /* Unknown or malformed: show that something was lost. */
                if (!put_fffd(&c->out))
                    goto overflow;
            } else if (set->to_g0) {
                st.g0 = set->g0;
            } else {
                st.g1 = &set->g1;
            }
            i += n;
            continue;
        }
        size_t j = i + 1;
        if (b >= 0x80) {
            while (j < len && in[j] >= 0x80)
                j++;
            rc = decode_g1(c, st.g1, in + i, j - i, err);
        } else if (st.g0 != G0_ASCII && b >= 0x21 && b <= 0x7E) {
            /* Inside a two-byte G0 set, '^', '=' and '\' are halves of
             * characters, not delimiters; PS3.5 6.1.2.5.3 makes the writer
             * return to ASCII before each delimiter. */
            while (j < len && in[j] >= 0x21 && in[j] <= 0x7E)
                j++;
            rc = decode_jis(c, st.g0, in + i, j - i, err);
        } else {
            if (!put_bytes(&c->out, &b, 1))
                goto overflow;
            if (is_reset_byte(b, is_pn))
                st = init;
        }
        if (rc != COVCT_OK)
            return rc;
        i = j;
    }
    return COVCT_OK;
overflow:
    return COVCT_ERR(err, COVCT_ERR_INTERNAL,
                     "charset: output exceeded its bound");
}

covct_rc covct_dcm_charset_to_utf8(const char *charset, const uint8_t *in,
                                   size_t len, bool is_pn, char **out,
                                   covct_error *err)
{
    if (!out)
        return COVCT_ERR(err, COVCT_ERR_ARG, "charset: out is NULL");
    *out = NULL;
    if (!in && len > 0)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "charset: input is NULL but its length is %zu", len);

    /* Split (0008,0005) at backslashes, trimming the spaces that pad CS
     * values; only value 1 sets the initial state, and any further value
     * means code extensions are in use.  Escape sequences are honoured
     * whether or not their set was declared: the bytes say what they are. */
    if (!charset)
        charset = "";
    const char *v1 = charset;
    while (*v1 == ' ')
        v1++;
    const char *bs = strchr(v1, '\\');
    size_t v1_len = bs ? (size_t)(bs - v1) : strlen(v1);
    while (v1_len > 0 && v1[v1_len - 1] == ' ')
        v1_len--;
    term first = term_parse(v1, v1_len);
    /* The multi-byte sets exist only as code extensions, so a value 1 such
     * as "ISO_IR 58" (seen from some Chinese systems) still gets them. */
    bool extensions = bs != NULL || first.iso2022 ||
                      (first.kind == TERM_IR &&
                       (first.set->to_g0 ? first.set->g0 != G0_ASCII
                                         : first.set->g1.kind == G1_DBCS));

    /* Worst case: every input byte becomes U+FFFD (3 bytes); a byte of
     * GB18030 or UTF-8 yields at most one output byte, one of a 96-set or
     * katakana at most 3, a pair of JIS X 0208/0212, KS X 1001 or GB2312 at
     * most 3.  4 per byte leaves a margin. */
    size_t cap;
    if (!covct_mul_size(len, 4, &cap) || !covct_add_size(cap, 1, &cap) ||
        cap > COVCT_LIMIT_ALLOC_MAX)
        return COVCT_ERR(err, COVCT_ERR_LIMIT,
                         "charset: value of %zu bytes too long to convert",
                         len);
    conv c;
    memset(&c, 0, sizeof c);
    c.out.p = covct_malloc(cap);
    if (!c.out.p)
        return COVCT_ERR(err, COVCT_ERR_NOMEM,
                         "charset: cannot allocate %zu bytes", cap);
    c.out.cap = cap - 1;

    covct_rc rc;
    if (first.kind == TERM_STANDALONE) {
        /* PS3.5 6.1.2.5.4 d: UTF-8, GB18030 and GBK forbid code
         * extensions, so later values are ignored and the whole value is
         * one run (GB18030 trail bytes include '\' and '^'). */
        rc = conv_run(&c, first.iconv_name, in, len, 1, err);
    } else {
        rc = decode_iso2022(&c, &first, extensions, in, len, is_pn, err);
    }
    conv_close(&c);
    if (rc != COVCT_OK) {
        covct_free(c.out.p);
        return rc;
    }
    c.out.p[c.out.len] = '\0';
    /* Give back the slack of the worst-case bound when it is worth it. */
    if (c.out.cap - c.out.len > 64) {
        char *shrunk = covct_realloc(c.out.p, c.out.len + 1);
        if (shrunk)
            c.out.p = shrunk;
    }
    *out = c.out.p;
    return COVCT_OK;
}
