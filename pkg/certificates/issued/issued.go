// Package issued keeps a record of the certificates the signer issued to each cluster's agent
// that have not expired: fingerprint, signing CA and expiry. The record of a cluster is a
// ConfigMap in the manager's namespace (RecordName), written before the certificate is put on
// its CSR, so that no certificate leaves the hub unrecorded, even if the manager crashes in
// between; the entry then names the CSR and holds the certificate, which the next manager puts
// on that CSR instead of signing it again (ForCSR).
//
// CSRs are no record: kube-controller-manager deletes them an hour after they are signed, while
// an agent certificate lives for days. The record is what `revoke` blocklists, what `status`
// shows, and what tells an operator when a CA that was rolled over signs nothing valid any more
// and may leave the trust bundles. It lives in the manager's namespace, where no managed cluster
// may write, and outlives the cluster's ManagedClusterAddOn, which OCM deletes on revocation.
package issued

import (
	"context"
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

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// Annotation held the record on the ManagedClusterAddOn, as a JSON list, before the record moved
// to RecordName; it is still read, so certificates recorded there are not forgotten.
const Annotation = "argocd-agent-addon.open-cluster-management.io/issued-certificates"

// RecordLabel marks the record ConfigMaps; its value is the cluster's name.
const RecordLabel = "argocd-agent-addon.open-cluster-management.io/issued-certificates-of"

// recordKey is the ConfigMap key of the JSON list.
const recordKey = "certificates"

// RecordName is the name of cluster's record ConfigMap.
func RecordName(cluster string) string { return "argocd-agent-issued-" + cluster }

// MaxRecords bounds the record. OCM renews at 75-80 % of a certificate's life, so about two
// certificates per cluster are unexpired at a time; more means requests were replayed or a CA
// rolled over, and the newest are the ones that matter.
const MaxRecords = 16

// Certificate is one issued certificate.
type Certificate struct {
	// Fingerprint is the certificate's BlocklistKey.
	Fingerprint string `json:"sha256"`
	// CA is the ID of the CA that signed it (authority.ID).
	CA       string    `json:"ca"`
	NotAfter time.Time `json:"notAfter"`
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
	return Certificate{Fingerprint: BlocklistKey(cert.Raw), CA: caID, NotAfter: cert.NotAfter.UTC()}
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

// Add returns the record with cert added and what expired at now dropped, at most MaxRecords.
func Add(certs []Certificate, cert Certificate, now time.Time) []Certificate {
	certs = append(Valid(certs, now), cert)
	if len(certs) > MaxRecords {
		certs = certs[len(certs)-MaxRecords:]
	}
	return certs
}

// ParseCertificate parses the first certificate of PEM data.
func ParseCertificate(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// ReadRecord returns the record a ConfigMap holds, oldest first.
func ReadRecord(cm *corev1.ConfigMap) ([]Certificate, error) {
	raw, ok := cm.Data[recordKey]
	if !ok {
		return nil, nil
	}
	var certs []Certificate
	if err := json.Unmarshal([]byte(raw), &certs); err != nil {
		return nil, fmt.Errorf("record %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return certs, nil
}

// Recorded returns cluster's record in namespace, none if it has no record ConfigMap.
func Recorded(ctx context.Context, c client.Reader, namespace, cluster string) ([]Certificate, error) {
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: RecordName(cluster)}, cm); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	return ReadRecord(cm)
}

// Record adds cert to cluster's record in namespace, unless it is there already, creating the
// ConfigMap if needed. A record that cannot be read is started afresh rather than left to block
// every later one. The record is owned by the add-on's ClusterManagementAddOn, so that the
// garbage collector removes every record when the add-on is uninstalled (`helm uninstall`
// deletes it), and only then: a revoked cluster's record must outlive its ManagedClusterAddOn.
func Record(ctx context.Context, c client.Client, namespace, cluster string, cert Certificate, now time.Time, owner *addonv1beta1.ClusterManagementAddOn) error {
	ref := metav1.OwnerReference{APIVersion: addonv1beta1.GroupVersion.String(), Kind: "ClusterManagementAddOn", Name: owner.Name, UID: owner.UID}
	cm := &corev1.ConfigMap{}
	err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: RecordName(cluster)}, cm)
	if apierrors.IsNotFound(err) {
		raw, err := json.Marshal(Add(nil, cert, now))
		if err != nil {
			return err
		}
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: RecordName(cluster), Labels: map[string]string{
				RecordLabel: cluster, addonv1beta1.AddonLabelKey: identity.AddonName},
				OwnerReferences: []metav1.OwnerReference{ref}},
			Data: map[string]string{recordKey: string(raw)},
		}
		return c.Create(ctx, cm)
	}
	if err != nil {
		return err
	}
	certs, _ := ReadRecord(cm)
	owned := slices.ContainsFunc(cm.OwnerReferences, func(r metav1.OwnerReference) bool { return r.UID == owner.UID })
	if owned && slices.ContainsFunc(certs, func(c Certificate) bool { return c.Fingerprint == cert.Fingerprint }) {
		return nil
	}
	if !owned { // written before records were owned, or owned by a ClusterManagementAddOn since recreated
		cm.OwnerReferences = slices.DeleteFunc(cm.OwnerReferences, func(r metav1.OwnerReference) bool {
			return r.Kind == ref.Kind && r.Name == ref.Name
		})
		cm.OwnerReferences = append(cm.OwnerReferences, ref)
	}
	if !slices.ContainsFunc(certs, func(c Certificate) bool { return c.Fingerprint == cert.Fingerprint }) {
		certs = Add(certs, cert, now)
	}
	raw, err := json.Marshal(certs)
	if err != nil {
		return err
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[recordKey] = string(raw)
	return c.Update(ctx, cm) // optimistic: a conflict fails the signing, which is retried
}
