package issued

import (
	"context"
	"crypto/x509"
	"fmt"

	"slices"

	"k8s.io/apimachinery/pkg/types"

	certificatesv1 "k8s.io/api/certificates/v1"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// OnHub returns, by cluster, the certificates issued to its agent as the hub knows them: its
// record (and what an earlier version recorded on its ManagedClusterAddOn), plus the
// certificates of the CSRs of the add-on's signer the hub still has, attributed to whichever of
// cas signed them. Records are found by label, in every namespace reader sees: the manager's
// cache holds its own namespace only.
func OnHub(ctx context.Context, reader client.Reader, cas []*x509.Certificate) (map[string][]Certificate, error) {
	out := map[string][]Certificate{}
	add := func(cluster string, cert Certificate) {
		if !slices.ContainsFunc(out[cluster], func(c Certificate) bool { return c.Fingerprint == cert.Fingerprint }) {
			out[cluster] = append(out[cluster], cert)
		}
	}
	records, err := List(ctx, reader, "")
	if err != nil {
		return nil, err
	}
	for cluster, r := range records {
		for _, c := range r.Certificates {
			add(cluster, c)
		}
	}
	addons := &addonv1beta1.ManagedClusterAddOnList{}
	if err := reader.List(ctx, addons); err != nil {
		return nil, fmt.Errorf("listing ManagedClusterAddOns: %w", err)
	}
	for i := range addons.Items {
		if a := &addons.Items[i]; a.Name == identity.AddonName {
			recorded, err := Read(a)
			if err != nil {
				return nil, err
			}
			for _, c := range recorded {
				add(a.Namespace, c)
			}
		}
	}
	csrs := &certificatesv1.CertificateSigningRequestList{}
	if err := reader.List(ctx, csrs, client.MatchingLabels{addonv1beta1.AddonLabelKey: identity.AddonName}); err != nil {
		return nil, fmt.Errorf("listing CSRs: %w", err)
	}
	for _, csr := range csrs.Items {
		cluster := csr.Labels[clusterv1.ClusterNameLabelKey]
		cert, err := ParseCertificate(csr.Status.Certificate)
		if csr.Spec.SignerName != identity.SignerName || cluster == "" || err != nil {
			continue
		}
		add(cluster, Of(cert, Issuer(cert, cas)))
	}
	return out, nil
}

// Issuer is the ID of the CA of cas that signed cert, or "" if none did.
func Issuer(cert *x509.Certificate, cas []*x509.Certificate) string {
	for _, ca := range cas {
		if cert.CheckSignatureFrom(ca) == nil {
			return authority.ID(ca)
		}
	}
	return ""
}

// OnHubFor returns the certificates issued to cluster that the hub knows of outside its
// record: on its CSRs still there, and where an earlier version recorded them on its
// ManagedClusterAddOn. It reads only what names the cluster, so that a damaged object of
// another cluster cannot keep `revoke` from this one; a damaged legacy entry of its own is
// skipped (its certificates are on its CSRs or expired).
func OnHubFor(ctx context.Context, reader client.Reader, cluster string) ([]Certificate, error) {
	var out []Certificate
	csrs := &certificatesv1.CertificateSigningRequestList{}
	if err := reader.List(ctx, csrs, client.MatchingLabels{clusterv1.ClusterNameLabelKey: cluster}); err != nil {
		return nil, fmt.Errorf("listing the CSRs of cluster %s: %w", cluster, err)
	}
	for _, csr := range csrs.Items {
		if cert, err := ParseCertificate(csr.Status.Certificate); err == nil && csr.Spec.SignerName == identity.SignerName {
			out = append(out, Of(cert, ""))
		}
	}
	mca := &addonv1beta1.ManagedClusterAddOn{}
	if err := reader.Get(ctx, types.NamespacedName{Namespace: cluster, Name: identity.AddonName}, mca); client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("reading the ManagedClusterAddOn of cluster %s: %w", cluster, err)
	}
	if legacy, err := Read(mca); err == nil {
		out = append(out, legacy...)
	}
	return out, nil
}
