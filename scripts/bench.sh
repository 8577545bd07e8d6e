#!/usr/bin/env bash
# The side-by-side bench: ringest, Thanos Receive (the real binary, one node and an RF=3 ring),
# Prometheus 2.42 and VictoriaMetrics on the same workloads, one table of ratios. Installs the
# Debian peers if missing and builds Thanos with scripts/thanos.sh (cached). Arguments go to
# `ringest-loadgen bench` (e.g. --smoke, --sizes 100000, --json out.json).
#   scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
THANOS_BIN="${THANOS_BIN:-$(scripts/thanos.sh)}"
cargo build --release -p ringest -p ringest-loadgen
exec target/release/ringest-loadgen bench --thanos "$THANOS_BIN" "$@"
