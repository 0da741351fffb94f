//go:build tools

// Package tools pins the Helm release this directory builds:
// helm.sh/helm/v3, command cmd/helm. The manifest tests run its `helm lint`
// and `helm template` on charts/lvmpin.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
