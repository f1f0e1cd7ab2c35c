package policy

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// Decide runs every check the approver and the signer both make: Check, against what the hub
// knows of the cluster the CSR names (HubFacts) at now, for the CA with ID caID. The signer runs
// it again on approved CSRs, since anyone with the approve right may have approved them and the
// facts may have changed since, and writes the certificate into the record it decided from
// (Hub.Record), at the version it was read.
func (p Policy) Decide(ctx context.Context, reader client.Reader, csr *certificatesv1.CertificateSigningRequest, caID, recordNamespace string, now time.Time) (*x509.CertificateRequest, Hub, *Rejection, error) {
	hub, err := HubFacts(ctx, reader, csr, caID, recordNamespace, now)
	if err != nil {
		return nil, hub, nil, err
	}
	req, rej := p.Check(csr, hub)
	return req, hub, rej, nil
}

// HubFacts gathers what the policy decides from for the cluster csr's label names: its
// ManagedCluster, its ManagedClusterAddOn and its record in recordNamespace (revocation,
// certificates, keys). The record must be readable: without it nothing is decided.
func HubFacts(ctx context.Context, reader client.Reader, csr *certificatesv1.CertificateSigningRequest, caID, recordNamespace string, now time.Time) (Hub, error) {
	hub := Hub{CAID: caID, Now: now}
	cluster, err := clusterFor(ctx, reader, csr)
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

// clusterFor returns the ManagedCluster the CSR's cluster label names, or nil if the label is
// missing or no such cluster exists.
func clusterFor(ctx context.Context, reader client.Reader, csr *certificatesv1.CertificateSigningRequest) (*clusterv1.ManagedCluster, error) {
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
