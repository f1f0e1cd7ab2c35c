package integration

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/status"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/metrictext"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/ocmcsr"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// `status` reads availability, certificate expiry, mode and image from a real hub.
func TestStatusCommand(t *testing.T) {
	joinCluster(t, "stat", hubfixture.NewADC("stat", "principalAddress", "principal.example.com", "agentMode", "autonomous",
		"agentImage", "registry.example.com/argocd-agent:v0.9.0"))
	name := fileCSR(t, ocmcsr.AgentUsername("stat"), ocmcsr.Request{Cluster: "stat"})
	poll.Until(t, 30*time.Second, "certificate issued", func(ctx context.Context) (bool, error) {
		csr, err := getCSR(ctx, name)
		return err == nil && ocmcsr.Condition(csr, certificatesv1.CertificateApproved) != nil && len(csr.Status.Certificate) > 0, err
	})
	// The expiry and CA come from the record the signer keeps on the ManagedClusterAddOn, not
	// from the CSR, which kube-controller-manager deletes an hour after signing.
	caID := currentCA(t).ID()
	var line, caLine string
	poll.Until(t, 30*time.Second, "status line for stat", func(ctx context.Context) (bool, error) {
		out := &bytes.Buffer{}
		if err := (&status.Options{RestConfig: env.Config, CASecret: caNamespace + "/" + caName}).Run(ctx, out); err != nil {
			return false, err
		}
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(l, "stat ") {
				line = l
			}
			if strings.HasPrefix(l, caID) {
				caLine = l
			}
		}
		return strings.Contains(line, "autonomous") && strings.Contains(line, "registry.example.com/argocd-agent:v0.9.0") &&
			strings.Contains(line, "(in 168h") && strings.Contains(line, caID) && strings.Contains(caLine, "signing"), nil
	})
	t.Log(line)
	t.Log(caLine)
	// The same facts for scripts, in the report's stable schema.
	for _, format := range []string{status.OutputJSON, status.OutputYAML} {
		out := &bytes.Buffer{}
		o := &status.Options{RestConfig: env.Config, CASecret: caNamespace + "/" + caName, Output: format}
		must.Succeed(t, o.Validate())
		must.Succeed(t, o.Run(context.Background(), out))
		var report status.Report
		must.Succeed(t, yaml.Unmarshal(out.Bytes(), &report))
		if report.APIVersion != status.ReportAPIVersion || report.Kind != status.ReportKind {
			t.Fatalf("-o %s: %s %s", format, report.APIVersion, report.Kind)
		}
		i := slices.IndexFunc(report.Clusters, func(c status.ClusterReport) bool { return c.Name == "stat" })
		if i < 0 {
			t.Fatalf("-o %s: no cluster stat in %s", format, out)
		}
		c := report.Clusters[i]
		if c.Mode != "autonomous" || c.Image != "registry.example.com/argocd-agent:v0.9.0" || c.Certificate == nil || c.Certificate.CA != caID ||
			c.Certificate.Expired || c.Certificate.NotAfter.Sub(report.Time) < 167*time.Hour || c.Revoked != "" {
			t.Errorf("-o %s: cluster stat %+v", format, c)
		}
		if !slices.ContainsFunc(report.CAs, func(ca status.CAReport) bool { return ca.ID == caID && ca.Role == "signing" && ca.Valid >= 1 }) {
			t.Errorf("-o %s: signing CA %s not reported: %+v", format, caID, report.CAs)
		}
	}
	// The same per-CA count, as a metric for alerting during a CA rollover.
	poll.Until(t, 30*time.Second, "per-CA metric", func(context.Context) (bool, error) {
		v, ok, err := metrictext.Value(scrapeMetrics(t), "argocd_agent_addon_ca_valid_certificates", map[string]string{"ca": caID, "role": "signing"})
		return ok && v >= 1, err
	})
}
