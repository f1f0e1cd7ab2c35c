package hubclient

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/rest"
)

func kubeconfig(t *testing.T, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	data := `apiVersion: v1
kind: Config
clusters: [{name: hub, cluster: {server: "` + server + `"}}]
users: [{name: admin, user: {token: x}}]
contexts: [{name: hub, context: {cluster: hub, user: admin}}]
current-context: hub
`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Every command loads the hub the same way: --kubeconfig, else $KUBECONFIG; a config given by a
// test wins and is copied, so the caller may change its rate limits.
func TestConfig(t *testing.T) {
	t.Setenv("KUBECONFIG", kubeconfig(t, "https://from-env.example:6443"))
	cfg, err := Config("", nil)
	if err != nil || cfg.Host != "https://from-env.example:6443" {
		t.Fatalf("without --kubeconfig: %v, %v; want $KUBECONFIG's server", cfg, err)
	}
	cfg, err = Config(kubeconfig(t, "https://from-flag.example:6443"), nil)
	if err != nil || cfg.Host != "https://from-flag.example:6443" {
		t.Fatalf("with --kubeconfig: %v, %v; want its server", cfg, err)
	}
	given := &rest.Config{Host: "https://given.example"}
	cfg, err = Config("ignored", given)
	if err != nil || cfg.Host != given.Host || cfg == given {
		t.Fatalf("with a rest config: %v, %v; want a copy of it", cfg, err)
	}
	if _, err := Config(filepath.Join(t.TempDir(), "missing"), nil); err == nil {
		t.Fatal("a missing --kubeconfig loaded")
	}
}

func TestCASecretKey(t *testing.T) {
	key, err := CASecretKey(DefaultCASecret)
	if err != nil || key.Namespace != "argocd" || key.Name != "argocd-agent-ca" {
		t.Fatalf("default: %v, %v", key, err)
	}
	for _, bad := range []string{"argocd-agent-ca", "argocd/", "/ca", "Argo/ca", "argocd/Bad_Name"} {
		if _, err := CASecretKey(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
