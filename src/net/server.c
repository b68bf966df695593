/*
 * The DICOM listener: accepts TCP connections and runs each association
 * in its own thread (net_serve_fd), up to a cap; beyond the cap a
 * connection still gets a thread that answers A-ASSOCIATE-RJ (transient,
 * local limit exceeded), and beyond twice the cap it is closed at once so
 * that a flood of connections cannot exhaust threads.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "covct/core.h"
#include "covct/net.h"
#include "net/net_server.h"

typedef struct conn_node {
    struct conn_node *next;
    covct_net_server *srv;
    pthread_t thread;
    int fd;
    bool over_cap;
    bool done;
    covct_net_assoc_info info;
} conn_node;

struct covct_net_server {
    covct_net_server_config cfg;
    char ae[17];
    int listen_fd;
    int wake[2];              /* self-pipe: stop the accept loop */
    uint16_t port;
    pthread_t accept_thread;
    atomic_bool stop;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    conn_node *conns;         /* running and finished (not yet joined) */
    unsigned open;
    uint64_t total;
};

bool net_server_host_matches(const char *spec, const char *addr)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(spec, NULL, &hints, &res) != 0)
        return false;
    bool match = false;
    for (struct addrinfo *r = res; r && !match; r = r->ai_next) {
        char h[INET6_ADDRSTRLEN] = "";
        if (getnameinfo(r->ai_addr, r->ai_addrlen, h, sizeof h, NULL, 0,
                        NI_NUMERICHOST) == 0 &&
            !strcmp(h, addr))
            match = true;
    }
    freeaddrinfo(res);
    return match;
}

static void *conn_main(void *arg)
{
    conn_node *n = arg;
    covct_net_server *s = n->srv;
    net_serve_fd(&s->cfg, n->fd, &n->info, n->over_cap, &s->stop);
    pthread_mutex_lock(&s->lock);
    n->fd = -1;
    n->done = true;
    if (!n->over_cap)
        s->open--;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Join the threads that have finished.  Called with the lock held. */
static void reap(covct_net_server *s)
{
    conn_node **pp = &s->conns;
    while (*pp) {
        conn_node *n = *pp;
        if (n->done) {
            *pp = n->next;
            pthread_join(n->thread, NULL);
            covct_free(n);
        } else {
            pp = &n->next;
        }
    }
}

static void *accept_main(void *arg)
{
    covct_net_server *s = arg;
    unsigned cap = s->cfg.max_associations ? s->cfg.max_associations : 32;
    for (;;) {
        struct pollfd p[2] = {{.fd = s->listen_fd, .events = POLLIN},
                              {.fd = s->wake[0], .events = POLLIN}};
        int r = poll(p, 2, 1000);
        if (atomic_load(&s->stop))
            break;
        pthread_mutex_lock(&s->lock);
        reap(s);
        pthread_mutex_unlock(&s->lock);
        if (r <= 0 || !(p[0].revents & POLLIN))
            continue;
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(s->listen_fd, (struct sockaddr *)&sa, &sl,
                         SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        conn_node *n = covct_calloc(1, sizeof *n);
        if (!n) {
            close(fd);
            continue;
        }
        n->srv = s;
        n->fd = fd;
        char host[INET6_ADDRSTRLEN] = "?", port[16] = "0";
        getnameinfo((struct sockaddr *)&sa, sl, host, sizeof host, port,
                    sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
        /* An IPv4 peer on the dual-stack socket: show and match it as
         * IPv4 (::ffff:10.0.0.5 -> 10.0.0.5). */
        const char *h = host;
        if (!strncmp(h, "::ffff:", 7) && strchr(h + 7, '.'))
            h += 7;
        snprintf(n->info.peer_host, sizeof n->info.peer_host, "%s", h);
        n->info.peer_port = (uint16_t)strtoul(port, NULL, 10);
        pthread_mutex_lock(&s->lock);
        unsigned running = 0;
        for (conn_node *m = s->conns; m; m = m->next)
            running += !m->done;
        if (running >= 2 * cap) {
            pthread_mutex_unlock(&s->lock);
            covct_log(COVCT_LOG_WARN,
                      "connection from %s closed at once: %u associations "
                      "already running",
                      host, running);
            close(fd);
            covct_free(n);
            continue;
        }
        n->over_cap = s->open >= cap;
        if (!n->over_cap)
            s->open++;
        n->info.id = ++s->total;
        n->next = s->conns;
        s->conns = n;
        if (pthread_create(&n->thread, NULL, conn_main, n) != 0) {
            s->conns = n->next;
            if (!n->over_cap)
                s->open--;
            pthread_mutex_unlock(&s->lock);
            close(fd);
            covct_free(n);
            continue;
        }
        pthread_mutex_unlock(&s->lock);
    }
    return NULL;
}

covct_rc covct_net_server_start(const covct_net_server_config *cfg,
                                covct_net_server **out, covct_error *err)
{
    *out = NULL;
    if (!cfg->ae_title || !covct_net_ae_valid(cfg->ae_title))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "AE title '%s' is not valid (1 to 16 characters, "
                         "no backslash or control characters)",
                         cfg->ae_title ? cfg->ae_title : "");
    covct_net_server *s = covct_calloc(1, sizeof *s);
    if (!s)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    s->cfg = *cfg;
    /* Spaces around an AE title are not significant (PS3.5 6.2). */
    const char *a = cfg->ae_title;
    while (*a == ' ')
        a++;
    snprintf(s->ae, sizeof s->ae, "%s", a);
    for (size_t n = strlen(s->ae); n > 0 && s->ae[n - 1] == ' ';)
        s->ae[--n] = '\0';
    s->cfg.ae_title = s->ae;
    s->listen_fd = -1;
    s->wake[0] = s->wake[1] = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->changed, NULL);

    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof port, "%u", cfg->port);
    int gai = getaddrinfo(cfg->bind_host, port, &hints, &res);
    if (gai) {
        COVCT_ERR(err, COVCT_ERR_ARG, "cannot listen on %s port %u: %s",
                  cfg->bind_host ? cfg->bind_host : "all addresses",
                  cfg->port, gai_strerror(gai));
        goto fail;
    }
    /* Prefer IPv6 with dual stack when listening on all addresses. */
    struct addrinfo *pick = res;
    for (struct addrinfo *r = res; r; r = r->ai_next)
        if (!cfg->bind_host && r->ai_family == AF_INET6)
            pick = r;
    int saved = 0;
    for (int attempt = 0; attempt < 2 && s->listen_fd < 0; attempt++) {
        struct addrinfo *r = attempt == 0 ? pick : res;
        int fd = socket(r->ai_family, r->ai_socktype | SOCK_CLOEXEC,
                        r->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1, zero = 0;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (r->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        if (bind(fd, r->ai_addr, r->ai_addrlen) || listen(fd, 64)) {
            saved = errno;
            close(fd);
            continue;
        }
        s->listen_fd = fd;
    }
    freeaddrinfo(res);
    if (s->listen_fd < 0) {
        COVCT_ERR(err, COVCT_ERR_IO, "cannot listen on %s port %u: %s%s",
                  cfg->bind_host ? cfg->bind_host : "all addresses",
                  cfg->port, strerror(saved),
                  saved == EADDRINUSE ? " (another program uses this port: "
                                        "choose another with --dicom-port)"
                  : saved == EACCES ? " (ports below 1024 need root)"
                                    : "");
        goto fail;
    }
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    getsockname(s->listen_fd, (struct sockaddr *)&sa, &sl);
    s->port = ntohs(sa.ss_family == AF_INET6
                        ? ((struct sockaddr_in6 *)&sa)->sin6_port
                        : ((struct sockaddr_in *)&sa)->sin_port);
    if (pipe2(s->wake, O_CLOEXEC)) {
        COVCT_ERR(err, COVCT_ERR_IO, "pipe: %s", strerror(errno));
        goto fail;
    }
    if (pthread_create(&s->accept_thread, NULL, accept_main, s)) {
        COVCT_ERR(err, COVCT_ERR_IO, "cannot start the listener thread");
        goto fail;
    }
    *out = s;
    return COVCT_OK;
fail:
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->wake[0] >= 0) {
        close(s->wake[0]);
        close(s->wake[1]);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->changed);
    covct_free(s);
    return err && err->rc ? err->rc : COVCT_ERR_IO;
}

uint16_t covct_net_server_port(const covct_net_server *s)
{
    return s->port;
}

void covct_net_server_counts(covct_net_server *s, unsigned *open,
                             uint64_t *total)
{
    pthread_mutex_lock(&s->lock);
    *open = s->open;
    *total = s->total;
    pthread_mutex_unlock(&s->lock);
}

void covct_net_server_stop(covct_net_server *s, unsigned grace_s)
{
    if (!s)
        return;
    /* Associations see the flag between messages (and within 0.5 s when
     * idle): each finishes the message it is in, then aborts. */
    atomic_store(&s->stop, true);
    ssize_t w = write(s->wake[1], "x", 1);
    (void)w;
    pthread_join(s->accept_thread, NULL);
    close(s->listen_fd);
    double end = covct_now() + grace_s;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        bool running = false;
        for (conn_node *n = s->conns; n; n = n->next)
            running |= !n->done;
        if (!running)
            break;
        if (covct_now() >= end) {
            /* Past the grace period: cut the connections. */
            for (conn_node *n = s->conns; n; n = n->next)
                if (!n->done && n->fd >= 0)
                    shutdown(n->fd, SHUT_RDWR);
            end = covct_now() + 3600;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->changed, &s->lock, &ts);
    }
    reap(s);
    pthread_mutex_unlock(&s->lock);
    close(s->wake[0]);
    close(s->wake[1]);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->changed);
    covct_free(s);
}

bool covct_net_ae_valid(const char *ae)
{
    size_t n = strlen(ae);
    if (n == 0 || n > 16)
        return false;
    bool nonspace = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)ae[i];
        if (ch < 0x20 || ch > 0x7E || ch == '\\')
            return false;
        nonspace |= ch != ' ';
    }
    return nonspace;
}

covct_rc covct_net_peer_parse(const char *spec, covct_net_peer *out,
                              covct_error *err)
{
    memset(out, 0, sizeof *out);
    const char *at = strchr(spec, '@');
    const char *colon = at ? strrchr(at, ':') : NULL;
    if (!at || !colon || colon == at + 1 || !colon[1])
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "peer '%s' is not AE@HOST:PORT (for example "
                         "PACS@10.0.0.5:104)",
                         spec);
    size_t ae_len = (size_t)(at - spec);
    if (ae_len == 0 || ae_len > 16)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "peer '%s': AE title must have 1 to 16 characters",
                         spec);
    memcpy(out->ae, spec, ae_len);
    if (!covct_net_ae_valid(out->ae))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "peer '%s': AE title '%s' is not valid", spec,
                         out->ae);
    size_t host_len = (size_t)(colon - at - 1);
    const char *host = at + 1;
    /* [v6 address]:port */
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        host++;
        host_len -= 2;
    }
    if (host_len == 0 || host_len >= sizeof out->host)
        return COVCT_ERR(err, COVCT_ERR_ARG, "peer '%s': bad host name",
                         spec);
    memcpy(out->host, host, host_len);
    char *endp;
    long port = strtol(colon + 1, &endp, 10);
    if (*endp || port < 1 || port > 65535)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "peer '%s': port must be a number from 1 to 65535",
                         spec);
    out->port = (uint16_t)port;
    return COVCT_OK;
}
