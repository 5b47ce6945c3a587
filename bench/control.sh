#!/usr/bin/env bash
# Control-plane scale benchmark (issue 6): one `strait control` serving a
# folder of SERVICES Services and ENDPOINTS endpoints to PROXIES simulated
# proxies (each its own TLS connection and gRPC stream, all in one client
# process: crates/control/examples/control_scale.rs), then CHANGES changes
# of one EndpointSlice. Reports the time for a change to reach every proxy
# (p50/p99/max over all proxies and changes, from the file's rename to the
# snapshot's arrival, the 100 ms folder debounce included), and the control
# plane's peak RSS and CPU. Targets: p99 <= 1 s; RSS <= 150 MB up to 1,000
# proxies, <= 400 MB beyond (TARGET_RSS_MB sets another).
#
# Usage: bench/control.sh            (Markdown on stdout, progress on stderr)
# Environment: PROXIES (1000), SERVICES (1000), ENDPOINTS (10000), CHANGES (5).
# Control plane on core 0, the client on core 1. Port 18300.
set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
PROXIES=${PROXIES:-1000}
SERVICES=${SERVICES:-1000}
ENDPOINTS=${ENDPOINTS:-10000}
CHANGES=${CHANGES:-5}
TARGET_RSS_MB=${TARGET_RSS_MB:-$((PROXIES > 1000 ? 400 : 150))}
readonly PORT=18300
cd "$ROOT"
command -v taskset >/dev/null || die "taskset (util-linux) is needed"
log "building (cargo build --release -p strait, example control_scale)"
cargo build --release -p strait >&2
cargo build --release -p strait-control --example control_scale >&2
BIN=$ROOT/target/release/strait
SCALE=$ROOT/target/release/examples/control_scale

WORK=$(mktemp -d /tmp/strait-control-bench.XXXXXX)
install_cleanup

"$SCALE" generate "$WORK/config" "$SERVICES" "$ENDPOINTS"
log "folder: $SERVICES Services, $ENDPOINTS endpoints ($(du -sh "$WORK/config" | cut -f1))"
ulimit -n 65536 2>/dev/null || true
STRAIT_LOG=warn start_daemon control 0 "$BIN" control --config "$WORK/config" --listen "127.0.0.1:$PORT" \
    --ca-dir "$WORK/ca"
# Still silent after 10 s: go on, control_scale's connect tells whether it is up.
wait_until control grep -qs "listening on" "$WORK/control.log" || true
CONTROL_PID=${DAEMON_PID[control]}
IDLE_KB=$(rss_kb "$CONTROL_PID")
T0=$(cpu_ticks "$CONTROL_PID")
log "client: $PROXIES proxies, $CHANGES changes"
RESULT=$(taskset -c 1 "$SCALE" "127.0.0.1:$PORT" "$WORK/ca/trust-bundle.pem" "$WORK/config" \
    "$PROXIES" "$CHANGES") || die "control_scale failed"
T1=$(cpu_ticks "$CONTROL_PID")
PEAK_KB=$(peak_rss_kb "$CONTROL_PID")
field() { sed -E "s/.*\"$1\":([0-9.]+).*/\1/" <<<"$RESULT"; }
P99=$(field p99_ms)
PEAK_MB=$(mib "$PEAK_KB")
echo "## Control-plane scale, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "Command: \`PROXIES=$PROXIES SERVICES=$SERVICES ENDPOINTS=$ENDPOINTS CHANGES=$CHANGES bench/control.sh\`" \
    "($(nproc) cores, $(cpu_model))"
echo
echo "| proxies | snapshot bytes | all connected and served (s) | change → every proxy p50 (ms) | p99 (ms) | max (ms) | control RSS idle → peak (MB) | control CPU (s) |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '| %s | %s | %s | %s | %s | %s | %.1f → %s | %.2f |\n' "$PROXIES" "$(field snapshot_bytes)" \
    "$(field connect_all_s)" "$(field p50_ms)" "$P99" "$(field max_ms)" \
    "$(awk -v k="$IDLE_KB" 'BEGIN { print k / 1024 }')" "$PEAK_MB" \
    "$(awk -v d=$((T1 - T0)) -v t="$CLK_TCK" 'BEGIN { print d / t }')"
echo
printf 'Targets: p99 ≤ 1000 ms — %s; RSS ≤ %s MB — %s.\n' \
    "$(verdict "$P99" 1000)" "$TARGET_RSS_MB" "$(verdict "$PEAK_MB" "$TARGET_RSS_MB")"
