/* covct serve: the DICOM node.  Receives instances from scanners and the
 * PACS (C-STORE), answers C-ECHO, keeps every instance durable in the
 * store (files + SQLite index) before acknowledging it. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/serve.h"
#include "covct/net.h"
#include "covct/http.h"
#include "covct/site.h"
#include "covct/store.h"

static const char help[] =
    "Usage: covct serve --data DIR [OPTIONS]\n"
    "\n"
    "Run covct as a DICOM node on the hospital network: scanners and the\n"
    "PACS send it CT studies (C-STORE), it keeps every instance it received\n"
    "under DIR (files and an SQLite index), answers C-ECHO, and lets\n"
    "viewers query and retrieve what it holds (C-FIND, C-MOVE to a --peer,\n"
    "C-GET; patient and study root).  An instance is acknowledged with\n"
    "Success only once it is safely on disk and in the index: a power cut\n"
    "or a crash loses nothing that was acknowledged.  Stop it with Ctrl-C\n"
    "or SIGTERM: it finishes the instances in flight, then exits.\n"
    "\n"
    "Options (each can also be given in the --config file):\n"
    "  --data DIR               where instances and the index are kept\n"
    "                           (created if missing)\n"
    "  --dicom-port N           TCP port for DICOM (default 11112; 104 needs\n"
    "                           root)\n"
    "  --ae TITLE               covct's AE title; senders must call it by\n"
    "                           this name (default COVCT)\n"
    "  --bind ADDRESS           listen on this address only (default all)\n"
    "  --allow AE[@HOST]        accept associations only from this calling\n"
    "                           AE title (from this host); repeatable;\n"
    "                           default: anyone who calls covct's AE title\n"
    "  --peer AE@HOST:PORT      a DICOM node covct may send to: C-MOVE\n"
    "                           destinations (repeatable)\n"
    "  --send-results-to AE     send each analysis's results (DICOM SEG, SR,\n"
    "                           key images) to this --peer, e.g. the PACS\n"
    "  --settle S               a series is complete when nothing arrived\n"
    "                           for S seconds (default 30); then chest CT\n"
    "                           series are analysed automatically\n"
    "  --min-slices N           CT series with fewer images are not\n"
    "                           analysed (default 20)\n"
    "  --no-analysis            store only, analyse nothing (in the config\n"
    "                           file: 'no-analysis = yes')\n"
    "  --max-associations N     associations served at once (default 32);\n"
    "                           more are refused as 'local limit exceeded'\n"
    "  --max-pdu BYTES          largest PDU covct receives (default 262144)\n"
    "  --idle-timeout S         abort an association silent this long\n"
    "                           (default 300)\n"
    "  --tls-cert FILE          DICOM over TLS (TLS 1.2+) on the DICOM port\n"
    "  --tls-key FILE           and to every peer: covct's certificate and\n"
    "                           private key (PEM)\n"
    "  --tls-ca FILE            CA certificates (PEM) peers' certificates\n"
    "                           must be signed by; without it peers are not\n"
    "                           verified\n"
    "  --http-port N            also serve the web pages, the REST API and\n"
    "                           DICOMweb (/dicom-web/) on this port (0: any\n"
    "                           free port); HTTPS with --http-tls-cert/\n"
    "                           --http-tls-key, or else with --tls-cert/\n"
    "                           --tls-key when those are given\n"
    "  --http-tls-cert FILE     HTTPS certificate and private key (PEM) for\n"
    "  --http-tls-key FILE      the web port only, e.g. the hospital's web\n"
    "                           certificate while DICOM stays plain inside\n"
    "                           the network\n"
    "  --http-bind ADDRESS      HTTP on this IPv4 address only (default all)\n"
    "  --http-port-file FILE    write the HTTP port to FILE\n"
    "  --web-dir DIR            the pages (default: covct's web/ folder)\n"
    "  --cors-origin URL        let pages of this origin (e.g. an OHIF\n"
    "                           viewer, https://viewer.example) call the API\n"
    "  --port-file FILE         write the port listened on to FILE (useful\n"
    "                           with --dicom-port 0: any free port)\n"
    "  --config FILE            read options from FILE: one per line,\n"
    "                           'name = value' with the names above without\n"
    "                           the dashes (e.g. 'dicom-port = 104'), '#'\n"
    "                           starts a comment; command-line options win\n"
    "  -q, --quiet              log warnings and errors only\n"
    "  -h, --help               this text\n"
    "\n"
    "Automatic analysis: each complete CT series is analysed as by\n"
    "'covct analyze' (report in DIR/results/SERIES_UID/); the results are\n"
    "stored as DICOM (so viewers can query and retrieve them) and sent to\n"
    "--send-results-to.  Jobs survive restarts; a failed analysis is\n"
    "retried after 1, 4 and 16 minutes, then recorded with its reason.\n"
    "\n"
    "Log: one line per association (who, what was accepted, how many\n"
    "instances, how it ended) and per job on standard error.\n"
    "Check the node from another machine with dcmtk's 'echoscu HOST PORT\n"
    "-aec TITLE' or 'covct echo TITLE@HOST:PORT'.\n";

int covct_cmd_serve(int argc, char **argv);

#define MAX_ALLOW 64
#define MAX_PEERS 64

typedef struct serve_opts {
    const char *data;
    const char *ae;
    const char *bind;
    const char *port_file;
    const char *results_to;
    const char *tls_cert, *tls_key, *tls_ca;
    const char *http_tls_cert, *http_tls_key;
    double settle;
    long min_slices;
    int no_analysis;
    const char *allow[MAX_ALLOW];
    size_t n_allow;
    covct_net_peer peers[MAX_PEERS];
    size_t n_peers;
    long port, max_assoc, max_pdu, idle;
    int quiet;
    long http_port; /* -1: no web service */
    const char *http_bind, *http_port_file, *web_dir, *cors_origin;
} serve_opts;

static void log_line(covct_log_level level, const char *msg, void *user)
{
    (void)user;
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    static const char *names[] = {"debug", "info", "warning", "error"};
    fprintf(stderr, "%s covct %s: %s\n", ts, names[level], msg);
}

static int parse_long(const char *name, const char *v, long lo, long hi,
                      long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < lo || x > hi) {
        covct_cli_error("--%s: '%s' is not a number from %ld to %ld", name, v,
                        lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

/* One option (name without dashes); 0 ok, -1 bad. */
static int set_opt(serve_opts *o, const char *name, const char *v)
{
    if (!strcmp(name, "data"))
        o->data = v;
    else if (!strcmp(name, "ae"))
        o->ae = v;
    else if (!strcmp(name, "bind"))
        o->bind = v;
    else if (!strcmp(name, "port-file"))
        o->port_file = v;
    else if (!strcmp(name, "http-port"))
        return parse_long(name, v, 0, 65535, &o->http_port);
    else if (!strcmp(name, "http-bind"))
        o->http_bind = v;
    else if (!strcmp(name, "http-port-file"))
        o->http_port_file = v;
    else if (!strcmp(name, "web-dir"))
        o->web_dir = v;
    else if (!strcmp(name, "cors-origin"))
        o->cors_origin = v;
    else if (!strcmp(name, "no-analysis")) {
        if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"))
            o->no_analysis = 1;
        else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0"))
            o->no_analysis = 0;
        else {
            covct_cli_error("no-analysis: '%s' is not yes or no", v);
            return -1;
        }
    } else if (!strcmp(name, "tls-cert"))
        o->tls_cert = v;
    else if (!strcmp(name, "tls-key"))
        o->tls_key = v;
    else if (!strcmp(name, "tls-ca"))
        o->tls_ca = v;
    else if (!strcmp(name, "http-tls-cert"))
        o->http_tls_cert = v;
    else if (!strcmp(name, "http-tls-key"))
        o->http_tls_key = v;
    else if (!strcmp(name, "send-results-to"))
        o->results_to = v;
    else if (!strcmp(name, "min-slices"))
        return parse_long(name, v, 1, 100000, &o->min_slices);
    else if (!strcmp(name, "settle")) {
        long x;
        if (parse_long(name, v, 0, 86400, &x))
            return -1;
        o->settle = (double)x;
    }
    else if (!strcmp(name, "dicom-port"))
        return parse_long(name, v, 0, 65535, &o->port);
    else if (!strcmp(name, "max-associations"))
        return parse_long(name, v, 1, 1000, &o->max_assoc);
    else if (!strcmp(name, "max-pdu"))
        return parse_long(name, v, 4096, 16 << 20, &o->max_pdu);
    else if (!strcmp(name, "idle-timeout"))
        return parse_long(name, v, 1, 86400, &o->idle);
    else if (!strcmp(name, "allow")) {
        if (o->n_allow == MAX_ALLOW) {
            covct_cli_error("--allow: at most %d entries", MAX_ALLOW);
            return -1;
        }
        o->allow[o->n_allow++] = v;
    } else if (!strcmp(name, "peer")) {
        if (o->n_peers == MAX_PEERS) {
            covct_cli_error("--peer: at most %d peers", MAX_PEERS);
            return -1;
        }
        covct_error err = {0};
        if (covct_net_peer_parse(v, &o->peers[o->n_peers], &err)) {
            covct_cli_error("--peer: %s", err.msg);
            return -1;
        }
        o->n_peers++;
    } else {
        covct_cli_error("unknown option '%s' (see covct serve --help)", name);
        return -1;
    }
    return 0;
}

/* Read FILE's 'name = value' lines; the strings are kept for the process
 * lifetime (freed at exit). */
static int load_config(serve_opts *o, const char *path, char **keep)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        covct_cli_error("cannot read config file %s: %s", path,
                        strerror(errno));
        return -1;
    }
    size_t cap = 0, len = 0;
    char *all = NULL;
    char line[1024];
    int lineno = 0, rc = 0;
    /* First pass: slurp, so that value pointers stay valid. */
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *p = realloc(all, cap);
            if (!p) {
                free(all);
                fclose(f);
                covct_cli_error("out of memory");
                return -1;
            }
            all = p;
        }
        memcpy(all + len, line, n);
        len += n;
        all[len] = '\0';
    }
    fclose(f);
    *keep = all;
    char *save = NULL;
    for (char *l = all ? strtok_r(all, "\n", &save) : NULL; l && !rc;
         l = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *hash = strchr(l, '#');
        if (hash)
            *hash = '\0';
        char *k = l + strspn(l, " \t\r");
        if (!*k)
            continue;
        char *ke = k + strcspn(k, " \t=\r");
        char *v = ke + strspn(ke, " \t");
        if (*v == '=')
            v++;
        v += strspn(v, " \t");
        *ke = '\0';
        char *ve = v + strlen(v);
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r'))
            *--ve = '\0';
        if (!*v) {
            covct_cli_error("%s: line %d: '%s' has no value", path, lineno,
                            k);
            rc = -1;
        } else if (set_opt(o, k, v)) {
            covct_cli_error("%s: line %d: bad option", path, lineno);
            rc = -1;
        }
    }
    return rc;
}

static uint16_t on_store(void *user, covct_net_store_request *rq,
                         char *comment, size_t comment_size)
{
    covct_store *st = user;
    covct_error err = {0};
    covct_store_result res;
    covct_store_info info;
    covct_rc rc = covct_store_put(st, rq->file, rq->len,
                                  rq->assoc->calling_ae, &res, &info, &err);
    rq->file = NULL;
    if (rc) {
        covct_log(COVCT_LOG_WARN, "association %llu: instance %s refused: %s",
                  (unsigned long long)rq->assoc->id, rq->sop_instance_uid,
                  err.msg);
        snprintf(comment, comment_size, "%.64s", err.msg);
        if (rc == COVCT_ERR_CORRUPT)
            return COVCT_DIMSE_CANNOT_UNDERSTAND;
        if (rc == COVCT_ERR_IO || rc == COVCT_ERR_NOMEM ||
            rc == COVCT_ERR_LIMIT)
            return COVCT_DIMSE_OUT_OF_RESOURCES;
        return COVCT_DIMSE_PROCESSING_FAILURE;
    }
    if (res == COVCT_STORE_DUPLICATE)
        covct_log(COVCT_LOG_WARN,
                  "association %llu: instance %s was already stored with "
                  "different content; the new copy is kept under "
                  "duplicates/",
                  (unsigned long long)rq->assoc->id, rq->sop_instance_uid);
    if (strcmp(info.sop_instance_uid, rq->sop_instance_uid) != 0 ||
        strcmp(info.sop_class_uid, rq->sop_class_uid) != 0) {
        snprintf(comment, comment_size,
                 "data set SOP class/instance differ from the command");
        return COVCT_DIMSE_WARN_MISMATCH;
    }
    return COVCT_DIMSE_SUCCESS;
}

/* What the node's peers read is identifiable data: each C-FIND, C-MOVE
 * and C-GET is an entry in the site's audit log, in the peer's name. */
typedef struct query_ctx {
    covct_store *store;
    covct_site *site;
    pthread_mutex_t lock; /* a covct_site is used by one thread at a time */
} query_ctx;

static void audit_query(query_ctx *qc, const covct_net_query *q,
                        const char *action, size_t count, uint16_t status)
{
    char actor[128], level[17] = "", detail[256];
    snprintf(actor, sizeof actor, "dicom:%s@%s", q->assoc->calling_ae,
             q->assoc->peer_host);
    covct_dcm_get_string(q->identifier, 0x00080052, 0, level, sizeof level,
                         NULL);
    /* the level is a code string from the peer: cleaned before it goes
     * into JSON text */
    for (char *c = level; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
            *c = '_';
    snprintf(detail, sizeof detail,
             "{\"model\":\"%s\",\"level\":\"%s\",\"results\":%zu,"
             "\"status\":%u}",
             q->patient_root ? "patient" : "study", level, count,
             (unsigned)status);
    covct_error err = {0};
    pthread_mutex_lock(&qc->lock);
    covct_site_set_actor(qc->site, actor, "dicom-peer");
    if (covct_audit(qc->site, action, "store", detail, &err))
        covct_log(COVCT_LOG_ERROR, "association %llu: audit log: %s",
                  (unsigned long long)q->assoc->id, err.msg);
    pthread_mutex_unlock(&qc->lock);
}

typedef struct count_state {
    covct_net_emit_fn emit;
    covct_net_add_fn add;
    void *ctx;
    size_t n;
} count_state;

static covct_rc find_match(void *user, covct_dcm_dataset *m, covct_error *err)
{
    count_state *f = user;
    bool more = f->emit(f->ctx, m);
    covct_dcm_dataset_free(m);
    f->n += more;
    /* Stopping early is not an error of the query. */
    return more ? COVCT_OK : COVCT_ERR(err, COVCT_ERR_NOT_FOUND, "stopped");
}

static uint16_t on_find(void *user, const covct_net_query *q,
                        covct_net_emit_fn emit, void *ctx, char *comment,
                        size_t comment_size)
{
    query_ctx *qc = user;
    count_state f = {emit, NULL, ctx, 0};
    covct_error err = {0};
    covct_rc rc = covct_store_find(qc->store, q->patient_root, q->identifier,
                                   find_match, &f, &err);
    uint16_t status = COVCT_DIMSE_SUCCESS;
    if (rc != COVCT_OK && rc != COVCT_ERR_NOT_FOUND) {
        covct_log(COVCT_LOG_WARN, "association %llu: C-FIND refused: %s",
                  (unsigned long long)q->assoc->id, err.msg);
        snprintf(comment, comment_size, "%.64s", err.msg);
        status = rc == COVCT_ERR_ARG ? COVCT_DIMSE_IDENTIFIER_MISMATCH
                                     : COVCT_DIMSE_UNABLE_TO_PROCESS;
    }
    audit_query(qc, q, "dicom.find", f.n, status);
    return status;
}

static covct_rc count_add(void *ctx, const char *path, const char *sop_class,
                          const char *sop_uid, covct_error *err)
{
    count_state *c = ctx;
    covct_rc rc = c->add(c->ctx, path, sop_class, sop_uid, err);
    c->n += rc == COVCT_OK;
    return rc;
}

static uint16_t on_select(void *user, const covct_net_query *q,
                          covct_net_add_fn add, void *ctx, char *comment,
                          size_t comment_size)
{
    query_ctx *qc = user;
    count_state c = {NULL, add, ctx, 0};
    covct_error err = {0};
    covct_rc rc = covct_store_select(qc->store, q->patient_root,
                                     q->identifier, count_add, &c, &err);
    uint16_t status = COVCT_DIMSE_SUCCESS;
    if (rc != COVCT_OK) {
        covct_log(COVCT_LOG_WARN, "association %llu: retrieve refused: %s",
                  (unsigned long long)q->assoc->id, err.msg);
        snprintf(comment, comment_size, "%.64s", err.msg);
        status = rc == COVCT_ERR_ARG ? COVCT_DIMSE_IDENTIFIER_MISMATCH
                                     : COVCT_DIMSE_UNABLE_TO_PROCESS;
    }
    audit_query(qc, q, "dicom.retrieve", c.n, status);
    return status;
}

int covct_cmd_serve(int argc, char **argv)
{
    serve_opts o;
    memset(&o, 0, sizeof o);
    o.ae = "COVCT";
    o.port = 11112;
    o.settle = 30;
    o.min_slices = 20;
    o.http_port = -1;
    char *config_text = NULL;
    int status = COVCT_EXIT_USAGE;
    /* The config file first, so that command-line options win. */
    for (int i = 1; i < argc; i++) {
        if (covct_cli_is_help(argv[i])) {
            fputs(help, stdout);
            return COVCT_EXIT_OK;
        }
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) {
                covct_cli_error("--config needs a file name");
                return COVCT_EXIT_USAGE;
            }
            if (config_text) {
                covct_cli_error("--config given twice");
                goto out;
            }
            if (load_config(&o, argv[i + 1], &config_text))
                goto out;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o.quiet = 1;
            continue;
        }
        if (!strcmp(a, "--no-analysis")) {
            o.no_analysis = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            covct_cli_error("unexpected argument '%s' (see covct serve "
                            "--help)",
                            a);
            goto out;
        }
        if (i + 1 >= argc) {
            covct_cli_error("%s needs a value", a);
            goto out;
        }
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (set_opt(&o, a + 2, argv[++i]))
            goto out;
    }
    if (!o.data) {
        covct_cli_error("--data DIR is required: the folder where received "
                        "instances are kept");
        goto out;
    }
    if (!covct_net_ae_valid(o.ae)) {
        covct_cli_error("--ae '%s': an AE title has 1 to 16 characters, no "
                        "backslash",
                        o.ae);
        goto out;
    }
    for (size_t i = 0; i < o.n_allow; i++) {
        char ae[32];
        const char *at = strchr(o.allow[i], '@');
        size_t n = at ? (size_t)(at - o.allow[i]) : strlen(o.allow[i]);
        snprintf(ae, sizeof ae, "%.*s", (int)(n < 31 ? n : 31), o.allow[i]);
        if (n > 16 || !covct_net_ae_valid(ae) || (at && !at[1])) {
            covct_cli_error("--allow '%s': expected AE or AE@HOST",
                            o.allow[i]);
            goto out;
        }
    }
    if ((o.tls_cert || o.tls_key || o.tls_ca) && !(o.tls_cert && o.tls_key)) {
        covct_cli_error("TLS needs both --tls-cert and --tls-key");
        goto out;
    }
    if (!o.http_tls_cert != !o.http_tls_key) {
        covct_cli_error("HTTPS needs both --http-tls-cert and --http-tls-key");
        goto out;
    }
    if (o.http_tls_cert && o.http_port < 0) {
        covct_cli_error("--http-tls-cert is for the web port: add "
                        "--http-port N");
        goto out;
    }
    /* the web port's certificate: its own, else the DICOM node's */
    const char *web_cert = o.http_tls_cert ? o.http_tls_cert : o.tls_cert,
               *web_key = o.http_tls_cert ? o.http_tls_key : o.tls_key;
    if (o.tls_cert) {
        covct_error terr = {0};
        if (covct_net_tls_init(o.tls_cert, o.tls_key, o.tls_ca, &terr)) {
            covct_cli_error("%s", terr.msg);
            status = COVCT_EXIT_FAIL;
            goto out;
        }
        for (size_t i = 0; i < o.n_peers; i++)
            o.peers[i].tls = true;
    }
    const covct_net_peer *results_peer = NULL;
    if (o.results_to) {
        for (size_t i = 0; i < o.n_peers && !results_peer; i++)
            if (!strcmp(o.peers[i].ae, o.results_to))
                results_peer = &o.peers[i];
        if (!results_peer) {
            covct_cli_error("--send-results-to %s: no --peer %s@HOST:PORT "
                            "says where %s is",
                            o.results_to, o.results_to, o.results_to);
            goto out;
        }
    }
    char exe[4096];
    ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (el <= 0) {
        covct_cli_error("cannot find the covct program (/proc/self/exe)");
        goto out;
    }
    exe[el] = '\0';
    status = COVCT_EXIT_FAIL;
    covct_log_set_handler(log_line, NULL);
    if (o.quiet)
        covct_log_set_level(COVCT_LOG_WARN);

    /* Signals are taken by sigwait() below, not by the worker threads. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    covct_error err = {0};
    covct_store *store = NULL;
    query_ctx qc = {.store = NULL, .site = NULL};
    pthread_mutex_init(&qc.lock, NULL);
    if (covct_store_open(o.data, &store, &err)) {
        covct_cli_error("%s", err.msg);
        goto out;
    }
    /* the case database's audit log records what peers read */
    if (covct_site_open(o.data, &qc.site, &err)) {
        covct_cli_error("%s", err.msg);
        covct_store_close(store);
        goto out;
    }
    qc.store = store;
    covct_net_server_config cfg = {
        .ae_title = o.ae,
        .bind_host = o.bind,
        .port = (uint16_t)o.port,
        .allowed = o.allow,
        .n_allowed = o.n_allow,
        .max_associations = (unsigned)o.max_assoc,
        .max_pdu = (uint32_t)o.max_pdu,
        .idle_s = (unsigned)o.idle,
        .on_store = on_store,
        .store_user = store,
        .on_find = on_find,
        .on_select = on_select,
        .query_user = &qc,
        .peers = o.peers,
        .n_peers = o.n_peers,
        .tls = o.tls_cert != NULL,
    };
    covct_net_server *srv = NULL;
    if (covct_net_server_start(&cfg, &srv, &err)) {
        covct_cli_error("%s", err.msg);
        covct_store_close(store);
        goto out;
    }
    uint16_t port = covct_net_server_port(srv);
    uint64_t count = 0;
    covct_store_count(store, &count, NULL);
    covct_log(COVCT_LOG_INFO,
              "DICOM node %s listening on port %u%s; %llu instances in %s",
              o.ae, port, o.tls_cert ? " (TLS)" : "",
              (unsigned long long)count, o.data);
    if (o.port_file) {
        FILE *pf = fopen(o.port_file, "w");
        if (!pf || fprintf(pf, "%u\n", port) < 0 || fclose(pf)) {
            covct_cli_error("cannot write %s: %s", o.port_file,
                            strerror(errno));
            covct_net_server_stop(srv, 0);
            covct_store_close(store);
            goto out;
        }
    }
    covct_http_server *web = NULL;
    if (o.http_port >= 0) {
        covct_http_config hc = {
            .bind_host = o.http_bind,
            .port = (uint16_t)o.http_port,
            .data_dir = o.data,
            .store = store,
            .web_dir = o.web_dir ? o.web_dir : COVCT_WEB_DEFAULT,
            .tls_cert = web_cert,
            .tls_key = web_key,
            .cors_origin = o.cors_origin,
            .ae_title = o.ae,
        };
        if (covct_http_start(&hc, &web, &err)) {
            covct_cli_error("%s", err.msg);
            covct_net_server_stop(srv, 0);
            covct_store_close(store);
            goto out;
        }
        covct_log(COVCT_LOG_INFO,
                  "web service on %s://%s:%u/ (pages, /api/, /dicom-web/)",
                  web_cert ? "https" : "http",
                  o.http_bind ? o.http_bind : "0.0.0.0",
                  covct_http_port(web));
        if (o.http_port_file) {
            FILE *pf = fopen(o.http_port_file, "w");
            if (!pf || fprintf(pf, "%u\n", covct_http_port(web)) < 0 ||
                fclose(pf)) {
                covct_cli_error("cannot write %s: %s", o.http_port_file,
                                strerror(errno));
                covct_http_stop(web);
                covct_net_server_stop(srv, 0);
                covct_store_close(store);
                goto out;
            }
        }
    }
    serve_jobs *jobs = NULL;
    if (!o.no_analysis) {
        serve_jobs_config jc = {
            .store = store,
            .exe = exe,
            .ae = o.ae,
            .results_peer = results_peer,
            .settle_s = o.settle,
            .min_instances = (unsigned)o.min_slices,
            .max_attempts = 4,
            .retry_base_s = 60,
        };
        if (serve_jobs_start(&jc, &jobs)) {
            covct_cli_error("cannot start the analysis thread");
            covct_net_server_stop(srv, 0);
            covct_store_close(store);
            goto out;
        }
    }
    int sig = 0;
    while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP)
        covct_log(COVCT_LOG_INFO, "SIGHUP ignored (stop with SIGTERM)");
    covct_log(COVCT_LOG_INFO, "%s received: finishing the instances in "
                              "flight, then stopping",
              sig == SIGINT ? "SIGINT" : "SIGTERM");
    covct_http_stop(web);
    covct_net_server_stop(srv, 10);
    serve_jobs_stop(jobs);
    covct_store_count(store, &count, NULL);
    covct_store_close(store);
    covct_log(COVCT_LOG_INFO, "stopped; %llu instances in %s",
              (unsigned long long)count, o.data);
    status = COVCT_EXIT_OK;
out:
    covct_site_close(qc.site);
    pthread_mutex_destroy(&qc.lock);
    covct_net_tls_cleanup();
    free(config_text);
    return status;
}
