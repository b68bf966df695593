#!/bin/bash
# A private, throw-away PostgreSQL for tests (the case database's second
# backend): a new cluster in a temporary folder (initdb), listening on a
# free loopback port and a socket in that folder only, trust
# authentication for the user "covct", fsync off (a test cluster is
# thrown away; durability is SQLite's and PostgreSQL's own business).
#
#   eval "$(scripts/postgres-temp.sh start)"
#       prints assignments for: PG_DIR PG_PORT PG_URL PG_LOG
#       (PG_URL: postgresql://covct@127.0.0.1:PORT/postgres)
#   scripts/postgres-temp.sh newdb NAME      (with PG_PORT set)
#       creates database NAME and prints its URL
#   scripts/postgres-temp.sh stop [DIR]
#       fast shutdown, then removes DIR (default $PG_DIR) unless PG_KEEP=1
#
# PostgreSQL refuses to run as root: when started by root, the server runs
# as the system user "postgres" (created by Debian's postgresql package)
# and the folder is given to it.

_pg_bin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -x "$d/initdb" ] || { echo "postgres-temp: PostgreSQL server not installed (scripts/install-deps.sh installs it)" >&2; return 1; }
    printf '%s\n' "$d"
}

_pg_as() { # run a command as the cluster's owner
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_start() {
    local bin port try
    bin=$(_pg_bin) || return 1
    PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/covct-pg.XXXXXX") || return 1
    chmod 755 "$PG_DIR"
    [ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR"
    PG_LOG=$PG_DIR/server.log
    if ! _pg_as "$bin/initdb" -D "$PG_DIR/data" -U covct --auth=trust \
            -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1; then
        echo "postgres-temp: initdb failed:" >&2
        tail -20 "$PG_DIR/initdb.log" >&2
        return 1
    fi
    for try in 1 2 3; do
        port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') || return 1
        if _pg_as "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_LOG" -w -t 60 \
                -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -F -c max_connections=50" \
                start >/dev/null 2>&1; then
            PG_PORT=$port
            PG_URL=postgresql://covct@127.0.0.1:$port/postgres
            return 0
        fi
    done
    echo "postgres-temp: the server did not start; its log ($PG_LOG):" >&2
    tail -20 "$PG_LOG" >&2
    return 1
}

pg_newdb() {
    local name=$1
    psql -q -X -v ON_ERROR_STOP=1 "postgresql://covct@127.0.0.1:$PG_PORT/postgres" \
        -c "CREATE DATABASE \"$name\"" >/dev/null || return 1
    printf 'postgresql://covct@127.0.0.1:%s/%s\n' "$PG_PORT" "$name"
}

pg_stop() {
    local dir=${1:-${PG_DIR:-}} bin
    [ -n "$dir" ] && [ -d "$dir/data" ] || { echo "postgres-temp: stop: no cluster in '$dir'" >&2; return 1; }
    bin=$(_pg_bin) || return 1
    _pg_as "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
        _pg_as "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
    [ "${PG_KEEP:-0}" = 1 ] || rm -rf "$dir"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    case "${1:-}" in
    start)
        pg_start || exit 1
        printf 'PG_DIR=%q\nPG_PORT=%q\nPG_URL=%q\nPG_LOG=%q\n' \
            "$PG_DIR" "$PG_PORT" "$PG_URL" "$PG_LOG" ;;
    newdb) [ -n "${2:-}" ] && [ -n "${PG_PORT:-}" ] || { echo "usage: PG_PORT=N $0 newdb NAME" >&2; exit 2; }
        pg_newdb "$2" ;;
    stop) pg_stop "${2:-}" ;;
    *) echo "usage: $0 start | newdb NAME | stop [DIR]" >&2; exit 2 ;;
    esac
fi
