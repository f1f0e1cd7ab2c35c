package e2e

import (
	"os"
	"testing"

	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/e2e/harness"
)

// TestMain removes the manager image the tests' environments share once they are done. The
// tests' clients log (the API server's warnings) through controller-runtime, to klog.
func TestMain(m *testing.M) {
	ctrllog.SetLogger(klog.Background())
	code := m.Run()
	harness.RemoveManagerImage()
	os.Exit(code)
}
