#!/usr/bin/env bash
# Upload throughput and the write p99 while blocks are uploaded, against a real S3 server
# (moto on loopback) and a FILESYSTEM bucket. Results go into benches/README.md.
#   scripts/upload_bench.sh            (SERIES=50000 ROUNDS=1440 RATE=100000 by default)
# 1. fill: one tenant gets ROUNDS x 15 s of history for SERIES series; SIGTERM cuts it into
#    2h blocks (no bucket configured);
# 2. for each bucket (none, s3, filesystem): restart on a copy of that data with the bucket, so
#    the start-up sync uploads every block, while ringest-loadgen writes RATE samples/s to a
#    second tenant (20 s); report the loadgen's latency and the shipper's bytes / seconds. For
#    S3 the server is paused (SIGSTOP) until the load has run 3 s, so the uploads happen in the
#    middle of the measured window.
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${SERIES:-50000}
ROUNDS=${ROUNDS:-1440}
RATE=${RATE:-100000}
cargo build --release -q -p ringest -p ringest-loadgen
bin=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 600); do curl -sf "http://$1/-/ready" >/dev/null && return 0; sleep 0.1; done; return 1; }

start() { # data dir, extra flags...
  local data=$1; shift
  RW=127.0.0.1:$(port); OPS=127.0.0.1:$(port)
  $bin/ringest receive --tsdb.path="$data" --remote-write.address="$RW" --http-address="$OPS" \
    --grpc-address=127.0.0.1:$(port) --label='replica="bench"' "$@" 2>"$data.log" &
  PID=$!
  wait_ready "$OPS"
}

echo "==> fill: $SERIES series x $ROUNDS rounds of history"
start "$work/seed"
$bin/ringest-loadgen run --url "http://$RW/api/v1/receive" --series "$SERIES" --rounds "$ROUNDS" >/dev/null
kill -TERM $PID; wait $PID
du -sh "$work/seed/default-tenant" | sed 's/^/    tenant size: /'

mport=$(port)
moto_server -H 127.0.0.1 -p "$mport" >"$work/moto.log" 2>&1 &
MOTO=$!
for _ in $(seq 100); do curl -s "http://127.0.0.1:$mport/" >/dev/null && break; sleep 0.1; done
curl -sf -X PUT "http://127.0.0.1:$mport/thanos" >/dev/null

for bucket in none s3 filesystem; do
  rm -rf "$work/run" "$work/fsbucket"
  cp -r "$work/seed" "$work/run"
  case $bucket in
    none) flags=() ;;
    s3) flags=(--objstore.config="{type: S3, config: {bucket: thanos, endpoint: 127.0.0.1:$mport, access_key: k, secret_key: s, insecure: true}}") ;;
    filesystem) flags=(--objstore.config="{type: FILESYSTEM, config: {directory: $work/fsbucket}}") ;;
  esac
  [ "$bucket" = s3 ] && kill -STOP $MOTO
  start "$work/run" "${flags[@]}"
  $bin/ringest-loadgen run --url "http://$RW/api/v1/receive" --tenant bench --series 20000 --rounds 100 \
    --rate "$RATE" --json "$work/$bucket.json" >/dev/null &
  LOAD=$!
  sleep 5
  [ "$bucket" = s3 ] && kill -CONT $MOTO
  wait $LOAD
  kill -TERM $PID; wait $PID
  python3 - "$work/$bucket.json" "$work/run.log" "$bucket" <<'EOF'
import json, re, sys
r = json.load(open(sys.argv[1]))
r = r[-1] if isinstance(r, list) else r
lat = r["latency_ms"]
total_b, total_s, n = 0, 0.0, 0
for line in open(sys.argv[2]):
    if 'msg="uploaded block to s3"' in line and "tenant=default-tenant" in line:
        total_b += int(re.search(r"bytes=(\d+)", line).group(1))
        total_s += float(re.search(r"duration=([\d.]+)s", line).group(1))
        n += 1
up = f"{n} blocks, {total_b/1e6:.1f} MB in {total_s:.2f} s = {total_b/1e6/total_s:.1f} MB/s" if n else "no uploads"
print(f"{sys.argv[3]:>10}: write p50 {lat['p50']:.2f} ms p99 {lat['p99']:.2f} ms max {lat['max']:.2f} ms; {up}")
EOF
done
