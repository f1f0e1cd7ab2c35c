// Package revocation keeps the list of revoked agents where only the hub decides it: in
// annotations of the add-on's ClusterManagementAddOn, a cluster-scoped object that no managed
// cluster identity may write.
//
// A ManagedCluster is no such place: OCM lets every cluster update its own ManagedCluster, so a
// revocation kept there can be lifted by the cluster it is meant to shut out. The revoked label
// on the ManagedCluster stays, as the input the chart's Placement selects on (and the chart's
// admission policy refuses a cluster any change to it), but the signer, the approver and the
// renderer decide from this list.
package revocation

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// AnnotationPrefix starts the ClusterManagementAddOn annotation of one revoked cluster; the
// cluster's name (a DNS-1123 label, at most 63 characters) is the annotation's name part.
const AnnotationPrefix = "revoked.argocd-agent-addon.open-cluster-management.io/"

// Revocation is one revoked cluster's agent.
type Revocation struct {
	Reason    string    `json:"reason"`
	RevokedAt time.Time `json:"revokedAt"`
	// CertificatesLapse, if set, is when the last certificate issued to the agent before the
	// revocation expires: a principal without a TLS blocklist accepts it until then.
	CertificatesLapse *time.Time `json:"certificatesLapse,omitempty"`
}

// Annotation is the annotation key of cluster's revocation.
func Annotation(cluster string) string { return AnnotationPrefix + cluster }

// ValidateCluster refuses a name that cannot be a ManagedCluster, and so no annotation name.
func ValidateCluster(cluster string) error {
	if errs := validation.IsDNS1123Label(cluster); len(errs) > 0 {
		return fmt.Errorf("cluster name %q: %s", cluster, strings.Join(errs, "; "))
	}
	return nil
}

// List returns the revocations on cma by cluster. An entry that cannot be read still revokes:
// a damaged list must fail closed.
func List(cma *addonv1beta1.ClusterManagementAddOn) map[string]Revocation {
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

// Clusters returns the revoked clusters of list, sorted.
func Clusters(list map[string]Revocation) []string {
	out := make([]string, 0, len(list))
	for c := range list {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// ClusterManagementAddOn reads the add-on's ClusterManagementAddOn.
func ClusterManagementAddOn(ctx context.Context, reader client.Reader) (*addonv1beta1.ClusterManagementAddOn, error) {
	cma := &addonv1beta1.ClusterManagementAddOn{}
	if err := reader.Get(ctx, types.NamespacedName{Name: identity.AddonName}, cma); err != nil {
		return nil, fmt.Errorf("reading ClusterManagementAddOn %s, which holds the revocations: %w", identity.AddonName, err)
	}
	return cma, nil
}

// Get returns cluster's revocation, or nil if it is not revoked. Without a readable
// ClusterManagementAddOn it returns an error: nothing may be decided without the list.
func Get(ctx context.Context, reader client.Reader, cluster string) (*Revocation, error) {
	cma, err := ClusterManagementAddOn(ctx, reader)
	if err != nil {
		return nil, err
	}
	if r, ok := List(cma)[cluster]; ok {
		return &r, nil
	}
	return nil, nil
}

// Set records (r != nil) or lifts (r == nil) cluster's revocation with a merge patch of the one
// annotation, so nothing else on the object is touched.
func Set(ctx context.Context, c client.Client, cluster string, r *Revocation) error {
	if err := ValidateCluster(cluster); err != nil {
		return err
	}
	var value any // null deletes the key in a merge patch
	if r != nil {
		raw, err := json.Marshal(r)
		if err != nil {
			return err
		}
		value = string(raw)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{Annotation(cluster): value}}})
	if err != nil {
		return err
	}
	cma := &addonv1beta1.ClusterManagementAddOn{}
	cma.Name = identity.AddonName
	if err := c.Patch(ctx, cma, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("recording the revocation of %s on ClusterManagementAddOn %s: %w", cluster, identity.AddonName, err)
	}
	return nil
}
