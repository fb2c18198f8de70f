#!/usr/bin/env bash
# Install upulsar's build and test dependencies from Debian packages.
# Idempotent: packages already present are left alone.
set -euo pipefail
# Everything scripts/test.sh runs: the codecs (zstd, zlib) are required
# there, clang builds the fuzz target, clang-tidy-14 runs the static
# analyzer (scripts/analyze.sh), Node.js runs the interop check.
PKGS=(build-essential cmake pkg-config liburing-dev libprotobuf-c-dev
      protobuf-c-compiler libssl-dev liblz4-dev libzstd-dev zlib1g-dev
      libcriterion-dev clang libclang-rt-dev clang-tidy-14 openssl)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm: any installation will do (a node from another source,
# e.g. NodeSource, already brings its own npm); Debian's otherwise.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
