package render

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
)

const adcYAML = `apiVersion: addon.open-cluster-management.io/v1beta1
kind: AddOnDeploymentConfig
metadata:
  name: argocd-agent
  namespace: open-cluster-management
spec:
  customizedVariables:
  - {name: principalAddress, value: principal.example.com}
`

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRender(t *testing.T) {
	cert, key, err := testca.New("ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg := write(t, "adc.yaml", adcYAML)
	run := func(o *Options) (string, error) {
		if o.CertificateSubject == "" {
			o.CertificateSubject = "cluster-name"
		}
		if err := o.Validate(); err != nil {
			return "", err
		}
		out := &bytes.Buffer{}
		err := o.Run(context.Background(), out)
		return out.String(), err
	}

	out, err := run(&Options{Cluster: "c1", ConfigFiles: []string{cfg}, CAFile: write(t, "ca.crt", string(cert))})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: Deployment", "kind: Secret", "agent.server.address: principal.example.com", "name: argocd-agent-ca"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "PRIVATE KEY") {
		t.Error("output contains a private key")
	}

	// The documented example renders.
	if _, err := run(&Options{Cluster: "c1", ConfigFiles: []string{"../../../docs/examples/addondeploymentconfig.yaml"}}); err != nil {
		t.Errorf("docs/examples/addondeploymentconfig.yaml: %v", err)
	}

	// Each documented customisation renders, and shows in what is printed.
	for file, want := range map[string]string{
		"agentcustomization-service-mesh.yaml":     "sidecar.istio.io/inject: \"false\"",
		"agentcustomization-metrics.yaml":          "prometheus.io/scrape: \"true\"",
		"agentcustomization-private-registry.yaml": "priorityClassName: system-cluster-critical",
		"agentcustomization-agent-flags.yaml":      "--keep-alive-ping-interval=30s",
		"agentcustomization-sidecar.yaml":          "name: log-shipper",
		"agentcustomization-network-policy.yaml":   "kind: NetworkPolicy",
	} {
		out, err := run(&Options{Cluster: "c1", ConfigFiles: []string{"../../../docs/examples/addondeploymentconfig.yaml", "../../../docs/examples/" + file}})
		if err != nil {
			t.Errorf("docs/examples/%s: %v", file, err)
		} else if !strings.Contains(out, want) {
			t.Errorf("docs/examples/%s: output lacks %q", file, want)
		}
	}

	out, err = run(&Options{Cluster: "c1", ConfigFiles: []string{cfg}})
	if err != nil || strings.Contains(out, "kind: Secret") {
		t.Errorf("without --ca the CA secret must be left out (err %v)", err)
	}

	for name, tc := range map[string]struct {
		o    Options
		want string
	}{
		"no cluster":          {Options{ConfigFiles: []string{cfg}}, "--cluster is required"},
		"bad cluster name":    {Options{Cluster: "C_1"}, "--cluster"},
		"no config":           {Options{Cluster: "c1"}, "principalAddress"},
		"CA file with a key":  {Options{Cluster: "c1", ConfigFiles: []string{cfg}, CAFile: write(t, "ca.pem", string(cert)+string(key))}, "never its key"},
		"CA file without PEM": {Options{Cluster: "c1", ConfigFiles: []string{cfg}, CAFile: write(t, "ca.pem", "nope")}, "no PEM CERTIFICATE"},
		"unknown config field": {Options{Cluster: "c1", ConfigFiles: []string{write(t, "adc.yaml", adcYAML+"  agentMode: managed\n")}},
			"unknown field"},
		"wrong kind": {Options{Cluster: "c1", ConfigFiles: []string{write(t, "adc.yaml", strings.Replace(adcYAML, "AddOnDeploymentConfig", "ConfigMap", 1))}},
			"want AddOnDeploymentConfig or AgentCustomization"},
		"bad value": {Options{Cluster: "c1", ConfigFiles: []string{write(t, "adc.yaml", adcYAML+"  - {name: principalPort, value: \"0\"}\n")}},
			"customizedVariables[principalPort]"},
		"refused customisation": {Options{Cluster: "c1", ConfigFiles: []string{cfg, write(t, "c.yaml", "apiVersion: argocd-agent-addon.open-cluster-management.io/v1alpha1\nkind: AgentCustomization\nmetadata: {name: c, namespace: n}\nspec: {agent: {args: [--insecure-tls]}}\n")}},
			"spec.agent.args[0]"},
		"two customisations": {Options{Cluster: "c1", ConfigFiles: []string{cfg, "../../../docs/examples/agentcustomization-metrics.yaml", "../../../docs/examples/agentcustomization-sidecar.yaml"}},
			"a second config of its kind"},
		"bad subject style": {Options{Cluster: "c1", CertificateSubject: "long"}, "unknown certificate subject style"},
	} {
		t.Run(name, func(t *testing.T) {
			o := tc.o
			_, err := run(&o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}
