#!/usr/bin/env bash
# A global rate limit held by several gateways sharing one Redis.
#   bench/ratelimit.sh STRAIT_BIN
# GATEWAYS (3) `strait gateway` processes, each with the same
# RateLimitPolicy (one global rule: LIMIT requests a second, burst
# BURST, one count for the route), an nginx backend, and a Python client
# offering RATE requests a second in all (spread evenly over the
# gateways, 16 keep-alive connections each, paced open loop) for RUN_SECONDS (30).
# Prints a Markdown table: let through per second against the limit,
# and the slowest answer. KILL=1: Redis is killed a third of the way in
# and started again at two thirds (the policy fails open: its failure
# mode and its recovery show per second). Needs redis-server, nginx and
# python3 (installed with apt-get when missing and run as root).
set -euo pipefail
[[ $# -eq 1 ]] || { sed -n "2,14p" "$0"; exit 2; }
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
BIN=$(absolute_path "$1")
GATEWAYS=${GATEWAYS:-3} LIMIT=${LIMIT:-100} BURST=${BURST:-10}
RATE=${RATE:-1000} SECONDS_RUN=${RUN_SECONDS:-30}
install_missing redis-server redis-cli:redis-tools nginx
# up_within SECS CMD...: CMD succeeds within SECS seconds.
up_within() {
    local n=$(($1 * 10)); shift
    for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
    die "not up: $*"
}
D=$(mktemp -d)
free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
R=$(free); B=$(free)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$D"' EXIT
redis_start() {
    redis-server --port "$R" --bind 127.0.0.1 --save "" --appendonly no >"$D/redis.log" 2>&1 &
    echo $! >"$D/redis.pid"
    up_within 10 redis-cli -p "$R" ping >/dev/null
}
redis_start
pids+=("$(cat "$D/redis.pid")")
mkdir -p "$D/ng"
cat >"$D/ng/n.conf" <<NG
daemon off; master_process off; worker_processes 1; error_log $D/ng/e.log; pid $D/ng/p;
events {} http { access_log off; server { listen 127.0.0.1:$B; location / { return 200 "ok"; } } }
NG
nginx -c "$D/ng/n.conf" -p "$D/ng" & pids+=($!)
ports=()
for i in $(seq 1 "$GATEWAYS"); do
    P=$(free); A=$(free); ports+=("$P")
    mkdir -p "$D/gw$i"
    {
        gateway_yaml "{name: http, port: $P, protocol: HTTP}"
        route_yaml r b
        backend_yaml b "$B"
        cat <<EOF
---
apiVersion: policy.strait.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: bench-global}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
  global:
    redis: {url: "redis://127.0.0.1:$R", timeout: 50ms}
    rules:
    - name: global
      limit: {requests: $LIMIT, unit: Second, burst: $BURST}
EOF
    } >"$D/gw$i/gw.yaml"
    STRAIT_LOG=error "$BIN" gateway --config "$D/gw$i" --workers 1 --bind-address 127.0.0.1 \
        --admin "127.0.0.1:$A" >"$D/gw$i.log" 2>&1 & pids+=($!)
    up_within 10 port_open "$P"
done
if [[ -n ${KILL:-} ]]; then
    (
        sleep $((SECONDS_RUN / 3)); kill "$(cat "$D/redis.pid")"
        sleep $((SECONDS_RUN / 3)); redis_start
    ) & pids+=($!)
fi
python3 - "$RATE" "$SECONDS_RUN" "$LIMIT" "$BURST" "${ports[@]}" <<'PY'
import http.client, sys, threading, time
rate, secs, limit, burst = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ports = [int(p) for p in sys.argv[5:]]
PER = 16  # connections per gateway: enough that answers slow by Redis's timeout do not hold the pace back
conns = [(p, k) for p in ports for k in range(PER)]
every = len(conns) / rate
per_sec = [[0, 0, 0] for _ in range(secs)]  # let through, refused, other
slowest = [0.0] * secs
lock = threading.Lock()
start = time.monotonic() + 0.5
def run(port, k):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    t = start + k * every / PER
    while t < start + secs:
        now = time.monotonic()
        if t > now:
            time.sleep(t - now)
        sent = time.monotonic()
        try:
            c.request("GET", "/", headers={"Host": "a"})
            r = c.getresponse(); r.read(); status = r.status
        except Exception:
            status = 0
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        took = time.monotonic() - sent
        s = int(sent - start)  # when it was sent, not when it was due
        with lock:
            if 0 <= s < secs:
                per_sec[s][0 if status == 200 else 1 if status == 429 else 2] += 1
                slowest[s] = max(slowest[s], took)
        t += every
threads = [threading.Thread(target=run, args=c) for c in conns]
for t in threads: t.start()
for t in threads: t.join()
total = sum(r[0] for r in per_sec)
print(f"| gateways | offered/s | limit/s | let through/s (mean of {secs} s) | vs limit | refused | other | slowest answer |")
print("|---|---|---|---|---|---|---|---|")
offered = sum(sum(r) for r in per_sec) / secs
print(f"| {len(ports)} | {offered:.0f} | {limit} (burst {burst}) | {total / secs:.1f} | {100 * (total / secs - limit) / limit:+.1f} % | {sum(r[1] for r in per_sec)} | {sum(r[2] for r in per_sec)} | {1000 * max(slowest):.0f} ms |")
print()
print("| second | let through | refused | other | slowest |")
print("|---|---|---|---|---|")
for i, (ok, no, other) in enumerate(per_sec):
    print(f"| {i} | {ok} | {no} | {other} | {1000 * slowest[i]:.0f} ms |")
PY
