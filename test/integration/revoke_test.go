package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/revoke"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/status"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/ocmcsr"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// A revoked cluster gets no new certificate, its issued ones are blocklisted, the operator sees
// it on the hub; unrevoke restores signing.
func TestRevokeAndUnrevoke(t *testing.T) {
	ctx := context.Background()
	joinCluster(t, "compromised", hubfixture.NewADC("compromised-cfg", "principalAddress", "principal.example.com"))
	agent := ocmcsr.AgentUsername("compromised")
	signed := func(name string) []byte {
		var cert []byte
		poll.Until(t, 30*time.Second, "certificate for "+name, func(ctx context.Context) (bool, error) {
			csr, err := getCSR(ctx, name)
			if err == nil {
				cert = csr.Status.Certificate
			}
			return len(cert) > 0, err
		})
		return cert
	}
	firstCSR, firstKey, err := ocmcsr.New(ocmcsr.Request{Cluster: "compromised", CAID: currentCA(t).ID()})
	must.Succeed(t, err)
	must.Succeed(t, clientAs(t, agent).Create(ctx, firstCSR))
	first := signed(firstCSR.Name)

	o := &revoke.Options{RestConfig: env.Config, Reason: "key found in a public repository", PrincipalNamespace: caNamespace,
		Namespace: hubfixture.LeaderNamespace}
	out := &bytes.Buffer{}
	must.Succeed(t, o.Revoke(ctx, "compromised", out))
	t.Log(strings.TrimSpace(out.String()))

	mc := &clusterv1.ManagedCluster{}
	must.Succeed(t, env.Client.Get(ctx, types.NamespacedName{Name: "compromised"}, mc))
	if !strings.Contains(out.String(), "1 issued certificate(s)") {
		t.Errorf("revoke blocklisted %q, want the 1 certificate issued", out)
	}
	if mc.Labels[identity.RevokedLabel] != "true" {
		t.Fatalf("the ManagedCluster is not labelled for the Placement to drop it: %v", mc.Labels)
	}
	r, err := issued.Records{Reader: env.Client, Namespace: hubfixture.LeaderNamespace}.Revocation(ctx, "compromised")
	must.Succeed(t, err)
	if r == nil || !strings.Contains(r.Reason, "public repository") || r.RevokedAt.IsZero() {
		t.Fatalf("revocation not recorded in the cluster's record: %+v", r)
	}
	block, _ := pem.Decode(first)
	cert, err := x509.ParseCertificate(block.Bytes)
	must.Succeed(t, err)
	// The blocklist key is argocd-agent's form: upper-case hex SHA-256 of the DER.
	sum := sha256.Sum256(block.Bytes)
	cm := &corev1.ConfigMap{}
	must.Succeed(t, env.Client.Get(ctx, types.NamespacedName{Namespace: caNamespace, Name: identity.TLSBlocklistConfigMap}, cm))
	if note, ok := cm.Data[strings.ToUpper(hex.EncodeToString(sum[:]))]; !ok || !strings.Contains(note, "cluster=compromised") {
		t.Fatalf("issued certificate not in the TLS blocklist: %v", cm.Data)
	}
	// The hub says until when a principal without a blocklist would still accept it.
	if r.CertificatesLapse == nil || !r.CertificatesLapse.Equal(cert.NotAfter) {
		t.Errorf("lapse %v, want the certificate's expiry %s", r.CertificatesLapse, cert.NotAfter.UTC().Format(time.RFC3339))
	}

	// No new certificate while revoked.
	if c := waitDenied(t, fileCSR(t, agent, ocmcsr.Request{Cluster: "compromised"})); c.Reason != string(policy.ReasonRevoked) || !strings.Contains(c.Message, "public repository") {
		t.Fatalf("CSR of a revoked cluster denied %s (%s), want Revoked with the reason", c.Reason, c.Message)
	}
	// The label is only the Placement's input: with it gone (a hub without the chart's admission
	// policy), the list still decides, for signing and for delivery.
	mc = &clusterv1.ManagedCluster{}
	must.Succeed(t, env.Client.Get(ctx, types.NamespacedName{Name: "compromised"}, mc))
	delete(mc.Labels, identity.RevokedLabel)
	must.Succeed(t, env.Client.Update(ctx, mc))
	if c := waitDenied(t, fileCSR(t, agent, ocmcsr.Request{Cluster: "compromised"})); c.Reason != string(policy.ReasonRevoked) {
		t.Fatalf("CSR of a revoked cluster without the label denied %s (%s), want Revoked", c.Reason, c.Message)
	}
	must.Succeed(t, hubfixture.SetVariable(ctx, env.Client, types.NamespacedName{Namespace: hubfixture.ConfigNamespace, Name: "compromised-cfg"}, "logLevel", "debug"))
	poll.Until(t, 30*time.Second, "nothing rendered for the revoked cluster", func(ctx context.Context) (bool, error) {
		c, err := addonCondition(ctx, "compromised", "ManifestApplied")
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "agent revoked"), client.IgnoreNotFound(err)
	})
	statusOut := &bytes.Buffer{}
	must.Succeed(t, (&status.Options{RestConfig: env.Config, CASecret: caNamespace + "/" + caName}).Run(ctx, statusOut))
	if !strings.Contains(statusOut.String(), "yes: key found in a public repository") {
		t.Errorf("status does not show the revocation:\n%s", statusOut)
	}

	// Unrevoke deletes the CSRs denied meanwhile: OCM's registration agent files none while ten
	// exist, and they would stay for an hour.
	out.Reset()
	must.Succeed(t, o.Unrevoke(ctx, "compromised", out))
	if !strings.Contains(out.String(), " CSRs denied while it was revoked deleted)") || strings.Contains(out.String(), "(0 CSRs") {
		t.Errorf("unrevoke says %q, want the denied CSRs deleted", out.String())
	}
	csrs := &certificatesv1.CertificateSigningRequestList{}
	must.Succeed(t, env.Client.List(ctx, csrs, client.MatchingLabels{clusterv1.ClusterNameLabelKey: "compromised"}))
	for _, csr := range csrs.Items {
		if ocmcsr.Condition(&csr, certificatesv1.CertificateDenied) != nil {
			t.Errorf("denied CSR %s left after unrevoke", csr.Name)
		}
	}
	// A key certified before the revocation is not certified again, even once its CSR is gone
	// (kube-controller-manager deletes CSRs after an hour): the record keeps the keys.
	must.Succeed(t, client.IgnoreNotFound(env.Client.Delete(ctx, firstCSR)))
	if c := waitDenied(t, fileCSR(t, agent, ocmcsr.Request{Cluster: "compromised", Key: firstKey})); c.Reason != string(policy.ReasonDuplicateKey) {
		t.Fatalf("a key certified before the revocation was denied %s (%s), want DuplicateKey", c.Reason, c.Message)
	}
	again := signed(fileCSR(t, agent, ocmcsr.Request{Cluster: "compromised"}))
	if _, err := currentCA(t).Verify(again, time.Now()); err != nil {
		t.Fatal(err)
	}
}
