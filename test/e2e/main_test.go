package e2e

import (
	"os"
	"testing"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/e2e/harness"
)

// TestMain removes the manager image the tests' environments share once they are done.
func TestMain(m *testing.M) {
	code := m.Run()
	harness.RemoveManagerImage()
	os.Exit(code)
}
