/* libFuzzer target: whole HTTP requests, as bytes on a socket, into the
 * web service (libmicrohttpd's request parsing, then covct's router,
 * authentication, query handling, DICOMweb and the REST API).  The
 * server runs once, on a loopback port, over an empty site in a
 * temporary folder; one user with a token exists, and inputs that
 * contain the text "TOKEN" get it substituted, so the fuzzer reaches the
 * handlers behind authentication too. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "covct/http.h"
#include "covct/site.h"
#include "covct/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint16_t port;
static char token[80];

static void start(void)
{
    static char dir[] = "/tmp/covct-fuzz-http.XXXXXX";
    covct_error err = { 0 };
    covct_store *store = NULL;
    covct_site *site = NULL;
    covct_http_server *srv = NULL;
    covct_log_set_level(COVCT_LOG_ERROR);
    if (!mkdtemp(dir) || covct_store_open(dir, &store, &err) ||
        covct_site_open(dir, &site, &err) ||
        covct_user_add(site, "fuzz", "administrator", NULL, &err) ||
        covct_token_create(site, "fuzz", NULL, token, &err))
        abort();
    covct_http_config cfg = { .bind_host = "127.0.0.1",
                              .data_dir = dir,
                              .store = store,
                              .max_body = 1 << 20,
                              .timeout_s = 1,
                              .threads = 2 };
    if (covct_http_start(&cfg, &srv, &err))
        abort();
    port = covct_http_port(srv);
    covct_site_close(site);
    /* the server and the store live until the process ends */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!port)
        start();
    /* "TOKEN" -> the real token */
    size_t cap = size + 100, n = 0;
    uint8_t *msg = malloc(cap ? cap : 1);
    for (size_t i = 0; i < size; i++) {
        if (i + 5 <= size && !memcmp(data + i, "TOKEN", 5) &&
            n + strlen(token) < cap) {
            memcpy(msg + n, token, strlen(token));
            n += strlen(token);
            i += 4;
        } else if (n < cap) {
            msg[n++] = data[i];
        }
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { 0 };
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        size_t off = 0;
        while (off < n) {
            ssize_t w = send(fd, msg + off, n - off, MSG_NOSIGNAL);
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        shutdown(fd, SHUT_WR);
        char buf[65536];
        struct pollfd p = { fd, POLLIN, 0 };
        while (poll(&p, 1, 3000) == 1 && recv(fd, buf, sizeof buf, 0) > 0)
            ;
    }
    if (fd >= 0)
        close(fd);
    free(msg);
    return 0;
}
