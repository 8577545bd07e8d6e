#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time, starting from its checked-in seeds
# (fuzz/seeds/<target>/, written by `cargo run -p ringest-benches --example fuzz_seeds`).
# Stable Rust: coverage-guided libFuzzer without sanitizers (-s none; the targets are safe
# Rust, so a sanitizer would only add cost). A crash fails the run and leaves its input in
# fuzz/artifacts/<target>/.
# Each target then replays everything its run kept (the seeds and what it found), one input at
# a time in one process (scripts/lib/fuzz_replay.py): no input may take over 100 ms or take the
# process over 64 MiB of RSS (the fuzzing process itself holds ~100 MB of libFuzzer state, so
# the bound is checked on the replay).
#   scripts/fuzz.sh [seconds per target, default 45]
# A release run (each target 10 minutes or 10 million inputs, whichever comes first):
#   FUZZ_SECONDS=600 FUZZ_RUNS=10000000 scripts/fuzz.sh
# FUZZ_TARGETS="wal_segment block_index" runs only those.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-${FUZZ_SECONDS:-45}}"
runs="${FUZZ_RUNS:--1}"
bin_dir="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz (crates.io)"
  cargo install -q cargo-fuzz --locked --version 0.13.2
fi
read -r -a targets <<<"${FUZZ_TARGETS:-remote_write remote_write_v2 framed_snappy wal_segment block_index hashring tenant}"
(cd fuzz && cargo fuzz build -s none -O)
for t in "${targets[@]}"; do
  corpus="$(mktemp -d)"
  log="$(mktemp)"
  cp fuzz/seeds/"$t"/* "$corpus"/
  rm -rf fuzz/artifacts/"$t"
  echo "==> fuzz $t for ${secs}s"
  if ! (cd fuzz && cargo fuzz run -s none -O "$t" "$corpus" -- -max_total_time="$secs" -runs="$runs" \
    -rss_limit_mb=2048 -timeout=1 -max_len=262144 -print_final_stats=1 >"$log" 2>&1); then
    tail -40 "$log" >&2
    echo "fuzz target $t failed; its input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|new_units_added)' "$log" || true
  if ! scripts/lib/fuzz_replay.py "$bin_dir/$t" "$corpus" --max-ms 100 --max-rss-mib 64; then
    echo "fuzz target $t: replaying its corpus failed" >&2
    exit 1
  fi
  rm -rf "$corpus" "$log"
done
