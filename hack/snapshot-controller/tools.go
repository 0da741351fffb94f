//go:build tools

// Package tools pins the upstream snapshot-controller and its CRDs as module
// dependencies, so build.sh builds exactly the versions go.mod names.
package tools

import (
	_ "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	_ "github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller"
)
