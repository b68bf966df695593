/* Research projects, their ethics approvals and data use agreements, the
 * patients they include and those patients' consent
 * (docs/internals/casedb.md, "Projects, approvals, consent"). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "covct/govern.h"

#include "govern/site_int.h"

void covct_today(char out[11])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}

int covct_date_window(const char *today, const char *from, const char *to)
{
    if (from && strcmp(today, from) < 0)
        return -1;
    return to && *to && strcmp(today, to) > 0;
}

/* The value of n decimal digits at s, or -1. */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* YYYY-MM-DD with a real month and day. */
static covct_rc check_date(const char *what, const char *d, covct_error *err)
{
    static const int days[] = { 31, 29, 31, 30, 31, 30,
                                31, 31, 30, 31, 30, 31 };
    int y = -1, m = -1, day = -1;
    if (d && strlen(d) == 10 && d[4] == '-' && d[7] == '-') {
        y = digits(d, 4);
        m = digits(d + 5, 2);
        day = digits(d + 8, 2);
    }
    if (y < 1900 || m < 1 || m > 12 || day < 1 || day > days[m - 1] ||
        (m == 2 && day == 29 && (y % 4 || (y % 100 == 0 && y % 400))))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "%s '%s' is not a date YYYY-MM-DD", what,
                         d ? d : "");
    return COVCT_OK;
}

/* A comma list whose items are all in `allowed`. */
static covct_rc check_list(const char *what, const char *v,
                           const char *const *allowed, size_t n,
                           covct_error *err)
{
    if (!v || !*v)
        return COVCT_ERR(err, COVCT_ERR_ARG, "%s is empty", what);
    const char *p = v;
    while (*p) {
        size_t len = strcspn(p, ",");
        bool ok = false;
        for (size_t i = 0; i < n && !ok; i++)
            ok = strlen(allowed[i]) == len && !strncmp(p, allowed[i], len);
        if (!ok) {
            char list[256] = "";
            for (size_t i = 0; i < n; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list),
                         "%s%s", i ? ", " : "", allowed[i]);
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "%s: '%.*s' is not one of: %s", what, (int)len,
                             p, list);
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return COVCT_OK;
}

static const char *const purposes[] = { "research", "algorithm-development",
                                        "product-development", "education",
                                        "quality-assurance" };
static const char *const scopes[] = { "images", "labels", "clinical" };

covct_rc covct_project_find(covct_site *site, const char *name,
                            int64_t *project_id, covct_error *err)
{
    covct_error e2 = { 0 };
    covct_rc rc = covct_db_query_int(
        site->db, "SELECT id FROM projects WHERE name = $1",
        (covct_db_param[]){ COVCT_DB_TEXT(name) }, 1, project_id, &e2);
    if (rc == COVCT_ERR_NOT_FOUND)
        return COVCT_ERR(err, rc, "no project '%s' in %s", name,
                         covct_db_describe(site->db));
    if (rc)
        return COVCT_ERR(err, rc, "%s", e2.msg);
    return COVCT_OK;
}

covct_rc covct_project_create(covct_site *site, const char *name,
                              const char *title, const char *purpose,
                              const char *investigator, int64_t *project_id,
                              covct_error *err)
{
    if (!name || !*name || strlen(name) > 64)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "a project name is 1-64 characters");
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' &&
            *p != '.')
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "project name '%s': use letters, digits, '-', "
                             "'_' and '.' only (it names files)",
                             name);
    int64_t id = 0;
    covct_error e2 = { 0 };
    if (!covct_project_find(site, name, &id, &e2))
        return COVCT_ERR(err, COVCT_ERR_ARG, "project '%s' already exists",
                         name);
    char obj[96], now[COVCT_DB_TIME_LEN];
    snprintf(obj, sizeof obj, "project:%s", name);
    covct_rc rc = site_begin_write(site, "project.manage", obj, err);
    if (rc)
        return rc;
    covct_db_now(now);
    rc = covct_db_query_int(
        site->db,
        "INSERT INTO projects (name, title, purpose, investigator,"
        " created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        (covct_db_param[]){ COVCT_DB_TEXT(name), COVCT_DB_TEXT(title),
                            COVCT_DB_TEXT(purpose),
                            COVCT_DB_TEXT(investigator), COVCT_DB_TEXT(now) },
        5, project_id, err);
    if ((rc = site_end_write(site, rc, "project.create", obj, NULL, err)))
        return rc;
    /* the project's own key for pseudonyms and UIDs (a key restored from
     * a backup is kept) */
    char keys[4096], path[4200];
    snprintf(keys, sizeof keys, "%s/keys", site->dir);
    snprintf(path, sizeof path, "%s/project-%s.key", keys, name);
    if (mkdir(keys, 0700) != 0 && errno != EEXIST)
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot create %s: %s", keys,
                         strerror(errno));
    if (access(path, F_OK) == 0)
        return COVCT_OK;
    return covct_deid_key_generate(path, err);
}

static void project_object(covct_site *site, int64_t id, char out[96])
{
    covct_db_result *r = NULL;
    covct_error e = { 0 };
    if (!covct_db_query(site->db, "SELECT name FROM projects WHERE id = $1",
                        (covct_db_param[]){ COVCT_DB_INT(id) }, 1, &r, &e) &&
        covct_db_get(r, 0, 0))
        snprintf(out, 96, "project:%s", covct_db_get(r, 0, 0));
    else
        snprintf(out, 96, "project:#%" PRId64, id);
    covct_db_result_free(r);
}

covct_rc covct_project_approve(covct_site *site, int64_t project_id,
                               const covct_approval *a, int64_t *approval_id,
                               covct_error *err)
{
    covct_rc rc;
    if (!a->committee || !*a->committee || !a->number || !*a->number)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "an approval needs the committee and its number");
    if ((rc = check_date("granted on", a->granted_on, err)) ||
        (rc = check_date("expires on", a->expires_on, err)) ||
        (rc = check_list("purposes", a->purposes, purposes,
                         sizeof purposes / sizeof *purposes, err)) ||
        (rc = check_list("data scope", a->data_scope, scopes,
                         sizeof scopes / sizeof *scopes, err)))
        return rc;
    if (strcmp(a->expires_on, a->granted_on) < 0)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "the approval expires (%s) before it is granted "
                         "(%s)",
                         a->expires_on, a->granted_on);
    char obj[96], now[COVCT_DB_TIME_LEN], detail[512];
    project_object(site, project_id, obj);
    if ((rc = site_begin_write(site, "approval.record", obj, err)))
        return rc;
    covct_db_now(now);
    rc = covct_db_query_int(
        site->db,
        "INSERT INTO approvals (project_id, committee, number, granted_on,"
        " expires_on, purposes, data_scope, recorded_by, recorded_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        (covct_db_param[]){ COVCT_DB_INT(project_id),
                            COVCT_DB_TEXT(a->committee),
                            COVCT_DB_TEXT(a->number),
                            COVCT_DB_TEXT(a->granted_on),
                            COVCT_DB_TEXT(a->expires_on),
                            COVCT_DB_TEXT(a->purposes),
                            COVCT_DB_TEXT(a->data_scope),
                            COVCT_DB_TEXT(site->actor), COVCT_DB_TEXT(now) },
        9, approval_id, err);
    /* only values checked above go into the JSON text (no escaping
     * needed); the committee and number are in the approvals row */
    snprintf(detail, sizeof detail,
             "{\"approval\":%" PRId64 ",\"granted_on\":\"%s\","
             "\"expires_on\":\"%s\",\"purposes\":\"%s\",\"scope\":\"%s\"}",
             rc ? 0 : *approval_id, a->granted_on, a->expires_on,
             a->purposes, a->data_scope);
    return site_end_write(site, rc, "approval.record", obj, detail, err);
}

covct_rc covct_project_revoke(covct_site *site, int64_t project_id,
                              const char *number, covct_error *err)
{
    char obj[96], now[COVCT_DB_TIME_LEN];
    project_object(site, project_id, obj);
    covct_rc rc = site_begin_write(site, "approval.record", obj, err);
    if (rc)
        return rc;
    covct_db_now(now);
    int64_t id = 0;
    rc = covct_db_query_int(
        site->db,
        "UPDATE approvals SET revoked_at = $1 WHERE project_id = $2 AND"
        " number = $3 AND revoked_at IS NULL RETURNING id",
        (covct_db_param[]){ COVCT_DB_TEXT(now), COVCT_DB_INT(project_id),
                            COVCT_DB_TEXT(number) },
        3, &id, err);
    if (rc == COVCT_ERR_NOT_FOUND) {
        covct_error_clear(err);
        rc = COVCT_ERR(err, rc, "%s has no approval numbered '%s' in force",
                       obj, number);
    }
    char detail[64];
    snprintf(detail, sizeof detail, "{\"approval\":%" PRId64 "}", id);
    return site_end_write(site, rc, "approval.revoke", obj, detail, err);
}

covct_rc covct_project_agreement(covct_site *site, int64_t project_id,
                                 const char *party, const char *signed_on,
                                 const char *expires_on, const char *terms,
                                 covct_error *err)
{
    covct_rc rc;
    if (!party || !*party)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "a data use agreement names the receiving party");
    if ((rc = check_date("signed on", signed_on, err)) ||
        (expires_on && (rc = check_date("expires on", expires_on, err))))
        return rc;
    char obj[96], now[COVCT_DB_TIME_LEN];
    project_object(site, project_id, obj);
    if ((rc = site_begin_write(site, "approval.record", obj, err)))
        return rc;
    covct_db_now(now);
    rc = covct_db_query(
        site->db,
        "INSERT INTO agreements (project_id, party, signed_on, expires_on,"
        " terms, recorded_by, recorded_at) VALUES"
        " ($1, $2, $3, $4, $5, $6, $7)",
        (covct_db_param[]){ COVCT_DB_INT(project_id), COVCT_DB_TEXT(party),
                            COVCT_DB_TEXT(signed_on),
                            COVCT_DB_TEXT(expires_on), COVCT_DB_TEXT(terms),
                            COVCT_DB_TEXT(site->actor), COVCT_DB_TEXT(now) },
        7, NULL, err);
    return site_end_write(site, rc, "agreement.record", obj, NULL, err);
}

covct_rc covct_project_approval_in_force(covct_site *site, int64_t project_id,
                                         const char *today,
                                         int64_t *approval_id, char *scope,
                                         char why[256], covct_error *err)
{
    char day[11];
    if (!today) {
        covct_today(day);
        today = day;
    }
    *approval_id = 0;
    if (scope)
        scope[0] = 0;
    covct_db_result *r = NULL;
    covct_rc rc = covct_db_query(
        site->db,
        "SELECT id, number, granted_on, expires_on, revoked_at, data_scope"
        " FROM approvals WHERE project_id = $1 ORDER BY expires_on DESC,"
        " id DESC",
        (covct_db_param[]){ COVCT_DB_INT(project_id) }, 1, &r, err);
    if (rc)
        return rc;
    snprintf(why, 256, "the project has no ethics approval on record");
    for (size_t i = 0; i < covct_db_rows(r); i++) {
        const char *num = covct_db_get(r, i, 1),
                   *from = covct_db_get(r, i, 2),
                   *to = covct_db_get(r, i, 3),
                   *revoked = covct_db_get(r, i, 4);
        if (revoked) {
            if (i == 0)
                snprintf(why, 256, "approval %s was revoked on %.10s", num,
                         revoked);
            continue;
        }
        if (strcmp(today, from) < 0) {
            snprintf(why, 256, "approval %s is valid only from %s", num,
                     from);
            continue;
        }
        if (strcmp(today, to) > 0) {
            snprintf(why, 256, "approval %s expired on %s", num, to);
            continue;
        }
        *approval_id = covct_db_get_int(r, i, 0, 0);
        if (scope)
            snprintf(scope, 128, "%s", covct_db_get(r, i, 5));
        why[0] = 0;
        break;
    }
    covct_db_result_free(r);
    return COVCT_OK;
}

static covct_rc patient_by_site_id(covct_site *site, const char *site_pid,
                                   int64_t *id, covct_error *err)
{
    covct_error e2 = { 0 };
    covct_rc rc = covct_db_query_int(
        site->db, "SELECT id FROM patients WHERE site_patient_id = $1",
        (covct_db_param[]){ COVCT_DB_TEXT(site_pid) }, 1, id, &e2);
    if (rc == COVCT_ERR_NOT_FOUND)
        return COVCT_ERR(err, rc,
                         "no patient '%s' in the case database (import the "
                         "images first)",
                         site_pid);
    if (rc)
        return COVCT_ERR(err, rc, "%s", e2.msg);
    return COVCT_OK;
}

covct_rc covct_project_add_patient(covct_site *site, int64_t project_id,
                                   const char *site_patient_id,
                                   covct_error *err)
{
    int64_t pid, n = 0;
    covct_rc rc = patient_by_site_id(site, site_patient_id, &pid, err);
    if (rc)
        return rc;
    char obj[96], now[COVCT_DB_TIME_LEN], detail[64];
    project_object(site, project_id, obj);
    if ((rc = site_begin_write(site, "project.manage", obj, err)))
        return rc;
    rc = covct_db_query_int(
        site->db,
        "SELECT COUNT(*) FROM project_patients WHERE project_id = $1 AND"
        " patient_id = $2",
        (covct_db_param[]){ COVCT_DB_INT(project_id), COVCT_DB_INT(pid) }, 2,
        &n, err);
    if (!rc && n) { /* already included: nothing to do, nothing to log */
        covct_db_rollback(site->db);
        return COVCT_OK;
    }
    covct_db_now(now);
    if (!rc)
        rc = covct_db_query(
            site->db,
            "INSERT INTO project_patients (project_id, patient_id, added_at)"
            " VALUES ($1, $2, $3)",
            (covct_db_param[]){ COVCT_DB_INT(project_id), COVCT_DB_INT(pid),
                                COVCT_DB_TEXT(now) },
            3, NULL, err);
    snprintf(detail, sizeof detail, "{\"patient\":%" PRId64 "}", pid);
    return site_end_write(site, rc, "project.add-patient", obj, detail, err);
}

covct_rc covct_consent_record(covct_site *site, const char *site_patient_id,
                              int64_t project_id, const char *status,
                              const char *reference, covct_error *err)
{
    if (!status || (strcmp(status, "given") && strcmp(status, "withdrawn") &&
                    strcmp(status, "waived")))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "consent is 'given', 'withdrawn' or 'waived', not "
                         "'%s'",
                         status ? status : "");
    int64_t pid;
    covct_rc rc = patient_by_site_id(site, site_patient_id, &pid, err);
    if (rc)
        return rc;
    char obj[96], now[COVCT_DB_TIME_LEN], detail[96];
    project_object(site, project_id, obj);
    if ((rc = site_begin_write(site, "consent.record", obj, err)))
        return rc;
    covct_db_now(now);
    rc = covct_db_query(
        site->db,
        "INSERT INTO consents (patient_id, project_id, status, reference,"
        " recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5, $6)",
        (covct_db_param[]){ COVCT_DB_INT(pid), COVCT_DB_INT(project_id),
                            COVCT_DB_TEXT(status), COVCT_DB_TEXT(reference),
                            COVCT_DB_TEXT(site->actor), COVCT_DB_TEXT(now) },
        6, NULL, err);
    snprintf(detail, sizeof detail,
             "{\"patient\":%" PRId64 ",\"consent\":\"%s\"}", pid, status);
    return site_end_write(site, rc, "consent.record", obj, detail, err);
}

covct_rc covct_consent_status(covct_site *site, int64_t patient_id,
                              int64_t project_id, char status[16],
                              covct_error *err)
{
    covct_db_result *r = NULL;
    covct_rc rc = covct_db_query(
        site->db,
        "SELECT status FROM consents WHERE patient_id = $1 AND"
        " project_id = $2 ORDER BY id DESC LIMIT 1",
        (covct_db_param[]){ COVCT_DB_INT(patient_id),
                            COVCT_DB_INT(project_id) },
        2, &r, err);
    if (rc)
        return rc;
    snprintf(status, 16, "%s",
             covct_db_rows(r) ? covct_db_get(r, 0, 0) : "none");
    covct_db_result_free(r);
    return COVCT_OK;
}
