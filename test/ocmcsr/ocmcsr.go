// Package ocmcsr builds CertificateSigningRequests the way OCM's registration agent files them
// for a custom-signer add-on, and variations of them for tests of what the hub must refuse, and
// reads the hub's verdict on them (Condition).
package ocmcsr

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// Request describes one CSR. Zero fields take what the OCM agent of Cluster would use.
type Request struct {
	Cluster string
	// CAID is the ID of the signing CA, which the subject names (identity.CAUnit).
	CAID    string
	Subject *pkix.Name
	// Key signs the request; nil makes an ECDSA P-256 key, as OCM does.
	Key crypto.Signer
	// DNSNames; nil means the one OCM adds.
	DNSNames []string
	// Template, if set, is used as is (Subject and DNSNames above are ignored).
	Template *x509.CertificateRequest
	Usages   []certificatesv1.KeyUsage
	Signer   string
	Labels   map[string]string
	// Username is set for unit tests, with Groups (nil: AgentGroupsOf(Username)); the API
	// server sets both from the requester otherwise.
	Username          string
	Groups            []string
	Annotations       map[string]string
	ExpirationSeconds *int32
}

// AgentUsername is the identity of cluster's OCM agent, as the hub authenticates it.
func AgentUsername(cluster string) string {
	return identity.RequesterPrefix(cluster) + "agent-" + cluster
}

// ManagedClustersGroup is the group of every managed cluster's OCM agents.
const ManagedClustersGroup = identity.OCMPrefix + "managed-clusters"

// AgentGroupsOf returns the groups OCM gives user when it is a cluster's registration agent
// ("system:open-cluster-management:<cluster>:<id>"): its certificate's O. Others get none.
func AgentGroupsOf(user string) []string {
	rest, ok := strings.CutPrefix(user, identity.OCMPrefix)
	cluster, id, found := strings.Cut(rest, ":")
	if !ok || !found || cluster == "" || !identity.IsClusterAgent(user, cluster) || id == "" {
		return nil
	}
	return []string{identity.ClusterGroup(cluster), ManagedClustersGroup}
}

// New returns the CSR and the private key of its request.
func New(r Request) (*certificatesv1.CertificateSigningRequest, crypto.Signer, error) {
	key := r.Key
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		key = k
	}
	tmpl := r.Template
	if tmpl == nil {
		subject := identity.SubjectClusterName.For(r.Cluster, r.CAID).Name()
		if r.Subject != nil {
			subject = *r.Subject
		}
		dns := r.DNSNames
		if dns == nil {
			dns = []string{identity.CSRDNSName}
		}
		tmpl = &x509.CertificateRequest{Subject: subject, DNSNames: dns}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating request: %w", err)
	}
	return Wrap(r, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), key, nil
}

// Wrap puts a PEM request (possibly malformed, for tests) into a CSR object.
func Wrap(r Request, requestPEM []byte) *certificatesv1.CertificateSigningRequest {
	labels := r.Labels
	if labels == nil {
		labels = map[string]string{
			clusterv1.ClusterNameLabelKey: r.Cluster,
			addonv1beta1.AddonLabelKey:    identity.AddonName,
		}
	}
	usages := r.Usages
	if usages == nil {
		usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageClientAuth}
	}
	signer := r.Signer
	if signer == "" {
		signer = identity.SignerName
	}
	groups := r.Groups
	if groups == nil && r.Username != "" {
		groups = AgentGroupsOf(r.Username)
	}
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: fmt.Sprintf("addon-%s-%s-", r.Cluster, identity.AddonName),
			Labels:       labels,
			Annotations:  r.Annotations,
		},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:           requestPEM,
			SignerName:        signer,
			Usages:            usages,
			Username:          r.Username,
			Groups:            groups,
			ExpirationSeconds: r.ExpirationSeconds,
		},
	}
}

// Condition is csr's condition of type t (Approved, Denied or Failed), the first if there are
// several; nil if it has none.
func Condition(csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequestCondition {
	for i := range csr.Status.Conditions {
		if csr.Status.Conditions[i].Type == t {
			return &csr.Status.Conditions[i]
		}
	}
	return nil
}
