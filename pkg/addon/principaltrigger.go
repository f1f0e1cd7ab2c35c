package addon

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
)

// PrincipalTrigger re-renders every cluster's manifests when the principal's Service changes:
// clusters without an address of their own dial the one it gives (pkg/principal), and a
// cluster that had none yet gets its first render.
type PrincipalTrigger struct {
	Client    client.Client
	Discovery *principal.Discovery
	// Trigger asks addon-framework to reconcile one cluster's add-on.
	Trigger func(clusterName, addonName string)
}

// SetupWithManager watches the principal's Service.
func (t *PrincipalTrigger) SetupWithManager(mgr ctrl.Manager) error {
	key := t.Discovery.Service
	return ctrl.NewControllerManagedBy(mgr).
		Named("principal-trigger").
		For(&corev1.Service{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()} == key
		}))).
		Complete(t)
}

// Reconcile logs what discovery finds now and re-renders every cluster.
func (t *PrincipalTrigger) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	if ep, err := t.Discovery.Discover(ctx); err != nil {
		logger.Info("No principal address to discover: clusters whose AddOnDeploymentConfig sets none get no agent until there is one", "reason", err.Error())
	} else {
		logger.Info("Principal address discovered", "address", ep.Address(), "from", ep.From)
	}
	return ctrl.Result{}, triggerAddons(ctx, t.Client, t.Trigger, func(*addonv1beta1.ManagedClusterAddOn) bool { return true })
}
