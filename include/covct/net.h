/*
 * covct net: the DICOM network protocol, upper layer (PS3.8) and DIMSE
 * messages (PS3.7), on POSIX sockets.
 *
 * Acceptor (SCP): covct_net_server_start() listens on a TCP port and runs
 * each association in its own thread, up to a cap.  It accepts
 * Verification and the storage SOP classes (docs/internals/net.md lists
 * which and with which transfer syntaxes), answers C-ECHO itself and hands
 * every received instance, as a complete Part 10 file, to the caller's
 * store callback, whose DIMSE status goes back to the sender.
 *
 * Requestor (SCU): covct_net_connect() opens an association to a peer;
 * covct_net_echo() and covct_net_send_file() run C-ECHO and C-STORE on it.
 *
 * Why written here: Debian 12 has no C library for the DICOM upper layer
 * (dcmtk's dcmnet is C++); see docs/internals/net.md.
 */
#ifndef COVCT_NET_H
#define COVCT_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"
#include "covct/dicom.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- DIMSE status codes (PS3.7 Annex C, PS3.4 B.2.3) ------------------- */
#define COVCT_DIMSE_SUCCESS 0x0000u
#define COVCT_DIMSE_SOP_CLASS_NOT_SUPPORTED 0x0122u
#define COVCT_DIMSE_PROCESSING_FAILURE 0x0110u
#define COVCT_DIMSE_UNRECOGNIZED_OPERATION 0x0211u
#define COVCT_DIMSE_OUT_OF_RESOURCES 0xA700u    /* C-STORE: Refused */
#define COVCT_DIMSE_DATASET_MISMATCH 0xA900u    /* C-STORE: Error */
#define COVCT_DIMSE_CANNOT_UNDERSTAND 0xC000u   /* C-STORE: Error */
#define COVCT_DIMSE_WARN_MISMATCH 0xB007u       /* C-STORE: Warning */
#define COVCT_DIMSE_PENDING 0xFF00u
#define COVCT_DIMSE_CANCEL 0xFE00u
#define COVCT_DIMSE_IDENTIFIER_MISMATCH 0xA900u /* C-FIND/MOVE/GET */
#define COVCT_DIMSE_UNABLE_TO_PROCESS 0xC000u   /* C-FIND/MOVE/GET */
#define COVCT_DIMSE_MOVE_DEST_UNKNOWN 0xA801u   /* C-MOVE */
#define COVCT_DIMSE_SUBOPS_OUT_OF_RESOURCES 0xA702u
#define COVCT_DIMSE_SUBOPS_FAILED 0xB000u       /* Warning */

/* "Success", "Warning", "Failure", ... for a status code. */
const char *covct_dimse_status_kind(uint16_t status);

/* AE titles: 1..16 characters of the default repertoire, no backslash or
 * control characters; leading/trailing spaces are not significant. */
bool covct_net_ae_valid(const char *ae);

/* A remote application entity, "AE@HOST:PORT". */
typedef struct covct_net_peer {
    char ae[17];
    char host[256];
    uint16_t port;
    bool tls;          /* connect with TLS (covct_net_tls_init first) */
} covct_net_peer;

/* DICOM TLS (PS3.15 B.1, TLS 1.2 or later) for this process: the node's
 * certificate (PEM, with its chain) and private key, used as server and as
 * client; `ca` (PEM, may be NULL) are the CA certificates peers must be
 * signed by (NULL: peers are not verified). */
covct_rc covct_net_tls_init(const char *cert, const char *key,
                            const char *ca, covct_error *err);
void covct_net_tls_cleanup(void);

covct_rc covct_net_peer_parse(const char *spec, covct_net_peer *out,
                              covct_error *err);

/* ---- acceptor ----------------------------------------------------------- */
typedef struct covct_net_assoc_info {
    uint64_t id;             /* association number, counted from 1 */
    char calling_ae[17];
    char called_ae[17];
    char peer_host[64];      /* numeric address */
    uint16_t peer_port;
} covct_net_assoc_info;

/* One received instance.  `file` is a complete Part 10 file (preamble,
 * meta information built from the command and the presentation context,
 * the data set as received); the callback takes ownership (covct_free). */
typedef struct covct_net_store_request {
    const covct_net_assoc_info *assoc;
    const char *sop_class_uid;      /* from the C-STORE-RQ */
    const char *sop_instance_uid;
    const char *transfer_syntax_uid;
    uint16_t message_id;
    const char *move_originator_ae; /* "" unless part of a C-MOVE */
    uint8_t *file;
    size_t len;
} covct_net_store_request;

/* Returns the DIMSE status for the C-STORE-RSP; may write an Error Comment
 * (0000,0902), at most 64 characters, into `comment`. */
typedef uint16_t (*covct_net_store_fn)(void *user,
                                       covct_net_store_request *rq,
                                       char *comment, size_t comment_size);

/* Query/Retrieve (PS3.4 C): a C-FIND, C-MOVE or C-GET request. */
typedef struct covct_net_query {
    const covct_net_assoc_info *assoc;
    const char *sop_class_uid;   /* the information model (e.g. Study Root
                                    Query/Retrieve - FIND) */
    bool patient_root;           /* Patient Root model (else Study Root) */
    const covct_dcm_dataset *identifier;
} covct_net_query;

/* C-FIND: send one match as a Pending response.  Returns false when the
 * requestor cancelled (C-CANCEL) or the association broke: stop then. */
typedef bool (*covct_net_emit_fn)(void *ctx, const covct_dcm_dataset *match);
/* Returns the final status (Success, or a failure such as
 * COVCT_DIMSE_UNABLE_TO_PROCESS with a comment). */
typedef uint16_t (*covct_net_find_fn)(void *user, const covct_net_query *q,
                                      covct_net_emit_fn emit, void *ctx,
                                      char *comment, size_t comment_size);
/* C-MOVE / C-GET: list the instances the identifier selects, by calling
 * add(ctx, path of the Part 10 file, SOP Class UID, SOP Instance UID,
 * err) for each; returns the status (Success unless the identifier is
 * bad). */
typedef covct_rc (*covct_net_add_fn)(void *ctx, const char *path,
                                     const char *sop_class,
                                     const char *sop_uid, covct_error *err);
typedef uint16_t (*covct_net_select_fn)(void *user, const covct_net_query *q,
                                        covct_net_add_fn add, void *ctx,
                                        char *comment, size_t comment_size);

/* Events worth one log line each (association opened, refused, released,
 * aborted), already formatted; the server also logs them with covct_log at
 * info level when no callback is set. */
typedef void (*covct_net_event_fn)(void *user, const char *line);

typedef struct covct_net_server_config {
    const char *ae_title;          /* our AE title; called AE must match */
    const char *bind_host;         /* NULL: all addresses */
    uint16_t port;                 /* 0: any free port (tests) */
    /* Calling AE allow-list: entries "AE" (any host) or "AE@HOST" (host is
     * a numeric address or a name resolved at start).  NULL/0: any. */
    const char *const *allowed;
    size_t n_allowed;
    unsigned max_associations;     /* concurrent; 0: 32 */
    uint32_t max_pdu;              /* largest P-DATA PDU we accept; 0:
                                      256 KiB */
    unsigned artim_s;              /* ARTIM timer (PS3.8 9.1.5); 0: 30 */
    unsigned idle_s;               /* no PDU for this long: abort; 0: 300 */
    size_t max_dataset;            /* larger data sets: Out of Resources;
                                      0: COVCT_LIMIT_FILE_MAX */
    covct_net_store_fn on_store;   /* NULL: storage is not offered */
    void *store_user;
    covct_net_event_fn on_event;
    void *event_user;
    /* Query/Retrieve SCP: offered when set. */
    covct_net_find_fn on_find;
    covct_net_select_fn on_select;   /* C-MOVE and C-GET */
    void *query_user;
    /* Every association is TLS (after covct_net_tls_init). */
    bool tls;
    /* C-MOVE destinations: the only AEs instances are sent to. */
    const covct_net_peer *peers;
    size_t n_peers;
} covct_net_server_config;

typedef struct covct_net_server covct_net_server;

/* Bind, listen and start accepting (in a background thread). */
covct_rc covct_net_server_start(const covct_net_server_config *cfg,
                                covct_net_server **out, covct_error *err);
/* The port actually bound (useful with port 0). */
uint16_t covct_net_server_port(const covct_net_server *s);
/* Associations open now, and opened since start. */
void covct_net_server_counts(covct_net_server *s, unsigned *open,
                             uint64_t *total);
/* Stop accepting; give running associations up to grace_s seconds to end
 * (each finishes the message it is in), then abort the rest; free. */
void covct_net_server_stop(covct_net_server *s, unsigned grace_s);

/* Serve one association on an already connected socket, in the calling
 * thread (the server does this per connection; the fuzz target and tests
 * call it on a socketpair).  Closes fd. */
void covct_net_serve_fd(const covct_net_server_config *cfg, int fd,
                        const covct_net_assoc_info *info);

/* ---- requestor ---------------------------------------------------------- */
typedef struct covct_net_assoc covct_net_assoc;

/* A presentation context to propose: an abstract syntax (SOP class) and
 * the transfer syntaxes we can send it in, preferred first. */
typedef struct covct_net_proposal {
    const char *abstract_syntax;
    const char *const *transfer_syntaxes;
    size_t n_transfer_syntaxes;
} covct_net_proposal;

/* Open an association.  Refusals (A-ASSOCIATE-RJ) and timeouts are errors
 * naming the peer and the reason. */
covct_rc covct_net_connect(const covct_net_peer *peer, const char *calling_ae,
                           const covct_net_proposal *proposals, size_t n,
                           unsigned timeout_s, covct_net_assoc **out,
                           covct_error *err);
/* Whether the peer accepted `abstract_syntax` in `ts` (NULL: in any). */
bool covct_net_accepted(const covct_net_assoc *a, const char *abstract_syntax,
                        const char *ts);
covct_rc covct_net_echo(covct_net_assoc *a, uint16_t *status,
                        covct_error *err);
/* C-STORE of a Part 10 file held in memory: the data set as it is
 * encoded when the peer accepted the file's SOP class in its transfer
 * syntax, else decompressed to explicit (or implicit) VR little endian if
 * the peer accepted that (propose with covct_net_ts_choices).  *status is
 * the peer's answer. */
covct_rc covct_net_send_file(covct_net_assoc *a, const uint8_t *file,
                             size_t len, uint16_t *status, covct_error *err);
/* The same as a C-MOVE sub-operation: names the AE and message that asked
 * for it (0000,1030)/(0000,1031). */
covct_rc covct_net_send_file_moved(covct_net_assoc *a, const uint8_t *file,
                                   size_t len, const char *move_originator,
                                   uint16_t move_originator_id,
                                   uint16_t *status, covct_error *err);
/* The transfer syntaxes to propose for a file in `ts`: its own first,
 * then explicit and implicit VR little endian, to which
 * covct_net_send_file converts (decompressing) when the peer refuses the
 * file's own.  Returns how many (1 to 3) it put in out. */
size_t covct_net_ts_choices(const char *ts, const char *out[3]);
/* A-RELEASE, then close and free (also on error). */
covct_rc covct_net_release(covct_net_assoc *a, covct_error *err);
/* A-ABORT, close and free. */
void covct_net_abort(covct_net_assoc *a);

#ifdef __cplusplus
}
#endif

#endif
