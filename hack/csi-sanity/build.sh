#!/usr/bin/env bash
# Builds csi-sanity, the upstream CSI conformance suite
# (github.com/kubernetes-csi/csi-test/v5, cmd/csi-sanity, at the version
# go.mod pins), as a static binary: <target>/csi-sanity/csi-sanity. The VM
# test runs it inside the QEMU guest against the agent binary.
#
# Go's caches go to $LVMPIN_GO_CACHE (default: the ignored .cache/ of this
# checkout), as for hack/kube-local.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${LVMPIN_GO_CACHE:-$root/.cache}"
out="${CARGO_TARGET_DIR:-$root/target}/csi-sanity"

command -v go >/dev/null || { echo "csi-sanity needs Go on PATH" >&2; exit 1; }
mkdir -p "$cache" "$out"
export GOCACHE="$cache/go-build" GOMODCACHE="$cache/go-mod" GOFLAGS=-buildvcs=false CGO_ENABLED=0

cd "$here"
version="$(go list -m -f '{{.Version}}' github.com/kubernetes-csi/csi-test/v5)"
go build -trimpath -ldflags="-s -w" -o "$out/csi-sanity" \
  github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity
echo "built $out/csi-sanity (csi-test $version)"
