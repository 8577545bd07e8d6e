#!/usr/bin/env bash
# Builds deploy/Dockerfile with podman and runs the image as the StatefulSet runs it, where a
# container engine can run here. No image can be pulled on these machines, so the runtime base
# is made locally (the libraries the release binary links, /etc/passwd with distroless' nonroot
# user 65532) and the binary is the one already built (BINARY=prebuilt): the Dockerfile's own
# runtime stage is what is tested. Checked: the image's user, entrypoint, ports and volume;
# `thanos receive` runs as that user on a /data volume, answers /-/ready and /metrics on
# published ports read back from podman, takes remote writes, stops cleanly on SIGTERM, and
# every acknowledged sample is in /data afterwards (promtool, through the load generator's
# check).
#   scripts/image_check.sh   (after `cargo build --release -p ringest -p ringest-loadgen`)
# Without podman and runc (Debian packages) or without root, it says so and checks nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/ringest
loadgen=target/release/ringest-loadgen
[ -x "$bin" ] && [ -x "$loadgen" ] || { echo "image check: build the release binaries first" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  echo "!!! image check SKIPPED: podman needs root here (rootless podman needs subuid ranges); the image was not built" >&2
  exit 0
fi
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
  echo "==> installing podman and runc (Debian packages: a container engine to build and run the image)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq podman runc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq podman runc >/dev/null 2>&1; } || true
fi
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
  echo "!!! image check SKIPPED: podman or runc could not be installed; the image was not built" >&2
  exit 0
fi

work="$(mktemp -d)"
tag="localhost/ringest:check-$$"
base="localhost/ringest-runtime-base:check-$$"
name="ringest-check-$$"
# These machines cannot set podman's default rlimits, and their cgroups are hybrid (v1 and
# v2), which crun refuses: no default ulimits, cgroupfs, runc.
printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"
export CONTAINERS_CONF="$work/containers.conf"
P=(podman --cgroup-manager=cgroupfs)
cleanup() {
  "${P[@]}" rm -f "$name" >/dev/null 2>&1 || true
  "${P[@]}" rmi -f "$tag" "$base" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> image: a runtime base made here (glibc and libgcc from this machine, the nonroot user)"
root="$work/root"
mkdir -p "$root/etc" "$root/tmp" "$root/home/nonroot"
for f in $(ldd "$bin" | awk '$2 == "=>" {print $3} $1 ~ /^\// {print $1}'); do
  mkdir -p "$root$(dirname "$f")"
  cp -L "$f" "$root$f"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
chown 65532:65532 "$root/home/nonroot"
tar --numeric-owner -C "$root" -cf "$work/base.tar" .
if ! "${P[@]}" import -q "$work/base.tar" "$base" >/dev/null 2>"$work/import.err"; then
  echo "!!! image check SKIPPED: podman cannot store images here: $(tail -1 "$work/import.err")" >&2
  exit 0
fi

echo "==> image: podman build -f deploy/Dockerfile (BINARY=prebuilt, RUNTIME_IMAGE=the local base)"
"${P[@]}" build -q -f deploy/Dockerfile --ignorefile deploy/Dockerfile.dockerignore \
  --build-arg BINARY=prebuilt --build-arg RUNTIME_IMAGE="$base" --build-arg RUST_IMAGE="$base" -t "$tag" . >/dev/null

# GET a URL: its body, or nothing (python3 is there: the test command installs moto with it).
get() {
  python3 -c 'import sys, urllib.request
try:
    sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())
except Exception:
    pass' "$1"
}
fail() {
  echo "image check FAILED: $*" >&2
  "${P[@]}" logs "$name" 2>&1 | tail -20 >&2 || true
  exit 1
}
config="$("${P[@]}" image inspect "$tag" --format '{{.Config.User}}|{{.Config.Entrypoint}}|{{.Config.Volumes}}|{{.Config.ExposedPorts}}')"
[ "$config" = "65532:65532|[/bin/thanos]|map[/data:{}]|map[10901/tcp:{} 10902/tcp:{} 19291/tcp:{}]" ] ||
  fail "image config: $config"

version="$("${P[@]}" run --runtime runc --rm "$tag" --version 2>&1 | head -1)" || true
case "$version" in
  "thanos, version "*) ;;
  *) echo "!!! image check: the image was built but podman cannot run containers here: $version" >&2; exit 0 ;;
esac

echo "==> image: thanos receive as user 65532 on a /data volume, ports published on loopback"
data="$work/data"
mkdir -p "$data"
chown 65532:65532 "$data"
if ! "${P[@]}" run --runtime runc -d --name "$name" -v "$data:/data" \
  -p 127.0.0.1::10902 -p 127.0.0.1::19291 "$tag" \
  receive --tsdb.path=/data --label='replica="image-check"' --http-grace-period=1s >/dev/null 2>"$work/run.err"; then
  echo "!!! image check: the image was built but podman cannot run containers here: $(tail -1 "$work/run.err")" >&2
  exit 0
fi
http="$("${P[@]}" port "$name" 10902/tcp)"
rw="$("${P[@]}" port "$name" 19291/tcp)"
ready=""
for _ in $(seq 1 300); do
  if [ "$(get "http://$http/-/ready")" = "OK" ]; then
    ready=yes
    break
  fi
  sleep 0.1
done
[ -n "$ready" ] || fail "/-/ready never answered OK on $http"
# (Through files: with pipefail, `grep -q` closing the pipe early would fail the writer.)
get "http://$http/metrics" >"$work/metrics.txt"
grep -q '^thanos_build_info' "$work/metrics.txt" || fail "no thanos_build_info in /metrics"

"$loadgen" run --url "http://$rw/api/v1/receive" --series 2000 --rounds 5 --shards 2 --log "$work/ack.log" >/dev/null ||
  fail "remote write through the published port"
"${P[@]}" stop -t 60 "$name" >/dev/null
code="$("${P[@]}" inspect "$name" --format '{{.State.ExitCode}}')"
[ "$code" = "0" ] || fail "exit code $code after SIGTERM"
"${P[@]}" logs "$name" >"$work/container.log" 2>&1
grep -q 'storage is flushed successfully' "$work/container.log" || fail "no final flush in the log"
"$loadgen" check --log "$work/ack.log" --tsdb "$data/default-tenant" >/dev/null ||
  fail "acknowledged samples missing from /data"
echo "image check: built, ran as 65532:65532 on /data, took 10,000 samples over remote write, stopped cleanly, every acknowledged sample in /data"
