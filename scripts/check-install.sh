#!/usr/bin/env bash
# Check that a build installs and packages into something usable, twice:
#
#  1. `cmake --install` into a prefix under the build directory;
#  2. the Debian packages (`cpack -G DEB`: libupulsar<major.minor>,
#     libupulsar-dev, upulsar-tools), their contents checked file by file,
#     then installed: for real with `dpkg -i` (and removed afterwards) when
#     run as root with CI=true or UPULSAR_DEB_INSTALL=1 and none of them is
#     installed already; otherwise unpacked with `dpkg -x` into a scratch
#     root, which needs no privileges and leaves the system alone.
#
# Against each, examples/ is built both ways -- CMake find_package(upulsar)
# and the pkg-config Makefile -- and every example is run once (each must
# exit 0), as is the installed upulsar-produce.
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

BROKER_PID=""
DEB_INSTALLED=()
cleanup() {
  if [ -n "$BROKER_PID" ]; then
    kill "$BROKER_PID" 2>/dev/null
    wait "$BROKER_PID" 2>/dev/null || true
  fi
  if ((${#DEB_INSTALLED[@]})); then
    dpkg -P "${DEB_INSTALLED[@]}" >"$W/dpkg-remove.log" 2>&1 ||
      say "WARNING: dpkg -P ${DEB_INSTALLED[*]} failed (see $W/dpkg-remove.log)"
  fi
}
trap cleanup EXIT

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

# check_installed LABEL USR LIBDIR [CMAKE_PREFIX]: build examples/ against the
# upulsar installed under USR (bin/, include/, LIBDIR/{cmake,pkgconfig}) with
# find_package (CMAKE_PREFIX_PATH=CMAKE_PREFIX, none for a system install)
# and with pkg-config, and run them and USR/bin's tools.
check_installed() {
  local label=$1 usr=$2 libdir=$3 prefix=${4:-} out=$W/$1
  local pc=$libdir/pkgconfig
  [ -f "$pc/upulsar.pc" ] || fail "$label: no $pc/upulsar.pc"
  local pcv
  pcv=$(PKG_CONFIG_PATH=$pc pkg-config --variable=libdir upulsar)
  [ "$(cd "$pcv" && pwd -P)" = "$(cd "$libdir" && pwd -P)" ] ||
    fail "$label: pkg-config finds the upulsar of $pcv, not $libdir"

  local cargs=(-DCMAKE_C_FLAGS=-Werror)
  [ -n "$prefix" ] && cargs+=(-DCMAKE_PREFIX_PATH="$prefix")
  cmake -S examples -B "$out/cmake" "${cargs[@]}" >"$out-cmake-configure.log" 2>&1 ||
    { cat "$out-cmake-configure.log"; fail "$label: examples: cmake configure"; }
  local found
  found=$(sed -n 's/^upulsar_DIR:PATH=//p' "$out/cmake/CMakeCache.txt")
  [ "$(cd "$found" && pwd -P)" = "$(cd "$libdir/cmake/upulsar" && pwd -P)" ] ||
    fail "$label: find_package(upulsar) found $found, not $libdir/cmake/upulsar"
  cmake --build "$out/cmake" -j"$JOBS" >"$out-cmake-build.log" 2>&1 ||
    { cat "$out-cmake-build.log"; fail "$label: examples: cmake build"; }
  PKG_CONFIG_PATH=$pc make -s -C examples O="$out/make" CFLAGS="-O2 -Werror" >"$out-make.log" 2>&1 ||
    { cat "$out-make.log"; fail "$label: examples: make with pkg-config"; }
  say "$label: examples built with find_package(upulsar) and with pkg-config"

  "$usr/bin/upulsar-testbroker" --port 0 >"$out-broker.out" 2>"$out-broker.err" &
  BROKER_PID=$!
  local url=""
  for _ in $(seq 100); do
    url=$(head -n 1 "$out-broker.out" 2>/dev/null || true)
    [[ $url == pulsar://* ]] && break
    kill -0 "$BROKER_PID" 2>/dev/null || break
    sleep 0.1
  done
  [[ $url == pulsar://* ]] || { cat "$out-broker.err"; fail "$label: upulsar-testbroker did not start"; }

  local way ex dyn libs
  for way in cmake make; do
    for ex in hello threads keyed callbacks; do
      run "$label-$way-$ex" "$out/$way/$ex"
    done
    run "$label-$way-metrics_server" "$out/$way/metrics_server" --check
    run "$label-$way-service" "$out/$way/service" --check
    dyn=$(readelf -d "$out/$way/hello-shared")
    [[ $dyn == *"NEEDED"*"[libupulsar.so."* ]] || fail "$label: $way/hello-shared does not link libupulsar.so"
    # the directory the loader takes libupulsar.so.* from (symlinks resolved:
    # /lib is /usr/lib on a merged-/usr system)
    libs=$(ldd "$out/$way/hello-shared" | sed -n 's/^[[:space:]]*libupulsar\.so\.[^ ]* => \([^ ]*\) .*/\1/p')
    [ -n "$libs" ] && [ "$(dirname "$(readlink -f "$libs")")" = "$(readlink -f "$libdir")" ] ||
      fail "$label: $way/hello-shared does not load the installed libupulsar.so ($libdir): ${libs:-not found}"
    run "$label-$way-hello-shared" "$out/$way/hello-shared" "$url"
  done
  run "$label-upulsar-produce" sh -c "echo hi | '$usr/bin/upulsar-produce' -b '$url' -t hello"
  run "$label-upulsar-produce-embedded" sh -c "echo hi | '$usr/bin/upulsar-produce' --embedded -t hello"
  kill "$BROKER_PID" 2>/dev/null
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=""
}

rm -rf "$W"
mkdir -p "$W"

# ---- 1. cmake --install into a prefix ---------------------------------------
cmake --install "$B" --prefix "$W/prefix" >/dev/null
PC=$(dirname "$(find "$W/prefix" -name upulsar.pc | head -n 1)")
[ -f "$PC/upulsar.pc" ] || fail "no upulsar.pc installed"
VERSION=$(PKG_CONFIG_PATH=$PC pkg-config --modversion upulsar)
say "installed into $W/prefix; pkg-config upulsar $VERSION"
check_installed prefix "$W/prefix" "$(dirname "$PC")" "$W/prefix"

# ---- 2. the Debian packages -------------------------------------------------
command -v cpack >/dev/null || fail "cpack not found (it comes with cmake)"
command -v dpkg-deb >/dev/null || fail "dpkg-deb not found: apt-get install -y dpkg-dev"
D=$W/deb
(cd "$B" && cpack -G DEB -B "$D") >"$W/cpack.log" 2>&1 || { cat "$W/cpack.log"; fail "cpack -G DEB"; }
SONAME=$(readelf -d "$(find "$W/prefix" -name 'libupulsar.so' | head -n 1)" |
         sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $SONAME == libupulsar.so.* ]] || fail "no SONAME in the installed libupulsar.so"
SOVER=${SONAME#libupulsar.so.}
RT=libupulsar$SOVER
ARCH=$(dpkg --print-architecture)
declare -A DEB=([runtime]=$D/${RT}_${VERSION}_$ARCH.deb
                [dev]=$D/libupulsar-dev_${VERSION}_$ARCH.deb
                [tools]=$D/upulsar-tools_${VERSION}_$ARCH.deb)
for c in runtime dev tools; do
  [ -f "${DEB[$c]}" ] || { ls "$D" >&2; fail "no $(basename "${DEB[$c]}") from cpack"; }
done
say "packages: $(cd "$D" && ls ./*.deb | sed 's|^\./||' | tr '\n' ' ')"

# contents PKG: "path" for files, "path -> target" for links (no directories)
contents() {
  dpkg-deb -c "$1" | awk '$1 !~ /^d/ { $1=$2=$3=$4=$5=""; sub(/^ +/, ""); sub(/^\.\//, ""); print }' | sort
}
expect_contents() { # expect_contents COMPONENT EXPECTED-LINES
  local got
  got=$(contents "${DEB[$1]}")
  if [ "$got" != "$(printf '%s\n' "$2" | sort)" ]; then
    printf 'got:\n%s\nwant:\n%s\n' "$got" "$2"
    fail "$(basename "${DEB[$1]}") does not hold what the $1 package should"
  fi
}
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$B/CMakeCache.txt" | tr '[:upper:]' '[:lower:]')
LIBREAL=$(basename "$(readlink -f "$(find "$W/prefix" -name 'libupulsar.so' | head -n 1)")")
expect_contents runtime "usr/lib/$LIBREAL
usr/lib/$SONAME -> $LIBREAL"
expect_contents dev "usr/include/upulsar/testbroker.h
usr/include/upulsar/upulsar.h
usr/lib/cmake/upulsar/upulsarConfig.cmake
usr/lib/cmake/upulsar/upulsarConfigVersion.cmake
usr/lib/cmake/upulsar/upulsarTargets-${BUILD_TYPE:-noconfig}.cmake
usr/lib/cmake/upulsar/upulsarTargets.cmake
usr/lib/libupulsar.a
usr/lib/libupulsar.so -> $SONAME
usr/lib/libupulsar_testbroker.a
usr/lib/pkgconfig/upulsar-testbroker.pc
usr/lib/pkgconfig/upulsar.pc"
expect_contents tools "usr/bin/upulsar-produce
usr/bin/upulsar-testbroker"
DEV_DEPENDS=$(dpkg-deb -f "${DEB[dev]}" Depends)
[[ $DEV_DEPENDS == *"$RT (= $VERSION)"* ]] || fail "libupulsar-dev does not depend on $RT (= $VERSION): $DEV_DEPENDS"
for c in runtime tools; do
  [[ $(dpkg-deb -f "${DEB[$c]}" Depends) == *liburing* ]] ||
    fail "$(basename "${DEB[$c]}") does not declare its library dependencies"
done
say "package contents and dependencies as expected ($RT, libupulsar-dev, upulsar-tools $VERSION)"

PKGS=("$RT" libupulsar-dev upulsar-tools)
already=""
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && already+=" $p"
done
if [ "$(id -u)" = 0 ] && { [ "${CI:-}" = true ] || [ "${UPULSAR_DEB_INSTALL:-}" = 1 ]; } &&
   [ -z "$already" ]; then
  DEB_INSTALLED=(upulsar-tools libupulsar-dev "$RT") # removal order (dependants first)
  dpkg -i "${DEB[runtime]}" "${DEB[dev]}" "${DEB[tools]}" >"$W/dpkg-install.log" 2>&1 ||
    { cat "$W/dpkg-install.log"; fail "dpkg -i"; }
  say "installed with dpkg -i (purged again on exit)"
  check_installed deb /usr /usr/lib
else
  why="not root, or neither CI=true nor UPULSAR_DEB_INSTALL=1"
  [ -n "$already" ] && why="already installed:$already"
  for c in runtime dev tools; do
    dpkg-deb -x "${DEB[$c]}" "$D/root"
  done
  say "unpacked with dpkg -x into $D/root ($why)"
  check_installed deb "$D/root/usr" "$D/root/usr/lib" "$D/root/usr"
fi
say "all examples ran"
