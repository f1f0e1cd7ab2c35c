// Package issued keeps the hub's record of each cluster's agent: every certificate the signer
// issued to it that has not expired (fingerprint, signing CA, expiry), the public keys it had
// certified, and whether the hub revoked it. The record of a cluster is a ConfigMap in the
// manager's namespace (RecordName), where no managed cluster may write.
//
// A certificate is recorded before it is put on its CSR, so that none leaves the hub
// unrecorded, even if the manager crashes in between; the entry then names the CSR and holds
// the certificate, which the next manager puts on that CSR instead of signing it again (ForCSR).
// The revocation lives in the same object, so a certificate and a revocation are ordered by the
// API server's optimistic concurrency: a signing whose record write lands after the revocation
// fails and is decided again (refused), and one that landed before is in the record that the
// revocation was written over, which `revoke` blocklists. No unexpired certificate is ever
// dropped from the record; instead a cluster may hold at most MaxUnexpired at a time.
//
// CSRs are no record: kube-controller-manager deletes them an hour after they are signed, while
// an agent certificate lives for days. The record is what `revoke` blocklists, what `status`
// shows, and what tells an operator when a CA that was rolled over signs nothing valid any more
// and may leave the trust bundles. It has no owner: it outlives the cluster's
// ManagedClusterAddOn, which OCM deletes on revocation, and the add-on's
// ClusterManagementAddOn, which `helm uninstall` deletes, so that a reinstall forgets no
// revocation (docs/operations.md#uninstall).
package issued

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Annotation held the record on the ManagedClusterAddOn, as a JSON list, before the record moved
// to RecordName; it is still read, so certificates recorded there are not forgotten.
const Annotation = "argocd-agent-addon.open-cluster-management.io/issued-certificates"

// MaxUnexpired bounds the certificates a cluster may hold at once; a request past it is
// refused (TooManyCertificates) until one expires. OCM renews when 20-25 % of a certificate's
// validity is left, counted from NotBefore, which the signer backdates 5 minutes for clock
// skew: with the default week two are unexpired at a time, but with the 2-minute lifetimes of
// the tests OCM renews every 30 s and holds four. A CA rollover re-issues at once, and a
// registration agent that loses its status write files again. Without a bound a cluster could
// file requests with fresh keys without end, and the record (what `revoke` blocklists) would
// have to drop some.
const MaxUnexpired = 10

// Certificate is one issued certificate.
type Certificate struct {
	// Fingerprint is the certificate's BlocklistKey.
	Fingerprint string `json:"sha256"`
	// CA is the ID of the CA that signed it (authority.ID).
	CA       string    `json:"ca"`
	NotAfter time.Time `json:"notAfter"`
	// NotBefore, with NotAfter, is the certificate's lifetime, which a CSR may ask to be shorter
	// than the signer's maximum; zero in records written by earlier versions.
	NotBefore time.Time `json:"notBefore,omitzero"`
	// CSR is the UID of the CSR it was issued for, and PEM the certificate itself (public), so
	// that a manager that dies after recording it but before putting it on the CSR puts this
	// one there when it comes back, instead of signing the CSR a second time. Empty in
	// records written by earlier versions and for certificates OnHub found only on CSRs.
	CSR types.UID `json:"csr,omitempty"`
	PEM string    `json:"pem,omitempty"`
}

// BlocklistKey is the SHA-256 of a certificate's DER as argocd-agent's TLS blocklist keys it:
// 64 upper-case hex digits, unlike authority.Fingerprint's lower-case ones.
func BlocklistKey(der []byte) string {
	sum := sha256.Sum256(der)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// Of describes cert, signed by the CA with ID caID.
func Of(cert *x509.Certificate, caID string) Certificate {
	return Certificate{Fingerprint: BlocklistKey(cert.Raw), CA: caID, NotAfter: cert.NotAfter.UTC(), NotBefore: cert.NotBefore.UTC()}
}

// ForCSR returns the certificate recorded for the CSR with UID uid, signed by the CA with ID caID
// and still valid at now, and false if there is none.
func ForCSR(certs []Certificate, uid types.UID, caID string, now time.Time) ([]byte, bool) {
	for _, c := range Valid(certs, now) {
		if uid != "" && c.CSR == uid && c.CA == caID && c.PEM != "" {
			return []byte(c.PEM), true
		}
	}
	return nil, false
}

// Read returns the record on obj, oldest first; none if it has no record.
func Read(obj metav1.Object) ([]Certificate, error) {
	raw, ok := obj.GetAnnotations()[Annotation]
	if !ok {
		return nil, nil
	}
	var certs []Certificate
	if err := json.Unmarshal([]byte(raw), &certs); err != nil {
		return nil, fmt.Errorf("annotation %s of %s/%s: %w", Annotation, obj.GetNamespace(), obj.GetName(), err)
	}
	return certs, nil
}

// Valid returns the certificates of certs that have not expired at now.
func Valid(certs []Certificate, now time.Time) []Certificate {
	return slices.DeleteFunc(slices.Clone(certs), func(c Certificate) bool { return !now.Before(c.NotAfter) })
}

// Newest returns the certificate that expires last, and false if there is none.
func Newest(certs []Certificate) (Certificate, bool) {
	if len(certs) == 0 {
		return Certificate{}, false
	}
	return slices.MaxFunc(certs, func(a, b Certificate) int { return a.NotAfter.Compare(b.NotAfter) }), true
}

// Add returns certs with cert added and what expired at now dropped; nothing unexpired is ever
// dropped (MaxUnexpired bounds them before they are issued).
func Add(certs []Certificate, cert Certificate, now time.Time) []Certificate {
	return append(Valid(certs, now), cert)
}

// ParseCertificate parses the first certificate of PEM data.
func ParseCertificate(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}
