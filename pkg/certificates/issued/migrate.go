package issued

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/revocation"
)

// MigrateRevocations moves the revocations an earlier version kept on the add-on's
// ClusterManagementAddOn into the clusters' records in namespace, each before its annotation
// is removed, so that none is lost if this stops half-way. It reads from reader, which must
// not be a cache that is not started yet. Idempotent: managers that run it together write the
// same thing.
func MigrateRevocations(ctx context.Context, c client.Client, reader client.Reader, namespace string) (int, error) {
	cma := &addonv1beta1.ClusterManagementAddOn{}
	if err := reader.Get(ctx, types.NamespacedName{Name: identity.AddonName}, cma); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("reading ClusterManagementAddOn %s for revocations to move: %w", identity.AddonName, err)
	}
	legacy := revocation.Legacy(cma)
	for cluster, r := range legacy {
		if err := revocation.ValidateCluster(cluster); err != nil {
			continue // no such cluster can exist, nor have a record
		}
		if _, err := Update(ctx, c, reader, namespace, cluster, func(rec *Record) error {
			if rec.Revocation == nil {
				rec.Revocation = &r
			}
			return nil
		}); err != nil {
			return 0, err
		}
		if err := revocation.RemoveLegacy(ctx, c, cluster); err != nil {
			return 0, err
		}
	}
	return len(legacy), nil
}
