package policy_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	operatorv1 "open-cluster-management.io/api/operator/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/revocation"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/ocmcsr"
)

const (
	grpcUser = "system:serviceaccount:open-cluster-management-hub:grpc-server-sa"
	// caID is the ID of the signing CA the requests must name.
	caID = "0123456789abcdef"
)

func acceptedCluster(name string) *clusterv1.ManagedCluster {
	return &clusterv1.ManagedCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       clusterv1.ManagedClusterSpec{HubAcceptsClient: true},
		Status: clusterv1.ManagedClusterStatus{Conditions: []metav1.Condition{
			{Type: clusterv1.ManagedClusterConditionHubAccepted, Status: metav1.ConditionTrue},
		}},
	}
}

// installed is the ManagedClusterAddOn OCM creates on an enrolled cluster.
func installed(cluster string) *addonv1beta1.ManagedClusterAddOn {
	return &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: cluster, Name: identity.AddonName}}
}

func mustKey(t *testing.T, f func() (crypto.Signer, error)) crypto.Signer {
	t.Helper()
	k, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCheck(t *testing.T) {
	valid := func(r *ocmcsr.Request) {}
	rsa1024 := mustKey(t, func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 1024) })
	rsa2048 := mustKey(t, func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) })
	p224 := mustKey(t, func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P224(), rand.Reader) })
	p384 := mustKey(t, func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P384(), rand.Reader) })
	_, ed := mustEd25519(t)

	tests := []struct {
		name    string
		style   identity.SubjectStyle
		mutate  func(*ocmcsr.Request)
		csr     func(*certificatesv1.CertificateSigningRequest)
		cluster *clusterv1.ManagedCluster
		hub     func(*policy.Hub)
		want    policy.Reason // "" means approved
	}{
		{name: "as the OCM agent makes it", mutate: valid},
		{name: "RSA 2048 key", mutate: func(r *ocmcsr.Request) { r.Key = rsa2048 }},
		{name: "ECDSA P-384 key", mutate: func(r *ocmcsr.Request) { r.Key = p384 }},
		{name: "no SAN at all", mutate: func(r *ocmcsr.Request) { r.DNSNames = []string{} }},
		{name: "ocm subject style", style: identity.SubjectOCM, mutate: func(r *ocmcsr.Request) {
			n := identity.SubjectOCM.For("c1", caID).Name()
			r.Subject = &n
		}},
		{name: "gRPC server filing for the agent", mutate: func(r *ocmcsr.Request) { r.Username = grpcUser },
			csr: func(c *certificatesv1.CertificateSigningRequest) {
				c.Annotations = map[string]string{operatorv1.CSRUsernameAnnotation: ocmcsr.AgentUsername("c1")}
			}},
		{name: "gRPC server filing for another cluster", mutate: func(r *ocmcsr.Request) { r.Username = grpcUser },
			csr: func(c *certificatesv1.CertificateSigningRequest) {
				c.Annotations = map[string]string{operatorv1.CSRUsernameAnnotation: ocmcsr.AgentUsername("c2")}
			}, want: policy.ReasonWrongRequester},
		{name: "csr-user annotation from a non-gRPC requester is ignored", mutate: func(r *ocmcsr.Request) { r.Username = "mallory" },
			csr: func(c *certificatesv1.CertificateSigningRequest) {
				c.Annotations = map[string]string{operatorv1.CSRUsernameAnnotation: ocmcsr.AgentUsername("c1")}
			}, want: policy.ReasonWrongRequester},
		{name: "wrong signer", mutate: func(r *ocmcsr.Request) { r.Signer = "example.com/other" }, want: policy.ReasonWrongSigner},
		{name: "no add-on label", mutate: func(r *ocmcsr.Request) {
			r.Labels = map[string]string{clusterv1.ClusterNameLabelKey: "c1"}
		}, want: policy.ReasonWrongAddon},
		{name: "no cluster label", mutate: func(r *ocmcsr.Request) {
			r.Labels = map[string]string{addonv1beta1.AddonLabelKey: identity.AddonName}
		}, want: policy.ReasonMissingClusterLabel},
		{name: "label of another cluster", mutate: func(r *ocmcsr.Request) {
			r.Labels = map[string]string{clusterv1.ClusterNameLabelKey: "c2", addonv1beta1.AddonLabelKey: identity.AddonName}
		}, cluster: acceptedCluster("c2"), want: policy.ReasonWrongRequester},
		{name: "unknown cluster", mutate: valid, cluster: &clusterv1.ManagedCluster{}, want: policy.ReasonUnknownCluster},
		{name: "cluster not accepted", mutate: valid, cluster: func() *clusterv1.ManagedCluster {
			c := acceptedCluster("c1")
			c.Spec.HubAcceptsClient = false
			return c
		}(), want: policy.ReasonClusterNotAccepted},
		{name: "cluster being deleted", mutate: valid, cluster: func() *clusterv1.ManagedCluster {
			c := acceptedCluster("c1")
			now := metav1.Now()
			c.DeletionTimestamp = &now
			return c
		}(), want: policy.ReasonClusterDeleting},
		{name: "revoked cluster", mutate: valid, hub: func(h *policy.Hub) {
			h.Record.Revocation = &revocation.Revocation{Reason: "key leaked"}
		}, want: policy.ReasonRevoked},
		{name: "revoked cluster that removed the revoked label from its ManagedCluster", mutate: valid, hub: func(h *policy.Hub) {
			h.Record.Revocation = &revocation.Revocation{Reason: "key leaked"}
			h.Cluster.Labels = map[string]string{}
		}, want: policy.ReasonRevoked},
		{name: "key certified for the cluster before (replayed, or used before a revocation)", mutate: func(r *ocmcsr.Request) { r.Key = p384 },
			hub: func(h *policy.Hub) { h.Record.Keys = []string{"other", keyOf(t, p384)} }, want: policy.ReasonDuplicateKey},
		{name: "key of this CSR's own certificate, recorded but not yet put on it", mutate: func(r *ocmcsr.Request) { r.Key = p384 },
			csr: func(c *certificatesv1.CertificateSigningRequest) { c.UID = "this-csr" },
			hub: func(h *policy.Hub) {
				h.Record.Keys = []string{keyOf(t, p384)}
				h.Record.Certificates = []issued.Certificate{{Fingerprint: "A", CSR: "this-csr", CA: caID, PEM: "cert", NotAfter: h.Now.Add(time.Hour)}}
			}},
		{name: "key of this CSR's own certificate, recorded but expired: not signed again", mutate: func(r *ocmcsr.Request) { r.Key = p384 },
			csr: func(c *certificatesv1.CertificateSigningRequest) { c.UID = "this-csr" },
			hub: func(h *policy.Hub) {
				h.Record.Keys = []string{keyOf(t, p384)}
				h.Record.Certificates = []issued.Certificate{{Fingerprint: "A", CSR: "this-csr", CA: caID, PEM: "cert", NotAfter: h.Now.Add(-time.Second)}}
			}, want: policy.ReasonDuplicateKey},
		{name: "cluster already holds the most unexpired certificates", mutate: valid, hub: func(h *policy.Hub) {
			for i := range issued.MaxUnexpired {
				h.Record.Certificates = append(h.Record.Certificates, issued.Certificate{Fingerprint: fmt.Sprint(i), NotAfter: h.Now.Add(time.Hour)})
			}
		}, want: policy.ReasonTooManyCertificates},
		{name: "expired certificates do not count", mutate: valid, hub: func(h *policy.Hub) {
			for i := range 2 * issued.MaxUnexpired {
				h.Record.Certificates = append(h.Record.Certificates, issued.Certificate{Fingerprint: fmt.Sprint(i), NotAfter: h.Now.Add(-time.Second)})
			}
		}},
		{name: "ECDSA with SHA-1 signature", mutate: func(r *ocmcsr.Request) {
			r.Template = &x509.CertificateRequest{Subject: *subjectOf("c1"), DNSNames: []string{identity.CSRDNSName}, SignatureAlgorithm: x509.ECDSAWithSHA1}
		}, want: policy.ReasonWeakSignature},
		{name: "RSA with SHA-1 signature", mutate: func(r *ocmcsr.Request) {
			r.Key = rsa2048
			r.Template = &x509.CertificateRequest{Subject: *subjectOf("c1"), DNSNames: []string{identity.CSRDNSName}, SignatureAlgorithm: x509.SHA1WithRSA}
		}, want: policy.ReasonWeakSignature},
		{name: "RSA-PSS with SHA-256 signature", mutate: func(r *ocmcsr.Request) {
			r.Key = rsa2048
			r.Template = &x509.CertificateRequest{Subject: *subjectOf("c1"), DNSNames: []string{identity.CSRDNSName}, SignatureAlgorithm: x509.SHA256WithRSAPSS}
		}},
		{name: "the revoked label alone decides nothing", mutate: valid, cluster: func() *clusterv1.ManagedCluster {
			c := acceptedCluster("c1")
			c.Labels = map[string]string{identity.RevokedLabel: "true"}
			return c
		}()},
		{name: "not enrolled (no ManagedClusterAddOn)", mutate: valid, hub: func(h *policy.Hub) { h.Addon = nil }, want: policy.ReasonNotEnrolled},
		{name: "add-on being removed", mutate: valid, hub: func(h *policy.Hub) {
			now := metav1.Now()
			h.Addon.DeletionTimestamp = &now
		}, want: policy.ReasonNotEnrolled},
		{name: "ManagedClusterAddOn of another cluster", mutate: valid, hub: func(h *policy.Hub) { h.Addon = installed("c2") }, want: policy.ReasonNotEnrolled},
		{name: "requester not in the cluster's group", mutate: func(r *ocmcsr.Request) { r.Groups = []string{ocmcsr.ManagedClustersGroup} },
			want: policy.ReasonWrongRequester},
		{name: "add-on identity of cluster x for a cluster named cluster", mutate: func(r *ocmcsr.Request) {
			r.Cluster = "cluster"
			r.Username = "system:open-cluster-management:cluster:x:addon:argocd-agent:agent:argocd-agent-agent"
			r.Groups = []string{identity.ClusterGroup("cluster")}
		}, cluster: acceptedCluster("cluster"), want: policy.ReasonWrongRequester},
		{name: "requester of another cluster", mutate: func(r *ocmcsr.Request) { r.Username = ocmcsr.AgentUsername("c2") }, want: policy.ReasonWrongRequester},
		{name: "requester prefix collision (c1 vs c10)", mutate: func(r *ocmcsr.Request) { r.Username = ocmcsr.AgentUsername("c10") }, want: policy.ReasonWrongRequester},
		{name: "requester without agent id", mutate: func(r *ocmcsr.Request) { r.Username = identity.RequesterPrefix("c1") }, want: policy.ReasonWrongRequester},
		{name: "CN of another cluster", mutate: func(r *ocmcsr.Request) { r.Subject = &pkix.Name{CommonName: "c2"} }, want: policy.ReasonSubjectMismatch},
		{name: "extra O", mutate: func(r *ocmcsr.Request) {
			r.Subject = &pkix.Name{CommonName: "c1", Organization: []string{"system:masters"}, OrganizationalUnit: []string{identity.CAUnit(caID)}}
		}, want: policy.ReasonSubjectMismatch},
		{name: "extra OU", mutate: func(r *ocmcsr.Request) {
			r.Subject = &pkix.Name{CommonName: "c1", OrganizationalUnit: []string{identity.CAUnit(caID), "x"}}
		}, want: policy.ReasonSubjectMismatch},
		{name: "no CA OU", mutate: func(r *ocmcsr.Request) { r.Subject = &pkix.Name{CommonName: "c1"} }, want: policy.ReasonSubjectMismatch},
		{name: "OU of the previous CA (filed before a rollover)", mutate: func(r *ocmcsr.Request) { r.CAID = "fedcba9876543210" }, want: policy.ReasonSubjectMismatch},
		{name: "second CN RDN", mutate: func(r *ocmcsr.Request) {
			r.Subject = &pkix.Name{CommonName: "c1", OrganizationalUnit: []string{identity.CAUnit(caID)},
				ExtraNames: []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "c2"}}}
		}, want: policy.ReasonSubjectMismatch},
		{name: "extra country attribute", mutate: func(r *ocmcsr.Request) {
			r.Subject = &pkix.Name{CommonName: "c1", Country: []string{"XX"}, OrganizationalUnit: []string{identity.CAUnit(caID)}}
		}, want: policy.ReasonSubjectMismatch},
		{name: "empty subject", mutate: func(r *ocmcsr.Request) { r.Subject = &pkix.Name{} }, want: policy.ReasonSubjectMismatch},
		{name: "long OCM CN while short style is configured", mutate: func(r *ocmcsr.Request) {
			n := identity.SubjectOCM.For("c1", caID).Name()
			r.Subject = &n
		}, want: policy.ReasonSubjectMismatch},
		{name: "server auth usage", mutate: func(r *ocmcsr.Request) {
			r.Usages = []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth, certificatesv1.UsageServerAuth}
		}, want: policy.ReasonDisallowedUsages},
		{name: "code signing usage", mutate: func(r *ocmcsr.Request) {
			r.Usages = []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth, certificatesv1.UsageCodeSigning}
		}, want: policy.ReasonDisallowedUsages},
		{name: "no client auth usage", mutate: func(r *ocmcsr.Request) {
			r.Usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature}
		}, want: policy.ReasonDisallowedUsages},
		{name: "extra DNS SAN", mutate: func(r *ocmcsr.Request) { r.DNSNames = []string{identity.CSRDNSName, "principal.example.com"} }, want: policy.ReasonDisallowedSANs},
		{name: "other DNS SAN", mutate: func(r *ocmcsr.Request) { r.DNSNames = []string{"kubernetes.default"} }, want: policy.ReasonDisallowedSANs},
		{name: "IP SAN", mutate: func(r *ocmcsr.Request) {
			r.Template = &x509.CertificateRequest{Subject: pkix.Name{CommonName: "c1", OrganizationalUnit: []string{identity.CAUnit(caID)}}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}
		}, want: policy.ReasonDisallowedSANs},
		{name: "URI SAN", mutate: func(r *ocmcsr.Request) {
			u, _ := url.Parse("spiffe://hub/ns/argocd/sa/principal")
			r.Template = &x509.CertificateRequest{Subject: pkix.Name{CommonName: "c1", OrganizationalUnit: []string{identity.CAUnit(caID)}}, URIs: []*url.URL{u}}
		}, want: policy.ReasonDisallowedSANs},
		{name: "email SAN", mutate: func(r *ocmcsr.Request) {
			r.Template = &x509.CertificateRequest{Subject: pkix.Name{CommonName: "c1", OrganizationalUnit: []string{identity.CAUnit(caID)}}, EmailAddresses: []string{"a@b.c"}}
		}, want: policy.ReasonDisallowedSANs},
		{name: "basic constraints CA:true requested", mutate: func(r *ocmcsr.Request) {
			bc, _ := asn1.Marshal(struct {
				IsCA bool `asn1:"optional"`
			}{true})
			r.Template = &x509.CertificateRequest{Subject: pkix.Name{CommonName: "c1", OrganizationalUnit: []string{identity.CAUnit(caID)}},
				ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}}}
		}, want: policy.ReasonDisallowedExtension},
		{name: "RSA 1024 key", mutate: func(r *ocmcsr.Request) { r.Key = rsa1024 }, want: policy.ReasonWeakOrUnsupportedKey},
		{name: "ECDSA P-224 key", mutate: func(r *ocmcsr.Request) { r.Key = p224 }, want: policy.ReasonWeakOrUnsupportedKey},
		{name: "Ed25519 key", mutate: func(r *ocmcsr.Request) { r.Key = ed }, want: policy.ReasonWeakOrUnsupportedKey},
		{name: "expirationSeconds below minimum", mutate: valid, csr: func(c *certificatesv1.CertificateSigningRequest) {
			s := int32(60)
			c.Spec.ExpirationSeconds = &s
		}, want: policy.ReasonBadExpiration},
		{name: "expirationSeconds above the maximum", mutate: valid, csr: func(c *certificatesv1.CertificateSigningRequest) {
			s := int32(10 * 365 * 24 * 3600)
			c.Spec.ExpirationSeconds = &s
		}, want: policy.ReasonBadExpiration},
		{name: "expirationSeconds within the maximum", mutate: valid, csr: func(c *certificatesv1.CertificateSigningRequest) {
			s := int32(3600)
			c.Spec.ExpirationSeconds = &s
		}},
		{name: "not PEM", mutate: valid, csr: func(c *certificatesv1.CertificateSigningRequest) { c.Spec.Request = []byte("hello") }, want: policy.ReasonMalformedRequest},
		{name: "PEM of another type", mutate: valid, csr: func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Request = []byte(strings.Replace(string(c.Spec.Request), "CERTIFICATE REQUEST", "CERTIFICATE", 2))
		}, want: policy.ReasonMalformedRequest},
		{name: "trailing data after the request", mutate: valid, csr: func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Request = append(c.Spec.Request, c.Spec.Request...)
		}, want: policy.ReasonMalformedRequest},
		{name: "corrupted signature", mutate: valid, csr: func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Request = corruptSignature(t, c.Spec.Request)
		}, want: policy.ReasonMalformedRequest},
		{name: "huge request", mutate: valid, csr: func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Request = append(c.Spec.Request, make([]byte, certificates.MaxRequestBytes)...)
		}, want: policy.ReasonRequestTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ocmcsr.Request{Cluster: "c1", CAID: caID, Username: ocmcsr.AgentUsername("c1")}
			tc.mutate(&r)
			csr, _, err := ocmcsr.New(r)
			if err != nil {
				t.Fatal(err)
			}
			if tc.csr != nil {
				tc.csr(csr)
			}
			cluster := tc.cluster
			if cluster == nil {
				cluster = acceptedCluster("c1")
			} else if cluster.Name == "" {
				cluster = nil
			}
			hub := policy.Hub{Cluster: cluster, CAID: caID, Now: time.Now()}
			if cluster != nil {
				hub.Addon = installed(cluster.Name)
				hub.Record = &issued.Record{Cluster: cluster.Name}
			}
			if tc.hub != nil {
				tc.hub(&hub)
			}
			style := tc.style
			if style == "" {
				style = identity.SubjectClusterName
			}
			p := policy.Policy{Subject: style, GRPCServerUsername: grpcUser, MaxLifetime: 24 * time.Hour}
			req, rej := p.Check(csr, hub)
			switch {
			case tc.want == "" && rej != nil:
				t.Fatalf("want approved, got %v", rej)
			case tc.want == "" && req == nil:
				t.Fatal("approved without a parsed request")
			case tc.want != "" && rej == nil:
				t.Fatalf("want %s, got approved", tc.want)
			case tc.want != "" && rej.Reason != tc.want:
				t.Fatalf("want %s, got %v", tc.want, rej)
			case rej != nil && rej.Message == "":
				t.Fatal("rejection without a message")
			}
		})
	}
}

// keyOf is how the record names a key.
func keyOf(t *testing.T, k crypto.Signer) string {
	t.Helper()
	spki, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return issued.KeyOf(spki)
}

// subjectOf is the subject cluster's agent asks for from the CA with ID caID.
func subjectOf(cluster string) *pkix.Name {
	n := identity.SubjectClusterName.For(cluster, caID).Name()
	return &n
}

func mustEd25519(t *testing.T) (ed25519.PublicKey, crypto.Signer) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// corruptSignature flips a bit in the last byte of the DER, which is inside the signature.
func corruptSignature(t *testing.T, requestPEM []byte) []byte {
	t.Helper()
	req, rej := policy.ParseRequest(requestPEM)
	if rej != nil {
		t.Fatal(rej)
	}
	der := append([]byte(nil), req.Raw...)
	der[len(der)-1] ^= 1
	return pemEncode(der)
}

// FuzzCheck feeds arbitrary requests, usages and labels to the policy: it must never panic and
// never approve anything but a request that passes every check.
func FuzzCheck(f *testing.F) {
	csr, _, err := ocmcsr.New(ocmcsr.Request{Cluster: "c1", CAID: caID, Username: ocmcsr.AgentUsername("c1")})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(csr.Spec.Request, "c1", ocmcsr.AgentUsername("c1"), "client auth")
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), "c1", "x", "server auth")
	hub := policy.Hub{Cluster: acceptedCluster("c1"), Addon: installed("c1"), CAID: caID}
	p := policy.Policy{Subject: identity.SubjectClusterName, GRPCServerUsername: grpcUser}
	f.Fuzz(func(t *testing.T, request []byte, clusterLabel, username, usage string) {
		c := ocmcsr.Wrap(ocmcsr.Request{Cluster: clusterLabel, Username: username,
			Usages: []certificatesv1.KeyUsage{certificatesv1.KeyUsage(usage)}}, request)
		req, rej := p.Check(c, hub)
		if rej == nil {
			// Approved: it must really be c1's agent asking for CN=c1 from this CA with client auth.
			if req == nil || req.Subject.CommonName != "c1" || req.Subject.String() != "CN=c1,OU="+identity.CAUnit(caID) || clusterLabel != "c1" ||
				!identity.IsClusterAgent(username, "c1") || usage != string(certificatesv1.UsageClientAuth) {
				t.Fatalf("approved an invalid request: cluster=%q user=%q usage=%q", clusterLabel, username, usage)
			}
		}
	})
}

func pemEncode(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}
