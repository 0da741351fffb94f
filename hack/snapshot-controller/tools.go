//go:build tools

// Package tools pins the upstream snapshot-controller and its CRDs as module
// dependencies, so build.sh builds exactly the versions go.mod names. It
// names the command itself (not one of its packages) so that `go mod tidy`
// keeps every module the command needs; `go vet -tags tools` rejects that
// import, and there is no code of ours here to vet.
package tools

import (
	_ "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	_ "github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller"
)
