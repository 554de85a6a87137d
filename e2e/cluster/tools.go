//go:build tools

// Package tools records the commands build.sh compiles, so that `go mod tidy` keeps their
// dependencies in go.mod and go.sum. The build tag keeps it out of every normal build.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
