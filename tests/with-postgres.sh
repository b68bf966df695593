#!/bin/bash
# Run one test against PostgreSQL instead of SQLite: start a throw-away
# server (scripts/postgres-temp.sh), create a database, point every covct
# command and test at it with COVCT_DB, run the test, stop the server.
#   tests/with-postgres.sh COMMAND [ARGS...]
# The exit status is the test's (77 = skipped, as ctest expects).
set -u
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../scripts/postgres-temp.sh
. "$here/../scripts/postgres-temp.sh"
if ! _pg_bin >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
        echo "FAIL: PostgreSQL server not installed (scripts/install-deps.sh installs it)" >&2; exit 1
    fi
    echo "SKIP: PostgreSQL server not installed" >&2; exit 77
fi
pg_start || exit 1
trap 'pg_stop "$PG_DIR"' EXIT
COVCT_DB=$(pg_newdb covct_test) || exit 1
export COVCT_DB
echo "with-postgres: COVCT_DB=$COVCT_DB"
"$@"
