// Package status is the `argocd-agent-addon status` command: one line per cluster that has the
// add-on or is revoked, with its availability, the expiry of the agent's newest certificate,
// the agent mode and image it was given, and whether it is revoked.
package status

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// Options are the status settings.
type Options struct {
	Kubeconfig string
	// RestConfig, if set, is used instead of Kubeconfig (tests).
	RestConfig *rest.Config
}

// NewCommand returns the status command.
func NewCommand() *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show, per cluster, the add-on's availability, certificate expiry, agent mode and image",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.Run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Kubeconfig of the hub; empty means $KUBECONFIG or in-cluster.")
}

// Row is one cluster's status.
type Row struct {
	Cluster      string
	Available    string
	CertNotAfter time.Time
	Mode         string
	Image        string
	// Revoked is the revocation reason, empty if not revoked.
	Revoked string
}

// Run prints the table to out.
func (o *Options) Run(ctx context.Context, out io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	c, err := hubclient.New(o.Kubeconfig, o.RestConfig)
	if err != nil {
		return err
	}
	rows, err := Collect(ctx, c)
	if err != nil {
		return err
	}
	return Print(out, rows, time.Now())
}

// Collect reads each cluster's status from the hub: its ManagedClusterAddOn, its ManifestWork
// and the certificates issued to it.
func Collect(ctx context.Context, c client.Client) ([]Row, error) {
	addons := &addonv1beta1.ManagedClusterAddOnList{}
	if err := c.List(ctx, addons); err != nil {
		return nil, fmt.Errorf("listing ManagedClusterAddOns: %w", err)
	}
	csrs := &certificatesv1.CertificateSigningRequestList{}
	if err := c.List(ctx, csrs, client.MatchingLabels{addonv1beta1.AddonLabelKey: identity.AddonName}); err != nil {
		return nil, fmt.Errorf("listing CSRs: %w", err)
	}
	notAfter := map[string]time.Time{}
	for _, csr := range csrs.Items {
		if csr.Spec.SignerName != identity.SignerName || len(csr.Status.Certificate) == 0 {
			continue
		}
		block, _ := pem.Decode(csr.Status.Certificate)
		if block == nil {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			continue
		}
		cluster := csr.Labels[clusterv1.ClusterNameLabelKey]
		if cert.NotAfter.After(notAfter[cluster]) {
			notAfter[cluster] = cert.NotAfter
		}
	}
	var rows []Row
	for _, a := range addons.Items {
		if a.Name != identity.AddonName {
			continue
		}
		row := Row{Cluster: a.Namespace, Available: "Unknown", CertNotAfter: notAfter[a.Namespace]}
		if cond := meta.FindStatusCondition(a.Status.Conditions, addonv1beta1.ManagedClusterAddOnConditionAvailable); cond != nil {
			row.Available = string(cond.Status)
		}
		mode, image, err := delivered(ctx, c, a.Namespace)
		if err != nil {
			return nil, err
		}
		row.Mode, row.Image = mode, image
		rows = append(rows, row)
	}
	// Revoked clusters lose their add-on; list them all the same.
	clusters := &clusterv1.ManagedClusterList{}
	if err := c.List(ctx, clusters); err != nil {
		return nil, fmt.Errorf("listing ManagedClusters: %w", err)
	}
	for _, mc := range clusters.Items {
		if _, revoked := mc.Labels[identity.RevokedLabel]; !revoked {
			continue
		}
		reason := mc.Annotations[identity.RevokedReasonAnnotation]
		if reason == "" {
			reason = "revoked"
		}
		found := false
		for i := range rows {
			if rows[i].Cluster == mc.Name {
				rows[i].Revoked, found = reason, true
			}
		}
		if !found {
			rows = append(rows, Row{Cluster: mc.Name, Available: "-", CertNotAfter: notAfter[mc.Name], Revoked: reason})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Cluster < rows[j].Cluster })
	return rows, nil
}

// delivered reads the agent mode and image from the cluster's ManifestWork.
func delivered(ctx context.Context, c client.Client, cluster string) (mode, image string, err error) {
	mw := &workv1.ManifestWork{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: cluster, Name: "addon-" + identity.AddonName + "-deploy-0"}, mw); err != nil {
		if apierrors.IsNotFound(err) {
			return "", "", nil
		}
		return "", "", err
	}
	for _, m := range mw.Spec.Workload.Manifests {
		var kind struct{ Kind string }
		if json.Unmarshal(m.Raw, &kind) != nil {
			continue
		}
		switch kind.Kind {
		case "ConfigMap":
			cm := &corev1.ConfigMap{}
			if json.Unmarshal(m.Raw, cm) == nil && cm.Name == "argocd-agent-params" {
				mode = cm.Data["agent.mode"]
			}
		case "Deployment":
			d := &appsv1.Deployment{}
			if json.Unmarshal(m.Raw, d) == nil && d.Name == identity.AgentName && len(d.Spec.Template.Spec.Containers) > 0 {
				image = d.Spec.Template.Spec.Containers[0].Image
			}
		}
	}
	return mode, image, nil
}

// Print writes rows as a table; expiry is shown relative to now.
func Print(out io.Writer, rows []Row, now time.Time) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CLUSTER\tAVAILABLE\tCERTIFICATE EXPIRES\tMODE\tIMAGE\tREVOKED")
	for _, r := range rows {
		expires := "-"
		if !r.CertNotAfter.IsZero() {
			expires = fmt.Sprintf("%s (in %s)", r.CertNotAfter.UTC().Format(time.RFC3339), r.CertNotAfter.Sub(now).Round(time.Minute))
			if !now.Before(r.CertNotAfter) {
				expires = r.CertNotAfter.UTC().Format(time.RFC3339) + " (EXPIRED)"
			}
		}
		revoked := "no"
		if r.Revoked != "" {
			revoked = "yes: " + r.Revoked
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Cluster, r.Available, expires, orDash(r.Mode), orDash(r.Image), revoked)
	}
	return w.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
