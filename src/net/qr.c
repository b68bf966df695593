/*
 * Query/Retrieve SCP (PS3.4 Annex C, PS3.7 9.1.2-9.1.4): C-FIND with
 * Pending responses and C-CANCEL; C-MOVE to a configured peer (a new
 * association, C-STORE sub-operations naming the move originator); C-GET
 * (C-STORE sub-operations on the same association, on the storage
 * contexts the requestor proposed with the SCP role).
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "covct/core.h"
#include "covct/dicom.h"
#include "covct/net.h"
#include "net/net_assoc.h"
#include "net/net_int.h"
#include "net/net_qr.h"

/* Read the identifier that follows a Q/R request and parse it. */
static int read_identifier(net_conn *c, uint8_t pc_id, const net_cmd *cmd,
                           covct_dcm_file **out, char *comment, size_t csize,
                           int *abort_reason)
{
    *out = NULL;
    const net_pc *pc = net_conn_pc(c, pc_id);
    covct_buf b = {0};
    covct_error e = {0};
    bool ovf = false;
    bool meta_ok = covct_dcm_write_meta(&b, cmd->sop_class, "1.2", pc->ts[0],
                                        NULL, &e) == COVCT_OK;
    if (cmd->dataset_type == DIMSE_NO_DATASET) {
        covct_buf_free(&b);
        snprintf(comment, csize, "request without an identifier");
        return NET_EV_PDV;
    }
    int ev = net_recv_data(c, pc_id, &b, meta_ok ? (1u << 20) : 0, &ovf,
                           abort_reason);
    if (ev != NET_EV_PDV || !meta_ok || ovf) {
        covct_buf_free(&b);
        if (ev == NET_EV_PDV)
            snprintf(comment, csize, "identifier too large");
        return ev;
    }
    uint8_t *data = b.data;
    size_t len = b.len;
    b.data = NULL;
    if (covct_dcm_file_parse(data, len, NULL, out, &e)) {
        snprintf(comment, csize, "identifier: %.50s", e.msg);
        *out = NULL;
    }
    return NET_EV_PDV;
}

/* Read a Q/R request's identifier into *f and describe the request in *q.
 * An identifier that cannot be read is answered (Unable to Process) and
 * *f is NULL.  Returns NET_EV_PDV, or the event that ended the
 * association. */
static int read_query(net_conn *c, const covct_net_assoc_info *info,
                      uint8_t pc_id, const net_cmd *cmd, covct_dcm_file **f,
                      covct_net_query *q, int *abort_reason)
{
    char comment[65] = "";
    int ev = read_identifier(c, pc_id, cmd, f, comment, sizeof comment,
                             abort_reason);
    if (ev != NET_EV_PDV)
        return ev;
    if (!*f) {
        net_respond(c, pc_id, cmd, COVCT_DIMSE_UNABLE_TO_PROCESS, comment,
                    NULL, 0, NULL);
        return NET_EV_PDV;
    }
    const net_pc *pc = net_conn_pc(c, pc_id);
    *q = (covct_net_query){
        .assoc = info,
        .sop_class_uid = pc->abstract,
        .identifier = covct_dcm_file_dataset_const(*f),
    };
    net_qr_kind(pc->abstract, &q->patient_root);
    return NET_EV_PDV;
}

/* Whether a C-CANCEL-RQ for message `id` is waiting: 1 yes, 0 no, -1 the
 * association broke (or another request arrived: not allowed here, the
 * asynchronous window is 1). */
static int check_cancel(net_conn *c, uint16_t id)
{
    if (!net_conn_has_input(c))
        return 0;
    net_cmd cc;
    uint8_t pc_id;
    int abort_reason = 0;
    int ev = net_recv_command(c, &cc, &pc_id, &abort_reason);
    if (ev != NET_EV_PDV)
        return -1;
    if (cc.field == DIMSE_C_CANCEL_RQ && cc.responding_to == id)
        return 1;
    return -1;
}

typedef struct find_ctx {
    net_conn *c;
    uint8_t pc_id;
    const net_cmd *cmd;
    bool implicit;
    bool stop, cancelled;
    uint64_t matches;
} find_ctx;

static bool emit(void *ctx, const covct_dcm_dataset *match)
{
    find_ctx *f = ctx;
    if (f->stop)
        return false;
    covct_buf b = {0};
    covct_error e = {0};
    if (covct_dcm_encode_dataset(match, f->implicit, &b, &e)) {
        covct_buf_free(&b);
        f->stop = true;
        return false;
    }
    net_respond(f->c, f->pc_id, f->cmd, COVCT_DIMSE_PENDING, NULL, b.data,
                b.len, NULL);
    covct_buf_free(&b);
    f->matches++;
    int cc = check_cancel(f->c, f->cmd->message_id);
    if (cc) {
        f->stop = true;
        f->cancelled = cc > 0;
        return false;
    }
    return true;
}

int net_handle_find(const covct_net_server_config *cfg, net_conn *c,
                    const covct_net_assoc_info *info, uint8_t pc_id,
                    const net_cmd *cmd, uint64_t *matches, int *abort_reason)
{
    char comment[65] = "";
    covct_dcm_file *f = NULL;
    covct_net_query q;
    int ev = read_query(c, info, pc_id, cmd, &f, &q, abort_reason);
    if (ev != NET_EV_PDV || !f)
        return ev;
    const net_pc *pc = net_conn_pc(c, pc_id);
    find_ctx fc = {.c = c,
                   .pc_id = pc_id,
                   .cmd = cmd,
                   .implicit = !strcmp(pc->ts[0], COVCT_TS_IMPLICIT_LE)};
    uint16_t st = cfg->on_find(cfg->query_user, &q, emit, &fc, comment,
                               sizeof comment);
    covct_dcm_file_free(f);
    *matches += fc.matches;
    if (fc.stop && !fc.cancelled)
        return NET_EV_CLOSED;
    net_respond(c, pc_id, cmd, fc.cancelled ? COVCT_DIMSE_CANCEL : st,
                comment, NULL, 0, NULL);
    return NET_EV_PDV;
}

/* ---- retrieve -------------------------------------------------------------- */
typedef struct item {
    char *path;
    char sop_class[65], sop_uid[65], ts[65];
} item;

typedef struct item_list {
    item *v;
    size_t n, cap;
} item_list;

static covct_rc add_item(void *ctx, const char *path, const char *sop_class,
                         const char *sop_uid, covct_error *err)
{
    item_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        item *v = covct_realloc(l->v, cap * sizeof *v);
        if (!v)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        l->v = v;
        l->cap = cap;
    }
    item *it = &l->v[l->n];
    memset(it, 0, sizeof *it);
    it->path = covct_strdup(path);
    if (!it->path)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    snprintf(it->sop_class, sizeof it->sop_class, "%s", sop_class);
    snprintf(it->sop_uid, sizeof it->sop_uid, "%s", sop_uid);
    l->n++;
    return COVCT_OK;
}

static void list_free(item_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        covct_free(l->v[i].path);
    covct_free(l->v);
}

/* The transfer syntax of each file, from its meta information. */
static void read_ts(item *it)
{
    uint8_t head[8192];
    int fd = open(it->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, head, sizeof head);
    close(fd);
    char a[65], b[65];
    size_t off;
    if (n > 0 && !covct_dcm_meta_peek(head, (size_t)n, a, b, it->ts, &off,
                                      NULL))
        return;
    it->ts[0] = '\0';
}

/* C-STORE sub-operation on this association (C-GET). */
static uint16_t store_here(net_conn *c, const item *it, uint16_t msg_id,
                           const uint8_t *file, size_t len, bool *cancelled,
                           uint16_t get_id)
{
    /* A context for the file's own syntax, else an uncompressed one (the
     * file is then converted). */
    const net_pc *pc = NULL;
    static const char *const want[3] = {NULL, COVCT_TS_EXPLICIT_LE,
                                        COVCT_TS_IMPLICIT_LE};
    int which = -1;
    for (int w = 0; w < 3 && !pc; w++)
        for (unsigned i = 0; i < c->n_pc && !pc; i++)
            if (c->pc[i].result == PC_ACCEPTANCE &&
                !strcmp(c->pc[i].abstract, it->sop_class) &&
                !strcmp(c->pc[i].ts[0], w ? want[w] : it->ts)) {
                pc = &c->pc[i];
                which = w;
            }
    if (!pc)
        return 0xA702; /* no context to send it on */
    char a[65], b[65], t[65];
    size_t off;
    if (covct_dcm_meta_peek(file, len, a, b, t, &off, NULL))
        return 0xC000;
    covct_buf tc = {0};
    if (which > 0) {
        covct_error te = {0};
        if (covct_dcm_transcode_native(file, len, which == 2, &tc, &te)) {
            covct_buf_free(&tc);
            return 0xA702;
        }
        file = tc.data;
        len = tc.len;
        off = 0;
    }
    net_cmd rq;
    memset(&rq, 0, sizeof rq);
    rq.field = DIMSE_C_STORE_RQ;
    rq.has_message_id = true;
    rq.message_id = msg_id;
    rq.dataset_type = 0x0000;
    snprintf(rq.sop_class, sizeof rq.sop_class, "%s", it->sop_class);
    snprintf(rq.sop_instance, sizeof rq.sop_instance, "%s", it->sop_uid);
    covct_error e = {0};
    int sent = net_send_message(c, pc->id, &rq, file + off, len - off, &e);
    covct_buf_free(&tc);
    if (sent)
        return 0xFFFF;
    for (;;) {
        net_cmd rsp;
        uint8_t id;
        int ar = 0;
        if (net_recv_command(c, &rsp, &id, &ar) != NET_EV_PDV)
            return 0xFFFF;
        if (rsp.field == DIMSE_C_CANCEL_RQ && rsp.responding_to == get_id) {
            *cancelled = true;
            continue;
        }
        if (rsp.field != (DIMSE_C_STORE_RQ | DIMSE_RSP) ||
            rsp.responding_to != msg_id || !rsp.has_status)
            return 0xFFFF;
        return rsp.status;
    }
}

int net_handle_retrieve(const covct_net_server_config *cfg, net_conn *c,
                        const covct_net_assoc_info *info, uint8_t pc_id,
                        const net_cmd *cmd, bool is_get, uint16_t *next_id,
                        uint64_t *sent, int *abort_reason)
{
    char comment[65] = "";
    covct_dcm_file *f = NULL;
    covct_net_query q;
    int ev = read_query(c, info, pc_id, cmd, &f, &q, abort_reason);
    if (ev != NET_EV_PDV || !f)
        return ev;
    const covct_net_peer *dest = NULL;
    if (!is_get) {
        for (size_t i = 0; i < cfg->n_peers && !dest; i++)
            if (!strcmp(cfg->peers[i].ae, cmd->move_destination))
                dest = &cfg->peers[i];
        if (!dest) {
            covct_dcm_file_free(f);
            snprintf(comment, sizeof comment,
                     "move destination '%s' is not a configured peer",
                     cmd->move_destination);
            net_respond(c, pc_id, cmd, COVCT_DIMSE_MOVE_DEST_UNKNOWN, comment,
                        NULL, 0, NULL);
            return NET_EV_PDV;
        }
    }
    item_list l = {0};
    uint16_t st = cfg->on_select(cfg->query_user, &q, add_item, &l, comment,
                                 sizeof comment);
    covct_dcm_file_free(f);
    if (st != COVCT_DIMSE_SUCCESS) {
        list_free(&l);
        net_respond(c, pc_id, cmd, st, comment, NULL, 0, NULL);
        return NET_EV_PDV;
    }
    for (size_t i = 0; i < l.n; i++)
        read_ts(&l.v[i]);
    covct_net_assoc *out = NULL;
    if (!is_get && l.n > 0) {
        /* One context per (SOP class, transfer syntax) of the files. */
        covct_net_proposal props[128];
        const char *ts_of[128][3];
        size_t np = 0;
        for (size_t i = 0; i < l.n && np < 128; i++) {
            size_t k = 0;
            while (k < np && (strcmp(props[k].abstract_syntax,
                                     l.v[i].sop_class) ||
                              strcmp(ts_of[k][0], l.v[i].ts)))
                k++;
            if (k == np && l.v[i].ts[0]) {
                props[np].abstract_syntax = l.v[i].sop_class;
                props[np].transfer_syntaxes = ts_of[np];
                props[np].n_transfer_syntaxes =
                    covct_net_ts_choices(l.v[i].ts, ts_of[np]);
                np++;
            }
        }
        covct_error e = {0};
        if (np == 0 || covct_net_connect(dest, cfg->ae_title, props, np, 30,
                                         &out, &e)) {
            snprintf(comment, sizeof comment, "%.64s",
                     np ? e.msg : "no readable instance");
            covct_log(COVCT_LOG_WARN, "association %llu: C-MOVE to %s: %s",
                      (unsigned long long)info->id, cmd->move_destination,
                      np ? e.msg : "no readable instance");
            list_free(&l);
            net_respond(c, pc_id, cmd, COVCT_DIMSE_SUBOPS_OUT_OF_RESOURCES,
                        comment, NULL, 0, NULL);
            return NET_EV_PDV;
        }
    }
    net_cmd counts;
    memset(&counts, 0, sizeof counts);
    bool cancelled = false, broken = false;
    double last = 0;
    size_t i = 0;
    for (; i < l.n && !cancelled && !broken; i++) {
        uint8_t *data = NULL;
        size_t len = 0;
        uint16_t s = 0xC000;
        covct_error e = {0};
        if (covct_file_read(l.v[i].path, &data, &len, &e) == COVCT_OK) {
            if (is_get) {
                s = store_here(c, &l.v[i], (*next_id)++, data, len,
                               &cancelled, cmd->message_id);
                if (s == 0xFFFF)
                    broken = true;
            } else if (covct_net_send_file_moved(out, data, len,
                                                 info->calling_ae,
                                                 cmd->message_id, &s, &e)) {
                s = 0xA702;
                if (e.rc == COVCT_ERR_IO)
                    broken = true;
            }
        }
        covct_free(data);
        const char *kind = covct_dimse_status_kind(s);
        if (!strcmp(kind, "Success"))
            counts.completed++;
        else if (!strcmp(kind, "Warning"))
            counts.warning++;
        else
            counts.failed++;
        if (broken && is_get)
            break;
        counts.remaining = (uint16_t)(l.n - i - 1);
        double now = covct_now();
        if (now - last > 0.5 && counts.remaining) {
            net_respond(c, pc_id, cmd, COVCT_DIMSE_PENDING, NULL, NULL, 0,
                        &counts);
            last = now;
        }
        if (!is_get) {
            int cc = check_cancel(c, cmd->message_id);
            if (cc < 0)
                broken = true;
            cancelled = cc > 0;
        }
    }
    *sent += counts.completed + counts.warning;
    if (out) {
        covct_error e = {0};
        if (broken)
            covct_net_abort(out);
        else
            covct_net_release(out, &e);
    }
    size_t total = l.n;
    list_free(&l);
    if (broken && is_get)
        return NET_EV_CLOSED;
    counts.remaining = (uint16_t)(total - i);
    uint16_t final = COVCT_DIMSE_SUCCESS;
    if (cancelled)
        final = COVCT_DIMSE_CANCEL;
    else if (counts.failed && !counts.completed && !counts.warning)
        final = COVCT_DIMSE_SUBOPS_OUT_OF_RESOURCES;
    else if (counts.failed || counts.warning)
        final = COVCT_DIMSE_SUBOPS_FAILED;
    if (final == COVCT_DIMSE_SUBOPS_FAILED ||
        final == COVCT_DIMSE_SUBOPS_OUT_OF_RESOURCES)
        snprintf(comment, sizeof comment, "%u of %zu sub-operations failed",
                 counts.failed, total);
    net_respond(c, pc_id, cmd, final, comment, NULL, 0, &counts);
    return NET_EV_PDV;
}
