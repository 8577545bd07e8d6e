#!/usr/bin/env bash
# Builds Prometheus 3 (`cmd/prometheus` of the Go module github.com/prometheus/prometheus at a
# pinned release, the one Thanos' pinned release builds with) from the Go module proxy, caches
# it by version and prints its path. The end-to-end tests use it as a real remote write 2.0
# sender (Prometheus 2.42, the Debian package, only sends 1.0).
#   scripts/prometheus3.sh      # prints e.g. ~/.cache/ringest/prometheus/v0.309.1/prometheus
#
# `go install module@version` refuses Prometheus' module (its go.mod has exclude directives), so
# the build goes through a small wrapper module that requires it at the version.
set -euo pipefail

module=github.com/prometheus/prometheus
version="${PROMETHEUS3_VERSION:-v0.309.1}"
cache="${RINGEST_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ringest}/prometheus/$version"
bin="$cache/prometheus"

# shellcheck source=lib/go_build_cache.sh
source "$(dirname "$0")/lib/go_build_cache.sh"
cached_or_lock scripts/prometheus3.sh "$cache" "$bin"
start=$(date +%s)
echo "scripts/prometheus3.sh: building prometheus $version (first build; later runs reuse $bin)" >&2
work="$cache/build"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local
printf 'module ringest.invalid/prometheus-build\n\ngo 1.26\n' >go.mod
go get "$module@$version" >&2
CGO_ENABLED=0 go build -trimpath -tags netgo -ldflags "-s -w -X github.com/prometheus/common/version.Version=${version#v}" \
  -o "$bin.tmp" "$module/cmd/prometheus"
mv "$bin.tmp" "$bin"
echo "scripts/prometheus3.sh: built prometheus $version in $(($(date +%s) - start)) s" >&2
cd /
rm -rf "$work"
echo "$bin"
