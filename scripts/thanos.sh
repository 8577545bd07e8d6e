#!/usr/bin/env bash
# Builds the real `thanos` binary at a pinned release from the Go module proxy, caches it by
# version and prints its path. The end-to-end tests and the bench use it as oracle and peer.
#   scripts/thanos.sh                 # prints e.g. ~/.cache/ringest/thanos/v0.42.5/thanos
#   THANOS_VERSION=v0.42.4 scripts/thanos.sh
#
# `go install module@version` refuses modules whose go.mod has replace directives, and Thanos'
# has some, so the build goes through a small wrapper module that requires Thanos at the version
# and carries the same replace directives (read from Thanos' own go.mod at that version).
# Thanos' go.mod may ask for a newer Go than the machine's; the go command then fetches the
# toolchain named by THANOS_GOTOOLCHAIN from the module proxy (an approved release).
set -euo pipefail

version="${THANOS_VERSION:-v0.42.5}"
toolchain="${THANOS_GOTOOLCHAIN:-go1.27.3}"
cache="${RINGEST_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ringest}/thanos/$version"
bin="$cache/thanos"

# shellcheck source=lib/go_build_cache.sh
source "$(dirname "$0")/lib/go_build_cache.sh"
cached_or_lock scripts/thanos.sh "$cache" "$bin"

start=$(date +%s)
work="$cache/build"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
export GOFLAGS="-mod=mod -buildvcs=false"

module=github.com/thanos-io/thanos
echo "scripts/thanos.sh: building thanos $version (first build; later runs reuse $bin)" >&2
# Fetches Thanos' go.mod even when it needs a newer Go than the machine's (the JSON then also
# carries that complaint in "Error", and the command exits non-zero).
download=$(GOTOOLCHAIN=local go mod download -json "$module@$version" || true)
upstream_mod=$(sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p' <<<"$download")
[ -f "$upstream_mod" ] || { echo "scripts/thanos.sh: the module proxy did not give $module@$version" >&2; exit 1; }

go_line=$(grep -m1 '^go ' "$upstream_mod")
need=${go_line#go }
have=$(GOTOOLCHAIN=local go env GOVERSION)
have=${have#go}
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" = "$need" ]; then
  export GOTOOLCHAIN=local
else
  echo "scripts/thanos.sh: $module@$version needs Go $need, this machine has $have: using $toolchain from the module proxy" >&2
  export GOTOOLCHAIN="$toolchain"
fi

{
  echo "module ringest.invalid/thanos-build"
  echo
  echo "$go_line"
  echo
  echo "require $module $version"
  echo
  # Every replace directive of Thanos' go.mod, block form and single-line form.
  awk '
    /^replace[ \t]*\($/ { inblock = 1; print; next }
    inblock { print; if ($0 ~ /^\)/) inblock = 0; next }
    /^replace[ \t]/ { print }
  ' "$upstream_mod"
} >go.mod

# Thanos' own requirements, pinned as its go.mod pins them (the wrapper's minimal version
# selection would otherwise be free to pick the same; this makes the build reproducible).
go mod edit $(awk '
  /^require[ \t]*\($/ { inblock = 1; next }
  inblock && /^\)/ { inblock = 0; next }
  inblock && NF >= 2 && $1 !~ /^\/\// { printf "-require=%s@%s ", $1, $2 }
' "$upstream_mod")

go mod download "$module"
go get "$module/cmd/thanos@$version" >&2

# The release's build tags, from its .promu.yml: `slicelabels` is not optional, Thanos' receive
# path casts its protobuf labels to Prometheus' slice labels (without it every write panics).
src=$(go list -m -f '{{.Dir}}' "$module")
tags=$(awk '
  /^[^ ]/ { inbuild = ($1 == "build:") }
  inbuild && /^  tags:/ { intags = 1; next }
  intags && /^    all:/ { inall = 1; next }
  inall && /^      - / { printf "%s%s", sep, $2; sep = "," ; next }
  inall && !/^      - / { inall = 0; intags = 0 }
' "$src/.promu.yml")
case ",$tags," in
  *,slicelabels,*) ;;
  *) echo "scripts/thanos.sh: no slicelabels build tag in $src/.promu.yml (found: '$tags')" >&2; exit 1 ;;
esac

ldflags="-s -w -X github.com/prometheus/common/version.Version=${version#v}"
ldflags+=" -X github.com/prometheus/common/version.Revision=$version"
ldflags+=" -X github.com/prometheus/common/version.Branch=HEAD"
ldflags+=" -X github.com/prometheus/common/version.BuildUser=ringest-tests"
CGO_ENABLED=0 go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$bin.tmp" "$module/cmd/thanos"
mv "$bin.tmp" "$bin"
"$bin" --version >&2
echo "scripts/thanos.sh: built thanos $version (tags $tags) in $(($(date +%s) - start)) s" >&2
cd /
rm -rf "$work"
echo "$bin"
