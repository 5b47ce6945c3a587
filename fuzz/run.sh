#!/usr/bin/env bash
# Builds every fuzz target and runs each in turn with the libFuzzer flags
# given, then prints one line per target: executions, seconds, crashes.
#   fuzz/run.sh -max_total_time=20     the smoke run .ci/run does
#   fuzz/run.sh -runs=10000000         the campaign docs/benchmarks.md records
# Needs the nightly toolchain; installs cargo-fuzz if it is missing. Inputs
# found are kept in fuzz/corpus/, crashes in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
[ $# -gt 0 ] || set -- -max_total_time=20
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
python3 seeds.py
# Safe Rust: AddressSanitizer finds little here and costs 3-5× the speed.
cargo +nightly fuzz build -O -s none
mkdir -p logs
failed=0
for t in $(cargo +nightly fuzz list); do
  mkdir -p "corpus/$t" "seeds/$t"
  if cargo +nightly fuzz run -O -s none "$t" "corpus/$t" "seeds/$t" -- \
      "$@" -print_final_stats=1 >"logs/$t.log" 2>&1; then
    result=ok
  else
    result="FAILED (fuzz/logs/$t.log, fuzz/artifacts/$t/)"
    failed=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo "?")
  secs=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo "?")
  printf '%-14s %12s executions %8s/s  %s\n' "$t" "$runs" "$secs" "$result"
  [ "$result" = ok ] || grep -m1 -A3 panicked "logs/$t.log" || true
done
exit $failed
