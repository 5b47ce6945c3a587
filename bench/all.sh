#!/usr/bin/env bash
# The performance targets in one Markdown table, from one command: runs
# the benchmarks below one after another (never two at once: each wants
# the machine), then prints a summary row per target with strait's figure,
# the best peer's where there is one, the ratio and the target, followed
# by every script's own report.
#
#   gateway   bench/gateway.sh           HTTP/1.1 hop: CPU per request, rps
#   https     bench/gateway.sh --https   the same over TLS 1.3 (keep-alive)
#   h2        bench/h2.sh                HTTP/2 and gRPC hops: CPU per request
#   callgrind bench/callgrind.sh         instructions and heap allocations per request
#   lookup    cargo bench (criterion)    route lookup among 10,000 routes
#   routes    bench/routes.sh            10,000 routes and endpoints: RSS, a change
#   control   bench/control.sh           control plane: 5,000 proxies, 5,000 Services, 50,000 endpoints
#   mesh      bench/mesh.sh              the mesh pair's added p99 (builds oha once)
#
# Usage (as root, from anywhere): bench/all.sh [--save]
# SKIP="mesh control" leaves parts out; each script's own settings (DURATION,
# PROXIES, ...) pass through the environment. About 15 minutes with all.
set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
SKIP=${SKIP:-}
SAVE=""
[[ ${1:-} == --save ]] && SAVE=1
PARTS="gateway https h2 callgrind lookup routes control mesh"
OUT=$(mktemp -d /tmp/strait-all.XXXXXX)
wanted() { [[ " $SKIP " != *" $1 "* ]]; }

# Calls to the allocator (jemalloc's entry points, and glibc's malloc for
# C code) in a callgrind profile, from every caller.
mallocs() {
    python3 - "$1" <<'PY'
import re, sys
names, calls, current = {}, 0, None
for line in open(sys.argv[1]):
    m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(2):
            names[m.group(1)] = m.group(2).strip()
        current = names.get(m.group(1), "")
        continue
    m = re.match(r"calls=(\d+)", line)
    if m and current is not None:
        if current.split(" ")[0] in ("malloc", "calloc", "_rjem_malloc", "_rjem_mallocx", "_rjem_calloc"):
            calls += int(m.group(1))
        current = None
print(calls)
PY
}

[[ -x target/release/strait ]] || cargo build --release -p strait >&2
for part in $PARTS; do
    wanted "$part" || continue
    log "running $part"
    case $part in
    gateway) bench/gateway.sh >"$OUT/gateway.md" ;;
    https) bench/gateway.sh --https >"$OUT/https.md" ;;
    h2) bench/h2.sh >"$OUT/h2.md" ;;
    callgrind)
        install_missing valgrind nginx >&2
        a=$(KEEP=$OUT/cg2000.out bench/callgrind.sh target/release/strait 2000 | tail -1)
        b=$(KEEP=$OUT/cg12000.out bench/callgrind.sh target/release/strait 12000 | tail -1)
        echo "$a $b $(mallocs "$OUT/cg2000.out") $(mallocs "$OUT/cg12000.out")" >"$OUT/callgrind.txt"
        ;;
    lookup) cargo bench -q -p strait-route --bench lookup -- --warm-up-time 1 --measurement-time 3 \
        routes >"$OUT/lookup.txt" 2>&1 ;;
    routes) bench/routes.sh >"$OUT/routes.md" ;;
    control) PROXIES=5000 SERVICES=5000 ENDPOINTS=50000 bench/control.sh >"$OUT/control.md" ;;
    mesh) bench/mesh.sh >"$OUT/mesh.md" ;;
    esac
done

# The strait row of a gateway.sh table, and the best peer's value of column $2.
row() { grep -m1 "^| $2 |" "$1" | tr -d ' ' | cut -d'|' -f"$3"; }
best_in_column() {
    local n h
    n=$(row "$1" nginx "$2")
    h=$(row "$1" haproxy "$2")
    awk -v n="$n" -v h="$h" -v hi="$3" 'BEGIN { if (hi) print (n > h ? n : h); else print (n < h ? n : h) }'
}

# The lowest of the numbers given; empty ones are left out.
lowest() { printf '%s\n' "$@" | grep . | sort -g | head -1; }

{
    echo "## Performance targets, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)"
    echo
    echo "Command: \`${SKIP:+SKIP=\"$SKIP\" }bench/all.sh\` ($(nproc) cores, $(cpu_model))"
    echo
    echo "| target | strait | best peer | ratio | must reach |"
    echo "|---|---:|---:|---:|---|"
    if [[ -s $OUT/gateway.md ]]; then
        s=$(row "$OUT/gateway.md" strait 5)
        p=$(best_in_column "$OUT/gateway.md" 5 "")
        echo "| HTTP/1.1 hop, CPU µs per request | $s | $p | $(ratio "$s" "$p") | ≤ 1.0× |"
        s=$(row "$OUT/gateway.md" strait 3)
        p=$(best_in_column "$OUT/gateway.md" 3 1)
        echo "| HTTP/1.1 hop, saturated requests/s | $s | $p | $(ratio "$s" "$p") | ≥ 1.0× |"
        # The open-loop table: | proxy | p50 | p99 | ...
        p99() { sed -n '/^### Open loop/,$p' "$OUT/gateway.md" | awk -F'|' -v p="$1" '{ gsub(/ /, "") } $2 == p { print $4 }'; }
        s=$(p99 strait)
        p=$(lowest "$(p99 nginx)" "$(p99 haproxy)")
        [[ -n $s ]] && echo "| HTTP/1.1 hop, p99 ms at ${OPEN_RATE:-5000} req/s open loop (oha) | $s | $p | $(ratio "$s" "$p") | ≤ 1.0× |"
    fi
    if [[ -s $OUT/https.md ]]; then
        s=$(row "$OUT/https.md" strait 5)
        p=$(best_in_column "$OUT/https.md" 5 "")
        echo "| HTTPS keep-alive hop, CPU µs per request | $s | $p | $(ratio "$s" "$p") | ≤ 1.0× |"
    fi
    if [[ -s $OUT/h2.md ]]; then
        for load in http2 grpc; do
            # | proxy | load | rps | mean | CPU µs | ...
            cpu() { awk -F'|' -v p="$1" -v l="$load" '{ gsub(/ /, "") } $2 == p && $3 == l { print $6 }' "$OUT/h2.md"; }
            s=$(cpu strait)
            p=$(lowest "$(cpu nginx)" "$(cpu haproxy)")
            [[ -n $s ]] && echo "| $load hop (h2load), CPU µs per request | $s | $p | $(ratio "$s" "$p") | ≤ 1.0× |"
        done
    fi
    if [[ -s $OUT/callgrind.txt ]]; then
        read -r a b ma mb <"$OUT/callgrind.txt"
        echo "| instructions per proxied request (callgrind) | $(((b - a) / 10000)) | — | — | recorded |"
        echo "| heap allocations per proxied request | $(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.1f", (b - a) / 10000 }') | — | — | recorded; 0 the goal |"
    fi
    if [[ -s $OUT/lookup.txt ]]; then
        worst=$(grep -A1 "one hostname" "$OUT/lookup.txt" | grep -o 'time: *\[[^]]*\]' |
            awk '{print $4, $5}' | sort -k2,2 -k1,1n | tail -1)
        echo "| route lookup among 10,000 routes, worst case (criterion) | $worst | — | — | ≤ 1 µs |"
    fi
    if [[ -s $OUT/routes.md ]]; then
        r=$(grep -m1 '^| [0-9]' "$OUT/routes.md")
        # "at once, **settled**": the settled figure is the one to hold.
        rss=$(cut -d'|' -f5 <<<"$r" | grep -o '\*\*[0-9.]*' | tr -d '*')
        change=$(cut -d'|' -f6 <<<"$r" | xargs)
        echo "| 10,000 routes and endpoints: RSS once ready and settled (MiB) | $rss | — | — | ≤ 40 |"
        echo "| 10,000 routes and endpoints: a change (ms, each) | $change | — | — | ≤ 200 |"
    fi
    if [[ -s $OUT/control.md ]]; then
        # | proxies | bytes | connected | p50 | p99 | max | RSS idle → peak | CPU |
        r=$(grep -m1 '^| [0-9]' "$OUT/control.md")
        echo "| control plane, 5,000 proxies: a change reaches all, p99 (ms) | $(cut -d'|' -f6 <<<"$r" | xargs) | — | — | ≤ 1,000 |"
        echo "| control plane, 5,000 proxies: RSS idle → peak (MB) | $(cut -d'|' -f8 <<<"$r" | xargs) | — | — | ≤ 400 |"
    fi
    if [[ -s $OUT/mesh.md ]]; then
        # | **added by the two sidecars** | **+p50** | **+p99** | ...
        added() { grep -m1 "^| \*\*added by the two $1sidecars" "$OUT/mesh.md" | cut -d'|' -f4 | tr -d ' *'; }
        echo "| mesh pair, added p99 at 1,000 req/s (ms) | $(added "") | — | — | ≤ +0.5 |"
        echo "| mesh pair over mutual TLS, added p99 (ms) | $(added "mTLS ") | — | — | ≤ +0.5 |"
        # | shop/checkout | role | RSS idle | RSS peak | ticks | CPU s per 1,000 req | ...
        cpu=$(grep -E '^\| shop/(checkout|payment)(-m)? \|' "$OUT/mesh.md" | cut -d'|' -f7 | xargs)
        echo "| mesh sidecars, CPU ms per request (caller callee, then the mTLS pair) | $cpu | — | — | ≤ 0.05 |"
    fi
    echo
    for part in gateway https h2 routes control mesh; do
        [[ -s $OUT/$part.md ]] && { cat "$OUT/$part.md"; echo; }
    done
    [[ -s $OUT/lookup.txt ]] && { echo '```'; grep -E "routes|time:" "$OUT/lookup.txt"; echo '```'; }
} | tee "$OUT/all.md"
if [[ -n $SAVE ]]; then
    mkdir -p bench/results
    cp "$OUT/all.md" "bench/results/all-$(date -u +%Y-%m-%d).md"
fi
rm -rf "$OUT"
