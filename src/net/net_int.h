/* Internals of the net module: PDU and DIMSE command encoding (pdu.c,
 * dimse.c, pure functions on buffers, fuzzed), association I/O (assoc.c). */
#ifndef COVCT_NET_INT_H
#define COVCT_NET_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"
#include "covct/net.h"

/* PDU types (PS3.8 9.3). */
enum {
    PDU_ASSOC_RQ = 0x01,
    PDU_ASSOC_AC = 0x02,
    PDU_ASSOC_RJ = 0x03,
    PDU_P_DATA = 0x04,
    PDU_RELEASE_RQ = 0x05,
    PDU_RELEASE_RP = 0x06,
    PDU_ABORT = 0x07
};

/* A-ABORT source / reason (PS3.8 9.3.8). */
enum {
    ABORT_SOURCE_USER = 0,
    ABORT_SOURCE_PROVIDER = 2,
    ABORT_REASON_NONE = 0,
    ABORT_REASON_UNRECOGNIZED_PDU = 1,
    ABORT_REASON_UNEXPECTED_PDU = 2,
    ABORT_REASON_UNRECOGNIZED_PARAM = 4,
    ABORT_REASON_UNEXPECTED_PARAM = 5,
    ABORT_REASON_INVALID_PARAM = 6
};

/* Presentation context results (PS3.8 9.3.3.2). */
enum {
    PC_ACCEPTANCE = 0,
    PC_USER_REJECTION = 1,
    PC_NO_REASON = 2,
    PC_ABSTRACT_NOT_SUPPORTED = 3,
    PC_TS_NOT_SUPPORTED = 4
};

#define NET_UID_MAX 64
#define NET_MAX_CONTEXTS 128   /* odd IDs 1..255 */
#define NET_MAX_TS_PER_PC 32
#define NET_APP_CONTEXT "1.2.840.10008.3.1.1.1"
#define NET_VERIFICATION "1.2.840.10008.1.1"
/* The largest PDU we read, whatever the peer sends: a peer that ignores
 * our maximum length is refused beyond this (association requests carry
 * at most 128 contexts x 32 syntaxes x 68 bytes ~ 280 KB). */
#define NET_PDU_HARD_MAX ((uint32_t)16 << 20)

typedef struct net_pc {
    uint8_t id;
    uint8_t result;                 /* AC: PC_* */
    char abstract[NET_UID_MAX + 1];
    unsigned n_ts;
    char ts[NET_MAX_TS_PER_PC][NET_UID_MAX + 1];
} net_pc;

typedef struct net_role {
    char sop_class[NET_UID_MAX + 1];
    uint8_t scu, scp;
} net_role;

/* A-ASSOCIATE-RQ or -AC, decoded. */
typedef struct net_assoc_pdu {
    uint16_t version;
    char called[17], calling[17];   /* trailing spaces removed */
    char app_context[NET_UID_MAX + 1];
    unsigned n_pc;
    net_pc pc[NET_MAX_CONTEXTS];
    uint32_t max_pdu;               /* 0: no limit or absent */
    char impl_class[NET_UID_MAX + 1];
    char impl_version[17];
    unsigned n_roles;
    net_role roles[NET_MAX_CONTEXTS];
} net_assoc_pdu;

/* Decode the body (bytes after the 6-byte PDU header) of an A-ASSOCIATE-RQ
 * (is_ac false) or -AC.  On error, *abort_reason is the A-ABORT reason. */
covct_rc net_assoc_decode(const uint8_t *p, size_t n, bool is_ac,
                          net_assoc_pdu *out, int *abort_reason,
                          covct_error *err);
/* Encode a whole A-ASSOCIATE-RQ/AC PDU (header included). */
covct_rc net_assoc_encode(const net_assoc_pdu *a, bool is_ac, covct_buf *out,
                          covct_error *err);
/* 10-byte A-ASSOCIATE-RJ, 10-byte A-ABORT, A-RELEASE-RQ/RP. */
void net_rj_encode(uint8_t out[10], int result, int source, int reason);
void net_abort_encode(uint8_t out[10], int source, int reason);
void net_release_encode(uint8_t out[10], int type);

/* One PDV of a P-DATA-TF body. */
typedef struct net_pdv {
    uint8_t pc_id;
    bool command;
    bool last;
    const uint8_t *data;
    size_t len;
} net_pdv;

/* Next PDV of a P-DATA-TF body at *off; returns 1 with *pdv, 0 at the
 * end, -1 if malformed (message in err). */
int net_pdv_next(const uint8_t *body, size_t n, size_t *off, net_pdv *pdv,
                 covct_error *err);

/* ---- DIMSE command sets (PS3.7 9.3, 6.3.1: implicit VR little endian) - */
enum {
    DIMSE_C_STORE_RQ = 0x0001,
    DIMSE_C_GET_RQ = 0x0010,
    DIMSE_C_FIND_RQ = 0x0020,
    DIMSE_C_MOVE_RQ = 0x0021,
    DIMSE_C_ECHO_RQ = 0x0030,
    DIMSE_C_CANCEL_RQ = 0x0FFF,
    DIMSE_RSP = 0x8000,
    DIMSE_NO_DATASET = 0x0101
};

typedef struct net_cmd {
    uint16_t field;                 /* (0000,0100) */
    uint16_t message_id;            /* (0000,0110) */
    uint16_t responding_to;         /* (0000,0120) */
    uint16_t priority;              /* (0000,0700) */
    uint16_t dataset_type;          /* (0000,0800) */
    uint16_t status;                /* (0000,0900) */
    bool has_message_id, has_responding_to, has_status, has_dataset_type;
    char sop_class[NET_UID_MAX + 1];        /* (0000,0002) or (0000,0003) */
    char sop_instance[NET_UID_MAX + 1];     /* (0000,1000) or (0000,1001) */
    char move_destination[17];              /* (0000,0600) */
    char move_originator[17];               /* (0000,1030) */
    uint16_t move_originator_id;            /* (0000,1031) */
    char error_comment[65];                 /* (0000,0902) */
    bool has_counts;                        /* (0000,1020)..(0000,1023) */
    uint16_t remaining, completed, failed, warning;
} net_cmd;

covct_rc net_cmd_decode(const uint8_t *p, size_t n, net_cmd *out,
                        covct_error *err);
/* Encode the elements that are set (non-empty strings, has_* flags;
 * field, dataset_type always), with (0000,0000) group length. */
covct_rc net_cmd_encode(const net_cmd *c, covct_buf *out, covct_error *err);

/* Query/Retrieve SOP classes (PS3.4 C.6): 0 FIND, 1 MOVE, 2 GET, -1 not
 * Q/R; *patient_root for the Patient Root model. */
int net_qr_kind(const char *uid, bool *patient_root);

/* Storage SOP classes (docs/internals/net.md): name or NULL. */
const char *net_storage_name(const char *uid);
bool net_is_storage(const char *uid);

#endif
