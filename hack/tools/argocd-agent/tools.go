//go:build tools

// Package tools pins argocd-agent so `go build` can produce it from this module
// (hack/test-tools.sh builds it into the tools cache).
package tools

import _ "github.com/argoproj-labs/argocd-agent/cmd/argocd-agent"
