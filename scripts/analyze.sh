#!/usr/bin/env bash
# Static analysis of src/ (the library, the test broker and the tools) with
# the Clang static analyzer (path-sensitive: NULL dereferences, use after
# free, leaks, uninitialised reads...), driven by clang-tidy so that each
# file is analysed with exactly the defines and include paths of the build
# (CMake's compile_commands.json) and a false positive can be annotated at
# its line:
#     // NOLINT(clang-analyzer-<checker>) -- why it cannot happen
#     // NOLINTNEXTLINE(clang-analyzer-<checker>) -- why it cannot happen
# Exits non-zero on any finding, on a file that does not compile, or when
# nothing was analysed. Needs the Debian package clang-tidy-14.
#
# The build directory (default build-analyze) is configured as Debug, so
# that assert() conditions are visible to the analyzer (Release differs only
# by -DNDEBUG and -O3); only the generated protocol header is built in it.
# The generated protobuf code (build*/gen) is not analysed.
#
# Checkers: every clang-analyzer-* check of clang-tidy 14, except
#  - security.insecureAPI.DeprecatedOrUnsafeBufferHandling: asks for the
#    C11 Annex K functions (memcpy_s...), which glibc does not have;
#  - optin.performance.Padding: struct layout advice, not a defect;
#  - valist.Uninitialized: clang-tidy 14 reports every va_list passed to
#    vsnprintf after va_start as uninitialised (llvm/llvm-project#40656).
#
# Usage: scripts/analyze.sh            ANALYZE_BUILD_DIR=dir scripts/analyze.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
BUILD=${ANALYZE_BUILD_DIR:-build-analyze}
TIDY=${CLANG_TIDY:-clang-tidy-14}
JOBS=$(nproc)

if ! command -v "$TIDY" >/dev/null; then
  echo "analyze: $TIDY not found: apt-get install -y clang-tidy-14" >&2
  exit 2
fi

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
      -DUPULSAR_TESTS=OFF -DUPULSAR_PERF=OFF >/dev/null
cmake --build "$BUILD" --target upulsar_proto -j"$JOBS" >/dev/null

# every source file under src/ that the build compiles, once
mapfile -t FILES < <(grep -o '"file": "[^"]*"' "$BUILD/compile_commands.json" |
                     sed 's/^"file": "//; s/"$//' | grep "^$ROOT/src/" | sort -u)
if ((${#FILES[@]} == 0)); then
  echo "analyze: no source file of src/ in $BUILD/compile_commands.json" >&2
  exit 2
fi

CHECKS='-*,clang-analyzer-*'
CHECKS+=',-clang-analyzer-security.insecureAPI.DeprecatedOrUnsafeBufferHandling'
CHECKS+=',-clang-analyzer-optin.performance.Padding'
CHECKS+=',-clang-analyzer-valist.Uninitialized'

LOG="$BUILD/analyze.log"
status=0
printf '%s\n' "${FILES[@]}" |
  xargs -P"$JOBS" -n 4 "$TIDY" -p "$BUILD" --quiet --checks="$CHECKS" \
        --header-filter="^$ROOT/src/" --warnings-as-errors='*' >"$LOG" 2>&1 || status=$?

findings=$(grep -cE '^[^ ].*: (warning|error): ' "$LOG" || true)
if ((status != 0 || findings != 0)); then
  cat "$LOG"
  echo "analyze: FAILED: $findings finding(s) in ${#FILES[@]} files (full log: $LOG)" >&2
  exit 1
fi
echo "analyze: ${#FILES[@]} files of src/, 0 findings"
