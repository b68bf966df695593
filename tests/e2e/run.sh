#!/bin/bash
# The pages end to end (issue 7): a real covct serve with a synthetic CT
# analysed, then Playwright (playwright-core, pinned in package-lock.json)
# drives Debian's Chromium through pages.test.mjs: log in, worklist (date
# filter, patient names as people read them), study viewer (coronal view,
# overlays and their opacity), a correction painted, erased, filled and
# undone, each saved as reader-1 and counted voxel by voxel, a blind second
# reader, adjudication, the case form saved and seen again after a reload,
# governance with the audit log verified.  Screenshots of each step go to $COVCT_E2E_ARTIFACTS (default
# ./e2e-artifacts in the test's working folder).
#
# node_modules: installed with `npm ci` from tests/e2e/package-lock.json
# into $COVCT_E2E_NODE_DIR (default ./e2e-node in the working folder, i.e.
# the build folder under ctest), never into the source tree; reinstalled
# only when the lock file changes.  KEEP=1 leaves the server's folder.
. "$(dirname "$0")/../lib.sh"
need chromium node npm curl
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${COVCT_SOURCE_DIR:-$(cd "$HERE/../.." && pwd)}
COVCT=${COVCT_BIN:-build/covct}
COVCT=$(cd "$(dirname "$COVCT")" && pwd)/$(basename "$COVCT")
CHROMIUM=${CHROMIUM:-$(command -v chromium)}
ART=${COVCT_E2E_ARTIFACTS:-$PWD/e2e-artifacts}
NODE_DIR=${COVCT_E2E_NODE_DIR:-$PWD/e2e-node}
T=$(mktemp -d)
SERVER=""
cleanup() {
    if [ -n "$SERVER" ]; then
        kill "$SERVER" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER" 2>/dev/null
    fi
    if [ -n "${KEEP:-}" ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
started=$(date +%s)
elapsed() { echo "$(($(date +%s) - started)) s"; }

# --- Playwright from the lock file -------------------------------------------
mkdir -p "$NODE_DIR" "$ART"
rm -f "$ART"/*.png
lock_sum=$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$NODE_DIR/.lock-sha256" 2>/dev/null)" != "$lock_sum" ] ||
   [ ! -f "$NODE_DIR/node_modules/playwright-core/package.json" ]; then
    cp "$HERE/package.json" "$HERE/package-lock.json" "$NODE_DIR/"
    if ! (cd "$NODE_DIR" && { npm ci --offline --no-audit --no-fund >npm.log 2>&1 ||
                              npm ci --no-audit --no-fund >>npm.log 2>&1; }); then
        echo "FAIL: npm ci could not install playwright-core from tests/e2e/package-lock.json" >&2
        echo "      (neither from the npm cache nor from the registry $(npm config get registry));" >&2
        echo "      npm's log: $NODE_DIR/npm.log" >&2
        tail -5 "$NODE_DIR/npm.log" >&2
        exit 1
    fi
    echo "$lock_sum" >"$NODE_DIR/.lock-sha256"
fi

# --- a server with three users and an analysed synthetic CT -------------------
D=$T/data
add_user() { printf '%s\n' "$3" | "$COVCT" user add "$1" --role "$2" --password-stdin --data "$D" >/dev/null; }
PW_R1=reader-one-pw-1
PW_R2=reader-two-pw-2
PW_ADMIN=admin-pw-3-secret
check "user r1 (radiologist)" add_user r1 radiologist "$PW_R1"
check "user r2 (radiologist)" add_user r2 radiologist "$PW_R2"
check "user admin (administrator)" add_user admin administrator "$PW_ADMIN"
"$COVCT" serve --data "$D" --dicom-port 0 --port-file "$T/port" --http-port 0 \
    --http-bind 127.0.0.1 --http-port-file "$T/hport" --web-dir "$SRC/web" \
    --settle 2 --min-slices 10 2>"$T/serve.log" &
SERVER=$!
for _ in $(seq 100); do [ -s "$T/port" ] && [ -s "$T/hport" ] && break; sleep 0.1; done
if ! [ -s "$T/hport" ]; then
    echo "FAIL: covct serve did not start:" >&2; cat "$T/serve.log" >&2; exit 1
fi
PORT=$(cat "$T/port")
URL=http://127.0.0.1:$(cat "$T/hport")
echo "covct serve: DICOM port $PORT, $URL"
# two synthetic studies (not patient data): one with lesions, one healthy
# and thinner (5 mm slices), so the worklist has an order to show
"$COVCT" phantom -o "$T/ph" >/dev/null 2>&1
"$COVCT" phantom -o "$T/ph0" --no-lesions --seed 2 --slice 5 >/dev/null 2>&1
check "phantom sent" "$COVCT" send "COVCT@127.0.0.1:$PORT" "$T/ph/dicom" -q
check "healthy phantom sent" "$COVCT" send "COVCT@127.0.0.1:$PORT" "$T/ph0/dicom" -q
TOKEN=$("$COVCT" token create admin --data "$D" 2>/dev/null | tail -1)
analysed=""
for _ in $(seq 120); do
    W=$(curl -s -H "Authorization: Bearer $TOKEN" "$URL/api/worklist")
    n=$(printf '%s' "$W" | grep -o '"ai_status":"analysed"' | wc -l)
    [ "$n" -ge 2 ] && { analysed=1; break; }
    sleep 1
done
if [ -z "$analysed" ]; then
    bad "the phantoms were not analysed within 120 s (worklist: $W)"
    tail -20 "$T/serve.log" >&2
    finish
fi
SEVERITY=$(printf '%s' "$W" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const w=JSON.parse(s);console.log(w.studies.map(x=>x.severity).join(" "))})')
echo "analysed after $(elapsed); severities (worklist order): $SEVERITY"

# --- the browser --------------------------------------------------------------
echo "screenshots: $ART"
if COVCT_URL=$URL COVCT_WEB=$SRC/web CHROMIUM=$CHROMIUM E2E_NODE_DIR=$NODE_DIR E2E_ARTIFACTS=$ART \
   E2E_SEVERITY=$SEVERITY PW_R1=$PW_R1 PW_R2=$PW_R2 PW_ADMIN=$PW_ADMIN \
   node "$HERE/pages.test.mjs"; then
    ok
else
    bad "pages.test.mjs (see above; screenshots in $ART)"
fi
check "the server is still running" kill -0 "$SERVER"
if sanitizer_report "$T/serve.log"; then bad "sanitizer report in serve.log"; cat "$T/serve.log" >&2; fi
echo "e2e took $(elapsed)"
finish
