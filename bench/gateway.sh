#!/usr/bin/env bash
# Gateway benchmark: strait against nginx and HAProxy as reverse proxies.
#
# Every proxy gets the same job, one after another: one worker pinned to
# core 0, forwarding to the same nginx backend (1 KiB body, keep-alive both
# ways), loaded by wrk. We report throughput and p99, but the figure meant for
# comparison is CPU time per request: on a 2-core box wrk and the backend
# share core 1, so raw rps may be bounded by core 1 rather than by the proxy.
# See bench/README.md.
#
# Scenarios:
#   http   (default) plain HTTP/1.1 on 127.0.0.1:18080, keep-alive.
#   https  (--https) every proxy terminates TLS 1.3 only on 127.0.0.1:18443
#          with the same ECDSA P-256 self-signed certificate, made with
#          openssl once per run; the backend stays plain HTTP. Two loads:
#          (a) wrk over https with keep-alive: CPU per request, rps, p99;
#          (b) full handshakes: `openssl s_time -new -tls1_3 -www PAGE`,
#              HS_CLIENTS processes on the load core, each opening a new
#              connection per request (HTTP/1.0 with a Host header, the
#              proxy closes): handshakes/s and the proxy's CPU per handshake.
#          Why s_time and not wrk or h2load for (b), verified on this box
#          (Debian 12: wrk 4.1.0, h2load 1.52.0, OpenSSL 3.0) against nginx
#          logging $ssl_session_reused: with `Connection: close`, wrk resumed
#          517 of 527 connections (it keeps one SSL object per connection slot
#          and SSL_clear() keeps the session, so every reconnect offers a
#          TLS 1.3 PSK) and h2load --h1 resumed 190 of 200 (only each client's
#          first connection was full); `openssl s_time -new` made 699 of 699
#          full handshakes (a fresh SSL object, never given a session). The
#          servers keep their default ticket/cache settings (strait's rustls
#          defaults cannot be changed from here); only the client decides
#          whether to resume, and s_time never does.
#
# Usage (as root, from the repo root):
#   bench/gateway.sh [--https] [--save]
# Environment:
#   SCENARIO     http or https (same as --https)  (default http)
#   PROXIES      proxies to run, in order      (default "nginx haproxy strait")
#   DURATION     wrk duration of a measured run (default 10s)
#   CONNECTIONS  wrk connections                (default 50)
#   WARMUP       wrk duration of the warm-up    (default 3s)
#   HS_DURATION  https: handshake run, whole seconds (default: DURATION)
#   HS_CLIENTS   https: parallel s_time processes   (default 8)
#   STRAIT_BIN   strait binary, relative paths from the repo root
#                                               (default target/release/strait)
set -euo pipefail
export LC_ALL=C # wrk's numbers and our printf/awk use '.' decimals

# --- settings ---------------------------------------------------------------

readonly HTTP_PORT=18080
readonly HTTPS_PORT=18443
readonly BACKEND_PORT=18081
readonly ADMIN_PORT=19901
readonly BODY_BYTES=1024
readonly PROXY_CORE=0
readonly LOAD_CORE=1 # wrk and the backend share it: only 2 cores here

SCENARIO=${SCENARIO:-http}
PROXIES=${PROXIES:-nginx haproxy strait}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
WARMUP=${WARMUP:-3s}
HS_DURATION=${HS_DURATION:-$DURATION}
HS_CLIENTS=${HS_CLIENTS:-8}
STRAIT_BIN=${STRAIT_BIN:-target/release/strait}
SAVE=0

SCRIPT_ARGS="$*"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" # STRAIT_BIN and bench/results are relative to the repo root

# --- helpers ----------------------------------------------------------------

# Progress goes to stderr so stdout carries only the Markdown report.
log() { printf '[gateway.sh] %s\n' "$*" >&2; }
die() {
    printf '[gateway.sh] error: %s\n' "$*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case $1 in
    --save) SAVE=1 ;;
    --https) SCENARIO=https ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument '$1' (try --help)" ;;
    esac
    shift
done

for p in $PROXIES; do
    case $p in
    nginx | haproxy | strait) ;;
    *) die "PROXIES: unknown proxy '$p' (choose from: nginx haproxy strait)" ;;
    esac
done
[[ -n ${PROXIES// /} ]] || die "PROXIES is empty"
[[ $CONNECTIONS =~ ^[0-9]+$ ]] || die "CONNECTIONS must be a number, got '$CONNECTIONS'"
[[ $HS_CLIENTS =~ ^[1-9][0-9]*$ ]] || die "HS_CLIENTS must be a positive number, got '$HS_CLIENTS'"
[[ $HS_DURATION =~ ^[1-9][0-9]*[sm]?$ ]] || die "HS_DURATION must be whole seconds or minutes (10, 10s, 2m), got '$HS_DURATION'"
case $SCENARIO in
http) PROXY_PORT=$HTTP_PORT SCHEME=http ;;
https) PROXY_PORT=$HTTPS_PORT SCHEME=https ;;
*) die "SCENARIO: unknown scenario '$SCENARIO' (choose from: http https)" ;;
esac
readonly SCENARIO PROXY_PORT SCHEME
readonly PROXY_URL=$SCHEME://127.0.0.1:$PROXY_PORT/

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# "STATUS BYTES" of a GET, or "000 0" when nothing answers. -k: the HTTPS
# scenario's certificate is self-signed.
http_get() {
    curl -sk -o /dev/null --max-time 2 -w '%{http_code} %{size_download}' "$1" || true
}

# Children of a PID, found by scanning /proc: field 4 of stat is the ppid.
# comm (field 2) may hold spaces, so cut after its closing parenthesis first.
children_of() {
    local f line fields
    for f in /proc/[0-9]*/stat; do
        line=$(cat "$f" 2>/dev/null) || continue
        read -r -a fields <<<"${line##*) }"
        if [[ ${fields[1]:-} == "$1" ]]; then
            f=${f#/proc/}
            echo "${f%/stat}"
        fi
    done
    return 0
}

# True while any of the PIDs is running. A zombie counts as gone: kill -0
# succeeds on it, but it is only waiting for us to reap it.
any_alive() {
    local pid state
    for pid in "$@"; do
        state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null) || continue
        [[ $state != Z ]] && return 0
    done
    return 1
}

# A process and its children: nginx forks its worker from the master;
# HAProxy and strait are one process each (threads are counted in the
# process's own stat line).
process_tree() {
    echo "$1"
    children_of "$1"
}

# Sum of utime+stime (clock ticks) over the given PIDs. In /proc/PID/stat
# these are fields 14 and 15; after dropping "pid (comm) " they are 12 and 13.
cpu_ticks() {
    local pid total=0 t
    for pid in "$@"; do
        t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null) ||
            die "process $pid vanished while measuring"
        total=$((total + t))
    done
    echo "$total"
}

# Sum of VmRSS (kB) over the given PIDs.
rss_kb() {
    local pid total=0 kb
    for pid in "$@"; do
        kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || kb=0
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

# How busy all cores were over one second (from /proc/stat), to flag other
# work (a build, another benchmark) competing with the measurement. The load
# average would also count our own previous run.
cpu_busy_percent() {
    local a b
    a=$(head -n1 /proc/stat)
    sleep 1
    b=$(head -n1 /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {
        n = split(a, x); split(b, y)
        # user nice system idle iowait irq softirq steal; guest time is already in user
        for (i = 2; i <= 9 && i <= n; i++) { d = y[i] - x[i]; total += d; if (i == 5 || i == 6) idle += d }
        printf "%d", (total > 0 ? 100 * (total - idle) / total : 0)
    }'
}

# wrk prints latencies as 812.34us / 1.23ms / 2.00s; convert to ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/)      printf "%.3f", v / 1000
        else if (v ~ /ms$/) printf "%.3f", v + 0
        else if (v ~ /m$/)  printf "%.3f", v * 60000
        else if (v ~ /s$/)  printf "%.3f", v * 1000
        else                printf "?"
    }'
}

# Whole seconds of a duration written 10, 10s or 2m (openssl s_time -time).
to_seconds() {
    case $1 in
    *[0-9]s) echo "${1%s}" ;;
    *[0-9]m) echo $((${1%m} * 60)) ;;
    *[0-9]) echo "$1" ;;
    *) die "cannot read '$1' as whole seconds (write 10, 10s or 2m)" ;;
    esac
}

# --- setup ------------------------------------------------------------------

# Install nginx, haproxy, wrk (and curl for readiness probes) when missing.
# policy-rc.d stops Debian's postinst scripts from starting the packaged
# system services: we run our own instances and want nothing else on the box.
install_tools() {
    local missing=() pkg
    command -v nginx >/dev/null || missing+=(nginx)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v curl >/dev/null || missing+=(curl)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v openssl >/dev/null || missing+=(openssl) # https: certificate, s_time
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; run as root so apt-get can install them"
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    log "installing ${missing[*]}"
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
    if [[ ${POLICY_RC_CREATED:-0} -eq 1 ]]; then
        rm -f /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=0
    fi
    for pkg in nginx haproxy wrk curl taskset openssl; do
        command -v "$pkg" >/dev/null || die "$pkg still missing after apt-get install"
    done
}

# Resolve STRAIT_BIN. The default path is (re)built whenever cargo is here,
# so a stale binary is never measured; cargo makes it a no-op when current.
ensure_strait() {
    if [[ $STRAIT_BIN == target/release/strait ]] && command -v cargo >/dev/null; then
        log "building strait (cargo build --release -p strait)"
        cargo build --release -p strait >&2 || die "cargo build --release -p strait failed"
    fi
    if [[ ! -x $STRAIT_BIN ]]; then
        command -v cargo >/dev/null ||
            die "strait binary '$STRAIT_BIN' not found and cargo is absent: build it with 'cargo build --release -p strait', set STRAIT_BIN, or leave strait out of PROXIES (e.g. PROXIES=\"nginx haproxy\")"
        [[ $STRAIT_BIN == target/release/strait ]] ||
            die "strait binary '$STRAIT_BIN' (from STRAIT_BIN) not found"
        log "building strait (cargo build --release -p strait)"
        cargo build --release -p strait >&2 || die "cargo build --release -p strait failed"
    fi
    STRAIT_BIN=$(cd "$(dirname "$STRAIT_BIN")" && pwd)/$(basename "$STRAIT_BIN")
}

check_ports_free() {
    local port
    for port in "$PROXY_PORT" "$BACKEND_PORT" "$ADMIN_PORT"; do
        ! port_open "$port" || die "port 127.0.0.1:$port is already in use; stop whatever listens there"
    done
}

# --- daemons ----------------------------------------------------------------

WORK=""
declare -A DAEMON_PID=() # name -> PID of the process we started
POLICY_RC_CREATED=0

# Start "$@" in the background, pinned to core $2, logging to $WORK/$1.log.
start_daemon() {
    local name=$1 core=$2
    shift 2
    taskset -c "$core" "$@" >"$WORK/$name.log" 2>&1 &
    DAEMON_PID[$name]=$! # taskset execs, so this is the daemon itself
}

# SIGTERM a daemon (and its children), wait, then SIGKILL what is left.
stop_daemon() {
    local name=$1 pid pids _
    pid=${DAEMON_PID[$name]:-}
    [[ -n $pid ]] || return 0
    mapfile -t pids < <(process_tree "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        any_alive "${pids[@]}" || break
        sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "DAEMON_PID[$name]"
}

cleanup() {
    local name
    for name in "${!DAEMON_PID[@]}"; do stop_daemon "$name"; done
    [[ ${POLICY_RC_CREATED:-0} -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
    [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
    return 0
}

# Fail with the tail of a daemon's log.
daemon_failed() {
    local name=$1 msg=$2
    log "last lines of $name's log:"
    tail -n 20 "$WORK/$name.log" >&2 || true
    die "$name: $msg"
}

# Poll $2 until it answers 200 with a $BODY_BYTES body (the backend's), or 10 s.
wait_http_ok() {
    local name=$1 url=$2 want_bytes=${3:-$BODY_BYTES} _ got
    for _ in $(seq 100); do
        kill -0 "${DAEMON_PID[$name]}" 2>/dev/null || daemon_failed "$name" "exited during start-up"
        got=$(http_get "$url")
        [[ $got == "200 $want_bytes" ]] && return 0
        sleep 0.1
    done
    daemon_failed "$name" "$url did not answer '200' with $want_bytes bytes within 10 s (last: '$got')"
}

# The backend: nginx answering every path with the same 1 KiB body. It runs
# on the load core; keepalive_requests is raised so neither wrk nor the
# proxies are made to reconnect every 1000 requests (the default).
start_backend() {
    local dir=$WORK/backend body
    mkdir -p "$dir"
    body=$(head -c "$BODY_BYTES" /dev/zero | tr '\0' 'x')
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp;
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        default_type text/plain;
        location / { return 200 "$body"; }
    }
}
EOF
    start_daemon backend "$LOAD_CORE" nginx -e stderr -p "$dir" -c "$dir/nginx.conf"
    wait_http_ok backend "http://127.0.0.1:$BACKEND_PORT/any/path"
}

# https: one self-signed ECDSA P-256 certificate for every proxy, made once
# per run. $TLS/key.pem is PKCS#8; HAProxy wants certificate and key in one file.
TLS=""
make_certificate() {
    TLS=$WORK/tls
    mkdir -p "$TLS"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=bench.example.com -addext subjectAltName=DNS:bench.example.com \
        -keyout "$TLS/key.pem" -out "$TLS/cert.pem" 2>"$TLS/openssl.log" ||
        die "openssl could not make the certificate: $(cat "$TLS/openssl.log")"
    cat "$TLS/cert.pem" "$TLS/key.pem" >"$TLS/haproxy.pem"
    chmod 644 "$TLS"/*.pem # nginx reads them as root; nothing secret in a bench key
}

# After start-up: what a default OpenSSL client (wrk's) negotiates, as
# "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519"; the run stops unless it is TLS 1.3.
declare -A R_TLS=()
check_tls() {
    local name=$1 out proto suite group
    out=$(openssl s_client -connect "127.0.0.1:$PROXY_PORT" -brief </dev/null 2>&1) || true
    proto=$(awk -F': ' '/^Protocol version/ { print $2 }' <<<"$out")
    suite=$(awk -F': ' '/^Ciphersuite/ { print $2 }' <<<"$out")
    group=$(awk -F': ' '/^(Server Temp Key|Negotiated TLS1.3 group)/ { sub(/,.*/, "", $2); print $2; exit }' <<<"$out")
    [[ $proto == TLSv1.3 ]] || {
        echo "$out" >&2
        daemon_failed "$name" "a default OpenSSL client did not get TLS 1.3 (got '${proto:-nothing}')"
    }
    R_TLS[$name]="$proto $suite ${group:-?}"
    log "$name: negotiated ${R_TLS[$name]}"
}

start_nginx() {
    local dir=$WORK/nginx tls="" ssl=""
    mkdir -p "$dir"
    if [[ $SCENARIO == https ]]; then
        # TLS 1.3 only; session cache and tickets at nginx's defaults.
        ssl=" ssl"
        tls="ssl_certificate $TLS/cert.pem;
        ssl_certificate_key $TLS/key.pem;
        ssl_protocols TLSv1.3;"
    fi
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp-body;
    proxy_temp_path $dir/tmp-proxy;
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$PROXY_PORT backlog=4096$ssl;
        $tls
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    start_daemon nginx "$PROXY_CORE" nginx -e stderr -p "$dir" -c "$dir/nginx.conf"
    wait_http_ok nginx "$PROXY_URL"
}

start_haproxy() {
    local dir=$WORK/haproxy tls=""
    mkdir -p "$dir"
    # TLS 1.3 only; tickets and session cache at HAProxy's defaults.
    [[ $SCENARIO == https ]] && tls=" ssl crt $TLS/haproxy.pem ssl-min-ver TLSv1.3"
    cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096 # the FD limit here is 20000; 10000 would need ~20014

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 65s

frontend bench
    bind 127.0.0.1:$PROXY_PORT$tls
    default_backend backend

backend backend
    server backend 127.0.0.1:$BACKEND_PORT
EOF
    haproxy -c -q -f "$dir/haproxy.cfg" >&2 || die "haproxy rejected its config"
    # -db: stay in the foreground (no daemon mode); we background it ourselves.
    start_daemon haproxy "$PROXY_CORE" haproxy -db -f "$dir/haproxy.cfg"
    wait_http_ok haproxy "$PROXY_URL"
}

start_strait() {
    local dir=$WORK/strait _ got listener secret=""
    mkdir -p "$dir"
    listener="{name: http, port: $PROXY_PORT, protocol: HTTP}"
    if [[ $SCENARIO == https ]]; then
        # No hostname: the listener takes any SNI (wrk sends the IP), as the
        # peers' single server does. TLS 1.2 stays enabled (strait's
        # default); the clients offer TLS 1.3 and check_tls verifies it.
        listener="{name: https, port: $PROXY_PORT, protocol: HTTPS, tls: {mode: Terminate, certificateRefs: [{name: bench-tls}]}}"
        secret="---
apiVersion: v1
kind: Secret
metadata: {name: bench-tls}
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$TLS/cert.pem")
  tls.key: $(base64 -w0 "$TLS/key.pem")"
    fi
    cat >"$dir/bench.yaml" <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: strait}
spec: {controllerName: strait.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench}
spec:
  gatewayClassName: strait
  listeners: [$listener]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bench}
spec:
  parentRefs: [{name: bench}]
  rules: [{backendRefs: [{name: backend, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: backend}
spec: {ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: backend, labels: {kubernetes.io/service-name: backend}}
addressType: IPv4
endpoints: [{addresses: ["127.0.0.1"]}]
ports: [{port: $BACKEND_PORT}]
$secret
EOF
    # Logging at warn keeps per-request work out of the measurement.
    STRAIT_LOG=${STRAIT_LOG:-warn} start_daemon strait "$PROXY_CORE" "$STRAIT_BIN" gateway \
        --config "$dir" --workers 1 --bind-address 127.0.0.1 --admin "127.0.0.1:$ADMIN_PORT"
    # /ready answers 200 once the config is loaded and listeners are bound.
    for _ in $(seq 100); do
        kill -0 "${DAEMON_PID[strait]}" 2>/dev/null || daemon_failed strait "exited during start-up"
        got=$(http_get "http://127.0.0.1:$ADMIN_PORT/ready")
        [[ $got == 200\ * ]] && break
        sleep 0.1
    done
    [[ $got == 200\ * ]] ||
        daemon_failed strait "http://127.0.0.1:$ADMIN_PORT/ready did not answer 200 within 10 s (last: '$got')"
    wait_http_ok strait "$PROXY_URL"
}

# Wait until the proxy port is released, so the next proxy can bind it.
wait_port_free() {
    local _
    for _ in $(seq 50); do
        port_open "$PROXY_PORT" || return 0
        sleep 0.1
    done
    die "port $PROXY_PORT still busy after stopping the previous proxy"
}

# --- measurement ------------------------------------------------------------

declare -A R_RPS=() R_P99=() R_CPU=() R_UTIL=() R_RSS=() R_NON2XX=() R_SOCKERR=()

# The load, printed in the report and run by run_wrk: one wrk thread on the
# load core. -t1 because core 1 is all wrk gets; more threads would only fight
# the backend for it.
wrk_cmd() { echo "taskset -c $LOAD_CORE wrk -t1 -c$CONNECTIONS -d$1 --latency $PROXY_URL"; }
run_wrk() {
    taskset -c "$LOAD_CORE" wrk -t1 "-c$CONNECTIONS" "-d$1" --latency "$PROXY_URL"
}

# Warm up, then run wrk once while sampling the proxy's CPU ticks around it.
measure() {
    local name=$1 pids out t0 t1 c0 c1 reqs rps p99 non2xx sockerr secs tck
    log "$name: warm-up ($WARMUP)"
    run_wrk "$WARMUP" >"$WORK/$name-warmup.txt" 2>&1 || {
        cat "$WORK/$name-warmup.txt" >&2
        die "$name: wrk warm-up failed"
    }

    # PIDs after the warm-up: every process that can have done the work.
    mapfile -t pids < <(process_tree "${DAEMON_PID[$name]}")
    log "$name: measuring ($DURATION, $CONNECTIONS connections; processes: ${pids[*]})"
    c0=$(cpu_ticks "${pids[@]}")
    t0=$(date +%s%N)
    out=$(run_wrk "$DURATION" 2>&1) || {
        echo "$out" >&2
        die "$name: wrk failed"
    }
    t1=$(date +%s%N)
    c1=$(cpu_ticks "${pids[@]}")
    echo "$out" >"$WORK/$name-wrk.txt"
    # shellcheck disable=SC2001 # indent wrk's output in the log
    sed 's/^/    /' <<<"$out" >&2

    reqs=$(awk '/ requests in / { print $1 }' <<<"$out")
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    # Both lines appear only when non-zero.
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")
    sockerr=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' <<<"$out")
    [[ -n $reqs && -n $rps && -n $p99 ]] || die "$name: could not parse wrk output (see above)"
    [[ $reqs -gt 0 ]] || die "$name: wrk completed no requests"

    tck=$(getconf CLK_TCK)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) / 1e9 }')
    R_RPS[$name]=$rps
    R_P99[$name]=$(to_ms "$p99")
    R_NON2XX[$name]=${non2xx:-0}
    R_SOCKERR[$name]=${sockerr:-0}
    R_CPU[$name]=$(awk -v d=$((c1 - c0)) -v t="$tck" -v n="$reqs" 'BEGIN { printf "%.2f", d * (1e6 / t) / n }')
    # Share of one core the proxy used: near 100% means the proxy was the
    # bottleneck; well below means core 1 (wrk + backend) was.
    R_UTIL[$name]=$(awk -v d=$((c1 - c0)) -v t="$tck" -v s="$secs" 'BEGIN { printf "%.0f", 100 * d / t / s }')
    R_RSS[$name]=$(awk -v kb="$(rss_kb "${pids[@]}")" 'BEGIN { printf "%.1f", kb / 1024 }')
}

# https (b): full TLS 1.3 handshakes. `openssl s_time -new` makes a fresh SSL
# object per connection and never sets a session, so every connection is a
# full handshake (see the header for how that was checked, and why not wrk or
# h2load). It sends no SNI. -www PAGE sends "GET PAGE HTTP/1.0\r\n\r\n" and
# reads to EOF: one request per connection, which the proxy closes. strait
# answers 400 to a request without Host (even HTTP/1.0), so PAGE carries one:
# the request line is "GET / HTTP/1.0", then Host, then "X-Bench: HTTP/1.0".
readonly HS_PAGE=$'/ HTTP/1.0\r\nHost: bench.example.com\r\nX-Bench:'
hs_cmd() {
    echo "taskset -c $LOAD_CORE openssl s_time -connect 127.0.0.1:$PROXY_PORT -new -tls1_3 -www $(printf %q "$HS_PAGE") -time $1"
}

# HS_CLIENTS s_time processes in parallel on the load core for $2 seconds,
# output in $WORK/$1-<i>.txt. Returns non-zero if any of them failed (s_time
# stops at the first connection or handshake that fails).
run_s_time() {
    local tag=$1 secs=$2 i pids=() failed=0
    for ((i = 1; i <= HS_CLIENTS; i++)); do
        taskset -c "$LOAD_CORE" openssl s_time -connect "127.0.0.1:$PROXY_PORT" -new -tls1_3 \
            -www "$HS_PAGE" -time "$secs" >"$WORK/$tag-$i.txt" 2>&1 &
        pids+=("$!")
    done
    for i in "${pids[@]}"; do wait "$i" || failed=1; done
    return "$failed"
}

declare -A R_HS_N=() R_HS_RATE=() R_HS_CPU=() R_HS_CAP=() R_HS_UTIL=() R_HS_BYTES=()

measure_handshakes() {
    local name=$1 secs pids got f n b total=0 minb="" t0 t1 c0 c1 tck
    secs=$(to_seconds "$HS_DURATION")
    # The request s_time sends must be served like wrk's, or the run would
    # time error pages: the same bytes through s_client, status line checked.
    got=$(printf 'GET %s HTTP/1.0\r\n\r\n' "$HS_PAGE" |
        timeout 5 openssl s_client -quiet -tls1_3 -connect "127.0.0.1:$PROXY_PORT" 2>/dev/null | head -n1 | tr -d '\r') || true
    [[ $got == HTTP/1.?\ 200* ]] ||
        daemon_failed "$name" "the request s_time sends got '${got:-no answer}', not 200"

    log "$name: handshake warm-up (1 s, $HS_CLIENTS s_time processes)"
    run_s_time "$name-hs-warmup" 1 || {
        tail -n 3 "$WORK/$name-hs-warmup-"*.txt >&2
        die "$name: openssl s_time failed during the warm-up"
    }
    mapfile -t pids < <(process_tree "${DAEMON_PID[$name]}")
    log "$name: measuring full handshakes (${secs}s, $HS_CLIENTS s_time processes; processes: ${pids[*]})"
    c0=$(cpu_ticks "${pids[@]}")
    t0=$(date +%s%N)
    run_s_time "$name-hs" "$secs" || {
        tail -n 3 "$WORK/$name-hs-"[0-9]*.txt >&2
        die "$name: openssl s_time failed (a connection or handshake failed)"
    }
    t1=$(date +%s%N)
    c1=$(cpu_ticks "${pids[@]}")

    # "699 connections in 11 real seconds, 1189 bytes read per connection"
    for f in "$WORK/$name-hs-"[0-9]*.txt; do
        read -r n b < <(awk '/ connections in .* real seconds/ { print $1, $7 }' "$f") || true
        [[ ${n:-} =~ ^[0-9]+$ && ${b:-} =~ ^[0-9]+$ ]] || {
            tail -c 500 "$f" >&2
            die "$name: could not parse openssl s_time output ($f)"
        }
        total=$((total + n))
        [[ -z $minb || $b -lt $minb ]] && minb=$b
    done
    [[ $total -gt 0 ]] || die "$name: openssl s_time completed no connections"
    log "$name: $total full handshakes, $((c1 - c0)) CPU ticks, ${minb} bytes per connection (lowest process)"

    tck=$(getconf CLK_TCK)
    R_HS_N[$name]=$total
    R_HS_BYTES[$name]=$minb
    R_HS_RATE[$name]=$(awk -v n="$total" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / ((b - a) / 1e9) }')
    R_HS_CPU[$name]=$(awk -v d=$((c1 - c0)) -v t="$tck" -v n="$total" 'BEGIN { printf "%.1f", d * (1e6 / t) / n }')
    # Handshakes one proxy core would do if it did nothing else.
    R_HS_CAP[$name]=$(awk -v d=$((c1 - c0)) -v t="$tck" -v n="$total" 'BEGIN { printf "%.0f", (d > 0 ? n / (d / t) : 0) }')
    R_HS_UTIL[$name]=$(awk -v d=$((c1 - c0)) -v t="$tck" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 100 * d / t / ((b - a) / 1e9) }')
}

run_proxy() {
    local name=$1
    log "$name: starting"
    "start_$name"
    if [[ $SCENARIO == https ]]; then check_tls "$name"; fi
    measure "$name"
    if [[ $SCENARIO == https ]]; then measure_handshakes "$name"; fi
    stop_daemon "$name"
    wait_port_free
}

# --- report -----------------------------------------------------------------

# sed -n 1p rather than head -n1: head exits early, the writer may get
# SIGPIPE, and pipefail would then drop the line.
versions() {
    local v
    v=$(nginx -v 2>&1 | sed -n 1p) && echo "- $v"
    v=$(haproxy -v 2>&1 | sed -n 1p) && echo "- $v"
    # wrk -v prints its version line then usage, and exits 1.
    v=$( (wrk -v 2>&1 || true) | sed -n 1p) && echo "- $v"
    if [[ " $PROXIES " == *" strait "* ]]; then
        v=$("$STRAIT_BIN" --version 2>&1 | sed -n 1p) || v="strait (no --version)"
        echo "- $v ($STRAIT_BIN)"
    fi
    if [[ $SCENARIO == https ]]; then
        v=$(nginx -V 2>&1 | grep -o 'built with OpenSSL [^ ]*' | sed -n 1p) && echo "- nginx TLS: $v"
        v=$(haproxy -vv 2>&1 | awk -F': ' '/Running on OpenSSL version/ && !v { v = $2 } END { print v }') &&
            echo "- HAProxy TLS: running on $v"
        v=$(awk '$0 == "name = \"rustls\"" { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock 2>/dev/null) &&
            [[ -n $v ]] && echo "- strait TLS: rustls $v with ring (from Cargo.lock)"
        echo "- clients (wrk, openssl s_time): $(openssl version)"
    fi
    return 0
}

# Lower of nginx's and HAProxy's value in the named result array, or "".
best_peer() {
    local -n values=$1
    local name best=""
    for name in nginx haproxy; do
        [[ -n ${values[$name]:-} ]] || continue
        if [[ -z $best ]] || awk -v a="${values[$name]}" -v b="$best" 'BEGIN { exit !(a < b) }'; then
            best=${values[$name]}
        fi
    done
    echo "$best"
}

# "1.23×" = $1 / $2, or "n/a" without a peer.
ratio() {
    if [[ -n $2 ]]; then
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", (b > 0 ? a / b : 0) }'
    else
        echo "n/a"
    fi
}

report() {
    local name best best_hs env_line
    best=$(best_peer R_CPU)
    env_line="PROXIES=\"$PROXIES\" DURATION=$DURATION CONNECTIONS=$CONNECTIONS WARMUP=$WARMUP"
    if [[ $SCENARIO == https ]]; then
        [[ " $SCRIPT_ARGS " == *" --https "* ]] || env_line="SCENARIO=https $env_line"
        env_line+=" HS_DURATION=$HS_DURATION HS_CLIENTS=$HS_CLIENTS"
    fi
    [[ " $PROXIES " == *" strait "* ]] && env_line+=" STRAIT_BIN=$STRAIT_BIN"

    if [[ $SCENARIO == https ]]; then
        echo "## Gateway benchmark, HTTPS (TLS 1.3), $(date -u '+%Y-%m-%d %H:%M UTC')"
    else
        echo "## Gateway benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    fi
    echo
    echo "Command: \`$env_line bench/gateway.sh${SCRIPT_ARGS:+ $SCRIPT_ARGS}\`"
    echo
    echo "Load per proxy: \`$(wrk_cmd "$DURATION")\` after a $WARMUP warm-up;" \
        "proxy on core $PROXY_CORE (one worker), backend nginx and wrk on core $LOAD_CORE," \
        "$BODY_BYTES-byte responses, keep-alive on both sides."
    if [[ $SCENARIO == https ]]; then
        echo
        echo "TLS: every proxy terminates TLS 1.3 only (strait also accepts 1.2; the clients offer 1.3)" \
            "with the same self-signed ECDSA P-256 certificate; plain HTTP to the backend." \
            "Full handshakes: $HS_CLIENTS × \`$(hs_cmd "$(to_seconds "$HS_DURATION")")\` in parallel" \
            "after a 1 s warm-up: a new connection, a full handshake (no resumption) and one request each."
    fi
    echo
    echo "Machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
        "Linux $(uname -r), ${BUSY_AT_START}% CPU busy (all cores) in the second before the run"
    echo
    echo "Versions:"
    echo
    versions
    if [[ $SCENARIO == https ]]; then
        echo
        echo "Negotiated with a default OpenSSL client (\`openssl s_client\`, as wrk):"
        echo
        for name in $PROXIES; do echo "- $name: ${R_TLS[$name]}"; done
        echo
        echo "### Keep-alive HTTPS requests"
    fi
    echo
    echo "| proxy | rps | p99 (ms) | CPU µs/req | RSS MiB | non-2xx | socket errors | proxy core busy | CPU/req vs best peer |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for name in $PROXIES; do
        printf '| %s | %.0f | %s | %s | %s | %s | %s | %s%% | %s |\n' "$name" "${R_RPS[$name]}" \
            "${R_P99[$name]}" "${R_CPU[$name]}" "${R_RSS[$name]}" "${R_NON2XX[$name]}" \
            "${R_SOCKERR[$name]}" "${R_UTIL[$name]}" "$(ratio "${R_CPU[$name]}" "$best")"
    done
    echo
    echo "CPU µs/req: utime+stime of all the proxy's processes over the measured run ÷ completed requests." \
        "Best peer: the lower CPU µs/req of nginx and HAProxy in this run. RSS: sum of VmRSS after the run."
    [[ $SCENARIO == https ]] || return 0

    best_hs=$(best_peer R_HS_CPU)
    echo
    echo "### Full TLS 1.3 handshakes (new connection per request, no resumption)"
    echo
    echo "| proxy | handshakes | handshakes/s | CPU µs/handshake | handshakes/s per proxy core | proxy core busy | bytes/connection | CPU/handshake vs best peer |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for name in $PROXIES; do
        printf '| %s | %s | %s | %s | %s | %s%% | %s | %s |\n' "$name" "${R_HS_N[$name]}" \
            "${R_HS_RATE[$name]}" "${R_HS_CPU[$name]}" "${R_HS_CAP[$name]}" "${R_HS_UTIL[$name]}" \
            "${R_HS_BYTES[$name]}" "$(ratio "${R_HS_CPU[$name]}" "$best_hs")"
    done
    echo
    echo "CPU µs/handshake: the proxy's utime+stime over the run ÷ connections completed (each one full handshake" \
        "and one proxied request). handshakes/s per proxy core = 1 ÷ CPU s/handshake: what one core would do if" \
        "the proxy were the bottleneck; handshakes/s is what was done, usually bounded by the clients' core" \
        "(see proxy core busy). bytes/connection: lowest per-process average s_time read" \
        "(≥ $BODY_BYTES means the body came back). Best peer: the lower CPU µs/handshake of nginx and HAProxy."
}

# --- main -------------------------------------------------------------------

main() {
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    [[ $(nproc) -ge 2 ]] || die "needs at least 2 cores (proxy on core 0, load on core 1)"
    install_tools
    [[ " $PROXIES " == *" strait "* ]] && ensure_strait
    check_ports_free
    BUSY_AT_START=$(cpu_busy_percent)
    if [[ $BUSY_AT_START -gt 10 ]]; then
        log "warning: the machine was ${BUSY_AT_START}% busy just before the run; other work will skew the figures"
    fi

    WORK=$(mktemp -d /tmp/strait-bench.XXXXXX)
    # nginx workers drop to 'nobody' when started as root; they must be able
    # to reach their temp folders inside this directory.
    chmod 755 "$WORK"

    log "backend: starting nginx on 127.0.0.1:$BACKEND_PORT (core $LOAD_CORE)"
    start_backend
    if [[ $SCENARIO == https ]]; then make_certificate; fi

    local name failed=()
    for name in $PROXIES; do run_proxy "$name"; done

    local out
    out=$(report)
    echo "$out"
    if [[ $SAVE -eq 1 ]]; then
        mkdir -p bench/results
        local file
        local stem=gateway
        [[ $SCENARIO == https ]] && stem=gateway-https
        file=bench/results/$stem-$(date +%Y-%m-%d).md
        [[ -e $file ]] && file=bench/results/$stem-$(date +%Y-%m-%d-%H%M%S).md
        echo "$out" >"$file"
        log "saved to $file"
    fi

    for name in $PROXIES; do
        [[ ${R_NON2XX[$name]} -eq 0 && ${R_SOCKERR[$name]} -eq 0 ]] ||
            failed+=("$name (${R_NON2XX[$name]} non-2xx, ${R_SOCKERR[$name]} socket errors)")
        [[ $SCENARIO != https || ${R_HS_BYTES[$name]} -ge $BODY_BYTES ]] ||
            failed+=("$name (handshake run: ${R_HS_BYTES[$name]} bytes per connection, less than the $BODY_BYTES-byte body)")
    done
    [[ ${#failed[@]} -eq 0 ]] || die "errors under load: ${failed[*]}"
}

main
