/* Internals of the http module: requests, responses, routes. */
#ifndef COVCT_HTTP_INT_H
#define COVCT_HTTP_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "covct/http.h"
#include "covct/site.h"

#define HTTP_MAX_PARAMS 6
#define HTTP_MAX_HEADERS 8

typedef struct covct_http_server http_server;

typedef struct http_req {
    http_server *srv;
    void *conn;             /* struct MHD_Connection */
    const char *method;
    const char *path;       /* without the query string */
    const char *params[HTTP_MAX_PARAMS]; /* {name} segments, in order */
    size_t n_params;
    uint8_t *body;          /* NUL-terminated copy; len in body_len */
    size_t body_len;
    char remote[64];        /* client address */
    /* who is asking: set by the router's authentication */
    bool authed;
    bool via_session;       /* cookie (needs the CSRF header to change) */
    char user[65];
    char role[32];
    covct_site *site;       /* this worker thread's case database */
} http_req;

typedef struct http_resp {
    int status;
    covct_buf body;
    const char *type;       /* Content-Type (static string) */
    char type_buf[160];     /* when the type is built (multipart) */
    const char *hdr_name[HTTP_MAX_HEADERS];
    char *hdr_value[HTTP_MAX_HEADERS];
    size_t n_hdr;
    char *file;             /* serve this file instead of body */
} http_resp;

typedef int (*http_handler)(http_req *rq, http_resp *rs);

typedef struct http_route {
    covct_http_route_info info;
    http_handler fn;
} http_route;

struct covct_http_server {
    covct_http_config cfg;
    void *daemon;           /* struct MHD_Daemon */
    uint16_t port;
    char *data_dir;
    char *web_dir;
    /* Per worker thread, opened on first use and closed at stop: one
     * connection to the case database (covct_site) and one to the
     * store's index. */
    pthread_key_t site_key, index_key;
    pthread_mutex_t handles_lock;
    void **sites; /* covct_site * */
    size_t n_sites, cap_sites;
    void **indexes; /* covct_db * */
    size_t n_indexes, cap_indexes;
    struct http_auth *auth; /* sessions, login throttling (auth.c) */
    struct http_worklist *worklist; /* the worklist's copy (worklist.c) */
};

/* ---- responses ----------------------------------------------------------- */
/* A JSON error {"error": message} with `status`; returns 0. */
int http_error(http_resp *rs, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Add a response header (value copied). */
void http_header(http_resp *rs, const char *name, const char *value);
/* The body as JSON text from a cJSON tree (deleted). */
int http_json(http_resp *rs, int status, cJSON *json);
/* 201 Created with {"id": id}: what every POST that makes a record
 * answers. */
int http_created(http_resp *rs, int64_t id);

/* ---- requests ------------------------------------------------------------ */
const char *http_query(const http_req *rq, const char *key);
const char *http_header_in(const http_req *rq, const char *name);
/* Every value of a repeated query key (includefield=a&includefield=b, or
 * one value with commas), into out; returns how many. */
size_t http_query_all(const http_req *rq, const char *key,
                      const char **out, size_t cap);

/* The case database of this worker thread (opened on first use). */
covct_site *http_site(http_server *srv, covct_error *err);
/* This worker thread's read connection to the store's index in *db (not
 * to be closed by the caller); COVCT_ERR_NOT_FOUND without a store. */
covct_rc http_index(http_server *srv, covct_db **db, covct_error *err);

/* Audit a read of patient data (coalesced: one entry per user, route and
 * object per minute) or a change (always). */
void http_audit(http_req *rq, const char *action, const char *object,
                const char *detail_json);

/* ---- routing and authentication (routes.c, auth.c) ---------------------- */
int http_dispatch(http_req *rq, http_resp *rs);

struct http_auth *http_auth_new(void);
void http_auth_free(struct http_auth *a);
/* Identify the caller from a session cookie or a Bearer token; false when
 * neither is valid. */
bool http_authenticate(http_req *rq);
/* A session request that changes something must carry the session's
 * CSRF token in X-CSRF-Token. */
bool http_csrf_ok(http_req *rq);

int api_login(http_req *rq, http_resp *rs);
int api_logout(http_req *rq, http_resp *rs);
int api_me(http_req *rq, http_resp *rs);

/* ---- handlers ------------------------------------------------------------ */
/* Page size of the JSON lists: default and most (limit=). */
#define HTTP_PAGE_DEFAULT 50
#define HTTP_PAGE_MAX 500
/* A query parameter as a number in [lo, hi] (clamped), or dflt when it
 * is absent or not a number. */
long http_query_long(const http_req *rq, const char *key, long dflt, long lo,
                     long hi);
/* Whether the index has the analysis job table (a store opened by
 * covct serve with analysis has it; others may not). */
bool http_index_has_jobs(covct_db *db);
/* The worklist's in-memory copy of the index, one per server
 * (worklist.c). */
typedef struct http_worklist http_worklist;
http_worklist *http_worklist_new(void);
void http_worklist_free(http_worklist *wl);
int api_worklist(http_req *rq, http_resp *rs);
int api_study(http_req *rq, http_resp *rs);
int api_report(http_req *rq, http_resp *rs);
int api_jobs(http_req *rq, http_resp *rs);
int api_cases(http_req *rq, http_resp *rs);
int api_labels(http_req *rq, http_resp *rs);
int api_projects(http_req *rq, http_resp *rs);
int api_audit(http_req *rq, http_resp *rs);
int api_audit_verify(http_req *rq, http_resp *rs);
int api_users(http_req *rq, http_resp *rs);
int api_exports(http_req *rq, http_resp *rs);
int api_project_create(http_req *rq, http_resp *rs);
int api_project_show(http_req *rq, http_resp *rs);
int api_project_approve(http_req *rq, http_resp *rs);
int api_project_agreement(http_req *rq, http_resp *rs);
int api_project_consent(http_req *rq, http_resp *rs);
int api_export_request(http_req *rq, http_resp *rs);
int api_export_run(http_req *rq, http_resp *rs);
int api_volume(http_req *rq, http_resp *rs);
int api_mask_get(http_req *rq, http_resp *rs);
int api_mask_post(http_req *rq, http_resp *rs);
int api_agreement(http_req *rq, http_resp *rs);
int api_clinical_post(http_req *rq, http_resp *rs);

/* A UID as a path segment may carry: 1-64 digits and dots. */
bool http_uid_ok(const char *u);
/* The i-th {name} path segment, up to its '/', into buf. */
const char *http_param(const http_req *rq, size_t i, char *buf, size_t cap);

int dw_qido_studies(http_req *rq, http_resp *rs);
int dw_qido_series(http_req *rq, http_resp *rs);
int dw_qido_instances(http_req *rq, http_resp *rs);
int dw_wado_study(http_req *rq, http_resp *rs);
int dw_wado_series(http_req *rq, http_resp *rs);
int dw_wado_instance(http_req *rq, http_resp *rs);
int dw_wado_metadata(http_req *rq, http_resp *rs);
int dw_wado_frames(http_req *rq, http_resp *rs);
int dw_wado_rendered(http_req *rq, http_resp *rs);
int dw_wado_bulk(http_req *rq, http_resp *rs);
int dw_stow(http_req *rq, http_resp *rs);

int static_file(http_req *rq, http_resp *rs);

#endif
