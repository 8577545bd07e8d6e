#!/usr/bin/env bash
# The side-by-side bench: ringest, Prometheus 2.42 and VictoriaMetrics on the same workloads,
# one table of ratios. Installs the peers (Debian packages) if missing. Arguments go to
# `ringest-loadgen bench` (e.g. --smoke, --sizes 100000, --json out.json).
#   scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ringest -p ringest-loadgen
exec target/release/ringest-loadgen bench "$@"
