#!/usr/bin/env bash
# Builds the Prometheus remote-write receiver compliance suite (the Go module
# github.com/prometheus/compliance/remotewrite/receiver, from the Go module proxy, at a pinned
# pseudo-version) into a test binary, caches it by version and prints its path. The end-to-end
# test tests/remote_write_v2.rs runs it against ringest.
#   scripts/rw-compliance.sh      # prints e.g. ~/.cache/ringest/rw-compliance/<version>/receiver.test
set -euo pipefail

module=github.com/prometheus/compliance/remotewrite/receiver
version="${RW_COMPLIANCE_VERSION:-v0.0.0-20260806071727-67b8327a2e93}"
cache="${RINGEST_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ringest}/rw-compliance/$version"
bin="$cache/receiver.test"

# shellcheck source=lib/go_build_cache.sh
source "$(dirname "$0")/lib/go_build_cache.sh"
cached_or_lock scripts/rw-compliance.sh "$cache" "$bin"
start=$(date +%s)
echo "scripts/rw-compliance.sh: building $module@$version (first build; later runs reuse $bin)" >&2
dir=$(GOTOOLCHAIN=local go mod download -json "$module@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -d "$dir" ] || { echo "scripts/rw-compliance.sh: the module proxy did not give $module@$version" >&2; exit 1; }
# The module cache is read-only: build from a copy (its go.mod and go.sum pin every dependency).
work="$cache/src"
rm -rf "$work"
cp -r "$dir" "$work"
chmod -R u+w "$work"
(cd "$work" && GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false" go test -c -o "$bin.tmp" .)
mv "$bin.tmp" "$bin"
echo "scripts/rw-compliance.sh: built in $(($(date +%s) - start)) s" >&2
echo "$bin"
