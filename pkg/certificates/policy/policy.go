// Package policy decides whether a CertificateSigningRequest for the add-on's signer may be
// signed: Check, against what the hub knows of the cluster the CSR names (Hub), which Decide
// first reads from the hub (HubFacts). The approver and the signer both decide with Decide.
// Every CSR is read as if an attacker wrote it: the requester, the cluster, the subject, the
// key, the usages, the SANs and the extensions must all be exactly what the OCM registration
// agent of that cluster asks for, and anything else is refused with a reason.
package policy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"slices"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	operatorv1 "open-cluster-management.io/api/operator/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// Reason says why a CSR was refused. It is the CSR condition's reason and a metric label, so
// the set is fixed.
type Reason string

const (
	ReasonWrongSigner          Reason = "WrongSigner"
	ReasonWrongAddon           Reason = "WrongAddon"
	ReasonMissingClusterLabel  Reason = "MissingClusterLabel"
	ReasonUnknownCluster       Reason = "UnknownCluster"
	ReasonClusterDeleting      Reason = "ClusterDeleting"
	ReasonClusterNotAccepted   Reason = "ClusterNotAccepted"
	ReasonWrongRequester       Reason = "WrongRequester"
	ReasonRequestTooLarge      Reason = "RequestTooLarge"
	ReasonMalformedRequest     Reason = "MalformedRequest"
	ReasonSubjectMismatch      Reason = "SubjectMismatch"
	ReasonWeakOrUnsupportedKey Reason = "WeakOrUnsupportedKey"
	ReasonDisallowedUsages     Reason = "DisallowedUsages"
	ReasonDisallowedSANs       Reason = "DisallowedSANs"
	ReasonDisallowedExtension  Reason = "DisallowedExtension"
	ReasonBadExpiration        Reason = "BadExpiration"
	ReasonRevoked              Reason = "Revoked"
	ReasonNotEnrolled          Reason = "NotEnrolled"
	ReasonDuplicateKey         Reason = "DuplicateKey"
	ReasonWeakSignature        Reason = "WeakSignature"
	ReasonTooManyCertificates  Reason = "TooManyCertificates"
)

// Reasons is every Reason, in the order above: the metrics start each at 0, so that the first
// denial of a kind is an increase an alert sees, not a new series.
var Reasons = []Reason{
	ReasonWrongSigner, ReasonWrongAddon, ReasonMissingClusterLabel, ReasonUnknownCluster, ReasonClusterDeleting,
	ReasonClusterNotAccepted, ReasonWrongRequester, ReasonRequestTooLarge, ReasonMalformedRequest, ReasonSubjectMismatch,
	ReasonWeakOrUnsupportedKey, ReasonDisallowedUsages, ReasonDisallowedSANs, ReasonDisallowedExtension, ReasonBadExpiration,
	ReasonRevoked, ReasonNotEnrolled, ReasonDuplicateKey, ReasonWeakSignature, ReasonTooManyCertificates,
}

// MinExpirationSeconds is the smallest expirationSeconds Kubernetes allows.
const MinExpirationSeconds = 600

// Rejection is a refused CSR.
type Rejection struct {
	Reason  Reason
	Message string
}

func (r *Rejection) Error() string { return string(r.Reason) + ": " + r.Message }

func reject(reason Reason, format string, args ...any) *Rejection {
	return &Rejection{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Policy holds what a valid CSR must match.
type Policy struct {
	// Subject is the subject style the add-on registers its agents with.
	Subject identity.SubjectStyle
	// GRPCServerUsername is the identity of OCM's gRPC registration server. A CSR it files on
	// behalf of an agent names that agent in the csr-user annotation; the annotation is trusted
	// from this user only. Empty trusts it from nobody.
	GRPCServerUsername string
	// MaxLifetime, if set, is the longest lifetime the signer issues; a request for more
	// (expirationSeconds) is refused rather than silently shortened.
	MaxLifetime time.Duration
}

// Hub is what the hub knows of the cluster a CSR claims to come from, read from objects whose
// deciding fields no managed cluster identity may write: the cluster's record (its revocation,
// the certificates and keys it holds, pkg/certificates/issued) and the ManagedClusterAddOn,
// which only the hub creates and deletes. Of the ManagedCluster, which the cluster may update,
// only hub-guarded fields count (its existence, deletion, spec.hubAcceptsClient); its labels
// never do.
type Hub struct {
	// Cluster is the ManagedCluster the CSR's cluster label names; nil if there is none.
	Cluster *clusterv1.ManagedCluster
	// Addon is the cluster's ManagedClusterAddOn of this add-on; nil if the add-on is not
	// installed there: the cluster is not enrolled.
	Addon *addonv1beta1.ManagedClusterAddOn
	// Record is the cluster's record: its revocation, its unexpired certificates and the keys
	// it had certified. Nil counts as empty.
	Record *issued.Record
	// Now is when the decision is made, for the certificates the record counts as unexpired.
	Now time.Time
	// CAID is the ID of the signing CA, which the subject must name.
	CAID string
}

// Check returns the parsed request if csr may be signed for the cluster hub describes, by the
// CA with ID hub.CAID, or the reason it may not. The subject must name that CA
// (identity.CAUnit): a request made for another CA, such as one filed just before a CA
// rollover, is refused, and the spoke asks again for the new one.
func (p Policy) Check(csr *certificatesv1.CertificateSigningRequest, hub Hub) (*x509.CertificateRequest, *Rejection) {
	req, rej := p.check(csr, hub)
	if rej != nil {
		return nil, rej
	}
	return req, nil
}

func (p Policy) check(csr *certificatesv1.CertificateSigningRequest, hub Hub) (*x509.CertificateRequest, *Rejection) {
	if !certificates.ForOurSigner(csr) {
		return nil, reject(ReasonWrongSigner, "signer %q is not %q", csr.Spec.SignerName, identity.SignerName)
	}
	if addon := csr.Labels[addonv1beta1.AddonLabelKey]; addon != identity.AddonName {
		return nil, reject(ReasonWrongAddon, "label %s=%q, want %q", addonv1beta1.AddonLabelKey, addon, identity.AddonName)
	}
	clusterName := csr.Labels[clusterv1.ClusterNameLabelKey]
	if clusterName == "" {
		return nil, reject(ReasonMissingClusterLabel, "label %s is missing", clusterv1.ClusterNameLabelKey)
	}
	if rej := checkCluster(clusterName, hub); rej != nil {
		return nil, rej
	}
	if rej := p.checkRequester(csr, clusterName); rej != nil {
		return nil, rej
	}
	if e := csr.Spec.ExpirationSeconds; e != nil {
		if *e < MinExpirationSeconds {
			return nil, reject(ReasonBadExpiration, "expirationSeconds %d is below the minimum %d", *e, MinExpirationSeconds)
		}
		if p.MaxLifetime > 0 && time.Duration(*e)*time.Second > p.MaxLifetime {
			return nil, reject(ReasonBadExpiration, "expirationSeconds %d is above the signer's maximum %s", *e, p.MaxLifetime)
		}
	}
	if rej := checkUsages(csr.Spec.Usages); rej != nil {
		return nil, rej
	}
	req, rej := ParseRequest(csr.Spec.Request)
	if rej != nil {
		return nil, rej
	}
	if rej := p.checkRequest(req, clusterName, hub.CAID); rej != nil {
		return nil, rej
	}
	return req, checkRecord(req, csr.UID, hub)
}

// checkRecord refuses a key the cluster had certified before (OCM's agent makes a new key for
// every request, so a key seen before is a replayed or copied request, or one used before a
// revocation) and a certificate past MaxUnexpired. The signer makes the same check on the
// record it then writes, at the same version, so the bound holds however requests race.
func checkRecord(req *x509.CertificateRequest, uid types.UID, hub Hub) *Rejection {
	rec := hub.Record
	if rec == nil {
		return nil
	}
	if _, ok := rec.ForCSR(uid, hub.CAID, hub.Now); ok {
		// This CSR's own certificate, valid, recorded but not put on it yet: the signer hands
		// it out, and signs nothing.
		return nil
	}
	if rec.KeyUsed(issued.KeyOf(req.RawSubjectPublicKeyInfo)) {
		return reject(ReasonDuplicateKey, "the public key was certified for cluster %q before; every request needs a new key", rec.Cluster)
	}
	if n := len(rec.Unexpired(hub.Now)); n >= issued.MaxUnexpired {
		return reject(ReasonTooManyCertificates, "cluster %q holds %d unexpired certificates, the most one cluster may hold (%d); it gets another when one expires",
			rec.Cluster, n, issued.MaxUnexpired)
	}
	return nil
}

func checkCluster(name string, hub Hub) *Rejection {
	cluster := hub.Cluster
	if cluster == nil || cluster.Name != name {
		return reject(ReasonUnknownCluster, "no ManagedCluster %q", name)
	}
	if cluster.DeletionTimestamp != nil {
		return reject(ReasonClusterDeleting, "ManagedCluster %q is being deleted", name)
	}
	if r := hub.Record.RevocationOrNil(); r != nil {
		return reject(ReasonRevoked, "the agent of cluster %q is revoked (%s); `argocd-agent-addon unrevoke %s` restores it",
			name, r.Reason, name)
	}
	if !cluster.Spec.HubAcceptsClient ||
		!meta.IsStatusConditionTrue(cluster.Status.Conditions, clusterv1.ManagedClusterConditionHubAccepted) {
		return reject(ReasonClusterNotAccepted, "ManagedCluster %q is not accepted by the hub", name)
	}
	if a := hub.Addon; a == nil || a.Namespace != name || a.Name != identity.AddonName || a.DeletionTimestamp != nil {
		return reject(ReasonNotEnrolled, "the add-on is not installed on cluster %q (no ManagedClusterAddOn %s/%s, or it is being deleted)",
			name, name, identity.AddonName)
	}
	return nil
}

func (p Policy) checkRequester(csr *certificatesv1.CertificateSigningRequest, cluster string) *Rejection {
	requester := csr.Spec.Username
	if p.GRPCServerUsername != "" && requester == p.GRPCServerUsername {
		requester = csr.Annotations[operatorv1.CSRUsernameAnnotation]
	}
	if !identity.IsClusterAgent(requester, cluster) {
		return reject(ReasonWrongRequester, "requester %q is not an OCM agent of cluster %q (want %s<agent id>, the id without ':')",
			requester, cluster, identity.RequesterPrefix(cluster))
	}
	if csr.Spec.Username == requester && !slices.Contains(csr.Spec.Groups, identity.ClusterGroup(cluster)) {
		// The API server sets spec.groups from the requester's credentials: an OCM agent of the
		// cluster is always in its group (from its certificate's O).
		return reject(ReasonWrongRequester, "requester %q is not in group %q", requester, identity.ClusterGroup(cluster))
	}
	return nil
}

var allowedUsages = []certificatesv1.KeyUsage{
	certificatesv1.UsageClientAuth, certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment,
}

func checkUsages(usages []certificatesv1.KeyUsage) *Rejection {
	if !slices.Contains(usages, certificatesv1.UsageClientAuth) {
		return reject(ReasonDisallowedUsages, "usages %v lack %q", usages, certificatesv1.UsageClientAuth)
	}
	for _, u := range usages {
		if !slices.Contains(allowedUsages, u) {
			return reject(ReasonDisallowedUsages, "usage %q is not allowed (allowed: %v)", u, allowedUsages)
		}
	}
	return nil
}

// ParseRequest decodes a PEM request: at most certificates.MaxRequestBytes, exactly one
// CERTIFICATE REQUEST block, nothing after it, with a valid self-signature.
func ParseRequest(request []byte) (*x509.CertificateRequest, *Rejection) {
	if len(request) > certificates.MaxRequestBytes {
		return nil, reject(ReasonRequestTooLarge, "request is over %d bytes", certificates.MaxRequestBytes)
	}
	block, rest := pem.Decode(request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, reject(ReasonMalformedRequest, "request is not a PEM CERTIFICATE REQUEST")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, reject(ReasonMalformedRequest, "request has data after the CERTIFICATE REQUEST block")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, reject(ReasonMalformedRequest, "parsing request: %v", err)
	}
	if slices.Contains(weakSignatures, req.SignatureAlgorithm) {
		return nil, reject(ReasonWeakSignature, "request signed with %s: MD5 and SHA-1 signatures are refused, sign with SHA-256 or better", req.SignatureAlgorithm)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, reject(ReasonMalformedRequest, "request signature: %v", err)
	}
	return req, nil
}

// weakSignatures are the request signatures Go still verifies but no signer should accept: a
// collision in the hash could pass off another key's request as proof of possession. Go fails
// CheckSignature for unknown algorithms, and the key check refuses keys other than RSA and ECDSA.
var weakSignatures = []x509.SignatureAlgorithm{
	x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.DSAWithSHA256, x509.ECDSAWithSHA1,
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

func (p Policy) checkRequest(req *x509.CertificateRequest, cluster, caID string) *Rejection {
	if rej := checkSubject(req, p.Subject.For(cluster, caID)); rej != nil {
		return rej
	}
	if rej := checkKey(req); rej != nil {
		return rej
	}
	if len(req.IPAddresses) > 0 || len(req.URIs) > 0 || len(req.EmailAddresses) > 0 {
		return reject(ReasonDisallowedSANs, "IP, URI and email SANs are not allowed (got %v %v %v)", req.IPAddresses, req.URIs, req.EmailAddresses)
	}
	if len(req.DNSNames) > 1 || (len(req.DNSNames) == 1 && req.DNSNames[0] != identity.CSRDNSName) {
		return reject(ReasonDisallowedSANs, "DNS SANs %v: only %q is allowed", req.DNSNames, identity.CSRDNSName)
	}
	for _, ext := range req.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			return reject(ReasonDisallowedExtension, "extension %s is not allowed (only subjectAltName)", ext.Id)
		}
	}
	return nil
}

// checkSubject requires the subject to be exactly the expected one: the expected CN, O and OU
// values and no other attribute, so no extra RDN can smuggle in another identity.
func checkSubject(req *x509.CertificateRequest, want identity.Subject) *Rejection {
	got := req.Subject
	wantName := want.Name()
	if got.CommonName != wantName.CommonName {
		return reject(ReasonSubjectMismatch, "CN %q, want %q", got.CommonName, wantName.CommonName)
	}
	if !sameSet(got.Organization, wantName.Organization) {
		return reject(ReasonSubjectMismatch, "O %q, want %q", got.Organization, wantName.Organization)
	}
	if !sameSet(got.OrganizationalUnit, wantName.OrganizationalUnit) {
		return reject(ReasonSubjectMismatch, "OU %q, want %q", got.OrganizationalUnit, wantName.OrganizationalUnit)
	}
	if n := 1 + len(wantName.Organization) + len(wantName.OrganizationalUnit); len(got.Names) != n {
		return reject(ReasonSubjectMismatch, "subject %q has %d attributes, want exactly CN, O and OU (%d)", got.String(), len(got.Names), n)
	}
	return nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

func checkKey(req *x509.CertificateRequest) *Rejection {
	switch k := req.PublicKey.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < 2048 || bits > 8192 {
			return reject(ReasonWeakOrUnsupportedKey, "RSA key of %d bits (want 2048-8192)", bits)
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return reject(ReasonWeakOrUnsupportedKey, "ECDSA curve %s (want P-256 or P-384)", k.Curve.Params().Name)
		}
	default:
		return reject(ReasonWeakOrUnsupportedKey, "%s keys are not supported (want RSA >= 2048 or ECDSA P-256/P-384)", req.PublicKeyAlgorithm)
	}
	return nil
}
