#!/usr/bin/env bash
# Install upulsar's build and test dependencies from Debian packages.
# Idempotent: packages already present are left alone.
set -euo pipefail
PKGS=(build-essential cmake pkg-config liburing-dev libprotobuf-c-dev
      protobuf-c-compiler libssl-dev liblz4-dev libzstd-dev libcriterion-dev
      clang libclang-rt-dev openssl)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
