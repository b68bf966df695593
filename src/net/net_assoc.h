/* One association's connection state, shared by the acceptor (scp.c) and
 * requestor (scu.c) sides; I/O helpers in assoc.c. */
#ifndef COVCT_NET_ASSOC_H
#define COVCT_NET_ASSOC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <openssl/ssl.h>

#include "covct/core.h"
#include "net/net_int.h"

/* Events besides PDU types (1..7). */
enum {
    NET_EV_PDV = 100,    /* a PDV / a complete command or data set */
    NET_EV_TIMEOUT = -1,
    NET_EV_CLOSED = -2,  /* peer closed the connection, or read error */
    NET_EV_ERROR = -3,   /* protocol error: c->err says what */
    NET_EV_STOP = -4     /* the server is stopping */
};

typedef struct net_conn {
    int fd;
    SSL *ssl;                 /* TLS session, or NULL for plain TCP */
    uint32_t my_max;          /* largest P-DATA body we accept (0: none) */
    uint32_t peer_max;        /* largest P-DATA body the peer accepts */
    unsigned timeout_ms;      /* idle timeout for reads */
    atomic_bool *stop;        /* server stopping (NULL: never) */
    unsigned n_pc;
    net_pc *pc;               /* negotiated contexts (result per context) */
    uint8_t *pdu;             /* body of the last PDU read */
    size_t pdu_cap, pdu_len, pdv_off;
    int pdu_type;             /* type of c->pdu; 0 when consumed */
    covct_buf cmd;            /* command fragments */
    char peer_desc[300];      /* "AE@host:port" for messages */
    covct_error err;          /* last protocol error */
} net_conn;

int net_write_all(net_conn *c, const struct iovec *iov, int n_iov);
void net_send_abort(net_conn *c, int source, int reason);
int net_read_pdu(net_conn *c, unsigned timeout_ms, int *abort_reason);
const net_pc *net_conn_pc(const net_conn *c, uint8_t id);
/* A complete command (NET_EV_PDV) or another event. */
int net_recv_command(net_conn *c, net_cmd *cmd, uint8_t *pc_id,
                     int *abort_reason);
/* Append the data set's fragments to out until the last one; beyond `max`
 * bytes the rest is read and dropped and *overflow set. */
int net_recv_data(net_conn *c, uint8_t pc_id, covct_buf *out, size_t max,
                  bool *overflow, int *abort_reason);
covct_rc net_send_message(net_conn *c, uint8_t pc_id, const net_cmd *cmd,
                          const uint8_t *data, size_t data_len,
                          covct_error *err);
/* Send the response to request rq: status, optional comment, optional
 * data set (identifier) and sub-operation counts. */
void net_respond(net_conn *c, uint8_t pc_id, const net_cmd *rq,
                 uint16_t status, const char *comment, const uint8_t *ds,
                 size_t ds_len, const net_cmd *counts);
void net_conn_free(net_conn *c);
void net_set_nodelay(int fd);
/* Whether input is waiting (in the socket or in TLS's buffer). */
bool net_conn_has_input(net_conn *c);
/* TLS handshake on c->fd with ctx (server or client side); false with
 * a message in c->err. */
bool net_tls_handshake(net_conn *c, SSL_CTX *ctx, bool server,
                       unsigned timeout_ms);
/* The TLS contexts of this process (covct_net_tls_init). */
SSL_CTX *net_tls_server_ctx(void);
SSL_CTX *net_tls_client_ctx(void);

#endif
