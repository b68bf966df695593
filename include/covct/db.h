/*
 * covct db: one small SQL interface over the two backends of the case
 * database (issue 6): SQLite (the default, one file, DIR/covct.db) and
 * PostgreSQL through libpq (sites and hubs that share one database).
 *
 * The callers write one SQL text for both.  The rules that make that work
 * (docs/internals/db.md):
 *  - parameters are $1, $2, ... (PostgreSQL's syntax; SQLite reads "$1" as
 *    a named parameter, which this layer binds by name);
 *  - values travel as text or 64-bit integers, results come back as text
 *    (NULL for SQL NULL) with integer conversion on request;
 *  - portable types only: BIGINT, TEXT, DOUBLE PRECISION; timestamps are
 *    ISO 8601 UTC text made by covct (covct_db_now), not by the server;
 *  - DDL given to covct_db_exec may use {{id}} for an auto-numbered
 *    primary key ("INTEGER PRIMARY KEY AUTOINCREMENT" in SQLite,
 *    "BIGSERIAL PRIMARY KEY" in PostgreSQL); INSERT ... RETURNING works in
 *    both.
 * A covct_db handle is used by one thread at a time.
 */
#ifndef COVCT_DB_H
#define COVCT_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct covct_db covct_db;
typedef struct covct_db_result covct_db_result;

typedef enum covct_db_backend {
    COVCT_DB_SQLITE = 1,
    COVCT_DB_POSTGRESQL
} covct_db_backend;

/* Open a database.  `url` is a SQLite file path (optionally "sqlite:PATH";
 * created if absent, WAL mode) or a PostgreSQL connection string
 * ("postgresql://user@host:port/db" or "host=... dbname=..."). */
covct_rc covct_db_open(const char *url, covct_db **out, covct_error *err);
void covct_db_close(covct_db *db);
covct_db_backend covct_db_kind(const covct_db *db);
/* "SQLite FILE" or "PostgreSQL db@host:port" (no password), for messages. */
const char *covct_db_describe(const covct_db *db);

/* The database URL of a site data folder: $COVCT_DB when set (how the
 * tests point every command at PostgreSQL), else DIR/covct.db.  Returns a
 * new string. */
char *covct_db_url_for_dir(const char *dir);

/* One or more statements without parameters (DDL, {{id}} expanded). */
covct_rc covct_db_exec(covct_db *db, const char *sql, covct_error *err);

typedef enum covct_db_type {
    COVCT_DB_T_NULL = 0,
    COVCT_DB_T_TEXT,
    COVCT_DB_T_INT
} covct_db_type;

typedef struct covct_db_param {
    covct_db_type type;
    const char *text;
    int64_t i;
} covct_db_param;

static inline covct_db_param covct_db_text_param(const char *s)
{
    covct_db_param p = { s ? COVCT_DB_T_TEXT : COVCT_DB_T_NULL, s, 0 };
    return p;
}
/* Text, or SQL NULL when s is NULL. */
#define COVCT_DB_TEXT(s) covct_db_text_param(s)
#define COVCT_DB_INT(v) ((covct_db_param){ COVCT_DB_T_INT, NULL, (v) })
#define COVCT_DB_NULL ((covct_db_param){ COVCT_DB_T_NULL, NULL, 0 })

/* Run one statement with parameters $1..$n.  When `out` is not NULL the
 * rows are returned (free with covct_db_result_free); otherwise they are
 * dropped. */
covct_rc covct_db_query(covct_db *db, const char *sql,
                        const covct_db_param *params, size_t n,
                        covct_db_result **out, covct_error *err);

size_t covct_db_rows(const covct_db_result *r);
size_t covct_db_cols(const covct_db_result *r);
/* Cell text, NULL for SQL NULL or out of range. */
const char *covct_db_get(const covct_db_result *r, size_t row, size_t col);
/* Cell as an integer; `fallback` for NULL or text that is not one. */
int64_t covct_db_get_int(const covct_db_result *r, size_t row, size_t col,
                         int64_t fallback);
void covct_db_result_free(covct_db_result *r);

/* Convenience: the first column of the first row as an integer (e.g. an
 * id from INSERT ... RETURNING id, or a count); COVCT_ERR_NOT_FOUND when
 * the statement returns no row. */
covct_rc covct_db_query_int(covct_db *db, const char *sql,
                            const covct_db_param *params, size_t n,
                            int64_t *out, covct_error *err);

/* Transactions.  covct_db_begin takes the write lock at once (SQLite:
 * BEGIN IMMEDIATE; PostgreSQL: BEGIN, then LOCK TABLE `lock_table` IN
 * SHARE ROW EXCLUSIVE MODE when it is not NULL), so a read-then-write
 * such as appending to a hash chain cannot interleave with another
 * writer. */
covct_rc covct_db_begin(covct_db *db, const char *lock_table,
                        covct_error *err);
covct_rc covct_db_commit(covct_db *db, covct_error *err);
/* Never fails visibly: errors are logged (used on error paths). */
void covct_db_rollback(covct_db *db);

/* ---- schema migrations ----------------------------------------------
 * Each component (e.g. "cases") has a list of migrations numbered 1..n;
 * covct_db_migrate applies those not yet recorded in the table
 * covct_schema (component, version, applied_at), each in a transaction,
 * and refuses a database whose recorded version is newer than the list
 * (written by a newer covct). */
typedef struct covct_db_migration {
    int version;
    const char *what; /* one line, logged when applied */
    const char *sql;  /* DDL for covct_db_exec ({{id}} expanded) */
} covct_db_migration;

covct_rc covct_db_migrate(covct_db *db, const char *component,
                          const covct_db_migration *list, size_t n,
                          covct_error *err);
/* The recorded version of a component (0 when none). */
covct_rc covct_db_schema_version(covct_db *db, const char *component,
                                 int *version, covct_error *err);

/* The current time as ISO 8601 UTC with milliseconds,
 * "2026-11-27T06:30:15.123Z". */
#define COVCT_DB_TIME_LEN 64
void covct_db_now(char out[COVCT_DB_TIME_LEN]);

#ifdef __cplusplus
}
#endif

#endif
