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
# Tests run these scripts too, perhaps while another test reads a binary in
# $out, so a file is replaced only when it differs, and then by a rename: a
# reader sees the old file or the new one, never a half-written one.
go_reuse() {
  [ -f "$kept/.complete" ] || return 1
  local f
  while IFS= read -r -d '' f; do
    f="${f#"$kept"/}"
    [ "$f" = .complete ] && continue
    if [ -d "$kept/$f" ]; then
      mkdir -p "$out/$f"
    elif ! cmp -s "$kept/$f" "$out/$f"; then
      cp -p "$kept/$f" "$out/$f.new.$$"
      mv -f "$out/$f.new.$$" "$out/$f"
    fi
  done < <(find "$kept" -mindepth 1 -print0 | LC_ALL=C sort -z)
  echo "reused $out (kept build of the same inputs: $kept)"
}

# Keeps what is now in $out as the build of these inputs, and drops builds
# of older inputs. The copy is made beside its place and renamed into it
# whole, so an interrupted keep is never reused; when another build of the
# same inputs was kept first, that one stays (both are the same build).
go_keep() {
  local new="$kept_dir/.new.$$"
  rm -rf "$new"
  mkdir -p "$new"
  cp -a "$out/." "$new/"
  touch "$new/.complete"
  mv -T "$new" "$kept" 2>/dev/null || rm -rf "$new"
  find "$kept_dir" -mindepth 1 -maxdepth 1 ! -path "$kept" ! -name '.new.*' -exec rm -rf {} +
}
