#!/usr/bin/env bash
# The shortest way to a first message: install the build dependencies only
# (scripts/deps.sh --build: no Criterion, clang or Node.js), build the
# library, the tools and examples/hello in build-hello/ (no tests, no perf
# harnesses), start the test broker as a process, and send to it twice:
# with examples/hello.c and with the command-line producer.
#
#   scripts/hello.sh                          (a test broker started here)
#   scripts/hello.sh pulsar://broker:6650     (a running Pulsar broker)
#
# By hand, the same is:
#   cmake -S . -B build-hello -DUPULSAR_TESTS=OFF -DUPULSAR_PERF=OFF -DUPULSAR_EXAMPLES=ON
#   cmake --build build-hello --target hello upulsar-produce upulsar-testbroker
#   build-hello/upulsar-testbroker --port 6650 &
#   build-hello/hello pulsar://127.0.0.1:6650
#   echo hi | build-hello/upulsar-produce -b pulsar://127.0.0.1:6650 -t hello
set -euo pipefail
cd "$(dirname "$0")/.."
B=build-hello
scripts/deps.sh --build
mkdir -p "$B"
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DUPULSAR_TESTS=OFF -DUPULSAR_PERF=OFF \
      -DUPULSAR_EXAMPLES=ON >"$B/configure.log" 2>&1 || { cat "$B/configure.log"; exit 1; }
cmake --build "$B" -j"$(nproc)" --target hello upulsar-produce upulsar-testbroker >/dev/null

URL=${1:-}
BROKER_PID=""
if [ -z "$URL" ]; then
  "$B/upulsar-testbroker" --port 0 >"$B/hello-broker.out" 2>"$B/hello-broker.err" &
  BROKER_PID=$!
  trap 'kill "$BROKER_PID" 2>/dev/null; wait "$BROKER_PID" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    URL=$(head -n 1 "$B/hello-broker.out" 2>/dev/null || true)
    [[ $URL == pulsar://* ]] && break
    kill -0 "$BROKER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [[ $URL != pulsar://* ]]; then
    cat "$B/hello-broker.err" >&2
    echo "hello: the test broker did not start" >&2
    exit 1
  fi
  echo "test broker (upulsar-testbroker, pid $BROKER_PID) at $URL"
fi

echo "\$ $B/hello $URL"
"$B/hello" "$URL"
echo "\$ echo hi | $B/upulsar-produce -b $URL -t hello"
echo hi | "$B/upulsar-produce" -b "$URL" -t hello
