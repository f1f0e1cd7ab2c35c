// Package certificates holds what the add-on's CSR approver and signer share: which CSRs are
// theirs, the state a CSR is in, the cluster it claims to come from, the checks both make, and
// how both write a decision and wait for a usable CA (status.go).
//
// The approver (pkg/certificates/approver) approves or denies every pending CSR for the
// add-on's signer; the signer (pkg/certificates/signer) issues certificates for approved ones,
// checking them again because anyone with approve rights may have approved them.
package certificates

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// CASource returns the signing CA, read from the hub secret Key.
type CASource interface {
	Get(ctx context.Context) (*authority.CA, error)
	Key() types.NamespacedName
}

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
// whenever the CA secret changes, so that those waiting for a usable CA go on at once.
func WatchCASecret(b *builder.Builder, reader client.Reader, ca CASource, pick func(*certificatesv1.CertificateSigningRequest) bool) *builder.Builder {
	key := ca.Key()
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

// Decide runs every check the approver and the signer both make: the policy, against what the
// hub knows of the cluster the CSR names (HubFacts) at now. The signer runs it again on
// approved CSRs, since anyone with the approve right may have approved them and the facts may
// have changed since, and writes the certificate into the record it decided from (hub.Record),
// at the version it was read.
func Decide(ctx context.Context, reader client.Reader, pol policy.Policy, csr *certificatesv1.CertificateSigningRequest, caID, recordNamespace string, now time.Time) (*x509.CertificateRequest, policy.Hub, *policy.Rejection, error) {
	hub, err := HubFacts(ctx, reader, csr, caID, recordNamespace, now)
	if err != nil {
		return nil, hub, nil, err
	}
	req, rej := pol.Check(csr, hub)
	return req, hub, rej, nil
}

// HubFacts gathers what the policy decides from for the cluster csr's label names: its
// ManagedCluster, its ManagedClusterAddOn and its record in recordNamespace (revocation,
// certificates, keys). The record must be readable: without it nothing is decided.
func HubFacts(ctx context.Context, reader client.Reader, csr *certificatesv1.CertificateSigningRequest, caID, recordNamespace string, now time.Time) (policy.Hub, error) {
	hub := policy.Hub{CAID: caID, Now: now}
	cluster, err := ClusterFor(ctx, reader, csr)
	if err != nil || cluster == nil {
		return hub, err
	}
	hub.Cluster = cluster
	mca := &addonv1beta1.ManagedClusterAddOn{}
	switch err := reader.Get(ctx, types.NamespacedName{Namespace: cluster.Name, Name: identity.AddonName}, mca); {
	case err == nil:
		hub.Addon = mca
	case !apierrors.IsNotFound(err):
		return hub, fmt.Errorf("reading the ManagedClusterAddOn of cluster %s: %w", cluster.Name, err)
	}
	if hub.Record, err = issued.Load(ctx, reader, recordNamespace, cluster.Name); err != nil {
		return hub, err
	}
	return hub, nil
}

// ClusterFor returns the ManagedCluster the CSR's cluster label names, or nil if the label is
// missing or no such cluster exists.
func ClusterFor(ctx context.Context, reader client.Reader, csr *certificatesv1.CertificateSigningRequest) (*clusterv1.ManagedCluster, error) {
	name := csr.Labels[clusterv1.ClusterNameLabelKey]
	if name == "" {
		return nil, nil
	}
	cluster := &clusterv1.ManagedCluster{}
	if err := reader.Get(ctx, types.NamespacedName{Name: name}, cluster); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return cluster, nil
}
