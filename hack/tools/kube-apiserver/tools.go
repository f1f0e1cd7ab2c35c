//go:build tools

// Package tools pins kube-apiserver and kube-controller-manager so `go build` can produce them
// from this module. The controller manager runs only its garbage collector and namespace
// controllers in the end-to-end tests.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
