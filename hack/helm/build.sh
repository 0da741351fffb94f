#!/usr/bin/env bash
# Builds helm (helm.sh/helm/v3, cmd/helm, at the version go.mod pins) as a
# static binary: <target>/helm/helm. tests/tests/helm_chart.rs runs its
# `helm lint` and `helm template` on charts/lvmpin.
# Go's caches: see hack/go-env.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../go-env.sh"
go_env helm
go_reuse && exit 0
export CGO_ENABLED=0

cd "$here"
version="$(go list -m -f '{{.Version}}' helm.sh/helm/v3)"
# The ldflags of helm's own Makefile: the version `helm version` prints, and
# the Kubernetes version lint and template assume (.Capabilities.KubeVersion),
# derived from the client-go helm is built with (1 + major, minor).
client_go="$(go list -m -f '{{.Version}}' k8s.io/client-go)"
minor="${client_go#v0.}"
minor="${minor%%.*}"
v=helm.sh/helm/v3/internal/version
go build -trimpath \
  -ldflags="-s -w -X $v.version=$version \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
  -o "$out/helm" helm.sh/helm/v3/cmd/helm
go_keep
echo "built $out/helm (helm $version)"
