/*
 * DICOM upper layer PDUs (PS3.8 9.3): A-ASSOCIATE-RQ/AC decoding and
 * encoding, A-ASSOCIATE-RJ, A-RELEASE, A-ABORT, P-DATA-TF PDVs.  Pure
 * functions on buffers: every length is checked against the bytes that
 * are really there (fuzz/fuzz_net.c).
 */
#include <stdio.h>
#include <string.h>

#include "covct/core.h"
#include "covct/dicom.h"
#include "net/net_int.h"

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | p[3];
}

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Copy a UID from the wire: at most NET_UID_MAX characters, trailing NUL
 * or space padding (sent by some implementations) dropped, and only the
 * characters of a UID (PS3.5 9.1) accepted. */
static covct_rc get_uid(const uint8_t *p, size_t n, char *out,
                        const char *what, covct_error *err)
{
    while (n > 0 && (p[n - 1] == 0 || p[n - 1] == ' '))
        n--;
    if (n == 0 || n > NET_UID_MAX)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "%s: UID of %zu characters (1 to 64 allowed)", what,
                         n);
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || p[i] == '.'))
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "%s: UID contains byte 0x%02X (only digits "
                             "and dots allowed)",
                             what, p[i]);
    memcpy(out, p, n);
    out[n] = '\0';
    return COVCT_OK;
}

/* AE title field of 16 bytes: printable, spaces trimmed. */
static covct_rc get_ae(const uint8_t *p, char out[17], const char *what,
                       covct_error *err)
{
    size_t a = 0, b = 16;
    while (a < b && p[a] == ' ')
        a++;
    while (b > a && (p[b - 1] == ' ' || p[b - 1] == 0))
        b--;
    for (size_t i = a; i < b; i++)
        if (p[i] < 0x20 || p[i] > 0x7E || p[i] == '\\')
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "%s AE title contains byte 0x%02X", what, p[i]);
    memcpy(out, p + a, b - a);
    out[b - a] = '\0';
    return COVCT_OK;
}

/* The item at *off of p[0..n) (PS3.8 9.3: type, reserved, 16-bit length,
 * value): 1 with *type, *v and *len, *off moved past it; 0 at the end; -1
 * when it does not fit (err names `what` and the byte offset). */
static int next_item(const uint8_t *p, size_t n, size_t *off, uint8_t *type,
                     const uint8_t **v, size_t *len, const char *what,
                     covct_error *err)
{
    if (*off >= n)
        return 0;
    if (n - *off < 4) {
        COVCT_ERR(err, COVCT_ERR_CORRUPT, "%s: truncated item at byte %zu",
                  what, *off);
        return -1;
    }
    *type = p[*off];
    *len = be16(p + *off + 2);
    if (*len > n - *off - 4) {
        COVCT_ERR(err, COVCT_ERR_CORRUPT,
                  "%s: item 0x%02X at byte %zu has length %zu past the end",
                  what, *type, *off, *len);
        return -1;
    }
    *v = p + *off + 4;
    *off += 4 + *len;
    return 1;
}

static covct_rc decode_pc(const uint8_t *p, size_t n, bool is_ac, net_pc *pc,
                          covct_error *err)
{
    if (n < 4)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "presentation context item of %zu bytes (at least 4)",
                         n);
    memset(pc, 0, sizeof *pc);
    pc->id = p[0];
    pc->result = is_ac ? p[2] : 0;
    if ((pc->id & 1) == 0)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "presentation context ID %u is even (must be odd)",
                         pc->id);
    size_t off = 4, len;
    unsigned n_abstract = 0;
    char what[64];
    snprintf(what, sizeof what, "presentation context %u", pc->id);
    uint8_t type;
    const uint8_t *v;
    int r;
    while ((r = next_item(p, n, &off, &type, &v, &len, what, err)) > 0) {
        if (type == 0x30) {
            if (n_abstract++)
                return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                 "%s: more than one abstract syntax", what);
            if (get_uid(v, len, pc->abstract, what, err))
                return COVCT_ERR_CORRUPT;
        } else if (type == 0x40) {
            if (pc->n_ts == NET_MAX_TS_PER_PC)
                return COVCT_ERR(err, COVCT_ERR_LIMIT,
                                 "%s: more than %d transfer syntaxes", what,
                                 NET_MAX_TS_PER_PC);
            if (get_uid(v, len, pc->ts[pc->n_ts], what, err))
                return COVCT_ERR_CORRUPT;
            pc->n_ts++;
        } else {
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "%s: unknown sub-item type 0x%02X", what, type);
        }
    }
    if (r < 0)
        return COVCT_ERR_CORRUPT;
    if (!is_ac && n_abstract != 1)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "presentation context %u has no abstract syntax",
                         pc->id);
    if (!is_ac && pc->n_ts == 0)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "presentation context %u proposes no transfer "
                         "syntax",
                         pc->id);
    if (is_ac && pc->result == PC_ACCEPTANCE && pc->n_ts != 1)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "accepted presentation context %u names %u "
                         "transfer syntaxes (must be 1)",
                         pc->id, pc->n_ts);
    return COVCT_OK;
}

static covct_rc decode_user_info(const uint8_t *p, size_t n,
                                 net_assoc_pdu *out, covct_error *err)
{
    size_t off = 0, len;
    uint8_t type;
    const uint8_t *v;
    int more;
    while ((more = next_item(p, n, &off, &type, &v, &len,
                             "user information", err)) > 0) {
        switch (type) {
        case 0x51:
            if (len != 4)
                return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                 "maximum length sub-item of %zu bytes "
                                 "(must be 4)",
                                 len);
            out->max_pdu = be32(v);
            break;
        case 0x52:
            if (get_uid(v, len, out->impl_class, "implementation class",
                        err))
                return COVCT_ERR_CORRUPT;
            break;
        case 0x55: {
            size_t m = len < 16 ? len : 16;
            for (size_t i = 0; i < m; i++)
                out->impl_version[i] =
                    (v[i] >= 0x20 && v[i] <= 0x7E) ? (char)v[i] : '?';
            out->impl_version[m] = '\0';
            break;
        }
        case 0x54: {
            if (len < 4)
                return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                 "role selection sub-item of %zu bytes", len);
            size_t ul = be16(v);
            if (ul + 4 != len)
                return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                 "role selection: UID length %zu does not "
                                 "fit the sub-item (%zu bytes)",
                                 ul, len);
            if (out->n_roles < NET_MAX_CONTEXTS) {
                net_role *r = &out->roles[out->n_roles];
                if (get_uid(v + 2, ul, r->sop_class, "role selection", err))
                    return COVCT_ERR_CORRUPT;
                r->scu = v[2 + ul];
                r->scp = v[3 + ul];
                out->n_roles++;
            }
            break;
        }
        default:
            /* Asynchronous operations window (0x53), extended negotiation
             * (0x56, 0x57), user identity (0x58): not negotiated; ignored
             * as PS3.7 D.3.3 allows. */
            break;
        }
    }
    return more < 0 ? COVCT_ERR_CORRUPT : COVCT_OK;
}

covct_rc net_assoc_decode(const uint8_t *p, size_t n, bool is_ac,
                          net_assoc_pdu *out, int *abort_reason,
                          covct_error *err)
{
    memset(out, 0, sizeof *out);
    *abort_reason = ABORT_REASON_INVALID_PARAM;
    if (n < 68)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "A-ASSOCIATE-%s of %zu bytes (at least 68)",
                         is_ac ? "AC" : "RQ", n);
    out->version = be16(p);
    if (get_ae(p + 4, out->called, "called", err) ||
        get_ae(p + 20, out->calling, "calling", err))
        return COVCT_ERR_CORRUPT;
    size_t off = 68, len;
    bool have_ui = false;
    uint8_t type;
    const uint8_t *v;
    int r;
    while ((r = next_item(p, n, &off, &type, &v, &len, "A-ASSOCIATE",
                          err)) > 0) {
        if (type == 0x10) {
            if (get_uid(v, len, out->app_context, "application context",
                        err))
                return COVCT_ERR_CORRUPT;
        } else if (type == (is_ac ? 0x21 : 0x20)) {
            if (out->n_pc == NET_MAX_CONTEXTS) {
                *abort_reason = ABORT_REASON_INVALID_PARAM;
                return COVCT_ERR(err, COVCT_ERR_LIMIT,
                                 "more than %d presentation contexts",
                                 NET_MAX_CONTEXTS);
            }
            net_pc *pc = &out->pc[out->n_pc];
            if (decode_pc(v, len, is_ac, pc, err))
                return err && err->rc ? err->rc : COVCT_ERR_CORRUPT;
            for (unsigned i = 0; i < out->n_pc; i++)
                if (out->pc[i].id == pc->id)
                    return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                     "presentation context ID %u appears "
                                     "twice",
                                     pc->id);
            out->n_pc++;
        } else if (type == 0x50) {
            if (decode_user_info(v, len, out, err))
                return COVCT_ERR_CORRUPT;
            have_ui = true;
        } else {
            *abort_reason = ABORT_REASON_UNRECOGNIZED_PARAM;
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "A-ASSOCIATE: unknown item type 0x%02X at byte "
                             "%zu",
                             type, off - 4 - len);
        }
    }
    if (r < 0)
        return COVCT_ERR_CORRUPT;
    if (!out->app_context[0])
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "A-ASSOCIATE without application context item");
    if (out->n_pc == 0)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "A-ASSOCIATE without presentation contexts");
    if (!have_ui && !is_ac)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "A-ASSOCIATE-RQ without user information item");
    return COVCT_OK;
}

/* Append an item header + value. */
static covct_rc put_item(covct_buf *b, uint8_t type, const void *v,
                         size_t len, covct_error *err)
{
    uint8_t h[4] = {type, 0, 0, 0};
    if (len > 0xFFFF)
        return COVCT_ERR(err, COVCT_ERR_INTERNAL, "item of %zu bytes", len);
    put_be16(h + 2, (uint16_t)len);
    covct_rc rc = covct_buf_append(b, h, 4, err);
    if (!rc && len)
        rc = covct_buf_append(b, v, len, err);
    return rc;
}

static void put_ae16(uint8_t *dst, const char *ae)
{
    memset(dst, ' ', 16);
    size_t n = strlen(ae);
    memcpy(dst, ae, n > 16 ? 16 : n);
}

covct_rc net_assoc_encode(const net_assoc_pdu *a, bool is_ac, covct_buf *out,
                          covct_error *err)
{
    size_t start = out->len;
    uint8_t fixed[74];
    memset(fixed, 0, sizeof fixed);
    fixed[0] = is_ac ? PDU_ASSOC_AC : PDU_ASSOC_RQ;
    put_be16(fixed + 6, 1); /* protocol version 1 */
    put_ae16(fixed + 10, a->called);
    put_ae16(fixed + 26, a->calling);
    covct_rc rc = covct_buf_append(out, fixed, sizeof fixed, err);
    if (!rc)
        rc = put_item(out, 0x10, NET_APP_CONTEXT, strlen(NET_APP_CONTEXT),
                      err);
    for (unsigned i = 0; !rc && i < a->n_pc; i++) {
        const net_pc *pc = &a->pc[i];
        covct_buf sub = {0};
        uint8_t h[4] = {pc->id, 0, is_ac ? pc->result : 0, 0};
        rc = covct_buf_append(&sub, h, 4, err);
        if (!rc && !is_ac)
            rc = put_item(&sub, 0x30, pc->abstract, strlen(pc->abstract),
                          err);
        unsigned nts = is_ac ? (pc->n_ts ? 1 : 0) : pc->n_ts;
        for (unsigned t = 0; !rc && t < nts; t++)
            rc = put_item(&sub, 0x40, pc->ts[t], strlen(pc->ts[t]), err);
        if (!rc)
            rc = put_item(out, is_ac ? 0x21 : 0x20, sub.data, sub.len, err);
        covct_buf_free(&sub);
    }
    if (!rc) {
        covct_buf ui = {0};
        uint8_t ml[4];
        put_be32(ml, a->max_pdu);
        rc = put_item(&ui, 0x51, ml, 4, err);
        if (!rc)
            rc = put_item(&ui, 0x52, COVCT_IMPL_CLASS_UID,
                          strlen(COVCT_IMPL_CLASS_UID), err);
        for (unsigned r = 0; !rc && r < a->n_roles; r++) {
            const net_role *ro = &a->roles[r];
            size_t ul = strlen(ro->sop_class);
            uint8_t v[4 + NET_UID_MAX];
            put_be16(v, (uint16_t)ul);
            memcpy(v + 2, ro->sop_class, ul);
            v[2 + ul] = ro->scu;
            v[3 + ul] = ro->scp;
            rc = put_item(&ui, 0x54, v, ul + 4, err);
        }
        if (!rc)
            rc = put_item(&ui, 0x55, COVCT_IMPL_VERSION,
                          strlen(COVCT_IMPL_VERSION), err);
        if (!rc)
            rc = put_item(out, 0x50, ui.data, ui.len, err);
        covct_buf_free(&ui);
    }
    if (rc)
        return rc;
    size_t body = out->len - start - 6;
    if (body > 0xFFFFFFFFu)
        return COVCT_ERR(err, COVCT_ERR_INTERNAL, "A-ASSOCIATE too long");
    put_be32(out->data + start + 2, (uint32_t)body);
    return COVCT_OK;
}

void net_rj_encode(uint8_t out[10], int result, int source, int reason)
{
    memset(out, 0, 10);
    out[0] = PDU_ASSOC_RJ;
    put_be32(out + 2, 4);
    out[7] = (uint8_t)result;
    out[8] = (uint8_t)source;
    out[9] = (uint8_t)reason;
}

void net_abort_encode(uint8_t out[10], int source, int reason)
{
    memset(out, 0, 10);
    out[0] = PDU_ABORT;
    put_be32(out + 2, 4);
    out[8] = (uint8_t)source;
    out[9] = (uint8_t)reason;
}

void net_release_encode(uint8_t out[10], int type)
{
    memset(out, 0, 10);
    out[0] = (uint8_t)type;
    put_be32(out + 2, 4);
}

int net_pdv_next(const uint8_t *body, size_t n, size_t *off, net_pdv *pdv,
                 covct_error *err)
{
    if (*off >= n)
        return 0;
    if (n - *off < 6) {
        COVCT_ERR(err, COVCT_ERR_CORRUPT,
                  "P-DATA-TF: %zu stray bytes at the end", n - *off);
        return -1;
    }
    uint32_t len = be32(body + *off);
    if (len < 2 || len > n - *off - 4) {
        COVCT_ERR(err, COVCT_ERR_CORRUPT,
                  "P-DATA-TF: PDV item length %u does not fit the PDU "
                  "(%zu bytes left)",
                  len, n - *off - 4);
        return -1;
    }
    pdv->pc_id = body[*off + 4];
    uint8_t mch = body[*off + 5];
    if (mch & 0xFC) {
        COVCT_ERR(err, COVCT_ERR_CORRUPT,
                  "P-DATA-TF: message control header 0x%02X has reserved "
                  "bits set",
                  mch);
        return -1;
    }
    pdv->command = mch & 1;
    pdv->last = (mch & 2) != 0;
    pdv->data = body + *off + 6;
    pdv->len = len - 2;
    *off += 4 + (size_t)len;
    return 1;
}
