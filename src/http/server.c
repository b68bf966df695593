/* The HTTP server: libmicrohttpd (a thread pool on epoll), request
 * bodies up to a cap (413 beyond, answered before the body is read when
 * Content-Length says so), idle connections closed, one case-database
 * handle per worker thread, and the responses' common headers
 * (docs/internals/http.md). */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http/http_int.h"

#define DEFAULT_MAX_BODY ((size_t)512 << 20)

typedef struct conn_state {
    covct_buf body;
    bool too_big;
    bool answered; /* a response was queued during the upload */
} conn_state;

/* ---- responses ----------------------------------------------------------- */
int http_error(http_resp *rs, int status, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", msg);
    return http_json(rs, status, j);
}

int http_json(http_resp *rs, int status, cJSON *json)
{
    rs->status = status;
    rs->type = "application/json";
    rs->body.len = 0;
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    covct_error err = { 0 };
    if (!text || covct_buf_append(&rs->body, text, strlen(text), &err)) {
        rs->status = 500;
        rs->body.len = 0;
    }
    cJSON_free(text);
    return 0;
}

int http_created(http_resp *rs, int64_t id)
{
    cJSON *o = cJSON_CreateObject();
    if (o)
        cJSON_AddNumberToObject(o, "id", (double)id);
    return http_json(rs, 201, o);
}

void http_header(http_resp *rs, const char *name, const char *value)
{
    if (rs->n_hdr == HTTP_MAX_HEADERS)
        return;
    char *v = covct_strdup(value);
    if (!v)
        return;
    rs->hdr_name[rs->n_hdr] = name;
    rs->hdr_value[rs->n_hdr++] = v;
}

static void resp_free(http_resp *rs)
{
    covct_buf_free(&rs->body);
    for (size_t i = 0; i < rs->n_hdr; i++)
        covct_free(rs->hdr_value[i]);
    covct_free(rs->file);
}

/* ---- requests ------------------------------------------------------------ */
const char *http_query(const http_req *rq, const char *key)
{
    return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *http_header_in(const http_req *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

typedef struct collect {
    const char *key;
    const char **out;
    size_t cap, n;
} collect;

static enum MHD_Result collect_cb(void *cls, enum MHD_ValueKind kind,
                                  const char *key, const char *value)
{
    (void)kind;
    collect *c = cls;
    if (value && !strcmp(key, c->key) && c->n < c->cap)
        c->out[c->n++] = value;
    return MHD_YES;
}

size_t http_query_all(const http_req *rq, const char *key, const char **out,
                      size_t cap)
{
    collect c = { key, out, cap, 0 };
    MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, collect_cb,
                              &c);
    return c.n;
}

/* Append h to the array *v (n, cap) under the handles lock. */
static bool remember(http_server *srv, void ***v, size_t *n, size_t *cap,
                     void *h)
{
    bool ok = true;
    pthread_mutex_lock(&srv->handles_lock);
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        void **nv = covct_realloc(*v, c * sizeof *nv);
        if (nv) {
            *v = nv;
            *cap = c;
        } else {
            ok = false;
        }
    }
    if (ok)
        (*v)[(*n)++] = h;
    pthread_mutex_unlock(&srv->handles_lock);
    return ok;
}

covct_site *http_site(http_server *srv, covct_error *err)
{
    covct_site *site = pthread_getspecific(srv->site_key);
    if (site)
        return site;
    if (covct_site_open(srv->data_dir, &site, err))
        return NULL;
    if (!remember(srv, &srv->sites, &srv->n_sites, &srv->cap_sites,
                  site)) {
        covct_site_close(site);
        COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pthread_setspecific(srv->site_key, site);
    return site;
}

covct_rc http_index(http_server *srv, covct_db **db, covct_error *err)
{
    if ((*db = pthread_getspecific(srv->index_key)))
        return COVCT_OK;
    if (!srv->cfg.store)
        return COVCT_ERR(err, COVCT_ERR_NOT_FOUND,
                         "no DICOM store on this server");
    covct_rc rc = covct_db_open(covct_store_index_path(srv->cfg.store), db,
                                err);
    if (rc)
        return rc;
    if (!remember(srv, &srv->indexes, &srv->n_indexes, &srv->cap_indexes,
                  *db)) {
        covct_db_close(*db);
        *db = NULL;
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    pthread_setspecific(srv->index_key, *db);
    return COVCT_OK;
}

/* ---- sending --------------------------------------------------------------- */
static void free_cb(void *p) { covct_free(p); }

static enum MHD_Result send_resp(struct MHD_Connection *c, http_server *srv,
                            http_resp *rs, bool is_head)
{
    struct MHD_Response *r = NULL;
    if (rs->file) {
        int fd = open(rs->file, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0) {
            r = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
        } else {
            if (fd >= 0)
                close(fd);
            http_error(rs, 404, "not found");
        }
    }
    if (!r) {
        size_t len = rs->body.len;
        void *data = rs->body.data;
        rs->body.data = NULL;
        rs->body.len = rs->body.cap = 0;
        if (is_head) {
            covct_free(data);
            data = NULL;
            len = 0;
        }
        r = MHD_create_response_from_buffer_with_free_callback(
            len, data ? data : (void *)"", data ? free_cb : NULL);
        if (!r && data)
            covct_free(data);
    }
    if (!r)
        return MHD_NO;
    if (rs->type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, rs->type);
    for (size_t i = 0; i < rs->n_hdr; i++)
        MHD_add_response_header(r, rs->hdr_name[i], rs->hdr_value[i]);
    /* what every answer carries: no sniffing, no framing by other sites,
     * no referrer with patient UIDs in it */
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    if (srv->cfg.cors_origin) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin",
                                srv->cfg.cors_origin);
        MHD_add_response_header(r, "Vary", "Origin");
    }
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)rs->status, r);
    MHD_destroy_response(r);
    return ok;
}

/* The methods of the router table, each once, in the order they first
 * appear, then HEAD (the router answers it as GET) and OPTIONS: a
 * preflight offers what some route serves and nothing else (Fetch
 * Standard, CORS protocol: Access-Control-Allow-Methods). */
static void route_methods(char *out, size_t cap)
{
    const char *seen[8];
    size_t n_seen = 0, o = 0;
    bool get = false;
    out[0] = 0;
    for (size_t i = 0; i < covct_http_route_count(); i++) {
        const char *m = covct_http_route_at(i)->method;
        bool dup = false;
        for (size_t k = 0; k < n_seen && !dup; k++)
            dup = !strcmp(seen[k], m);
        if (dup || n_seen == sizeof seen / sizeof *seen)
            continue;
        seen[n_seen++] = m;
        get |= !strcmp(m, "GET");
        int w = snprintf(out + o, cap - o, "%s%s", o ? ", " : "", m);
        if (w < 0 || (size_t)w >= cap - o)
            break;
        o += (size_t)w;
    }
    snprintf(out + o, cap - o, "%s%sOPTIONS", get ? ", HEAD" : "",
             o ? ", " : "");
}

/* CORS preflight: the methods and headers an external viewer uses. */
static int preflight(http_server *srv, http_resp *rs)
{
    if (!srv->cfg.cors_origin)
        return http_error(rs, 403, "cross-origin requests are not enabled "
                                   "(covct serve --cors-origin)");
    rs->status = 204;
    char methods[128];
    route_methods(methods, sizeof methods);
    http_header(rs, "Access-Control-Allow-Methods", methods);
    http_header(rs, "Access-Control-Allow-Headers",
                "Authorization, Content-Type, Accept, X-CSRF-Token");
    http_header(rs, "Access-Control-Max-Age", "600");
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    http_server *srv = cls;
    conn_state *st = *con_cls;
    size_t max = srv->cfg.max_body ? srv->cfg.max_body : DEFAULT_MAX_BODY;
    if (!st) {
        st = covct_calloc(1, sizeof *st);
        if (!st)
            return MHD_NO;
        *con_cls = st;
        const char *cl = MHD_lookup_connection_value(
            c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > max) {
            /* answer before reading a byte of it; MHD then closes */
            http_resp rs = { 0 };
            http_error(&rs, 413,
                       "request body of %s bytes is over the limit of %zu",
                       cl, max);
            st->answered = true;
            enum MHD_Result ok = send_resp(c, srv, &rs, false);
            resp_free(&rs);
            return ok;
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!st->too_big && !st->answered) {
            covct_error err = { 0 };
            if (st->body.len + *upload_size > max ||
                covct_buf_append(&st->body, upload, *upload_size, &err))
                st->too_big = true;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (st->answered)
        return MHD_YES;
    http_req rq = { 0 };
    http_resp rs = { 0 };
    rs.status = 200;
    rq.srv = srv;
    rq.conn = c;
    rq.method = method;
    rq.path = url;
    covct_error err = { 0 };
    /* a NUL after the body makes JSON parsing safe */
    if (!st->too_big && covct_buf_append(&st->body, "", 1, &err))
        st->too_big = true;
    rq.body = st->body.data;
    rq.body_len = st->body.len ? st->body.len - 1 : 0;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
                      rq.remote, sizeof rq.remote);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6,
                      &((const struct sockaddr_in6 *)sa)->sin6_addr,
                      rq.remote, sizeof rq.remote);
    }
    if (st->too_big)
        http_error(&rs, 413, "request body over the limit of %zu bytes",
                   max);
    else if (!strcmp(method, "OPTIONS"))
        preflight(srv, &rs);
    else
        http_dispatch(&rq, &rs);
    enum MHD_Result ok = send_resp(c, srv, &rs, !strcmp(method, "HEAD"));
    resp_free(&rs);
    return ok;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    conn_state *st = *con_cls;
    if (st) {
        covct_buf_free(&st->body);
        covct_free(st);
        *con_cls = NULL;
    }
}

static void on_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void on_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == ' '))
        line[--n] = 0;
    covct_log(COVCT_LOG_WARN, "http: %s", line);
}

static covct_rc read_text(const char *path, char **out, covct_error *err)
{
    uint8_t *d = NULL;
    size_t n = 0;
    covct_rc rc = covct_file_read(path, &d, &n, err);
    if (rc)
        return rc;
    char *s = covct_realloc(d, n + 1);
    if (!s) {
        covct_free(d);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    s[n] = 0;
    *out = s;
    return COVCT_OK;
}

covct_rc covct_http_start(const covct_http_config *cfg,
                          covct_http_server **out, covct_error *err)
{
    *out = NULL;
    http_server *srv = covct_calloc(1, sizeof *srv);
    if (!srv)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    srv->cfg = *cfg;
    pthread_mutex_init(&srv->handles_lock, NULL);
    pthread_key_create(&srv->site_key, NULL);
    pthread_key_create(&srv->index_key, NULL);
    char *cert = NULL, *key = NULL;
    covct_rc rc = COVCT_OK;
    if (!(srv->data_dir = covct_strdup(cfg->data_dir)) ||
        (cfg->web_dir && !(srv->web_dir = covct_strdup(cfg->web_dir))) ||
        !(srv->auth = http_auth_new()) ||
        !(srv->worklist = http_worklist_new()))
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    if (!rc && cfg->tls_cert && cfg->tls_key &&
        (!(rc = read_text(cfg->tls_cert, &cert, err))))
        rc = read_text(cfg->tls_key, &key, err);
    if (rc) {
        covct_free(cert);
        covct_free(key);
        covct_http_stop(srv);
        return rc;
    }
    struct sockaddr_in addr = { 0 };
    addr.sin_family = AF_INET;
    addr.sin_port = htons(cfg->port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (cfg->bind_host &&
        inet_pton(AF_INET, cfg->bind_host, &addr.sin_addr) != 1) {
        covct_http_stop(srv);
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "HTTP bind address '%s' is not an IPv4 address",
                         cfg->bind_host);
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                     MHD_USE_ERROR_LOG;
    if (cert)
        flags |= MHD_USE_TLS;
    unsigned threads = cfg->threads ? cfg->threads : 4;
    unsigned timeout = cfg->timeout_s ? cfg->timeout_s : 30;
    struct MHD_OptionItem tls_opts[] = {
        { MHD_OPTION_HTTPS_MEM_CERT, 0, cert },
        { MHD_OPTION_HTTPS_MEM_KEY, 0, key },
        { MHD_OPTION_END, 0, NULL },
    };
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER,
        on_log, srv, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_TIMEOUT,
        timeout, MHD_OPTION_CONNECTION_LIMIT, (unsigned)256,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)64,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_ARRAY,
        cert ? tls_opts : tls_opts + 2, MHD_OPTION_END);
    covct_free(cert);
    if (key) {
        memset(key, 0, strlen(key));
        covct_free(key);
    }
    if (!srv->daemon) {
        covct_http_stop(srv);
        return COVCT_ERR(err, COVCT_ERR_IO,
                         "cannot start the HTTP server on port %u (in use? "
                         "TLS files readable?)",
                         (unsigned)cfg->port);
    }
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : cfg->port;
    *out = srv;
    return COVCT_OK;
}

uint16_t covct_http_port(const covct_http_server *s)
{
    return s->port;
}

void covct_http_stop(covct_http_server *s)
{
    http_server *srv = s;
    if (!srv)
        return;
    if (srv->daemon)
        MHD_stop_daemon(srv->daemon);
    for (size_t i = 0; i < srv->n_sites; i++)
        covct_site_close(srv->sites[i]);
    covct_free(srv->sites);
    for (size_t i = 0; i < srv->n_indexes; i++)
        covct_db_close(srv->indexes[i]);
    covct_free(srv->indexes);
    http_auth_free(srv->auth);
    http_worklist_free(srv->worklist);
    pthread_key_delete(srv->site_key);
    pthread_key_delete(srv->index_key);
    pthread_mutex_destroy(&srv->handles_lock);
    covct_free(srv->data_dir);
    covct_free(srv->web_dir);
    covct_free(srv);
}
