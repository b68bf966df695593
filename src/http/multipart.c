/*
 * multipart/related (RFC 2046 5.1, RFC 2387) as DICOMweb uses it: STOW-RS
 * requests (PS3.18 8.6.1.2, 10.5) and WADO-RS responses (PS3.18 8.7.1).
 *
 * The parser reads a whole body already in memory.  It makes two passes:
 * the first finds every delimiter and checks every part's headers and the
 * limits, the second calls the caller once per part.  So a truncated or
 * malformed request is refused before any instance from it is stored.
 * What it accepts beyond the RFC, and why, is in
 * docs/internals/dicomweb-json.md.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "covct/limits.h"
#include "dicomweb_int.h"

/* ---- Content-Type ------------------------------------------------------ */

static bool is_ws(char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 2045 5.1 tspecials end a token. */
static bool is_tspecial(char c)
{
    return strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

static size_t skip_ws(const char *h, size_t i)
{
    while (h[i] && (is_ws(h[i]) || h[i] == '\r' || h[i] == '\n'))
        i++;
    return i;
}

/* Copy a parameter value (token or quoted string) starting at h[*i] into
 * dst (cap bytes with NUL).  Returns false with *why set on failure. */
static bool param_value(const char *h, size_t *i, char *dst, size_t cap,
                        const char **why)
{
    size_t o = 0, k = *i;
    if (h[k] == '"') {
        k++;
        for (;;) {
            char c = h[k];
            if (!c) {
                *why = "unterminated quoted string";
                return false;
            }
            if (c == '"') {
                k++;
                break;
            }
            if (c == '\\' && h[k + 1])
                c = h[++k]; /* RFC 822 quoted-pair */
            if (o + 1 >= cap) {
                *why = "value too long";
                return false;
            }
            dst[o++] = c;
            k++;
        }
    } else {
        while (h[k] && !is_ws(h[k]) && h[k] != ';') {
            if (o + 1 >= cap) {
                *why = "value too long";
                return false;
            }
            dst[o++] = h[k++];
        }
    }
    dst[o] = '\0';
    *i = k;
    return true;
}

covct_rc multipart_ctype_parse(const char *h, multipart_ctype *out,
                               covct_error *err)
{
    memset(out, 0, sizeof *out);
    if (!h)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "multipart: no Content-Type header");
    size_t i = skip_ws(h, 0), o = 0;
    while (h[i] && h[i] != ';' && !is_ws(h[i])) {
        if (o + 1 >= sizeof out->media)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "Content-Type: media type longer than %zu "
                             "bytes", sizeof out->media - 1);
        char c = h[i++];
        out->media[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    out->media[o] = '\0';
    if (strncmp(out->media, "multipart/", 10) != 0 || !out->media[10])
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "Content-Type '%.100s' is not a multipart type", h);
    bool have_boundary = false;
    for (;;) {
        i = skip_ws(h, i);
        if (!h[i])
            break;
        if (h[i] != ';')
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "Content-Type: expected ';' at byte %zu of "
                             "'%.100s'", i, h);
        i = skip_ws(h, i + 1);
        if (!h[i])
            break; /* a trailing ';' is harmless */
        size_t name = i;
        while (h[i] && h[i] != '=' && !is_ws(h[i]) && !is_tspecial(h[i]))
            i++;
        size_t name_len = i - name;
        i = skip_ws(h, i);
        if (!name_len || h[i] != '=')
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "Content-Type: parameter without '=' at byte "
                             "%zu of '%.100s'", name, h);
        i = skip_ws(h, i + 1);
        char *dst = NULL;
        size_t cap = 0;
        char ignored[1024];
        if (name_len == 8 && !strncasecmp(h + name, "boundary", 8)) {
            if (have_boundary)
                return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                 "Content-Type: second boundary parameter "
                                 "at byte %zu", name);
            have_boundary = true;
            dst = out->boundary;
            cap = sizeof out->boundary;
        } else if (name_len == 4 && !strncasecmp(h + name, "type", 4)) {
            dst = out->type;
            cap = sizeof out->type;
        } else if (name_len == 5 && !strncasecmp(h + name, "start", 5)) {
            dst = out->start;
            cap = sizeof out->start;
        } else {
            dst = ignored;
            cap = sizeof ignored;
        }
        const char *why = NULL;
        size_t at = i;
        if (!param_value(h, &i, dst, cap, &why))
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "Content-Type: parameter '%.*s' at byte %zu: "
                             "%s (at most %zu bytes)", (int)name_len,
                             h + name, at, why, cap - 1);
    }
    if (!have_boundary || !out->boundary[0])
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "Content-Type '%.100s': %s boundary parameter", h,
                         have_boundary ? "empty" : "no");
    for (const char *b = out->boundary; *b; b++)
        if ((unsigned char)*b < 0x20 || (unsigned char)*b > 0x7E)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "Content-Type: boundary has a control or "
                             "non-ASCII byte 0x%02X at position %zu",
                             (unsigned char)*b,
                             (size_t)(b - out->boundary));
    return COVCT_OK;
}

/* ---- parser ------------------------------------------------------------ */

void multipart_limits_default(multipart_limits *lim)
{
    lim->max_parts = COVCT_LIMIT_MULTIPART_PARTS;
    lim->max_header_bytes = COVCT_LIMIT_MULTIPART_HEADER_BYTES;
    lim->max_headers = COVCT_LIMIT_MULTIPART_HEADERS;
}

typedef struct span {
    size_t off;      /* of the part's first byte (its headers) */
    size_t len;      /* up to the line end before the next delimiter */
} span;

typedef struct parser {
    const uint8_t *b;
    size_t n;
    char delim[MULTIPART_BOUNDARY_MAX + 3]; /* "--" boundary */
    size_t dl;
    bool lf_only; /* the first delimiter line ended in a bare LF */
    multipart_limits lim;
    /* scratch for one part's headers */
    multipart_header *hdrs;
    char *text;
    size_t text_cap;
} parser;

/* Find the next delimiter line at or after `from`: "--boundary" at the
 * start of a line, then "--" for the close delimiter, then transport
 * padding (RFC 2046 5.1.1: linear white space) and the line end (or, for
 * the close delimiter, the end of the body).  Text that starts like a
 * delimiter but goes on ("--boundaryX") is data.  Returns false when there
 * is none; else *at is the delimiter's offset, *next the offset after its
 * line, *close whether it is the close delimiter. */
static bool find_delim(const parser *p, size_t from, size_t *at, size_t *next,
                       bool *close)
{
    size_t i = from;
    while (i + p->dl <= p->n) {
        const uint8_t *hit = memmem(p->b + i, p->n - i, p->delim, p->dl);
        if (!hit)
            return false;
        size_t k = (size_t)(hit - p->b);
        i = k + 1;
        if (k != from && k > 0 && p->b[k - 1] != '\n')
            continue;
        size_t j = k + p->dl;
        bool cl = j + 2 <= p->n && p->b[j] == '-' && p->b[j + 1] == '-';
        if (cl)
            j += 2;
        while (j < p->n && (p->b[j] == ' ' || p->b[j] == '\t'))
            j++;
        if (j < p->n && p->b[j] == '\r' && j + 1 < p->n &&
            p->b[j + 1] == '\n')
            j += 2;
        else if (j < p->n && p->b[j] == '\n')
            j += 1;
        else if (!(cl && j == p->n))
            continue;
        *at = k;
        *next = j;
        *close = cl;
        return true;
    }
    return false;
}

/* Parse the headers of the part occupying b[off .. off+len).  Fills the
 * parser's scratch (when fill) and returns in *body_off the offset of the
 * body.  Errors name part `index` and byte offsets in the message. */
static covct_rc parse_headers(parser *p, size_t index, size_t off, size_t len,
                              bool fill, size_t *n_hdrs, size_t *body_off,
                              covct_error *err)
{
    size_t i = off, end = off + len, nh = 0, t = 0;
    *n_hdrs = 0;
    for (;;) {
        if (i >= end) {
            if (i == off) { /* an empty part: no headers, no body */
                *body_off = end;
                return COVCT_OK;
            }
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "multipart: part %zu at byte %zu: headers not "
                             "ended by an empty line before the next "
                             "delimiter", index + 1, off);
        }
        const uint8_t *nl = memchr(p->b + i, '\n', end - i);
        size_t line_end = nl ? (size_t)(nl - p->b) : end;
        size_t next = nl ? line_end + 1 : end;
        if (line_end - off >= p->lim.max_header_bytes)
            return COVCT_ERR(err, COVCT_ERR_LIMIT,
                             "multipart: part %zu at byte %zu: header block "
                             "longer than %zu bytes", index + 1, off,
                             p->lim.max_header_bytes);
        size_t le = line_end;
        if (le > i && p->b[le - 1] == '\r')
            le--;
        if (le == i) {
            if (!nl)
                return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                 "multipart: part %zu at byte %zu: headers "
                                 "not ended by an empty line", index + 1,
                                 off);
            *body_off = next; /* RFC 2046 5.1.1: CRLF, then the body */
            *n_hdrs = nh;
            return COVCT_OK;
        }
        const char *s = (const char *)p->b + i;
        size_t sl = le - i;
        if (is_ws(s[0])) {
            /* RFC 5322 2.2.3 folding: the line continues the last value. */
            if (!nh)
                return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                 "multipart: part %zu: header line at byte "
                                 "%zu starts with white space", index + 1,
                                 i);
            while (sl && is_ws(s[0])) {
                s++;
                sl--;
            }
            if (fill && sl) {
                t--; /* over the previous value's NUL */
                p->text[t++] = ' ';
                memcpy(p->text + t, s, sl);
                t += sl;
                while (t > 0 && is_ws(p->text[t - 1]))
                    t--;
                p->text[t++] = '\0';
            }
        } else {
            const char *colon = memchr(s, ':', sl);
            size_t nlen = colon ? (size_t)(colon - s) : 0;
            while (nlen && is_ws(s[nlen - 1]))
                nlen--;
            if (!colon || !nlen)
                return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                 "multipart: part %zu: header line at byte "
                                 "%zu has no name and ':'", index + 1, i);
            if (nh >= p->lim.max_headers)
                return COVCT_ERR(err, COVCT_ERR_LIMIT,
                                 "multipart: part %zu at byte %zu: more than "
                                 "%zu header lines", index + 1, off,
                                 p->lim.max_headers);
            const char *v = colon + 1;
            size_t vl = sl - (size_t)(v - s);
            while (vl && is_ws(v[0])) {
                v++;
                vl--;
            }
            while (vl && is_ws(v[vl - 1]))
                vl--;
            if (fill) {
                p->hdrs[nh].name = p->text + t;
                memcpy(p->text + t, s, nlen);
                t += nlen;
                p->text[t++] = '\0';
                p->hdrs[nh].value = p->text + t;
                memcpy(p->text + t, v, vl);
                t += vl;
                p->text[t++] = '\0';
            }
            nh++;
        }
        i = next;
    }
}

static const char *hdr_get(const multipart_header *h, size_t n,
                           const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcasecmp(h[i].name, name))
            return h[i].value;
    return NULL;
}

const char *multipart_part_header(const multipart_part *part,
                                  const char *name)
{
    return hdr_get(part->headers, part->n_headers, name);
}

/* The part's Content-Length, when it has one, must match what the
 * delimiters say: a mismatch means a truncated or altered part. */
static covct_rc check_length(const multipart_part *pt, covct_error *err)
{
    const char *cl = pt->content_length;
    if (!cl[0])
        return COVCT_OK;
    errno = 0;
    char *endp;
    unsigned long long v = strtoull(cl, &endp, 10);
    if (cl[0] < '0' || cl[0] > '9' || *endp || errno)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "multipart: part %zu at byte %zu: Content-Length "
                         "'%.40s' is not a number", pt->index + 1,
                         pt->offset, cl);
    if (v != pt->body_len)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "multipart: part %zu at byte %zu: Content-Length %llu "
                         "but %zu bytes up to the next delimiter",
                         pt->index + 1, pt->offset, v, pt->body_len);
    return COVCT_OK;
}

static void part_fill(parser *p, const multipart_ctype *ct, size_t index,
                      size_t body_off, size_t body_end, size_t nh,
                      multipart_part *pt)
{
    memset(pt, 0, sizeof *pt);
    pt->index = index;
    pt->offset = body_off;
    pt->body = p->b + body_off;
    pt->body_len = body_end - body_off;
    pt->headers = p->hdrs;
    pt->n_headers = nh;
    pt->message = ct;
    const char *v;
    pt->content_type = (v = hdr_get(p->hdrs, nh, "Content-Type")) ? v : "";
    pt->content_location =
        (v = hdr_get(p->hdrs, nh, "Content-Location")) ? v : "";
    pt->content_id = (v = hdr_get(p->hdrs, nh, "Content-ID")) ? v : "";
    pt->content_length =
        (v = hdr_get(p->hdrs, nh, "Content-Length")) ? v : "";
    pt->content_transfer_encoding =
        (v = hdr_get(p->hdrs, nh, "Content-Transfer-Encoding")) ? v : "";
}

covct_rc multipart_parse_ex(const uint8_t *body, size_t len,
                            const char *content_type_header,
                            const multipart_limits *lim, multipart_part_fn fn,
                            void *user, covct_error *err)
{
    multipart_ctype ct;
    covct_rc rc = multipart_ctype_parse(content_type_header, &ct, err);
    if (rc)
        return rc;
    if (!body && len)
        return COVCT_ERR(err, COVCT_ERR_ARG, "multipart: NULL body");
    parser p = {.b = body, .n = len};
    if (lim)
        p.lim = *lim;
    else
        multipart_limits_default(&p.lim);
    p.dl = strlen(ct.boundary) + 2;
    p.delim[0] = p.delim[1] = '-';
    memcpy(p.delim + 2, ct.boundary, p.dl - 2);

    span *spans = NULL;
    size_t n_spans = 0, cap_spans = 0;
    size_t at, next;
    bool close;
    if (!find_delim(&p, 0, &at, &next, &close))
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "multipart: boundary '--%s' not found at the start "
                         "of any line in %zu bytes", ct.boundary, len);
    if (close)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "multipart: close delimiter at byte %zu before any "
                         "part", at);
    p.lf_only = !(next >= 2 && body[next - 2] == '\r');

    /* Scratch for one part's headers.  Unfolded header text never exceeds
     * the header block, plus a NUL per name and value. */
    size_t hcap;
    if (!covct_mul_size(p.lim.max_headers, sizeof *p.hdrs, &hcap) ||
        !covct_add_size(p.lim.max_header_bytes, 2 * p.lim.max_headers + 2,
                        &p.text_cap))
        return COVCT_ERR(err, COVCT_ERR_ARG, "multipart: limits overflow");
    p.hdrs = covct_malloc(hcap ? hcap : 1);
    p.text = covct_malloc(p.text_cap);
    if (!p.hdrs || !p.text) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "multipart: header scratch");
        goto done;
    }

    /* Pass 1: delimiters, limits, headers and Content-Length. */
    for (;;) {
        size_t start = next, end;
        if (!find_delim(&p, start, &at, &next, &close)) {
            rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                           "multipart: part %zu starting at byte %zu has no "
                           "delimiter after it (no close delimiter "
                           "'--%s--'; body truncated at %zu bytes?)",
                           n_spans + 1, start, ct.boundary, len);
            goto done;
        }
        /* The line end before the delimiter belongs to it (RFC 2046
         * 5.1.1: delimiter := CRLF dash-boundary).  A bare LF is taken as
         * that line end too; in a message whose delimiter lines end in
         * CRLF, a CR before it is also removed. */
        end = at;
        if (end > start && body[end - 1] == '\n') {
            end--;
            if (!p.lf_only && end > start && body[end - 1] == '\r')
                end--;
        }
        if (n_spans >= p.lim.max_parts) {
            rc = COVCT_ERR(err, COVCT_ERR_LIMIT,
                           "multipart: more than %zu parts (part %zu at byte "
                           "%zu)", p.lim.max_parts, n_spans + 1, start);
            goto done;
        }
        if (n_spans == cap_spans) {
            size_t nc = cap_spans ? cap_spans * 2 : 16;
            span *ns = covct_realloc(spans, nc * sizeof *ns);
            if (!ns) {
                rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "multipart: %zu parts",
                               nc);
                goto done;
            }
            spans = ns;
            cap_spans = nc;
        }
        spans[n_spans].off = start;
        spans[n_spans].len = end - start;
        size_t nh, boff;
        if ((rc = parse_headers(&p, n_spans, start, end - start, true, &nh,
                                &boff, err)))
            goto done;
        multipart_part pt;
        part_fill(&p, &ct, n_spans, boff, end, nh, &pt);
        if ((rc = check_length(&pt, err)))
            goto done;
        n_spans++;
        if (close)
            break; /* what follows is the epilogue, ignored */
    }

    /* Pass 2: deliver. */
    for (size_t k = 0; k < n_spans; k++) {
        size_t nh, boff;
        if ((rc = parse_headers(&p, k, spans[k].off, spans[k].len, true, &nh,
                                &boff, err)))
            goto done;
        multipart_part pt;
        part_fill(&p, &ct, k, boff, spans[k].off + spans[k].len, nh, &pt);
        if ((rc = fn(&pt, user, err)))
            goto done;
    }
done:
    covct_free(spans);
    covct_free(p.hdrs);
    covct_free(p.text);
    return rc;
}

covct_rc multipart_parse(const uint8_t *body, size_t len,
                         const char *content_type_header, multipart_part_fn fn,
                         void *user, covct_error *err)
{
    return multipart_parse_ex(body, len, content_type_header, NULL, fn, user,
                              err);
}

/* ---- writer ------------------------------------------------------------ */

/* RFC 2046 5.1.1 bchars. */
static bool bchar(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || strchr("'()+_,-./:=? ", c) != NULL;
}

covct_rc multipart_writer_init(multipart_writer *w, covct_buf *out,
                               const char *boundary, covct_error *err)
{
    memset(w, 0, sizeof *w);
    size_t n = boundary ? strlen(boundary) : 0;
    if (n == 0 || n > 70)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "multipart boundary must have 1 to 70 characters "
                         "(RFC 2046 5.1.1), not %zu", n);
    for (size_t i = 0; i < n; i++)
        if (!bchar(boundary[i]) || (i == n - 1 && boundary[i] == ' '))
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "multipart boundary: character %zu (0x%02X) "
                             "is not allowed (RFC 2046 5.1.1 bchars)", i,
                             (unsigned char)boundary[i]);
    memcpy(w->boundary, boundary, n + 1);
    w->out = out;
    return COVCT_OK;
}

static bool header_text_ok(const char *s)
{
    return !strpbrk(s, "\r\n");
}

covct_rc multipart_writer_begin_part(multipart_writer *w,
                                     const char *content_type,
                                     const char *const *extra_headers,
                                     covct_error *err)
{
    if (!w->out || w->finished)
        return COVCT_ERR(err, COVCT_ERR_ARG, "multipart writer %s",
                         w->finished ? "already finished" : "not started");
    if (content_type && !header_text_ok(content_type))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "multipart: Content-Type with CR or LF");
    for (size_t i = 0; extra_headers && extra_headers[i]; i++)
        if (!header_text_ok(extra_headers[i]) ||
            !strchr(extra_headers[i], ':'))
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "multipart: header %zu '%.60s' is not one "
                             "'Name: value' line", i, extra_headers[i]);
    covct_rc rc = covct_buf_appendf(w->out, err, "%s--%s\r\n",
                                    w->parts ? "\r\n" : "", w->boundary);
    if (!rc && content_type)
        rc = covct_buf_appendf(w->out, err, "Content-Type: %s\r\n",
                               content_type);
    for (size_t i = 0; !rc && extra_headers && extra_headers[i]; i++)
        rc = covct_buf_appendf(w->out, err, "%s\r\n", extra_headers[i]);
    if (!rc)
        rc = covct_buf_append(w->out, "\r\n", 2, err);
    if (!rc)
        w->parts++;
    return rc;
}

covct_rc multipart_writer_append(multipart_writer *w, const void *data,
                                 size_t n, covct_error *err)
{
    if (!w->parts || w->finished)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "multipart: data outside a part");
    return covct_buf_append(w->out, data, n, err);
}

covct_rc multipart_writer_finish(multipart_writer *w, covct_error *err)
{
    if (!w->parts || w->finished)
        return COVCT_ERR(err, COVCT_ERR_ARG, "multipart: %s",
                         w->finished ? "finished twice"
                                     : "a message needs one part at least "
                                       "(RFC 2046 5.1.1)");
    covct_rc rc = covct_buf_appendf(w->out, err, "\r\n--%s--\r\n",
                                    w->boundary);
    if (!rc)
        w->finished = true;
    return rc;
}

covct_rc multipart_boundary_random(char out[33], covct_error *err)
{
    uint8_t r[16];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t k = getrandom(r + got, sizeof r - got, 0);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return COVCT_ERR(err, COVCT_ERR_IO, "getrandom: %s",
                             strerror(errno));
        }
        got += (size_t)k;
    }
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof r; i++) {
        out[2 * i] = hx[r[i] >> 4];
        out[2 * i + 1] = hx[r[i] & 15];
    }
    out[32] = '\0';
    return COVCT_OK;
}
