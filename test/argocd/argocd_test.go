package argocd

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testenv"
)

var applicationGVK = schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Application"}

// requireBinary skips without ARGOCD_AGENT_BIN outside CI and fails in CI, so CI cannot pass by
// silently skipping.
func requireBinary(t *testing.T) string {
	t.Helper()
	if os.Getenv(BinaryEnv) == "" && os.Getenv("CI") == "" {
		t.Skipf("%s is not set (build it with hack/test-tools.sh); set CI to make this a failure", BinaryEnv)
	}
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestPrincipalAgentMTLS runs a real principal and agents against a real API server: an agent
// with a client certificate from the trusted CA connects and receives the Applications of its hub
// namespace; an agent whose certificate comes from another CA is refused.
func TestPrincipalAgentMTLS(t *testing.T) {
	bin := requireBinary(t)
	ctx := t.Context()
	dir := t.TempDir()

	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})
	if err := InstallArgoCDCRDs(ctx, env.Config); err != nil {
		t.Fatal(err)
	}
	// Hub and spoke share one API server: hub namespaces argocd (principal) and cluster1, cluster2
	// (agent namespaces), spoke namespaces argocd-spoke1 and argocd-spoke2.
	for _, ns := range []string{"argocd", "cluster1", "cluster2", "argocd-spoke1", "argocd-spoke2"} {
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	hubKubeconfig := filepath.Join(dir, "hub.kubeconfig")
	spokeKubeconfig := filepath.Join(dir, "spoke.kubeconfig")
	if err := env.KubeconfigFor("argocd-agent-principal", []string{"system:masters"}, hubKubeconfig); err != nil {
		t.Fatal(err)
	}
	if err := env.KubeconfigFor("argocd-agent-agent", []string{"system:masters"}, spokeKubeconfig); err != nil {
		t.Fatal(err)
	}

	hubRedis, stopHubRedis, err := StartRedis(ctx, dir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopHubRedis)
	spokeRedis, stopSpokeRedis, err := StartRedis(ctx, dir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopSpokeRedis)

	// The CA that signs agent client certificates (the add-on's signer in production).
	caCert, caKey, err := testca.New("argocd-agent-ca", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	principal, err := StartPrincipal(ctx, PrincipalOptions{
		Binary: bin, Dir: dir, Kubeconfig: hubKubeconfig, Namespace: "argocd",
		AllowedNamespaces: []string{"cluster1", "cluster2"}, RedisAddr: hubRedis,
		ClientCAPEM: caCert, ServerCACertPEM: caCert, ServerCAKeyPEM: caKey, MatchSubject: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(principal.Stop)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("ARGOCD_AGENT_TEST_LOGS") != "" {
			t.Logf("principal log:\n%s", principal.Log())
		}
	})
	t.Logf("principal serving on %s after %s", principal.Addr(), time.Since(start).Round(time.Millisecond))

	clientCert, clientKey, err := testca.IssueCert(caCert, caKey, testca.CertRequest{CommonName: "cluster1", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	agent, err := StartAgent(ctx, AgentOptions{
		Name: "agent-cluster1", Binary: bin, Dir: dir, Kubeconfig: spokeKubeconfig, Namespace: "argocd-spoke1",
		Mode: "managed", PrincipalAddr: principal.Addr(), RootCAPEM: principal.ServerCAPEM(),
		ClientCertPEM: clientCert, ClientKeyPEM: clientKey, RedisAddr: spokeRedis,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agent.Stop)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("ARGOCD_AGENT_TEST_LOGS") != "" {
			t.Logf("agent cluster1 log:\n%s", agent.Log())
		}
	})
	if err := agent.WaitConnected(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "principal lists agent cluster1", func() error {
		agents, err := principal.ConnectedAgents(ctx)
		if err != nil {
			return err
		}
		if !slices.Contains(agents, "cluster1") {
			return fmt.Errorf("connected agents: %v", agents)
		}
		return nil
	})
	t.Logf("agent cluster1 connected %s after start", time.Since(start).Round(time.Millisecond))
	if n, err := principal.ConnectedAgentCount(ctx); err != nil || n != 1 {
		t.Fatalf("agent_connected_with_principal = %d, %v; want 1", n, err)
	}

	// Managed mode: an Application in the agent's hub namespace appears in the agent's namespace.
	app := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": "guestbook", "namespace": "cluster1"},
		"spec": map[string]any{
			"project": "default",
			"source": map[string]any{
				"repoURL": "https://github.com/argoproj/argocd-example-apps", "path": "guestbook", "targetRevision": "HEAD",
			},
			"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": "guestbook"},
		},
	}}
	app.SetGroupVersionKind(applicationGVK)
	if err := env.Client.Create(ctx, app); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	waitFor(t, 30*time.Second, "Application guestbook in argocd-spoke1", func() error {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(applicationGVK)
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "argocd-spoke1", Name: "guestbook"}, got); err != nil {
			return err
		}
		repo, _, _ := unstructured.NestedString(got.Object, "spec", "source", "repoURL")
		if repo != "https://github.com/argoproj/argocd-example-apps" {
			return fmt.Errorf("spec.source.repoURL = %q", repo)
		}
		return nil
	})
	t.Logf("Application copied to the agent's namespace after %s", time.Since(start).Round(time.Millisecond))

	// A client certificate from another CA (even with an allowed agent name) is refused.
	otherCACert, otherCAKey, err := testca.New("other-ca", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rogueCert, rogueKey, err := testca.IssueCert(otherCACert, otherCAKey, testca.CertRequest{CommonName: "cluster2", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := StartAgent(ctx, AgentOptions{
		Name: "agent-rogue", Binary: bin, Dir: dir, Kubeconfig: spokeKubeconfig, Namespace: "argocd-spoke2",
		Mode: "managed", PrincipalAddr: principal.Addr(), RootCAPEM: principal.ServerCAPEM(),
		ClientCertPEM: rogueCert, ClientKeyPEM: rogueKey, RedisAddr: spokeRedis,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rogue.Stop)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("ARGOCD_AGENT_TEST_LOGS") != "" {
			t.Logf("rogue agent log:\n%s", rogue.Log())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if code, err := rogue.Healthz(); err == nil && code == http.StatusOK {
			t.Fatal("agent with a certificate from another CA reports connected (/healthz 200)")
		}
		agents, err := principal.ConnectedAgents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(agents, "cluster2") {
			t.Fatalf("principal lists the agent with a certificate from another CA: %v", agents)
		}
		if done, err := rogue.Exited(); done {
			t.Logf("rogue agent exited: %v", err)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if n, err := principal.ConnectedAgentCount(ctx); err != nil || n != 1 {
		t.Fatalf("agent_connected_with_principal = %d, %v; want 1 (cluster1 only)", n, err)
	}
	if log := rogue.Log(); !strings.Contains(log, "Auth failure") || strings.Contains(log, "Authentication successful") {
		t.Errorf("rogue agent log shows no refused authentication:\n%s", log)
	}
	// The agent (Go's TLS client) sends no certificate the server's CA list does not cover, so
	// also present the foreign certificate directly: the principal must refuse it, and accept the
	// trusted one.
	if err := ProbeMTLS(ctx, principal.Addr(), principal.ServerCAPEM(), rogueCert, rogueKey); err == nil {
		t.Error("principal accepted a TLS client certificate from another CA")
	} else {
		t.Logf("foreign client certificate refused: %v", err)
	}
	if err := ProbeMTLS(ctx, principal.Addr(), principal.ServerCAPEM(), clientCert, clientKey); err != nil {
		t.Errorf("principal refused the trusted client certificate: %v", err)
	}
	if code, err := agent.Healthz(); err != nil || code != http.StatusOK {
		t.Errorf("agent cluster1 /healthz = %d, %v after the rogue attempt; want 200", code, err)
	}
}

// waitFor is poll.Until for a check that says why it does not hold yet.
func waitFor(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	poll.Until(t, timeout, what, func(context.Context) (bool, error) {
		err := check()
		return err == nil, err
	})
}

func TestConnectedFromLog(t *testing.T) {
	log := `time="t" level=info msg="An agent connected to the subscription stream" client=cluster1 method=Subscribe
time="t" level=info msg="An agent connected to the subscription stream" client=cluster2 method=Subscribe
time="t" level=info msg="Closing EventStream" client=cluster2 method=Subscribe
time="t" level=info msg="An agent connected to the subscription stream" client="odd name" method=Subscribe
`
	got := connectedFromLog(log)
	if len(got) != 2 || !got["cluster1"] || !got["odd name"] {
		t.Fatalf("got %v", got)
	}
}
