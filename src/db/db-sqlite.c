/* The db module's SQLite backend: one file, WAL mode, a busy timeout so
 * that the server and a command line tool can share it. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db_int.h"

/* How long a writer waits for another one before giving up. */
#define SQLITE_BUSY_MS 30000

static covct_rc fail(covct_db *db, const char *sql, covct_error *err)
{
    char head[64];
    db_sql_head(sql, head);
    return COVCT_ERR(err, COVCT_ERR_IO, "%s: '%s' failed: %s", db->describe,
                     head, sqlite3_errmsg(db->conn));
}

static covct_rc lite_exec(covct_db *db, const char *sql, covct_error *err)
{
    char *x = db_expand_ddl(sql, "INTEGER PRIMARY KEY AUTOINCREMENT", err);
    if (!x)
        return COVCT_ERR_NOMEM;
    char *msg = NULL;
    covct_rc rc = COVCT_OK;
    if (sqlite3_exec(db->conn, x, NULL, NULL, &msg) != SQLITE_OK) {
        char head[64];
        db_sql_head(sql, head);
        rc = COVCT_ERR(err, COVCT_ERR_IO, "%s: '%s' failed: %s",
                       db->describe, head, msg ? msg : "unknown error");
    }
    sqlite3_free(msg);
    covct_free(x);
    return rc;
}

static covct_rc bind(covct_db *db, sqlite3_stmt *st, const char *sql,
                     const covct_db_param *params, size_t n,
                     covct_error *err)
{
    int count = sqlite3_bind_parameter_count(st);
    for (int i = 1; i <= count; i++) {
        const char *name = sqlite3_bind_parameter_name(st, i);
        char *end;
        long k = name && name[0] == '$' ? strtol(name + 1, &end, 10) : 0;
        if (k < 1 || (size_t)k > n || *end) {
            char head[64];
            db_sql_head(sql, head);
            return COVCT_ERR(err, COVCT_ERR_INTERNAL,
                             "%s: parameter '%s' of '%s' has no value "
                             "(%zu given)",
                             db->describe, name ? name : "?", head, n);
        }
        const covct_db_param *p = &params[k - 1];
        int r = p->type == COVCT_DB_T_INT
                    ? sqlite3_bind_int64(st, i, p->i)
                : p->type == COVCT_DB_T_TEXT
                    ? sqlite3_bind_text(st, i, p->text, -1, SQLITE_STATIC)
                    : sqlite3_bind_null(st, i);
        if (r != SQLITE_OK)
            return fail(db, sql, err);
    }
    return COVCT_OK;
}

static covct_rc lite_query(covct_db *db, const char *sql,
                           const covct_db_param *params, size_t n,
                           covct_db_result **out, covct_error *err)
{
    sqlite3_stmt *st = NULL;
    covct_db_result *r = NULL;
    const char **cells = NULL;
    covct_rc rc;
    if (sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL) != SQLITE_OK)
        return fail(db, sql, err);
    if ((rc = bind(db, st, sql, params, n, err)))
        goto done;
    size_t cols = (size_t)sqlite3_column_count(st);
    if (out) {
        if (!(r = db_result_new(0, cols, err)) ||
            !(cells = covct_calloc(cols ? cols : 1, sizeof *cells))) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    for (;;) {
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE)
            break;
        if (s != SQLITE_ROW) {
            rc = fail(db, sql, err);
            goto done;
        }
        if (!out)
            continue;
        for (size_t i = 0; i < cols; i++)
            cells[i] = (const char *)sqlite3_column_text(st, (int)i);
        if ((rc = db_result_add_row(r, cells, err)))
            goto done;
    }
    rc = COVCT_OK;
    if (out) {
        *out = r;
        r = NULL;
    }
done:
    covct_free(cells);
    covct_db_result_free(r);
    sqlite3_finalize(st);
    return rc;
}

static covct_rc lite_begin(covct_db *db, const char *lock_table,
                           covct_error *err)
{
    (void)lock_table; /* BEGIN IMMEDIATE locks the whole file */
    return lite_exec(db, "BEGIN IMMEDIATE", err);
}

static void lite_close(covct_db *db) { sqlite3_close(db->conn); }

static const db_ops sqlite_ops = { lite_exec, lite_query, lite_begin,
                                   lite_close };

covct_rc db_sqlite_open(const char *path, covct_db *db, covct_error *err)
{
    sqlite3 *h = NULL;
    db->kind = COVCT_DB_SQLITE;
    db->ops = &sqlite_ops;
    snprintf(db->describe, sizeof db->describe, "SQLite %s", path);
    if (sqlite3_open_v2(path, &h,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        covct_rc rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot open %s: %s",
                                db->describe,
                                h ? sqlite3_errmsg(h) : "out of memory");
        sqlite3_close(h);
        return rc;
    }
    db->conn = h;
    sqlite3_busy_timeout(h, SQLITE_BUSY_MS);
    /* WAL: readers never block the writer; synchronous=FULL: a committed
     * label version or audit entry survives a power cut. */
    covct_rc rc = lite_exec(db,
                            "PRAGMA journal_mode = WAL;"
                            "PRAGMA synchronous = FULL;"
                            "PRAGMA foreign_keys = ON;",
                            err);
    if (rc) {
        sqlite3_close(h);
        db->conn = NULL;
    }
    return rc;
}
