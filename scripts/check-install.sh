#!/usr/bin/env bash
# Install a build into a prefix under it, build examples/ against the
# installed package both ways -- CMake find_package(upulsar) and the
# pkg-config Makefile -- and run every example once (each must exit 0).
#
#   scripts/check-install.sh [BUILD_DIR]     (default: build)
#
# The examples use the embedded test broker (static library); hello-shared,
# linked against libupulsar.so, sends to the installed upulsar-testbroker.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
W=$(cd "$B" && pwd)/install-check
JOBS=$(nproc)
say() { printf 'check-install: %s\n' "$*"; }
fail() { say "FAIL: $*"; exit 1; }

rm -rf "$W"
cmake --install "$B" --prefix "$W/prefix" >/dev/null
PC=$(dirname "$(find "$W/prefix" -name upulsar.pc | head -n 1)")
[ -f "$PC/upulsar.pc" ] || fail "no upulsar.pc installed"
say "installed into $W/prefix; pkg-config upulsar $(PKG_CONFIG_PATH=$PC pkg-config --modversion upulsar)"

cmake -S examples -B "$W/cmake" -DCMAKE_PREFIX_PATH="$W/prefix" -DCMAKE_C_FLAGS=-Werror \
      >"$W/cmake-configure.log" 2>&1 || { cat "$W/cmake-configure.log"; fail "examples: cmake configure"; }
cmake --build "$W/cmake" -j"$JOBS" >"$W/cmake-build.log" 2>&1 ||
  { cat "$W/cmake-build.log"; fail "examples: cmake build"; }
PKG_CONFIG_PATH=$PC make -s -C examples O="$W/make" CFLAGS="-O2 -Werror" >"$W/make.log" 2>&1 ||
  { cat "$W/make.log"; fail "examples: make with pkg-config"; }
say "examples built with find_package(upulsar) and with pkg-config"

"$W/prefix/bin/upulsar-testbroker" --port 0 >"$W/broker.out" 2>"$W/broker.err" &
BROKER_PID=$!
trap 'kill "$BROKER_PID" 2>/dev/null; wait "$BROKER_PID" 2>/dev/null || true' EXIT
URL=""
for _ in $(seq 100); do
  URL=$(head -n 1 "$W/broker.out" 2>/dev/null || true)
  [[ $URL == pulsar://* ]] && break
  kill -0 "$BROKER_PID" 2>/dev/null || break
  sleep 0.1
done
[[ $URL == pulsar://* ]] || { cat "$W/broker.err"; fail "installed upulsar-testbroker did not start"; }

run() { # run NAME COMMAND...
  local name=$1
  shift
  local rc=0
  "$@" >"$W/$name.out" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    cat "$W/$name.out"
    fail "$name exited $rc"
  fi
  say "ok   $name: $(tail -n 1 "$W/$name.out")"
}
for way in cmake make; do
  for ex in hello threads keyed callbacks; do
    run "$way-$ex" "$W/$way/$ex"
  done
  dyn=$(readelf -d "$W/$way/hello-shared")
  [[ $dyn == *"NEEDED"*"[libupulsar.so."* ]] || fail "$way/hello-shared does not link libupulsar.so"
  libs=$(ldd "$W/$way/hello-shared")
  [[ $libs == *"libupulsar.so."*" => $W/prefix/"* ]] ||
    fail "$way/hello-shared does not load the installed libupulsar.so"
  run "$way-hello-shared" "$W/$way/hello-shared" "$URL"
done
run installed-upulsar-produce sh -c "echo hi | '$W/prefix/bin/upulsar-produce' --embedded -t hello"
say "all examples ran"
