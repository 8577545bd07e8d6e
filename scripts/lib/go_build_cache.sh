# Sourced by the scripts that build Go programs into the cache (thanos.sh, prometheus3.sh,
# rw-compliance.sh). `cached_or_lock NAME DIR BIN` prints BIN and exits the script when it is
# already built; otherwise it makes DIR, takes DIR's lock (held until the script exits, so
# concurrent callers wait for one build) and returns, for the caller to build BIN.
cached_or_lock() {
  local name=$1 dir=$2 bin=$3
  if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
  fi
  command -v go >/dev/null 2>&1 || { echo "$name: no go command on PATH" >&2; exit 1; }
  mkdir -p "$dir"
  exec 9>"$dir/.lock"
  flock 9
  if [ -x "$bin" ]; then # another caller built it while this one waited
    echo "$bin"
    exit 0
  fi
}
