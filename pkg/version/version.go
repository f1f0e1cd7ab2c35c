// Package version reports the build's version, set at link time:
//
//	-ldflags "-X github.com/argocd-agent-addon/argocd-agent-addon/pkg/version.Version=v0.1.0
//	          -X github.com/argocd-agent-addon/argocd-agent-addon/pkg/version.GitCommit=abc123"
package version

import (
	"fmt"
	"runtime"
)

// Set by the linker.
var (
	Version   = "v0.0.0-dev"
	GitCommit = "unknown"
)

// String is the one-line version report.
func String() string {
	return fmt.Sprintf("argocd-agent-addon %s (commit %s, %s, %s/%s)", Version, GitCommit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
