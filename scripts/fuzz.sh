#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time, starting from its checked-in seeds
# (fuzz/seeds/<target>/, written by `cargo run -p ringest-benches --example fuzz_seeds`).
# Stable Rust: coverage-guided libFuzzer without sanitizers (-s none; the targets are safe
# Rust, so a sanitizer would only add cost). A crash fails the run and leaves its input in
# fuzz/artifacts/<target>/.
#   scripts/fuzz.sh [seconds per target, default 45]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-${FUZZ_SECONDS:-45}}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz (crates.io)"
  cargo install -q cargo-fuzz --locked --version 0.13.2
fi
targets=(remote_write remote_write_v2 framed_snappy wal_segment block_index hashring tenant)
(cd fuzz && cargo fuzz build -s none -O)
for t in "${targets[@]}"; do
  corpus="$(mktemp -d)"
  log="$(mktemp)"
  cp fuzz/seeds/"$t"/* "$corpus"/
  rm -rf fuzz/artifacts/"$t"
  echo "==> fuzz $t for ${secs}s"
  if ! (cd fuzz && cargo fuzz run -s none -O "$t" "$corpus" -- -max_total_time="$secs" -rss_limit_mb=2048 \
    -max_len=262144 -print_final_stats=1 >"$log" 2>&1); then
    tail -40 "$log" >&2
    echo "fuzz target $t failed; its input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|new_units_added)' "$log" || true
  rm -rf "$corpus" "$log"
done
