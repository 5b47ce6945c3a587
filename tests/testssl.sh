#!/usr/bin/env bash
# strait's HTTPS listener audited by testssl.sh.
#
# Serves one Gateway with an HTTPS listener (hostname shop.example.com, an
# ECDSA P-256 self-signed certificate made here with openssl) in front of a
# `strait echo` backend, runs testssl.sh against it and fails when:
#   - SSLv2, SSLv3, TLS 1.0 or TLS 1.1 is offered;
#   - any finding of severity MEDIUM, HIGH or CRITICAL (testssl's own rating)
#     appears in the protocol, cipher-category (NULL, aNULL, EXPORT, LOW,
#     3DES/IDEA, obsolete CBC...) or vulnerability sections;
#   - forward secrecy is not reported as offered;
#   - the scan could not run (no protocol seen, testssl FATAL).
# It prints the findings it fails on and a summary either way.
#
# Usage (from anywhere; root only to apt-get install testssl.sh):
#   tests/testssl.sh
# Environment:
#   STRAIT_BIN        strait binary, relative to the repo root
#                     (default target/debug/strait, built with
#                     `cargo build -p strait` when missing)
#   TESTSSL_OPTIONAL  1: when testssl.sh is missing and cannot be installed,
#                     print SKIP and exit 0 (default: exit 1)
#   TESTSSL_ARGS      checks to run (default "--protocols --std --fs --vulnerable")
#   KEEP_WORK         1: keep the temporary folder (config, logs, JSON)
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

readonly HOST=shop.example.com
STRAIT_BIN=${STRAIT_BIN:-target/debug/strait}
TESTSSL_ARGS=${TESTSSL_ARGS:---protocols --std --fs --vulnerable}

log() { printf '[testssl.sh] %s\n' "$*" >&2; }
fail() {
    printf '[testssl.sh] FAIL: %s\n' "$*" >&2
    exit 1
}

# testssl.sh cannot be had: a loud SKIP (exit 0) when optional, else fail.
skip_or_fail() {
    if [[ ${TESTSSL_OPTIONAL:-0} == 1 ]]; then
        printf '\n[testssl.sh] ******** SKIP: %s (TESTSSL_OPTIONAL=1) ********\n\n' "$*" >&2
        exit 0
    fi
    fail "$* (set TESTSSL_OPTIONAL=1 to skip instead)"
}

# --- processes we start, and cleanup ----------------------------------------

WORK=""
PIDS=()

cleanup() {
    local pid _
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive -eq 0 ]] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ ${KEEP_WORK:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ------------------------------------------------------------------

# Debian installs it as `testssl`; upstream's name is testssl.sh.
find_testssl() { command -v testssl.sh || command -v testssl || true; }

TESTSSL=$(find_testssl)
if [[ -z $TESTSSL ]]; then
    command -v apt-get >/dev/null || skip_or_fail "testssl.sh is not installed and there is no apt-get"
    [[ $(id -u) -eq 0 ]] || skip_or_fail "testssl.sh is not installed and apt-get needs root"
    log "installing testssl.sh (apt-get install -y testssl.sh)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq testssl.sh >&2; then
        apt-get update -qq >&2 || true
        apt-get install -y -qq testssl.sh >&2 || skip_or_fail "apt-get install testssl.sh failed"
    fi
    TESTSSL=$(find_testssl)
    [[ -n $TESTSSL ]] || skip_or_fail "apt-get installed testssl.sh but neither testssl.sh nor testssl is on PATH"
fi
for tool in openssl curl python3; do
    command -v "$tool" >/dev/null || skip_or_fail "$tool is needed and not installed"
done

if [[ ! -x $STRAIT_BIN ]]; then
    [[ $STRAIT_BIN == target/debug/strait ]] || fail "STRAIT_BIN '$STRAIT_BIN' not found"
    command -v cargo >/dev/null || fail "$STRAIT_BIN is missing and cargo is absent to build it"
    log "building strait (cargo build -p strait)"
    cargo build -p strait >&2 || fail "cargo build -p strait failed"
fi
STRAIT_BIN=$(cd "$(dirname "$STRAIT_BIN")" && pwd)/$(basename "$STRAIT_BIN")

# --- set-up -----------------------------------------------------------------

WORK=$(mktemp -d /tmp/strait-testssl.XXXXXX)

# Three free ports on 127.0.0.1: the HTTPS listener, admin, echo backend.
read -r PORT ADMIN_PORT ECHO_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>"$WORK/openssl.log" ||
    fail "openssl could not make the certificate: $(cat "$WORK/openssl.log")"

mkdir "$WORK/config"
cat >"$WORK/config/shop.yaml" <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: strait}
spec: {controllerName: strait.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shop}
spec:
  gatewayClassName: strait
  listeners:
  - name: https
    port: $PORT
    protocol: HTTPS
    hostname: $HOST
    tls:
      mode: Terminate
      certificateRefs: [{name: shop-tls}]
---
apiVersion: v1
kind: Secret
metadata: {name: shop-tls}
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$WORK/tls.crt")
  tls.key: $(base64 -w0 "$WORK/tls.key")
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{name: shop}]
  hostnames: [$HOST]
  rules: [{backendRefs: [{name: web-frontend, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web-frontend}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-frontend, labels: {kubernetes.io/service-name: web-frontend}}
addressType: IPv4
endpoints: [{addresses: ["127.0.0.1"]}]
ports: [{name: http, port: $ECHO_PORT}]
EOF

"$STRAIT_BIN" echo --listen "127.0.0.1:$ECHO_PORT" >"$WORK/echo.log" 2>&1 &
PIDS+=("$!")
STRAIT_LOG=${STRAIT_LOG:-info} "$STRAIT_BIN" gateway --config "$WORK/config" --bind-address 127.0.0.1 \
    --admin "127.0.0.1:$ADMIN_PORT" --workers 1 >"$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
PIDS+=("$GATEWAY_PID")

ready=""
for _ in $(seq 100); do
    kill -0 "$GATEWAY_PID" 2>/dev/null || {
        tail -n 20 "$WORK/gateway.log" >&2
        fail "strait gateway exited during start-up"
    }
    ready=$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/ready" || true)
    [[ $ready == 200 ]] && break
    sleep 0.1
done
[[ $ready == 200 ]] || {
    tail -n 20 "$WORK/gateway.log" >&2
    fail "http://127.0.0.1:$ADMIN_PORT/ready did not answer 200 within 10 s (last: '$ready')"
}
got=$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' --cacert "$WORK/tls.crt" \
    --resolve "$HOST:$PORT:127.0.0.1" "https://$HOST:$PORT/" || true)
[[ $got == 200 ]] || {
    tail -n 20 "$WORK/gateway.log" >&2
    fail "https://$HOST:$PORT/ through strait answered '$got', not 200"
}
log "strait serves https://$HOST:$PORT/ (echo on $ECHO_PORT, admin on $ADMIN_PORT); running $TESTSSL"

# --- the scan ---------------------------------------------------------------

read -r -a checks <<<"$TESTSSL_ARGS"
start=$(date +%s)
set +e
"$TESTSSL" --quiet --color 0 --warnings batch --nodns none --ip 127.0.0.1 \
    --jsonfile-pretty "$WORK/testssl.json" "${checks[@]}" "$HOST:$PORT" >"$WORK/testssl.txt" 2>&1
rc=$?
set -e
secs=$(($(date +%s) - start))
log "testssl.sh finished in ${secs}s (exit status $rc)"
[[ -s $WORK/testssl.json ]] || {
    tail -n 30 "$WORK/testssl.txt" >&2
    fail "testssl.sh wrote no JSON (exit status $rc)"
}

# Judge the JSON. Sections of --jsonfile-pretty: protocols, ciphers (the
# --std categories), fs (pfs in older releases), vulnerabilities.
set +e
python3 - "$WORK/testssl.json" <<'PY'
import json, sys

data = json.load(open(sys.argv[1]))
results = data.get("scanResult") or []
problems = []
for item in data.get("scanProblems") or []:
    problems.append(f"scan problem: {item.get('id')}: {item.get('finding')}")
if not results:
    print("FAIL: no scanResult in testssl's JSON", *problems, sep="\n  ")
    sys.exit(1)
scan = results[0]

def section(*names):
    for name in names:
        if name in scan:
            return scan[name] or []
    return []

protocols = section("protocols")
ciphers = section("ciphers")
fs = section("fs", "pfs")
vulns = section("vulnerabilities")
bad_levels = {"MEDIUM", "HIGH", "CRITICAL"}
failures = []

def offered(finding):
    f = (finding or "").lower()
    return "offered" in f and "not offered" not in f

seen = {p["id"]: p for p in protocols}
offered_protocols = [p["id"] for p in protocols
                     if p["id"] in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3")
                     and offered(p.get("finding"))]
for legacy in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
    p = seen.get(legacy)
    if p is None:
        failures.append(f"protocols: {legacy} was not tested")
    elif offered(p.get("finding")):
        failures.append(f"protocols: {legacy} offered ({p.get('severity')}: {p.get('finding')})")
if not offered_protocols:
    failures.append("protocols: nothing offered; the scan did not reach strait's TLS")

for name, items in (("protocols", protocols), ("ciphers", ciphers), ("vulnerabilities", vulns)):
    for item in items:
        if item.get("severity") in bad_levels:
            failures.append(f"{name}: {item['id']} [{item['severity']}] {item.get('finding')}")
        if item.get("severity") == "FATAL":
            failures.append(f"{name}: {item['id']} [FATAL] {item.get('finding')}")

fs_item = next((i for i in fs if i.get("id") in ("FS", "PFS")), None)
fs_result = fs_item.get("finding") if fs_item else "not reported"
if fs_item is None or not offered(fs_result):
    failures.append(f"forward secrecy: {fs_result}")
fs_ciphers = next((i.get("finding") for i in fs if i.get("id") in ("FS_ciphers", "PFS_ciphers")), "")
fs_groups = next((i.get("finding") for i in fs if i.get("id") in ("FS_ECDHE_curves", "PFS_ECDHE_curves")), "")

counts = {}
for items in (protocols, ciphers, fs, vulns):
    for item in items:
        counts[item.get("severity", "?")] = counts.get(item.get("severity", "?"), 0) + 1
order = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "WARN", "FATAL", "OK", "INFO"]
count_line = ", ".join(f"{k} {counts[k]}" for k in order + sorted(set(counts) - set(order)) if k in counts)

print("testssl.sh summary for strait:")
print(f"  protocols offered: {' '.join(offered_protocols) or 'none'}")
print(f"  forward secrecy:   {fs_result}")
if fs_ciphers:
    print(f"  FS ciphers:        {fs_ciphers}")
if fs_groups:
    print(f"  FS groups:         {fs_groups}")
print(f"  cipher categories: " + "; ".join(
    f"{c['id'].removeprefix('cipherlist_')} {c.get('finding')}" for c in ciphers))
print(f"  findings by severity (protocols, ciphers, fs, vulnerabilities): {count_line}")
low = [f"{i['id']}: {i.get('finding')}" for items in (protocols, ciphers, fs, vulns)
       for i in items if i.get("severity") in ("LOW", "WARN")]
for line in low:
    print(f"  LOW/WARN {line}")
for line in problems:
    print(f"  {line}")
if failures:
    print("FAIL:")
    for line in failures:
        print(f"  {line}")
    sys.exit(1)
print("PASS: no legacy protocol, no MEDIUM/HIGH/CRITICAL finding, forward secrecy offered")
PY
verdict=$?
set -e
if [[ $verdict -ne 0 ]]; then
    log "testssl.sh's text report: $WORK/testssl.txt (KEEP_WORK=1 keeps it); its last lines:"
    tail -n 40 "$WORK/testssl.txt" >&2
    exit 1
fi
log "PASS in ${secs}s of scanning"
