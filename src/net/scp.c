/*
 * The acceptor side of one association: A-ASSOCIATE negotiation (called
 * AE, calling AE allow-list, presentation contexts, maximum PDU length),
 * then C-ECHO and C-STORE until A-RELEASE or A-ABORT (PS3.8 9.2 state
 * machine, acceptor states Sta2, Sta3, Sta6, Sta13).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "covct/core.h"
#include "covct/dicom.h"
#include "covct/limits.h"
#include "covct/net.h"
#include "net/net_assoc.h"
#include "net/net_int.h"
#include "net/net_qr.h"
#include "net/net_server.h"

static void event(const covct_net_server_config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void event(const covct_net_server_config *cfg, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (cfg->on_event)
        cfg->on_event(cfg->event_user, line);
    else
        covct_log(COVCT_LOG_INFO, "%s", line);
}

/* Whether `calling` from `host` is on the allow-list. */
static bool allowed(const covct_net_server_config *cfg, const char *calling,
                    const char *host)
{
    if (!cfg->allowed || cfg->n_allowed == 0)
        return true;
    for (size_t i = 0; i < cfg->n_allowed; i++) {
        const char *e = cfg->allowed[i];
        const char *at = strchr(e, '@');
        size_t n = at ? (size_t)(at - e) : strlen(e);
        if (n != strlen(calling) || strncmp(e, calling, n) != 0)
            continue;
        if (!at || !strcmp(at + 1, host) ||
            net_server_host_matches(at + 1, host))
            return true;
    }
    return false;
}

/* The transfer syntax to accept among those proposed: the first one covct
 * can decode, implicit VR little endian only when nothing else is
 * proposed (it loses the VRs of private elements). */
static const char *choose_ts(const net_pc *pc)
{
    const char *implicit = NULL;
    for (unsigned t = 0; t < pc->n_ts; t++) {
        if (!covct_dcm_ts_decodable(pc->ts[t]))
            continue;
        if (!strcmp(pc->ts[t], COVCT_TS_IMPLICIT_LE)) {
            implicit = pc->ts[t];
            continue;
        }
        return pc->ts[t];
    }
    return implicit;
}

static uint32_t max_pdu(const covct_net_server_config *cfg)
{
    return cfg->max_pdu ? cfg->max_pdu : 256u * 1024u;
}

/* Q/R identifiers: explicit VR little endian, else implicit. */
static const char *choose_qr_ts(const net_pc *pc)
{
    const char *implicit = NULL;
    for (unsigned t = 0; t < pc->n_ts; t++) {
        if (!strcmp(pc->ts[t], COVCT_TS_EXPLICIT_LE))
            return pc->ts[t];
        if (!strcmp(pc->ts[t], COVCT_TS_IMPLICIT_LE))
            implicit = pc->ts[t];
    }
    return implicit;
}

/* Build the A-ASSOCIATE-AC for rq; returns the number accepted. */
static unsigned negotiate(const covct_net_server_config *cfg,
                          const net_assoc_pdu *rq, net_assoc_pdu *ac)
{
    memset(ac, 0, sizeof *ac);
    memcpy(ac->called, rq->called, sizeof ac->called);
    memcpy(ac->calling, rq->calling, sizeof ac->calling);
    ac->max_pdu = max_pdu(cfg);
    unsigned accepted = 0;
    ac->n_pc = rq->n_pc;
    for (unsigned i = 0; i < rq->n_pc; i++) {
        const net_pc *p = &rq->pc[i];
        net_pc *q = &ac->pc[i];
        q->id = p->id;
        memcpy(q->abstract, p->abstract, sizeof q->abstract);
        int qr = net_qr_kind(p->abstract, NULL);
        bool is_qr = (qr == 0 && cfg->on_find) ||
                     (qr > 0 && cfg->on_select);
        /* Storage contexts are also what C-GET sends on (requestor in the
         * SCP role), so they are accepted even without on_store then. */
        bool known = !strcmp(p->abstract, NET_VERIFICATION) || is_qr ||
                     ((cfg->on_store || cfg->on_select) &&
                      net_is_storage(p->abstract));
        const char *ts = !known ? NULL : is_qr ? choose_qr_ts(p) : choose_ts(p);
        if (!known) {
            q->result = PC_ABSTRACT_NOT_SUPPORTED;
        } else if (!ts) {
            q->result = PC_TS_NOT_SUPPORTED;
        } else {
            q->result = PC_ACCEPTANCE;
            q->n_ts = 1;
            snprintf(q->ts[0], sizeof q->ts[0], "%s", ts);
            accepted++;
        }
        if (q->result != PC_ACCEPTANCE) {
            /* The AC still names a transfer syntax sub-item (ignored by
             * the requestor): repeat the first proposed. */
            q->n_ts = 1;
            snprintf(q->ts[0], sizeof q->ts[0], "%s", p->ts[0]);
        }
    }
    /* SCP/SCU role selection (PS3.7 D.3.3.4): accept the roles proposed
     * for the storage classes (C-GET needs the requestor as SCP). */
    for (unsigned r = 0; r < rq->n_roles && ac->n_roles < NET_MAX_CONTEXTS;
         r++)
        if (cfg->on_select && net_is_storage(rq->roles[r].sop_class))
            ac->roles[ac->n_roles++] = rq->roles[r];
    return accepted;
}

typedef struct scp_stats {
    uint64_t stored, failed, echoes;
    uint64_t bytes;
    uint64_t finds, matches, retrieves, retrieved;
} scp_stats;

static void respond(net_conn *c, uint8_t pc_id, const net_cmd *rq,
                    uint16_t status, const char *comment)
{
    net_respond(c, pc_id, rq, status, comment, NULL, 0, NULL);
}

/* A C-STORE-RQ whose command has been read: receive the data set into a
 * Part 10 buffer and hand it to the store callback. */
static int handle_store(const covct_net_server_config *cfg, net_conn *c,
                        const covct_net_assoc_info *info, uint8_t pc_id,
                        const net_cmd *cmd, scp_stats *st, int *abort_reason)
{
    const net_pc *pc = net_conn_pc(c, pc_id);
    uint16_t status = COVCT_DIMSE_SUCCESS;
    char comment[65] = "";
    covct_buf file = {0};
    covct_error e = {0};
    if (cmd->dataset_type == DIMSE_NO_DATASET) {
        respond(c, pc_id, cmd, COVCT_DIMSE_CANNOT_UNDERSTAND,
                "C-STORE-RQ without a data set");
        st->failed++;
        return NET_EV_PDV;
    }
    bool bad = false;
    if (!cmd->sop_class[0] || !cmd->sop_instance[0]) {
        status = COVCT_DIMSE_CANNOT_UNDERSTAND;
        snprintf(comment, sizeof comment,
                 "C-STORE-RQ without Affected SOP Class/Instance UID");
        bad = true;
    } else if (strcmp(cmd->sop_class, pc->abstract) != 0) {
        status = COVCT_DIMSE_SOP_CLASS_NOT_SUPPORTED;
        snprintf(comment, sizeof comment,
                 "SOP class differs from presentation context %u", pc_id);
        bad = true;
    } else if (covct_dcm_write_meta(&file, cmd->sop_class,
                                    cmd->sop_instance, pc->ts[0],
                                    info->calling_ae, &e)) {
        status = COVCT_DIMSE_OUT_OF_RESOURCES;
        snprintf(comment, sizeof comment, "out of memory");
        bad = true;
    }
    size_t max = cfg->max_dataset ? cfg->max_dataset : COVCT_LIMIT_FILE_MAX;
    bool overflow = false;
    int ev = net_recv_data(c, pc_id, &file, bad ? 0 : max + file.len,
                           &overflow, abort_reason);
    if (ev != NET_EV_PDV) {
        covct_buf_free(&file);
        return ev;
    }
    if (!bad && overflow) {
        status = COVCT_DIMSE_OUT_OF_RESOURCES;
        snprintf(comment, sizeof comment,
                 "data set larger than the limit of %zu bytes", max);
        bad = true;
    }
    if (!bad) {
        covct_net_store_request rq = {
            .assoc = info,
            .sop_class_uid = cmd->sop_class,
            .sop_instance_uid = cmd->sop_instance,
            .transfer_syntax_uid = pc->ts[0],
            .message_id = cmd->message_id,
            .move_originator_ae = cmd->move_originator,
            .file = file.data,
            .len = file.len,
        };
        st->bytes += file.len;
        file.data = NULL; /* the callback owns it now */
        file.len = file.cap = 0;
        status = cfg->on_store(cfg->store_user, &rq, comment, sizeof comment);
    }
    covct_buf_free(&file);
    if (status == COVCT_DIMSE_SUCCESS ||
        !strcmp(covct_dimse_status_kind(status), "Warning"))
        st->stored++;
    else
        st->failed++;
    respond(c, pc_id, cmd, status, comment);
    return NET_EV_PDV;
}

static const char *ev_name(int ev)
{
    switch (ev) {
    case NET_EV_TIMEOUT:
        return "timed out waiting for the peer";
    case NET_EV_CLOSED:
        return "the peer closed the connection without A-RELEASE";
    case NET_EV_STOP:
        return "the server is stopping";
    default:
        return "unexpected PDU";
    }
}

void net_serve_fd(const covct_net_server_config *cfg, int fd,
                  const covct_net_assoc_info *info_in, bool over_cap,
                  atomic_bool *stop)
{
    covct_net_assoc_info info = *info_in;
    net_conn c;
    memset(&c, 0, sizeof c);
    c.fd = fd;
    c.stop = stop;
    c.my_max = max_pdu(cfg);
    unsigned artim_ms = (cfg->artim_s ? cfg->artim_s : 30) * 1000u;
    c.timeout_ms = (cfg->idle_s ? cfg->idle_s : 300) * 1000u;
    snprintf(c.peer_desc, sizeof c.peer_desc, "%s:%u", info.peer_host,
             info.peer_port);
    net_set_nodelay(fd);
    double t0 = covct_now();
    int abort_reason = ABORT_REASON_NONE;
    net_assoc_pdu *rq = covct_calloc(2, sizeof *rq);
    scp_stats st = {0};
    if (!rq) {
        net_send_abort(&c, ABORT_SOURCE_PROVIDER, ABORT_REASON_NONE);
        goto out;
    }
    net_assoc_pdu *ac = rq + 1;

    if (cfg->tls) {
        if (!net_tls_server_ctx() ||
            !net_tls_handshake(&c, net_tls_server_ctx(), true, artim_ms)) {
            event(cfg, "association %llu from %s: %s",
                  (unsigned long long)info.id, c.peer_desc,
                  net_tls_server_ctx() ? c.err.msg
                                       : "TLS is not set up (no certificate)");
            goto out;
        }
    }

    /* Sta2: waiting for the A-ASSOCIATE-RQ under the ARTIM timer. */
    int t = net_read_pdu(&c, artim_ms, &abort_reason);
    if (t != PDU_ASSOC_RQ) {
        if (t == NET_EV_ERROR || (t > 0 && t != PDU_ABORT)) {
            event(cfg, "association %llu from %s: aborted: %s",
                  (unsigned long long)info.id, c.peer_desc,
                  t == NET_EV_ERROR ? c.err.msg
                                    : "first PDU is not A-ASSOCIATE-RQ");
            net_send_abort(&c, ABORT_SOURCE_PROVIDER,
                           t == NET_EV_ERROR ? abort_reason
                                             : ABORT_REASON_UNEXPECTED_PDU);
        } else if (t == NET_EV_TIMEOUT) {
            event(cfg, "association %llu from %s: no A-ASSOCIATE-RQ within "
                       "%u s (ARTIM), connection closed",
                  (unsigned long long)info.id, c.peer_desc, artim_ms / 1000);
        }
        goto out;
    }
    if (net_assoc_decode(c.pdu, c.pdu_len, false, rq, &abort_reason,
                         &c.err)) {
        event(cfg, "association %llu from %s: A-ASSOCIATE-RQ refused "
                   "(A-ABORT): %s",
              (unsigned long long)info.id, c.peer_desc, c.err.msg);
        net_send_abort(&c, ABORT_SOURCE_PROVIDER, abort_reason);
        goto out;
    }
    snprintf(info.calling_ae, sizeof info.calling_ae, "%s", rq->calling);
    snprintf(info.called_ae, sizeof info.called_ae, "%s", rq->called);
    snprintf(c.peer_desc, sizeof c.peer_desc, "%s@%s:%u", rq->calling,
             info.peer_host, info.peer_port);

    int rj_result = 0, rj_source = 0, rj_reason = 0;
    const char *why = NULL;
    if (!(rq->version & 1)) {
        rj_result = 1, rj_source = 2, rj_reason = 2;
        why = "protocol version not supported";
    } else if (strcmp(rq->app_context, NET_APP_CONTEXT) != 0) {
        rj_result = 1, rj_source = 1, rj_reason = 2;
        why = "application context name not supported";
    } else if (strcmp(rq->called, cfg->ae_title) != 0) {
        rj_result = 1, rj_source = 1, rj_reason = 7;
        why = "called AE title not recognized";
    } else if (!allowed(cfg, rq->calling, info.peer_host)) {
        rj_result = 1, rj_source = 1, rj_reason = 3;
        why = "calling AE title not allowed from this host";
    } else if (over_cap) {
        rj_result = 2, rj_source = 3, rj_reason = 2;
        why = "too many associations open (local limit exceeded)";
    }
    if (why) {
        uint8_t pdu[10];
        net_rj_encode(pdu, rj_result, rj_source, rj_reason);
        struct iovec v = {.iov_base = pdu, .iov_len = 10};
        (void)net_write_all(&c, &v, 1);
        event(cfg, "association %llu from %s to %s: rejected: %s",
              (unsigned long long)info.id, c.peer_desc, rq->called, why);
        goto out;
    }
    unsigned accepted = negotiate(cfg, rq, ac);
    c.peer_max = rq->max_pdu;
    c.n_pc = ac->n_pc;
    c.pc = covct_malloc(sizeof *c.pc * (ac->n_pc ? ac->n_pc : 1));
    covct_buf b = {0};
    covct_error e = {0};
    if (!c.pc || net_assoc_encode(ac, true, &b, &e)) {
        covct_buf_free(&b);
        net_send_abort(&c, ABORT_SOURCE_PROVIDER, ABORT_REASON_NONE);
        goto out;
    }
    memcpy(c.pc, ac->pc, sizeof *c.pc * ac->n_pc);
    struct iovec v = {.iov_base = b.data, .iov_len = b.len};
    int wr = net_write_all(&c, &v, 1);
    covct_buf_free(&b);
    if (wr)
        goto out;
    event(cfg, "association %llu from %s to %s: accepted %u of %u "
               "presentation contexts (peer %s %s, max PDU %u)",
          (unsigned long long)info.id, c.peer_desc, rq->called, accepted,
          rq->n_pc, rq->impl_class[0] ? rq->impl_class : "?",
          rq->impl_version[0] ? rq->impl_version : "", rq->max_pdu);

    /* Sta6: data transfer. */
    const char *end = NULL;
    uint16_t next_id = 1; /* our requests (C-GET sub-operations) */
    char endbuf[COVCT_ERROR_MSG_MAX + 64];
    for (;;) {
        if (stop && atomic_load(stop)) {
            net_send_abort(&c, ABORT_SOURCE_PROVIDER, ABORT_REASON_NONE);
            end = "aborted (the server is stopping)";
            break;
        }
        net_cmd cmd;
        uint8_t pc_id = 0;
        int ev = net_recv_command(&c, &cmd, &pc_id, &abort_reason);
        if (ev == NET_EV_PDV) {
            if (cmd.field == DIMSE_C_ECHO_RQ) {
                if (cmd.dataset_type != DIMSE_NO_DATASET) {
                    bool ovf;
                    covct_buf junk = {0};
                    ev = net_recv_data(&c, pc_id, &junk, 0, &ovf,
                                       &abort_reason);
                    covct_buf_free(&junk);
                    if (ev != NET_EV_PDV)
                        goto ended;
                }
                respond(&c, pc_id, &cmd, COVCT_DIMSE_SUCCESS, NULL);
                st.echoes++;
                continue;
            }
            if (cmd.field == DIMSE_C_STORE_RQ && cfg->on_store &&
                net_is_storage(net_conn_pc(&c, pc_id)->abstract)) {
                ev = handle_store(cfg, &c, &info, pc_id, &cmd, &st,
                                  &abort_reason);
                if (ev == NET_EV_PDV)
                    continue;
                goto ended;
            }
            int qr = net_qr_kind(net_conn_pc(&c, pc_id)->abstract, NULL);
            if (qr == 0 && cmd.field == DIMSE_C_FIND_RQ) {
                st.finds++;
                ev = net_handle_find(cfg, &c, &info, pc_id, &cmd, &st.matches,
                                     &abort_reason);
                if (ev == NET_EV_PDV)
                    continue;
                goto ended;
            }
            if ((qr == 1 && cmd.field == DIMSE_C_MOVE_RQ) ||
                (qr == 2 && cmd.field == DIMSE_C_GET_RQ)) {
                st.retrieves++;
                ev = net_handle_retrieve(cfg, &c, &info, pc_id, &cmd, qr == 2,
                                         &next_id, &st.retrieved,
                                         &abort_reason);
                if (ev == NET_EV_PDV)
                    continue;
                goto ended;
            }
            if (cmd.field == DIMSE_C_CANCEL_RQ)
                continue; /* nothing in progress to cancel */
            /* Not offered on this context (N-* services...). */
            if (cmd.dataset_type != DIMSE_NO_DATASET) {
                bool ovf;
                covct_buf junk = {0};
                ev = net_recv_data(&c, pc_id, &junk, 0, &ovf, &abort_reason);
                covct_buf_free(&junk);
                if (ev != NET_EV_PDV)
                    goto ended;
            }
            if (cmd.field & DIMSE_RSP) {
                net_send_abort(&c, ABORT_SOURCE_PROVIDER,
                               ABORT_REASON_UNEXPECTED_PARAM);
                end = "aborted (the peer sent a response, not a request)";
                break;
            }
            respond(&c, pc_id, &cmd, COVCT_DIMSE_UNRECOGNIZED_OPERATION,
                    "operation not supported");
            continue;
        }
    ended:
        if (ev == PDU_RELEASE_RQ) {
            uint8_t pdu[10];
            net_release_encode(pdu, PDU_RELEASE_RP);
            struct iovec rv = {.iov_base = pdu, .iov_len = 10};
            (void)net_write_all(&c, &rv, 1);
            end = "released";
        } else if (ev == PDU_ABORT) {
            end = "aborted by the peer";
        } else if (ev == NET_EV_ERROR) {
            net_send_abort(&c, ABORT_SOURCE_PROVIDER, abort_reason);
            snprintf(endbuf, sizeof endbuf, "aborted (%s)", c.err.msg);
            end = endbuf;
        } else {
            if (ev > 0 || ev == NET_EV_TIMEOUT || ev == NET_EV_STOP)
                net_send_abort(&c, ABORT_SOURCE_PROVIDER,
                               ev > 0 ? ABORT_REASON_UNEXPECTED_PDU
                                      : ABORT_REASON_NONE);
            snprintf(endbuf, sizeof endbuf, "aborted (%s)", ev_name(ev));
            end = endbuf;
        }
        break;
    }
    char qrs[160] = "";
    if (st.finds || st.retrieves)
        snprintf(qrs, sizeof qrs,
                 ", %llu queries (%llu matches), %llu retrieves (%llu "
                 "instances sent)",
                 (unsigned long long)st.finds, (unsigned long long)st.matches,
                 (unsigned long long)st.retrieves,
                 (unsigned long long)st.retrieved);
    event(cfg, "association %llu from %s %s after %.1f s: %llu stored "
               "(%.1f MB), %llu failed, %llu echoes%s",
          (unsigned long long)info.id, c.peer_desc, end, covct_now() - t0,
          (unsigned long long)st.stored, st.bytes / 1e6,
          (unsigned long long)st.failed, (unsigned long long)st.echoes, qrs);
out:
    covct_free(rq);
    net_conn_free(&c);
}

void covct_net_serve_fd(const covct_net_server_config *cfg, int fd,
                        const covct_net_assoc_info *info)
{
    net_serve_fd(cfg, fd, info, false, NULL);
}
