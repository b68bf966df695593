/*
 * DICOM over TLS (PS3.15 B.1, BCP 195 profile: TLS 1.2 or later) with
 * OpenSSL: one server and one client context per process, both with the
 * node's certificate; peers are verified against the given CA
 * certificates (their chain, not their host name: DICOM nodes are often
 * addressed by IP and their certificates name the AE, as dcmtk does).
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "covct/core.h"
#include "covct/net.h"
#include "net/net_assoc.h"

static SSL_CTX *server_ctx, *client_ctx;

SSL_CTX *net_tls_server_ctx(void)
{
    return server_ctx;
}

SSL_CTX *net_tls_client_ctx(void)
{
    return client_ctx;
}

static void ssl_errors(char *buf, size_t size)
{
    unsigned long e = ERR_get_error();
    if (!e) {
        snprintf(buf, size, "%s", errno ? strerror(errno) : "unknown error");
        return;
    }
    ERR_error_string_n(e, buf, size);
    ERR_clear_error();
}

static SSL_CTX *make_ctx(bool server, const char *cert, const char *key,
                         const char *ca, covct_error *err)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method()
                                      : TLS_client_method());
    char why[256];
    if (!ctx) {
        ssl_errors(why, sizeof why);
        COVCT_ERR(err, COVCT_ERR_NOMEM, "TLS: %s", why);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        ssl_errors(why, sizeof why);
        COVCT_ERR(err, COVCT_ERR_ARG, "TLS certificate %s: %s", cert, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ssl_errors(why, sizeof why);
        COVCT_ERR(err, COVCT_ERR_ARG,
                  "TLS private key %s (does it belong to %s?): %s", key, cert,
                  why);
        goto fail;
    }
    if (ca) {
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
            ssl_errors(why, sizeof why);
            COVCT_ERR(err, COVCT_ERR_ARG, "TLS CA certificates %s: %s", ca,
                      why);
            goto fail;
        }
        SSL_CTX_set_verify(ctx,
                           SSL_VERIFY_PEER |
                               (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                           NULL);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

covct_rc covct_net_tls_init(const char *cert, const char *key,
                            const char *ca, covct_error *err)
{
    if (!cert || !key)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "TLS needs a certificate and its private key");
    SSL_CTX *s = make_ctx(true, cert, key, ca, err);
    if (!s)
        return err && err->rc ? err->rc : COVCT_ERR_ARG;
    SSL_CTX *c = make_ctx(false, cert, key, ca, err);
    if (!c) {
        SSL_CTX_free(s);
        return err && err->rc ? err->rc : COVCT_ERR_ARG;
    }
    SSL_CTX_free(server_ctx);
    SSL_CTX_free(client_ctx);
    server_ctx = s;
    client_ctx = c;
    return COVCT_OK;
}

void covct_net_tls_cleanup(void)
{
    SSL_CTX_free(server_ctx);
    SSL_CTX_free(client_ctx);
    server_ctx = client_ctx = NULL;
}

static void set_timeout(int fd, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

bool net_tls_handshake(net_conn *c, SSL_CTX *ctx, bool server,
                       unsigned timeout_ms)
{
    c->ssl = SSL_new(ctx);
    char why[256];
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
        ssl_errors(why, sizeof why);
        COVCT_ERR(&c->err, COVCT_ERR_NOMEM, "TLS: %s", why);
        return false;
    }
    set_timeout(c->fd, timeout_ms);
    errno = 0;
    int r = server ? SSL_accept(c->ssl) : SSL_connect(c->ssl);
    set_timeout(c->fd, 0);
    if (r != 1) {
        ssl_errors(why, sizeof why);
        long v = SSL_get_verify_result(c->ssl);
        COVCT_ERR(&c->err, COVCT_ERR_IO, "TLS handshake failed: %s%s%s", why,
                  v != X509_V_OK ? "; certificate: " : "",
                  v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
        SSL_free(c->ssl);
        c->ssl = NULL;
        return false;
    }
    return true;
}
