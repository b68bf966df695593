/* CSV files as RFC 4180 defines them, for clinical labels exported from
 * spreadsheets and hospital systems (covct import --labels;
 * docs/internals/import.md).  Written here rather than taken from a
 * library: the dialect is small, and a parser of outside data should be
 * one whose every branch the fuzz target (fuzz/fuzz_csv.c) reaches.
 *
 * The parser never gives up on a file: a record that is wrong (a stray
 * quote, text after a closing quote, bytes that are not UTF-8, a field
 * count that differs from the header's) is handed to the caller with a
 * problem that names the line and the field, and parsing goes on at the
 * next record, so that one bad row costs that row only. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "covct/limits.h"
#include "covct/site.h"

typedef struct csv_state {
    const uint8_t *p;
    size_t len, pos;
    uint64_t line;      /* physical line of p[pos], 1-based */
    covct_buf text;     /* the record's fields, each followed by a NUL */
    size_t *offs;       /* start of each field in text */
    const char **ptrs;
    size_t *lens;
    size_t n, cap;
    bool too_many;      /* more than COVCT_LIMIT_CSV_FIELDS: stop storing */
    char problem[256];  /* first problem of the record, "" when none */
} csv_state;

/* Only the first problem of a record is kept: it is the one that explains
 * the others. */
static void record_problem(csv_state *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void record_problem(csv_state *s, const char *fmt, ...)
{
    if (s->problem[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->problem, sizeof s->problem, fmt, ap);
    va_end(ap);
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF), 0 when invalid. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    if (c < 0x80)
        return 1;
    size_t k;
    uint32_t min, cp;
    if ((c & 0xE0) == 0xC0) {
        k = 2, min = 0x80, cp = c & 0x1Fu;
    } else if ((c & 0xF0) == 0xE0) {
        k = 3, min = 0x800, cp = c & 0x0Fu;
    } else if ((c & 0xF8) == 0xF0) {
        k = 4, min = 0x10000, cp = c & 0x07u;
    } else {
        return 0;
    }
    if (n < k)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return k;
}

/* Close the field that started at text offset `start`: check it, store
 * its NUL and its place. */
static covct_rc end_field(csv_state *s, size_t start, covct_error *err)
{
    size_t flen = s->text.len - start;
    size_t field = s->n + 1;
    if (s->too_many) {
        s->text.len = start;
        return COVCT_OK;
    }
    const uint8_t *f = s->text.data ? s->text.data + start : NULL;
    for (size_t i = 0; i < flen;) {
        if (f[i] == 0) {
            record_problem(s, "field %zu contains a NUL byte at byte %zu",
                           field, i + 1);
            break;
        }
        size_t k = utf8_seq(f + i, flen - i);
        if (!k) {
            record_problem(s,
                           "field %zu is not valid UTF-8 (byte 0x%02X at "
                           "byte %zu of the field): save the file as UTF-8",
                           field, f[i], i + 1);
            break;
        }
        i += k;
    }
    if (s->n == COVCT_LIMIT_CSV_FIELDS) {
        record_problem(s, "more than %d fields", COVCT_LIMIT_CSV_FIELDS);
        s->too_many = true;
        s->text.len = start;
        return COVCT_OK;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        size_t *o = covct_realloc(s->offs, cap * sizeof *o);
        if (!o)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        s->offs = o;
        size_t *l = covct_realloc(s->lens, cap * sizeof *l);
        if (!l)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        s->lens = l;
        const char **q = covct_realloc(s->ptrs, cap * sizeof *q);
        if (!q)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        s->ptrs = q;
        s->cap = cap;
    }
    s->offs[s->n] = start;
    s->lens[s->n] = flen;
    s->n++;
    return covct_buf_append(&s->text, "", 1, err);
}

/* Append one byte of a field's value, unless the field is over its cap
 * (then the record has a problem and the rest is dropped). */
static covct_rc field_byte(csv_state *s, size_t start, uint8_t c,
                           covct_error *err)
{
    if (s->too_many)
        return COVCT_OK;
    if (s->text.len - start >= COVCT_LIMIT_CSV_FIELD) {
        record_problem(s, "field %zu is longer than %d bytes", s->n + 1,
                       COVCT_LIMIT_CSV_FIELD);
        return COVCT_OK;
    }
    return covct_buf_append(&s->text, &c, 1, err);
}

static bool at_eol(const csv_state *s)
{
    return s->pos < s->len && (s->p[s->pos] == '\n' || s->p[s->pos] == '\r');
}

/* Step over one line break: CRLF, LF or a lone CR (old Mac files). */
static void skip_eol(csv_state *s)
{
    if (s->p[s->pos] == '\r' && s->pos + 1 < s->len &&
        s->p[s->pos + 1] == '\n')
        s->pos++;
    s->pos++;
    s->line++;
}

/* One field from s->pos; stops at the comma, line break or end after it
 * (not consumed). */
static covct_rc read_field(csv_state *s, covct_error *err)
{
    size_t start = s->text.len;
    size_t field = s->n + 1;
    covct_rc rc = COVCT_OK;
    if (s->pos < s->len && s->p[s->pos] == '"') {
        /* RFC 4180 2.5-2.7: a quoted field runs to the next quote that is
         * not doubled, over commas and line breaks. */
        uint64_t opened = s->line;
        s->pos++;
        for (;;) {
            if (s->pos >= s->len) {
                record_problem(s,
                               "field %zu: the quoted field opened on line "
                               "%llu is never closed",
                               field, (unsigned long long)opened);
                return end_field(s, start, err);
            }
            uint8_t c = s->p[s->pos];
            if (c == '"') {
                if (s->pos + 1 < s->len && s->p[s->pos + 1] == '"') {
                    s->pos += 2;
                    if ((rc = field_byte(s, start, '"', err)))
                        return rc;
                    continue;
                }
                s->pos++;
                break;
            }
            /* a line break inside quotes is part of the value, but still
             * a line of the file for the messages */
            if (c == '\n' || (c == '\r' && !(s->pos + 1 < s->len &&
                                            s->p[s->pos + 1] == '\n')))
                s->line++;
            s->pos++;
            if ((rc = field_byte(s, start, c, err)))
                return rc;
        }
        if (s->pos < s->len && s->p[s->pos] != ',' && !at_eol(s)) {
            record_problem(s,
                           "field %zu: text after the closing quote (a quote "
                           "inside a quoted field is written twice: \"\")",
                           field);
            while (s->pos < s->len && s->p[s->pos] != ',' && !at_eol(s))
                s->pos++;
        }
        return end_field(s, start, err);
    }
    while (s->pos < s->len && s->p[s->pos] != ',' && !at_eol(s)) {
        uint8_t c = s->p[s->pos++];
        if (c == '"')
            record_problem(s,
                           "field %zu: a quote inside a field that does not "
                           "start with one (put the whole field in quotes "
                           "and write the quote twice: \"\")",
                           field);
        if ((rc = field_byte(s, start, c, err)))
            return rc;
    }
    return end_field(s, start, err);
}

covct_rc covct_csv_parse(const uint8_t *data, size_t len,
                         covct_csv_record_fn fn, void *user,
                         covct_error *err)
{
    if ((!data && len) || !fn)
        return COVCT_ERR(err, COVCT_ERR_ARG, "covct_csv_parse: no input");
    csv_state s = { .p = data, .len = len, .line = 1 };
    covct_rc rc = COVCT_OK;
    size_t header_fields = 0;
    uint64_t index = 0;
    /* The byte order mark Excel writes at the start of "CSV UTF-8". */
    if (len >= 3 && !memcmp(data, "\xEF\xBB\xBF", 3))
        s.pos = 3;
    while (s.pos < s.len) {
        if (at_eol(&s)) {
            /* a line with nothing on it is not a record (a trailing empty
             * line is common; RFC 4180 would make it one empty field) */
            skip_eol(&s);
            continue;
        }
        uint64_t first_line = s.line;
        s.n = 0;
        s.text.len = 0;
        s.too_many = false;
        s.problem[0] = '\0';
        for (;;) {
            if ((rc = read_field(&s, err)))
                goto out;
            if (s.pos < s.len && s.p[s.pos] == ',') {
                s.pos++;
                continue; /* a comma at the end of a line is followed by
                             one more, empty, field */
            }
            break;
        }
        if (s.pos < s.len)
            skip_eol(&s);
        if (index == 0)
            header_fields = s.n;
        else if (s.n != header_fields && !s.too_many)
            record_problem(&s, "%zu field%s where the header has %zu",
                           s.n, s.n == 1 ? "" : "s", header_fields);
        for (size_t i = 0; i < s.n; i++)
            s.ptrs[i] = (const char *)s.text.data + s.offs[i];
        covct_csv_record r = {
            .index = index,
            .line = first_line,
            .n_fields = s.n,
            .fields = s.ptrs,
            .lens = s.lens,
            .problem = s.problem[0] ? s.problem : NULL,
        };
        if ((rc = fn(user, &r, err)))
            goto out;
        index++;
    }
out:
    covct_buf_free(&s.text);
    covct_free(s.offs);
    covct_free(s.lens);
    covct_free(s.ptrs);
    return rc;
}
