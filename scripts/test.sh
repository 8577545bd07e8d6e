#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine, then runs every check.
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v victoria-metrics >/dev/null 2>&1 || need_apt+=(victoria-metrics)
# libfaketime: one replica's clock set apart in the clock-skew test.
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || need_apt+=(faketime)
# A C++ compiler: cargo-fuzz's libFuzzer is built from source.
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]} (Debian packages: promtool and Prometheus 2.42 are the format oracles; Prometheus and VictoriaMetrics are the bench's peers; faketime skews a replica's clock; g++ builds libFuzzer)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null 2>&1 \
    || { $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq "${need_apt[@]}"; }
fi
promtool --version | head -1

if ! command -v moto_server >/dev/null 2>&1; then
  echo "==> installing moto[server] (PyPI: a real S3 server on loopback for the shipper tests)"
  python3 -m pip install -q 'moto[server]'
  hash -r
fi
command -v moto_server >/dev/null 2>&1 || export MOTO_SERVER="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/moto_server"
echo "moto_server: $(command -v moto_server || echo "$MOTO_SERVER")"
python3 -c 'import grpc' 2>/dev/null || { echo "==> installing grpcio (PyPI: a real gRPC implementation for ringest-grpc's interop tests)"; python3 -m pip install -q grpcio; }
python3 -c 'import opentelemetry.proto, thriftpy2' 2>/dev/null || {
  echo "==> installing opentelemetry-proto and thriftpy2 (PyPI: the trace collector of the tracing tests decodes OTLP and Jaeger Thrift with them)"
  python3 -m pip install -q opentelemetry-proto thriftpy2
}

echo "==> the real Thanos (scripts/thanos.sh: built from the Go module proxy at the pinned release, cached by version)"
THANOS_BIN="$(scripts/thanos.sh)"
export THANOS_BIN
"$THANOS_BIN" --version 2>&1 | head -1
echo "==> Prometheus 3 (scripts/prometheus3.sh: a real remote write 2.0 sender, built from the Go module proxy at the pinned release, cached by version)"
PROMETHEUS3_BIN="$(scripts/prometheus3.sh)"
export PROMETHEUS3_BIN
"$PROMETHEUS3_BIN" --version 2>&1 | head -1
echo "==> the Prometheus remote-write receiver compliance suite (scripts/rw-compliance.sh: built from the Go module proxy at a pinned version, cached)"
RW_COMPLIANCE_BIN="$(scripts/rw-compliance.sh)"
export RW_COMPLIANCE_BIN
# Jaeger's Thrift IDL (a Go module, already downloaded by the Thanos build): the tracing
# tests' collector decodes Jaeger batches with it.
JAEGER_IDL_DIR="$(go mod download -json github.com/jaegertracing/jaeger-idl@v0.6.0 | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
export JAEGER_IDL_DIR

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# Dependency hygiene (deny.toml): licenses, crates.io as the only source, no wildcard version
# requirements. Not advisories: the RustSec database comes from GitHub, which CI cannot
# reach, so advisories need the network and are tracked by hand. These three checks only read
# Cargo.lock and the crates cargo fetches from crates.io. Without --hide-inclusion-graph the
# output also shows which dependency pulls each reported crate in.
if ! cargo deny --version >/dev/null 2>&1; then
  echo "==> installing cargo-deny 0.20.2 (crates.io; built from source, a few minutes)"
  cargo install --locked cargo-deny --version 0.20.2
fi
echo "==> cargo deny check bans licenses sources ($(cargo deny --version))"
cargo deny --locked check --hide-inclusion-graph bans licenses sources

echo "==> ringest-tsdb has no async runtime or network dependency"
if cargo tree -p ringest-tsdb -e normal --prefix none | grep -E '^(tokio|hyper|axum|tonic|reqwest|object_store|h2) '; then
  echo "ringest-tsdb must stay synchronous std code" >&2
  exit 1
fi

echo "==> build the release binaries the end-to-end tests and the bench run"
cargo build --release -p ringest -p ringest-loadgen
export RINGEST_BIN="$PWD/target/release/ringest"

# Checklist C.26 is a soak: 30 minutes of S3 faults (20 % of requests reset, unanswered or
# refused with SlowDown) and kill -9s, after which every block must be in the bucket exactly
# once. It takes little CPU, so it runs in the background beside everything below, and is
# waited for at the end.
echo "==> S3 soak (checklist C.26): ${RINGEST_S3_SOAK_SECS:=1800} s of S3 faults and kills, in the background; log in target/s3-soak.log"
# Built with every test of the workspace (the same features as the run below, so nothing is
# built twice).
SOAK_TEST="$(cargo test -q --workspace --no-run --message-format=json \
  | python3 -c 'import json, sys
for m in map(json.loads, sys.stdin):
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["src_path"].endswith("tests/tests/shipper.rs"):
        print(m["executable"])')"
SOAK_LOG="$PWD/target/s3-soak.log"
(cd tests && RINGEST_S3_SOAK_SECS="$RINGEST_S3_SOAK_SECS" exec "$SOAK_TEST" --ignored --exact \
  s3_faults_for_a_long_run_with_kills_upload_every_block_exactly_once --nocapture) >"$SOAK_LOG" 2>&1 &
SOAK_PID=$!
trap 'kill "$SOAK_PID" 2>/dev/null || true' EXIT

echo "==> bench smoke run (ringest, Thanos Receive, Prometheus 2.42, VictoriaMetrics; tiny workload)"
target/release/ringest-loadgen bench --smoke

echo "==> tests (unit, property, end-to-end against promtool and Prometheus 2.42)"
cargo test --workspace

echo "==> fuzzing: every decoder of untrusted bytes, a bounded time each, from the checked-in seeds"
scripts/fuzz.sh

echo "==> deploy/: hadolint, kustomize build of every overlay, Kubernetes schemas, checkov"
scripts/deploy_check.sh

echo "==> deploy/Dockerfile: the image built and run with podman (a runtime base made here; skipped, loudly, without a container engine)"
scripts/image_check.sh

echo "==> S3 soak: waiting for its end (started after the build)"
if ! wait "$SOAK_PID"; then
  tail -n 60 "$SOAK_LOG"
  echo "the S3 soak failed (whole log: $SOAK_LOG)" >&2
  exit 1
fi
grep -E "rounds written|each uploaded once|test result" "$SOAK_LOG"
