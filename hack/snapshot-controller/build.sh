#!/usr/bin/env bash
# Builds the upstream snapshot-controller
# (github.com/kubernetes-csi/external-snapshotter/v8, cmd/snapshot-controller,
# at the version go.mod pins) as a static binary, and copies the upstream
# CRDs from the matching client module (client/config/crd: snapshot and group
# snapshot kinds; without the latter the controller waits 30 s at start before
# it turns group snapshots off) next to it:
#   <target>/snapshot-controller/snapshot-controller
#   <target>/snapshot-controller/crds/*.yaml
# The real control-plane test bed runs both (sim/src/testbed/snapshots.rs).
#
# Go's caches go to $LVMPIN_GO_CACHE (default: the ignored .cache/ of this
# checkout), as for hack/kube-local.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${LVMPIN_GO_CACHE:-$root/.cache}"
out="${CARGO_TARGET_DIR:-$root/target}/snapshot-controller"

command -v go >/dev/null || { echo "snapshot-controller needs Go on PATH" >&2; exit 1; }
mkdir -p "$cache" "$out/crds"
export GOCACHE="$cache/go-build" GOMODCACHE="$cache/go-mod" GOFLAGS=-buildvcs=false CGO_ENABLED=0

cd "$here"
version="$(go list -m -f '{{.Version}}' github.com/kubernetes-csi/external-snapshotter/v8)"
go build -trimpath -ldflags="-s -w -X main.version=$version" -o "$out/snapshot-controller" \
  github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller

crds="$(go list -m -f '{{.Dir}}' github.com/kubernetes-csi/external-snapshotter/client/v8)/config/crd"
rm -f "$out"/crds/*.yaml
install -m 0644 "$crds"/*snapshot.storage.k8s.io_*.yaml "$out/crds/"
echo "built $out/snapshot-controller and CRDs (external-snapshotter $version)"
