#!/usr/bin/env bash
# Install dependencies, build (Release) and run the main job: the perf
# harness against the embedded test broker. Extra arguments go to the
# harness (see perf/README.md), e.g. scripts/run.sh --partitions 8 --json
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
exec build/upulsar-perf "$@"
