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
# Go's caches: see hack/go-env.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../go-env.sh"
go_env snapshot-controller
go_reuse && exit 0
export CGO_ENABLED=0

cd "$here"
version="$(go list -m -f '{{.Version}}' github.com/kubernetes-csi/external-snapshotter/v8)"
go build -trimpath -ldflags="-s -w -X main.version=$version" -o "$out/snapshot-controller" \
  github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller

crds="$(go list -m -f '{{.Dir}}' github.com/kubernetes-csi/external-snapshotter/client/v8)/config/crd"
mkdir -p "$out/crds"
rm -f "$out"/crds/*.yaml
install -m 0644 "$crds"/*snapshot.storage.k8s.io_*.yaml "$out/crds/"
go_keep
echo "built $out/snapshot-controller and CRDs (external-snapshotter $version)"
