/*
 * The analysis job table (in the store's index database): a series that
 * stopped receiving instances becomes a job; jobs survive restarts, failed
 * attempts are retried with a growing delay, and every skip or failure
 * keeps its reason.  docs/internals/jobs.md.
 *
 * States: queued -> running -> done | failed (after the last attempt) |
 * queued again (an attempt failed, next_try later); skipped (not a chest
 * CT series: the reason says why).  A series that receives new instances
 * after its job ended is queued again.
 */
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "covct/core.h"
#include "covct/store.h"
#include "store/store_int.h"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS jobs ("
    " id INTEGER PRIMARY KEY,"
    " series_uid TEXT NOT NULL UNIQUE,"
    " state TEXT NOT NULL,"
    " reason TEXT,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " next_try REAL NOT NULL DEFAULT 0,"
    " series_last_received REAL,"
    " created REAL NOT NULL, started REAL, finished REAL,"
    " result_dir TEXT);"
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, next_try);";

static double unix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The analysis outcome the worklist sorts by (added after the first
 * release of the table: added to an older table in place). */
static int add_result_columns(sqlite3 *db, char **msg)
{
    if (sqlite3_exec(db, "SELECT severity, category FROM jobs LIMIT 0", NULL,
                     NULL, NULL) == SQLITE_OK)
        return SQLITE_OK;
    return sqlite3_exec(db,
                        "ALTER TABLE jobs ADD COLUMN severity INTEGER;"
                        "ALTER TABLE jobs ADD COLUMN category TEXT;",
                        NULL, NULL, msg);
}

static covct_rc open_rw(covct_store *s, sqlite3 **db, covct_error *err)
{
    covct_rc rc0 = covct_store_db_open(s, true, db, err);
    if (rc0)
        return rc0;
    char *msg = NULL;
    if (sqlite3_exec(*db, "PRAGMA synchronous = FULL;", NULL, NULL, &msg) !=
            SQLITE_OK ||
        sqlite3_exec(*db, schema, NULL, NULL, &msg) != SQLITE_OK ||
        add_result_columns(*db, &msg) != SQLITE_OK) {
        covct_rc rc = COVCT_ERR(err, COVCT_ERR_IO, "job table: %s",
                                msg ? msg : sqlite3_errmsg(*db));
        sqlite3_free(msg);
        sqlite3_close(*db);
        *db = NULL;
        return rc;
    }
    return COVCT_OK;
}

static covct_rc db_err(sqlite3 *db, covct_error *err)
{
    return COVCT_ERR(err, COVCT_ERR_IO, "job table: %s", sqlite3_errmsg(db));
}

covct_rc covct_jobs_recover(covct_store *s, unsigned *requeued,
                            covct_error *err)
{
    sqlite3 *db;
    covct_rc rc = open_rw(s, &db, err);
    if (rc)
        return rc;
    if (sqlite3_exec(db,
                     "UPDATE jobs SET state = 'queued', next_try = 0, "
                     "reason = 'covct stopped during the analysis; retried' "
                     "WHERE state = 'running'",
                     NULL, NULL, NULL) != SQLITE_OK)
        rc = db_err(db, err);
    if (requeued)
        *requeued = rc ? 0 : (unsigned)sqlite3_changes(db);
    sqlite3_close(db);
    return rc;
}

/* Why a series is not analysed, or NULL. */
static const char *skip_reason(const char *modality, int64_t n,
                               int64_t n_ct, unsigned min_instances,
                               char *buf, size_t size)
{
    if (!modality || strcmp(modality, "CT") != 0) {
        snprintf(buf, size, "modality %s, not CT",
                 modality && modality[0] ? modality : "missing");
        return buf;
    }
    if (n_ct < (int64_t)min_instances) {
        snprintf(buf, size,
                 "%lld CT images (of %lld instances): fewer than the %u a "
                 "chest CT volume needs",
                 (long long)n_ct, (long long)n, min_instances);
        return buf;
    }
    return NULL;
}

covct_rc covct_jobs_scan(covct_store *s, double settle_s,
                         unsigned min_instances, unsigned *queued,
                         unsigned *skipped, covct_error *err)
{
    *queued = *skipped = 0;
    sqlite3 *db;
    covct_rc rc = open_rw(s, &db, err);
    if (rc)
        return rc;
    double now = unix_now();
    /* Series quiet for settle_s without a job, or changed since theirs. */
    static const char *const sel =
        "SELECT se.series_uid, se.modality, se.last_received,"
        " (SELECT count(*) FROM instances i WHERE i.series_uid ="
        "  se.series_uid),"
        " (SELECT count(*) FROM instances i WHERE i.series_uid ="
        "  se.series_uid AND i.sop_class_uid IN"
        "  ('1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.5.1.4.1.1.2.1',"
        "   '1.2.840.10008.5.1.4.1.1.2.2')),"
        " j.id"
        " FROM series se LEFT JOIN jobs j ON j.series_uid = se.series_uid"
        " WHERE se.last_received < ?1 AND (j.id IS NULL OR"
        "  (j.state IN ('done', 'failed', 'skipped') AND"
        "   se.last_received > j.series_last_received))";
    sqlite3_stmt *st = NULL, *ins = NULL;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, sel, -1, &st, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(
            db,
            "INSERT INTO jobs (series_uid, state, reason, attempts, "
            "next_try, series_last_received, created) VALUES "
            "(?1, ?2, ?3, 0, 0, ?4, ?5) ON CONFLICT (series_uid) DO UPDATE "
            "SET state = ?2, reason = ?3, attempts = 0, next_try = 0, "
            "series_last_received = ?4, created = ?5, started = NULL, "
            "finished = NULL",
            -1, &ins, NULL) != SQLITE_OK) {
        rc = db_err(db, err);
        goto out;
    }
    sqlite3_bind_double(st, 1, now - settle_s);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *uid = (const char *)sqlite3_column_text(st, 0);
        const char *mod = (const char *)sqlite3_column_text(st, 1);
        double last = sqlite3_column_double(st, 2);
        int64_t n = sqlite3_column_int64(st, 3);
        int64_t n_ct = sqlite3_column_int64(st, 4);
        char why[160];
        const char *reason =
            skip_reason(mod, n, n_ct, min_instances, why, sizeof why);
        sqlite3_reset(ins);
        sqlite3_bind_text(ins, 1, uid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 2, reason ? "skipped" : "queued", -1,
                          SQLITE_STATIC);
        if (reason)
            sqlite3_bind_text(ins, 3, reason, -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(ins, 3);
        sqlite3_bind_double(ins, 4, last);
        sqlite3_bind_double(ins, 5, now);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            rc = db_err(db, err);
            goto out;
        }
        if (reason)
            (*skipped)++;
        else
            (*queued)++;
    }
    if (r != SQLITE_DONE)
        rc = db_err(db, err);
out:
    sqlite3_finalize(st);
    sqlite3_finalize(ins);
    sqlite3_exec(db, rc ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

covct_rc covct_jobs_take(covct_store *s, covct_job *job, bool *got,
                         covct_error *err)
{
    *got = false;
    memset(job, 0, sizeof *job);
    sqlite3 *db;
    covct_rc rc = open_rw(s, &db, err);
    if (rc)
        return rc;
    sqlite3_stmt *st = NULL;
    double now = unix_now();
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(
            db,
            "SELECT j.id, j.series_uid, j.attempts, se.study_uid,"
            " (SELECT path FROM instances i WHERE i.series_uid ="
            "  j.series_uid LIMIT 1)"
            " FROM jobs j JOIN series se ON se.series_uid = j.series_uid"
            " WHERE j.state = 'queued' AND j.next_try <= ?1"
            " ORDER BY j.next_try, j.id LIMIT 1",
            -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(db, err);
        goto out;
    }
    sqlite3_bind_double(st, 1, now);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        job->id = sqlite3_column_int64(st, 0);
        snprintf(job->series_uid, sizeof job->series_uid, "%s",
                 (const char *)sqlite3_column_text(st, 1));
        job->attempts = (unsigned)sqlite3_column_int(st, 2);
        const char *study = (const char *)sqlite3_column_text(st, 3);
        snprintf(job->study_uid, sizeof job->study_uid, "%s",
                 study ? study : "");
        const char *rel = (const char *)sqlite3_column_text(st, 4);
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s/%s", covct_store_dir(s),
                 rel ? rel : "");
        snprintf(job->series_dir, sizeof job->series_dir, "%s",
                 dirname(tmp));
        sqlite3_finalize(st);
        st = NULL;
        char sql[128];
        snprintf(sql, sizeof sql,
                 "UPDATE jobs SET state = 'running', started = %.3f, "
                 "attempts = attempts + 1 WHERE id = %lld",
                 now, (long long)job->id);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
            rc = db_err(db, err);
            goto out;
        }
        job->attempts++;
        *got = true;
    } else if (r != SQLITE_DONE) {
        rc = db_err(db, err);
    }
out:
    sqlite3_finalize(st);
    sqlite3_exec(db, rc ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

covct_rc covct_jobs_finish(covct_store *s, const covct_job *job, bool ok,
                           const char *reason, const char *result_dir,
                           unsigned max_attempts, double retry_base_s,
                           bool *will_retry, covct_error *err)
{
    sqlite3 *db;
    covct_rc rc = open_rw(s, &db, err);
    if (rc)
        return rc;
    bool retry = !ok && job->attempts < max_attempts;
    /* Delays base, 4 x base, 16 x base...: a full disk or a busy machine
     * gets time to recover, a broken series does not loop. */
    double delay = retry_base_s * pow(4.0, (double)(job->attempts - 1));
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "UPDATE jobs SET state = ?1, reason = ?2, "
                           "finished = ?3, next_try = ?4, result_dir = ?5 "
                           "WHERE id = ?6",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(db, err);
    } else {
        double now = unix_now();
        sqlite3_bind_text(st, 1, ok ? "done" : retry ? "queued" : "failed",
                          -1, SQLITE_STATIC);
        if (reason)
            sqlite3_bind_text(st, 2, reason, -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(st, 2);
        sqlite3_bind_double(st, 3, now);
        sqlite3_bind_double(st, 4, retry ? now + delay : 0);
        if (result_dir)
            sqlite3_bind_text(st, 5, result_dir, -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(st, 5);
        sqlite3_bind_int64(st, 6, job->id);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_err(db, err);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (will_retry)
        *will_retry = retry;
    return rc;
}

covct_rc covct_jobs_set_result(covct_store *s, int64_t job_id, int severity,
                               const char *category, covct_error *err)
{
    sqlite3 *db;
    covct_rc rc = open_rw(s, &db, err);
    if (rc)
        return rc;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "UPDATE jobs SET severity = ?1, category = ?2 "
                           "WHERE id = ?3",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(db, err);
    } else {
        if (severity >= 0)
            sqlite3_bind_int(st, 1, severity);
        else
            sqlite3_bind_null(st, 1);
        if (category)
            sqlite3_bind_text(st, 2, category, -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(st, 2);
        sqlite3_bind_int64(st, 3, job_id);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_err(db, err);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}
