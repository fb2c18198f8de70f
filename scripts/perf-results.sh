#!/usr/bin/env bash
# Reproduce perf/README.md's results table: each case 3 x 10 s with
# upulsar-perf --json against the embedded broker, median per figure, plus
# ring-bench and batch-bench. Prints a Markdown table.
# Usage: scripts/perf-results.sh [build-dir]   (default build)
# Environment: RUNS (3), SECS (10), CASES (a subset of the case names below,
# space-separated; default all), MICRO=0 skips ring-bench and batch-bench.
# The raw JSON lines are kept in a new directory /tmp/upulsar-perf-results.*
# (its path is printed on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
RUNS=${RUNS:-3}
SECS=${SECS:-10}
CASES=${CASES:-max tls r200k lz4 keyed p16t4}
MICRO=${MICRO:-1}
OUT=$(mktemp -d /tmp/upulsar-perf-results.XXXXXX)
echo "raw results: $OUT" >&2
run_case() { # name, extra args...
  local name=$1; shift
  case " $CASES " in *" $name "*) ;; *) return 0 ;; esac
  for _ in $(seq "$RUNS"); do "$B/upulsar-perf" -q --json -d "$SECS" "$@"; done > "$OUT/$name.json"
}
run_case max
run_case tls --tls
run_case r200k -r 200000
run_case lz4 --compression lz4
run_case keyed --keyed
run_case p16t4 -p 16 -t 4
CASES="$CASES" python3 - "$OUT" <<'PY'
import json, os, statistics, sys
def load(n):
    return [json.loads(l) for l in open(f"{sys.argv[1]}/{n}.json") if l.startswith("{")]
def med(rows, f):
    return statistics.median(f(r) for r in rows)
print("| case | msgs/s | MB/s | p50 us | p99 us | p99.9 us | client ns/msg | broker ns/msg | allocs/msg | client RSS MiB (bound) |")
print("|---|---|---|---|---|---|---|---|---|---|")
cases = os.environ["CASES"].split()
for n, label in [("max", "max rate, 4 partitions, 2 threads"), ("tls", "max rate, TLS"),
                 ("r200k", "offered 200,000 msgs/s"),
                 ("lz4", "max rate, LZ4"), ("keyed", "max rate, keyed (1000 keys)"),
                 ("p16t4", "max rate, 16 partitions, 4 threads")]:
    if n not in cases:
        continue
    r = load(n)
    print(f"| {label} | {med(r, lambda x: x['msgs_per_sec'])/1e6:.2f}M | {med(r, lambda x: x['mb_per_sec']):.0f} "
          f"| {med(r, lambda x: x['latency_us']['p50']):.0f} | {med(r, lambda x: x['latency_us']['p99']):.0f} "
          f"| {med(r, lambda x: x['latency_us']['p999']):.0f} | {med(r, lambda x: x['client_cpu_ns_per_msg']):.0f} "
          f"| {med(r, lambda x: x['broker_cpu_ns_per_msg']):.0f} | {med(r, lambda x: x['allocs_per_msg']):.4f} "
          f"| {med(r, lambda x: x['client_peak_rss_kb'])/1024:.1f} ({med(r, lambda x: x['client_memory_bound_bytes'])/1048576:.1f} + baseline) |")
PY
[ "$MICRO" = 0 ] && exit 0
echo
"$B/ring-bench" 4
echo
"$B/batch-bench"
