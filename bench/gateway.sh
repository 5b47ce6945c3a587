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
#   OPEN_RATE    http: after the wrk run, an open-loop run of oha at this many
#                requests/s for DURATION, latency-corrected: p50/p99/max
#                (default 5000; 0 leaves it out). oha is built with
#                `cargo install oha --locked` when missing (~6 CPU-minutes).
#   STRAIT_BIN   strait binary, relative paths from the repo root
#                                               (default target/release/strait)
#   STRAIT_FLAGS more flags for strait, e.g. "--access-log /tmp/a.log"
set -euo pipefail
export LC_ALL=C # wrk's numbers and our printf/awk use '.' decimals
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

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
OPEN_RATE=${OPEN_RATE:-5000}
STRAIT_BIN=${STRAIT_BIN:-target/release/strait}

SCRIPT_ARGS="$*"
cd "$ROOT" # STRAIT_BIN and bench/results are relative to the repo root

while [[ $# -gt 0 ]]; do
    case $1 in
    --https) SCENARIO=https ;;
    *) common_option "$1" ;;
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
[[ $OPEN_RATE =~ ^[0-9]+$ ]] || die "OPEN_RATE must be a number (0: no open-loop run), got '$OPEN_RATE'"
[[ $HS_CLIENTS =~ ^[1-9][0-9]*$ ]] || die "HS_CLIENTS must be a positive number, got '$HS_CLIENTS'"
[[ $HS_DURATION =~ ^[1-9][0-9]*[sm]?$ ]] || die "HS_DURATION must be whole seconds or minutes (10, 10s, 2m), got '$HS_DURATION'"
case $SCENARIO in
http) PROXY_PORT=$HTTP_PORT SCHEME=http ;;
https) PROXY_PORT=$HTTPS_PORT SCHEME=https ;;
*) die "SCENARIO: unknown scenario '$SCENARIO' (choose from: http https)" ;;
esac
readonly SCENARIO PROXY_PORT SCHEME
readonly PROXY_URL=$SCHEME://127.0.0.1:$PROXY_PORT/

# --- helpers ----------------------------------------------------------------

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

# nginx, haproxy, wrk (and curl for readiness probes) when missing.
install_tools() {
    install_missing nginx haproxy wrk curl jq taskset:util-linux \
        openssl # https: certificate, s_time
    if [[ $SCENARIO == http && $OPEN_RATE -gt 0 ]]; then install_oha; fi
}

# STRAIT_BIN, built when it is the default path and still missing.
ensure_strait() {
    rebuild_default_strait
    if [[ ! -x $STRAIT_BIN ]]; then
        command -v cargo >/dev/null ||
            die "strait binary '$STRAIT_BIN' not found and cargo is absent: build it with 'cargo build --release -p strait', set STRAIT_BIN, or leave strait out of PROXIES (e.g. PROXIES=\"nginx haproxy\")"
        [[ $STRAIT_BIN == target/release/strait ]] ||
            die "strait binary '$STRAIT_BIN' (from STRAIT_BIN) not found"
        build_strait
    fi
    STRAIT_BIN=$(absolute_path "$STRAIT_BIN")
}

# --- daemons ----------------------------------------------------------------

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
    write_nginx_conf "$dir" <<EOF
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
EOF
    start_nginx_daemon nginx "$PROXY_CORE" "$dir"
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
    local dir=$WORK/strait listener secret=""
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
    {
        gateway_yaml "$listener"
        route_yaml bench backend
        backend_yaml backend "$BACKEND_PORT"
        echo "$secret"
    } >"$dir/bench.yaml"
    start_bench_gateway "$dir"
    wait_http_ok strait "$PROXY_URL"
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
    local name=$1 pids out t0 t1 c0 c1 reqs rps p99 non2xx sockerr secs
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

    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) / 1e9 }')
    R_RPS[$name]=$rps
    R_P99[$name]=$(to_ms "$p99")
    R_NON2XX[$name]=${non2xx:-0}
    R_SOCKERR[$name]=${sockerr:-0}
    R_CPU[$name]=$(cpu_us_each $((c1 - c0)) "$reqs" 2)
    # Share of one core the proxy used: near 100% means the proxy was the
    # bottleneck; well below means core 1 (wrk + backend) was.
    R_UTIL[$name]=$(awk -v d=$((c1 - c0)) -v t="$CLK_TCK" -v s="$secs" 'BEGIN { printf "%.0f", 100 * d / t / s }')
    R_RSS[$name]=$(mib "$(rss_kb "${pids[@]}")")
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
    local name=$1 secs pids got f n b total=0 minb="" t0 t1 c0 c1
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

    R_HS_N[$name]=$total
    R_HS_BYTES[$name]=$minb
    R_HS_RATE[$name]=$(awk -v n="$total" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / ((b - a) / 1e9) }')
    R_HS_CPU[$name]=$(cpu_us_each $((c1 - c0)) "$total" 1)
    R_HS_CAP[$name]=$(per_core_rate $((c1 - c0)) "$total")
    R_HS_UTIL[$name]=$(awk -v d=$((c1 - c0)) -v t="$CLK_TCK" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 100 * d / t / ((b - a) / 1e9) }')
}

run_proxy() {
    local name=$1
    log "$name: starting"
    "start_$name"
    if [[ $SCENARIO == https ]]; then check_tls "$name"; fi
    measure "$name"
    if [[ $SCENARIO == http && $OPEN_RATE -gt 0 ]]; then measure_open_loop "$name"; fi
    if [[ $SCENARIO == https ]]; then measure_handshakes "$name"; fi
    stop_daemon "$name"
    wait_ports_free "$PROXY_PORT"
}

declare -A R_OL_P50=() R_OL_P99=() R_OL_MAX=() R_OL_BAD=()

# The open-loop run: oha sends OPEN_RATE requests/s whatever the answers'
# pace, and counts each latency from when its request was due (latency
# correction), so queueing in the proxy shows in the percentiles.
# oha's command for a run of $1 (the warm-up's and the measured run's).
oha_cmd() { echo "taskset -c $LOAD_CORE oha -z $1 -q $OPEN_RATE --latency-correction -c $CONNECTIONS --no-tui --output-format json $PROXY_URL"; }
measure_open_loop() {
    local name=$1 json=$WORK/$1-oha.json
    log "$name: open loop at $OPEN_RATE req/s ($DURATION, after a $WARMUP warm-up)"
    # shellcheck disable=SC2046 # oha_cmd is a flat list of words
    $(oha_cmd "$WARMUP") >/dev/null 2>&1 || die "$name: oha warm-up failed"
    # shellcheck disable=SC2046
    $(oha_cmd "$DURATION") >"$json" 2>"$json.err" || die "$name: oha failed: $(tail -c 500 "$json.err")"
    R_OL_P50[$name]=$(jq -r '.latencyPercentiles.p50 * 1000 | . * 1000 | round / 1000' "$json")
    R_OL_P99[$name]=$(jq -r '.latencyPercentiles.p99 * 1000 | . * 1000 | round / 1000' "$json")
    R_OL_MAX[$name]=$(jq -r '.summary.slowest * 1000 | . * 1000 | round / 1000' "$json")
    # Requests still in flight when the run ends are "aborted due to deadline": not failures.
    R_OL_BAD[$name]=$(jq -r '([.statusCodeDistribution | to_entries[] | select(.key | startswith("2") | not) | .value] | add // 0)
        + ([.errorDistribution // {} | to_entries[] | select(.key | test("deadline") | not) | .value] | add // 0)' "$json")
    log "$name: open loop p50 ${R_OL_P50[$name]} ms, p99 ${R_OL_P99[$name]} ms, ${R_OL_BAD[$name]} failed"
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

open_loop_report() {
    local name best
    best=$(best_peer R_OL_P99)
    echo
    echo "### Open loop at $OPEN_RATE requests/s"
    echo
    echo "Load per proxy: \`$(oha_cmd "$DURATION")\` after a $WARMUP warm-up at the same rate; latencies from when each request was due."
    echo
    echo "| proxy | p50 (ms) | p99 (ms) | max (ms) | failed | p99 vs best peer |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for name in $PROXIES; do
        echo "| $name | ${R_OL_P50[$name]} | ${R_OL_P99[$name]} | ${R_OL_MAX[$name]} | ${R_OL_BAD[$name]} | $(ratio "${R_OL_P99[$name]}" "$best") |"
    done
}

report() {
    local name best best_hs env_line
    best=$(best_peer R_CPU)
    env_line="PROXIES=\"$PROXIES\" DURATION=$DURATION CONNECTIONS=$CONNECTIONS WARMUP=$WARMUP"
    [[ $SCENARIO == http ]] && env_line+=" OPEN_RATE=$OPEN_RATE"
    if [[ $SCENARIO == https ]]; then
        [[ " $SCRIPT_ARGS " == *" --https "* ]] || env_line="SCENARIO=https $env_line"
        env_line+=" HS_DURATION=$HS_DURATION HS_CLIENTS=$HS_CLIENTS"
    fi
    [[ " $PROXIES " == *" strait "* ]] && env_line+=" STRAIT_BIN=$STRAIT_BIN"
    [[ -n ${STRAIT_FLAGS:-} ]] && env_line+=" STRAIT_FLAGS=\"$STRAIT_FLAGS\""

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
    machine_line
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
    if [[ $SCENARIO == http && $OPEN_RATE -gt 0 ]]; then open_loop_report; fi
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
    install_cleanup

    [[ $(nproc) -ge 2 ]] || die "needs at least 2 cores (proxy on core 0, load on core 1)"
    install_tools
    [[ " $PROXIES " == *" strait "* ]] && ensure_strait
    check_ports_free "$PROXY_PORT" "$BACKEND_PORT" "$ADMIN_PORT"
    note_busy_at_start

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
        if [[ $SCENARIO == https ]]; then save_report gateway-https "$out"; else save_report gateway "$out"; fi
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
