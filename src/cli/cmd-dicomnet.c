/* covct echo and covct send: the DICOM requestor side from the command
 * line (C-ECHO to check a connection, C-STORE of files and folders). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "covct/net.h"

int covct_cmd_echo(int argc, char **argv);
int covct_cmd_send(int argc, char **argv);

static const char echo_help[] =
    "Usage: covct echo AE@HOST:PORT [OPTIONS]\n"
    "\n"
    "Check that a DICOM node (a PACS, a scanner, another covct) answers:\n"
    "opens an association, sends C-ECHO, prints the answer and the round\n"
    "trip time.  Exit status 0 if the node answered Success.\n"
    "\n"
    "Options:\n"
    "  --ae TITLE       our (calling) AE title (default COVCT)\n"
    "  --timeout S      seconds to wait for the node (default 30)\n"
    "  --tls-cert FILE  connect with TLS: our certificate (PEM),\n"
    "  --tls-key FILE   its private key, and\n"
    "  --tls-ca FILE    the CA certificates the node's must be signed by\n"
    "  -h, --help       this text\n";

static const char send_help[] =
    "Usage: covct send AE@HOST:PORT FILE|FOLDER... [OPTIONS]\n"
    "\n"
    "Send DICOM files (folders are searched recursively) to a DICOM node\n"
    "with C-STORE, on one association, as they are encoded (no\n"
    "conversion: the node must accept each file's transfer syntax).\n"
    "Prints one line per refused file and a summary.  Exit status 0 if\n"
    "every file was stored (Success or Warning).\n"
    "\n"
    "Options:\n"
    "  --ae TITLE       our (calling) AE title (default COVCT)\n"
    "  --timeout S      seconds to wait for the node (default 30)\n"
    "  --tls-cert FILE  connect with TLS: our certificate (PEM),\n"
    "  --tls-key FILE   its private key, and\n"
    "  --tls-ca FILE    the CA certificates the node's must be signed by\n"
    "  -q, --quiet      no progress lines\n"
    "  -h, --help       this text\n";

typedef struct net_args {
    const char *tls_cert, *tls_key, *tls_ca;
    const char *peer;
    const char *ae;
    long timeout;
    int quiet;
    char **paths;
    int n_paths;
} net_args;

static int parse_args(int argc, char **argv, const char *help, bool files,
                      net_args *a)
{
    memset(a, 0, sizeof *a);
    a->ae = "COVCT";
    a->timeout = 30;
    a->paths = calloc((size_t)argc + 1, sizeof *a->paths);
    if (!a->paths) {
        covct_cli_error("out of memory");
        return COVCT_EXIT_FAIL;
    }
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (covct_cli_is_help(s)) {
            fputs(help, stdout);
            return -1;
        }
        if (!strcmp(s, "-q") || !strcmp(s, "--quiet")) {
            a->quiet = 1;
        } else if (!strcmp(s, "--tls-cert") || !strcmp(s, "--tls-key") ||
                   !strcmp(s, "--tls-ca")) {
            if (i + 1 >= argc) {
                covct_cli_error("%s needs a file", s);
                return COVCT_EXIT_USAGE;
            }
            const char **dst = s[6] == 'c' && s[7] == 'e' ? &a->tls_cert
                               : s[6] == 'k'              ? &a->tls_key
                                                          : &a->tls_ca;
            *dst = argv[++i];
        } else if (!strcmp(s, "--ae") || !strcmp(s, "--timeout")) {
            if (i + 1 >= argc) {
                covct_cli_error("%s needs a value", s);
                return COVCT_EXIT_USAGE;
            }
            const char *v = argv[++i];
            if (!strcmp(s, "--ae")) {
                a->ae = v;
                if (!covct_net_ae_valid(v)) {
                    covct_cli_error("--ae '%s': an AE title has 1 to 16 "
                                    "characters, no backslash",
                                    v);
                    return COVCT_EXIT_USAGE;
                }
            } else {
                char *end;
                a->timeout = strtol(v, &end, 10);
                if (*end || a->timeout < 1 || a->timeout > 3600) {
                    covct_cli_error("--timeout: '%s' is not a number of "
                                    "seconds from 1 to 3600",
                                    v);
                    return COVCT_EXIT_USAGE;
                }
            }
        } else if (s[0] == '-' && s[1]) {
            covct_cli_error("unknown option '%s'", s);
            return COVCT_EXIT_USAGE;
        } else if (!a->peer) {
            a->peer = s;
        } else if (files) {
            a->paths[a->n_paths++] = argv[i];
        } else {
            covct_cli_error("unexpected argument '%s'", s);
            return COVCT_EXIT_USAGE;
        }
    }
    if (!a->peer) {
        covct_cli_error("name the node as AE@HOST:PORT, e.g. "
                        "PACS@10.0.0.5:104");
        return COVCT_EXIT_USAGE;
    }
    if ((a->tls_cert || a->tls_key || a->tls_ca) &&
        !(a->tls_cert && a->tls_key)) {
        covct_cli_error("TLS needs both --tls-cert and --tls-key");
        return COVCT_EXIT_USAGE;
    }
    if (files && a->n_paths == 0) {
        covct_cli_error("name the files or folders to send");
        return COVCT_EXIT_USAGE;
    }
    return 0;
}

/* The node to talk to, with TLS set up when asked: 0, or an exit status
 * after an error message. */
static int open_peer(const net_args *a, covct_net_peer *peer)
{
    covct_error err = {0};
    if (covct_net_peer_parse(a->peer, peer, &err)) {
        covct_cli_error("%s", err.msg);
        return COVCT_EXIT_USAGE;
    }
    if (a->tls_cert) {
        if (covct_net_tls_init(a->tls_cert, a->tls_key, a->tls_ca, &err)) {
            covct_cli_error("%s", err.msg);
            return COVCT_EXIT_FAIL;
        }
        peer->tls = true;
    }
    return 0;
}

int covct_cmd_echo(int argc, char **argv)
{
    net_args a;
    int rc = parse_args(argc, argv, echo_help, false, &a);
    if (rc) {
        free(a.paths);
        return rc < 0 ? COVCT_EXIT_OK : rc;
    }
    free(a.paths);
    covct_net_peer peer;
    covct_error err = {0};
    if ((rc = open_peer(&a, &peer)))
        return rc;
    static const char *const ts[] = {"1.2.840.10008.1.2.1",
                                     "1.2.840.10008.1.2"};
    covct_net_proposal p = {"1.2.840.10008.1.1", ts, 2};
    double t0 = covct_now();
    covct_net_assoc *as = NULL;
    if (covct_net_connect(&peer, a.ae, &p, 1, (unsigned)a.timeout, &as,
                          &err)) {
        covct_cli_error("%s", err.msg);
        return COVCT_EXIT_FAIL;
    }
    uint16_t status = 0xFFFF;
    if (covct_net_echo(as, &status, &err)) {
        covct_net_abort(as);
        covct_cli_error("%s", err.msg);
        return COVCT_EXIT_FAIL;
    }
    if (covct_net_release(as, &err))
        fprintf(stderr, "covct: warning: %s\n", err.msg);
    printf("%s@%s:%u answered C-ECHO: %s (0x%04X) in %.1f ms\n", peer.ae,
           peer.host, peer.port, covct_dimse_status_kind(status), status,
           (covct_now() - t0) * 1000);
    return status == COVCT_DIMSE_SUCCESS ? COVCT_EXIT_OK : COVCT_EXIT_FAIL;
}

/* ---- send ----------------------------------------------------------------- */
typedef struct file_list {
    char **path;
    size_t n, cap;
} file_list;

static file_list *g_walk;

static int walk_cb(const char *path, const struct stat *sb, int type,
                   struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (type != FTW_F)
        return 0;
    file_list *l = g_walk;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        char **p = realloc(l->path, cap * sizeof *p);
        if (!p)
            return -1;
        l->path = p;
        l->cap = cap;
    }
    l->path[l->n] = strdup(path);
    if (!l->path[l->n])
        return -1;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct send_item {
    char sop_class[65], sop_inst[65], ts[65];
    bool ok;
} send_item;

int covct_cmd_send(int argc, char **argv)
{
    net_args a;
    int rc = parse_args(argc, argv, send_help, true, &a);
    if (rc) {
        free(a.paths);
        return rc < 0 ? COVCT_EXIT_OK : rc;
    }
    covct_net_peer peer;
    covct_error err = {0};
    int status = COVCT_EXIT_FAIL;
    file_list files = {0};
    send_item *items = NULL;
    covct_net_proposal *props = NULL;
    const char *(*ts_of)[3] = NULL;
    if ((rc = open_peer(&a, &peer))) {
        status = rc;
        goto out;
    }
    g_walk = &files;
    for (int i = 0; i < a.n_paths; i++) {
        struct stat st;
        if (stat(a.paths[i], &st)) {
            covct_cli_error("%s: %s", a.paths[i], strerror(errno));
            goto out;
        }
        if (nftw(a.paths[i], walk_cb, 32, FTW_PHYS)) {
            covct_cli_error("%s: cannot list the folder", a.paths[i]);
            goto out;
        }
    }
    qsort(files.path, files.n, sizeof *files.path, cmp_str);
    items = calloc(files.n ? files.n : 1, sizeof *items);
    props = calloc(128, sizeof *props);
    ts_of = calloc(128, sizeof *ts_of);
    if (!items || !props || !ts_of) {
        covct_cli_error("out of memory");
        goto out;
    }
    /* Pass 1: what each file is, to propose one presentation context per
     * (SOP class, transfer syntax). */
    size_t n_props = 0, skipped = 0;
    for (size_t i = 0; i < files.n; i++) {
        uint8_t head[65536];
        int fd = open(files.path[i], O_RDONLY | O_CLOEXEC);
        ssize_t got = fd >= 0 ? read(fd, head, sizeof head) : -1;
        if (fd >= 0)
            close(fd);
        size_t off;
        covct_error_clear(&err);
        if (got < 0 || covct_dcm_meta_peek(head, (size_t)got,
                                           items[i].sop_class,
                                           items[i].sop_inst, items[i].ts,
                                           &off, &err)) {
            fprintf(stderr, "covct: skipped %s: %s\n", files.path[i],
                    got < 0 ? strerror(errno) : err.msg);
            items[i].sop_class[0] = '\0';
            skipped++;
            continue;
        }
        size_t k = 0;
        while (k < n_props &&
               (strcmp(props[k].abstract_syntax, items[i].sop_class) ||
                strcmp(ts_of[k][0], items[i].ts)))
            k++;
        if (k == n_props) {
            if (n_props == 128) {
                covct_cli_error("more than 128 kinds of SOP class and "
                                "transfer syntax: send in smaller groups");
                goto out;
            }
            props[k].abstract_syntax = items[i].sop_class;
            props[k].transfer_syntaxes = ts_of[k];
            props[k].n_transfer_syntaxes =
                covct_net_ts_choices(items[i].ts, ts_of[k]);
            n_props++;
        }
    }
    if (n_props == 0) {
        covct_cli_error("no DICOM files to send");
        goto out;
    }
    covct_net_assoc *as = NULL;
    covct_error_clear(&err);
    if (covct_net_connect(&peer, a.ae, props, n_props, (unsigned)a.timeout,
                          &as, &err)) {
        covct_cli_error("%s", err.msg);
        goto out;
    }
    size_t sent = 0, failed = 0, warned = 0;
    double t0 = covct_now(), last = t0;
    for (size_t i = 0; i < files.n; i++) {
        if (!items[i].sop_class[0])
            continue;
        uint8_t *data = NULL;
        size_t len = 0;
        uint16_t st = 0xFFFF;
        covct_error_clear(&err);
        if (covct_file_read(files.path[i], &data, &len, &err) ||
            covct_net_send_file(as, data, len, &st, &err)) {
            covct_free(data);
            fprintf(stderr, "covct: %s not sent: %s\n", files.path[i],
                    err.msg);
            failed++;
            if (err.rc == COVCT_ERR_IO) {
                /* The association is gone: stop here. */
                covct_net_abort(as);
                as = NULL;
                break;
            }
            continue;
        }
        covct_free(data);
        const char *kind = covct_dimse_status_kind(st);
        if (!strcmp(kind, "Success")) {
            sent++;
        } else if (!strcmp(kind, "Warning")) {
            sent++;
            warned++;
        } else {
            fprintf(stderr, "covct: %s refused by %s: status 0x%04X\n",
                    files.path[i], peer.ae, st);
            failed++;
        }
        double now = covct_now();
        if (!a.quiet && now - last >= 1.0) {
            fprintf(stderr, "covct: sent %zu of %zu files...\n", sent + failed,
                    files.n - skipped);
            last = now;
        }
    }
    if (as && covct_net_release(as, &err))
        fprintf(stderr, "covct: warning: %s\n", err.msg);
    double dt = covct_now() - t0;
    printf("sent %zu files to %s@%s:%u in %.2f s (%.1f files/s); %zu with "
           "a warning, %zu failed, %zu skipped\n",
           sent, peer.ae, peer.host, peer.port, dt,
           dt > 0 ? sent / dt : 0.0, warned, failed, skipped);
    status = failed || skipped || sent == 0 ? COVCT_EXIT_FAIL : COVCT_EXIT_OK;
out:
    for (size_t i = 0; i < files.n; i++)
        free(files.path[i]);
    free(files.path);
    free(items);
    free(props);
    free(ts_of);
    free(a.paths);
    return status;
}
