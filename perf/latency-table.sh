#!/usr/bin/env bash
# The latency-vs-load table of perf/README.md: upulsar-perf against the
# embedded broker (4 partitions, 2 sender threads, 100-byte messages) at
# each offered load, with the default configuration (adaptive batching)
# and with a fixed 1 ms linger, RUNS runs of SECS seconds each, the two
# configurations interleaved; then max rate of this build against BASE
# (another build directory, e.g. of the previous main), interleaved.
# Prints Markdown: median (min-max) p50 / p99 / p99.9 in us and client CPU
# per message, and the max-rate ratio this/BASE (median of the per-pair
# ratios). Figures are only as good as the machine is quiet: the load
# average at the start and the end is printed with them.
# Usage: perf/latency-table.sh [build-dir] [base-build-dir]
# Environment: RUNS (3), SECS (5), RATES ("10000 100000 200000 1000000
# 5000000 0"; 0 = max rate), PAIRS (5, max-rate pairs against BASE).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
BASE=${2:-}
RUNS=${RUNS:-3}
SECS=${SECS:-5}
RATES=${RATES:-10000 100000 200000 1000000 5000000 0}
PAIRS=${PAIRS:-5}
OUT=$(mktemp -d /tmp/upulsar-latency.XXXXXX)
echo "raw results: $OUT" >&2
load() { cut -d' ' -f1 /proc/loadavg; }
echo "load average at start: $(load)"
for _ in $(seq "$RUNS"); do
  for r in $RATES; do
    "$B/upulsar-perf" -q --json -d "$SECS" -r "$r" >> "$OUT/adaptive-$r.json"
    "$B/upulsar-perf" -q --json -d "$SECS" -r "$r" --batch-mode linger --batch-delay-ms 1 \
      >> "$OUT/linger-$r.json"
  done
done
if [ -n "$BASE" ]; then
  for _ in $(seq "$PAIRS"); do
    "$B/upulsar-perf" -q --json -d "$SECS" >> "$OUT/pair-this.json"
    "$BASE/upulsar-perf" -q --json -d "$SECS" >> "$OUT/pair-base.json"
  done
fi
echo "load average at end: $(load)"
RATES="$RATES" python3 - "$OUT" <<'PY'
import json, os, statistics, sys
d = sys.argv[1]
def rows(name):
    p = f"{d}/{name}.json"
    if not os.path.exists(p):
        return []
    return [json.loads(l) for l in open(p) if l.startswith("{")]
def fig(rs, f):
    v = [f(r) for r in rs]
    return f"{statistics.median(v):g} ({min(v):g}-{max(v):g})"
print("| offered msgs/s | config | achieved msgs/s | p50 us | p99 us | p99.9 us | client CPU ns/msg |")
print("|---|---|---|---|---|---|---|")
for r in os.environ["RATES"].split():
    for cfg in ("adaptive", "linger"):
        rs = rows(f"{cfg}-{r}")
        if not rs:
            continue
        label = "max" if r == "0" else f"{int(r):,}"
        print(f"| {label} | {cfg if cfg == 'adaptive' else 'linger 1 ms'} | "
              f"{statistics.median(x['msgs_per_sec'] for x in rs):,.0f} | "
              f"{fig(rs, lambda x: x['latency_us']['p50'])} | "
              f"{fig(rs, lambda x: x['latency_us']['p99'])} | "
              f"{fig(rs, lambda x: x['latency_us']['p999'])} | "
              f"{statistics.median(x['client_cpu_ns_per_msg'] for x in rs):.0f} |")
this, base = rows("pair-this"), rows("pair-base")
if this and base:
    ratios = [a["msgs_per_sec"] / b["msgs_per_sec"] for a, b in zip(this, base)]
    print()
    print(f"max rate, this build vs base, {len(ratios)} interleaved pairs: "
          f"{statistics.median(x['msgs_per_sec'] for x in this):,.0f} vs "
          f"{statistics.median(x['msgs_per_sec'] for x in base):,.0f} msgs/s; "
          f"pairwise ratio median {statistics.median(ratios):.3f} "
          f"({min(ratios):.3f}-{max(ratios):.3f})")
PY
