/* The router table: every route of the web service in one place, with the
 * permission it needs (include/covct/site.h's role table) and whether it
 * serves patient data (audited).  tests/test_http.c walks this table and
 * proves each protected route answers 401 without credentials and 403
 * with a role that lacks the permission. */
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http/http_int.h"

#define READ "read.identifiable"
#define DEID "read.deidentified"

static const http_route routes[] = {
    /* session and identity */
    { { "POST", "/api/login", NULL, false, "log in: {user, password}" },
      api_login },
    { { "POST", "/api/logout", NULL, false, "log out" }, api_logout },
    { { "GET", "/api/me", DEID, false, "who am I, what may I do" }, api_me },
    /* worklist, studies, reports */
    { { "GET", "/api/worklist", READ, true,
        "studies with AI status, most severe first" },
      api_worklist },
    { { "GET", "/api/studies/{study}", DEID, true,
        "a study: series, analyses (identity only for read.identifiable)" },
      api_study },
    { { "GET", "/api/series/{series}/report", DEID, true,
        "the analysis report (JSON; identity only for read.identifiable)" },
      api_report },
    { { "GET", "/api/series/{series}/volume", DEID, true,
        "the CT volume, int16 HU (X-Covct-Dims, X-Covct-Spacing)" },
      api_volume },
    { { "GET", "/api/series/{series}/mask/{kind}", DEID, true,
        "a label version as a uint8 volume (lesions, lobes, lungs)" },
      api_mask_get },
    { { "POST", "/api/series/{series}/mask/{kind}", "label.write", true,
        "save a new label version (uint8 volume body)" },
      api_mask_post },
    { { "GET", "/api/series/{series}/agreement", DEID, true,
        "Dice of the two readers' lesion masks" },
      api_agreement },
    { { "POST", "/api/cases/{case}/clinical", "case.clinical", true,
        "save a clinical label version of a case" },
      api_clinical_post },
    { { "GET", "/api/jobs", "study.analyze", false,
        "analysis jobs and their state" },
      api_jobs },
    /* the case database */
    { { "GET", "/api/cases", READ, true, "cases with their label state" },
      api_cases },
    { { "GET", "/api/series/{series}/labels", DEID, true,
        "label versions of a series" },
      api_labels },
    { { "GET", "/api/projects", DEID, false,
        "projects, approvals, consent counts" },
      api_projects },
    { { "POST", "/api/projects", "project.manage", false,
        "create a research project" },
      api_project_create },
    { { "GET", "/api/projects/{project}", DEID, false,
        "a project: approvals, agreements, consent counts" },
      api_project_show },
    { { "POST", "/api/projects/{project}/approvals", "approval.record",
        false, "record an ethics approval" },
      api_project_approve },
    { { "POST", "/api/projects/{project}/agreements", "approval.record",
        false, "record a signed data use agreement" },
      api_project_agreement },
    { { "POST", "/api/projects/{project}/consents", "consent.record", true,
        "record a patient's consent (given, withdrawn, waived)" },
      api_project_consent },
    { { "GET", "/api/exports", DEID, false,
        "export requests and exports, newest first" },
      api_exports },
    { { "POST", "/api/projects/{project}/exports", "export.request", false,
        "ask for a research export of a project" },
      api_export_request },
    { { "POST", "/api/exports/{id}/run", "export.run", true,
        "write a requested export (approval, scope, consent enforced)" },
      api_export_run },
    { { "GET", "/api/users", "user.manage", false, "users and roles" },
      api_users },
    { { "GET", "/api/audit", "audit.read", false,
        "audit log entries (newest first)" },
      api_audit },
    { { "GET", "/api/audit/verify", "audit.read", false,
        "check the audit chain" },
      api_audit_verify },
    /* DICOMweb, PS3.18 */
    { { "GET", "/dicom-web/studies", READ, true, "QIDO-RS studies" },
      dw_qido_studies },
    { { "GET", "/dicom-web/studies/{study}/series", READ, true,
        "QIDO-RS series of a study" },
      dw_qido_series },
    { { "GET", "/dicom-web/series", READ, true, "QIDO-RS series" },
      dw_qido_series },
    { { "GET", "/dicom-web/studies/{study}/series/{series}/instances", READ,
        true, "QIDO-RS instances of a series" },
      dw_qido_instances },
    { { "GET", "/dicom-web/studies/{study}/instances", READ, true,
        "QIDO-RS instances of a study" },
      dw_qido_instances },
    { { "GET", "/dicom-web/instances", READ, true, "QIDO-RS instances" },
      dw_qido_instances },
    { { "GET", "/dicom-web/studies/{study}", READ, true,
        "WADO-RS a study (multipart DICOM)" },
      dw_wado_study },
    { { "GET", "/dicom-web/studies/{study}/metadata", READ, true,
        "WADO-RS study metadata (DICOM JSON)" },
      dw_wado_metadata },
    { { "GET", "/dicom-web/studies/{study}/series/{series}", READ, true,
        "WADO-RS a series (multipart DICOM)" },
      dw_wado_series },
    { { "GET", "/dicom-web/studies/{study}/series/{series}/metadata", READ,
        true, "WADO-RS series metadata (DICOM JSON)" },
      dw_wado_metadata },
    { { "GET",
        "/dicom-web/studies/{study}/series/{series}/instances/{instance}",
        READ, true, "WADO-RS an instance" },
      dw_wado_instance },
    { { "GET",
        "/dicom-web/studies/{study}/series/{series}/instances/{instance}/"
        "metadata",
        READ, true, "WADO-RS instance metadata" },
      dw_wado_metadata },
    { { "GET",
        "/dicom-web/studies/{study}/series/{series}/instances/{instance}/"
        "frames/{frames}",
        READ, true, "WADO-RS frames (uncompressed pixel data)" },
      dw_wado_frames },
    { { "GET",
        "/dicom-web/studies/{study}/series/{series}/instances/{instance}/"
        "bulk/{*}",
        READ, true, "WADO-RS bulk data of an element (metadata's URIs)" },
      dw_wado_bulk },
    { { "GET",
        "/dicom-web/studies/{study}/series/{series}/instances/{instance}/"
        "rendered",
        READ, true, "WADO-RS rendered PNG/JPEG with windowing" },
      dw_wado_rendered },
    { { "POST", "/dicom-web/studies", "import", true,
        "STOW-RS (multipart/related; type=application/dicom)" },
      dw_stow },
    { { "POST", "/dicom-web/studies/{study}", "import", true,
        "STOW-RS into a study" },
      dw_stow },
    /* the pages and their files: public (they hold no data) */
    { { "GET", "/{*}", NULL, false, "the web pages" }, static_file },
};

#define N_ROUTES (sizeof routes / sizeof routes[0])

size_t covct_http_route_count(void) { return N_ROUTES; }

const covct_http_route_info *covct_http_route_at(size_t i)
{
    return i < N_ROUTES ? &routes[i].info : NULL;
}

/* Match `path` against `pattern`; the {name} segments go to params. */
static bool match(const char *pattern, const char *path, http_req *rq)
{
    size_t np = 0;
    const char *p = pattern, *u = path;
    while (*p && *u) {
        if (*p != '/' || *u != '/')
            return false;
        p++;
        u++;
        if (!strcmp(p, "{*}")) { /* the rest, whatever it is */
            if (np < HTTP_MAX_PARAMS)
                rq->params[np++] = u;
            rq->n_params = np;
            return true;
        }
        size_t pl = strcspn(p, "/"), ul = strcspn(u, "/");
        if (*p == '{') {
            if (!ul || np == HTTP_MAX_PARAMS)
                return false;
            rq->params[np++] = u; /* up to the next '/' (see param()) */
        } else if (pl != ul || strncmp(p, u, pl)) {
            return false;
        }
        p += pl;
        u += ul;
    }
    if (*u == '/' && !u[1])
        u++; /* a trailing slash is the same resource */
    rq->n_params = np;
    return !*p && !*u;
}

int http_dispatch(http_req *rq, http_resp *rs)
{
    const char *method = !strcmp(rq->method, "HEAD") ? "GET" : rq->method;
    const http_route *hit = NULL;
    bool path_known = false;
    for (size_t i = 0; i < N_ROUTES && !hit; i++) {
        http_req probe = *rq;
        if (!match(routes[i].info.pattern, rq->path, &probe))
            continue;
        if (strcmp(routes[i].info.pattern, "/{*}"))
            path_known = true;
        if (!strcmp(routes[i].info.method, method)) {
            hit = &routes[i];
            *rq = probe;
        }
    }
    if (!hit || (path_known && !strcmp(hit->info.pattern, "/{*}")))
        return path_known ? http_error(rs, 405, "%s is not allowed on %s",
                                       rq->method, rq->path)
                          : http_error(rs, 404, "no such page: %s",
                                       rq->path);
    const covct_http_route_info *ri = &hit->info;
    covct_error err = { 0 };
    if (ri->permission) {
        if (!http_authenticate(rq)) {
            http_header(rs, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                        "Bearer realm=\"covct\"");
            return http_error(rs, 401,
                              "log in first (session) or send "
                              "\"Authorization: Bearer TOKEN\"");
        }
        if (!covct_role_may(rq->role, ri->permission)) {
            char detail[200];
            snprintf(detail, sizeof detail,
                     "{\"asked\":\"%s\",\"route\":\"%s %s\"}",
                     ri->permission, ri->method, ri->pattern);
            http_audit(rq, "denied", rq->path, detail);
            return http_error(rs, 403,
                              "%s (role %s) may not %s: refused and "
                              "recorded in the audit log",
                              rq->user, rq->role, ri->permission);
        }
        if (!http_csrf_ok(rq))
            return http_error(rs, 403,
                              "missing or wrong X-CSRF-Token for a change "
                              "made with a session");
    }
    if (!(rq->site = http_site(rq->srv, &err)))
        return http_error(rs, 503, "case database unavailable: %s", err.msg);
    if (rq->authed) { /* the case database acts for this user */
        char actor[96];
        snprintf(actor, sizeof actor, "user:%s", rq->user);
        covct_site_set_actor(rq->site, actor, rq->role);
    }
    int rc = hit->fn(rq, rs);
    if (ri->patient_data && rs->status < 400) {
        char detail[200];
        snprintf(detail, sizeof detail, "{\"route\":\"%s %s\",\"status\":%d}",
                 ri->method, ri->pattern, rs->status);
        http_audit(rq, strcmp(method, "GET") ? "http.write" : "http.read",
                   rq->path, detail);
    }
    return rc;
}

/* ---- audit, with reads coalesced ----------------------------------------- */
#define SEEN_SLOTS 2048
#define SEEN_S 60

static struct {
    pthread_mutex_t lock;
    uint64_t key[SEEN_SLOTS];
    time_t at[SEEN_SLOTS];
} seen = { .lock = PTHREAD_MUTEX_INITIALIZER };

static uint64_t fnv(const char *a, const char *b, const char *c)
{
    uint64_t h = 1469598103934665603ull;
    const char *parts[3] = { a, b, c };
    for (int i = 0; i < 3; i++) {
        for (const char *p = parts[i]; *p; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull;
    }
    return h ? h : 1;
}

void http_audit(http_req *rq, const char *action, const char *object,
                const char *detail_json)
{
    /* a viewer reads a series as hundreds of requests: one entry per
     * user, action and object per minute says the same */
    if (!strcmp(action, "http.read")) {
        uint64_t k = fnv(rq->user, action, object);
        time_t now = time(NULL);
        size_t i = k % SEEN_SLOTS;
        pthread_mutex_lock(&seen.lock);
        bool skip = seen.key[i] == k && now - seen.at[i] < SEEN_S;
        if (!skip) {
            seen.key[i] = k;
            seen.at[i] = now;
        }
        pthread_mutex_unlock(&seen.lock);
        if (skip)
            return;
    }
    covct_error err = { 0 };
    covct_site *site = rq->site ? rq->site : http_site(rq->srv, &err);
    if (!site) {
        covct_log(COVCT_LOG_ERROR, "http: audit: %s", err.msg);
        return;
    }
    char actor[96], obj[256];
    snprintf(actor, sizeof actor, "user:%s", rq->user[0] ? rq->user : "-");
    snprintf(obj, sizeof obj, "%s", object);
    covct_site_set_actor(site, actor, rq->role[0] ? rq->role : "none");
    if (covct_audit(site, action, obj, detail_json, &err))
        covct_log(COVCT_LOG_ERROR, "http: audit: %s", err.msg);
}
