#!/usr/bin/env bash
# Install upulsar's build and test dependencies from Debian packages.
# Idempotent: packages already present are left alone.
#
#   scripts/deps.sh           everything scripts/test.sh and scripts/run.sh use
#   scripts/deps.sh --build   only what building the library, the tools and
#                             the examples takes (scripts/hello.sh)
set -euo pipefail
# What the library, the tools and the Debian packages (cpack, dpkg-dev from
# build-essential) are built with.
PKGS=(build-essential cmake pkg-config liburing-dev libprotobuf-c-dev
      protobuf-c-compiler libssl-dev liblz4-dev libzstd-dev zlib1g-dev)
FULL=1
case "${1:-}" in
  "") ;;
  --build) FULL=0 ;;
  *) echo "usage: $0 [--build]" >&2; exit 2 ;;
esac
# Everything scripts/test.sh runs: the codecs (zstd, zlib) are required
# there, Criterion runs the tests, clang builds the fuzz target,
# clang-tidy-14 runs the static analyzer (scripts/analyze.sh), openssl makes
# the TLS tests' certificates, Node.js and npm run the pulsar-flex interop
# check (so it never skips for want of them).
((FULL)) && PKGS+=(libcriterion-dev clang libclang-rt-dev clang-tidy-14 openssl)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm: any installation will do (a node from another source,
# e.g. NodeSource, already brings its own npm); Debian's otherwise.
if ((FULL)) && { ! command -v node >/dev/null || ! command -v npm >/dev/null; }; then
  missing+=(nodejs npm)
fi
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
