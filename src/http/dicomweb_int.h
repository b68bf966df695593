/*
 * DICOMweb building blocks (PS3.18), internal to src/http:
 *
 *  - the DICOM JSON Model encoder (PS3.18 Annex F.2), which writes data
 *    sets straight into a covct_buf without building a JSON tree, so that
 *    the metadata of a whole series (hundreds of instances) is one pass of
 *    appends;
 *  - a multipart/related parser and writer (RFC 2046 5.1, RFC 2387), the
 *    framing of STOW-RS requests and WADO-RS responses (PS3.18 8.6, 8.7).
 *
 * Design notes and every accepted difference from dcmtk's dcm2json are in
 * docs/internals/dicomweb-json.md.
 */
#ifndef COVCT_HTTP_DICOMWEB_INT_H
#define COVCT_HTTP_DICOMWEB_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"
#include "covct/dicom.h"

/* ======================================================================
 * DICOM JSON Model (PS3.18 F.2)
 * ====================================================================== */

/* Counters of what the encoder had to repair or leave out; optional. */
typedef struct dicomjson_stats {
    size_t invalid_utf8;    /* byte sequences replaced by U+FFFD */
    size_t invalid_numbers; /* IS/DS values that are not numbers, written
                               as JSON strings */
    size_t nonfinite;       /* FL/FD NaN or infinity, written as strings */
    size_t bulk_omitted;    /* encapsulated pixel data without a bulk data
                               URI prefix: written with its vr only */
    size_t odd_lengths;     /* binary values whose length is not a
                               multiple of the VR's size (rest ignored) */
} dicomjson_stats;

typedef struct dicomjson_opts {
    /* Bulk data (PS3.18 F.2.6).  When NULL every OB/OD/OF/OL/OV/OW/UN
     * value is written inline ("InlineBinary", base64), except
     * encapsulated pixel data, which has no inline form and is written with
     * its "vr" only (counted in stats->bulk_omitted).  When set, such
     * values longer than bulk_threshold bytes, and encapsulated pixel data
     * always, are written as "BulkDataURI": prefix + path, where the path
     * is the tag as 8 upper-case hex digits, and for elements inside
     * sequences the enclosing tags and 0-based item indexes separated by
     * '/': "00540016/0/00181072"-style paths end in the element's tag.  The
     * prefix is used as given (it should end in '/'). */
    const char *bulk_uri_prefix;
    size_t bulk_threshold;
    /* Also write group 0002 (file meta information) elements if present
     * in `ds`.  PS3.18 F.2 encodes the data set only; off by default. */
    bool include_group_0002;
    /* Optional: filled in (added to) by each call. */
    dicomjson_stats *stats;
} dicomjson_opts;

/* Append one JSON object for `ds` to `out`: {"GGGGEEEE": {"vr": "..",
 * "Value": [...]}, ...} in ascending tag order, with no white space.
 * `opts` may be NULL (everything inline, no stats).
 *
 * Text is converted to UTF-8 according to the Specific Character Set
 * (0008,0005) of `ds` (items inherit it from their enclosing data set);
 * `ds` itself inherits nothing: pass the top-level data set.  Group
 * length elements (gggg,0000) and group 0002 are left out.
 *
 * On failure (allocation, or a nesting deeper than COVCT_LIMIT_SQ_DEPTH)
 * out->len is restored to its value at the call, so a caller streaming an
 * array keeps a well-formed prefix; err says what failed. */
covct_rc dicomjson_encode(const covct_dcm_dataset *ds,
                          const dicomjson_opts *opts, covct_buf *out,
                          covct_error *err);

/* A JSON array of data sets written incrementally into one buffer:
 *
 *     dicomjson_array a;
 *     dicomjson_array_begin(&a, &buf, err);                    // "["
 *     for each instance: dicomjson_array_append(&a, ds, &opts, err);
 *     dicomjson_array_end(&a, err);                            // "]"
 *
 * A failed append leaves the buffer as it was before that append, so the
 * caller may skip the instance and go on. */
typedef struct dicomjson_array {
    covct_buf *out;
    size_t count; /* objects written so far */
} dicomjson_array;

covct_rc dicomjson_array_begin(dicomjson_array *a, covct_buf *out,
                               covct_error *err);
covct_rc dicomjson_array_append(dicomjson_array *a,
                                const covct_dcm_dataset *ds,
                                const dicomjson_opts *opts, covct_error *err);
covct_rc dicomjson_array_end(dicomjson_array *a, covct_error *err);

/* Append s[0..n) as the inside of a JSON string (no quotes): '"', '\\'
 * and control characters escaped, invalid UTF-8 replaced by U+FFFD (one
 * per maximal invalid subsequence, as WHATWG's decoder does).  Returns the
 * number of replacements through *n_invalid (may be NULL). */
covct_rc dicomjson_escape(covct_buf *out, const char *s, size_t n,
                          size_t *n_invalid, covct_error *err);

/* Normalise a DS or IS value (already trimmed of padding) to a JSON
 * number: drops a '+' sign and leading zeros, writes "0." for a bare
 * leading '.', drops a trailing '.'; digits and exponent are kept as
 * written, so the value round-trips exactly.  Writes at most n + 2 bytes
 * plus a NUL to `dst` (cap >= n + 3 always suffices).  Returns false when
 * the text is not a decimal number (FORTRAN/ANSI X3.9 real constant) or
 * does not fit. */
bool dicomjson_number_normalize(const char *s, size_t n, char *dst,
                                size_t cap);

/* ======================================================================
 * multipart/related (RFC 2046 5.1, RFC 2387; PS3.18 8.6 and 8.7)
 * ====================================================================== */

/* The parameters of a multipart Content-Type header. */
#define MULTIPART_BOUNDARY_MAX 200
typedef struct multipart_ctype {
    char media[64];     /* "multipart/related", lower-cased */
    char boundary[MULTIPART_BOUNDARY_MAX + 1];
    char type[128];     /* type= parameter (RFC 2387), or "" */
    char start[256];    /* start= parameter: Content-ID of the root, or "" */
} multipart_ctype;

/* Parse a Content-Type header value such as
 *   multipart/related; type="application/dicom"; boundary=xyz
 * Media type and parameter names are case-insensitive; values may be
 * tokens or quoted strings (with backslash escapes).  Errors: not a
 * multipart/ type, no or an empty boundary, a boundary longer than
 * MULTIPART_BOUNDARY_MAX, an unterminated quoted string; each names the
 * byte offset in the header. */
covct_rc multipart_ctype_parse(const char *header, multipart_ctype *out,
                               covct_error *err);

/* One header line of a part, NUL-terminated, with folded continuation
 * lines joined by one space and surrounding white space removed. */
typedef struct multipart_header {
    const char *name;
    const char *value;
} multipart_header;

typedef struct multipart_part {
    size_t index;        /* 0-based */
    size_t offset;       /* byte offset of the part's body in the message */
    const uint8_t *body; /* points into the message; exact bytes */
    size_t body_len;
    /* The usual headers ("" when absent). */
    const char *content_type;
    const char *content_location;
    const char *content_id;
    const char *content_length;
    const char *content_transfer_encoding;
    /* Every header of the part, in order. */
    const multipart_header *headers;
    size_t n_headers;
    const multipart_ctype *message; /* the message's Content-Type */
} multipart_part;

/* Called once per part, in order.  A non-OK return stops the parse and is
 * returned by multipart_parse(). */
typedef covct_rc (*multipart_part_fn)(const multipart_part *part, void *user,
                                      covct_error *err);

typedef struct multipart_limits {
    size_t max_parts;        /* parts in one message */
    size_t max_header_bytes; /* header block of one part */
    size_t max_headers;      /* header lines of one part */
} multipart_limits;

/* The defaults, from include/covct/limits.h. */
void multipart_limits_default(multipart_limits *lim);

/* Parse a multipart body.  The whole body is checked first (delimiters,
 * close delimiter, headers, limits) and fn is called only when it is
 * well-formed, so a malformed request never delivers half of its parts.
 * Leniency (see docs/internals/dicomweb-json.md): bare LF line ends,
 * transport padding after delimiters, folded headers, a preamble and an
 * epilogue.  Strict: the close delimiter must be present, a part's
 * Content-Length must match its body, header lines must have a ':'.
 * Errors name the part and byte offset. */
covct_rc multipart_parse(const uint8_t *body, size_t len,
                         const char *content_type_header, multipart_part_fn fn,
                         void *user, covct_error *err);
/* The same with explicit limits (NULL: the defaults). */
covct_rc multipart_parse_ex(const uint8_t *body, size_t len,
                            const char *content_type_header,
                            const multipart_limits *lim, multipart_part_fn fn,
                            void *user, covct_error *err);

/* Header value by name (case-insensitive), or NULL. */
const char *multipart_part_header(const multipart_part *part,
                                  const char *name);

/* ---- writer ------------------------------------------------------------
 * Streams a multipart body into a covct_buf:
 *
 *     multipart_writer w;
 *     multipart_writer_init(&w, &buf, boundary, err);
 *     multipart_writer_begin_part(&w, "application/dicom", NULL, err);
 *     multipart_writer_append(&w, bytes, n, err);   // any number of times
 *     ...more parts...
 *     multipart_writer_finish(&w, err);              // close delimiter
 *
 * Lines end in CRLF.  The caller picks the boundary: one from
 * multipart_boundary_random() cannot occur in the data by chance; a fixed
 * one is for tests.  The writer does not scan the data for it. */
typedef struct multipart_writer {
    covct_buf *out;
    char boundary[MULTIPART_BOUNDARY_MAX + 1];
    size_t parts;
    bool finished;
} multipart_writer;

/* Fails on an empty boundary, one over 70 characters (RFC 2046 5.1.1), or
 * one with characters outside RFC 2046's bchars. */
covct_rc multipart_writer_init(multipart_writer *w, covct_buf *out,
                               const char *boundary, covct_error *err);
/* Start a part: the delimiter, "Content-Type: content_type" (skipped when
 * NULL) and each "Name: value" line of extra_headers (NULL-terminated
 * array, may be NULL), then the blank line.  Header text with CR or LF is
 * refused (header injection). */
covct_rc multipart_writer_begin_part(multipart_writer *w,
                                     const char *content_type,
                                     const char *const *extra_headers,
                                     covct_error *err);
covct_rc multipart_writer_append(multipart_writer *w, const void *data,
                                 size_t n, covct_error *err);
/* Write the close delimiter; nothing can be added after it. */
covct_rc multipart_writer_finish(multipart_writer *w, covct_error *err);

/* A fresh random boundary: 32 hex digits from the kernel's random source,
 * NUL-terminated (out needs 33 bytes). */
covct_rc multipart_boundary_random(char out[33], covct_error *err);

#endif
