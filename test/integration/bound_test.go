package integration

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"runtime"
	"sync"
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
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/ocmcsr"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// decided waits until every CSR in names is signed, denied or failed, and returns the
// certificates signed (by CSR name) and the reason of every refusal.
func decided(t *testing.T, names []string) (map[string][]byte, map[string]string) {
	t.Helper()
	signed, refused := map[string][]byte{}, map[string]string{}
	poll.Until(t, 90*time.Second, fmt.Sprintf("%d CSRs decided", len(names)), func(ctx context.Context) (bool, error) {
		for _, name := range names {
			if _, ok := signed[name]; ok {
				continue
			}
			if _, ok := refused[name]; ok {
				continue
			}
			csr, err := getCSR(ctx, name)
			if err != nil {
				return false, err
			}
			switch {
			case len(csr.Status.Certificate) > 0:
				signed[name] = csr.Status.Certificate
			case ocmcsr.Condition(csr, certificatesv1.CertificateDenied) != nil:
				refused[name] = ocmcsr.Condition(csr, certificatesv1.CertificateDenied).Reason
			case ocmcsr.Condition(csr, certificatesv1.CertificateFailed) != nil:
				refused[name] = ocmcsr.Condition(csr, certificatesv1.CertificateFailed).Reason
			}
		}
		return len(signed)+len(refused) == len(names), nil
	})
	return signed, refused
}

// blocklisted returns the fingerprints in the principal's TLS blocklist.
func blocklisted(t *testing.T) map[string]bool {
	t.Helper()
	cm := &corev1.ConfigMap{}
	must.Succeed(t, env.Client.Get(context.Background(), types.NamespacedName{Namespace: caNamespace, Name: identity.TLSBlocklistConfigMap}, cm))
	out := map[string]bool{}
	for k := range cm.Data {
		out[k] = true
	}
	return out
}

func fingerprint(t *testing.T, certPEM []byte) string {
	t.Helper()
	cert, err := issued.ParseCertificate(certPEM)
	must.Succeed(t, err)
	return issued.BlocklistKey(cert.Raw)
}

// A cluster that files requests with fresh keys without end gets at most issued.MaxUnexpired
// certificates; every one of them stays in its record after its CSR is gone, so `revoke`
// blocklists them all; and another cluster's request filed behind the flood is still signed.
func TestCertificatesBoundedPerCluster(t *testing.T) {
	ctx := context.Background()
	joinCluster(t, "flood", nil)
	joinCluster(t, "bystander", nil)
	agent := ocmcsr.AgentUsername("flood")
	const filed = 24
	var names []string
	for range filed {
		names = append(names, fileCSR(t, agent, ocmcsr.Request{Cluster: "flood"}))
	}
	bystander := fileCSR(t, ocmcsr.AgentUsername("bystander"), ocmcsr.Request{Cluster: "bystander"})
	signed, refused := decided(t, names)
	if len(signed) != issued.MaxUnexpired {
		t.Errorf("%d of %d requests signed, want exactly the bound %d", len(signed), filed, issued.MaxUnexpired)
	}
	for name, reason := range refused {
		if reason != string(policy.ReasonTooManyCertificates) {
			t.Errorf("CSR %s refused %s, want %s", name, reason, policy.ReasonTooManyCertificates)
		}
	}
	if s, _ := decided(t, []string{bystander}); len(s) != 1 {
		t.Error("the other cluster's request was not signed")
	}
	t.Logf("%d requests with fresh keys: %d signed, %d refused %s", filed, len(signed), len(refused), policy.ReasonTooManyCertificates)

	// kube-controller-manager deletes CSRs an hour after they are decided: the record is all
	// that is left, and it must hold every unexpired certificate.
	for _, name := range names {
		must.Succeed(t, client.IgnoreNotFound(env.Client.Delete(ctx, &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: name}})))
	}
	o := &revoke.Options{RestConfig: env.Config, Reason: "flooded", PrincipalNamespace: caNamespace, Namespace: hubfixture.LeaderNamespace}
	out := &bytes.Buffer{}
	must.Succeed(t, o.Revoke(ctx, "flood", out))
	t.Log(out.String())
	blocked := blocklisted(t)
	for name, cert := range signed {
		if !blocked[fingerprint(t, cert)] {
			t.Errorf("the certificate of CSR %s is not on the blocklist after revoke", name)
		}
	}
}

// Signing and revocation interleave: requests are filed while `revoke` runs. Whatever the
// order, every certificate signed for the cluster ends on the blocklist, and none is signed
// after the revocation is recorded.
func TestRevocationRacesSigning(t *testing.T) {
	ctx := context.Background()
	for round := range 4 {
		cluster := fmt.Sprintf("racer-%d", round)
		joinCluster(t, cluster, nil)
		agent := ocmcsr.AgentUsername(cluster)
		var (
			mu    sync.Mutex
			names []string
			wg    sync.WaitGroup
		)
		for range issued.MaxUnexpired {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fileCSR(t, agent, ocmcsr.Request{Cluster: cluster})
				mu.Lock()
				names = append(names, name)
				mu.Unlock()
			}()
		}
		// Revoke while they are being decided: a little later each round.
		time.Sleep(time.Duration(round) * 150 * time.Millisecond)
		o := &revoke.Options{RestConfig: env.Config, Reason: "race", PrincipalNamespace: caNamespace, Namespace: hubfixture.LeaderNamespace}
		must.Succeed(t, o.Revoke(ctx, cluster, io.Discard))
		wg.Wait()
		signed, refused := decided(t, names)
		blocked := blocklisted(t)
		for name, cert := range signed {
			if !blocked[fingerprint(t, cert)] {
				t.Errorf("%s: the certificate of CSR %s was signed but is not on the blocklist", cluster, name)
			}
		}
		rec, err := issued.Load(ctx, env.Client, hubfixture.LeaderNamespace, cluster)
		must.Succeed(t, err)
		if rec.Revocation == nil || len(rec.Certificates) != len(signed) {
			t.Errorf("%s: record holds %d certificates (revoked: %v), %d were signed", cluster, len(rec.Certificates), rec.Revocation != nil, len(signed))
		}
		t.Logf("%s: %d signed (all blocklisted), %d refused", cluster, len(signed), len(refused))
	}
}

// Anyone who may create CSRs may file large ones for another signer. The manager caches only
// its own signer's, so 400 requests of about 1 MiB for another signer leave its memory as it
// was; before, it cached them all and was OOMKilled on a real hub.
func TestForeignCSRsDoNotGrowTheManager(t *testing.T) {
	if testing.Short() {
		t.Skip("files 400 MiB of CSRs")
	}
	ctx := context.Background()
	heap := func() uint64 {
		// The manager runs in this process (main_test.go): its caches are this heap.
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	// One request of about 1 MiB (PEM): an OCM-shaped request with a large opaque extension.
	ca := currentCA(t)
	csr, _, err := ocmcsr.New(ocmcsr.Request{Cluster: "victim", CAID: ca.ID(), Signer: "example.com/other",
		Template: &x509.CertificateRequest{Subject: pkix.Name{CommonName: "victim"}, ExtraExtensions: []pkix.Extension{{
			Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 2}, Value: bytes.Repeat([]byte{'x'}, 3<<18)}}}})
	must.Succeed(t, err)
	request := csr.Spec.Request
	joinCluster(t, "hoarder", nil)
	hoarder := clientAs(t, ocmcsr.AgentUsername("hoarder"))
	before := heap()
	const n = 400
	var names []string
	for i := range n {
		c := &certificatesv1.CertificateSigningRequest{}
		c.GenerateName = fmt.Sprintf("hoard-%d-", i)
		c.Labels = map[string]string{clusterv1.ClusterNameLabelKey: "hoarder"}
		c.Spec = certificatesv1.CertificateSigningRequestSpec{SignerName: "example.com/other", Request: request,
			Usages: []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth}}
		must.Succeed(t, hoarder.Create(ctx, c))
		names = append(names, c.Name)
	}
	t.Cleanup(func() {
		for _, name := range names {
			_ = env.Client.Delete(context.Background(), &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: name}})
		}
	})
	// A request of the add-on's signer filed after them is decided: the manager's watches are
	// past them.
	last := fileCSR(t, ocmcsr.AgentUsername("hoarder"), ocmcsr.Request{Cluster: "hoarder"})
	decided(t, []string{last})
	after := heap()
	filedBytes := uint64(n * len(request))
	growth := int64(after) - int64(before)
	t.Logf("filed %d CSRs of %d KiB for another signer (%d MiB): heap %d MiB -> %d MiB (%+.1f MiB, %.3f of what was filed)",
		n, len(request)>>10, filedBytes>>20, before>>20, after>>20, float64(growth)/(1<<20), float64(growth)/float64(filedBytes))
	if growth > int64(filedBytes/10) {
		t.Fatalf("the manager's heap grew by %d MiB for %d MiB of CSRs it does not decide", growth>>20, filedBytes>>20)
	}
	// Its own signer's requests are cut to what is decided in the cache: a 1 MiB request is
	// refused as too large, and costs the cache no more than certificates.MaxRequestBytes.
	big, _, err := ocmcsr.New(ocmcsr.Request{Cluster: "hoarder", CAID: ca.ID(), Template: &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "hoarder"}, ExtraExtensions: []pkix.Extension{{
			Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 2}, Value: bytes.Repeat([]byte{'x'}, 1<<20)}}}})
	must.Succeed(t, err)
	must.Succeed(t, hoarder.Create(ctx, big))
	names = append(names, big.Name)
	if c := waitDenied(t, big.Name); c.Reason != string(policy.ReasonRequestTooLarge) {
		t.Fatalf("a 1 MiB request of the add-on's signer denied %s (%s), want %s", c.Reason, c.Message, policy.ReasonRequestTooLarge)
	}
}
