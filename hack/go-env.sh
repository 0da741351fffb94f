# Sourced by the hack/*/build.sh scripts that build upstream Go programs.
# `go_env NAME` sets $root (this checkout) and $out (<target>/NAME, created),
# and points Go's caches at $LVMPIN_GO_CACHE (default: the ignored .cache/
# of this checkout), so one cold build per machine serves every checkout.
go_env() {
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  local cache="${LVMPIN_GO_CACHE:-$root/.cache}"
  out="${CARGO_TARGET_DIR:-$root/target}/$1"
  command -v go >/dev/null || { echo "$1 needs Go (1.26 or newer) on PATH" >&2; exit 1; }
  mkdir -p "$cache" "$out"
  export GOCACHE="$cache/go-build" GOMODCACHE="$cache/go-mod" GOFLAGS=-buildvcs=false
}
