/* The db module against the backend named by $COVCT_DB (PostgreSQL under
 * tests/with-postgres.sh), else a SQLite file in a temporary folder:
 * parameters, NULLs, RETURNING, {{id}} keys, transactions, migrations,
 * errors that name the statement, and two handles on one database. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "covct/db.h"
#include "test.h"

static char tmpdir[] = "/tmp/covct-test-db.XXXXXX";

static covct_db *open_db(void)
{
    char *url = covct_db_url_for_dir(tmpdir);
    covct_db *db = NULL;
    covct_error err = { 0 };
    covct_rc rc = covct_db_open(url, &db, &err);
    CHECKF(rc == COVCT_OK, "open %s: %s", url, err.msg);
    covct_free(url);
    if (rc)
        exit(1);
    return db;
}

static const covct_db_migration v1[] = {
    { 1, "things",
      "CREATE TABLE thing (id {{id}}, name TEXT NOT NULL UNIQUE,"
      " n BIGINT, x DOUBLE PRECISION, note TEXT)" },
};
static const covct_db_migration v2[] = {
    { 1, "things",
      "CREATE TABLE thing (id {{id}}, name TEXT NOT NULL UNIQUE,"
      " n BIGINT, x DOUBLE PRECISION, note TEXT)" },
    { 2, "tags",
      "CREATE TABLE tag (thing_id BIGINT NOT NULL REFERENCES thing(id),"
      " tag TEXT NOT NULL);"
      "CREATE INDEX tag_thing ON tag(thing_id)" },
};
static const covct_db_migration broken[] = {
    { 1, "others", "CREATE TABLE other_thing (id {{id}})" },
    { 2, "other tags", "CREATE TABLE other_tag (thing_id BIGINT)" },
    { 3, "bad", "CREATE TABLEX nonsense" },
};

static void test_migrations(covct_db *db)
{
    covct_error err = { 0 };
    int v = -1;
    CHECK(covct_db_schema_version(db, "test", &v, &err) == COVCT_OK &&
          v == 0);
    CHECKF(covct_db_migrate(db, "test", v1, 1, &err) == COVCT_OK, "%s",
           err.msg);
    CHECK(covct_db_schema_version(db, "test", &v, &err) == COVCT_OK &&
          v == 1);
    /* applying again is a no-op; the next list adds version 2 only */
    CHECKF(covct_db_migrate(db, "test", v1, 1, &err) == COVCT_OK, "%s",
           err.msg);
    CHECKF(covct_db_migrate(db, "test", v2, 2, &err) == COVCT_OK, "%s",
           err.msg);
    CHECK(covct_db_schema_version(db, "test", &v, &err) == COVCT_OK &&
          v == 2);
    /* an older covct (knows only version 1) refuses the newer database */
    covct_error_clear(&err);
    CHECK(covct_db_migrate(db, "test", v1, 1, &err) == COVCT_ERR_UNSUPPORTED);
    CHECKF(strstr(err.msg, "newer covct") && strstr(err.msg, "version 2"),
           "%s", err.msg);
    /* a failing migration names itself and is not recorded */
    covct_error_clear(&err);
    CHECK(covct_db_migrate(db, "other", broken, 3, &err) != COVCT_OK);
    CHECKF(strstr(err.msg, "migration 3") && strstr(err.msg, "bad"), "%s",
           err.msg);
    CHECK(covct_db_schema_version(db, "other", &v, &err) == COVCT_OK &&
          v == 2);
}

static void test_queries(covct_db *db)
{
    covct_error err = { 0 };
    int64_t id1 = 0, id2 = 0, count = 0;
    const char *ins = "INSERT INTO thing (name, n, x, note) VALUES"
                      " ($1, $2, 2.5, $3) RETURNING id";
    CHECKF(covct_db_query_int(db, ins,
                              (covct_db_param[]){ COVCT_DB_TEXT("a"),
                                                  COVCT_DB_INT(-7),
                                                  COVCT_DB_NULL },
                              3, &id1, &err) == COVCT_OK,
           "%s", err.msg);
    /* text with quotes, UTF-8 and a 64-bit value travel unchanged */
    const char *tricky = "O'Brien \"x\"; -- \xe4\xb8\xad\xe6\x96\x87";
    CHECKF(covct_db_query_int(db, ins,
                              (covct_db_param[]){ COVCT_DB_TEXT(tricky),
                                                  COVCT_DB_INT(INT64_MAX),
                                                  COVCT_DB_TEXT("n") },
                              3, &id2, &err) == COVCT_OK,
           "%s", err.msg);
    CHECK(id1 > 0 && id2 > id1);
    covct_db_result *r = NULL;
    /* parameters may appear out of order and more than once */
    CHECKF(covct_db_query(db,
                          "SELECT id, name, n, note, x FROM thing"
                          " WHERE n = $2 OR name = $1 OR name = $1"
                          " ORDER BY id",
                          (covct_db_param[]){ COVCT_DB_TEXT(tricky),
                                              COVCT_DB_INT(-7) },
                          2, &r, &err) == COVCT_OK,
           "%s", err.msg);
    CHECK(covct_db_rows(r) == 2 && covct_db_cols(r) == 5);
    CHECK(covct_db_get_int(r, 0, 0, 0) == id1);
    CHECK(covct_db_get_int(r, 0, 2, 0) == -7);
    CHECK(covct_db_get(r, 0, 3) == NULL); /* SQL NULL */
    CHECK(covct_db_get(r, 1, 1) && !strcmp(covct_db_get(r, 1, 1), tricky));
    CHECK(covct_db_get_int(r, 1, 2, 0) == INT64_MAX);
    CHECK(covct_db_get(r, 1, 4) && atof(covct_db_get(r, 1, 4)) == 2.5);
    CHECK(covct_db_get(r, 2, 0) == NULL && covct_db_get(r, 0, 9) == NULL);
    covct_db_result_free(r);

    /* a constraint violation is an error that names the statement */
    covct_error_clear(&err);
    CHECK(covct_db_query(db, ins,
                         (covct_db_param[]){ COVCT_DB_TEXT("a"),
                                             COVCT_DB_INT(1), COVCT_DB_NULL },
                         3, NULL, &err) == COVCT_ERR_IO);
    CHECKF(strstr(err.msg, "INSERT INTO thing") &&
               strstr(err.msg, covct_db_describe(db)),
           "%s", err.msg);
    /* a missing parameter is refused, not bound as NULL */
    covct_error_clear(&err);
    CHECK(covct_db_query(db, "SELECT $1, $2", (covct_db_param[]){ COVCT_DB_INT(1) },
                         1, NULL, &err) != COVCT_OK);
    /* no row */
    covct_error_clear(&err);
    CHECK(covct_db_query_int(db, "SELECT id FROM thing WHERE name = $1",
                             (covct_db_param[]){ COVCT_DB_TEXT("zz") }, 1,
                             &count, &err) == COVCT_ERR_NOT_FOUND);
    /* foreign keys are enforced in both backends */
    covct_error_clear(&err);
    CHECK(covct_db_query(db, "INSERT INTO tag (thing_id, tag) VALUES ($1, 'x')",
                         (covct_db_param[]){ COVCT_DB_INT(id2 + 1000) }, 1,
                         NULL, &err) == COVCT_ERR_IO);
}

static void test_transactions(covct_db *db, covct_db *other)
{
    covct_error err = { 0 };
    int64_t before = 0, after = 0, seen = 0;
    CHECK(covct_db_query_int(db, "SELECT COUNT(*) FROM thing", NULL, 0,
                             &before, &err) == COVCT_OK);
    CHECKF(covct_db_begin(db, "thing", &err) == COVCT_OK, "%s", err.msg);
    CHECK(covct_db_begin(db, NULL, &err) == COVCT_ERR_INTERNAL);
    covct_error_clear(&err);
    CHECK(covct_db_query(db, "INSERT INTO thing (name) VALUES ('t1')", NULL,
                         0, NULL, &err) == COVCT_OK);
    /* the other connection does not see the open transaction's row */
    CHECK(covct_db_query_int(other, "SELECT COUNT(*) FROM thing", NULL, 0,
                             &seen, &err) == COVCT_OK &&
          seen == before);
    covct_db_rollback(db);
    CHECK(covct_db_query_int(db, "SELECT COUNT(*) FROM thing", NULL, 0,
                             &after, &err) == COVCT_OK &&
          after == before);
    CHECK(covct_db_begin(db, "thing", &err) == COVCT_OK);
    CHECK(covct_db_query(db, "INSERT INTO thing (name) VALUES ('t2')", NULL,
                         0, NULL, &err) == COVCT_OK);
    CHECKF(covct_db_commit(db, &err) == COVCT_OK, "%s", err.msg);
    CHECK(covct_db_query_int(other, "SELECT COUNT(*) FROM thing", NULL, 0,
                             &seen, &err) == COVCT_OK &&
          seen == before + 1);
}

int main(void)
{
    if (!mkdtemp(tmpdir))
        return 1;
    const char *env = getenv("COVCT_DB");
    printf("backend: %s\n", env && *env ? env : "SQLite (temporary file)");
    covct_db *db = open_db(), *other = open_db();
    covct_error err = { 0 };
    CHECK(covct_db_kind(db) == (env && *env ? COVCT_DB_POSTGRESQL
                                            : COVCT_DB_SQLITE));
    test_migrations(db);
    test_queries(db);
    test_transactions(db, other);
    /* a DDL error names the statement */
    CHECK(covct_db_exec(db, "CREATE TABLEX y", &err) == COVCT_ERR_IO &&
          strstr(err.msg, "CREATE TABLEX"));
    covct_db_close(other);
    covct_db_close(db);
    /* an unreachable server is a clear error */
    covct_error_clear(&err);
    CHECK(covct_db_open("postgresql://covct@127.0.0.1:1/none", &db, &err) ==
              COVCT_ERR_IO &&
          strstr(err.msg, "cannot connect to PostgreSQL"));
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_report();
}
