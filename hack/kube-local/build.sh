#!/usr/bin/env bash
# Builds target/kube-local/kube-local: upstream etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler in one binary (see README.md).
#
# Go's module and build caches go to $LVMPIN_GO_CACHE (default: the ignored
# .cache/ of this checkout). A cold build of the Kubernetes packages takes
# 10-15 minutes on 2 cores; a warm one a few seconds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../go-env.sh"
go_env kube-local
go_reuse && exit 0

cd "$here"
version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
minor="${version#v1.}"
minor="${minor%%.*}"
# The components report this version (/version, user agents) as release
# builds do; component-base/version defaults to v0.0.0-master otherwise.
pkg=k8s.io/component-base/version
go build -trimpath \
  -ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor" \
  -o "$out/kube-local" .
go_keep
echo "built $out/kube-local (Kubernetes $version)"
