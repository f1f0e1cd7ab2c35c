package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/status"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/argocd"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/e2e/harness"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/metrictext"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
)

// tlsFailures are what argocd-agent and Go's TLS stack log when a peer's certificate is not
// trusted or has expired.
var tlsFailures = []string{"unknown authority", "unknown certificate authority", "bad certificate", "expired certificate"}

// A new CA replaces the old one the way docs/operations.md says, with the real principal and
// agent: (1) trust both, (2) sign with the new one, so every agent is re-issued a certificate
// at once (the CA's ID is in the subject), (3) reissue the principal's server certificate,
// (4) once status says the old CA signs no valid certificate, drop it. At no step does a
// connection fail on trust.
func TestCARollover(t *testing.T) {
	const cluster = "rollover"
	ctx, e := start(t, harness.Options{Clusters: []string{cluster}, CertLifetime: 2 * time.Minute, HarnessPKI: true})
	must.Succeed(t, e.SetEnabled(ctx, cluster, true))
	a, err := e.StartAgent(ctx, cluster)
	must.Succeed(t, err)
	oldCA := parseCert(t, e.CACertPEM)
	oldID := authority.ID(oldCA)
	newCertPEM, newKeyPEM, err := testca.New("argocd-agent-ca-2", 365*24*time.Hour)
	must.Succeed(t, err)
	newCA := parseCert(t, newCertPEM)
	newID := authority.ID(newCA)
	connected := func(what string) {
		t.Helper()
		poll.Until(t, 2*time.Minute, what, func(ctx context.Context) (bool, error) {
			names, err := e.Principal.ConnectedAgents(ctx)
			return err == nil && slices.Contains(names, cluster), err
		})
	}
	bundleIs := func(want ...*x509.Certificate) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			got, err := authority.ParseCertificates(a.Delivered().CAPEM)
			if err != nil || len(got) != len(want) {
				return false, err
			}
			for _, w := range want {
				if !slices.ContainsFunc(got, w.Equal) {
					return false, nil
				}
			}
			return true, nil
		}
	}
	setCASecret := func(data map[string][]byte) {
		t.Helper()
		secret := &corev1.Secret{}
		must.Succeed(t, e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: harness.ArgoCDNamespace, Name: harness.CASecretName}, secret))
		secret.Data = data
		must.Succeed(t, e.Hub.Client.Update(ctx, secret))
	}
	restartPrincipal := func() {
		t.Helper()
		must.Succeed(t, e.RestartPrincipal(ctx))
	}
	connected("agent connected with the first CA's certificate")
	if got := parseCert(t, a.Delivered().ClientCertPEM); got.CheckSignatureFrom(oldCA) != nil {
		t.Fatal("the first certificate is not from the first CA")
	}
	oldClientCert := a.Delivered().ClientCertPEM

	// 1. Trust both: the new CA goes into ca.crt; the principal, restarted, trusts both.
	setCASecret(map[string][]byte{
		corev1.TLSCertKey: e.CACertPEM, corev1.TLSPrivateKeyKey: e.CAKeyPEM, authority.TrustKey: newCertPEM,
	})
	restartPrincipal()
	poll.Until(t, 2*time.Minute, "agents trust both CAs", bundleIs(oldCA, newCA))
	connected("agent connected while both CAs are trusted")
	t.Logf("1. both CAs trusted: %s (signing) and %s", oldID, newID)

	// 2. Sign with the new CA, keep the old one in ca.crt.
	switched := time.Now()
	setCASecret(map[string][]byte{
		corev1.TLSCertKey: newCertPEM, corev1.TLSPrivateKeyKey: newKeyPEM, authority.TrustKey: e.CACertPEM,
	})
	poll.Until(t, 2*time.Minute, "agent re-issued a certificate from the new CA", func(ctx context.Context) (bool, error) {
		cert := parseCert(t, a.Delivered().ClientCertPEM)
		return cert.CheckSignatureFrom(newCA) == nil, nil
	})
	cert := parseCert(t, a.Delivered().ClientCertPEM)
	if want := "CN=" + cluster + ",OU=" + identity.CAUnit(newID); cert.Subject.String() != want {
		t.Errorf("new certificate's subject %q, want %s", cert.Subject, want)
	}
	connected("agent connected with the new CA's certificate")
	t.Logf("2. new CA signs: agent runs with certificate %s from %s, %s after the switch (the old one was valid until %s)",
		cert.SerialNumber, newID, time.Since(switched).Round(time.Second), parseCert(t, oldClientCert).NotAfter.Format(time.TimeOnly))

	// The old CA still signs valid certificates: the metric says keep it.
	oldValid := func(ctx context.Context) (float64, error) {
		body, err := e.Metrics(ctx)
		if err != nil {
			return -1, err
		}
		v, ok, err := metrictext.Value(body, "argocd_agent_addon_ca_valid_certificates", map[string]string{"ca": oldID, "role": "trusted"})
		if !ok && err == nil {
			err = errors.New("no sample for the old CA")
		}
		return v, err
	}
	if n, err := oldValid(ctx); err != nil || n < 1 {
		t.Errorf("metric for the old CA right after the switch: %v (%v), want its valid certificates", n, err)
	}

	// 3. The principal's server certificate from the new CA: agents trust both.
	e.ServerCACertPEM, e.ServerCAKeyPEM = newCertPEM, newKeyPEM
	restartPrincipal()
	connected("agent connected to the principal's new server certificate")

	// 4. status tells when the old CA signs no valid certificate, then it leaves ca.crt.
	var table string
	poll.Until(t, 4*time.Minute, "status: the old CA may leave ca.crt", func(ctx context.Context) (bool, error) {
		out := &bytes.Buffer{}
		if err := (&status.Options{RestConfig: e.Hub.Config, CASecret: harness.ArgoCDNamespace + "/" + harness.CASecretName}).Run(ctx, out); err != nil {
			return false, err
		}
		table = out.String()
		for _, line := range strings.Split(table, "\n") {
			if strings.HasPrefix(line, oldID) {
				return strings.Contains(line, "may leave ca.crt"), nil
			}
		}
		return false, nil
	})
	t.Logf("4. status once no certificate of the old CA is valid:\n%s", table)
	poll.Until(t, 30*time.Second, "metric: the old CA signs no valid certificate", func(ctx context.Context) (bool, error) {
		n, err := oldValid(ctx)
		return n == 0 && err == nil, err
	})
	if since := time.Since(switched); since > 2*time.Minute+time.Minute {
		t.Errorf("the old CA was needed %s after the switch, longer than the certificate lifetime", since)
	}
	setCASecret(map[string][]byte{corev1.TLSCertKey: newCertPEM, corev1.TLSPrivateKeyKey: newKeyPEM})
	restartPrincipal()
	poll.Until(t, 2*time.Minute, "agents trust the new CA only", bundleIs(newCA))
	connected("agent connected after the old CA left every bundle")
	waitAvailable(t, e, cluster, metav1.ConditionTrue)

	// Not one connection failed on trust or expiry during the rollover.
	logs := podLogs(t, append(agentLogs(a), e.Principal.LogFiles()...))
	failures := 0
	for f, data := range logs {
		for _, s := range tlsFailures {
			if n := strings.Count(string(data), s); n > 0 {
				failures += n
				t.Errorf("%s: %d connection failures (%q)", f, n, s)
			}
		}
	}
	t.Logf("rollover done: %d agent processes, %d principal restarts, %d TLS failures", len(logs)-1, 3, failures)

	// The old CA is trusted no more: a certificate it signs now, with a valid subject, is refused.
	// The same certificate from the new CA is the control: only the issuer differs.
	for _, c := range []struct {
		caCert, caKey []byte
		accept        bool
	}{{e.CACertPEM, e.CAKeyPEM, false}, {newCertPEM, newKeyPEM, true}} {
		certPEM, keyPEM, err := testca.IssueCert(c.caCert, c.caKey, testca.CertRequest{CommonName: cluster, Client: true})
		must.Succeed(t, err)
		err = argocd.ProbeMTLS(ctx, e.Principal.Addr(), newCertPEM, certPEM, keyPEM)
		if accepted := err == nil; accepted != c.accept {
			t.Errorf("certificate from CA %s: accepted=%v (%v), want %v", authority.ID(parseCert(t, c.caCert)), accepted, err, c.accept)
		}
	}
	current := a.Delivered()
	if err := argocd.ProbeMTLS(ctx, e.Principal.Addr(), newCertPEM, current.ClientCertPEM, current.ClientKey); err != nil {
		t.Errorf("the principal refused the agent's current certificate: %v", err)
	}
}
