/*
 * PS3.5 data sets and data elements: storage, lookup and typed access to
 * values (Section 6.2 value representations, 6.4 value multiplicity).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dicom/dicom_int.h"

covct_dcm_dataset *covct_dcm_dataset_new(void)
{
    return covct_calloc(1, sizeof(covct_dcm_dataset));
}

void covct_dcm_element_clear(covct_dcm_element *e)
{
    for (size_t i = 0; i < e->n_items; i++)
        covct_dcm_dataset_free(e->items[i]);
    COVCT_FREE(e->items);
    COVCT_FREE(e->frags);
    COVCT_FREE(e->owned);
    e->n_items = e->cap_items = 0;
    e->n_frags = e->cap_frags = 0;
    e->value = NULL;
    e->value_len = 0;
}

void covct_dcm_dataset_free(covct_dcm_dataset *ds)
{
    if (!ds)
        return;
    for (size_t i = 0; i < ds->n; i++)
        covct_dcm_element_clear(&ds->elems[i]);
    covct_free(ds->elems);
    covct_free(ds);
}

covct_rc covct_dcm_dataset_append(covct_dcm_dataset *ds,
                                  const covct_dcm_element *e, covct_error *err)
{
    if (ds->n == ds->cap) {
        size_t cap = ds->cap ? ds->cap * 2 : 32;
        covct_dcm_element *ne = covct_realloc(ds->elems, cap * sizeof *ne);
        if (!ne)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        ds->elems = ne;
        ds->cap = cap;
    }
    if (ds->n > 0 && ds->elems[ds->n - 1].tag >= e->tag)
        ds->unsorted = true;
    ds->elems[ds->n++] = *e;
    /* Items parsed before the element was appended point at the data set
     * that holds the sequence, which does not move. */
    return COVCT_OK;
}

static int cmp_elem(const void *a, const void *b)
{
    const covct_dcm_element *x = a, *y = b;
    if (x->tag != y->tag)
        return x->tag < y->tag ? -1 : 1;
    /* Keep file order among duplicates (stable by offset). */
    return (x->offset > y->offset) - (x->offset < y->offset);
}

void covct_dcm_dataset_sort(covct_dcm_dataset *ds)
{
    qsort(ds->elems, ds->n, sizeof *ds->elems, cmp_elem);
    ds->unsorted = false;
}

size_t covct_dcm_dataset_count(const covct_dcm_dataset *ds)
{
    return ds ? ds->n : 0;
}

const covct_dcm_element *covct_dcm_dataset_at(const covct_dcm_dataset *ds,
                                              size_t i)
{
    return ds && i < ds->n ? &ds->elems[i] : NULL;
}

const covct_dcm_element *covct_dcm_dataset_get(const covct_dcm_dataset *ds,
                                               uint32_t tag)
{
    if (!ds || ds->n == 0)
        return NULL;
    if (ds->unsorted) {
        for (size_t i = 0; i < ds->n; i++)
            if (ds->elems[i].tag == tag)
                return &ds->elems[i];
        return NULL;
    }
    size_t lo = 0, hi = ds->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ds->elems[mid].tag < tag)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ds->n && ds->elems[lo].tag == tag ? &ds->elems[lo] : NULL;
}

bool covct_dcm_dataset_big_endian(const covct_dcm_dataset *ds)
{
    return ds->big_endian;
}

uint32_t covct_dcm_element_tag(const covct_dcm_element *e) { return e->tag; }
uint16_t covct_dcm_element_vr(const covct_dcm_element *e) { return e->vr; }
uint32_t covct_dcm_element_length(const covct_dcm_element *e)
{
    return e->length;
}
size_t covct_dcm_element_offset(const covct_dcm_element *e)
{
    return e->offset;
}

const uint8_t *covct_dcm_element_value(const covct_dcm_element *e, size_t *len)
{
    *len = e->value_len;
    return e->value;
}

size_t covct_dcm_element_item_count(const covct_dcm_element *e)
{
    return e->n_items;
}

const covct_dcm_dataset *covct_dcm_element_item(const covct_dcm_element *e,
                                                size_t i)
{
    return i < e->n_items ? e->items[i] : NULL;
}

bool covct_dcm_element_encapsulated(const covct_dcm_element *e)
{
    return e->encapsulated;
}

size_t covct_dcm_element_fragment_count(const covct_dcm_element *e)
{
    return e->n_frags;
}

const uint8_t *covct_dcm_element_fragment(const covct_dcm_element *e, size_t i,
                                          size_t *len)
{
    if (i >= e->n_frags) {
        *len = 0;
        return NULL;
    }
    *len = e->frags[i].len;
    return e->frags[i].data;
}

/* Size of one binary value, or 0 for string and other VRs. */
static size_t binary_size(uint16_t vr)
{
    switch (vr) {
    case COVCT_VR('U', 'S'): case COVCT_VR('S', 'S'): case COVCT_VR('O', 'W'):
        return 2;
    case COVCT_VR('U', 'L'): case COVCT_VR('S', 'L'): case COVCT_VR('F', 'L'):
    case COVCT_VR('O', 'F'): case COVCT_VR('O', 'L'): case COVCT_VR('A', 'T'):
        return 4;
    case COVCT_VR('F', 'D'): case COVCT_VR('O', 'D'): case COVCT_VR('S', 'V'):
    case COVCT_VR('U', 'V'): case COVCT_VR('O', 'V'):
        return 8;
    default:
        return 0;
    }
}

uint32_t covct_dcm_element_vm(const covct_dcm_element *e)
{
    if (e->vr == COVCT_VR('S', 'Q'))
        return (uint32_t)e->n_items;
    if (e->value_len == 0)
        return 0;
    size_t bs = binary_size(e->vr);
    if (bs)
        return (uint32_t)(e->value_len / bs);
    if (!covct_dcm_vr_is_string(e->vr))
        return 1;
    /* LT, ST, UT, UR are single-valued: backslash is a plain character. */
    if (e->vr == COVCT_VR('L', 'T') || e->vr == COVCT_VR('S', 'T') ||
        e->vr == COVCT_VR('U', 'T') || e->vr == COVCT_VR('U', 'R'))
        return 1;
    uint32_t n = 1;
    for (size_t i = 0; i < e->value_len; i++)
        n += e->value[i] == '\\';
    return n;
}

/* Locate value `index` of a string element; trims padding (PS3.5 6.2:
 * leading/trailing spaces are insignificant for most VRs, trailing NUL
 * pads UIDs). */
static bool string_part(const covct_dcm_element *e, uint32_t index,
                        const uint8_t **start, size_t *len)
{
    if (!e->value)
        return false;
    const uint8_t *p = e->value, *end = e->value + e->value_len;
    bool single = e->vr == COVCT_VR('L', 'T') || e->vr == COVCT_VR('S', 'T') ||
                  e->vr == COVCT_VR('U', 'T') || e->vr == COVCT_VR('U', 'R');
    if (!p)
        return false;
    uint32_t i = 0;
    const uint8_t *s = p;
    for (;;) {
        const uint8_t *q = s;
        if (!single)
            while (q < end && *q != '\\')
                q++;
        else
            q = end;
        if (i == index) {
            const uint8_t *a = s, *b = q;
            bool text = e->vr == COVCT_VR('L', 'T') ||
                        e->vr == COVCT_VR('S', 'T') ||
                        e->vr == COVCT_VR('U', 'T');
            if (!text)
                while (a < b && *a == ' ')
                    a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\0'))
                b--;
            *start = a;
            *len = (size_t)(b - a);
            return true;
        }
        if (q >= end)
            return false;
        s = q + 1;
        i++;
    }
}

covct_rc covct_dcm_element_get_string(const covct_dcm_element *e,
                                      uint32_t index, char *buf, size_t cap,
                                      covct_error *err)
{
    if (cap == 0)
        return COVCT_ERR(err, COVCT_ERR_ARG, "zero-size buffer");
    buf[0] = '\0';
    if (covct_dcm_vr_is_string(e->vr) || e->vr == COVCT_VR('U', 'N') ||
        e->vr == COVCT_VR('O', 'B')) {
        const uint8_t *s;
        size_t n;
        if (!string_part(e, index, &s, &n))
            return COVCT_ERR(err, COVCT_ERR_NOT_FOUND,
                             "(%04X,%04X) has no value %u",
                             COVCT_TAG_GROUP(e->tag), COVCT_TAG_ELEM(e->tag),
                             index + 1);
        if (n > cap - 1)
            n = cap - 1;
        memcpy(buf, s, n);
        buf[n] = '\0';
        return COVCT_OK;
    }
    /* Binary VRs: format the number. */
    double d;
    int64_t v;
    if (e->vr == COVCT_VR('F', 'L') || e->vr == COVCT_VR('F', 'D') ||
        e->vr == COVCT_VR('O', 'F') || e->vr == COVCT_VR('O', 'D')) {
        covct_rc rc = covct_dcm_element_get_double(e, index, &d, err);
        if (rc)
            return rc;
        snprintf(buf, cap, "%.17g", d);
        return COVCT_OK;
    }
    if (e->vr == COVCT_VR('A', 'T')) {
        covct_rc rc = covct_dcm_element_get_int(e, index, &v, err);
        if (rc)
            return rc;
        snprintf(buf, cap, "(%04X,%04X)", (unsigned)((uint64_t)v >> 16),
                 (unsigned)(v & 0xFFFF));
        return COVCT_OK;
    }
    covct_rc rc = covct_dcm_element_get_int(e, index, &v, err);
    if (rc)
        return rc;
    snprintf(buf, cap, "%lld", (long long)v);
    return COVCT_OK;
}

/* Values keep the byte order of the stream they were parsed from. */
static bool elem_big_endian(const covct_dcm_element *e)
{
    return e->big_endian;
}

covct_rc covct_dcm_element_get_int(const covct_dcm_element *e, uint32_t index,
                                   int64_t *out, covct_error *err)
{
    size_t bs = binary_size(e->vr);
    bool be = elem_big_endian(e);
    if (bs && e->vr != COVCT_VR('F', 'L') && e->vr != COVCT_VR('F', 'D') &&
        e->vr != COVCT_VR('O', 'F') && e->vr != COVCT_VR('O', 'D')) {
        if ((size_t)index >= e->value_len / bs)
            return COVCT_ERR(err, COVCT_ERR_NOT_FOUND,
                             "(%04X,%04X) has no value %u",
                             COVCT_TAG_GROUP(e->tag), COVCT_TAG_ELEM(e->tag),
                             index + 1);
        const uint8_t *p = e->value + (size_t)index * bs;
        switch (e->vr) {
        case COVCT_VR('U', 'S'): case COVCT_VR('O', 'W'):
            *out = covct_rd16(p, be);
            return COVCT_OK;
        case COVCT_VR('S', 'S'):
            *out = (int16_t)covct_rd16(p, be);
            return COVCT_OK;
        case COVCT_VR('U', 'L'): case COVCT_VR('O', 'L'):
            *out = covct_rd32(p, be);
            return COVCT_OK;
        case COVCT_VR('S', 'L'):
            *out = (int32_t)covct_rd32(p, be);
            return COVCT_OK;
        case COVCT_VR('A', 'T'):
            /* PS3.5 6.2: AT is a pair of 16-bit values, group first. */
            *out = ((int64_t)covct_rd16(p, be) << 16) | covct_rd16(p + 2, be);
            return COVCT_OK;
        default: {
            uint64_t v = be ? ((uint64_t)covct_rd32(p, true) << 32) |
                                  covct_rd32(p + 4, true)
                            : ((uint64_t)covct_rd32(p + 4, false) << 32) |
                                  covct_rd32(p, false);
            *out = (int64_t)v;
            return COVCT_OK;
        }
        }
    }
    double d;
    covct_rc rc = covct_dcm_element_get_double(e, index, &d, err);
    if (rc)
        return rc;
    if (!(d >= -9.2e18 && d <= 9.2e18))
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "(%04X,%04X) value %u is not an integer",
                         COVCT_TAG_GROUP(e->tag), COVCT_TAG_ELEM(e->tag),
                         index + 1);
    *out = (int64_t)llround(d);
    return COVCT_OK;
}

covct_rc covct_dcm_element_get_double(const covct_dcm_element *e,
                                      uint32_t index, double *out,
                                      covct_error *err)
{
    bool be = elem_big_endian(e);
    size_t bs = binary_size(e->vr);
    if (e->vr == COVCT_VR('F', 'L') || e->vr == COVCT_VR('O', 'F') ||
        e->vr == COVCT_VR('F', 'D') || e->vr == COVCT_VR('O', 'D')) {
        if ((size_t)index >= e->value_len / bs)
            return COVCT_ERR(err, COVCT_ERR_NOT_FOUND,
                             "(%04X,%04X) has no value %u",
                             COVCT_TAG_GROUP(e->tag), COVCT_TAG_ELEM(e->tag),
                             index + 1);
        const uint8_t *p = e->value + (size_t)index * bs;
        if (bs == 4) {
            uint32_t u = covct_rd32(p, be);
            float f;
            memcpy(&f, &u, 4);
            *out = f;
        } else {
            uint64_t u = be ? ((uint64_t)covct_rd32(p, true) << 32) |
                                  covct_rd32(p + 4, true)
                            : ((uint64_t)covct_rd32(p + 4, false) << 32) |
                                  covct_rd32(p, false);
            memcpy(out, &u, 8);
        }
        return COVCT_OK;
    }
    if (bs) {
        int64_t v;
        covct_rc rc = covct_dcm_element_get_int(e, index, &v, err);
        if (rc)
            return rc;
        *out = (double)v;
        return COVCT_OK;
    }
    /* DS, IS (and lenient: any string) */
    char buf[72];
    const uint8_t *s;
    size_t n;
    if (!string_part(e, index, &s, &n) || n == 0)
        return COVCT_ERR(err, COVCT_ERR_NOT_FOUND,
                         "(%04X,%04X) has no value %u",
                         COVCT_TAG_GROUP(e->tag), COVCT_TAG_ELEM(e->tag),
                         index + 1);
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *endp;
    errno = 0;
    double d = strtod(buf, &endp);
    while (*endp == ' ')
        endp++;
    if (endp == buf || *endp != '\0' || errno == ERANGE || !isfinite(d))
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "(%04X,%04X) value %u '%s' is not a number",
                         COVCT_TAG_GROUP(e->tag), COVCT_TAG_ELEM(e->tag),
                         index + 1, buf);
    *out = d;
    return COVCT_OK;
}

static covct_rc missing(covct_error *err, uint32_t tag)
{
    return COVCT_ERR(err, COVCT_ERR_NOT_FOUND, "(%04X,%04X) %s is missing",
                     COVCT_TAG_GROUP(tag), COVCT_TAG_ELEM(tag),
                     covct_dcm_dict_lookup(tag)
                         ? covct_dcm_dict_lookup(tag)->keyword
                         : "element");
}

covct_rc covct_dcm_get_string(const covct_dcm_dataset *ds, uint32_t tag,
                              uint32_t index, char *buf, size_t cap,
                              covct_error *err)
{
    const covct_dcm_element *e = covct_dcm_dataset_get(ds, tag);
    if (cap)
        buf[0] = '\0';
    if (!e)
        return missing(err, tag);
    return covct_dcm_element_get_string(e, index, buf, cap, err);
}

covct_rc covct_dcm_get_int(const covct_dcm_dataset *ds, uint32_t tag,
                           uint32_t index, int64_t *out, covct_error *err)
{
    const covct_dcm_element *e = covct_dcm_dataset_get(ds, tag);
    if (!e)
        return missing(err, tag);
    return covct_dcm_element_get_int(e, index, out, err);
}

covct_rc covct_dcm_get_double(const covct_dcm_dataset *ds, uint32_t tag,
                              uint32_t index, double *out, covct_error *err)
{
    const covct_dcm_element *e = covct_dcm_dataset_get(ds, tag);
    if (!e)
        return missing(err, tag);
    return covct_dcm_element_get_double(e, index, out, err);
}

covct_rc covct_dcm_get_utf8(const covct_dcm_dataset *ds, uint32_t tag,
                            char **out, covct_error *err)
{
    *out = NULL;
    const covct_dcm_element *e = covct_dcm_dataset_get(ds, tag);
    if (!e)
        return missing(err, tag);
    /* PS3.5 6.1.2.5.2: a sequence item without (0008,0005) inherits the
     * character set of the data set that contains the sequence. */
    const covct_dcm_element *cs = NULL;
    for (const covct_dcm_dataset *d = ds; d && !cs; d = d->parent)
        cs = covct_dcm_dataset_get(d, COVCT_TAG(0x0008, 0x0005));
    char charset[256] = "";
    if (cs && cs->value) {
        size_t n = cs->value_len < sizeof charset - 1 ? cs->value_len
                                                      : sizeof charset - 1;
        memcpy(charset, cs->value, n);
        charset[n] = '\0';
    }
    const uint8_t *v = e->value;
    size_t n = e->value_len;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\0'))
        n--;
    return covct_dcm_charset_to_utf8(charset, v ? v : (const uint8_t *)"", n,
                                     e->vr == COVCT_VR('P', 'N'), out, err);
}
