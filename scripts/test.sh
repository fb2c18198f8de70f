#!/usr/bin/env bash
# Install dependencies, build, and run every test:
#   0. static analysis of src/ (scripts/analyze.sh), zero findings
#   1. Release build (-Wall -Wextra -Wpedantic, warnings are errors) + suite
#   1a. the soak (perf/upulsar-soak): random faults for SOAK_SECONDS (20),
#       nothing lost, duplicated, out of order or unresolved
#   1b. cmake --install into build/install-check, examples built against it
#       with find_package(upulsar) and with pkg-config, each run once
#   2. interop with pulsar-flex (npm), against the release test broker
#   2b. ASan+UBSan build + suite
#   3. TSan build + every test (on tests/tsan_shim, a Criterion stand-in)
#   4. a bounded libFuzzer run of the frame decoder
# Nothing is skipped silently: every codec is required at configure time,
# and under CI (CI=true) a missing interop runtime, an empty TSan selection
# or a missing fuzz target fails the run.
# Usage: scripts/test.sh            (everything)
#        FUZZ_SECONDS=60 scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
JOBS=$(nproc)
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
SOAK_SECONDS=${SOAK_SECONDS:-20}

step() { printf '\n=== %s ===\n' "$*"; }
# skip_or_fail WHAT: a loud skip on a developer's machine, a failure in CI
skip_or_fail() {
  if [ "${CI:-}" = true ]; then
    echo "FAIL: $* (CI=true: nothing may be skipped)" >&2
    exit 1
  fi
  echo "SKIP: $*" >&2
}
CMAKE_COMMON=(-DUPULSAR_REQUIRE_ALL_CODECS=ON)

step "static analysis (clang analyzer via clang-tidy-14; zero findings)"
scripts/analyze.sh

step "release build"
cmake -S . -B build "${CMAKE_COMMON[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS=-Werror >/dev/null
cmake --build build -j"$JOBS"
step "release tests"
(cd build && ctest --output-on-failure -j"$JOBS")

step "soak: ${SOAK_SECONDS}s of random faults against the test broker (exactly once, in order)"
build/upulsar-soak --seconds "$SOAK_SECONDS" --partitions 8 --threads 4 2>&1 | grep -E '^soak:'

step "install, then build and run examples/ against the installed package"
scripts/check-install.sh build

step "interop with pulsar-flex (independent Node.js Pulsar client)"
if command -v node >/dev/null && command -v npm >/dev/null; then
  tests/interop/run.sh build/upulsar-testbroker
else
  skip_or_fail "node/npm not installed; the interop check did not run"
fi

step "ASan+UBSan build"
cmake -S . -B build-asan "${CMAKE_COMMON[@]}" -DCMAKE_BUILD_TYPE=Debug -DUPULSAR_SANITIZE=address,undefined \
      -DUPULSAR_PERF=OFF >/dev/null
cmake --build build-asan -j"$JOBS"
step "ASan+UBSan tests"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest --output-on-failure -j"$JOBS")

step "TSan build"
cmake -S . -B build-tsan "${CMAKE_COMMON[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUPULSAR_SANITIZE=thread \
      -DUPULSAR_PERF=OFF >/dev/null
cmake --build build-tsan -j"$JOBS"
step "TSan tests"
(cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
   ctest --output-on-failure -j"$JOBS" --no-tests=error)

step "fuzz the decoders (${FUZZ_SECONDS}s each)"
CC=clang cmake -S . -B build-fuzz "${CMAKE_COMMON[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUPULSAR_FUZZ=ON \
      -DUPULSAR_TESTS=OFF -DUPULSAR_PERF=OFF -DUPULSAR_SANITIZE=address,undefined >/dev/null
cmake --build build-fuzz -j"$JOBS"
fuzzed=0
for f in build-fuzz/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f")
  mkdir -p build-fuzz/corpus-"$name"
  seeds=()   # each target's own seeds, if it has any: tests/fuzz/seeds/<target>/
  [ -d tests/fuzz/seeds/"$name" ] && seeds=(tests/fuzz/seeds/"$name")
  "$f" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 \
       build-fuzz/corpus-"$name" "${seeds[@]}" 2>&1 | tail -n 3
  fuzzed=$((fuzzed + 1))
done
if [ "$fuzzed" -eq 0 ]; then
  echo "FAIL: no fuzz target was built (tests/fuzz/fuzz_*.c)" >&2
  exit 1
fi
step "all tests passed"
