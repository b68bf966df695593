/*
 * Building data sets and writing them as PS3.10 files in explicit VR
 * little endian (PS3.5 7.1.2), with the File Meta Information of PS3.10 7.1.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "covct/limits.h"
#include "dicom/dicom_int.h"

/* Implementation Class UID under the UUID-derived root 2.25 (PS3.5 B.2):
 * covct's own, fixed, identifies files written by this version line. */

static covct_dcm_element *find_slot(covct_dcm_dataset *ds, uint32_t tag,
                                    covct_error *err, covct_rc *rc)
{
    *rc = COVCT_OK;
    for (size_t i = 0; i < ds->n; i++)
        if (ds->elems[i].tag == tag) {
            covct_dcm_element_clear(&ds->elems[i]);
            return &ds->elems[i];
        }
    covct_dcm_element e;
    memset(&e, 0, sizeof e);
    e.tag = tag;
    *rc = covct_dcm_dataset_append(ds, &e, err);
    if (*rc)
        return NULL;
    covct_dcm_element *slot = &ds->elems[ds->n - 1];
    if (ds->unsorted)
        covct_dcm_dataset_sort(ds);
    for (size_t i = 0; i < ds->n; i++)
        if (ds->elems[i].tag == tag)
            return &ds->elems[i];
    return slot;
}

covct_rc covct_dcm_dataset_set(covct_dcm_dataset *ds, uint32_t tag,
                               uint16_t vr, const void *value, size_t len,
                               covct_error *err)
{
    if (len >= COVCT_UNDEFINED_LENGTH - 1)
        return COVCT_ERR(err, COVCT_ERR_LIMIT,
                         "(%04X,%04X): value of %zu bytes is too long",
                         COVCT_TAG_GROUP(tag), COVCT_TAG_ELEM(tag), len);
    uint8_t *copy = covct_malloc(len);
    if (!copy)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    if (len)
        memcpy(copy, value, len);
    covct_rc rc;
    covct_dcm_element *e = find_slot(ds, tag, err, &rc);
    if (!e) {
        covct_free(copy);
        return rc;
    }
    e->vr = vr;
    e->owned = copy;
    e->value = copy;
    e->value_len = len;
    e->length = (uint32_t)len;
    e->big_endian = false;
    e->encapsulated = false; /* a native value replacing fragments */
    return COVCT_OK;
}

covct_rc covct_dcm_dataset_set_string(covct_dcm_dataset *ds, uint32_t tag,
                                      uint16_t vr, const char *s,
                                      covct_error *err)
{
    return covct_dcm_dataset_set(ds, tag, vr, s, strlen(s), err);
}

covct_rc covct_dcm_dataset_set_u16(covct_dcm_dataset *ds, uint32_t tag,
                                   uint16_t v, covct_error *err)
{
    uint8_t b[2] = {(uint8_t)(v & 0xFF), (uint8_t)(v >> 8)};
    return covct_dcm_dataset_set(ds, tag, COVCT_VR('U', 'S'), b, 2, err);
}

covct_rc covct_dcm_dataset_add_item(covct_dcm_dataset *ds, uint32_t tag,
                                    covct_dcm_dataset **item, covct_error *err)
{
    *item = NULL;
    covct_dcm_element *e = NULL;
    for (size_t i = 0; i < ds->n; i++)
        if (ds->elems[i].tag == tag)
            e = &ds->elems[i];
    if (e && e->vr != COVCT_VR('S', 'Q'))
        return COVCT_ERR(err, COVCT_ERR_ARG, "(%04X,%04X) is not a sequence",
                         COVCT_TAG_GROUP(tag), COVCT_TAG_ELEM(tag));
    if (!e) {
        covct_rc rc;
        e = find_slot(ds, tag, err, &rc);
        if (!e)
            return rc;
        e->vr = COVCT_VR('S', 'Q');
        e->length = COVCT_UNDEFINED_LENGTH;
    }
    if (e->n_items == e->cap_items) {
        size_t cap = e->cap_items ? e->cap_items * 2 : 4;
        covct_dcm_dataset **ni = covct_realloc(e->items, cap * sizeof *ni);
        if (!ni)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        e->items = ni;
        e->cap_items = cap;
    }
    covct_dcm_dataset *it = covct_dcm_dataset_new();
    if (!it)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    it->parent = ds;
    e->items[e->n_items++] = it;
    *item = it;
    return COVCT_OK;
}

size_t covct_dcm_dataset_remove(covct_dcm_dataset *ds, uint32_t tag)
{
    size_t kept = 0, removed = 0;
    for (size_t i = 0; i < ds->n; i++) {
        if (ds->elems[i].tag == tag) {
            covct_dcm_element_clear(&ds->elems[i]);
            removed++;
            continue;
        }
        /* Items hold no pointer to their element, only to the data set,
         * so moving elements down keeps every item valid. */
        if (kept != i)
            ds->elems[kept] = ds->elems[i];
        kept++;
    }
    ds->n = kept;
    return removed;
}

covct_dcm_dataset *covct_dcm_dataset_item_mut(covct_dcm_dataset *ds,
                                              uint32_t tag, size_t i)
{
    covct_dcm_element *e =
        (covct_dcm_element *)covct_dcm_dataset_get(ds, tag);
    if (!e || e->vr != COVCT_VR('S', 'Q') || i >= e->n_items)
        return NULL;
    return e->items[i];
}

covct_rc covct_dcm_dataset_set_encapsulated(covct_dcm_dataset *ds,
                                            const uint8_t *const *frags,
                                            const size_t *lens, size_t n,
                                            covct_error *err)
{
    if (n == 0)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "encapsulated pixel data needs at least the offset "
                         "table item");
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (!covct_add_size(total, lens[i], &total))
            return COVCT_ERR(err, COVCT_ERR_LIMIT, "fragments too large");
    uint8_t *copy = covct_malloc(total);
    covct_dcm_fragment *fr = covct_calloc(n, sizeof *fr);
    if (!copy || !fr) {
        covct_free(copy);
        covct_free(fr);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (lens[i])
            memcpy(copy + o, frags[i], lens[i]);
        fr[i].data = copy + o;
        fr[i].len = lens[i];
        fr[i].offset = 0;
        o += lens[i];
    }
    covct_rc rc;
    covct_dcm_element *e = find_slot(ds, COVCT_TAG(0x7FE0, 0x0010), err, &rc);
    if (!e) {
        covct_free(copy);
        covct_free(fr);
        return rc;
    }
    e->vr = COVCT_VR('O', 'B');
    e->encapsulated = true;
    e->length = COVCT_UNDEFINED_LENGTH;
    e->owned = copy;
    e->frags = fr;
    e->n_frags = e->cap_frags = n;
    return COVCT_OK;
}

/* Binary values are stored in the byte order they were parsed in; the
 * writer emits little endian, so big-endian values are swapped by unit. */
static size_t swap_unit(uint16_t vr)
{
    switch (vr) {
    case COVCT_VR('U', 'S'): case COVCT_VR('S', 'S'): case COVCT_VR('O', 'W'):
    case COVCT_VR('A', 'T'):
        return 2;
    case COVCT_VR('U', 'L'): case COVCT_VR('S', 'L'): case COVCT_VR('F', 'L'):
    case COVCT_VR('O', 'F'): case COVCT_VR('O', 'L'):
        return 4;
    case COVCT_VR('F', 'D'): case COVCT_VR('O', 'D'): case COVCT_VR('S', 'V'):
    case COVCT_VR('U', 'V'): case COVCT_VR('O', 'V'):
        return 8;
    default:
        return 1;
    }
}

static covct_rc copy_element(covct_dcm_dataset *dst,
                             const covct_dcm_element *src, covct_error *err)
{
    covct_rc rc;
    if (src->vr == COVCT_VR('S', 'Q')) {
        /* Replace: clear any existing element first. */
        covct_dcm_element *slot = find_slot(dst, src->tag, err, &rc);
        if (!slot)
            return rc;
        slot->vr = COVCT_VR('S', 'Q');
        slot->length = COVCT_UNDEFINED_LENGTH;
        for (size_t i = 0; i < src->n_items; i++) {
            covct_dcm_dataset *item;
            rc = covct_dcm_dataset_add_item(dst, src->tag, &item, err);
            if (rc)
                return rc;
            rc = covct_dcm_dataset_copy_into(item, src->items[i], err);
            if (rc)
                return rc;
        }
        return COVCT_OK;
    }
    if (src->encapsulated) {
        const uint8_t **fp = covct_calloc(src->n_frags ? src->n_frags : 1,
                                          sizeof *fp);
        size_t *fl = covct_calloc(src->n_frags ? src->n_frags : 1,
                                  sizeof *fl);
        if (!fp || !fl)
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        else {
            for (size_t i = 0; i < src->n_frags; i++) {
                fp[i] = src->frags[i].data;
                fl[i] = src->frags[i].len;
            }
            rc = covct_dcm_dataset_set_encapsulated(dst, fp, fl, src->n_frags,
                                                    err);
        }
        covct_free(fp);
        covct_free(fl);
        return rc;
    }
    rc = covct_dcm_dataset_set(dst, src->tag, src->vr, src->value,
                               src->value_len, err);
    if (rc || !src->big_endian)
        return rc;
    size_t u = swap_unit(src->vr);
    if (u > 1) {
        const covct_dcm_element *d = covct_dcm_dataset_get(dst, src->tag);
        uint8_t *p = ((covct_dcm_element *)d)->owned;
        for (size_t i = 0; i + u <= src->value_len; i += u)
            for (size_t a = 0, b = u - 1; a < b; a++, b--) {
                uint8_t t = p[i + a];
                p[i + a] = p[i + b];
                p[i + b] = t;
            }
        /* AT is two 16-bit halves: swap_unit 2 already did each half. */
    }
    return COVCT_OK;
}

covct_rc covct_dcm_dataset_copy_into(covct_dcm_dataset *dst,
                                     const covct_dcm_dataset *src,
                                     covct_error *err)
{
    for (size_t i = 0; i < src->n; i++) {
        covct_rc rc = copy_element(dst, &src->elems[i], err);
        if (rc)
            return rc;
    }
    return COVCT_OK;
}

/* ---- encoding -------------------------------------------------------- */

static covct_rc put16(covct_buf *b, uint16_t v, covct_error *err)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    return covct_buf_append(b, x, 2, err);
}

static covct_rc put32(covct_buf *b, uint32_t v, covct_error *err)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
                    (uint8_t)(v >> 24)};
    return covct_buf_append(b, x, 4, err);
}

static covct_rc put_tag(covct_buf *b, uint32_t tag, covct_error *err)
{
    covct_rc rc = put16(b, COVCT_TAG_GROUP(tag), err);
    return rc ? rc : put16(b, COVCT_TAG_ELEM(tag), err);
}

static covct_rc encode_dataset(covct_buf *b, const covct_dcm_dataset *ds,
                               bool meta, bool implicit, unsigned depth,
                               covct_error *err);

/* Padding byte for odd-length values (PS3.5 6.2): NUL for UI and binary,
 * space for other strings. */
static uint8_t pad_byte(uint16_t vr)
{
    if (vr == COVCT_VR('U', 'I'))
        return 0;
    return covct_dcm_vr_is_string(vr) ? ' ' : 0;
}

/* Implicit VR little endian (PS3.5 7.1.3): no VR, 32-bit lengths. */
static covct_rc encode_element(covct_buf *b, const covct_dcm_element *e,
                               bool implicit, unsigned depth,
                               covct_error *err)
{
    covct_rc rc = put_tag(b, e->tag, err);
    if (rc)
        return rc;
    uint16_t vr = e->vr ? e->vr : COVCT_VR('U', 'N');
    if (!implicit)
        rc = covct_buf_append(
            b, (uint8_t[]){(uint8_t)(vr >> 8), (uint8_t)vr}, 2, err);
    if (rc)
        return rc;
    if (vr == COVCT_VR('S', 'Q')) {
        if (depth >= 64)
            return COVCT_ERR(err, COVCT_ERR_LIMIT, "sequence nesting too deep");
        /* Undefined lengths: no need to compute item sizes in advance. */
        if ((!implicit && (rc = put16(b, 0, err))) ||
            (rc = put32(b, 0xFFFFFFFFu, err)))
            return rc;
        for (size_t i = 0; i < e->n_items; i++) {
            if ((rc = put_tag(b, COVCT_TAG(0xFFFE, 0xE000), err)) ||
                (rc = put32(b, 0xFFFFFFFFu, err)) ||
                (rc = encode_dataset(b, e->items[i], false, implicit,
                                     depth + 1, err)) ||
                (rc = put_tag(b, COVCT_TAG(0xFFFE, 0xE00D), err)) ||
                (rc = put32(b, 0, err)))
                return rc;
        }
        if ((rc = put_tag(b, COVCT_TAG(0xFFFE, 0xE0DD), err)) ||
            (rc = put32(b, 0, err)))
            return rc;
        return COVCT_OK;
    }
    if (e->encapsulated && implicit)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "encapsulated pixel data cannot be written in "
                         "implicit VR little endian");
    if (e->encapsulated) {
        /* PS3.5 A.4: undefined length, one item per fragment (even
         * lengths), then a Sequence Delimitation Item. */
        if ((rc = put16(b, 0, err)) || (rc = put32(b, 0xFFFFFFFFu, err)))
            return rc;
        for (size_t i = 0; i < e->n_frags; i++) {
            const covct_dcm_fragment *fr = &e->frags[i];
            size_t fl = fr->len + (fr->len & 1);
            if (fl > 0xFFFFFFF0u)
                return COVCT_ERR(err, COVCT_ERR_LIMIT,
                                 "fragment %zu of %zu bytes is too long", i,
                                 fr->len);
            if ((rc = put_tag(b, COVCT_TAG(0xFFFE, 0xE000), err)) ||
                (rc = put32(b, (uint32_t)fl, err)) ||
                (rc = covct_buf_append(b, fr->data, fr->len, err)))
                return rc;
            if (fr->len & 1) {
                uint8_t z = 0;
                if ((rc = covct_buf_append(b, &z, 1, err)))
                    return rc;
            }
        }
        if ((rc = put_tag(b, COVCT_TAG(0xFFFE, 0xE0DD), err)) ||
            (rc = put32(b, 0, err)))
            return rc;
        return COVCT_OK;
    }
    size_t len = e->value_len + (e->value_len & 1);
    if (implicit) {
        if (len > 0xFFFFFFFEu)
            return COVCT_ERR(err, COVCT_ERR_LIMIT, "value too long");
        if ((rc = put32(b, (uint32_t)len, err)))
            return rc;
    } else if (covct_dcm_vr_long_header(vr)) {
        if ((rc = put16(b, 0, err)) || (rc = put32(b, (uint32_t)len, err)))
            return rc;
    } else {
        if (len > 0xFFFF)
            return COVCT_ERR(err, COVCT_ERR_LIMIT,
                             "(%04X,%04X): %zu bytes is too long for VR %c%c",
                             COVCT_TAG_GROUP(e->tag), COVCT_TAG_ELEM(e->tag),
                             len, vr >> 8, vr & 0xFF);
        if ((rc = put16(b, (uint16_t)len, err)))
            return rc;
    }
    size_t start = b->len;
    if ((rc = covct_buf_append(b, e->value, e->value_len, err)))
        return rc;
    if (e->big_endian) {
        size_t u = swap_unit(vr);
        for (size_t i = 0; u > 1 && i + u <= e->value_len; i += u)
            for (size_t a = 0, z = u - 1; a < z; a++, z--) {
                uint8_t t = b->data[start + i + a];
                b->data[start + i + a] = b->data[start + i + z];
                b->data[start + i + z] = t;
            }
    }
    if (e->value_len & 1) {
        uint8_t pad = pad_byte(vr);
        rc = covct_buf_append(b, &pad, 1, err);
    }
    return rc;
}

static covct_rc encode_dataset(covct_buf *b, const covct_dcm_dataset *ds,
                               bool meta, bool implicit, unsigned depth,
                               covct_error *err)
{
    for (size_t i = 0; i < ds->n; i++) {
        const covct_dcm_element *e = &ds->elems[i];
        bool is_meta = COVCT_TAG_GROUP(e->tag) == 0x0002;
        if (is_meta != meta && depth == 0)
            continue;
        /* Group lengths are optional and would be stale after edits. */
        if (COVCT_TAG_ELEM(e->tag) == 0x0000)
            continue;
        covct_rc rc = encode_element(b, e, implicit, depth, err);
        if (rc)
            return rc;
    }
    return COVCT_OK;
}

covct_rc covct_dcm_write_buffer(const covct_dcm_dataset *ds, covct_buf *out,
                                covct_error *err)
{
    return covct_dcm_write_buffer_ts(ds, COVCT_TS_EXPLICIT_LE, out, err);
}

covct_rc covct_dcm_write_buffer_ts(const covct_dcm_dataset *ds,
                                   const char *ts_uid, covct_buf *out,
                                   covct_error *err)
{
    /* The data set is always encoded explicit VR little endian: refuse the
     * syntaxes that mean another encoding. */
    if (!strcmp(ts_uid, COVCT_TS_IMPLICIT_LE) ||
        !strcmp(ts_uid, COVCT_TS_EXPLICIT_BE) ||
        !strcmp(ts_uid, COVCT_TS_DEFLATED_LE))
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "cannot write transfer syntax %s (only explicit VR "
                         "little endian encodings)",
                         ts_uid);
    const covct_dcm_element *pe =
        covct_dcm_dataset_get(ds, COVCT_TAG(0x7FE0, 0x0010));
    bool native_ts = !strcmp(ts_uid, COVCT_TS_EXPLICIT_LE);
    if (pe && pe->encapsulated == native_ts)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "pixel data is %s but transfer syntax %s is %s",
                         pe->encapsulated ? "encapsulated" : "native", ts_uid,
                         native_ts ? "native" : "encapsulated");
    char sop_class[68], sop_inst[68];
    if (covct_dcm_get_string(ds, COVCT_TAG(0x0008, 0x0016), 0, sop_class,
                             sizeof sop_class, NULL) ||
        !sop_class[0])
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "cannot write: (0008,0016) SOP Class UID is missing");
    if (covct_dcm_get_string(ds, COVCT_TAG(0x0008, 0x0018), 0, sop_inst,
                             sizeof sop_inst, NULL) ||
        !sop_inst[0])
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "cannot write: (0008,0018) SOP Instance UID is "
                         "missing");
    covct_rc rc = covct_dcm_write_meta(out, sop_class, sop_inst, ts_uid, NULL,
                                       err);
    if (rc)
        return rc;
    return encode_dataset(out, ds, false, false, 0, err);
}

covct_rc covct_dcm_encode_dataset(const covct_dcm_dataset *ds,
                                  bool implicit_vr, covct_buf *out,
                                  covct_error *err)
{
    return encode_dataset(out, ds, false, implicit_vr, 0, err);
}

/* "2.25." and the decimal value of 128 bits (PS3.5 B.2). */
void covct_dcm_uid_from_uuid(const uint8_t r[16], char out[65])
{
    uint32_t limb[4];
    for (int i = 0; i < 4; i++)
        limb[i] = (uint32_t)r[4 * i] << 24 | (uint32_t)r[4 * i + 1] << 16 |
                  (uint32_t)r[4 * i + 2] << 8 | (uint32_t)r[4 * i + 3];
    char digits[48];
    int nd = 0;
    for (;;) {
        int zero = 1;
        uint64_t rem = 0;
        for (int i = 0; i < 4; i++) {
            uint64_t cur = (rem << 32) | limb[i];
            limb[i] = (uint32_t)(cur / 10);
            rem = cur % 10;
            if (limb[i])
                zero = 0;
        }
        digits[nd++] = (char)('0' + rem);
        if (zero)
            break;
    }
    memcpy(out, "2.25.", 5);
    int o = 5;
    while (nd > 0)
        out[o++] = digits[--nd];
    out[o] = '\0';
}

covct_rc covct_dcm_write_meta(covct_buf *out, const char *sop_class,
                              const char *sop_inst, const char *ts_uid,
                              const char *source_ae, covct_error *err)
{
    covct_rc rc = COVCT_OK;
    covct_dcm_dataset *meta = covct_dcm_dataset_new();
    if (!meta)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    static const uint8_t version[2] = {0x00, 0x01};
    if ((rc = covct_dcm_dataset_set(meta, COVCT_TAG(0x0002, 0x0001),
                                    COVCT_VR('O', 'B'), version, 2, err)) ||
        (rc = covct_dcm_dataset_set_string(meta, COVCT_TAG(0x0002, 0x0002),
                                           COVCT_VR('U', 'I'), sop_class,
                                           err)) ||
        (rc = covct_dcm_dataset_set_string(meta, COVCT_TAG(0x0002, 0x0003),
                                           COVCT_VR('U', 'I'), sop_inst,
                                           err)) ||
        (rc = covct_dcm_dataset_set_string(meta, COVCT_TAG(0x0002, 0x0010),
                                           COVCT_VR('U', 'I'), ts_uid,
                                           err)) ||
        (rc = covct_dcm_dataset_set_string(meta, COVCT_TAG(0x0002, 0x0012),
                                           COVCT_VR('U', 'I'),
                                           COVCT_IMPL_CLASS_UID, err)) ||
        (rc = covct_dcm_dataset_set_string(meta, COVCT_TAG(0x0002, 0x0013),
                                           COVCT_VR('S', 'H'),
                                           COVCT_IMPL_VERSION, err)))
        goto out;
    if (source_ae && source_ae[0] &&
        (rc = covct_dcm_dataset_set_string(meta, COVCT_TAG(0x0002, 0x0016),
                                           COVCT_VR('A', 'E'), source_ae,
                                           err)))
        goto out;

    uint8_t preamble[128];
    memset(preamble, 0, sizeof preamble);
    if ((rc = covct_buf_append(out, preamble, sizeof preamble, err)) ||
        (rc = covct_buf_append(out, "DICM", 4, err)))
        goto out;
    /* (0002,0000) File Meta Information Group Length: bytes after it up to
     * the end of group 0002 (PS3.10 7.1). Encode the rest, then patch. */
    size_t gl_pos = out->len;
    if ((rc = put_tag(out, COVCT_TAG(0x0002, 0x0000), err)) ||
        (rc = covct_buf_append(out, "UL", 2, err)) ||
        (rc = put16(out, 4, err)) || (rc = put32(out, 0, err)))
        goto out;
    size_t meta_start = out->len;
    if ((rc = encode_dataset(out, meta, true, false, 0, err)))
        goto out;
    uint32_t gl = (uint32_t)(out->len - meta_start);
    out->data[gl_pos + 8] = (uint8_t)gl;
    out->data[gl_pos + 9] = (uint8_t)(gl >> 8);
    out->data[gl_pos + 10] = (uint8_t)(gl >> 16);
    out->data[gl_pos + 11] = (uint8_t)(gl >> 24);
out:
    covct_dcm_dataset_free(meta);
    return rc;
}

covct_rc covct_dcm_write_file(const char *path, const covct_dcm_dataset *ds,
                              covct_error *err)
{
    covct_buf b = {0};
    covct_rc rc = covct_dcm_write_buffer(ds, &b, err);
    if (rc)
        goto out;
    rc = covct_file_write_bytes(path, b.data, b.len, err);
out:
    covct_buf_free(&b);
    return rc;
}
