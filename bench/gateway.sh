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
# Usage (as root, from the repo root):
#   bench/gateway.sh [--save]
# Environment:
#   PROXIES      proxies to run, in order      (default "nginx haproxy strait")
#   DURATION     wrk duration of a measured run (default 10s)
#   CONNECTIONS  wrk connections                (default 50)
#   WARMUP       wrk duration of the warm-up    (default 3s)
#   STRAIT_BIN   strait binary, relative paths from the repo root
#                                               (default target/release/strait)
set -euo pipefail
export LC_ALL=C # wrk's numbers and our printf/awk use '.' decimals

# --- settings ---------------------------------------------------------------

readonly PROXY_PORT=18080
readonly BACKEND_PORT=18081
readonly ADMIN_PORT=19901
readonly BODY_BYTES=1024
readonly PROXY_CORE=0
readonly LOAD_CORE=1 # wrk and the backend share it: only 2 cores here

PROXIES=${PROXIES:-nginx haproxy strait}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
WARMUP=${WARMUP:-3s}
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

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# "STATUS BYTES" of a GET, or "000 0" when nothing answers.
http_get() {
    curl -s -o /dev/null --max-time 2 -w '%{http_code} %{size_download}' "$1" || true
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
    for pkg in nginx haproxy wrk curl taskset; do
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

start_nginx() {
    local dir=$WORK/nginx
    mkdir -p "$dir"
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
        listen 127.0.0.1:$PROXY_PORT backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    start_daemon nginx "$PROXY_CORE" nginx -e stderr -p "$dir" -c "$dir/nginx.conf"
    wait_http_ok nginx "http://127.0.0.1:$PROXY_PORT/"
}

start_haproxy() {
    local dir=$WORK/haproxy
    mkdir -p "$dir"
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
    bind 127.0.0.1:$PROXY_PORT
    default_backend backend

backend backend
    server backend 127.0.0.1:$BACKEND_PORT
EOF
    haproxy -c -q -f "$dir/haproxy.cfg" >&2 || die "haproxy rejected its config"
    # -db: stay in the foreground (no daemon mode); we background it ourselves.
    start_daemon haproxy "$PROXY_CORE" haproxy -db -f "$dir/haproxy.cfg"
    wait_http_ok haproxy "http://127.0.0.1:$PROXY_PORT/"
}

start_strait() {
    local dir=$WORK/strait _ got
    mkdir -p "$dir"
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
  listeners: [{name: http, port: $PROXY_PORT, protocol: HTTP}]
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
    wait_http_ok strait "http://127.0.0.1:$PROXY_PORT/"
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
wrk_cmd() { echo "taskset -c $LOAD_CORE wrk -t1 -c$CONNECTIONS -d$1 --latency http://127.0.0.1:$PROXY_PORT/"; }
run_wrk() {
    taskset -c "$LOAD_CORE" wrk -t1 "-c$CONNECTIONS" "-d$1" --latency "http://127.0.0.1:$PROXY_PORT/"
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

run_proxy() {
    local name=$1
    log "$name: starting"
    "start_$name"
    measure "$name"
    stop_daemon "$name"
    wait_port_free
}

# --- report -----------------------------------------------------------------

versions() {
    local v
    v=$(nginx -v 2>&1 | head -n1) && echo "- $v"
    v=$(haproxy -v 2>&1 | head -n1) && echo "- $v"
    # wrk -v prints its version line then usage, and exits 1.
    v=$( (wrk -v 2>&1 || true) | head -n1) && echo "- $v"
    if [[ " $PROXIES " == *" strait "* ]]; then
        v=$("$STRAIT_BIN" --version 2>&1 | head -n1) || v="strait (no --version)"
        echo "- $v ($STRAIT_BIN)"
    fi
}

report() {
    local name best="" ratio env_line
    for name in nginx haproxy; do
        [[ -n ${R_CPU[$name]:-} ]] || continue
        if [[ -z $best ]] || awk -v a="${R_CPU[$name]}" -v b="$best" 'BEGIN { exit !(a < b) }'; then
            best=${R_CPU[$name]}
        fi
    done
    env_line="PROXIES=\"$PROXIES\" DURATION=$DURATION CONNECTIONS=$CONNECTIONS WARMUP=$WARMUP"
    [[ " $PROXIES " == *" strait "* ]] && env_line+=" STRAIT_BIN=$STRAIT_BIN"

    echo "## Gateway benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`$env_line bench/gateway.sh${SCRIPT_ARGS:+ $SCRIPT_ARGS}\`"
    echo
    echo "Load per proxy: \`$(wrk_cmd "$DURATION")\` after a $WARMUP warm-up;" \
        "proxy on core $PROXY_CORE (one worker), backend nginx and wrk on core $LOAD_CORE," \
        "$BODY_BYTES-byte responses, keep-alive on both sides."
    echo
    echo "Machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
        "Linux $(uname -r), ${BUSY_AT_START}% CPU busy (all cores) in the second before the run"
    echo
    echo "Versions:"
    echo
    versions
    echo
    echo "| proxy | rps | p99 (ms) | CPU µs/req | RSS MiB | non-2xx | socket errors | proxy core busy | CPU/req vs best peer |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for name in $PROXIES; do
        if [[ -n $best ]]; then
            ratio=$(awk -v a="${R_CPU[$name]}" -v b="$best" 'BEGIN { printf "%.2f×", (b > 0 ? a / b : 0) }')
        else
            ratio="n/a"
        fi
        printf '| %s | %.0f | %s | %s | %s | %s | %s | %s%% | %s |\n' "$name" "${R_RPS[$name]}" \
            "${R_P99[$name]}" "${R_CPU[$name]}" "${R_RSS[$name]}" "${R_NON2XX[$name]}" \
            "${R_SOCKERR[$name]}" "${R_UTIL[$name]}" "$ratio"
    done
    echo
    echo "CPU µs/req: utime+stime of all the proxy's processes over the measured run ÷ completed requests." \
        "Best peer: the lower CPU µs/req of nginx and HAProxy in this run. RSS: sum of VmRSS after the run."
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

    local name failed=()
    for name in $PROXIES; do run_proxy "$name"; done

    local out
    out=$(report)
    echo "$out"
    if [[ $SAVE -eq 1 ]]; then
        mkdir -p bench/results
        local file
        file=bench/results/gateway-$(date +%Y-%m-%d).md
        [[ -e $file ]] && file=bench/results/gateway-$(date +%Y-%m-%d-%H%M%S).md
        echo "$out" >"$file"
        log "saved to $file"
    fi

    for name in $PROXIES; do
        [[ ${R_NON2XX[$name]} -eq 0 && ${R_SOCKERR[$name]} -eq 0 ]] ||
            failed+=("$name (${R_NON2XX[$name]} non-2xx, ${R_SOCKERR[$name]} socket errors)")
    done
    [[ ${#failed[@]} -eq 0 ]] || die "errors under load: ${failed[*]}"
}

main
