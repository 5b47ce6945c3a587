#!/usr/bin/env bash
# A large gateway configuration: ROUTES HTTPRoutes (a hostname each) to
# SERVICES Services with ENDPOINTS endpoints in all, in one folder. Reports
# the gateway's start to ready, its RSS once ready, then CHANGES changes of
# one route's file: the time from the change noticed to the new tables
# serving (read, parse, compile, swap; the `took_ms` of "configuration
# reloaded"), and the RSS after them. Each RSS is read twice: at once, and
# SETTLE seconds later, when the allocator has returned what the load's
# peak freed (jemalloc purges freed pages after about a second). A request to the last route checks
# that the table serves. Targets: RSS <= 40 MiB, a change <= 200 ms.
#
# Usage: bench/routes.sh            (Markdown on stdout, progress on stderr)
# Environment: ROUTES (10000), SERVICES (1000), ENDPOINTS (10000),
# CHANGES (5), SETTLE (3), STRAIT_BIN (target/release/strait, built if missing).
# The gateway runs with one worker on core 0. Endpoints are 127.0.0.1 on
# ports nothing listens on: no traffic reaches them.
set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
ROUTES=${ROUTES:-10000}
SERVICES=${SERVICES:-1000}
ENDPOINTS=${ENDPOINTS:-10000}
CHANGES=${CHANGES:-5}
SETTLE=${SETTLE:-3}
STRAIT_BIN=${STRAIT_BIN:-target/release/strait}
readonly PORT=18480
cd "$ROOT"
# Every endpoint is 127.0.0.1 on a port of its own, from 20000 up.
((20000 + ENDPOINTS <= 65536)) || die "ENDPOINTS=$ENDPOINTS: at most 45536 (one port each on 127.0.0.1)"
[[ -x $STRAIT_BIN ]] || { log "building strait"; cargo build --release -p strait >&2; }
BIN=$(absolute_path "$STRAIT_BIN")
WORK=$(mktemp -d /tmp/strait-routes-bench.XXXXXX)
install_cleanup
CONFIG=$WORK/config
mkdir -p "$CONFIG"

python3 - "$CONFIG" "$ROUTES" "$SERVICES" "$ENDPOINTS" "$PORT" <<'PY'
import os, sys
config, routes, services, endpoints, port = sys.argv[1], *map(int, sys.argv[2:])
def write(name, docs):
    with open(os.path.join(config, name), "w") as f:
        f.write("---\n".join(docs))
write("gateway.yaml", [
    "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: strait}\n"
    "spec: {controllerName: strait.dev/gateway-controller}\n",
    "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\n"
    f"spec: {{gatewayClassName: strait, listeners: [{{name: http, port: {port}, protocol: HTTP, "
    "allowedRoutes: {namespaces: {from: All}}}]}\n",
])
per = endpoints // services
svc = []
for s in range(services):
    svc.append(f"apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{s}, namespace: shop}}\n"
               "spec: {ports: [{port: 80}]}\n")
    # A slice per endpoint: 127.0.0.1 on ports of its own, nothing listening.
    for e in range(per):
        svc.append("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
                   f"metadata: {{name: svc-{s}-{e}, namespace: shop, labels: {{kubernetes.io/service-name: svc-{s}}}}}\n"
                   f'addressType: IPv4\nendpoints: [{{addresses: ["127.0.0.1"]}}]\nports: [{{port: {20000 + s * per + e}}}]\n')
write("services.yaml", svc)
# Routes in files of 1,000, so that a change rewrites one file.
for start in range(0, routes, 1000):
    docs = []
    for r in range(start, min(start + 1000, routes)):
        docs.append("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
                    f"metadata: {{name: r-{r}, namespace: shop}}\n"
                    f"spec: {{parentRefs: [{{name: gw, namespace: infra}}], hostnames: [site-{r}.example.com], "
                    f"rules: [{{matches: [{{path: {{type: PathPrefix, value: /v{r % 7}}}}}], "
                    f"backendRefs: [{{name: svc-{r % services}, port: 80}}]}}]}}\n")
    write(f"routes-{start // 1000:03}.yaml", docs)
PY
log "folder: $ROUTES routes, $SERVICES Services, $ENDPOINTS endpoints ($(du -sh "$CONFIG" | cut -f1))"

began=$(date +%s%N)
STRAIT_LOG=info start_daemon gateway 0 "$BIN" gateway --config "$CONFIG" --workers 1 \
    --bind-address 127.0.0.1 --ports-file "$WORK/ports"
for _ in $(seq 600); do
    [[ -s $WORK/ports ]] && break
    alive "${DAEMON_PID[gateway]}" || daemon_failed gateway "exited during start-up"
    sleep 0.05
done
[[ -s $WORK/ports ]] || die "not ready after 30 s"
READY_MS=$((($(date +%s%N) - began) / 1000000))
PID=${DAEMON_PID[gateway]}
READY_KB=$(rss_kb "$PID")
sleep "$SETTLE"
SETTLED_KB=$(rss_kb "$PID")

last=$((ROUTES - 1))
status() { curl -s -o /dev/null -w '%{http_code}' -H "Host: site-$1.example.com" "http://127.0.0.1:$PORT/v$(($1 % 7))/x"; }
FIRST_STATUS=$(status "$last")

# Each change moves route 0 to another path; the reload is counted once
# its log line appears.
TOOK=()
for c in $(seq "$CHANGES"); do
    sed -i -E "0,/value: \/(v[0-9]+|changed-[0-9]+)}/s//value: \/changed-$c}/" "$CONFIG/routes-000.yaml"
    for _ in $(seq 200); do
        n=$(grep -c "configuration reloaded" "$WORK/gateway.log" || true)
        [[ $n -ge $c ]] && break
        sleep 0.05
    done
    ms=$(grep "configuration reloaded" "$WORK/gateway.log" | sed -n "${c}p" | sed -E 's/.*took_ms=([0-9]+).*/\1/')
    [[ -n $ms ]] || die "change $c was not applied within 10 s: $(tail -3 "$WORK/gateway.log")"
    TOOK+=("$ms")
done
AFTER_KB=$(rss_kb "$PID")
sleep "$SETTLE"
AFTER_SETTLED_KB=$(rss_kb "$PID")
AFTER_STATUS=$(status "$last")
CHANGED=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: site-0.example.com" "http://127.0.0.1:$PORT/changed-$CHANGES/x")
[[ $FIRST_STATUS != 404 && $AFTER_STATUS != 404 ]] || die "the last route was not matched (404)"
[[ $CHANGED != 404 ]] || die "the changed route was not matched (404)"
SORTED=$(printf '%s\n' "${TOOK[@]}" | sort -n | tr '\n' ' ')

echo "## Gateway with $ROUTES routes, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "Command: \`ROUTES=$ROUTES SERVICES=$SERVICES ENDPOINTS=$ENDPOINTS CHANGES=$CHANGES bench/routes.sh\`" \
    "($(nproc) cores, $(cpu_model)), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo
echo "| routes | endpoints | start → ready (ms) | RSS ready, ${SETTLE} s later (MiB) | a change, each (ms) | RSS after, ${SETTLE} s later (MiB) | last route answers | changed route answers |"
echo "| ---: | ---: | ---: | ---: | --- | ---: | --- | --- |"
echo "| $ROUTES | $ENDPOINTS | $READY_MS | $(mib "$READY_KB"), **$(mib "$SETTLED_KB")** | $SORTED| $(mib "$AFTER_KB"), **$(mib "$AFTER_SETTLED_KB")** | $FIRST_STATUS, then $AFTER_STATUS | $CHANGED |"
echo
echo "Answers are 502 or 503: the route matched, its endpoints (closed ports) did not answer; 404 would be a miss."
