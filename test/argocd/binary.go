// Package argocd runs the real Argo CD agent (argoproj-labs/argocd-agent): the principal and agent
// as local processes on loopback with file-based mTLS (Principal, Agent), or the principal as
// upstream installs it, the pod of its own manifests on a test node (PrincipalPod); plus what
// they need: a redis-server and the Argo CD CRDs. End-to-end tests use it to prove that the
// certificates the add-on issues really connect an agent to its principal.
//
// The argocd-agent binary is built by hack/test-tools.sh (from the wrapper module
// hack/tools/argocd-agent) and named by the environment variable ARGOCD_AGENT_BIN; upstream's
// install manifests of the same version by ARGOCD_AGENT_INSTALL_DIR. redis-server comes from
// Debian's redis-server package.
package argocd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// BinaryEnv names the environment variable holding the path of the argocd-agent binary.
const BinaryEnv = "ARGOCD_AGENT_BIN"

// Binary returns the argocd-agent binary named by ARGOCD_AGENT_BIN, checking that it exists.
func Binary() (string, error) {
	bin := os.Getenv(BinaryEnv)
	if bin == "" {
		return "", fmt.Errorf("%s is not set: build argocd-agent with hack/test-tools.sh and export its path", BinaryEnv)
	}
	st, err := os.Stat(bin)
	if err != nil {
		return "", fmt.Errorf("%s=%s: %w", BinaryEnv, bin, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s=%s is not an executable file", BinaryEnv, bin)
	}
	return bin, nil
}

func writeFile(dir, name string, data []byte) (string, error) {
	if len(data) == 0 {
		return "", errors.New(name + ": empty")
	}
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, data, 0o600)
}
