/*
 * Associations (PS3.8 7 and 9.2): reading and writing PDUs on a socket
 * with timeouts, assembling DIMSE messages from PDVs, the acceptor's
 * side (negotiation, C-ECHO, C-STORE) and the requestor's side.
 *
 * One thread runs one association with blocking reads bounded by poll():
 * the ARTIM timer (PS3.8 9.1.5) bounds the wait for the A-ASSOCIATE-RQ,
 * the idle timeout any later wait.  Any protocol violation is answered
 * with an A-ABORT naming its reason and ends the association only.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "covct/core.h"
#include "covct/dicom.h"
#include "covct/limits.h"
#include "covct/net.h"
#include "net/net_assoc.h"
#include "net/net_int.h"

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- socket I/O ----------------------------------------------------------- */

/* Wait until fd is readable: 1 ready, 0 timeout, -1 stop requested. */
static int wait_readable(net_conn *c, unsigned timeout_ms)
{
    double end = covct_now() + timeout_ms / 1000.0;
    for (;;) {
        if (c->stop && atomic_load(c->stop))
            return -1;
        if (c->ssl && SSL_pending(c->ssl) > 0)
            return 1;
        double left = end - covct_now();
        if (left <= 0)
            return 0;
        int slice = left > 0.5 ? 500 : (int)(left * 1000) + 1;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int r = poll(&p, 1, slice);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return 1; /* let read() report the error */
    }
}

static int read_exact(net_conn *c, void *buf, size_t n, unsigned timeout_ms)
{
    uint8_t *p = buf;
    while (n > 0) {
        int w = wait_readable(c, timeout_ms);
        if (w == 0)
            return NET_EV_TIMEOUT;
        if (w < 0)
            return NET_EV_STOP;
        ssize_t r;
        if (c->ssl) {
            int k = SSL_read(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
            if (k <= 0) {
                int e = SSL_get_error(c->ssl, k);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                    continue;
                return NET_EV_CLOSED;
            }
            r = k;
        } else {
            r = read(c->fd, p, n);
            if (r == 0)
                return NET_EV_CLOSED;
            if (r < 0) {
                if (errno == EINTR || errno == EAGAIN)
                    continue;
                return NET_EV_CLOSED;
            }
        }
        p += r;
        n -= (size_t)r;
    }
    /* Acknowledge at once: a peer that keeps Nagle's algorithm on (dcmtk
     * does unless TCP_NODELAY=1) holds the tail of each message until our
     * ACK, which Linux would otherwise delay by up to 40 ms. */
    if (!c->ssl) {
        int one = 1;
        (void)setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }
    return 0;
}

int net_write_all(net_conn *c, const struct iovec *iov_in, int n_iov)
{
    struct iovec iov[4];
    if (n_iov > 4)
        return -1;
    if (c->ssl) {
        for (int k = 0; k < n_iov; k++) {
            const uint8_t *b = iov_in[k].iov_base;
            size_t left = iov_in[k].iov_len;
            while (left > 0) {
                int m = left > (1u << 30) ? 1 << 30 : (int)left;
                int w = SSL_write(c->ssl, b, m);
                if (w <= 0) {
                    int e = SSL_get_error(c->ssl, w);
                    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                        continue;
                    errno = EPIPE;
                    return -1;
                }
                b += w;
                left -= (size_t)w;
            }
        }
        return 0;
    }
    memcpy(iov, iov_in, sizeof iov[0] * (size_t)n_iov);
    int i = 0;
    while (i < n_iov) {
        /* sendmsg with MSG_NOSIGNAL: a peer that went away is an error
         * for this association, not a SIGPIPE for the process. */
        struct msghdr m = {.msg_iov = iov + i, .msg_iovlen = (size_t)(n_iov - i)};
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        size_t left = (size_t)w;
        while (i < n_iov && left >= iov[i].iov_len) {
            left -= iov[i].iov_len;
            i++;
        }
        if (i < n_iov) {
            iov[i].iov_base = (uint8_t *)iov[i].iov_base + left;
            iov[i].iov_len -= left;
        }
    }
    return 0;
}

static int write_bytes(net_conn *c, const void *p, size_t n)
{
    struct iovec v = {.iov_base = (void *)p, .iov_len = n};
    return net_write_all(c, &v, 1);
}

void net_send_abort(net_conn *c, int source, int reason)
{
    uint8_t pdu[10];
    net_abort_encode(pdu, source, reason);
    (void)write_bytes(c, pdu, sizeof pdu);
}

/* Read one PDU into c->pdu.  Returns its type (1..7) or a NET_EV_* code;
 * NET_EV_ERROR with c->err set (and *abort_reason) for a PDU that cannot
 * be accepted. */
int net_read_pdu(net_conn *c, unsigned timeout_ms, int *abort_reason)
{
    uint8_t h[6];
    int r = read_exact(c, h, 6, timeout_ms);
    if (r)
        return r;
    uint8_t type = h[0];
    uint32_t len = be32(h + 2);
    if (type < PDU_ASSOC_RQ || type > PDU_ABORT) {
        *abort_reason = ABORT_REASON_UNRECOGNIZED_PDU;
        COVCT_ERR(&c->err, COVCT_ERR_CORRUPT, "unknown PDU type 0x%02X",
                  type);
        return NET_EV_ERROR;
    }
    uint32_t cap = NET_PDU_HARD_MAX;
    if (type == PDU_P_DATA && c->my_max && c->my_max + 6 < cap)
        cap = c->my_max + 6; /* a little slack for peers that count the
                                PDV header in */
    if (type != PDU_P_DATA && type != PDU_ASSOC_RQ && type != PDU_ASSOC_AC)
        cap = 64;
    if (len > cap) {
        *abort_reason = ABORT_REASON_INVALID_PARAM;
        COVCT_ERR(&c->err, COVCT_ERR_LIMIT,
                  "PDU type 0x%02X of %u bytes exceeds the maximum of %u",
                  type, len, cap);
        return NET_EV_ERROR;
    }
    if (len > c->pdu_cap) {
        uint8_t *p = covct_realloc(c->pdu, len);
        if (!p) {
            *abort_reason = ABORT_REASON_NONE;
            COVCT_ERR(&c->err, COVCT_ERR_NOMEM,
                      "out of memory for a PDU of %u bytes", len);
            return NET_EV_ERROR;
        }
        c->pdu = p;
        c->pdu_cap = len;
    }
    r = read_exact(c, c->pdu, len, timeout_ms);
    if (r)
        return r;
    c->pdu_len = len;
    c->pdv_off = 0;
    c->pdu_type = type;
    return type;
}

/* Next PDV, reading P-DATA-TF PDUs as needed.  NET_EV_PDV with *pdv, or
 * the PDU type of a non-P-DATA PDU, or a NET_EV_* code. */
static int next_pdv(net_conn *c, net_pdv *pdv, int *abort_reason)
{
    for (;;) {
        if (c->pdu_type == PDU_P_DATA) {
            int r = net_pdv_next(c->pdu, c->pdu_len, &c->pdv_off, pdv,
                                 &c->err);
            if (r > 0)
                return NET_EV_PDV;
            if (r < 0) {
                *abort_reason = ABORT_REASON_INVALID_PARAM;
                return NET_EV_ERROR;
            }
            c->pdu_type = 0;
        }
        int t = net_read_pdu(c, c->timeout_ms, abort_reason);
        if (t != PDU_P_DATA)
            return t;
        if (c->pdu_len == 0) {
            *abort_reason = ABORT_REASON_INVALID_PARAM;
            COVCT_ERR(&c->err, COVCT_ERR_CORRUPT,
                      "P-DATA-TF PDU without any PDV");
            return NET_EV_ERROR;
        }
    }
}

const net_pc *net_conn_pc(const net_conn *c, uint8_t id)
{
    for (unsigned i = 0; i < c->n_pc; i++)
        if (c->pc[i].id == id)
            return c->pc[i].result == PC_ACCEPTANCE ? &c->pc[i] : NULL;
    return NULL;
}

int net_recv_command(net_conn *c, net_cmd *cmd, uint8_t *pc_id,
                     int *abort_reason)
{
    c->cmd.len = 0;
    bool started = false;
    for (;;) {
        net_pdv pdv;
        int ev = next_pdv(c, &pdv, abort_reason);
        if (ev != NET_EV_PDV)
            return ev;
        if (!net_conn_pc(c, pdv.pc_id)) {
            *abort_reason = ABORT_REASON_INVALID_PARAM;
            COVCT_ERR(&c->err, COVCT_ERR_CORRUPT,
                      "PDV on presentation context %u, which was not "
                      "accepted",
                      pdv.pc_id);
            return NET_EV_ERROR;
        }
        if (!pdv.command) {
            *abort_reason = ABORT_REASON_UNEXPECTED_PARAM;
            COVCT_ERR(&c->err, COVCT_ERR_CORRUPT,
                      "data set fragment where a command was expected");
            return NET_EV_ERROR;
        }
        if (started && pdv.pc_id != *pc_id) {
            *abort_reason = ABORT_REASON_INVALID_PARAM;
            COVCT_ERR(&c->err, COVCT_ERR_CORRUPT,
                      "command fragments on two presentation contexts "
                      "(%u and %u)",
                      *pc_id, pdv.pc_id);
            return NET_EV_ERROR;
        }
        started = true;
        *pc_id = pdv.pc_id;
        if (c->cmd.len + pdv.len > 65536) {
            *abort_reason = ABORT_REASON_INVALID_PARAM;
            COVCT_ERR(&c->err, COVCT_ERR_LIMIT,
                      "command set longer than 64 KiB");
            return NET_EV_ERROR;
        }
        if (covct_buf_append(&c->cmd, pdv.data, pdv.len, &c->err)) {
            *abort_reason = ABORT_REASON_NONE;
            return NET_EV_ERROR;
        }
        if (pdv.last)
            break;
    }
    if (net_cmd_decode(c->cmd.data, c->cmd.len, cmd, &c->err)) {
        *abort_reason = ABORT_REASON_INVALID_PARAM;
        return NET_EV_ERROR;
    }
    return NET_EV_PDV;
}

int net_recv_data(net_conn *c, uint8_t pc_id, covct_buf *out, size_t max,
                  bool *overflow, int *abort_reason)
{
    *overflow = false;
    for (;;) {
        net_pdv pdv;
        int ev = next_pdv(c, &pdv, abort_reason);
        if (ev != NET_EV_PDV)
            return ev;
        if (pdv.command || pdv.pc_id != pc_id) {
            *abort_reason = ABORT_REASON_UNEXPECTED_PARAM;
            COVCT_ERR(&c->err, COVCT_ERR_CORRUPT,
                      "%s on presentation context %u while a data set on "
                      "context %u was being received",
                      pdv.command ? "command fragment" : "data fragment",
                      pdv.pc_id, pc_id);
            return NET_EV_ERROR;
        }
        if (!*overflow && out->len + pdv.len > max)
            *overflow = true; /* keep reading, answer Out of Resources */
        if (!*overflow &&
            covct_buf_append(out, pdv.data, pdv.len, &c->err)) {
            covct_error_clear(&c->err);
            *overflow = true;
        }
        if (pdv.last)
            return NET_EV_PDV;
    }
}

/* Send a message: command on pc_id, then the data set (may be NULL). */
covct_rc net_send_message(net_conn *c, uint8_t pc_id, const net_cmd *cmd,
                          const uint8_t *data, size_t data_len,
                          covct_error *err)
{
    covct_buf b = {0};
    covct_rc rc = net_cmd_encode(cmd, &b, err);
    if (rc) {
        covct_buf_free(&b);
        return rc;
    }
    /* Fragment size: the peer's maximum P-DATA length (0: no limit; we
     * then use 1 MiB PDUs), less the 6-byte PDV header. */
    size_t max = c->peer_max ? c->peer_max : (1u << 20);
    if (max > (16u << 20))
        max = 16u << 20;
    if (max < 16)
        max = 16;
    size_t chunk = max - 6;
    for (int part = 0; part < 2 && !rc; part++) {
        const uint8_t *p = part ? data : b.data;
        size_t n = part ? data_len : b.len;
        if (part && !data)
            break;
        size_t off = 0;
        do {
            size_t m = n - off < chunk ? n - off : chunk;
            bool last = off + m == n;
            uint8_t h[12];
            h[0] = PDU_P_DATA;
            h[1] = 0;
            put_be32(h + 2, (uint32_t)(m + 6));
            put_be32(h + 6, (uint32_t)(m + 2));
            h[10] = pc_id;
            h[11] = (uint8_t)((part ? 0 : 1) | (last ? 2 : 0));
            struct iovec iov[2] = {{.iov_base = h, .iov_len = 12},
                                   {.iov_base = (void *)(p + off),
                                    .iov_len = m}};
            if (net_write_all(c, iov, m ? 2 : 1))
                rc = COVCT_ERR(err, COVCT_ERR_IO,
                               "sending to %s failed: %s", c->peer_desc,
                               strerror(errno));
            off += m;
        } while (!rc && off < n);
    }
    covct_buf_free(&b);
    return rc;
}

bool net_conn_has_input(net_conn *c)
{
    if (c->pdu_type == PDU_P_DATA && c->pdv_off < c->pdu_len)
        return true;
    if (c->ssl && SSL_pending(c->ssl) > 0)
        return true;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

void net_conn_free(net_conn *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    covct_free(c->pdu);
    c->pdu = NULL;
    covct_buf_free(&c->cmd);
    covct_free(c->pc);
    c->pc = NULL;
}

void net_set_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void net_respond(net_conn *c, uint8_t pc_id, const net_cmd *rq,
                 uint16_t status, const char *comment, const uint8_t *ds,
                 size_t ds_len, const net_cmd *counts)
{
    net_cmd rsp;
    memset(&rsp, 0, sizeof rsp);
    rsp.field = (uint16_t)(rq->field | DIMSE_RSP);
    rsp.has_responding_to = true;
    rsp.responding_to = rq->message_id;
    rsp.dataset_type = ds ? 0x0000 : DIMSE_NO_DATASET;
    rsp.has_status = true;
    rsp.status = status;
    memcpy(rsp.sop_class, rq->sop_class, sizeof rsp.sop_class);
    if (rq->field == DIMSE_C_STORE_RQ)
        memcpy(rsp.sop_instance, rq->sop_instance, sizeof rsp.sop_instance);
    if (comment && comment[0] && status != 0x0000 && status != 0xFF00 &&
        status != 0xFF01)
        snprintf(rsp.error_comment, sizeof rsp.error_comment, "%s", comment);
    if (counts) {
        rsp.has_counts = true;
        rsp.remaining = counts->remaining;
        rsp.completed = counts->completed;
        rsp.failed = counts->failed;
        rsp.warning = counts->warning;
    }
    covct_error e = {0};
    (void)net_send_message(c, pc_id, &rsp, ds, ds_len, &e);
}
