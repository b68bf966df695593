/* Internals of the db module: the backend table and the result object. */
#ifndef COVCT_DB_INT_H
#define COVCT_DB_INT_H

#include "covct/db.h"

struct covct_db_result {
    size_t rows, cols;
    size_t cap_rows; /* rows the cells array has room for */
    char **cells; /* rows * cols, NULL for SQL NULL */
};

typedef struct db_ops {
    covct_rc (*exec)(covct_db *db, const char *sql, covct_error *err);
    covct_rc (*query)(covct_db *db, const char *sql,
                      const covct_db_param *params, size_t n,
                      covct_db_result **out, covct_error *err);
    covct_rc (*begin)(covct_db *db, const char *lock_table,
                      covct_error *err);
    void (*close)(covct_db *db);
} db_ops;

struct covct_db {
    covct_db_backend kind;
    const db_ops *ops;
    void *conn; /* sqlite3 * or PGconn * */
    char describe[256];
    bool in_tx;
};

covct_rc db_sqlite_open(const char *path, covct_db *db, covct_error *err);
covct_rc db_pg_open(const char *conninfo, covct_db *db, covct_error *err);

/* A result of `rows` x `cols` empty cells (filled by the backend). */
covct_db_result *db_result_new(size_t rows, size_t cols, covct_error *err);
/* Append one row; `cells` are copied (NULL stays NULL). */
covct_rc db_result_add_row(covct_db_result *r, const char *const *cells,
                           covct_error *err);

/* `sql` with {{id}} replaced by `id_type`; a new string. */
char *db_expand_ddl(const char *sql, const char *id_type, covct_error *err);

/* The first words of a statement, for error messages. */
void db_sql_head(const char *sql, char out[64]);

#endif
