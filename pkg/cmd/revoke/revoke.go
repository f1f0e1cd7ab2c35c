// Package revoke is the `argocd-agent-addon revoke` and `unrevoke` commands. Revoking a
// cluster's agent records it, with the reason and the time, in the cluster's hub-only record
// (pkg/certificates/issued): from then on nothing is signed or delivered for it. It also labels the
// ManagedCluster so that the chart's Placement drops it and OCM removes its add-on, and puts the
// SHA-256 fingerprints of every certificate issued to it into the principal's TLS blocklist
// ConfigMap, for principals that read one.
package revoke

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/revocation"
)

// Options are the revoke and unrevoke settings.
type Options struct {
	Kubeconfig         string
	Reason             string
	PrincipalNamespace string
	// Namespace is the manager's, where the clusters' records are.
	Namespace string
	// RestConfig, if set, is used instead of Kubeconfig (tests).
	RestConfig *rest.Config
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewCommands returns the revoke and unrevoke commands.
func NewCommands() []*cobra.Command {
	o := &Options{PrincipalNamespace: "argocd", Namespace: DefaultNamespace}
	revoke := &cobra.Command{
		Use:   "revoke CLUSTER --reason TEXT",
		Short: "Revoke a cluster's agent: no more certificates, add-on removed, issued certificates blocklisted",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Reason == "" {
				return errors.New("--reason is required: say why, for whoever reads it on the hub")
			}
			return o.Revoke(cmd.Context(), args[0], cmd.OutOrStdout())
		},
	}
	o.AddFlags(revoke.Flags())
	revoke.Flags().StringVar(&o.Reason, "reason", o.Reason, "Why the agent is revoked (required); recorded in the revocation list, which status shows.")
	unrevoke := &cobra.Command{
		Use:   "unrevoke CLUSTER",
		Short: "Let a revoked cluster's agent get certificates and the add-on again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.Unrevoke(cmd.Context(), args[0], cmd.OutOrStdout())
		},
	}
	o.AddFlags(unrevoke.Flags())
	return []*cobra.Command{revoke, unrevoke}
}

// AddFlags binds the shared options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	hubclient.AddKubeconfigFlag(fs, &o.Kubeconfig)
	fs.StringVar(&o.PrincipalNamespace, "principal-namespace", o.PrincipalNamespace, "Namespace of the principal and its TLS blocklist ConfigMap.")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "Namespace of the manager (the chart's release namespace), where the clusters' records and revocations are kept.")
}

// DefaultNamespace is the namespace the documentation installs the chart in.
const DefaultNamespace = "argocd-agent-addon"

func (o *Options) client() (client.Client, error) {
	if o.Namespace == "" {
		return nil, errors.New("--namespace is required: the manager's namespace, where the records are")
	}
	return hubclient.New(o.Kubeconfig, o.RestConfig)
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Revoke revokes cluster's agent and reports what it did to out.
func (o *Options) Revoke(ctx context.Context, cluster string, out io.Writer) error {
	if err := revocation.ValidateCluster(cluster); err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	now := o.now().UTC().Truncate(time.Second)
	// Certificates the hub knows of outside the record: on CSRs still there, or recorded where
	// an earlier version kept them. Every other certificate was recorded before it was handed
	// out, and the record is written over the version the revocation is written over.
	if err := o.checkNamespace(ctx, c); err != nil {
		return err
	}
	outside, err := issued.OnHubFor(ctx, c, cluster)
	if err != nil {
		return err
	}
	r := &revocation.Revocation{Reason: o.Reason, RevokedAt: now}
	// The decision first: from here on the signer and the approver refuse the cluster, and the
	// record at this version holds every certificate signed before.
	rec, err := issued.Update(ctx, c, c, o.Namespace, cluster, func(rec *issued.Record) error {
		r.CertificatesLapse = nil
		for _, cert := range issued.Valid(append(slices.Clone(outside), rec.Certificates...), now) {
			if r.CertificatesLapse == nil || cert.NotAfter.After(*r.CertificatesLapse) {
				lapse := cert.NotAfter.UTC()
				r.CertificatesLapse = &lapse
			}
		}
		rec.Revocation = r
		return nil
	})
	if err != nil {
		return fmt.Errorf("recording the revocation of %s in namespace %s: %w", cluster, o.Namespace, err)
	}
	if err := revocation.RemoveLegacy(ctx, c, cluster); err != nil {
		return err
	}
	labelled, err := setRevokedLabel(ctx, c, cluster, true)
	if err != nil {
		return err
	}
	certs := map[string]time.Time{}
	// Expired certificates need no blocking: the principal refuses them anyway.
	for _, cert := range issued.Valid(append(outside, rec.Certificates...), now) {
		certs[cert.Fingerprint] = cert.NotAfter
	}
	var lapse time.Time
	if r.CertificatesLapse != nil {
		lapse = *r.CertificatesLapse
	}
	if err := blocklist(ctx, c, o.PrincipalNamespace, certs, fmt.Sprintf("cluster=%s revoked=%s reason=%s", cluster, now.Format(time.RFC3339), o.Reason)); err != nil {
		return err
	}
	msg := fmt.Sprintf("revoked %s: no certificate will be signed for it and its add-on is being removed; "+
		"%d issued certificate(s) added to %s/%s", cluster, len(certs), o.PrincipalNamespace, identity.TLSBlocklistConfigMap)
	if !labelled {
		msg += fmt.Sprintf("; there is no ManagedCluster %s now: the revocation holds if it joins", cluster)
	}
	if !lapse.IsZero() && lapse.After(now) {
		msg += fmt.Sprintf("; where the principal has no blocklist, the last of them lapses at %s (in %s)",
			lapse.Format(time.RFC3339), lapse.Sub(now).Round(time.Second))
	}
	_, err = fmt.Fprintln(out, msg)
	return err
}

// Unrevoke lifts the revocation. Blocklisted certificates stay blocked: the agent gets new ones.
func (o *Options) Unrevoke(ctx context.Context, cluster string, out io.Writer) error {
	if err := revocation.ValidateCluster(cluster); err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	if err := o.checkNamespace(ctx, c); err != nil {
		return err
	}
	// The decision first, then the Placement's label: once the add-on is back, its first
	// request is signed rather than refused. The record keeps its keys: none is certified again.
	if _, err := issued.Update(ctx, c, c, o.Namespace, cluster, func(rec *issued.Record) error {
		rec.Revocation = nil
		return nil
	}); err != nil {
		return fmt.Errorf("lifting the revocation of %s in namespace %s: %w", cluster, o.Namespace, err)
	}
	if err := revocation.RemoveLegacy(ctx, c, cluster); err != nil {
		return err
	}
	removed, err := deleteDeniedCSRs(ctx, c, cluster)
	if err != nil {
		return err
	}
	if _, err := setRevokedLabel(ctx, c, cluster, false); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "unrevoked %s: it can get certificates and the add-on again (%d CSRs denied while it was revoked deleted)\n", cluster, removed)
	return err
}

// checkNamespace refuses a --namespace the manager does not keep its records in: a revocation
// written there would be read by nobody. The namespace is the manager's if its Lease is there
// (it leads there) or records are (it did, and may again after a reinstall).
func (o *Options) checkNamespace(ctx context.Context, c client.Client) error {
	err := c.Get(ctx, types.NamespacedName{Namespace: o.Namespace, Name: identity.ManagerLease}, &coordinationv1.Lease{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("checking that the manager runs in namespace %s: %w", o.Namespace, err)
	}
	records := &corev1.ConfigMapList{}
	if err := c.List(ctx, records, client.InNamespace(o.Namespace), client.HasLabels{issued.RecordLabel}, client.Limit(1)); err != nil {
		return fmt.Errorf("checking for records in namespace %s: %w", o.Namespace, err)
	}
	if len(records.Items) == 0 {
		return fmt.Errorf("namespace %s holds no manager Lease %s and no records: the manager would never read a revocation there; give --namespace the namespace the chart is installed in",
			o.Namespace, identity.ManagerLease)
	}
	return nil
}

// deleteDeniedCSRs deletes the cluster's denied CSRs for the add-on's signer. OCM's
// registration agent files no CSR for an add-on while ten of its CSRs exist on the hub, and
// kube-controller-manager deletes denied ones only after an hour: those denied while the
// cluster was revoked would keep its agent from coming back for that long.
func deleteDeniedCSRs(ctx context.Context, c client.Client, cluster string) (int, error) {
	list := &certificatesv1.CertificateSigningRequestList{}
	if err := c.List(ctx, list, client.MatchingLabels{clusterv1.ClusterNameLabelKey: cluster, addonv1beta1.AddonLabelKey: identity.AddonName}); err != nil {
		return 0, fmt.Errorf("listing the CSRs of %s: %w", cluster, err)
	}
	n := 0
	for i := range list.Items {
		csr := &list.Items[i]
		denied := slices.ContainsFunc(csr.Status.Conditions, func(c certificatesv1.CertificateSigningRequestCondition) bool {
			return c.Type == certificatesv1.CertificateDenied
		})
		if !denied || csr.Spec.SignerName != identity.SignerName {
			continue
		}
		if err := c.Delete(ctx, csr); client.IgnoreNotFound(err) != nil {
			return n, fmt.Errorf("deleting denied CSR %s: %w", csr.Name, err)
		}
		n++
	}
	return n, nil
}

// setRevokedLabel sets or removes the label the chart's Placement excludes revoked clusters by.
// It reports false if there is no such ManagedCluster.
func setRevokedLabel(ctx context.Context, c client.Client, cluster string, revoked bool) (bool, error) {
	mc := &clusterv1.ManagedCluster{}
	if err := c.Get(ctx, types.NamespacedName{Name: cluster}, mc); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("ManagedCluster %s: %w", cluster, err)
	}
	patch := client.MergeFrom(mc.DeepCopy())
	if revoked {
		if mc.Labels == nil {
			mc.Labels = map[string]string{}
		}
		mc.Labels[identity.RevokedLabel] = "true"
	} else {
		delete(mc.Labels, identity.RevokedLabel)
	}
	return true, c.Patch(ctx, mc, patch)
}

// blocklist adds fingerprints to the principal's TLS blocklist ConfigMap, creating it if
// needed. The format is argocd-agent's: one key per certificate, its upper-case hex SHA-256;
// the principal ignores values, so they hold a note for the operator.
func blocklist(ctx context.Context, c client.Client, namespace string, fingerprints map[string]time.Time, note string) error {
	cm := &corev1.ConfigMap{}
	err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: identity.TLSBlocklistConfigMap}, cm)
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: identity.TLSBlocklistConfigMap}, Data: map[string]string{}}
		for fp := range fingerprints {
			cm.Data[fp] = note
		}
		return c.Create(ctx, cm)
	}
	if err != nil {
		return fmt.Errorf("reading %s/%s: %w", namespace, identity.TLSBlocklistConfigMap, err)
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	for fp := range fingerprints {
		cm.Data[fp] = note
	}
	return c.Update(ctx, cm)
}
