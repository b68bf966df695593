/* The db module's backend-neutral part: opening by URL, results,
 * transactions and schema migrations (docs/internals/db.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/db_int.h"

static bool is_pg_url(const char *url)
{
    return !strncmp(url, "postgresql://", 13) ||
           !strncmp(url, "postgres://", 11) || strstr(url, "dbname=") ||
           strstr(url, "host=");
}

covct_rc covct_db_open(const char *url, covct_db **out, covct_error *err)
{
    *out = NULL;
    if (!url || !*url)
        return COVCT_ERR(err, COVCT_ERR_ARG, "no database given");
    covct_db *db = covct_calloc(1, sizeof *db);
    if (!db)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    covct_rc rc;
    if (is_pg_url(url))
        rc = db_pg_open(url, db, err);
    else
        rc = db_sqlite_open(!strncmp(url, "sqlite:", 7) ? url + 7 : url, db,
                            err);
    if (rc) {
        covct_free(db);
        return rc;
    }
    *out = db;
    return COVCT_OK;
}

void covct_db_close(covct_db *db)
{
    if (!db)
        return;
    if (db->in_tx)
        covct_db_rollback(db);
    db->ops->close(db);
    covct_free(db);
}

covct_db_backend covct_db_kind(const covct_db *db) { return db->kind; }

const char *covct_db_describe(const covct_db *db) { return db->describe; }

char *covct_db_url_for_dir(const char *dir)
{
    const char *env = getenv("COVCT_DB");
    if (env && *env)
        return covct_strdup(env);
    size_t n = strlen(dir) + sizeof "/covct.db";
    char *p = covct_malloc(n);
    if (p)
        snprintf(p, n, "%s/covct.db", dir);
    return p;
}

void db_sql_head(const char *sql, char out[64])
{
    size_t i = 0;
    while (*sql == ' ' || *sql == '\n' || *sql == '\t')
        sql++;
    for (; sql[i] && i < 60; i++)
        out[i] = sql[i] == '\n' ? ' ' : sql[i];
    out[i] = 0;
    if (sql[i])
        memcpy(out + (i < 60 ? i : 60), "...", 4);
}

char *db_expand_ddl(const char *sql, const char *id_type, covct_error *err)
{
    static const char token[] = "{{id}}";
    size_t tl = sizeof token - 1, il = strlen(id_type), count = 0;
    for (const char *p = sql; (p = strstr(p, token)); p += tl)
        count++;
    size_t n = strlen(sql) + count * il + 1;
    char *out = covct_malloc(n), *w = out;
    if (!out) {
        COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (const char *p = sql;;) {
        const char *q = strstr(p, token);
        size_t k = q ? (size_t)(q - p) : strlen(p);
        memcpy(w, p, k);
        w += k;
        if (!q)
            break;
        memcpy(w, id_type, il);
        w += il;
        p = q + tl;
    }
    *w = 0;
    return out;
}

covct_rc covct_db_exec(covct_db *db, const char *sql, covct_error *err)
{
    return db->ops->exec(db, sql, err);
}

covct_rc covct_db_query(covct_db *db, const char *sql,
                        const covct_db_param *params, size_t n,
                        covct_db_result **out, covct_error *err)
{
    if (out)
        *out = NULL;
    return db->ops->query(db, sql, params, n, out, err);
}

covct_rc covct_db_query_int(covct_db *db, const char *sql,
                            const covct_db_param *params, size_t n,
                            int64_t *out, covct_error *err)
{
    covct_db_result *r;
    covct_rc rc = covct_db_query(db, sql, params, n, &r, err);
    if (rc)
        return rc;
    if (!covct_db_rows(r) || !covct_db_get(r, 0, 0)) {
        char head[64];
        db_sql_head(sql, head);
        covct_db_result_free(r);
        return COVCT_ERR(err, COVCT_ERR_NOT_FOUND, "no row from '%s'", head);
    }
    *out = covct_db_get_int(r, 0, 0, 0);
    covct_db_result_free(r);
    return COVCT_OK;
}

/* ---- results ---------------------------------------------------------- */
covct_db_result *db_result_new(size_t rows, size_t cols, covct_error *err)
{
    covct_db_result *r = covct_calloc(1, sizeof *r);
    size_t cells;
    if (r && covct_mul_size(rows, cols, &cells) &&
        (r->cells = covct_calloc(cells ? cells : 1, sizeof *r->cells))) {
        r->rows = rows;
        r->cap_rows = rows;
        r->cols = cols;
        return r;
    }
    covct_free(r);
    COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory for a %zu-row result",
              rows);
    return NULL;
}

covct_rc db_result_add_row(covct_db_result *r, const char *const *cells,
                           covct_error *err)
{
    if (r->rows == r->cap_rows) {
        size_t rows2 = r->cap_rows ? r->cap_rows * 2 : 8, bytes;
        if (!covct_mul_size(rows2, r->cols ? r->cols : 1, &bytes) ||
            !covct_mul_size(bytes, sizeof *r->cells, &bytes))
            return COVCT_ERR(err, COVCT_ERR_LIMIT, "result too large");
        char **c = covct_realloc(r->cells, bytes);
        if (!c)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        r->cells = c;
        r->cap_rows = rows2;
    }
    char **row = r->cells + r->rows * r->cols;
    for (size_t i = 0; i < r->cols; i++) {
        row[i] = NULL;
        if (cells[i] && !(row[i] = covct_strdup(cells[i]))) {
            for (size_t j = 0; j < i; j++)
                covct_free(row[j]);
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        }
    }
    r->rows++;
    return COVCT_OK;
}

size_t covct_db_rows(const covct_db_result *r) { return r ? r->rows : 0; }
size_t covct_db_cols(const covct_db_result *r) { return r ? r->cols : 0; }

const char *covct_db_get(const covct_db_result *r, size_t row, size_t col)
{
    if (!r || row >= r->rows || col >= r->cols)
        return NULL;
    return r->cells[row * r->cols + col];
}

int64_t covct_db_get_int(const covct_db_result *r, size_t row, size_t col,
                         int64_t fallback)
{
    const char *s = covct_db_get(r, row, col);
    if (!s || !*s)
        return fallback;
    char *end;
    long long v = strtoll(s, &end, 10);
    return *end ? fallback : (int64_t)v;
}

void covct_db_result_free(covct_db_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->rows * r->cols; i++)
        covct_free(r->cells[i]);
    covct_free(r->cells);
    covct_free(r);
}

/* ---- transactions ------------------------------------------------------ */
covct_rc covct_db_begin(covct_db *db, const char *lock_table,
                        covct_error *err)
{
    if (db->in_tx)
        return COVCT_ERR(err, COVCT_ERR_INTERNAL,
                         "%s: transaction already open", db->describe);
    covct_rc rc = db->ops->begin(db, lock_table, err);
    if (!rc)
        db->in_tx = true;
    return rc;
}

covct_rc covct_db_commit(covct_db *db, covct_error *err)
{
    covct_rc rc = db->ops->exec(db, "COMMIT", err);
    db->in_tx = false;
    return rc;
}

void covct_db_rollback(covct_db *db)
{
    covct_error e = { 0 };
    if (db->ops->exec(db, "ROLLBACK", &e))
        covct_log(COVCT_LOG_WARN, "%s: rollback failed: %s", db->describe,
                  e.msg);
    db->in_tx = false;
}

/* ---- migrations -------------------------------------------------------- */
static const char schema_table[] =
    "CREATE TABLE IF NOT EXISTS covct_schema ("
    " component TEXT NOT NULL, version BIGINT NOT NULL,"
    " what TEXT NOT NULL, applied_at TEXT NOT NULL,"
    " PRIMARY KEY (component, version))";

covct_rc covct_db_schema_version(covct_db *db, const char *component,
                                 int *version, covct_error *err)
{
    covct_rc rc;
    int64_t v = 0;
    *version = 0;
    if ((rc = covct_db_exec(db, schema_table, err)) ||
        (rc = covct_db_query_int(
             db,
             "SELECT COALESCE(MAX(version), 0) FROM covct_schema"
             " WHERE component = $1",
             (covct_db_param[]){ COVCT_DB_TEXT(component) }, 1, &v, err)))
        return rc;
    *version = (int)v;
    return COVCT_OK;
}

covct_rc covct_db_migrate(covct_db *db, const char *component,
                          const covct_db_migration *list, size_t n,
                          covct_error *err)
{
    int have;
    covct_rc rc = covct_db_schema_version(db, component, &have, err);
    if (rc)
        return rc;
    int newest = n ? list[n - 1].version : 0;
    if (have > newest)
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "%s: the %s schema is at version %d, written by a "
                         "newer covct (this one knows up to %d); upgrade "
                         "covct",
                         db->describe, component, have, newest);
    for (size_t i = 0; i < n; i++) {
        const covct_db_migration *m = &list[i];
        if (m->version <= have)
            continue;
        char now[COVCT_DB_TIME_LEN];
        covct_db_now(now);
        if ((rc = covct_db_begin(db, "covct_schema", err)))
            return rc;
        /* another process may have migrated while we waited for the lock */
        int again;
        if ((rc = covct_db_schema_version(db, component, &again, err))) {
            covct_db_rollback(db);
            return rc;
        }
        if (again >= m->version) {
            covct_db_rollback(db);
            continue;
        }
        if ((rc = covct_db_exec(db, m->sql, err)) ||
            (rc = covct_db_query(
                 db,
                 "INSERT INTO covct_schema (component, version, what,"
                 " applied_at) VALUES ($1, $2, $3, $4)",
                 (covct_db_param[]){ COVCT_DB_TEXT(component),
                                     COVCT_DB_INT(m->version),
                                     COVCT_DB_TEXT(m->what),
                                     COVCT_DB_TEXT(now) },
                 4, NULL, err)) ||
            (rc = covct_db_commit(db, err))) {
            covct_db_rollback(db);
            covct_error_prefix(err, "%s schema migration %d (%s): ",
                               component, m->version, m->what);
            return rc;
        }
        covct_log(COVCT_LOG_INFO, "%s: %s schema migrated to version %d (%s)",
                  db->describe, component, m->version, m->what);
    }
    return COVCT_OK;
}

void covct_db_now(char out[COVCT_DB_TIME_LEN])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, COVCT_DB_TIME_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));
}
