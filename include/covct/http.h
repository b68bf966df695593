/*
 * covct http: the web face of a site (issue 7): DICOMweb (PS3.18) under
 * /dicom-web/, a JSON REST API under /api/, and the static pages, served
 * with libmicrohttpd next to the DICOM port (docs/internals/http.md).
 *
 * Every route is one row of the router table (src/http/routes.c), which
 * names the permission of the case database's role table it needs
 * (include/covct/site.h); a route without one is public (the login page,
 * static files).  Requests carry a session cookie (pages) or a Bearer
 * token (scripts); a patient-data route answers 401 without them and 403
 * when the role lacks the permission, and what it serves is written to
 * the site's audit log.
 */
#ifndef COVCT_HTTP_H
#define COVCT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"
#include "covct/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct covct_http_config {
    const char *bind_host;   /* NULL: all addresses */
    uint16_t port;           /* 0: any free port (tests) */
    const char *data_dir;    /* the site folder (case database, audit) */
    covct_store *store;      /* the DICOM store, shared with the node */
    const char *web_dir;     /* the pages (HTML, CSS, JS); NULL: none */
    const char *tls_cert;    /* PEM files: HTTPS when both are set */
    const char *tls_key;
    size_t max_body;         /* larger request bodies: 413 (0: 512 MiB) */
    unsigned timeout_s;      /* idle connection closed after (0: 30) */
    unsigned threads;        /* worker threads (0: 4) */
    const char *cors_origin; /* Access-Control-Allow-Origin, e.g. an OHIF
                                viewer's address; NULL: no CORS */
    const char *ae_title;    /* our AE title, for STOW-RS logs */
} covct_http_config;

typedef struct covct_http_server covct_http_server;

covct_rc covct_http_start(const covct_http_config *cfg,
                          covct_http_server **out, covct_error *err);
/* The port actually bound (useful with port 0). */
uint16_t covct_http_port(const covct_http_server *s);
/* Stop accepting, finish the requests in flight, free. */
void covct_http_stop(covct_http_server *s);

/* The router table, for tests and docs: method, path pattern ({name}
 * for a path segment), the permission needed (NULL: public), and whether
 * the route serves patient data (audited). */
typedef struct covct_http_route_info {
    const char *method;
    const char *pattern;
    const char *permission;
    bool patient_data;
    const char *summary;
} covct_http_route_info;
size_t covct_http_route_count(void);
const covct_http_route_info *covct_http_route_at(size_t i);

/* A new API token for a user (printed once; only its SHA-256 is kept). */
covct_rc covct_http_token_create(const char *data_dir, const char *user,
                                 char token[80], covct_error *err);

#ifdef __cplusplus
}
#endif

#endif
