#!/bin/bash
# DICOM over TLS (covct serve --tls-cert/--tls-key/--tls-ca) against
# dcmtk's TLS tools, with certificates made by openssl for the test:
#  - echoscu +tls with a certificate signed by the CA: Success;
#  - plain TCP, and a certificate from another CA: refused, server alive;
#  - covct echo/send with TLS to covct, and covct send to storescp +tls;
#  - HTTPS on the web port with its own certificate while DICOM is plain.
. "$(dirname "$0")/lib.sh"
need echoscu storescp openssl
COVCT=${COVCT_BIN:-build/covct}
export TCP_NODELAY=1
T=$(mktemp -d)
SERVER=""
SCP=""
cleanup() {
    [ -n "$SERVER" ] && kill -9 "$SERVER" 2>/dev/null
    [ -n "$SCP" ] && kill -9 "$SCP" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
cd "$T" || exit 1
mkcert() { # mkcert NAME CA
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null &&
        openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial \
            -out "$1.crt" -days 2 2>/dev/null
}
for ca in ca rogue; do
    openssl req -x509 -newkey rsa:2048 -nodes -keyout $ca.key -out $ca.crt -days 2 \
        -subj "/CN=covct test $ca" 2>/dev/null
done
mkcert server ca && mkcert client ca && mkcert intruder rogue
check "certificates made" test -s intruder.crt

"$COVCT" serve --data store --dicom-port 0 --port-file port --no-analysis \
    --tls-cert server.crt --tls-key server.key --tls-ca ca.crt 2>serve.log &
SERVER=$!
for _ in $(seq 100); do [ -s port ] && break; sleep 0.1; done
PORT=$(cat port)
check "echoscu over TLS: Success" echoscu -aec COVCT +tls client.key client.crt +cf ca.crt 127.0.0.1 "$PORT"
check "plain TCP refused" bash -c "! echoscu -aec COVCT 127.0.0.1 $PORT 2>/dev/null"
check "a certificate from another CA refused" bash -c \
    "! echoscu -aec COVCT +tls intruder.key intruder.crt +cf ca.crt 127.0.0.1 $PORT 2>/dev/null"
check "  ... logged with the reason" grep -q "TLS handshake failed" serve.log
check "covct echo --tls to covct serve" "$COVCT" echo COVCT@127.0.0.1:"$PORT" \
    --tls-cert client.crt --tls-key client.key --tls-ca ca.crt
check "covct echo without TLS fails clearly" bash -c \
    "! $COVCT echo COVCT@127.0.0.1:$PORT --timeout 5 2>err.txt && grep -q 'COVCT@127.0.0.1' err.txt"
"$COVCT" phantom -o ph --slice 20 >/dev/null 2>&1
check "covct send --tls to covct serve" "$COVCT" send COVCT@127.0.0.1:"$PORT" ph/dicom -q \
    --tls-cert client.crt --tls-key client.key --tls-ca ca.crt
check "  ... stored" test "$(sqlite3 store/index.sqlite 'select count(*) from instances')" -eq "$(ls ph/dicom | wc -l)"
P2=$(free_port)
mkdir -p got
storescp -aet STORESCP +tls server.key server.crt +cf ca.crt -od got "$P2" >scp.log 2>&1 &
SCP=$!
sleep 0.5
check "covct send --tls to storescp +tls" "$COVCT" send STORESCP@127.0.0.1:"$P2" ph/dicom -q \
    --tls-cert client.crt --tls-key client.key --tls-ca ca.crt
check "  ... storescp wrote them" test "$(ls got | wc -l)" -eq "$(ls ph/dicom | wc -l)"
kill -TERM "$SERVER"; wait "$SERVER"; rc=$?; SERVER=""
check "clean stop" test "$rc" -eq 0

# HTTPS on the web port with its own certificate, DICOM plain (as a
# hospital with TLS only towards browsers runs it); curl checks the
# certificate against the CA, echoscu talks plain DICOM
need curl
rm -f port hport
"$COVCT" serve --data store2 --dicom-port 0 --port-file port --no-analysis \
    --http-port 0 --http-port-file hport --http-tls-cert server.crt \
    --http-tls-key server.key 2>serve2.log &
SERVER=$!
for _ in $(seq 100); do [ -s port ] && [ -s hport ] && break; sleep 0.1; done
PORT=$(cat port); HP=$(cat hport)
check "web port: HTTPS with its own certificate (curl verifies it)" test \
    "$(curl -s --cacert ca.crt --resolve server:"$HP":127.0.0.1 -o /dev/null \
        -w '%{http_code}' https://server:"$HP"/api/me)" = 401
check "  ... plain HTTP refused there" bash -c \
    "! curl -s -o /dev/null --max-time 5 http://127.0.0.1:$HP/api/me"
check "  ... DICOM stays plain: echoscu without TLS" echoscu -aec COVCT 127.0.0.1 "$PORT"
check "  ... logged as https" grep -q "web service on https://" serve2.log
kill -TERM "$SERVER"; wait "$SERVER"; SERVER=""
check "--http-tls-cert without its key: a clear usage error" bash -c \
    "! $COVCT serve --data store3 --dicom-port 0 --http-port 0 --http-tls-cert server.crt 2>err3.txt && grep -q 'needs both --http-tls-cert and --http-tls-key' err3.txt"
for l in serve.log serve2.log; do
    if sanitizer_report "$l"; then bad "sanitizer report in $l"; cat "$l" >&2; fi
done
finish
