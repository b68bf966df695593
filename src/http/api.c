/* The JSON REST API (docs/openapi.yaml): worklist, studies, reports,
 * jobs, cases and labels, projects, users, audit log. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "http/http_int.h"

bool http_uid_ok(const char *u)
{
    size_t n = strlen(u);
    return n > 0 && n <= 64 && strspn(u, "0123456789.") == n;
}

const char *http_param(const http_req *rq, size_t i, char *buf, size_t cap)
{
    buf[0] = 0;
    if (i < rq->n_params) {
        size_t n = strcspn(rq->params[i], "/?");
        if (n >= cap)
            n = cap - 1;
        memcpy(buf, rq->params[i], n);
        buf[n] = 0;
    }
    return buf;
}

long http_query_long(const http_req *rq, const char *key, long dflt, long lo,
                     long hi)
{
    const char *v = http_query(rq, key);
    if (!v || !*v)
        return dflt;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end)
        return dflt;
    return x < lo ? lo : x > hi ? hi : x;
}

/* Rows of a result as a JSON array of objects with the given keys
 * (numbers where the column is numeric: keys starting with '#'). */
static cJSON *rows_json(const covct_db_result *r, const char *const *keys)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < covct_db_rows(r); i++) {
        cJSON *o = cJSON_CreateObject();
        for (size_t c = 0; c < covct_db_cols(r) && keys[c]; c++) {
            const char *k = keys[c], *v = covct_db_get(r, i, c);
            if (!v)
                cJSON_AddNullToObject(o, k[0] == '#' ? k + 1 : k);
            else if (k[0] == '#')
                cJSON_AddNumberToObject(o, k + 1, atof(v));
            else
                cJSON_AddStringToObject(o, k, v);
        }
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

bool http_index_has_jobs(covct_db *db)
{
    int64_t n = 0;
    covct_error e = { 0 };
    return !covct_db_query_int(db,
                               "SELECT COUNT(*) FROM sqlite_master WHERE"
                               " type = 'table' AND name = 'jobs'",
                               NULL, 0, &n, &e) &&
           n == 1;
}

int api_study(http_req *rq, http_resp *rs)
{
    char uid[80];
    http_param(rq, 0, uid, sizeof uid);
    covct_error err = { 0 };
    covct_db *db = NULL;
    if (http_index(rq->srv, &db, &err))
        return http_error(rs, 503, "%s", err.msg);
    covct_db_result *st = NULL, *se = NULL;
    bool jobs = http_index_has_jobs(db);
    covct_rc rc = covct_db_query(
        db,
        "SELECT st.study_uid, p.patient_id, p.patient_name, p.birth_date,"
        " p.sex, st.study_date, st.study_time, st.study_description,"
        " st.accession_number FROM studies st JOIN patients p ON"
        " p.patient_id = st.patient_id WHERE st.study_uid = $1",
        (covct_db_param[]){ COVCT_DB_TEXT(uid) }, 1, &st, &err);
    if (!rc)
        rc = covct_db_query(
            db,
            jobs ? "SELECT se.series_uid, se.modality, se.series_number,"
                   " se.series_description, se.instance_count, j.state,"
                   " j.severity, j.category, j.reason FROM series se LEFT"
                   " JOIN jobs j ON j.series_uid = se.series_uid WHERE"
                   " se.study_uid = $1 ORDER BY se.series_number"
                 : "SELECT se.series_uid, se.modality, se.series_number,"
                   " se.series_description, se.instance_count, NULL, NULL,"
                   " NULL, NULL FROM series se WHERE se.study_uid = $1"
                   " ORDER BY se.series_number",
            (covct_db_param[]){ COVCT_DB_TEXT(uid) }, 1, &se, &err);
    if (rc) {
        covct_db_result_free(st);
        covct_db_result_free(se);
        return http_error(rs, 500, "%s", err.msg);
    }
    if (!covct_db_rows(st)) {
        covct_db_result_free(st);
        covct_db_result_free(se);
        return http_error(rs, 404, "no study %s", uid);
    }
    static const char *const skeys[] = { "study_uid",  "patient_id",
                                         "patient_name", "birth_date",
                                         "sex",        "study_date",
                                         "study_time", "description",
                                         "accession",  NULL };
    static const char *const rkeys[] = { "series_uid", "modality",
                                         "#number",    "description",
                                         "#instances", "ai_state",
                                         "#severity",  "category",
                                         "reason",     NULL };
    cJSON *arr = rows_json(st, skeys);
    cJSON *o = cJSON_DetachItemFromArray(arr, 0);
    cJSON_Delete(arr);
    /* annotators and researchers label and study images, not people */
    if (!covct_role_may(rq->role, "read.identifiable")) {
        static const char *const ident[] = { "patient_id", "patient_name",
                                             "birth_date", "accession",
                                             "study_date", "study_time" };
        for (size_t i = 0; i < sizeof ident / sizeof *ident; i++)
            cJSON_ReplaceItemInObject(o, ident[i], cJSON_CreateNull());
        cJSON_AddBoolToObject(o, "deidentified", true);
    }
    cJSON_AddItemToObject(o, "series", rows_json(se, rkeys));
    /* the case, when the study is in the case database */
    int64_t case_id = 0;
    covct_error e2 = { 0 };
    if (!covct_db_query_int(covct_site_db(rq->site),
                            "SELECT case_id FROM studies WHERE study_uid = $1",
                            (covct_db_param[]){ COVCT_DB_TEXT(uid) }, 1,
                            &case_id, &e2) &&
        case_id)
        cJSON_AddNumberToObject(o, "case_id", (double)case_id);
    else
        cJSON_AddNullToObject(o, "case_id");
    /* the case form's last saved version, as blind as the masks: the
     * newest final or imported version or one of this user's own, never
     * another reader's (docs/internals/pages-api.md) */
    covct_db_result *cl = NULL;
    char me[96];
    snprintf(me, sizeof me, "user:%s", rq->user);
    if (case_id && covct_role_may(rq->role, "case.clinical") &&
        !covct_db_query(covct_site_db(rq->site),
                        "SELECT id, diagnosis, severity, outcome, category,"
                        " comment, status, created_at FROM clinical_labels"
                        " WHERE case_id = $1 AND (status IN ('final',"
                        " 'imported') OR author = $2) ORDER BY id DESC"
                        " LIMIT 1",
                        (covct_db_param[]){ COVCT_DB_INT(case_id),
                                            COVCT_DB_TEXT(me) },
                        2, &cl, &e2) &&
        covct_db_rows(cl)) {
        static const char *const ckeys[] = { "#id",      "diagnosis",
                                             "#severity", "outcome",
                                             "category", "comment",
                                             "status",   "created_at",
                                             NULL };
        cJSON *ca = rows_json(cl, ckeys);
        cJSON_AddItemToObject(o, "clinical",
                              cJSON_DetachItemFromArray(ca, 0));
        cJSON_Delete(ca);
    } else {
        cJSON_AddNullToObject(o, "clinical");
    }
    covct_db_result_free(cl);
    covct_db_result_free(st);
    covct_db_result_free(se);
    return http_json(rs, 200, o);
}


int api_report(http_req *rq, http_resp *rs)
{
    char uid[80], path[4300];
    http_param(rq, 0, uid, sizeof uid);
    if (!http_uid_ok(uid))
        return http_error(rs, 400, "'%s' is not a UID", uid);
    if (!rq->srv->cfg.store)
        return http_error(rs, 404, "no DICOM store on this server");
    snprintf(path, sizeof path, "%s/results/%s/report.json",
             covct_store_dir(rq->srv->cfg.store), uid);
    uint8_t *data = NULL;
    size_t len = 0;
    covct_error err = { 0 };
    if (covct_file_read(path, &data, &len, &err))
        return http_error(rs, 404, "no report for series %s (not analysed "
                                   "yet?)",
                          uid);
    if (covct_role_may(rq->role, "read.identifiable")) {
        rs->status = 200;
        rs->type = "application/json";
        covct_buf_append(&rs->body, data, len, &err);
        covct_free(data);
        return 0;
    }
    /* without read.identifiable: the measurements, not who or where */
    cJSON *j = cJSON_ParseWithLength((const char *)data, len);
    covct_free(data);
    if (!j)
        return http_error(rs, 500, "report of series %s is not JSON", uid);
    static const char *const ident[] = { "patient_id", "study_date",
                                         "series_description", "source" };
    for (size_t i = 0; i < sizeof ident / sizeof *ident; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(j, ident[i]);
    cJSON_AddBoolToObject(j, "deidentified", true);
    return http_json(rs, 200, j);
}

int api_jobs(http_req *rq, http_resp *rs)
{
    covct_error err = { 0 };
    covct_db *db = NULL;
    if (http_index(rq->srv, &db, &err))
        return http_error(rs, 503, "%s", err.msg);
    long limit = http_query_long(rq, "limit", HTTP_PAGE_DEFAULT, 1, HTTP_PAGE_MAX);
    covct_db_result *r = NULL;
    covct_rc rc = http_index_has_jobs(db)
                      ? covct_db_query(db,
                                       "SELECT id, series_uid, state, reason,"
                                       " attempts, severity, category FROM"
                                       " jobs ORDER BY id DESC LIMIT $1",
                                       (covct_db_param[]){
                                           COVCT_DB_INT(limit) },
                                       1, &r, &err)
                      : COVCT_OK;
    if (rc)
        return http_error(rs, 500, "%s", err.msg);
    static const char *const keys[] = { "#id",       "series_uid", "state",
                                        "reason",    "#attempts",  "#severity",
                                        "category",  NULL };
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "jobs", r ? rows_json(r, keys)
                                       : cJSON_CreateArray());
    covct_db_result_free(r);
    return http_json(rs, 200, o);
}

int api_cases(http_req *rq, http_resp *rs)
{
    covct_error err = { 0 };
    long limit = http_query_long(rq, "limit", HTTP_PAGE_DEFAULT, 1, HTTP_PAGE_MAX),
         offset = http_query_long(rq, "offset", 0, 0, 1L << 30);
    covct_db_result *r = NULL;
    if (covct_db_query(
            covct_site_db(rq->site),
            "SELECT c.id, p.site_patient_id, p.name,"
            " (SELECT COUNT(*) FROM studies s WHERE s.case_id = c.id),"
            " (SELECT l.status FROM clinical_labels l WHERE l.case_id = c.id"
            "  ORDER BY l.id DESC LIMIT 1),"
            " (SELECT l.diagnosis FROM clinical_labels l WHERE l.case_id ="
            "  c.id ORDER BY l.id DESC LIMIT 1)"
            " FROM cases c JOIN patients p ON p.id = c.patient_id"
            " ORDER BY c.id DESC LIMIT $1 OFFSET $2",
            (covct_db_param[]){ COVCT_DB_INT(limit), COVCT_DB_INT(offset) }, 2,
            &r, &err))
        return http_error(rs, 500, "%s", err.msg);
    static const char *const keys[] = { "#id",          "patient_id",
                                        "patient_name", "#studies",
                                        "label_status", "diagnosis", NULL };
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "cases", rows_json(r, keys));
    covct_db_result_free(r);
    return http_json(rs, 200, o);
}

int api_projects(http_req *rq, http_resp *rs)
{
    covct_error err = { 0 };
    covct_db_result *r = NULL;
    if (covct_db_query(covct_site_db(rq->site),
                       "SELECT id, name, title, purpose, investigator,"
                       " (SELECT COUNT(*) FROM project_patients pp WHERE"
                       "  pp.project_id = projects.id) FROM projects"
                       " ORDER BY name",
                       NULL, 0, &r, &err))
        return http_error(rs, 500, "%s", err.msg);
    static const char *const keys[] = { "#id",     "name",         "title",
                                        "purpose", "investigator", "#patients",
                                        NULL };
    cJSON *arr = rows_json(r, keys), *it;
    cJSON_ArrayForEach(it, arr)
    {
        int64_t approval = 0;
        char why[256], scope[128];
        int64_t id = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "id"));
        if (!covct_project_approval_in_force(rq->site, id, NULL, &approval,
                                             scope, why, &err)) {
            cJSON_AddBoolToObject(it, "approval_in_force", approval != 0);
            cJSON_AddStringToObject(it, approval ? "scope" : "why_not",
                                    approval ? scope : why);
        }
    }
    covct_db_result_free(r);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "projects", arr);
    return http_json(rs, 200, o);
}

int api_users(http_req *rq, http_resp *rs)
{
    covct_error err = { 0 };
    covct_db_result *r = NULL;
    if (covct_db_query(covct_site_db(rq->site),
                       "SELECT name, role, disabled, created_at FROM users"
                       " ORDER BY name",
                       NULL, 0, &r, &err))
        return http_error(rs, 500, "%s", err.msg);
    static const char *const keys[] = { "name", "role", "#disabled",
                                        "created_at", NULL };
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "users", rows_json(r, keys));
    covct_db_result_free(r);
    return http_json(rs, 200, o);
}

int api_audit(http_req *rq, http_resp *rs)
{
    covct_error err = { 0 };
    long limit = http_query_long(rq, "limit", HTTP_PAGE_DEFAULT, 1, HTTP_PAGE_MAX),
         offset = http_query_long(rq, "offset", 0, 0, 1L << 30);
    covct_db_result *r = NULL;
    if (covct_db_query(covct_site_db(rq->site),
                       "SELECT seq, at, actor, role, action, object, detail"
                       " FROM audit_log ORDER BY seq DESC LIMIT $1 OFFSET $2",
                       (covct_db_param[]){ COVCT_DB_INT(limit),
                                           COVCT_DB_INT(offset) },
                       2, &r, &err))
        return http_error(rs, 500, "%s", err.msg);
    static const char *const keys[] = { "#seq",   "at",     "actor", "role",
                                        "action", "object", "detail", NULL };
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "entries", rows_json(r, keys));
    covct_db_result_free(r);
    return http_json(rs, 200, o);
}

int api_audit_verify(http_req *rq, http_resp *rs)
{
    covct_error err = { 0 };
    covct_audit_result res;
    if (covct_audit_verify(rq->site, &res, &err))
        return http_error(rs, 500, "%s", err.msg);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "intact", res.bad_seq == 0);
    cJSON_AddNumberToObject(o, "entries", (double)res.entries);
    if (res.bad_seq) {
        cJSON_AddNumberToObject(o, "first_bad", (double)res.bad_seq);
        cJSON_AddStringToObject(o, "problem", res.problem);
    }
    return http_json(rs, 200, o);
}

int api_exports(http_req *rq, http_resp *rs)
{
    covct_error err = { 0 };
    covct_db_result *r = NULL;
    if (covct_db_query(covct_site_db(rq->site),
                       "SELECT e.id, p.name, e.requested_by, e.started_at,"
                       " e.finished_at, e.status, e.patients, e.excluded,"
                       " e.manifest_sha256 FROM exports e JOIN projects p ON"
                       " p.id = e.project_id ORDER BY e.id DESC LIMIT 200",
                       NULL, 0, &r, &err))
        return http_error(rs, 500, "%s", err.msg);
    static const char *const keys[] = { "#id",       "project",
                                        "requested_by", "requested_at",
                                        "finished_at", "status",
                                        "#patients", "#excluded",
                                        "manifest_sha256", NULL };
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "exports", rows_json(r, keys));
    covct_db_result_free(r);
    return http_json(rs, 200, o);
}

int api_export_request(http_req *rq, http_resp *rs)
{
    char project[80];
    http_param(rq, 0, project, sizeof project);
    covct_error err = { 0 };
    int64_t id = 0;
    covct_rc rc = covct_export_request(rq->site, project, &id, &err);
    if (rc)
        return http_error(rs, rc == COVCT_ERR_NOT_FOUND ? 404 : 500, "%s",
                          err.msg);
    return http_created(rs, id);
}

/* The export is written on the server, under DIR/exports/PROJECT-ID;
 * taking it to the researchers is the site's business (a copy from that
 * folder, checked with its manifest). */
int api_export_run(http_req *rq, http_resp *rs)
{
    char ids[32], project[80] = "", out[4300];
    http_param(rq, 0, ids, sizeof ids);
    int64_t id = strtoll(ids, NULL, 10);
    covct_error err = { 0 };
    covct_db_result *r = NULL;
    if (covct_db_query(covct_site_db(rq->site),
                       "SELECT p.name FROM exports e JOIN projects p ON"
                       " p.id = e.project_id WHERE e.id = $1",
                       (covct_db_param[]){ COVCT_DB_INT(id) }, 1, &r, &err))
        return http_error(rs, 500, "%s", err.msg);
    if (covct_db_rows(r))
        snprintf(project, sizeof project, "%s", covct_db_get(r, 0, 0));
    covct_db_result_free(r);
    if (!project[0])
        return http_error(rs, 404, "no export request %lld", (long long)id);
    snprintf(out, sizeof out, "%s/exports", rq->srv->data_dir);
    mkdir(out, 0750);
    snprintf(out, sizeof out, "%s/exports/%s-%lld", rq->srv->data_dir,
             project, (long long)id);
    covct_export_opts o = { .request_id = id };
    covct_export_result res;
    covct_rc rc = covct_export(rq->site, project, out, &o, &res, NULL, NULL,
                               &err);
    if (rc)
        return http_error(rs, rc == COVCT_ERR_ARG ? 409 : 500, "%s",
                          err.msg);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "folder", out);
    cJSON_AddNumberToObject(j, "patients", (double)res.patients);
    cJSON_AddNumberToObject(j, "withdrawn", (double)res.withdrawn);
    cJSON_AddNumberToObject(j, "no_consent", (double)res.no_consent);
    cJSON_AddNumberToObject(j, "files", (double)res.files);
    cJSON_AddStringToObject(j, "manifest_sha256", res.manifest_sha256);
    return http_json(rs, 200, j);
}

/* ---- projects, approvals, consent ------------------------------------------ */
static const char *jstr(const cJSON *o, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItem(o, k));
}

static int status_of(covct_rc rc)
{
    return rc == COVCT_ERR_ARG ? 400 : rc == COVCT_ERR_NOT_FOUND ? 404 : 500;
}

/* The project the path names (its first parameter): its id, or 0 with a
 * 404 answer already written. */
static int64_t path_project(http_req *rq, http_resp *rs, char name[80])
{
    covct_error err = { 0 };
    int64_t id = 0;
    http_param(rq, 0, name, 80);
    if (covct_project_find(rq->site, name, &id, &err)) {
        http_error(rs, 404, "%s", err.msg);
        return 0;
    }
    return id;
}

/* The request body as JSON, or NULL with a 400 answer saying what to
 * send. */
static cJSON *body_json(const http_req *rq, http_resp *rs, const char *what)
{
    cJSON *in = cJSON_ParseWithLength((const char *)rq->body, rq->body_len);
    if (cJSON_IsObject(in))
        return in;
    cJSON_Delete(in);
    http_error(rs, 400, "send a JSON object %s", what);
    return NULL;
}

int api_project_create(http_req *rq, http_resp *rs)
{
    cJSON *in = body_json(rq, rs, "{name, title, purpose, investigator}");
    if (!in)
        return 0;
    covct_error err = { 0 };
    int64_t id = 0;
    covct_rc rc = covct_project_create(rq->site, jstr(in, "name"),
                                       jstr(in, "title"), jstr(in, "purpose"),
                                       jstr(in, "investigator"), &id, &err);
    cJSON_Delete(in);
    if (rc)
        return http_error(rs, status_of(rc), "%s", err.msg);
    return http_created(rs, id);
}

int api_project_show(http_req *rq, http_resp *rs)
{
    char name[80];
    covct_error err = { 0 };
    int64_t id = path_project(rq, rs, name);
    if (!id)
        return 0;
    covct_db *db = covct_site_db(rq->site);
    covct_db_result *a = NULL, *g = NULL, *c = NULL;
    covct_rc rc = covct_db_query(
        db,
        "SELECT number, committee, granted_on, expires_on, purposes,"
        " data_scope, revoked_at FROM approvals WHERE project_id = $1"
        " ORDER BY id",
        (covct_db_param[]){ COVCT_DB_INT(id) }, 1, &a, &err);
    if (!rc)
        rc = covct_db_query(db,
                            "SELECT party, signed_on, expires_on FROM"
                            " agreements WHERE project_id = $1 ORDER BY id",
                            (covct_db_param[]){ COVCT_DB_INT(id) }, 1, &g,
                            &err);
    if (!rc)
        rc = covct_db_query(
            db,
            "SELECT s, COUNT(*) FROM (SELECT COALESCE((SELECT c.status FROM"
            " consents c WHERE c.patient_id = pp.patient_id AND"
            " c.project_id = pp.project_id ORDER BY c.id DESC LIMIT 1),"
            " 'none') AS s FROM project_patients pp WHERE pp.project_id ="
            " $1) x GROUP BY s ORDER BY s",
            (covct_db_param[]){ COVCT_DB_INT(id) }, 1, &c, &err);
    if (rc) {
        covct_db_result_free(a);
        covct_db_result_free(g);
        covct_db_result_free(c);
        return http_error(rs, 500, "%s", err.msg);
    }
    static const char *const akeys[] = { "number",     "committee",
                                         "granted_on", "expires_on",
                                         "purposes",   "data_scope",
                                         "revoked_at", NULL };
    static const char *const gkeys[] = { "party", "signed_on", "expires_on",
                                         NULL };
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddItemToObject(o, "approvals", rows_json(a, akeys));
    cJSON_AddItemToObject(o, "agreements", rows_json(g, gkeys));
    cJSON *counts = cJSON_AddObjectToObject(o, "consent");
    for (size_t i = 0; i < covct_db_rows(c); i++)
        cJSON_AddNumberToObject(counts, covct_db_get(c, i, 0),
                                (double)covct_db_get_int(c, i, 1, 0));
    int64_t in_force = 0;
    char why[256], scope[128];
    if (!covct_project_approval_in_force(rq->site, id, NULL, &in_force, scope,
                                         why, &err)) {
        cJSON_AddBoolToObject(o, "approval_in_force", in_force != 0);
        cJSON_AddStringToObject(o, in_force ? "scope" : "why_not",
                                in_force ? scope : why);
    }
    covct_db_result_free(a);
    covct_db_result_free(g);
    covct_db_result_free(c);
    return http_json(rs, 200, o);
}

int api_project_approve(http_req *rq, http_resp *rs)
{
    char name[80];
    covct_error err = { 0 };
    int64_t id = path_project(rq, rs, name), aid = 0;
    if (!id)
        return 0;
    cJSON *in = body_json(rq, rs,
                          "{committee, number, granted_on, expires_on, "
                          "purposes, data_scope}");
    if (!in)
        return 0;
    covct_approval ap = { jstr(in, "committee"),  jstr(in, "number"),
                          jstr(in, "granted_on"), jstr(in, "expires_on"),
                          jstr(in, "purposes"),   jstr(in, "data_scope") };
    covct_rc rc = covct_project_approve(rq->site, id, &ap, &aid, &err);
    cJSON_Delete(in);
    if (rc)
        return http_error(rs, status_of(rc), "%s", err.msg);
    return http_created(rs, aid);
}

int api_project_agreement(http_req *rq, http_resp *rs)
{
    char name[80];
    covct_error err = { 0 };
    int64_t id = path_project(rq, rs, name);
    if (!id)
        return 0;
    cJSON *in = body_json(rq, rs, "{party, signed_on, expires_on, terms}");
    if (!in)
        return 0;
    /* an empty expiry from the form means an open-ended agreement */
    const char *expires = jstr(in, "expires_on");
    covct_rc rc = covct_project_agreement(
        rq->site, id, jstr(in, "party"), jstr(in, "signed_on"),
        expires && *expires ? expires : NULL, jstr(in, "terms"), &err);
    cJSON_Delete(in);
    if (rc)
        return http_error(rs, status_of(rc), "%s", err.msg);
    return http_json(rs, 201, cJSON_CreateObject());
}

int api_project_consent(http_req *rq, http_resp *rs)
{
    char name[80];
    covct_error err = { 0 };
    int64_t id = path_project(rq, rs, name);
    if (!id)
        return 0;
    cJSON *in = body_json(rq, rs, "{patient_id, status, reference}");
    if (!in)
        return 0;
    const char *pid = jstr(in, "patient_id");
    covct_rc rc = COVCT_OK;
    /* a patient not yet in the project is included with the consent */
    if (pid && covct_role_may(rq->role, "project.manage"))
        rc = covct_project_add_patient(rq->site, id, pid, &err);
    if (!rc)
        rc = covct_consent_record(rq->site, pid ? pid : "", id,
                                  jstr(in, "status"), jstr(in, "reference"),
                                  &err);
    cJSON_Delete(in);
    if (rc)
        return http_error(rs, status_of(rc), "%s", err.msg);
    return http_json(rs, 201, cJSON_CreateObject());
}
