/*
 * DIMSE command sets (PS3.7 9.3 and 6.3.1): group 0000 elements, always
 * implicit VR little endian; the storage SOP classes (PS3.4 B.5) and the
 * kinds of status codes (PS3.7 Annex C).
 */
#include <stdio.h>
#include <string.h>

#include "covct/core.h"
#include "covct/net.h"
#include "net/net_int.h"

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* A string value: trailing NUL and space padding removed; control bytes
 * are refused (a command carries UIDs, AE titles and a comment). */
static covct_rc get_str(const uint8_t *v, size_t len, char *out, size_t size,
                        uint16_t elem, covct_error *err)
{
    while (len > 0 && (v[len - 1] == 0 || v[len - 1] == ' '))
        len--;
    size_t start = 0;
    while (start < len && v[start] == ' ')
        start++;
    if (len - start >= size)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "command element (0000,%04X): value of %zu "
                         "characters (at most %zu)",
                         elem, len - start, size - 1);
    for (size_t i = start; i < len; i++)
        if (v[i] < 0x20 || v[i] > 0x7E)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "command element (0000,%04X): byte 0x%02X in "
                             "a text value",
                             elem, v[i]);
    memcpy(out, v + start, len - start);
    out[len - start] = '\0';
    return COVCT_OK;
}

static covct_rc get_us(const uint8_t *v, size_t len, uint16_t *out,
                       uint16_t elem, covct_error *err)
{
    if (len != 2)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "command element (0000,%04X): US value of %zu "
                         "bytes (must be 2)",
                         elem, len);
    *out = le16(v);
    return COVCT_OK;
}

static bool is_uid(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || *s == '.'))
            return false;
    return true;
}

covct_rc net_cmd_decode(const uint8_t *p, size_t n, net_cmd *out,
                        covct_error *err)
{
    memset(out, 0, sizeof *out);
    bool has_field = false;
    size_t off = 0;
    uint32_t prev = 0;
    bool first = true;
    while (off < n) {
        if (n - off < 8)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "command set: %zu stray bytes at offset %zu",
                             n - off, off);
        uint16_t group = le16(p + off), elem = le16(p + off + 2);
        uint32_t len = le32(p + off + 4);
        uint32_t tag = ((uint32_t)group << 16) | elem;
        if (group != 0x0000)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "command set: element (%04X,%04X) at offset "
                             "%zu is not in group 0000",
                             group, elem, off);
        if (!first && tag <= prev)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "command set: element (0000,%04X) out of order",
                             elem);
        first = false;
        prev = tag;
        if (len > n - off - 8)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "command set: element (0000,%04X) length %u "
                             "past the end (%zu bytes left)",
                             elem, len, n - off - 8);
        const uint8_t *v = p + off + 8;
        covct_rc rc = COVCT_OK;
        switch (elem) {
        case 0x0002:
        case 0x0003:
            rc = get_str(v, len, out->sop_class, sizeof out->sop_class, elem,
                         err);
            if (!rc && out->sop_class[0] && !is_uid(out->sop_class))
                rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                               "command element (0000,%04X): '%s' is not a "
                               "UID",
                               elem, out->sop_class);
            break;
        case 0x1000:
        case 0x1001:
            rc = get_str(v, len, out->sop_instance, sizeof out->sop_instance,
                         elem, err);
            if (!rc && out->sop_instance[0] && !is_uid(out->sop_instance))
                rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                               "command element (0000,%04X): '%s' is not a "
                               "UID",
                               elem, out->sop_instance);
            break;
        case 0x0100:
            rc = get_us(v, len, &out->field, elem, err);
            has_field = true;
            break;
        case 0x0110:
            rc = get_us(v, len, &out->message_id, elem, err);
            out->has_message_id = true;
            break;
        case 0x0120:
            rc = get_us(v, len, &out->responding_to, elem, err);
            out->has_responding_to = true;
            break;
        case 0x0600:
            rc = get_str(v, len, out->move_destination,
                         sizeof out->move_destination, elem, err);
            break;
        case 0x0700:
            rc = get_us(v, len, &out->priority, elem, err);
            break;
        case 0x0800:
            rc = get_us(v, len, &out->dataset_type, elem, err);
            out->has_dataset_type = true;
            break;
        case 0x0900:
            rc = get_us(v, len, &out->status, elem, err);
            out->has_status = true;
            break;
        case 0x0902:
            rc = get_str(v, len, out->error_comment,
                         sizeof out->error_comment, elem, err);
            break;
        case 0x1020:
        case 0x1021:
        case 0x1022:
        case 0x1023: {
            uint16_t x = 0;
            rc = get_us(v, len, &x, elem, err);
            out->has_counts = true;
            if (elem == 0x1020)
                out->remaining = x;
            else if (elem == 0x1021)
                out->completed = x;
            else if (elem == 0x1022)
                out->failed = x;
            else
                out->warning = x;
            break;
        }
        case 0x1030:
            rc = get_str(v, len, out->move_originator,
                         sizeof out->move_originator, elem, err);
            break;
        case 0x1031:
            rc = get_us(v, len, &out->move_originator_id, elem, err);
            break;
        case 0x0000:
            if (len != 4 || le32(v) != n - off - 12)
                rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                               "command set: (0000,0000) group length %u "
                               "does not match the %zu bytes that follow",
                               len == 4 ? le32(v) : 0, n - off - 12);
            break;
        default:
            /* Sub-operation counts, offending element, sub-operation counts, offending element,
             * attribute lists...: not needed by the services offered. */
            break;
        }
        if (rc)
            return rc;
        off += 8 + (size_t)len;
    }
    if (!has_field)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "command set without (0000,0100) Command Field");
    if (!out->has_dataset_type)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "command set without (0000,0800) Command Data Set "
                         "Type");
    return COVCT_OK;
}

static covct_rc put_el(covct_buf *b, uint16_t elem, const void *v,
                       size_t len, covct_error *err)
{
    uint8_t h[8] = {0, 0, (uint8_t)elem, (uint8_t)(elem >> 8),
                    (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16),
                    (uint8_t)(len >> 24)};
    covct_rc rc = covct_buf_append(b, h, 8, err);
    if (!rc && len)
        rc = covct_buf_append(b, v, len, err);
    return rc;
}

static covct_rc put_us(covct_buf *b, uint16_t elem, uint16_t v,
                       covct_error *err)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    return put_el(b, elem, x, 2, err);
}

/* UI padded with NUL, AE/LO with space, to even length (PS3.5 6.2). */
static covct_rc put_str(covct_buf *b, uint16_t elem, const char *s, char pad,
                        covct_error *err)
{
    char v[72];
    size_t n = strlen(s);
    if (n > 64)
        n = 64;
    memcpy(v, s, n);
    if (n & 1)
        v[n++] = pad;
    return put_el(b, elem, v, n, err);
}

covct_rc net_cmd_encode(const net_cmd *c, covct_buf *out, covct_error *err)
{
    covct_buf b = {0};
    bool rsp = (c->field & DIMSE_RSP) != 0;
    covct_rc rc = COVCT_OK;
    if (c->sop_class[0])
        rc = put_str(&b, 0x0002, c->sop_class, '\0', err);
    if (!rc)
        rc = put_us(&b, 0x0100, c->field, err);
    if (!rc && c->has_message_id)
        rc = put_us(&b, 0x0110, c->message_id, err);
    if (!rc && c->has_responding_to)
        rc = put_us(&b, 0x0120, c->responding_to, err);
    if (!rc && c->move_destination[0])
        rc = put_str(&b, 0x0600, c->move_destination, ' ', err);
    if (!rc && !rsp && c->field != DIMSE_C_ECHO_RQ)
        rc = put_us(&b, 0x0700, c->priority, err);
    if (!rc)
        rc = put_us(&b, 0x0800, c->dataset_type, err);
    if (!rc && c->has_status)
        rc = put_us(&b, 0x0900, c->status, err);
    if (!rc && c->error_comment[0])
        rc = put_str(&b, 0x0902, c->error_comment, ' ', err);
    if (!rc && c->sop_instance[0])
        rc = put_str(&b, 0x1000, c->sop_instance, '\0', err);
    if (!rc && c->has_counts) {
        if (c->status == 0xFF00)
            rc = put_us(&b, 0x1020, c->remaining, err);
        if (!rc)
            rc = put_us(&b, 0x1021, c->completed, err);
        if (!rc)
            rc = put_us(&b, 0x1022, c->failed, err);
        if (!rc)
            rc = put_us(&b, 0x1023, c->warning, err);
    }
    if (!rc && c->move_originator[0])
        rc = put_str(&b, 0x1030, c->move_originator, ' ', err);
    if (!rc && c->move_originator[0])
        rc = put_us(&b, 0x1031, c->move_originator_id, err);
    if (!rc) {
        uint8_t gl[4] = {(uint8_t)b.len, (uint8_t)(b.len >> 8),
                         (uint8_t)(b.len >> 16), (uint8_t)(b.len >> 24)};
        rc = put_el(out, 0x0000, gl, 4, err);
    }
    if (!rc)
        rc = covct_buf_append(out, b.data, b.len, err);
    covct_buf_free(&b);
    return rc;
}

/* ---- storage SOP classes -------------------------------------------------
 * Every SOP class under the storage root 1.2.840.10008.5.1.4.1.1 is a
 * storage class (PS3.4 B.5; PS3.6 Annex A), as are the few listed after
 * it.  Names are for log lines. */
static const struct {
    const char *uid, *name;
} storage_names[] = {
    {"1.2.840.10008.5.1.4.1.1.1", "CR Image"},
    {"1.2.840.10008.5.1.4.1.1.1.1", "Digital X-Ray Image (Presentation)"},
    {"1.2.840.10008.5.1.4.1.1.1.1.1", "Digital X-Ray Image (Processing)"},
    {"1.2.840.10008.5.1.4.1.1.2", "CT Image"},
    {"1.2.840.10008.5.1.4.1.1.2.1", "Enhanced CT Image"},
    {"1.2.840.10008.5.1.4.1.1.2.2", "Legacy Converted Enhanced CT Image"},
    {"1.2.840.10008.5.1.4.1.1.4", "MR Image"},
    {"1.2.840.10008.5.1.4.1.1.4.1", "Enhanced MR Image"},
    {"1.2.840.10008.5.1.4.1.1.7", "Secondary Capture Image"},
    {"1.2.840.10008.5.1.4.1.1.7.2", "Multi-frame Grayscale Byte SC Image"},
    {"1.2.840.10008.5.1.4.1.1.7.3", "Multi-frame Grayscale Word SC Image"},
    {"1.2.840.10008.5.1.4.1.1.7.4", "Multi-frame True Color SC Image"},
    {"1.2.840.10008.5.1.4.1.1.11.1", "Grayscale Softcopy Presentation State"},
    {"1.2.840.10008.5.1.4.1.1.12.1", "X-Ray Angiographic Image"},
    {"1.2.840.10008.5.1.4.1.1.20", "Nuclear Medicine Image"},
    {"1.2.840.10008.5.1.4.1.1.66", "Raw Data"},
    {"1.2.840.10008.5.1.4.1.1.66.1", "Spatial Registration"},
    {"1.2.840.10008.5.1.4.1.1.66.4", "Segmentation"},
    {"1.2.840.10008.5.1.4.1.1.88.11", "Basic Text SR"},
    {"1.2.840.10008.5.1.4.1.1.88.22", "Enhanced SR"},
    {"1.2.840.10008.5.1.4.1.1.88.33", "Comprehensive SR"},
    {"1.2.840.10008.5.1.4.1.1.88.34", "Comprehensive 3D SR"},
    {"1.2.840.10008.5.1.4.1.1.88.59", "Key Object Selection Document"},
    {"1.2.840.10008.5.1.4.1.1.104.1", "Encapsulated PDF"},
    {"1.2.840.10008.5.1.4.1.1.128", "PET Image"},
    {"1.2.840.10008.5.1.4.1.1.481.1", "RT Image"},
    {"1.2.840.10008.5.1.4.1.1.481.2", "RT Dose"},
    {"1.2.840.10008.5.1.4.1.1.481.3", "RT Structure Set"},
    {"1.2.840.10008.5.1.4.1.1.481.5", "RT Plan"},
    {"1.2.840.10008.5.1.4.1.1.6.1", "Ultrasound Image"},
    {"1.2.840.10008.5.1.4.1.1.3.1", "Ultrasound Multi-frame Image"},
    {"1.2.840.10008.5.1.4.1.1.77.1.4", "VL Photographic Image"},
    /* Outside the storage root. */
    {"1.2.840.10008.5.1.4.34.7", "RT Beams Delivery Instruction"},
    {"1.2.840.10008.5.1.4.38.1", "Hanging Protocol"},
    {"1.2.840.10008.5.1.4.39.1", "Color Palette"},
    {"1.2.840.10008.5.1.4.43.1", "Generic Implant Template"},
    {"1.2.840.10008.5.1.4.44.1", "Implant Assembly Template"},
    {"1.2.840.10008.5.1.4.45.1", "Implant Template Group"},
};

#define STORAGE_ROOT "1.2.840.10008.5.1.4.1.1."

int net_qr_kind(const char *uid, bool *patient_root)
{
    static const struct {
        const char *uid;
        int kind;
        bool patient;
    } qr[] = {
        {"1.2.840.10008.5.1.4.1.2.1.1", 0, true},
        {"1.2.840.10008.5.1.4.1.2.1.2", 1, true},
        {"1.2.840.10008.5.1.4.1.2.1.3", 2, true},
        {"1.2.840.10008.5.1.4.1.2.2.1", 0, false},
        {"1.2.840.10008.5.1.4.1.2.2.2", 1, false},
        {"1.2.840.10008.5.1.4.1.2.2.3", 2, false},
    };
    for (size_t i = 0; i < sizeof qr / sizeof qr[0]; i++)
        if (!strcmp(uid, qr[i].uid)) {
            if (patient_root)
                *patient_root = qr[i].patient;
            return qr[i].kind;
        }
    return -1;
}

const char *net_storage_name(const char *uid)
{
    for (size_t i = 0; i < sizeof storage_names / sizeof storage_names[0];
         i++)
        if (!strcmp(uid, storage_names[i].uid))
            return storage_names[i].name;
    return NULL;
}

bool net_is_storage(const char *uid)
{
    size_t r = strlen(STORAGE_ROOT);
    if (!strncmp(uid, STORAGE_ROOT, r) && uid[r] >= '0' && uid[r] <= '9')
        return true;
    return net_storage_name(uid) != NULL;
}

const char *covct_dimse_status_kind(uint16_t status)
{
    if (status == 0x0000)
        return "Success";
    if (status == 0xFE00)
        return "Cancel";
    if (status == 0xFF00 || status == 0xFF01)
        return "Pending";
    if (status == 0x0001 || (status & 0xF000) == 0xB000 || status == 0x0107 ||
        status == 0x0116)
        return "Warning";
    return "Failure";
}
