/* The db module's PostgreSQL backend, through libpq: text parameters and
 * results, one connection per handle. */
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "db/db_int.h"

/* int8 (bigint) in pg_type: integer parameters are sent with this type so
 * that expressions such as "$1 IS NULL" or "$1 + 1" need no cast; text
 * parameters are sent untyped and take the type of their column. */
#define INT8OID 20

static covct_rc fail(covct_db *db, const char *sql, const PGresult *res,
                     covct_error *err)
{
    char head[64];
    db_sql_head(sql, head);
    const char *msg = res ? PQresultErrorMessage(res) : "";
    if (!msg || !*msg)
        msg = PQerrorMessage(db->conn);
    char clean[512];
    snprintf(clean, sizeof clean, "%s", msg);
    size_t l = strlen(clean);
    while (l && (clean[l - 1] == '\n' || clean[l - 1] == ' '))
        clean[--l] = 0;
    return COVCT_ERR(err, COVCT_ERR_IO, "%s: '%s' failed: %s", db->describe,
                     head, clean);
}

static bool ok_status(ExecStatusType s)
{
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

static covct_rc pg_exec(covct_db *db, const char *sql, covct_error *err)
{
    char *x = db_expand_ddl(sql, "BIGSERIAL PRIMARY KEY", err);
    if (!x)
        return COVCT_ERR_NOMEM;
    PGresult *res = PQexec(db->conn, x);
    covct_rc rc = COVCT_OK;
    if (!res || !ok_status(PQresultStatus(res)))
        rc = fail(db, sql, res, err);
    PQclear(res);
    covct_free(x);
    return rc;
}

static covct_rc pg_query(covct_db *db, const char *sql,
                         const covct_db_param *params, size_t n,
                         covct_db_result **out, covct_error *err)
{
    if (n > 64)
        return COVCT_ERR(err, COVCT_ERR_INTERNAL, "too many parameters");
    const char *values[64];
    unsigned int types[64];
    char ints[64][24];
    for (size_t i = 0; i < n; i++) {
        types[i] = 0;
        values[i] = NULL;
        if (params[i].type == COVCT_DB_T_INT) {
            snprintf(ints[i], sizeof ints[i], "%lld", (long long)params[i].i);
            values[i] = ints[i];
            types[i] = INT8OID;
        } else if (params[i].type == COVCT_DB_T_TEXT) {
            values[i] = params[i].text;
        }
    }
    PGresult *res = PQexecParams(db->conn, sql, (int)n, types, values, NULL,
                                 NULL, 0);
    if (!res || !ok_status(PQresultStatus(res))) {
        covct_rc rc = fail(db, sql, res, err);
        PQclear(res);
        return rc;
    }
    covct_rc rc = COVCT_OK;
    if (out) {
        size_t rows = (size_t)PQntuples(res), cols = (size_t)PQnfields(res);
        covct_db_result *r = db_result_new(rows, cols, err);
        if (!r) {
            rc = COVCT_ERR_NOMEM;
        } else {
            for (size_t i = 0; i < rows && !rc; i++)
                for (size_t j = 0; j < cols; j++) {
                    if (PQgetisnull(res, (int)i, (int)j))
                        continue;
                    char *v = covct_strdup(PQgetvalue(res, (int)i, (int)j));
                    if (!v) {
                        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
                        break;
                    }
                    r->cells[i * cols + j] = v;
                }
            if (rc)
                covct_db_result_free(r);
            else
                *out = r;
        }
    }
    PQclear(res);
    return rc;
}

static covct_rc pg_begin(covct_db *db, const char *lock_table,
                         covct_error *err)
{
    covct_rc rc = pg_exec(db, "BEGIN", err);
    if (rc || !lock_table)
        return rc;
    char sql[160];
    snprintf(sql, sizeof sql, "LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE",
             lock_table);
    if ((rc = pg_exec(db, sql, err))) {
        PGresult *res = PQexec(db->conn, "ROLLBACK");
        PQclear(res);
    }
    return rc;
}

static void pg_close(covct_db *db) { PQfinish(db->conn); }

static const db_ops pg_ops = { pg_exec, pg_query, pg_begin, pg_close };

/* Server notices ("relation already exists, skipping") are not errors. */
static void quiet_notice(void *arg, const char *message)
{
    (void)arg;
    covct_log(COVCT_LOG_DEBUG, "PostgreSQL: %s", message);
}

covct_rc db_pg_open(const char *conninfo, covct_db *db, covct_error *err)
{
    db->kind = COVCT_DB_POSTGRESQL;
    db->ops = &pg_ops;
    PGconn *c = PQconnectdb(conninfo);
    if (!c)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
        size_t l = strlen(msg);
        while (l && (msg[l - 1] == '\n' || msg[l - 1] == ' '))
            msg[--l] = 0;
        PQfinish(c);
        return COVCT_ERR(err, COVCT_ERR_IO,
                         "cannot connect to PostgreSQL: %s", msg);
    }
    db->conn = c;
    PQsetNoticeProcessor(c, quiet_notice, NULL);
    const char *host = PQhost(c);
    snprintf(db->describe, sizeof db->describe, "PostgreSQL %s@%s:%s",
             PQdb(c), host && *host ? host : "local", PQport(c));
    covct_rc rc = pg_exec(db, "SET client_min_messages = warning", err);
    if (rc) {
        PQfinish(c);
        db->conn = NULL;
    }
    return rc;
}
