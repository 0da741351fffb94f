#!/usr/bin/env bash
# Builds csi-sanity, the upstream CSI conformance suite
# (github.com/kubernetes-csi/csi-test/v5, cmd/csi-sanity, at the version
# go.mod pins), as a static binary: <target>/csi-sanity/csi-sanity. The VM
# test runs it inside the QEMU guest against the agent binary.
# Go's caches: see hack/go-env.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../go-env.sh"
go_env csi-sanity
go_reuse && exit 0
export CGO_ENABLED=0

cd "$here"
version="$(go list -m -f '{{.Version}}' github.com/kubernetes-csi/csi-test/v5)"
go build -trimpath -ldflags="-s -w" -o "$out/csi-sanity" \
  github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity
go_keep
echo "built $out/csi-sanity (csi-test $version)"
