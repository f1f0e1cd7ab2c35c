// Package certificates holds the helpers the add-on's CSR controllers share, and nothing that
// decides a CSR: which CSRs are the add-on's (ForOurSigner; the manager caches no other and
// keeps of each only what is decided from, CSRCache), the state a CSR is in (HasCondition,
// Pending), how a decision or a certificate is written to a CSR (SetCondition, UpdateStatus) and
// how a CSR waits for a usable CA (WaitForCA, WatchCASecret).
//
// As in Kubernetes' pkg/controller/certificates, the packages below it are small siblings that
// build on it, and it imports none of them:
//
//   - authority: the CA, read from the hub secret, that signs agent client certificates;
//   - issued: the hub's record of each cluster's certificates, keys and revocation;
//   - policy: the checks a CSR must pass, against what the hub knows of its cluster (Decide);
//   - approver: approves or denies every pending CSR of the add-on's signer, by the policy;
//   - signer: issues one certificate per approved CSR, after the policy again, recorded first;
//   - metrics: the counters the approver and the signer increment, and the fleet's gauges.
package certificates

import (
	"context"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// MaxRequestBytes bounds a CSR's PEM request. An OCM request is well under 1 KiB; a bound keeps
// a hostile request from costing the hub much to parse or to keep: the policy refuses a larger
// one (policy.ReasonRequestTooLarge), and the manager's cache keeps one byte more of it at most
// (CacheTransform).
const MaxRequestBytes = 16 << 10

// ForOurSigner reports whether obj is a CSR for the add-on's signer.
func ForOurSigner(obj client.Object) bool {
	csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
	return ok && csr.Spec.SignerName == identity.SignerName
}

// HasCondition reports whether csr has a condition of type t with status True.
func HasCondition(csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// Pending reports whether csr has no decision yet: neither approved, denied nor failed.
func Pending(csr *certificatesv1.CertificateSigningRequest) bool {
	return !HasCondition(csr, certificatesv1.CertificateApproved) &&
		!HasCondition(csr, certificatesv1.CertificateDenied) &&
		!HasCondition(csr, certificatesv1.CertificateFailed)
}

// WatchCASecret makes a controller reconcile the CSRs for the add-on's signer that pick selects
// whenever the CA secret key changes, so that those waiting for a usable CA go on at once.
func WatchCASecret(b *builder.Builder, reader client.Reader, key types.NamespacedName, pick func(*certificatesv1.CertificateSigningRequest) bool) *builder.Builder {
	enqueue := func(ctx context.Context, _ client.Object) []reconcile.Request {
		list := &certificatesv1.CertificateSigningRequestList{}
		if err := reader.List(ctx, list); err != nil {
			log.FromContext(ctx).Error(err, "Listing CSRs after a CA change")
			return nil
		}
		var reqs []reconcile.Request
		for i := range list.Items {
			if csr := &list.Items[i]; ForOurSigner(csr) && pick(csr) {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: csr.Name}})
			}
		}
		return reqs
	}
	return b.Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(enqueue),
		builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetNamespace() == key.Namespace && o.GetName() == key.Name
		})))
}
