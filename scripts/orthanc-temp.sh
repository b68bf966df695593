#!/bin/bash
# A private, throw-away Orthanc for tests and benchmarks (a peer, never the
# system service): its own configuration, storage and SQLite index in a
# temporary folder, DICOM and HTTP on free ports, HTTP on loopback only
# (RemoteAccessAllowed false), no authentication, no plugins unless --plugin names one.
#
#   eval "$(scripts/orthanc-temp.sh start [OPTIONS])"
#       starts Orthanc in the background, waits until
#       http://127.0.0.1:$ORTHANC_HTTP_PORT/system answers, and prints
#       shell assignments for the caller to eval:
#         ORTHANC_DIR ORTHANC_PID ORTHANC_AET ORTHANC_DICOM_PORT
#         ORTHANC_HTTP_PORT ORTHANC_URL ORTHANC_LOG
#       Options:
#         --aet TITLE        Orthanc's AE title (default ORTHANC)
#         --dir DIR          create the instance's folder under DIR (default
#                            $TMPDIR or /tmp), e.g. to keep its storage on
#                            the same file system as another receiver's
#         --modality NAME=AET@HOST:PORT
#                            an entry of DicomModalities (repeatable)
#         --plugin PATH      load this plugin, e.g. the DICOMweb one
#                            (/usr/share/orthanc/plugins/libOrthancDicomWeb.so;
#                            repeatable)
#         --set KEY=JSON     any other configuration option, e.g.
#                            --set 'StorageCompression=true' (repeatable)
#         --timeout S        how long to wait for the HTTP server (30)
#   scripts/orthanc-temp.sh stop [DIR]
#       SIGTERM (SIGKILL after 30 s), then removes DIR (default
#       $ORTHANC_DIR) unless ORTHANC_KEEP=1.
#
# Sourced (. scripts/orthanc-temp.sh), it defines orthanc_start and
# orthanc_stop, which do the same and set the variables directly.
# The storage is Orthanc's default (files under StorageDirectory, index in
# SQLite under IndexDirectory, no compression); log: $ORTHANC_DIR/orthanc.log.

# Two distinct free TCP ports on loopback (both held while chosen).
_orthanc_free_ports() {
    /usr/bin/python3 - <<'EOF'
import socket
s = [socket.socket() for _ in range(2)]
for x in s:
    x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))
EOF
}

_orthanc_json_str() { # a JSON string literal
    printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

orthanc_start() {
    local aet=ORTHANC base=${TMPDIR:-/tmp} timeout=30 mods="" extra="" a plugins=""
    while [ $# -gt 0 ]; do
        case "$1" in
        --aet) aet=$2; shift 2 ;;
        --dir) base=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --plugin) plugins="$plugins${plugins:+, }$(_orthanc_json_str "$2")"; shift 2 ;;
        --modality)
            a=$2; shift 2
            local name=${a%%=*} rest=${a#*=}
            local m_aet=${rest%%@*} hp=${rest#*@}
            local host=${hp%:*} port=${hp##*:}
            case "$a" in *=*@*:*) ;; *)
                echo "orthanc-temp: --modality NAME=AET@HOST:PORT, not '$a'" >&2; return 2 ;;
            esac
            mods="$mods${mods:+,}
    $(_orthanc_json_str "$name"): [ $(_orthanc_json_str "$m_aet"), $(_orthanc_json_str "$host"), $port ]" ;;
        --set)
            a=$2; shift 2
            extra="$extra
  $(_orthanc_json_str "${a%%=*}"): ${a#*=}," ;;
        *) echo "orthanc-temp: unknown option '$1'" >&2; return 2 ;;
        esac
    done
    command -v Orthanc >/dev/null 2>&1 ||
        { echo "orthanc-temp: Orthanc not installed (scripts/install-deps.sh)" >&2; return 1; }
    mkdir -p "$base" || return 1
    ORTHANC_DIR=$(mktemp -d "$base/orthanc.XXXXXX") || return 1
    # shellcheck disable=SC2034 # for the caller
    ORTHANC_AET=$aet
    ORTHANC_LOG=$ORTHANC_DIR/orthanc.log
    local try ports
    for try in 1 2 3; do
        ports=$(_orthanc_free_ports) || return 1
        ORTHANC_DICOM_PORT=${ports% *}
        ORTHANC_HTTP_PORT=${ports#* }
        cat >"$ORTHANC_DIR/orthanc.json" <<EOF
{
  "Name": "covct-bench-orthanc",
  "StorageDirectory": $(_orthanc_json_str "$ORTHANC_DIR/storage"),
  "IndexDirectory": $(_orthanc_json_str "$ORTHANC_DIR/index"),
  "StorageCompression": false,
  "Plugins": [$plugins],
  "HttpServerEnabled": true,
  "HttpPort": $ORTHANC_HTTP_PORT,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "SslEnabled": false,
  "DicomServerEnabled": true,
  "DicomAet": $(_orthanc_json_str "$aet"),
  "DicomPort": $ORTHANC_DICOM_PORT,
  "DicomCheckCalledAet": true,
  "DicomModalities": {$mods
  },$extra
  "SaveJobs": false
}
EOF
        # No link to the caller's pipes: its $(...) must not wait for
        # Orthanc.
        Orthanc "$ORTHANC_DIR/orthanc.json" >"$ORTHANC_LOG" 2>&1 </dev/null &
        ORTHANC_PID=$!
        echo "$ORTHANC_PID" >"$ORTHANC_DIR/pid"
        ORTHANC_URL=http://127.0.0.1:$ORTHANC_HTTP_PORT
        local up=0
        for _ in $(seq $((timeout * 10))); do
            if ! kill -0 "$ORTHANC_PID" 2>/dev/null; then break; fi
            if curl -sf -o /dev/null "$ORTHANC_URL/system"; then up=1; break; fi
            sleep 0.1
        done
        [ $up = 1 ] && return 0
        kill -KILL "$ORTHANC_PID" 2>/dev/null
        wait "$ORTHANC_PID" 2>/dev/null
        # Died (a port taken between choosing and binding?) or never
        # answered: try again on other ports.
        cp "$ORTHANC_LOG" "$ORTHANC_LOG.$try"
    done
    echo "orthanc-temp: Orthanc did not start; its log ($ORTHANC_LOG):" >&2
    tail -20 "$ORTHANC_LOG" >&2
    return 1
}

orthanc_stop() {
    local dir=${1:-${ORTHANC_DIR:-}} pid
    [ -n "$dir" ] && [ -d "$dir" ] || { echo "orthanc-temp: stop: no folder '$dir'" >&2; return 1; }
    pid=$(cat "$dir/pid" 2>/dev/null)
    [ -z "$pid" ] && [ "$dir" = "${ORTHANC_DIR:-}" ] && pid=${ORTHANC_PID:-}
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
       tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$dir/orthanc.json"; then
        kill -TERM "$pid"
        for _ in $(seq 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    [ "${ORTHANC_KEEP:-0}" = 1 ] || rm -rf "$dir"
}

# Run as a command (not sourced).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -u
    cmd=${1:-}; shift || true
    case "$cmd" in
    start)
        orthanc_start "$@" || exit 1
        for v in ORTHANC_DIR ORTHANC_PID ORTHANC_AET ORTHANC_DICOM_PORT \
                 ORTHANC_HTTP_PORT ORTHANC_URL ORTHANC_LOG; do
            printf "%s=%q\n" "$v" "${!v}"
        done ;;
    stop) orthanc_stop "$@" ;;
    *) sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
    esac
fi
