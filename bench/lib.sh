# Helpers shared by the benchmark scripts. Each sources it after its
# `set -euo pipefail` and before it changes directory:
#   source "$(dirname "$0")/lib.sh"
# Settings a script defines and the helpers read when called: WORK (its
# mktemp folder), and for start_backend and wait_http_ok BODY_BYTES,
# BACKEND_PORT and LOAD_CORE.

# shellcheck shell=bash

# The script's own path, taken before it cd's to the repo root, so that
# usage can still read its header when it was started by a relative path.
SCRIPT=$(cd "$(dirname "$0")" && pwd)/${0##*/}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLK_TCK=$(getconf CLK_TCK)

SAVE=0
WORK=""
POLICY_RC_CREATED=0
declare -A DAEMON_PID=() # name -> PID of the process we started
DAEMON_ORDER=()          # start order, so that cleanup can stop them in reverse

# --- messages ---------------------------------------------------------------

# Progress goes to stderr so stdout carries only the Markdown report.
log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# The script's header comment, from line 2 to its `set -euo` line.
usage() {
    sed -n '2,/^set -euo/p' "$SCRIPT" | sed '$d; s/^# \{0,1\}//'
}

# The arguments every script takes; anything else is an error.
common_option() {
    case $1 in
    --save) SAVE=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument '$1' (try --help)" ;;
    esac
}

# --- the machine ------------------------------------------------------------

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

# BUSY_AT_START, for the report, with a warning when the figures will suffer.
note_busy_at_start() {
    BUSY_AT_START=$(cpu_busy_percent)
    if [[ $BUSY_AT_START -gt 10 ]]; then
        log "warning: the machine was ${BUSY_AT_START}% busy just before the run; other work will skew the figures"
    fi
}

cpu_model() { awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo; }

# The report's line on the machine; BUSY_AT_START from note_busy_at_start.
machine_line() {
    echo "Machine: $(nproc) cores, $(cpu_model)," \
        "Linux $(uname -r), ${BUSY_AT_START}% CPU busy (all cores) in the second before the run"
}

# --- packages and binaries --------------------------------------------------

# policy-rc.d stops Debian's postinst scripts from starting the packaged
# system services: we run our own instances and want nothing else on the box.
block_service_starts() {
    [[ -e /usr/sbin/policy-rc.d ]] && return 0
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
}
allow_service_starts() {
    [[ $POLICY_RC_CREATED -eq 1 ]] || return 0
    rm -f /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=0
}

# apt-get install what is missing of the commands named, each COMMAND or
# COMMAND:PACKAGE when the package is named otherwise.
install_missing() {
    local spec missing=()
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null || missing+=("${spec#*:}")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; run as root so apt-get can install them"
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    log "installing ${missing[*]}"
    block_service_starts
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
    allow_service_starts
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null || die "${spec%%:*} still missing after apt-get install"
    done
}

# oha is no Debian package (bookworm): build it with cargo, once.
install_oha() {
    export PATH=$PATH:$HOME/.cargo/bin # where cargo install puts it
    command -v oha >/dev/null && return 0
    command -v cargo >/dev/null || die "oha is missing and so is cargo to install it (cargo install oha --locked)"
    log "installing oha (cargo install oha --locked; several CPU-minutes, once)"
    cargo install oha --locked >&2 || die "cargo install oha --locked failed"
    command -v oha >/dev/null || die "oha still not on PATH after cargo install"
}

build_strait() {
    log "building strait (cargo build --release -p strait)"
    cargo build --release -p strait >&2 || die "cargo build --release -p strait failed"
}

# The default STRAIT_BIN is (re)built whenever cargo is here, so a stale
# binary is never measured; cargo makes it a no-op when current.
rebuild_default_strait() {
    if [[ $STRAIT_BIN == target/release/strait ]] && command -v cargo >/dev/null; then build_strait; fi
}

absolute_path() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }

# --- processes --------------------------------------------------------------

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

check_ports_free() {
    local port
    for port in "$@"; do
        ! port_open "$port" || die "port 127.0.0.1:$port is already in use; stop whatever listens there"
    done
}

# "STATUS BYTES" of a GET (extra curl arguments before or after the URL), or
# "000 0" when nothing answers. -k: gateway.sh's HTTPS certificate is
# self-signed.
http_get() {
    curl -sk -o /dev/null --max-time 2 -w '%{http_code} %{size_download}' "$@" || true
}

# Children of a PID, found by scanning /proc: field 4 of stat is the ppid.
# comm (field 2) may hold spaces, so cut after its closing parenthesis first.
children_of() {
    local f line fields
    for f in /proc/[0-9]*/stat; do
        read -r line <"$f" 2>/dev/null || continue
        read -r -a fields <<<"${line##*) }"
        if [[ ${fields[1]:-} == "$1" ]]; then
            f=${f#/proc/}
            echo "${f%/stat}"
        fi
    done
    return 0
}

# A process and its children: nginx forks its worker from the master; the
# others are one process each (threads are counted in the process's own
# stat line).
process_tree() {
    echo "$1"
    children_of "$1"
}

# True while any of the PIDs is running. A zombie counts as gone: kill -0
# succeeds on it, but it is only waiting for us to reap it.
alive() {
    local pid state
    for pid in "$@"; do
        state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null) || continue
        [[ $state != Z ]] && return 0
    done
    return 1
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

# nginx does its work in a worker, a child of the master we started.
tree_ticks() {
    local pids
    mapfile -t pids < <(process_tree "$1")
    cpu_ticks "${pids[@]}"
}

# Field $2 (VmRSS, VmHWM) of /proc/$1/status in kB into the variable named
# $3, with bash builtins only.
read_status_kb() {
    local key value
    printf -v "$3" 0
    while IFS=: read -r key value; do
        if [[ $key == "$2" ]]; then
            value=${value//[[:space:]]/}
            printf -v "$3" %s "${value%kB}"
            return 0
        fi
    done <"/proc/$1/status"
}

# Sum of VmRSS (kB) over the given PIDs; a process that is gone counts 0.
rss_kb() {
    local pid total=0 kb
    for pid in "$@"; do
        read_status_kb "$pid" VmRSS kb 2>/dev/null || kb=0
        total=$((total + kb))
    done
    echo "$total"
}

# Peak RSS is the kernel's own high-water mark (VmHWM), not a sampler: a
# sampler misses short peaks, and one that forks (`sleep`) ten times a
# second on the load core put 1-1.5 ms on the p99 of every phase it ran in.
# reset_peak_rss PID...: start the high-water mark again from the current
# RSS (as root: /proc/PID/clear_refs).
reset_peak_rss() {
    local pid
    for pid in "$@"; do
        echo 5 >"/proc/$pid/clear_refs" || die "cannot reset the peak RSS of $pid (run as root)"
    done
}

# The highest VmRSS (kB) of each PID since it started or since
# reset_peak_rss, on one line.
peak_rss_kb() {
    local pid kb out=()
    for pid in "$@"; do
        read_status_kb "$pid" VmHWM kb 2>/dev/null || kb=0
        out+=("$kb")
    done
    echo "${out[*]}"
}

# --- daemons ----------------------------------------------------------------

# Start "$@" in the background, pinned to core $2, logging to $WORK/$1.log.
start_daemon() {
    local name=$1 core=$2
    shift 2
    taskset -c "$core" "$@" >"$WORK/$name.log" 2>&1 &
    DAEMON_PID[$name]=$! # taskset execs, so this is the daemon itself
    DAEMON_ORDER+=("$name")
}

# SIGTERM a daemon (and its children), wait up to 5 s, then SIGKILL what is left.
stop_daemon() {
    local name=$1 pid pids _
    pid=${DAEMON_PID[$name]:-}
    [[ -n $pid ]] || return 0
    mapfile -t pids < <(process_tree "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        alive "${pids[@]}" || break
        sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "DAEMON_PID[$name]"
}

# Last started, first stopped: a sidecar goes before its upstream, so it is
# not left with a dead one.
cleanup() {
    local i
    for ((i = ${#DAEMON_ORDER[@]} - 1; i >= 0; i--)); do stop_daemon "${DAEMON_ORDER[i]}"; done
    allow_service_starts
    if [[ -n $WORK && -d $WORK ]]; then rm -rf "$WORK"; fi
    return 0
}

# Whatever ends the run, nothing it started is left behind. INT and TERM
# exit through the EXIT trap.
install_cleanup() {
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

# Fail with the tail of a daemon's log.
daemon_failed() {
    local name=$1 msg=$2
    log "last lines of $name's log:"
    tail -n 20 "$WORK/$name.log" >&2 || true
    die "$name: $msg"
}

# Run "$@" every 0.1 s until it succeeds (true) or 10 s have passed (false);
# fail at once, with its log, if daemon $1 exits meanwhile.
wait_until() {
    local name=$1 _
    shift
    for _ in $(seq 100); do
        alive "${DAEMON_PID[$name]}" || daemon_failed "$name" "exited during start-up"
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

# True if `curl ARGS` answers a "STATUS BYTES" matching the pattern $1; the
# answer stays in HTTP_GOT for the error message.
HTTP_GOT=""
http_answers() {
    local want=$1
    shift
    HTTP_GOT=$(http_get "$@")
    # shellcheck disable=SC2053 # $want is a pattern
    [[ $HTTP_GOT == $want ]]
}

# Wait until `curl ARGS` answers 200 with the backend's BODY_BYTES body.
wait_http_ok() {
    local name=$1
    shift
    wait_until "$name" http_answers "200 $BODY_BYTES" "$@" ||
        daemon_failed "$name" "curl $* did not answer 200 with $BODY_BYTES bytes within 10 s (last: '$HTTP_GOT')"
}

# Wait until strait's admin port $2 says ready: config loaded, listeners bound.
wait_ready() {
    local name=$1 url=http://127.0.0.1:$2/ready
    wait_until "$name" http_answers '200 *' "$url" ||
        daemon_failed "$name" "$url did not answer 200 within 10 s (last: '$HTTP_GOT')"
}

# --- strait gateway ---------------------------------------------------------

# The head of a bench folder: GatewayClass `strait` and Gateway `bench`
# with the listeners given, one flow-style YAML map each.
gateway_yaml() {
    local l
    cat <<EOF
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
  listeners:
EOF
    for l in "$@"; do echo "  - $l"; done
}

# route_yaml NAME SERVICE [LISTENER]: an HTTPRoute on Gateway `bench` (or
# only its listener LISTENER) sending everything to SERVICE's port 80.
route_yaml() {
    local section=${3:+, sectionName: $3}
    cat <<EOF
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: $1}
spec:
  parentRefs: [{name: bench$section}]
  rules: [{backendRefs: [{name: $2, port: 80}]}]
EOF
}

# backend_yaml NAME PORT [APP_PROTOCOL]: a Service whose one endpoint is
# 127.0.0.1:PORT.
backend_yaml() {
    local app=${3:+, appProtocol: $3}
    cat <<EOF
---
apiVersion: v1
kind: Service
metadata: {name: $1}
spec: {ports: [{port: 80$app}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: $1, labels: {kubernetes.io/service-name: $1}}
addressType: IPv4
endpoints: [{addresses: ["127.0.0.1"]}]
ports: [{port: $2$app}]
EOF
}

# `strait gateway` on folder $1, one worker on PROXY_CORE, admin on
# ADMIN_PORT, logging at warn (per-request work stays out of the
# figures); returns once it is ready.
# STRAIT_FLAGS: more gateway flags (word-split), to measure a setting.
start_bench_gateway() {
    # shellcheck disable=SC2086
    STRAIT_LOG=${STRAIT_LOG:-warn} start_daemon strait "$PROXY_CORE" "$STRAIT_BIN" gateway \
        --config "$1" --workers 1 --bind-address 127.0.0.1 --admin "127.0.0.1:$ADMIN_PORT" \
        ${STRAIT_FLAGS:-}
    wait_ready strait "$ADMIN_PORT"
}

# Wait until every port given is released (the next proxy binds them).
wait_ports_free() {
    local _ port
    for port in "$@"; do
        for _ in $(seq 50); do
            port_open "$port" || continue 2
            sleep 0.1
        done
        die "port $port still busy after stopping the previous proxy"
    done
}

# --- nginx ------------------------------------------------------------------

# $1/nginx.conf: one worker in the foreground with its files in $1, and in
# its http block what comes on stdin.
write_nginx_conf() {
    {
        cat <<EOF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
EOF
        cat
        echo "}"
    } >"$1/nginx.conf"
}

# start_nginx_daemon NAME CORE DIR. -e stderr: errors from before the config
# is read go to the daemon's log too, not to /var/log/nginx.
start_nginx_daemon() {
    start_daemon "$1" "$2" nginx -e stderr -p "$3" -c "$3/nginx.conf"
}

body_bytes() { head -c "$BODY_BYTES" /dev/zero | tr '\0' 'x'; }

# The backend: nginx answering every path with the same BODY_BYTES body, on
# the load core. keepalive_requests is raised so neither the load nor the
# proxies are made to reconnect every 1000 requests (the default).
start_backend() {
    local dir=$WORK/backend
    mkdir -p "$dir"
    write_nginx_conf "$dir" <<EOF
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp;
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        default_type text/plain;
        location / { return 200 "$(body_bytes)"; }
    }
EOF
    start_nginx_daemon backend "$LOAD_CORE" "$dir"
    wait_http_ok backend "http://127.0.0.1:$BACKEND_PORT/any/path"
}

# --- figures ----------------------------------------------------------------

mib() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }

# CPU µs per item: $1 ticks over $2 items, with $3 decimals.
cpu_us_each() {
    awk -v d="$1" -v t="$CLK_TCK" -v n="$2" -v p="$3" 'BEGIN { printf "%." p "f", d * (1e6 / t) / n }'
}

# Items per second one core would do on $1 ticks for $2 items if it did
# nothing else.
per_core_rate() {
    awk -v d="$1" -v t="$CLK_TCK" -v n="$2" 'BEGIN { printf "%.0f", (d > 0 ? n / (d / t) : 0) }'
}

# $1 / $2 with two decimals, 0.00 when $2 is 0.
quotient() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

# "met" when $1 <= $2.
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b ? "met" : "missed") }'; }

# --- the report -------------------------------------------------------------

# wrk and h2load print times as 812.34us / 1.23ms / 2.00s; convert to ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/)      printf "%.3f", v / 1000
        else if (v ~ /ms$/) printf "%.3f", v + 0
        else if (v ~ /m$/)  printf "%.3f", v * 60000
        else if (v ~ /s$/)  printf "%.3f", v * 1000
        else                printf "?"
    }'
}

# Lower of nginx's and HAProxy's value in the named result array, or "";
# with $2, the keys are nginx$2 and haproxy$2.
best_peer() {
    local -n values=$1
    local name best="" v
    for name in nginx haproxy; do
        v=${values[$name${2:-}]:-}
        [[ -n $v ]] || continue
        if [[ -z $best ]] || awk -v a="$v" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$v; fi
    done
    echo "$best"
}

# "1.23×" = $1 / $2, or "n/a" without a peer.
ratio() {
    if [[ -n $2 ]]; then
        echo "$(quotient "$1" "$2")×"
    else
        echo "n/a"
    fi
}

# save_report STEM TEXT: bench/results/STEM-DATE.md; a second run on the same
# day gets the time in its name too, so no report is overwritten.
save_report() {
    local stem=$1 file
    mkdir -p bench/results
    file=bench/results/$stem-$(date +%Y-%m-%d).md
    [[ -e $file ]] && file=bench/results/$stem-$(date +%Y-%m-%d-%H%M%S).md
    echo "$2" >"$file"
    log "saved to $file"
}

# base64url without padding, of stdin.
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

# A SecurityPolicy on route r with an Ed25519 key made here; writes the
# YAML to stdout and a token it accepts (valid for a day) to DIR/token.
jwt_yaml() {
    local dir=$1 x h p s
    openssl genpkey -algorithm ed25519 -out "$dir/jwt.pem" 2>/dev/null
    x=$(openssl pkey -in "$dir/jwt.pem" -pubout -outform DER | tail -c 32 | b64url)
    h=$(printf '{"alg":"EdDSA","kid":"bench"}' | b64url)
    p=$(printf '{"iss":"bench","sub":"user","exp":%d}' $(($(date +%s) + 86400)) | b64url)
    printf '%s.%s' "$h" "$p" > "$dir/jwt.msg"
    s=$(openssl pkeyutl -sign -inkey "$dir/jwt.pem" -rawin -in "$dir/jwt.msg" | b64url)
    printf '%s.%s.%s' "$h" "$p" "$s" > "$dir/token"
    cat <<EOF
---
apiVersion: policy.strait.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: bench-jwt}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
  jwt:
    providers:
    - name: bench
      issuer: bench
      localJWKS: {type: Inline, inline: '{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "bench", "x": "$x"}]}'}
      claimToHeaders: [{claim: sub, header: x-user}]
EOF
}

# ratelimit_yaml [quiet]: a RateLimitPolicy on route r whose local rule
# counts every request (one count for the route) and never runs out: the
# cost of counting, not of refusing. `quiet`: without the RateLimit
# headers on the answers it lets through.
ratelimit_yaml() {
    local quiet=""
    [[ ${1:-} != quiet ]] || quiet="  disableRateLimitHeaders: true"
    cat <<EOF
---
apiVersion: policy.strait.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: bench-limit}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
$quiet
  local:
    rules:
    - name: route
      limit: {requests: 1000000000, unit: Second}
EOF
}

# apischema_yaml: an ApiSchemaPolicy on route r whose document describes
# what bench/callgrind.sh sends with SCHEMA set: `GET /items/{id}` with an
# integer `limit` in the query, and `POST /reviews` with a JSON body of
# three checked fields.
apischema_yaml() {
    cat <<'EOF'
---
apiVersion: policy.strait.dev/v1alpha1
kind: ApiSchemaPolicy
metadata: {name: bench-schema}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
  unknownOperations: Reject
  openAPI:
    inline: |
      openapi: 3.1.0
      paths:
        /items/{id}:
          get:
            parameters:
            - {name: id, in: path, required: true, schema: {type: integer}}
            - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 100}}
        /reviews:
          post:
            requestBody:
              required: true
              content:
                application/json:
                  schema:
                    type: object
                    required: [product, stars]
                    properties:
                      product: {type: integer}
                      stars: {type: integer, minimum: 1, maximum: 5}
                      text: {type: string, maxLength: 500}
EOF
}
