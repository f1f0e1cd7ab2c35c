package issued

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/revocation"
)

// Migrate brings what an earlier version kept into the records in namespace, before anything
// is decided: the revocations it kept on the add-on's ClusterManagementAddOn are copied into
// the clusters' records, and records it made owned by the ClusterManagementAddOn lose that
// owner, so that an uninstall right after the upgrade cannot take them. The annotations stay:
// a manager of that version still running (a rolling update, a failed upgrade, `helm rollback`)
// reads only them; `unrevoke` removes both. It reads from reader, which must not be a cache
// that is not started yet. Idempotent: managers that run it together write the same thing. It
// returns the revocations copied and the records released.
func Migrate(ctx context.Context, c client.Client, reader client.Reader, namespace string) (copied, released int, err error) {
	cma := &addonv1beta1.ClusterManagementAddOn{}
	switch err := reader.Get(ctx, types.NamespacedName{Name: identity.AddonName}, cma); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return 0, 0, fmt.Errorf("reading ClusterManagementAddOn %s for revocations to copy: %w", identity.AddonName, err)
	default:
		for cluster, r := range revocation.Legacy(cma) {
			if revocation.ValidateCluster(cluster) != nil {
				continue // no such cluster can exist, nor have a record
			}
			rec, err := Load(ctx, reader, namespace, cluster)
			if err != nil {
				return copied, released, err
			}
			if rec.Revocation != nil {
				continue
			}
			if _, err := Update(ctx, c, reader, namespace, cluster, func(rec *Record) error {
				if rec.Revocation == nil {
					rec.Revocation = &r
				}
				return nil
			}); err != nil {
				return copied, released, err
			}
			copied++
		}
	}
	list := &corev1.ConfigMapList{}
	if err := reader.List(ctx, list, client.InNamespace(namespace), client.HasLabels{RecordLabel}); err != nil {
		return copied, released, fmt.Errorf("listing the records: %w", err)
	}
	for i := range list.Items {
		cm := &list.Items[i]
		owned := func(o metav1.OwnerReference) bool { return o.Kind == "ClusterManagementAddOn" }
		if !slices.ContainsFunc(cm.OwnerReferences, owned) {
			continue
		}
		cm.OwnerReferences = slices.DeleteFunc(cm.OwnerReferences, owned)
		if err := c.Update(ctx, cm); err != nil && !apierrors.IsConflict(err) {
			return copied, released, fmt.Errorf("releasing record %s from the ClusterManagementAddOn: %w", cm.Name, err)
		}
		released++
	}
	return copied, released, nil
}
