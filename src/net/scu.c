/*
 * The requestor side: open an association to a peer, C-ECHO, C-STORE,
 * A-RELEASE (PS3.8 9.2, requestor states Sta4, Sta5, Sta6, Sta7).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "covct/core.h"
#include "covct/dicom.h"
#include "covct/net.h"
#include "net/net_assoc.h"
#include "net/net_int.h"

struct covct_net_assoc {
    net_conn c;
    uint16_t next_id;
};

/* Largest P-DATA we accept as requestor. */
#define SCU_MAX_PDU (256u * 1024u)

static int connect_timeout(const covct_net_peer *peer, unsigned timeout_s,
                           covct_error *err)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof port, "%u", peer->port);
    int gai = getaddrinfo(peer->host, port, &hints, &res);
    if (gai) {
        COVCT_ERR(err, COVCT_ERR_IO, "cannot find host %s: %s", peer->host,
                  gai_strerror(gai));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *r = res; r && fd < 0; r = r->ai_next) {
        fd = socket(r->ai_family, r->ai_socktype | SOCK_CLOEXEC |
                                      SOCK_NONBLOCK,
                    r->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        if (connect(fd, r->ai_addr, r->ai_addrlen) && errno != EINPROGRESS) {
            saved = errno;
            close(fd);
            fd = -1;
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int pr = poll(&p, 1, (int)timeout_s * 1000);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (pr <= 0) {
            saved = ETIMEDOUT;
        } else {
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            saved = soerr;
        }
        if (saved) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        COVCT_ERR(err, COVCT_ERR_IO, "cannot connect to %s@%s:%u: %s",
                  peer->ae, peer->host, peer->port, strerror(saved));
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    net_set_nodelay(fd);
    return fd;
}

static const char *rj_reason(int source, int reason)
{
    if (source == 1) {
        switch (reason) {
        case 2:
            return "application context name not supported";
        case 3:
            return "calling AE title not recognized (add covct's AE title "
                   "to the peer's list of known AEs)";
        case 7:
            return "called AE title not recognized (check the peer's AE "
                   "title)";
        default:
            return "no reason given";
        }
    }
    if (source == 2)
        return reason == 2 ? "protocol version not supported"
                           : "no reason given (ACSE)";
    if (source == 3)
        return reason == 1 ? "temporary congestion"
               : reason == 2 ? "local limit exceeded (too many associations)"
                             : "no reason given (presentation)";
    return "unknown reason";
}

covct_rc covct_net_connect(const covct_net_peer *peer, const char *calling_ae,
                           const covct_net_proposal *proposals, size_t n,
                           unsigned timeout_s, covct_net_assoc **out,
                           covct_error *err)
{
    *out = NULL;
    if (n == 0 || n > NET_MAX_CONTEXTS)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "%zu presentation contexts (1 to %d)", n,
                         NET_MAX_CONTEXTS);
    if (!covct_net_ae_valid(calling_ae))
        return COVCT_ERR(err, COVCT_ERR_ARG, "calling AE title '%s' is not "
                         "valid", calling_ae);
    if (timeout_s == 0)
        timeout_s = 30;
    covct_net_assoc *a = covct_calloc(1, sizeof *a);
    net_assoc_pdu *rq = covct_calloc(2, sizeof *rq);
    if (!a || !rq) {
        covct_free(a);
        covct_free(rq);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    net_assoc_pdu *ac = rq + 1;
    covct_rc rc = COVCT_OK;
    net_conn *c = &a->c;
    c->fd = -1;
    c->my_max = SCU_MAX_PDU;
    c->timeout_ms = timeout_s * 1000u;
    snprintf(c->peer_desc, sizeof c->peer_desc, "%s@%s:%u", peer->ae,
             peer->host, peer->port);
    a->next_id = 1;
    snprintf(rq->called, sizeof rq->called, "%s", peer->ae);
    snprintf(rq->calling, sizeof rq->calling, "%s", calling_ae);
    rq->max_pdu = SCU_MAX_PDU;
    rq->n_pc = (unsigned)n;
    for (size_t i = 0; i < n; i++) {
        net_pc *pc = &rq->pc[i];
        pc->id = (uint8_t)(2 * i + 1);
        snprintf(pc->abstract, sizeof pc->abstract, "%s",
                 proposals[i].abstract_syntax);
        size_t nts = proposals[i].n_transfer_syntaxes;
        if (nts == 0 || nts > NET_MAX_TS_PER_PC) {
            rc = COVCT_ERR(err, COVCT_ERR_ARG,
                           "proposal %zu: %zu transfer syntaxes", i, nts);
            goto fail;
        }
        pc->n_ts = (unsigned)nts;
        for (size_t t = 0; t < nts; t++)
            snprintf(pc->ts[t], sizeof pc->ts[t], "%s",
                     proposals[i].transfer_syntaxes[t]);
    }
    c->fd = connect_timeout(peer, timeout_s, err);
    if (c->fd < 0) {
        rc = COVCT_ERR_IO;
        goto fail;
    }
    if (peer->tls) {
        if (!net_tls_client_ctx()) {
            rc = COVCT_ERR(err, COVCT_ERR_ARG,
                           "TLS to %s: no certificate set up",
                           c->peer_desc);
            goto fail;
        }
        if (!net_tls_handshake(c, net_tls_client_ctx(), false,
                               c->timeout_ms)) {
            rc = COVCT_ERR(err, COVCT_ERR_IO, "%s: %s", c->peer_desc,
                           c->err.msg);
            goto fail;
        }
    }
    covct_buf b = {0};
    if ((rc = net_assoc_encode(rq, false, &b, err))) {
        covct_buf_free(&b);
        goto fail;
    }
    struct iovec v = {.iov_base = b.data, .iov_len = b.len};
    int wr = net_write_all(c, &v, 1);
    covct_buf_free(&b);
    if (wr) {
        rc = COVCT_ERR(err, COVCT_ERR_IO, "sending A-ASSOCIATE-RQ to %s: %s",
                       c->peer_desc, strerror(errno));
        goto fail;
    }
    int abort_reason = 0;
    int t = net_read_pdu(c, c->timeout_ms, &abort_reason);
    if (t == PDU_ASSOC_RJ && c->pdu_len >= 4) {
        rc = COVCT_ERR(err, COVCT_ERR_IO,
                       "%s rejected the association (%s): %s", c->peer_desc,
                       c->pdu[1] == 2 ? "transient" : "permanent",
                       rj_reason(c->pdu[2], c->pdu[3]));
        goto fail;
    }
    if (t != PDU_ASSOC_AC) {
        rc = COVCT_ERR(err, COVCT_ERR_IO,
                       "%s did not accept the association: %s", c->peer_desc,
                       t == NET_EV_TIMEOUT  ? "no answer within the timeout"
                       : t == NET_EV_CLOSED ? "connection closed"
                       : t == PDU_ABORT     ? "A-ABORT"
                       : t == NET_EV_ERROR  ? c->err.msg
                                            : "unexpected PDU");
        goto fail;
    }
    if (net_assoc_decode(c->pdu, c->pdu_len, true, ac, &abort_reason,
                         &c->err)) {
        net_send_abort(c, ABORT_SOURCE_USER, abort_reason);
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "%s sent an invalid A-ASSOCIATE-AC: %s", c->peer_desc,
                       c->err.msg);
        goto fail;
    }
    c->peer_max = ac->max_pdu;
    c->pc = covct_calloc(rq->n_pc, sizeof *c->pc);
    if (!c->pc) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    c->n_pc = rq->n_pc;
    for (unsigned i = 0; i < rq->n_pc; i++) {
        c->pc[i] = rq->pc[i];
        c->pc[i].result = PC_NO_REASON;
        c->pc[i].n_ts = 0;
        for (unsigned j = 0; j < ac->n_pc; j++) {
            if (ac->pc[j].id != rq->pc[i].id)
                continue;
            c->pc[i].result = ac->pc[j].result;
            if (ac->pc[j].result == PC_ACCEPTANCE) {
                c->pc[i].n_ts = 1;
                memcpy(c->pc[i].ts[0], ac->pc[j].ts[0],
                       sizeof c->pc[i].ts[0]);
            }
        }
    }
    covct_free(rq);
    *out = a;
    return COVCT_OK;
fail:
    covct_free(rq);
    net_conn_free(c);
    covct_free(a);
    return rc;
}

static const net_pc *find_pc(const covct_net_assoc *a, const char *abstract,
                             const char *ts)
{
    for (unsigned i = 0; i < a->c.n_pc; i++) {
        const net_pc *pc = &a->c.pc[i];
        if (pc->result == PC_ACCEPTANCE && !strcmp(pc->abstract, abstract) &&
            (!ts || !strcmp(pc->ts[0], ts)))
            return pc;
    }
    return NULL;
}

bool covct_net_accepted(const covct_net_assoc *a, const char *abstract_syntax,
                        const char *ts)
{
    return find_pc(a, abstract_syntax, ts) != NULL;
}

/* Send a request and wait for its response command. */
static covct_rc request(covct_net_assoc *a, const net_pc *pc, net_cmd *cmd,
                        const uint8_t *data, size_t len, uint16_t *status,
                        covct_error *err)
{
    net_conn *c = &a->c;
    cmd->has_message_id = true;
    cmd->message_id = a->next_id++;
    covct_rc rc = net_send_message(c, pc->id, cmd, data, len, err);
    if (rc)
        return rc;
    net_cmd rsp;
    uint8_t pc_id = 0;
    int abort_reason = 0;
    int ev = net_recv_command(c, &rsp, &pc_id, &abort_reason);
    if (ev != NET_EV_PDV) {
        if (ev == NET_EV_ERROR)
            net_send_abort(c, ABORT_SOURCE_USER, abort_reason);
        return COVCT_ERR(err, COVCT_ERR_IO, "no response from %s: %s",
                         c->peer_desc,
                         ev == NET_EV_TIMEOUT  ? "timed out"
                         : ev == NET_EV_CLOSED ? "connection closed"
                         : ev == PDU_ABORT     ? "the peer aborted"
                         : ev == NET_EV_ERROR  ? c->err.msg
                                               : "unexpected PDU");
    }
    if (rsp.dataset_type != DIMSE_NO_DATASET) {
        covct_buf junk = {0};
        bool ovf;
        ev = net_recv_data(c, pc_id, &junk, 0, &ovf, &abort_reason);
        covct_buf_free(&junk);
        if (ev != NET_EV_PDV)
            return COVCT_ERR(err, COVCT_ERR_IO, "%s: broken response",
                             c->peer_desc);
    }
    if (rsp.field != (cmd->field | DIMSE_RSP) || !rsp.has_status ||
        (rsp.has_responding_to && rsp.responding_to != cmd->message_id))
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "%s answered message %u with command 0x%04X "
                         "(expected 0x%04X with a status)",
                         c->peer_desc, cmd->message_id, rsp.field,
                         cmd->field | DIMSE_RSP);
    *status = rsp.status;
    return COVCT_OK;
}

covct_rc covct_net_echo(covct_net_assoc *a, uint16_t *status,
                        covct_error *err)
{
    const net_pc *pc = find_pc(a, NET_VERIFICATION, NULL);
    if (!pc)
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "%s did not accept Verification (C-ECHO)",
                         a->c.peer_desc);
    net_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.field = DIMSE_C_ECHO_RQ;
    cmd.dataset_type = DIMSE_NO_DATASET;
    snprintf(cmd.sop_class, sizeof cmd.sop_class, "%s", NET_VERIFICATION);
    return request(a, pc, &cmd, NULL, 0, status, err);
}

covct_rc covct_net_send_file(covct_net_assoc *a, const uint8_t *file,
                             size_t len, uint16_t *status, covct_error *err)
{
    return covct_net_send_file_moved(a, file, len, NULL, 0, status, err);
}

covct_rc covct_net_send_file_moved(covct_net_assoc *a, const uint8_t *file,
                                   size_t len, const char *move_originator,
                                   uint16_t move_originator_id,
                                   uint16_t *status, covct_error *err)
{
    char sop_class[NET_UID_MAX + 1], sop_inst[NET_UID_MAX + 1],
        ts[NET_UID_MAX + 1];
    size_t off;
    covct_rc rc = covct_dcm_meta_peek(file, len, sop_class, sop_inst, ts, &off, err);
    if (rc)
        return rc;
    const net_pc *pc = find_pc(a, sop_class, ts);
    covct_buf tc = {0};
    if (!pc) {
        /* The peer refused the file's own syntax: send it decompressed,
         * explicit (else implicit) VR little endian, if it took that. */
        bool implicit = false;
        pc = find_pc(a, sop_class, COVCT_TS_EXPLICIT_LE);
        if (!pc) {
            pc = find_pc(a, sop_class, COVCT_TS_IMPLICIT_LE);
            implicit = pc != NULL;
        }
        if (!pc)
            return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                             "%s did not accept SOP class %s in transfer "
                             "syntax %s nor uncompressed",
                             a->c.peer_desc, sop_class, ts);
        if ((rc = covct_dcm_transcode_native(file, len, implicit, &tc,
                                             err))) {
            covct_buf_free(&tc);
            covct_error_prefix(err, "converting %s for %s: ", sop_inst,
                               a->c.peer_desc);
            return rc;
        }
    }
    net_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.field = DIMSE_C_STORE_RQ;
    cmd.dataset_type = 0x0000; /* a data set follows */
    snprintf(cmd.sop_class, sizeof cmd.sop_class, "%s", sop_class);
    snprintf(cmd.sop_instance, sizeof cmd.sop_instance, "%s", sop_inst);
    if (move_originator && move_originator[0]) {
        snprintf(cmd.move_originator, sizeof cmd.move_originator, "%s",
                 move_originator);
        cmd.move_originator_id = move_originator_id;
    }
    if (tc.data) {
        rc = request(a, pc, &cmd, tc.data, tc.len, status, err);
        covct_buf_free(&tc);
        return rc;
    }
    return request(a, pc, &cmd, file + off, len - off, status, err);
}

covct_rc covct_net_release(covct_net_assoc *a, covct_error *err)
{
    net_conn *c = &a->c;
    uint8_t pdu[10];
    net_release_encode(pdu, PDU_RELEASE_RQ);
    struct iovec v = {.iov_base = pdu, .iov_len = 10};
    covct_rc rc = COVCT_OK;
    if (net_write_all(c, &v, 1)) {
        rc = COVCT_ERR(err, COVCT_ERR_IO, "sending A-RELEASE-RQ to %s: %s",
                       c->peer_desc, strerror(errno));
    } else {
        int abort_reason = 0;
        int t;
        /* P-DATA may still arrive before the RP (PS3.8 Sta7). */
        do {
            t = net_read_pdu(c, c->timeout_ms, &abort_reason);
        } while (t == PDU_P_DATA);
        if (t != PDU_RELEASE_RP)
            rc = COVCT_ERR(err, COVCT_ERR_IO,
                           "%s did not confirm the release", c->peer_desc);
    }
    net_conn_free(c);
    covct_free(a);
    return rc;
}

void covct_net_abort(covct_net_assoc *a)
{
    if (!a)
        return;
    net_send_abort(&a->c, ABORT_SOURCE_USER, ABORT_REASON_NONE);
    net_conn_free(&a->c);
    covct_free(a);
}

size_t covct_net_ts_choices(const char *ts, const char *out[3])
{
    size_t n = 0;
    out[n++] = ts;
    if (strcmp(ts, COVCT_TS_EXPLICIT_LE) != 0)
        out[n++] = COVCT_TS_EXPLICIT_LE;
    if (strcmp(ts, COVCT_TS_IMPLICIT_LE) != 0)
        out[n++] = COVCT_TS_IMPLICIT_LE;
    return n;
}
