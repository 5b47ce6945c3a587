#!/usr/bin/env bash
# HTTP/2 and gRPC benchmark: strait against nginx and HAProxy with HTTP/2
# clients, the same method as gateway.sh (each proxy alone, one worker
# pinned to core 0; load and backends on core 1; CPU time per request is
# the figure meant for comparison).
#
# Two loads per proxy, each an h2load run (one thread, CONNECTIONS
# connections, STREAMS concurrent streams each) over h2c, prior knowledge:
#   http2  GET / -> proxy -> nginx over HTTP/1.1 keep-alive, 1 KiB body.
#          nginx: `listen ... http2` and proxy_pass; HAProxy: `bind ...
#          proto h2`; strait: an HTTPRoute.
#   grpc   unary gRPC calls (POST of an empty message, `te: trailers`) ->
#          proxy -> an h2c gRPC server (`strait echo`, tonic: the Gateway API
#          conformance echo) over one multiplexed connection where the proxy
#          can. nginx: grpc_pass with upstream keep-alive (nginx sends one
#          call per upstream connection at a time); HAProxy: `server ...
#          proto h2`; strait: a GRPCRoute to a Service with appProtocol
#          kubernetes.io/h2c. Before measuring, one call through each proxy
#          must end with `grpc-status: 0`.
# h2load reports no percentiles; the report gives its mean time per request.
#
# Usage (as root, from anywhere in the repo):
#   bench/h2.sh [--save]     # Markdown report on stdout, progress on stderr
# Environment:
#   PROXIES      proxies to run, in order         (default "nginx haproxy strait")
#   LOADS        loads to run on each             (default "http2 grpc")
#   DURATION     h2load -D of a measured run, s   (default 10)
#   WARMUP       h2load -D of the warm-up, s      (default 3)
#   CONNECTIONS  h2load -c                        (default 50)
#   STREAMS      h2load -m, streams per connection (default 10)
#   STRAIT_BIN   strait binary, relative paths from the repo root
#                (default target/release/strait, rebuilt when cargo is here)
# Needs nginx, haproxy, h2load (nghttp2-client), curl, taskset: apt-get
# installs what is missing. Ports 18090-18094 must be free.
set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

readonly HTTP2_PORT=18090 GRPC_PORT=18091 BACKEND_PORT=18092 ECHO_PORT=18093 ADMIN_PORT=18094
readonly PROXY_CORE=0 LOAD_CORE=1 BODY_BYTES=1024
readonly GRPC_METHOD=/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/Echo
PROXIES=${PROXIES:-nginx haproxy strait}
LOADS=${LOADS:-http2 grpc}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-50}
STREAMS=${STREAMS:-10}
STRAIT_BIN=${STRAIT_BIN:-target/release/strait}

SCRIPT_ARGS="$*"
cd "$ROOT"
for arg in "$@"; do common_option "$arg"; done
for p in $PROXIES; do [[ $p =~ ^(nginx|haproxy|strait)$ ]] || die "PROXIES: unknown proxy '$p'"; done
for l in $LOADS; do [[ $l =~ ^(http2|grpc)$ ]] || die "LOADS: unknown load '$l' (http2, grpc)"; done
for v in DURATION WARMUP CONNECTIONS STREAMS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number, got '${!v}'"
done

port_of() { if [[ $1 == grpc ]]; then echo "$GRPC_PORT"; else echo "$HTTP2_PORT"; fi; }

# --- daemons ----------------------------------------------------------------

# The gRPC server the grpc load reaches, on the load core.
start_echo() {
    STRAIT_LOG=warn start_daemon echo "$LOAD_CORE" "$STRAIT_BIN" echo --listen "127.0.0.1:$ECHO_PORT"
    wait_until echo port_open "$ECHO_PORT" || daemon_failed echo "not listening within 10 s"
}

start_nginx() {
    local dir=$WORK/nginx
    mkdir -p "$dir"
    write_nginx_conf "$dir" <<EOF
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp-body;
    proxy_temp_path $dir/tmp-proxy;
    upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 64; keepalive_requests 1000000; }
    upstream grpc { server 127.0.0.1:$ECHO_PORT; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$HTTP2_PORT http2 backlog=4096;
        location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
    server {
        listen 127.0.0.1:$GRPC_PORT http2 backlog=4096;
        location / { grpc_pass grpc://grpc; }
    }
EOF
    start_nginx_daemon nginx "$PROXY_CORE" "$dir"
}

start_haproxy() {
    local dir=$WORK/haproxy
    mkdir -p "$dir"
    cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend http2
    bind 127.0.0.1:$HTTP2_PORT proto h2
    default_backend backend

frontend grpc
    bind 127.0.0.1:$GRPC_PORT proto h2
    default_backend grpc

backend backend
    server backend 127.0.0.1:$BACKEND_PORT

backend grpc
    server grpc 127.0.0.1:$ECHO_PORT proto h2
EOF
    haproxy -c -q -f "$dir/haproxy.cfg" >&2 || die "haproxy rejected its config"
    start_daemon haproxy "$PROXY_CORE" haproxy -db -f "$dir/haproxy.cfg"
}

start_strait() {
    local dir=$WORK/strait
    mkdir -p "$dir"
    {
        gateway_yaml "{name: http2, port: $HTTP2_PORT, protocol: HTTP}" \
            "{name: grpc, port: $GRPC_PORT, protocol: HTTP}"
        route_yaml http2 backend http2
        cat <<EOF
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc}
spec:
  parentRefs: [{name: bench, sectionName: grpc}]
  rules: [{backendRefs: [{name: grpc, port: 80}]}]
EOF
        backend_yaml backend "$BACKEND_PORT"
        backend_yaml grpc "$ECHO_PORT" kubernetes.io/h2c
    } >"$dir/bench.yaml"
    start_bench_gateway "$dir"
}

# One call of each load through the proxy must succeed before it is loaded.
check_proxy() {
    local name=$1 got
    wait_http_ok "$name" --http2-prior-knowledge "http://127.0.0.1:$HTTP2_PORT/"
    got=$(curl -s --http2-prior-knowledge --max-time 2 -D - -o /dev/null --data-binary @"$WORK/call.bin" \
        -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$GRPC_PORT$GRPC_METHOD" |
        tr -d '\r' | grep -ci '^grpc-status: 0$' || true)
    [[ $got == 1 ]] || daemon_failed "$name" "a gRPC call through it did not end with grpc-status: 0"
}

# --- measurement ------------------------------------------------------------

# h2load's arguments for load $1 and $2 seconds, into the array H2ARGS.
h2load_argv() {
    H2ARGS=(-D "$2" -c "$CONNECTIONS" -m "$STREAMS" -t 1)
    if [[ $1 == grpc ]]; then
        H2ARGS+=(-d "$WORK/call.bin" -H "content-type: application/grpc" -H "te: trailers"
            "http://127.0.0.1:$GRPC_PORT$GRPC_METHOD")
    else
        H2ARGS+=("http://127.0.0.1:$HTTP2_PORT/")
    fi
}
run_h2load() {
    h2load_argv "$1" "$2"
    taskset -c "$LOAD_CORE" h2load "${H2ARGS[@]}"
}

declare -A R_RPS=() R_MEAN=() R_CPU=() R_OK=() R_BAD=()

measure() {
    local name=$1 load=$2 key=$1/$2 pids t0 t1 out
    log "$name, $load: warm-up (${WARMUP}s)"
    run_h2load "$load" "$WARMUP" >"$WORK/$name-$load-warmup.txt" 2>&1 ||
        die "$name, $load: h2load warm-up failed: $(tail -5 "$WORK/$name-$load-warmup.txt")"
    log "$name, $load: measuring (${DURATION}s)"
    mapfile -t pids < <(process_tree "${DAEMON_PID[$name]}")
    t0=$(cpu_ticks "${pids[@]}")
    out=$(run_h2load "$load" "$DURATION" 2>&1) || die "$name, $load: h2load failed: $(tail -5 <<<"$out")"
    t1=$(cpu_ticks "${pids[@]}")
    echo "$out" >"$WORK/$name-$load.txt"
    # "status codes: 1000 2xx, 0 3xx, 0 4xx, 0 5xx"; "requests: ... N failed, N errored, N timeout"
    R_OK[$key]=$(awk '/^status codes:/ { gsub(",", ""); print $3 }' <<<"$out")
    R_BAD[$key]=$(awk '/^status codes:/ { gsub(",", ""); n = $5 + $7 + $9 } /^requests:/ { gsub(",", ""); n += $10 + $12 + $14 } END { print n + 0 }' <<<"$out")
    R_RPS[$key]=$(awk '/^finished in/ { gsub(",", ""); printf "%.0f", $4 }' <<<"$out")
    R_MEAN[$key]=$(to_ms "$(awk '/^time for request:/ { print $6 }' <<<"$out")")
    [[ ${R_OK[$key]:-0} -gt 0 ]] || die "$name, $load: no 2xx responses ($(grep -E '^(requests|status)' <<<"$out"))"
    R_CPU[$key]=$(cpu_us_each $((t1 - t0)) "${R_OK[$key]}" 2)
    log "$name, $load: ${R_RPS[$key]} req/s, ${R_CPU[$key]} µs CPU per request, ${R_BAD[$key]} failed"
}

run_proxy() {
    local name=$1 load
    log "$name: starting"
    "start_$name"
    check_proxy "$name"
    for load in $LOADS; do measure "$name" "$load"; done
    stop_daemon "$name"
    wait_ports_free "$HTTP2_PORT" "$GRPC_PORT"
}

# --- report -----------------------------------------------------------------

report() {
    local load name key best
    echo "## HTTP/2 and gRPC hop, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`PROXIES=\"$PROXIES\" LOADS=\"$LOADS\" DURATION=$DURATION CONNECTIONS=$CONNECTIONS STREAMS=$STREAMS bench/h2.sh${SCRIPT_ARGS:+ $SCRIPT_ARGS}\`" \
        "($(nproc) cores, $(cpu_model); $(nginx -v 2>&1 | sed -n 1p), $(haproxy -v 2>&1 | sed -n 1p | cut -d' ' -f1-3), $(h2load --version | sed -n 1p))"
    echo
    for load in $LOADS; do
        h2load_argv "$load" "$DURATION"
        echo "- $load: \`taskset -c $LOAD_CORE h2load$(printf ' %q' "${H2ARGS[@]}")\`"
    done
    echo
    echo "| proxy | load | requests/s | mean ms per request | CPU µs per request | ÷ best peer | 2xx | failed |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    for load in $LOADS; do
        best=$(best_peer R_CPU "/$load")
        for name in $PROXIES; do
            key=$name/$load
            echo "| $name | $load | ${R_RPS[$key]} | ${R_MEAN[$key]} | ${R_CPU[$key]} | $(ratio "${R_CPU[$key]}" "$best") | ${R_OK[$key]} | ${R_BAD[$key]} |"
        done
    done
}

main() {
    install_cleanup
    [[ $(nproc) -ge 2 ]] || die "needs at least 2 cores (proxy on core 0, load on core 1)"
    install_missing nginx haproxy h2load:nghttp2-client curl taskset:util-linux
    rebuild_default_strait
    [[ -x $STRAIT_BIN ]] || die "strait binary '$STRAIT_BIN' not found: cargo build --release -p strait, or set STRAIT_BIN"
    STRAIT_BIN=$(absolute_path "$STRAIT_BIN")
    check_ports_free "$HTTP2_PORT" "$GRPC_PORT" "$BACKEND_PORT" "$ECHO_PORT" "$ADMIN_PORT"
    note_busy_at_start
    WORK=$(mktemp -d /tmp/strait-h2.XXXXXX)
    chmod 755 "$WORK"
    printf '\0\0\0\0\0' >"$WORK/call.bin" # a gRPC frame: not compressed, 0-byte message
    start_backend
    start_echo
    local name failed=()
    for name in $PROXIES; do run_proxy "$name"; done
    local out
    out=$(report)
    echo "$out"
    [[ $SAVE -eq 1 ]] && save_report h2 "$out"
    for name in $PROXIES; do
        for load in $LOADS; do
            [[ ${R_BAD[$name/$load]} -eq 0 ]] || failed+=("$name $load: ${R_BAD[$name/$load]} failed")
        done
    done
    [[ ${#failed[@]} -eq 0 ]] || die "errors under load: ${failed[*]}"
}

main
