//go:build tools

// Package tools pins the upstream CSI conformance suite this directory
// builds: github.com/kubernetes-csi/csi-test/v5, command cmd/csi-sanity.
package tools

import _ "github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
