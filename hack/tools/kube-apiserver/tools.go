//go:build tools

// Package tools pins the Kubernetes components the tests run, so `go build` can produce them from
// this module: kube-apiserver, and for the real nodes of the end-to-end tests
// kube-controller-manager, kube-scheduler and kubelet.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
