# Sourced by the hack/*/build.sh scripts that build upstream Go programs.
# `go_env NAME` sets $root (this checkout) and $out (<target>/NAME, created),
# and points Go's caches at $LVMPIN_GO_CACHE (default: the ignored .cache/
# of this checkout), so one cold build per machine serves every checkout.
#
# A finished build is also kept under $LVMPIN_GO_CACHE/kept/NAME/, keyed by
# its inputs: the Go version and every file in the calling script's folder
# ($here: build.sh, go.mod, go.sum, the Go sources) and this file. `go_reuse`
# copies a kept build of the same inputs to $out, so a machine can drop Go's
# build cache (about 6 GB once Kubernetes is built; .ci/run does) and still
# skip the build until one of those inputs changes.
go_env() {
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  local cache="${LVMPIN_GO_CACHE:-$root/.cache}"
  out="${CARGO_TARGET_DIR:-$root/target}/$1"
  command -v go >/dev/null || { echo "$1 needs Go (1.26 or newer) on PATH" >&2; exit 1; }
  mkdir -p "$cache" "$out"
  export GOCACHE="$cache/go-build" GOMODCACHE="$cache/go-mod" GOFLAGS=-buildvcs=false
  local key
  key="$(
    go version
    cd "$here" && find . -maxdepth 1 -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    sha256sum <"$root/hack/go-env.sh"
  )"
  kept_dir="$cache/kept/$1"
  kept="$kept_dir/$(sha256sum <<<"$key" | cut -c1-16)"
}

# Copies the kept build of these inputs to $out; fails when there is none.
go_reuse() {
  [ -f "$kept/.complete" ] || return 1
  cp -a "$kept/." "$out/"
  rm -f "$out/.complete"
  echo "reused $out (kept build of the same inputs: $kept)"
}

# Keeps what is now in $out as the build of these inputs, in place of any
# build of older inputs. The copy is marked complete only once whole, so an
# interrupted keep is never reused.
go_keep() {
  rm -rf "$kept_dir"
  mkdir -p "$kept"
  cp -a "$out/." "$kept/"
  touch "$kept/.complete"
}
