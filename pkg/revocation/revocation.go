// Package revocation says what a revocation of a cluster's agent is. Revocations are kept in
// each cluster's record (pkg/certificates/issued), in the manager's namespace, where no managed
// cluster identity may write and which neither OCM nor `helm uninstall` removes; the record
// orders a revocation against the certificates signed for the cluster.
//
// A ManagedCluster is no such place: OCM lets every cluster update its own ManagedCluster, so a
// revocation kept there can be lifted by the cluster it is meant to shut out. The revoked label
// on the ManagedCluster stays, as the input the chart's Placement selects on (and the chart's
// admission policy refuses a cluster any change to it), but the signer, the approver, the
// renderer and the cluster secrets decide from the record.
//
// Earlier versions kept the list in annotations of the add-on's ClusterManagementAddOn, which
// `helm uninstall` deletes with every revocation on it. Legacy reads them, so that the manager
// moves them into the records when it starts (issued.MigrateRevocations).
package revocation

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// AnnotationPrefix started the ClusterManagementAddOn annotation of one revoked cluster in
// earlier versions; the cluster's name is the annotation's name part.
const AnnotationPrefix = "revoked.argocd-agent-addon.open-cluster-management.io/"

// Revocation is one revoked cluster's agent.
type Revocation struct {
	Reason    string    `json:"reason"`
	RevokedAt time.Time `json:"revokedAt"`
	// CertificatesLapse, if set, is when the last certificate issued to the agent before the
	// revocation expires: a principal without a TLS blocklist accepts it until then.
	CertificatesLapse *time.Time `json:"certificatesLapse,omitempty"`
}

// Annotation is the legacy annotation key of cluster's revocation.
func Annotation(cluster string) string { return AnnotationPrefix + cluster }

// ValidateCluster refuses a name that cannot be a ManagedCluster, and so no annotation name.
func ValidateCluster(cluster string) error {
	if errs := validation.IsDNS1123Label(cluster); len(errs) > 0 {
		return fmt.Errorf("cluster name %q: %s", cluster, strings.Join(errs, "; "))
	}
	return nil
}

// Legacy returns the revocations an earlier version kept on cma, by cluster. An entry that
// cannot be read still revokes: a damaged list must fail closed.
func Legacy(cma *addonv1beta1.ClusterManagementAddOn) map[string]Revocation {
	out := map[string]Revocation{}
	for key, raw := range cma.GetAnnotations() {
		cluster, ok := strings.CutPrefix(key, AnnotationPrefix)
		if !ok || cluster == "" {
			continue
		}
		var r Revocation
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			r = Revocation{Reason: fmt.Sprintf("revoked (unreadable entry: %v)", err)}
		}
		out[cluster] = r
	}
	return out
}

// RemoveLegacy removes cluster's legacy annotation from the add-on's ClusterManagementAddOn
// with a merge patch of that one key; none is no error.
func RemoveLegacy(ctx context.Context, c client.Client, cluster string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{Annotation(cluster): nil}}})
	if err != nil {
		return err
	}
	cma := &addonv1beta1.ClusterManagementAddOn{}
	cma.Name = identity.AddonName
	if err := c.Patch(ctx, cma, client.RawPatch(types.MergePatchType, patch)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("removing the legacy revocation of %s from ClusterManagementAddOn %s: %w", cluster, identity.AddonName, err)
	}
	return nil
}
