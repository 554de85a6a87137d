//go:build tools

// Package tools records the commands build-autoscaling.sh compiles (KEDA's operator and its metrics API
// server), so that `go mod tidy` keeps their dependencies in go.mod and go.sum. The build tag keeps it out of
// every normal build.
package tools

import (
	_ "github.com/kedacore/keda/v2/cmd/adapter"
	_ "github.com/kedacore/keda/v2/cmd/operator"
)
