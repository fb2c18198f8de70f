#!/usr/bin/env bash
# upulsar-perf at max rate against upulsar-ceiling (the hand-rolled batch
# writer), same embedded perf-mode broker configuration, interleaved:
# perf, ceiling, perf, ceiling, ... Prints the medians, the ratio
# upulsar/ceiling (of the medians, and the median of the round-by-round
# ratios) and both CPU per message.
# Usage: perf/ceiling-ratio.sh [build-dir]   (default build)
# Environment: ROUNDS (5), SECS (5, measured seconds per run), PARTITIONS (4),
# THREADS (2, upulsar-perf's sender threads), SIZE (100), BATCH (the
# ceiling's messages per frame, default 512: upulsar's batch size at max
# rate), PERF_ARGS / CEILING_ARGS (more options for either).
# The raw JSON lines stay in a new directory /tmp/upulsar-ceiling-ratio.*
# (its path is printed on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-5}
PARTITIONS=${PARTITIONS:-4}
THREADS=${THREADS:-2}
SIZE=${SIZE:-100}
BATCH=${BATCH:-512}
for p in upulsar-perf upulsar-ceiling; do
  [ -x "$B/$p" ] || { echo "no $B/$p: build first (cmake --build $B)" >&2; exit 1; }
done
OUT=$(mktemp -d /tmp/upulsar-ceiling-ratio.XXXXXX)
echo "raw results: $OUT" >&2
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$ROUNDS"); do
  # shellcheck disable=SC2086 # word splitting of the extra options is wanted
  "$B/upulsar-perf" -q --json -d "$SECS" -p "$PARTITIONS" -t "$THREADS" -s "$SIZE" \
    ${PERF_ARGS:-} >> "$OUT/perf.json"
  # shellcheck disable=SC2086
  "$B/upulsar-ceiling" -q --json -d "$SECS" -p "$PARTITIONS" -s "$SIZE" -m "$BATCH" \
    ${CEILING_ARGS:-} >> "$OUT/ceiling.json"
  echo "round $r of $ROUNDS done" >&2
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
LOAD0="$LOAD0" LOAD1="$LOAD1" python3 - "$OUT" <<'PY'
import json, os, statistics, sys
def load(n):
    return [json.loads(l) for l in open(f"{sys.argv[1]}/{n}.json") if l.startswith("{")]
p, c = load("perf"), load("ceiling")
if not p or not c:
    sys.exit("no results")
med = statistics.median
def fig(rows, k):
    return [r[k] for r in rows]
pr, cr = fig(p, "msgs_per_sec"), fig(c, "msgs_per_sec")
pairs = [a / b for a, b in zip(pr, cr) if b]
print(f"rounds: {len(pairs)} interleaved pairs of {p[0]['measured_seconds']:.0f} s runs, "
      f"{p[0]['partitions']} partitions, {p[0]['threads']} sender threads, {p[0]['size']} B; "
      f"ceiling {c[0]['batch_messages']} messages per frame, {c[0]['wire_bytes_per_msg']} wire bytes "
      f"per message; load average {os.environ['LOAD0']} at the start, {os.environ['LOAD1']} at the end")
print("| program | msgs/s median (min-max) | client ns/msg median | broker ns/msg median |")
print("|---|---|---|---|")
for name, rows, rates in (("upulsar-perf", p, pr), ("upulsar-ceiling", c, cr)):
    print(f"| {name} | {med(rates)/1e6:.2f}M ({min(rates)/1e6:.2f}-{max(rates)/1e6:.2f}M) "
          f"| {med(fig(rows, 'client_cpu_ns_per_msg')):.1f} | {med(fig(rows, 'broker_cpu_ns_per_msg')):.1f} |")
print(f"ratio upulsar/ceiling: {med(pr)/med(cr):.3f} (of the medians), "
      f"{med(pairs):.3f} (median of the {len(pairs)} round ratios, {min(pairs):.3f}-{max(pairs):.3f})")
print(f"client CPU per message: upulsar {med(fig(p, 'client_cpu_ns_per_msg')):.1f} ns, "
      f"ceiling {med(fig(c, 'client_cpu_ns_per_msg')):.1f} ns "
      f"({med(fig(p, 'client_cpu_ns_per_msg'))/med(fig(c, 'client_cpu_ns_per_msg')):.2f}x)")
PY
