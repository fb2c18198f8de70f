#!/usr/bin/env bash
# Interoperability check against pulsar-flex 1.1.1, a Pulsar client for
# Node.js written independently of upulsar.
#
#   tests/interop/run.sh [PATH/TO/upulsar-testbroker]
#
# Cases (each against a fresh topic on one test broker started here):
#   b1  flex produces (one SEND per message, keys + properties),
#       flex consumes (Exclusive, individual acks)
#   b2  flex produces in batches (SingleMessageMetadata format), flex consumes
#   b3  flex produces payload-only messages, flex consumes on a Shared
#       subscription; topic given in the short form "name"
#   r   the consumer negatively acknowledges its first delivery; everything
#       must be redelivered in order (REDELIVER_UNACKNOWLEDGED_MESSAGES)
#   k   keep-alive: a second broker PINGs every 300 ms and closes silent
#       connections; the consumer idles 2 s before messages arrive
#   a   upulsar produces (the `upulsar-produce` command-line producer next
#       to the broker or in build/, run with --json; else upulsar_produce.c,
#       built here against the broker build's libupulsar.a; see README.md),
#       flex consumes; SKIP while there is no engine
#   w   (w, w2) flex single sends and batches, and with case a also (aw, aw1, au)
#       upulsar batches, through wiretap.js, which decodes every frame with
#       pulsar-flex's protobuf code and checks the CRC32C of every payload
#       frame independently (pulsar-flex itself never verifies checksums);
#       "wire" reports its verdict
# Consumers subscribe first (pulsar-flex always starts at the latest
# position), then the producer runs; compare.js checks count, order,
# payload bytes, key, properties and receipt id == delivered id.
#
# Environment:
#   INTEROP_DEPS_DIR   where `npm ci` installs pulsar-flex (default build/interop-deps)
#   INTEROP_COUNT      messages per case (default 50)
#   INTEROP_TIMEOUT_MS bound on each client run (default 30000)
#   INTEROP_KEEP=1     keep the work directory (logs, JSON lines) even on success
#   INTEROP_CASES      space-separated subset of: b1 b2 b3 r k w a (default all)
#   INTEROP_FLEX_LOG   pulsar-flex log level for both clients (default error)
# Exit status: 0 all run cases passed (or a loud SKIP: no node/npm, registry
# unreachable, no broker binary; with CI=true each of those is exit 1);
# 1 a case failed; 2 harness setup failed.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DEPS_DIR=${INTEROP_DEPS_DIR:-$ROOT/build/interop-deps}
COUNT=${INTEROP_COUNT:-50}
TIMEOUT_MS=${INTEROP_TIMEOUT_MS:-30000}
CASES=${INTEROP_CASES:-b1 b2 b3 r k w a}
FLEX_LOG=${INTEROP_FLEX_LOG:-error}
FLEX_VERSION=1.1.1

say() { printf '%s\n' "interop: $*" >&2; }
skip() {
  if [ "${CI:-}" = true ]; then
    say "FAILED: $* (CI=true: the interop check may not be skipped)"
    exit 1
  fi
  printf '\n%s\n%s\n%s\n\n' \
    '######################################################################' \
    "# SKIP interop (pulsar-flex): $*" \
    '######################################################################' >&2
  exit 0
}
die() { say "HARNESS ERROR: $*"; exit 2; }

# ---------------------------------------------------------------- toolchain
command -v node >/dev/null 2>&1 || skip "node is not installed"
command -v npm >/dev/null 2>&1 || skip "npm is not installed"

# ----------------------------------------------------------- npm dependencies
deps_ok() {
  [ -f "$DEPS_DIR/node_modules/pulsar-flex/package.json" ] &&
    cmp -s "$HERE/package-lock.json" "$DEPS_DIR/package-lock.json" &&
    [ "$(node -p "require('$DEPS_DIR/node_modules/pulsar-flex/package.json').version")" = "$FLEX_VERSION" ]
}
if ! deps_ok; then
  say "installing pulsar-flex $FLEX_VERSION into $DEPS_DIR (npm ci)"
  mkdir -p "$DEPS_DIR" || die "cannot create $DEPS_DIR"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$DEPS_DIR/" || die "cannot copy package files"
  if ! (cd "$DEPS_DIR" && timeout 300 npm ci --no-audit --no-fund --ignore-scripts) \
       >"$DEPS_DIR/npm-ci.log" 2>&1; then
    if ! timeout 30 npm ping >/dev/null 2>&1; then
      tail -n 5 "$DEPS_DIR/npm-ci.log" >&2
      skip "npm registry unreachable, cannot install pulsar-flex $FLEX_VERSION"
    fi
    cat "$DEPS_DIR/npm-ci.log" >&2
    die "npm ci failed although the registry answers (see above)"
  fi
  deps_ok || die "pulsar-flex $FLEX_VERSION not found in $DEPS_DIR after npm ci"
fi
export NODE_PATH="$DEPS_DIR/node_modules"

# -------------------------------------------------------------- broker binary
BROKER=${1:-}
if [ -z "$BROKER" ]; then
  for cand in "$ROOT/build/upulsar-testbroker" $(ls -t "$ROOT"/build*/upulsar-testbroker 2>/dev/null); do
    if [ -x "$cand" ]; then BROKER=$cand; break; fi
  done
fi
[ -n "$BROKER" ] || skip "no upulsar-testbroker binary in build/ or build*/ (pass its path as \$1)"
[ -x "$BROKER" ] || die "broker binary '$BROKER' is not executable"
BROKER=$(cd "$(dirname "$BROKER")" && pwd)/$(basename "$BROKER")
BIN_DIR=$(dirname "$BROKER")
say "broker: $BROKER"
say "pulsar-flex: $(node -p "require('pulsar-flex/package.json').version") from $NODE_PATH"

# ------------------------------------------------------------------ work dir
WORK=$(mktemp -d "${TMPDIR:-/tmp}/upulsar-interop.XXXXXX") || die "mktemp failed"
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local p
  # only this script's own background jobs that are still running
  for p in $(jobs -p); do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  if [ "${INTEROP_KEEP:-0}" = 1 ] || [ "${FAILED:-0}" != 0 ]; then
    say "logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# wait_port PORT PID SECONDS: until 127.0.0.1:PORT accepts, PID is alive.
wait_port() {
  local port=$1 pid=$2 secs=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if node -e 'const s=require("net").connect(+process.argv[1],"127.0.0.1",()=>{s.end();process.exit(0)});s.on("error",()=>process.exit(1))' "$port" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# ------------------------------------------------------------ start broker
# start_broker NAME [BROKER OPTIONS...]: sets B_PORT and B_PID.
start_broker() {
  local name=$1
  shift
  B_PORT=$(free_port) || die "cannot find a free port"
  "$BROKER" --port "$B_PORT" "$@" >"$WORK/$name.log" 2>&1 &
  B_PID=$!
  if ! wait_port "$B_PORT" "$B_PID" 15; then
    FAILED=1
    tail -n 30 "$WORK/$name.log" >&2
    die "test broker ($name) did not start listening on 127.0.0.1:$B_PORT"
  fi
}
start_broker broker
PORT=$B_PORT
BROKER_PID=$B_PID
URL="pulsar://127.0.0.1:$PORT"
say "test broker pid $BROKER_PID at $URL"

RESULTS=()
FAILED=0
# First line of a client's stderr that says why it failed.
why() { grep -h -m1 -E 'FAIL|ERROR|Sanitizer|error' "$1" 2>/dev/null || head -n 1 "$1"; }
record() { # record CASE STATUS TEXT
  RESULTS+=("$(printf '%-4s %-5s %s' "$1" "$2" "$3")")
  [ "$2" = FAIL ] && FAILED=1
  say "case $1: $2 $3"
}

TOPIC_BASE="persistent://public/default/interop-$$-$(date +%s)"

# run_case NAME DESCRIPTION URL "CONSUMER ARGS" PRODUCER-COMMAND...
# The producer command's stdout must be JSON lines (see flex_produce.js).
run_case() {
  local name=$1 desc=$2 url=$3 cargs=$4
  shift 4
  local dir="$WORK/$name" topic="$TOPIC_BASE-$name"
  [ "${TOPIC_SHORT:-0}" = 1 ] && topic=${topic#persistent://public/default/}
  mkdir -p "$dir"
  say "case $name: $desc"
  # shellcheck disable=SC2086
  node "$HERE/flex_consume.js" --url "$url" --topic "$topic" --count "$COUNT" \
    --timeout-ms "$TIMEOUT_MS" --linger-ms 1000 --ready-file "$dir/ready" \
    --log-level "$FLEX_LOG" $cargs >"$dir/consume.jsonl" 2>"$dir/consume.err" &
  local cpid=$! i
  for ((i = 0; i < 150; i++)); do
    [ -f "$dir/ready" ] && break
    kill -0 "$cpid" 2>/dev/null || break
    sleep 0.1
  done
  if [ ! -f "$dir/ready" ]; then
    wait "$cpid"
    record "$name" FAIL "consumer never became ready: $(why "$dir/consume.err")"
    tail -n 5 "$dir/consume.err" >&2
    return
  fi
  [ -n "${IDLE_BEFORE_PRODUCE:-}" ] && sleep "$IDLE_BEFORE_PRODUCE"
  "$@" --url "$url" --topic "$topic" >"$dir/produce.jsonl" 2>"$dir/produce.err"
  local prc=$?
  wait "$cpid"
  local crc=$?
  if [ "$prc" != 0 ]; then
    record "$name" FAIL "producer exit $prc: $(why "$dir/produce.err")"
    tail -n 5 "$dir/produce.err" >&2
    [ "$crc" = 0 ] || tail -n 3 "$dir/consume.err" >&2
    return
  fi
  if [ "$crc" != 0 ]; then
    record "$name" FAIL "consumer exit $crc: $(why "$dir/consume.err")"
    tail -n 5 "$dir/consume.err" >&2
    return
  fi
  if node "$HERE/compare.js" --label "$name" --sent "$dir/produce.jsonl" \
       --received "$dir/consume.jsonl" 2>"$dir/compare.err"; then
    record "$name" PASS "$(sed -e "s/^$name: //" "$dir/compare.err")"
  else
    record "$name" FAIL "$(head -n 1 "$dir/compare.err")"
    cat "$dir/compare.err" >&2
  fi
}

want() { case " $CASES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

FLEX_PRODUCE=(node "$HERE/flex_produce.js" --count "$COUNT" --timeout-ms "$TIMEOUT_MS"
              --log-level "$FLEX_LOG")

want b1 && run_case b1 "flex -> broker -> flex, single sends, keys + properties" "$URL" "" \
  "${FLEX_PRODUCE[@]}" --prefix "flex-ü-" --key "key-%d" --prop "idx=%d" --prop "origin=pulsar-flex"

want b2 && run_case b2 "flex -> broker -> flex, batches of 7 (SingleMessageMetadata)" "$URL" "" \
  "${FLEX_PRODUCE[@]}" --batch 7 --prefix "batched-" --key "bkey-%d" --prop "idx=%d"

# b3 also uses the short topic name form ("t" = persistent://public/default/t):
# pulsar-flex sends names as given, the broker must normalise them.
want b3 && TOPIC_SHORT=1 run_case b3 "flex -> broker -> flex, payload only, Shared subscription, short topic name" \
  "$URL" "--sub-type Shared" "${FLEX_PRODUCE[@]}" --prefix "plain-"

# r: pulsar-flex's negative ack sends REDELIVER_UNACKNOWLEDGED_MESSAGES and,
# on Exclusive, discards what it has queued; the broker must redeliver every
# unacknowledged message, in order.
want r && run_case r "negative ack on Exclusive: broker redelivers all unacked, in order" "$URL" \
  "--nack-first" "${FLEX_PRODUCE[@]}" --prefix "redeliver-" --prop "idx=%d"

# k: a broker that PINGs every 300 ms and drops silent connections; the
# consumer idles 2 s (about 6 intervals) before anything is produced, so it
# must answer the broker's PINGs with PONGs to keep its connection.
if want k; then
  start_broker broker-keepalive --ping-interval-ms 300
  KEEPALIVE_URL="pulsar://127.0.0.1:$B_PORT"
  IDLE_BEFORE_PRODUCE=2 run_case k "keep-alive: broker PINGs every 300 ms, consumer idles 2 s" \
    "$KEEPALIVE_URL" "" "${FLEX_PRODUCE[@]}" --prefix "keepalive-" --prop "idx=%d"
fi

# ---------------------------------------------------- upulsar as producer
# An `upulsar-produce` binary next to the broker (or in build/) is used as
# is; otherwise upulsar_produce.c is compiled against the libupulsar.a of
# the broker's build directory, if that library has the producer engine.
UPRODUCE=""
UPRODUCE_ARGS=()
UPRODUCE_WHY=""
find_uproduce() {
  local cand lib libs san=""
  for cand in "$BIN_DIR/upulsar-produce" "$ROOT/build/upulsar-produce"; do
    # the command-line producer prints these JSON lines with --json
    if [ -x "$cand" ]; then UPRODUCE=$cand; UPRODUCE_ARGS=(--json); return 0; fi
  done
  lib="$BIN_DIR/libupulsar.a"
  [ -f "$lib" ] || lib="$ROOT/build/libupulsar.a"
  if [ ! -f "$lib" ]; then
    UPRODUCE_WHY="PENDING: no upulsar-produce binary and no libupulsar.a to build upulsar_produce.c"
    return 1
  fi
  local syms
  syms=$(nm "$lib" 2>/dev/null)
  if ! grep -q ' T upulsar_producer_start$' <<<"$syms"; then
    UPRODUCE_WHY="PENDING: $lib has no producer engine yet (upulsar_producer_start)"
    return 1
  fi
  grep -q '__asan_' <<<"$syms" && san="-fsanitize=address,undefined"
  grep -q '__tsan_' <<<"$syms" && san="-fsanitize=thread"
  libs="$(pkg-config --libs liburing libprotobuf-c liblz4 libssl libcrypto 2>/dev/null)"
  pkg-config --exists libzstd 2>/dev/null && libs="$libs $(pkg-config --libs libzstd)"
  # shellcheck disable=SC2086
  if ! ${CC:-cc} -std=c11 -O1 -Wall -Wextra $san -I"$ROOT/include" -o "$WORK/upulsar-produce" \
       "$HERE/upulsar_produce.c" "$lib" $libs -lpthread >"$WORK/upulsar-produce.build.log" 2>&1; then
    cat "$WORK/upulsar-produce.build.log" >&2
    UPRODUCE_WHY="cannot build upulsar_produce.c against $lib (see above)"
    return 2
  fi
  UPRODUCE="$WORK/upulsar-produce"
}
if want a; then
  find_uproduce
  case $? in
    1) if [ "${CI:-}" = true ]; then record a FAIL "$UPRODUCE_WHY"; else record a SKIP "$UPRODUCE_WHY"; fi ;;
    2) record a FAIL "$UPRODUCE_WHY" ;;
  esac
fi
U_PRODUCE=("$UPRODUCE" "${UPRODUCE_ARGS[@]}" --count "$COUNT" --timeout-ms "$TIMEOUT_MS" --prop "idx=%d")

if [ -n "$UPRODUCE" ]; then
  run_case a "upulsar -> broker -> flex (default batching, keys + properties)" "$URL" "" \
    "${U_PRODUCE[@]}" --prefix "upulsar-ü-" --key "ukey-%d" --prop "origin=upulsar"
fi

# ------------------------------------------------------------- wire checks
if want w || [ -n "$UPRODUCE" ]; then
  TAP_PORT=$(free_port)
  node "$HERE/wiretap.js" --listen "$TAP_PORT" --target "127.0.0.1:$PORT" \
    --log "$WORK/wiretap.jsonl" >"$WORK/wiretap.out" 2>"$WORK/wiretap.err" &
  TAP_PID=$!
  TAP_URL="pulsar://127.0.0.1:$TAP_PORT"
  if wait_port "$TAP_PORT" "$TAP_PID" 10; then
    if want w; then
      run_case w "flex single sends through wiretap.js" "$TAP_URL" "" \
        "${FLEX_PRODUCE[@]}" --prefix "tapped-" --key "tkey-%d" --prop "idx=%d"
      run_case w2 "flex batches of 5 through wiretap.js" "$TAP_URL" "" \
        "${FLEX_PRODUCE[@]}" --batch 5 --prefix "tapped-batch-" --prop "idx=%d"
    fi
    if [ -n "$UPRODUCE" ]; then
      # upulsar's own SEND frames, decoded and CRC-checked by wiretap.js
      run_case aw "upulsar through wiretap.js, batches of at most 7" "$TAP_URL" "" \
        "${U_PRODUCE[@]}" --prefix "upulsar-tapped-" --key "ukey-%d" \
        --conf batch.max.messages=7
      run_case aw1 "upulsar through wiretap.js, one message per batch" "$TAP_URL" "" \
        "${U_PRODUCE[@]}" --prefix "upulsar-single-" --conf batch.max.messages=1
      run_case au "upulsar through wiretap.js, batching off (plain entries)" "$TAP_URL" "" \
        "${U_PRODUCE[@]}" --prefix "upulsar-plain-" --key "ukey-%d" \
        --conf batching.enabled=false
    fi
    kill -TERM "$TAP_PID" 2>/dev/null
    wait "$TAP_PID"
    TAP_RC=$?
    if [ "$TAP_RC" = 0 ]; then
      record wire PASS "$(tail -n 1 "$WORK/wiretap.err")"
    else
      record wire FAIL "$(tail -n 1 "$WORK/wiretap.err")"
      grep -h '"problems"' "$WORK/wiretap.jsonl" | head -n 10 >&2
    fi
  else
    record wire FAIL "wiretap.js did not start: $(tail -n 1 "$WORK/wiretap.err")"
  fi
fi

# ------------------------------------------------------------------ summary
kill -0 "$BROKER_PID" 2>/dev/null || { record broker FAIL "test broker died during the run"; tail -n 20 "$WORK/broker.log" >&2; }
printf '\n== interop with pulsar-flex %s ==\n' "$FLEX_VERSION" >&2
printf '%s\n' "${RESULTS[@]}" >&2
if [ "$FAILED" != 0 ]; then
  printf 'interop: FAILED\n' >&2
  exit 1
fi
printf 'interop: OK\n' >&2
exit 0
