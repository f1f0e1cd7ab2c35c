package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	operatorv1 "open-cluster-management.io/api/operator/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/approver"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/signer"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/manager"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/metrictext"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/ocmcsr"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
)

var (
	userClientsMu sync.Mutex
	userClients   = map[string]client.Client{}
)

// clientAs returns a client authenticated as user, so the API server, not the test, sets the
// CSR's spec.username, as it does for the OCM agent.
func clientAs(t *testing.T, user string) client.Client {
	t.Helper()
	userClientsMu.Lock()
	defer userClientsMu.Unlock()
	if c, ok := userClients[user]; ok {
		return c
	}
	// The groups OCM gives a cluster's agent, and system:masters for the rights to file CSRs.
	cfg, err := env.AddUser(user, append(ocmcsr.AgentGroupsOf(user), "system:masters")...)
	must.Succeed(t, err)
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	must.Succeed(t, err)
	userClients[user] = c
	return c
}

// fileCSR creates r's CSR as user and returns its name.
func fileCSR(t *testing.T, user string, r ocmcsr.Request) string {
	t.Helper()
	if r.CAID == "" {
		r.CAID = currentCA(t).ID()
	}
	csr, _, err := ocmcsr.New(r)
	must.Succeed(t, err)
	must.Succeed(t, clientAs(t, user).Create(context.Background(), csr))
	return csr.Name
}

func getCSR(ctx context.Context, name string) (*certificatesv1.CertificateSigningRequest, error) {
	csr := &certificatesv1.CertificateSigningRequest{}
	return csr, env.Client.Get(ctx, types.NamespacedName{Name: name}, csr)
}

// waitDenied waits for CSR name to be denied and returns the condition.
func waitDenied(t *testing.T, name string) *certificatesv1.CertificateSigningRequestCondition {
	t.Helper()
	var c *certificatesv1.CertificateSigningRequestCondition
	poll.Until(t, 30*time.Second, "CSR "+name+" denied", func(ctx context.Context) (bool, error) {
		csr, err := getCSR(ctx, name)
		if err == nil {
			c = ocmcsr.Condition(csr, certificatesv1.CertificateDenied)
		}
		return c != nil, err
	})
	return c
}

func currentCA(t *testing.T) *authority.CA {
	t.Helper()
	ca, err := authority.Parse(caCertPEM, caKeyPEM, time.Now())
	must.Succeed(t, err)
	return ca
}

// A CSR made exactly as the OCM registration agent makes it is approved and signed, and the
// certificate verifies against the CA with CN = the cluster name.
func TestAgentCSRSigned(t *testing.T) {
	joinCluster(t, "signed", nil)
	name := fileCSR(t, ocmcsr.AgentUsername("signed"), ocmcsr.Request{Cluster: "signed"})
	var csr *certificatesv1.CertificateSigningRequest
	poll.Until(t, 30*time.Second, "certificate issued", func(ctx context.Context) (bool, error) {
		var err error
		csr, err = getCSR(ctx, name)
		return err == nil && len(csr.Status.Certificate) > 0, err
	})
	if c := ocmcsr.Condition(csr, certificatesv1.CertificateApproved); c == nil || c.Reason != approver.ReasonApproved {
		t.Fatalf("approved condition %+v", c)
	}
	cert, err := currentCA(t).Verify(csr.Status.Certificate, time.Now())
	if err != nil {
		t.Fatalf("certificate does not verify against the CA: %v", err)
	}
	if want := "CN=signed,OU=" + identity.CAUnit(currentCA(t).ID()); cert.Subject.String() != want {
		t.Fatalf("subject %q, want %s", cert.Subject, want)
	}
	if lifetime := cert.NotAfter.Sub(cert.NotBefore) - authority.ClockSkew; lifetime < 7*24*time.Hour-time.Minute || lifetime > 7*24*time.Hour+time.Minute {
		t.Fatalf("lifetime %s, want the default 168h", lifetime)
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Fatalf("ext key usage %v", cert.ExtKeyUsage)
	}
	waitForEvent(t, name, signer.ReasonSigned)
	body := scrapeMetrics(t)
	for _, want := range []struct {
		name   string
		labels map[string]string
		min    float64
		max    float64
	}{
		{"argocd_agent_addon_agent_certificate_not_after_seconds", map[string]string{"cluster": "signed"}, float64(cert.NotAfter.Unix()), float64(cert.NotAfter.Unix())},
		{"argocd_agent_addon_ca_not_after_seconds", nil, float64(currentCA(t).Cert.NotAfter.Unix()), float64(currentCA(t).Cert.NotAfter.Unix())},
		{"argocd_agent_addon_csr_signed_total", nil, 1, math.MaxFloat64},
		{"argocd_agent_addon_csr_approved_total", nil, 1, math.MaxFloat64},
	} {
		v, ok, err := metrictext.Value(body, want.name, want.labels)
		if err != nil || !ok || v < want.min || v > want.max {
			t.Errorf("metric %s%v = %v (found %v, %v), want %v to %v", want.name, want.labels, v, ok, err, want.min, want.max)
		}
	}
}

// None of these CSRs may be signed, and each leaves its reason on the CSR and in an event.
func TestBadCSRsRefused(t *testing.T) {
	joinCluster(t, "victim", nil)
	joinCluster(t, "other", nil)
	joinCluster(t, "vic", nil) // prefix of "victim": its agent must not pass as victim's
	notAccepted := &clusterv1.ManagedCluster{}
	joinCluster(t, "pending", nil)
	must.Succeed(t, env.Client.Get(context.Background(), types.NamespacedName{Name: "pending"}, notAccepted))
	notAccepted.Spec.HubAcceptsClient = false
	must.Succeed(t, env.Client.Update(context.Background(), notAccepted))

	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	must.Succeed(t, err)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	must.Succeed(t, err)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	must.Succeed(t, err)
	// A cluster being deleted: a finalizer keeps it in that state.
	joinCluster(t, "leaving", nil)
	leaving := &clusterv1.ManagedCluster{}
	must.Succeed(t, env.Client.Get(context.Background(), types.NamespacedName{Name: "leaving"}, leaving))
	leaving.Finalizers = append(leaving.Finalizers, "test.argocd-agent-addon/hold")
	must.Succeed(t, env.Client.Update(context.Background(), leaving))
	must.Succeed(t, env.Client.Delete(context.Background(), leaving))
	// Accepted, but the add-on is not installed on it: the hub never enrolled it.
	joinCluster(t, "unenrolled", nil)
	must.Succeed(t, env.Client.Delete(context.Background(), &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: "unenrolled", Name: identity.AddonName}}))
	poll.Until(t, 30*time.Second, "add-on of unenrolled removed", func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, types.NamespacedName{Namespace: "unenrolled", Name: identity.AddonName}, &addonv1beta1.ManagedClusterAddOn{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	// A cluster named "cluster": OCM's add-on identities of every cluster start with its
	// requester prefix, "system:open-cluster-management:cluster:".
	joinCluster(t, "cluster", nil)
	caTrue, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	must.Succeed(t, err)
	spiffe, err := url.Parse("spiffe://hub/ns/argocd/sa/argocd-agent-principal")
	must.Succeed(t, err)
	// The OU naming the signing CA: every subject below has it unless the case is about the OU,
	// so each is refused for the reason it tests.
	victimOU := []string{identity.CAUnit(currentCA(t).ID())}
	victimName := func(extra ...pkix.AttributeTypeAndValue) pkix.Name {
		return pkix.Name{CommonName: "victim", OrganizationalUnit: victimOU, ExtraNames: extra}
	}
	tenYears := int32(10 * 365 * 24 * 3600)
	weekAndHour := int32((7*24 + 1) * 3600)
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	must.Succeed(t, err)
	rsa2047, err := rsa.GenerateKey(rand.Reader, 2047)
	must.Succeed(t, err)
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	must.Succeed(t, err)
	serverAuthEKU, err := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 1}})
	must.Succeed(t, err)
	// OCM's gRPC server files CSRs as itself and names the agent in the csr-user annotation.
	grpcServer := manager.DefaultGRPCServerUsername
	victimAgent := ocmcsr.AgentUsername("victim")
	cases := []struct {
		name   string
		user   string
		req    ocmcsr.Request
		reason policy.Reason
	}{
		{"label of another cluster", victimAgent, ocmcsr.Request{Cluster: "victim", Labels: map[string]string{
			clusterv1.ClusterNameLabelKey: "other", addonv1beta1.AddonLabelKey: identity.AddonName}}, policy.ReasonWrongRequester},
		{"requester of another cluster", ocmcsr.AgentUsername("other"), ocmcsr.Request{Cluster: "victim"}, policy.ReasonWrongRequester},
		{"requester prefix collision", ocmcsr.AgentUsername("vic"), ocmcsr.Request{Cluster: "victim"}, policy.ReasonWrongRequester},
		{"gRPC csr-user annotation from a non-gRPC requester", "mallory", ocmcsr.Request{Cluster: "victim",
			Annotations: map[string]string{operatorv1.CSRUsernameAnnotation: victimAgent}}, policy.ReasonWrongRequester},
		{"not an OCM agent", "mallory", ocmcsr.Request{Cluster: "victim"}, policy.ReasonWrongRequester},
		{"CN of another cluster", victimAgent, ocmcsr.Request{Cluster: "victim", Subject: &pkix.Name{CommonName: "other", OrganizationalUnit: victimOU}}, policy.ReasonSubjectMismatch},
		{"server auth usage", victimAgent, ocmcsr.Request{Cluster: "victim", Usages: []certificatesv1.KeyUsage{
			certificatesv1.UsageClientAuth, certificatesv1.UsageServerAuth}}, policy.ReasonDisallowedUsages},
		{"extra DNS SAN", victimAgent, ocmcsr.Request{Cluster: "victim", DNSNames: []string{identity.CSRDNSName, "argocd-agent-principal"}}, policy.ReasonDisallowedSANs},
		{"IP SAN", victimAgent, ocmcsr.Request{Cluster: "victim", Template: &x509.CertificateRequest{
			Subject: victimName(), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}}, policy.ReasonDisallowedSANs},
		{"RSA-1024 key", victimAgent, ocmcsr.Request{Cluster: "victim", Key: rsa1024}, policy.ReasonWeakOrUnsupportedKey},
		{"unknown cluster", ocmcsr.AgentUsername("ghost"), ocmcsr.Request{Cluster: "ghost"}, policy.ReasonUnknownCluster},
		{"cluster not accepted", ocmcsr.AgentUsername("pending"), ocmcsr.Request{Cluster: "pending"}, policy.ReasonClusterNotAccepted},
		{"cluster being deleted", ocmcsr.AgentUsername("leaving"), ocmcsr.Request{Cluster: "leaving"}, policy.ReasonClusterDeleting},
		{"cluster the hub has not enrolled", ocmcsr.AgentUsername("unenrolled"), ocmcsr.Request{Cluster: "unenrolled"}, policy.ReasonNotEnrolled},
		{"add-on identity of cluster other for a cluster named cluster", "system:open-cluster-management:cluster:other:addon:argocd-agent:agent:argocd-agent-agent",
			ocmcsr.Request{Cluster: "cluster"}, policy.ReasonWrongRequester},
		{"absent cluster label", victimAgent, ocmcsr.Request{Cluster: "victim", Labels: map[string]string{
			addonv1beta1.AddonLabelKey: identity.AddonName}}, policy.ReasonMissingClusterLabel},
		{"O of another cluster's agents", victimAgent, ocmcsr.Request{Cluster: "victim", Subject: &pkix.Name{CommonName: "victim", OrganizationalUnit: victimOU,
			Organization: []string{"system:open-cluster-management:cluster:other:addon:argocd-agent"}}}, policy.ReasonSubjectMismatch},
		{"OU smuggled in", victimAgent, ocmcsr.Request{Cluster: "victim", Subject: &pkix.Name{CommonName: "victim",
			OrganizationalUnit: append([]string{"other"}, victimOU...)}}, policy.ReasonSubjectMismatch},
		{"subject naming another CA (as filed before a rollover)", victimAgent, ocmcsr.Request{Cluster: "victim", CAID: "0000000000000000"},
			policy.ReasonSubjectMismatch},
		{"second CN RDN naming another cluster", victimAgent, ocmcsr.Request{Cluster: "victim", Subject: ptr(victimName(
			pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "other"}))}, policy.ReasonSubjectMismatch},
		{"system:masters as O", victimAgent, ocmcsr.Request{Cluster: "victim", Subject: &pkix.Name{CommonName: "victim", OrganizationalUnit: victimOU,
			Organization: []string{"system:masters"}}}, policy.ReasonSubjectMismatch},
		{"empty subject", victimAgent, ocmcsr.Request{Cluster: "victim", Subject: &pkix.Name{}}, policy.ReasonSubjectMismatch},
		{"URI SAN", victimAgent, ocmcsr.Request{Cluster: "victim", Template: &x509.CertificateRequest{
			Subject: victimName(), URIs: []*url.URL{spiffe}}}, policy.ReasonDisallowedSANs},
		{"email SAN", victimAgent, ocmcsr.Request{Cluster: "victim", Template: &x509.CertificateRequest{
			Subject: victimName(), EmailAddresses: []string{"admin@example.com"}}}, policy.ReasonDisallowedSANs},
		{"basic constraints CA:true", victimAgent, ocmcsr.Request{Cluster: "victim", Template: &x509.CertificateRequest{
			Subject: victimName(), ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: caTrue}}}},
			policy.ReasonDisallowedExtension},
		{"code signing usage", victimAgent, ocmcsr.Request{Cluster: "victim", Usages: []certificatesv1.KeyUsage{
			certificatesv1.UsageClientAuth, certificatesv1.UsageCodeSigning}}, policy.ReasonDisallowedUsages},
		{"no client auth usage", victimAgent, ocmcsr.Request{Cluster: "victim", Usages: []certificatesv1.KeyUsage{
			certificatesv1.UsageDigitalSignature}}, policy.ReasonDisallowedUsages},
		{"ECDSA P-224 key", victimAgent, ocmcsr.Request{Cluster: "victim", Key: p224}, policy.ReasonWeakOrUnsupportedKey},
		{"Ed25519 key", victimAgent, ocmcsr.Request{Cluster: "victim", Key: ed}, policy.ReasonWeakOrUnsupportedKey},
		{"huge request", victimAgent, ocmcsr.Request{Cluster: "victim", Template: &x509.CertificateRequest{
			Subject: victimName(), ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1},
				Value: make([]byte, 20<<10)}}}}, policy.ReasonRequestTooLarge},
		{"expirationSeconds abuse (10 years)", victimAgent, ocmcsr.Request{Cluster: "victim", ExpirationSeconds: &tenYears}, policy.ReasonBadExpiration},
		{"expirationSeconds past the signer's lifetime by an hour", victimAgent, ocmcsr.Request{Cluster: "victim", ExpirationSeconds: &weekAndHour}, policy.ReasonBadExpiration},
		{"ECDSA with SHA-1 signature", victimAgent, ocmcsr.Request{Cluster: "victim", Template: &x509.CertificateRequest{
			Subject: victimName(), DNSNames: []string{identity.CSRDNSName}, SignatureAlgorithm: x509.ECDSAWithSHA1}}, policy.ReasonWeakSignature},
		{"RSA with SHA-1 signature", victimAgent, ocmcsr.Request{Cluster: "victim", Key: rsa2048, Template: &x509.CertificateRequest{
			Subject: victimName(), DNSNames: []string{identity.CSRDNSName}, SignatureAlgorithm: x509.SHA1WithRSA}}, policy.ReasonWeakSignature},
		{"RSA-2047 key", victimAgent, ocmcsr.Request{Cluster: "victim", Key: rsa2047}, policy.ReasonWeakOrUnsupportedKey},
		{"ECDSA P-521 key", victimAgent, ocmcsr.Request{Cluster: "victim", Key: p521}, policy.ReasonWeakOrUnsupportedKey},
		{"bootstrap identity", "system:bootstrap:abcdef", ocmcsr.Request{Cluster: "victim"}, policy.ReasonWrongRequester},
		{"gRPC server filing for another cluster's agent", grpcServer, ocmcsr.Request{Cluster: "victim",
			Annotations: map[string]string{operatorv1.CSRUsernameAnnotation: ocmcsr.AgentUsername("other")}}, policy.ReasonWrongRequester},
		{"gRPC server filing with no csr-user annotation", grpcServer, ocmcsr.Request{Cluster: "victim"}, policy.ReasonWrongRequester},
		{"hub admin, not an agent", "kube:admin", ocmcsr.Request{Cluster: "victim"}, policy.ReasonWrongRequester},
		{"label of another add-on", victimAgent, ocmcsr.Request{Cluster: "victim", Labels: map[string]string{
			clusterv1.ClusterNameLabelKey: "victim", addonv1beta1.AddonLabelKey: "managed-serviceaccount"}}, policy.ReasonWrongAddon},
		{"cluster label not a cluster name", victimAgent, ocmcsr.Request{Cluster: "victim", Labels: map[string]string{
			clusterv1.ClusterNameLabelKey: "VICTIM", addonv1beta1.AddonLabelKey: identity.AddonName}}, policy.ReasonUnknownCluster},
		{"CN differing in case", victimAgent, ocmcsr.Request{Cluster: "victim", Subject: &pkix.Name{CommonName: "Victim", OrganizationalUnit: victimOU}}, policy.ReasonSubjectMismatch},
		{"CN of the principal", victimAgent, ocmcsr.Request{Cluster: "victim", Subject: &pkix.Name{CommonName: "argocd-agent-principal", OrganizationalUnit: victimOU}}, policy.ReasonSubjectMismatch},
		{"no OU naming the CA", victimAgent, ocmcsr.Request{Cluster: "victim", Subject: &pkix.Name{CommonName: "victim"}}, policy.ReasonSubjectMismatch},
		{"serial number attribute added", victimAgent, ocmcsr.Request{Cluster: "victim", Subject: ptr(victimName(
			pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 5}, Value: "1"}))}, policy.ReasonSubjectMismatch},
		{"wildcard DNS SAN", victimAgent, ocmcsr.Request{Cluster: "victim", DNSNames: []string{"*." + identity.CSRDNSName}}, policy.ReasonDisallowedSANs},
		{"DNS SAN of the principal's Service", victimAgent, ocmcsr.Request{Cluster: "victim", DNSNames: []string{"argocd-agent-principal.argocd.svc"}}, policy.ReasonDisallowedSANs},
		{"key usage extension asking for certificate signing", victimAgent, ocmcsr.Request{Cluster: "victim", Template: &x509.CertificateRequest{
			Subject: victimName(), ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: true, Value: []byte{3, 2, 1, 6}}}}},
			policy.ReasonDisallowedExtension},
		{"extended key usage extension asking for server auth", victimAgent, ocmcsr.Request{Cluster: "victim", Template: &x509.CertificateRequest{
			Subject: victimName(), ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Value: serverAuthEKU}}}},
			policy.ReasonDisallowedExtension},
		{"cert sign usage", victimAgent, ocmcsr.Request{Cluster: "victim", Usages: []certificatesv1.KeyUsage{
			certificatesv1.UsageClientAuth, certificatesv1.UsageCertSign}}, policy.ReasonDisallowedUsages},
		{"any usage", victimAgent, ocmcsr.Request{Cluster: "victim", Usages: []certificatesv1.KeyUsage{
			certificatesv1.UsageClientAuth, certificatesv1.UsageAny}}, policy.ReasonDisallowedUsages},
	}
	names := map[string]string{}
	for _, tc := range cases {
		names[tc.name] = fileCSR(t, tc.user, tc.req)
	}
	// Malformed PEM never reaches the add-on: the API server refuses it.
	malformed := ocmcsr.Wrap(ocmcsr.Request{Cluster: "victim"}, []byte("-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgQ1NS\n-----END CERTIFICATE REQUEST-----\n"))
	if err := clientAs(t, victimAgent).Create(context.Background(), malformed); err == nil {
		t.Error("the API server accepted a malformed request")
	}
	// Wrong signer: not the add-on's to decide, nor to cache (certificates.CSRCache): it stays
	// pending, unsigned, and the manager never sees it.
	wrongSigner := fileCSR(t, victimAgent, ocmcsr.Request{Cluster: "victim", Signer: "example.com/other-signer"})

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := names[tc.name]
			var csr *certificatesv1.CertificateSigningRequest
			poll.Until(t, 30*time.Second, "CSR denied", func(ctx context.Context) (bool, error) {
				var err error
				csr, err = getCSR(ctx, name)
				return err == nil && ocmcsr.Condition(csr, certificatesv1.CertificateDenied) != nil, err
			})
			if c := ocmcsr.Condition(csr, certificatesv1.CertificateDenied); c.Reason != string(tc.reason) || c.Message == "" {
				t.Errorf("denied with %q (%s), want %q", c.Reason, c.Message, tc.reason)
			}
			if ocmcsr.Condition(csr, certificatesv1.CertificateApproved) != nil || len(csr.Status.Certificate) > 0 {
				t.Error("bad CSR approved or signed")
			}
			waitForEvent(t, name, string(tc.reason))
		})
	}
	t.Run("wrong signer", func(t *testing.T) {
		// Filed before the cases above were all decided: had the manager seen it, it would
		// have been decided by now too.
		csr, err := getCSR(context.Background(), wrongSigner)
		must.Succeed(t, err)
		if len(csr.Status.Conditions) > 0 || len(csr.Status.Certificate) > 0 {
			t.Fatalf("CSR for another signer was decided or signed: %+v", csr.Status)
		}
		events := &eventsv1.EventList{}
		must.Succeed(t, env.Client.List(context.Background(), events))
		for _, e := range events.Items {
			if e.Regarding.Name == wrongSigner {
				t.Errorf("the manager acted on a CSR for another signer: event %s %q", e.Reason, e.Note)
			}
		}
	})
	t.Run("metrics count denials by reason", func(t *testing.T) {
		body := scrapeMetrics(t)
		for reason, want := range map[policy.Reason]float64{policy.ReasonWrongRequester: 10, policy.ReasonSubjectMismatch: 11, policy.ReasonWeakSignature: 2} {
			v, ok, err := metrictext.Value(body, "argocd_agent_addon_csr_denied_total", map[string]string{"reason": string(reason)})
			if err != nil || !ok || v != want {
				t.Errorf("csr_denied_total{reason=%q} = %v (found %v, %v), want %v", reason, v, ok, err, want)
			}
		}
	})
}

// The signer checks an approved CSR again when it signs: a cluster that lost the hub's
// acceptance between approval and signing gets no certificate, and the CSR is marked Failed.
func TestSignerRechecksApprovedCSRs(t *testing.T) {
	joinCluster(t, "recheck", nil)
	ctx := context.Background()
	// Hold signing back by removing the CA, so the CSR waits approved but unsigned.
	must.Succeed(t, env.Client.Delete(ctx, caSecret()))
	defer func() { must.Succeed(t, env.Client.Create(ctx, caSecret())) }()
	name := fileCSR(t, ocmcsr.AgentUsername("recheck"), ocmcsr.Request{Cluster: "recheck"})
	// Without a CA the add-on decides nothing; approve it as any holder of the approve right
	// could, which is what the signer must not trust blindly.
	waitForEvent(t, name, certificates.ReasonCAUnavailable)
	csr, err := getCSR(ctx, name)
	must.Succeed(t, err)
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "ApprovedByAnotherApprover", LastUpdateTime: metav1.Now()})
	must.Succeed(t, env.Client.SubResource("approval").Update(ctx, csr))
	waitForEventOf(t, name, certificates.ReasonCAUnavailable, "Sign")
	cluster := &clusterv1.ManagedCluster{}
	must.Succeed(t, env.Client.Get(ctx, types.NamespacedName{Name: "recheck"}, cluster))
	cluster.Spec.HubAcceptsClient = false
	must.Succeed(t, env.Client.Update(ctx, cluster))
	must.Succeed(t, env.Client.Create(ctx, caSecret()))
	poll.Until(t, 30*time.Second, "approved CSR marked Failed", func(ctx context.Context) (bool, error) {
		csr, err := getCSR(ctx, name)
		return err == nil && ocmcsr.Condition(csr, certificatesv1.CertificateFailed) != nil, err
	})
	csr, err = getCSR(ctx, name)
	must.Succeed(t, err)
	if c := ocmcsr.Condition(csr, certificatesv1.CertificateFailed); c.Reason != string(policy.ReasonClusterNotAccepted) {
		t.Fatalf("failed with %q, want %q", c.Reason, policy.ReasonClusterNotAccepted)
	}
	if len(csr.Status.Certificate) > 0 {
		t.Fatal("signed for a cluster the hub no longer accepts")
	}
	must.Succeed(t, env.Client.Delete(ctx, caSecret())) // the deferred create restores it
}

// With the CA secret missing nothing is decided (the expected subject names the CA) and nothing
// is signed; once a valid CA appears, the CSR is approved and signed.
func TestSigningWaitsForCA(t *testing.T) {
	joinCluster(t, "noca", nil)
	ctx := context.Background()
	restored := withoutCA(t)
	name := fileCSR(t, ocmcsr.AgentUsername("noca"), ocmcsr.Request{Cluster: "noca"})
	waitForEvent(t, name, certificates.ReasonCAUnavailable)
	time.Sleep(2 * time.Second)
	if csr, _ := getCSR(ctx, name); !certificates.Pending(csr) || len(csr.Status.Certificate) > 0 {
		t.Fatalf("decided or signed without a CA secret: %+v", csr.Status.Conditions)
	}
	// A broken CA secret (key of another CA) is not used either.
	_, otherKey, err := testca.New("other-ca", time.Hour)
	must.Succeed(t, err)
	broken := caSecret()
	broken.Data[corev1.TLSPrivateKeyKey] = otherKey
	must.Succeed(t, env.Client.Create(ctx, broken))
	time.Sleep(2 * time.Second)
	if csr, _ := getCSR(ctx, name); !certificates.Pending(csr) || len(csr.Status.Certificate) > 0 {
		t.Fatal("decided or signed with a CA whose key does not match")
	}
	fixed := &corev1.Secret{}
	must.Succeed(t, env.Client.Get(ctx, types.NamespacedName{Namespace: caNamespace, Name: caName}, fixed))
	fixed.Data[corev1.TLSPrivateKeyKey] = caKeyPEM
	must.Succeed(t, env.Client.Update(ctx, fixed))
	restored()
	// Well before the one-minute retry: the CA secret watch resumes approval and signing.
	poll.Until(t, 20*time.Second, "signing resumed after the CA was fixed", func(ctx context.Context) (bool, error) {
		csr, err := getCSR(ctx, name)
		return err == nil && len(csr.Status.Certificate) > 0, err
	})
	csr, _ := getCSR(ctx, name)
	if _, err := currentCA(t).Verify(csr.Status.Certificate, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// withoutCA deletes the CA secret; the test puts it back and calls restored, or its cleanup
// puts it back.
func withoutCA(t *testing.T) (restored func()) {
	t.Helper()
	must.Succeed(t, env.Client.Delete(context.Background(), caSecret()))
	done := false
	t.Cleanup(func() {
		if !done {
			_ = env.Client.Create(context.Background(), caSecret())
		}
	})
	return func() { done = true }
}

func waitForEvent(t *testing.T, csrName, reason string) {
	t.Helper()
	waitForEventOf(t, csrName, reason, "")
}

// waitForEventOf waits for an event of reason whose action is action, any if empty: the approver
// ("Approve", "Deny") and the signer ("Sign") share some reasons.
func waitForEventOf(t *testing.T, csrName, reason, action string) {
	t.Helper()
	poll.Until(t, 30*time.Second, "event "+reason+" "+action+" for CSR "+csrName, func(ctx context.Context) (bool, error) {
		events := &eventsv1.EventList{}
		if err := env.Client.List(ctx, events); err != nil {
			return false, err
		}
		for _, e := range events.Items {
			if e.Regarding.Kind == "CertificateSigningRequest" && e.Regarding.Name == csrName && e.Reason == reason && (action == "" || e.Action == action) {
				return true, nil
			}
		}
		return false, nil
	})
}

func scrapeMetrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	must.Succeed(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must.Succeed(t, err)
	return string(b)
}

func ptr[T any](v T) *T { return &v }

// A request replayed with a key already approved is refused: OCM makes a new key every time.
func TestReplayedKeyRefused(t *testing.T) {
	joinCluster(t, "replay", nil)
	agent := ocmcsr.AgentUsername("replay")
	csr, _, err := ocmcsr.New(ocmcsr.Request{Cluster: "replay", CAID: currentCA(t).ID()})
	must.Succeed(t, err)
	replayed := csr.DeepCopy()
	must.Succeed(t, clientAs(t, agent).Create(context.Background(), csr))
	poll.Until(t, 30*time.Second, "first request signed", func(ctx context.Context) (bool, error) {
		got, err := getCSR(ctx, csr.Name)
		return err == nil && len(got.Status.Certificate) > 0, err
	})
	must.Succeed(t, clientAs(t, agent).Create(context.Background(), replayed))
	poll.Until(t, 30*time.Second, "replayed request denied", func(ctx context.Context) (bool, error) {
		got, err := getCSR(ctx, replayed.Name)
		if err != nil {
			return false, err
		}
		c := ocmcsr.Condition(got, certificatesv1.CertificateDenied)
		return c != nil && c.Reason == string(policy.ReasonDuplicateKey) && len(got.Status.Certificate) == 0, nil
	})
	// A fresh key from the same agent is still fine.
	fresh := fileCSR(t, agent, ocmcsr.Request{Cluster: "replay"})
	poll.Until(t, 30*time.Second, "fresh request signed", func(ctx context.Context) (bool, error) {
		got, err := getCSR(ctx, fresh)
		return err == nil && len(got.Status.Certificate) > 0, err
	})
}

// A manager that recorded a certificate for a CSR but died before putting it on the CSR (or
// whose status write failed) puts that same certificate there when it comes back, instead of
// signing the CSR a second time: each CSR gets one certificate, and the record holds only
// certificates handed out. The record is written here as the dead manager left it, while the
// CSR waits for the CA.
func TestRecordedCertificateReused(t *testing.T) {
	joinCluster(t, "reused", nil)
	ctx := context.Background()
	restored := withoutCA(t)
	name := fileCSR(t, ocmcsr.AgentUsername("reused"), ocmcsr.Request{Cluster: "reused"})
	waitForEvent(t, name, certificates.ReasonCAUnavailable)
	csr, err := getCSR(ctx, name)
	must.Succeed(t, err)
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil {
		t.Fatal("CSR request is not PEM")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	must.Succeed(t, err)
	ca := currentCA(t)
	now := time.Now()
	left, err := ca.Sign(req, time.Hour, now)
	must.Succeed(t, err)
	leftCert, err := issued.ParseCertificate(left)
	must.Succeed(t, err)
	entry := issued.Of(leftCert, ca.ID())
	entry.CSR, entry.PEM = csr.UID, string(left)
	// As the signer records it: with the key, which no other CSR may have certified again.
	_, err = issued.Update(ctx, env.Client, env.Client, hubfixture.LeaderNamespace, "reused", func(r *issued.Record) error {
		r.Issue(entry, issued.KeyOf(req.RawSubjectPublicKeyInfo), now)
		return nil
	})
	must.Succeed(t, err)

	must.Succeed(t, env.Client.Create(ctx, caSecret()))
	restored()
	poll.Until(t, 20*time.Second, "CSR signed after the CA came back", func(ctx context.Context) (bool, error) {
		csr, err = getCSR(ctx, name)
		return err == nil && len(csr.Status.Certificate) > 0, err
	})
	if string(csr.Status.Certificate) != string(left) {
		t.Fatal("the CSR got a new certificate, not the one recorded for it: it was signed twice")
	}
	recorded, err := issued.Load(ctx, env.Client, hubfixture.LeaderNamespace, "reused")
	must.Succeed(t, err)
	if len(recorded.Certificates) != 1 || recorded.Certificates[0].Fingerprint != entry.Fingerprint {
		t.Fatalf("record %+v, want only the certificate on the CSR", recorded.Certificates)
	}
}
