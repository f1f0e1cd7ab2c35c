package addon

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// RevocationTrigger re-renders a cluster's manifests when its revocation is set or lifted: a
// revoked cluster's render is refused at once (its add-on says `agent revoked`, and nothing more
// reaches it; OCM removes the delivered ManifestWork with the add-on, once the Placement drops
// the cluster), and an `unrevoke` delivers again without waiting for another change.
type RevocationTrigger struct {
	// Namespace is where the records live (issued.Records).
	Namespace string
	// Trigger asks addon-framework to reconcile one cluster's add-on.
	Trigger func(clusterName, addonName string)
}

// SetupWithManager watches the record ConfigMaps.
func (t *RevocationTrigger) SetupWithManager(mgr ctrl.Manager) error {
	record := func(o client.Object) bool {
		return o.GetNamespace() == t.Namespace && o.GetLabels()[issued.RecordLabel] != ""
	}
	// Only a revocation set or lifted: a record also changes with every certificate issued.
	return ctrl.NewControllerManagedBy(mgr).
		Named("revocation-trigger").
		For(&corev1.ConfigMap{}, builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(e event.CreateEvent) bool { return record(e.Object) && issued.Revoked(e.Object) },
			DeleteFunc: func(e event.DeleteEvent) bool { return record(e.Object) && issued.Revoked(e.Object) },
			UpdateFunc: func(e event.UpdateEvent) bool {
				return record(e.ObjectNew) && issued.Revoked(e.ObjectOld) != issued.Revoked(e.ObjectNew)
			},
			GenericFunc: func(event.GenericEvent) bool { return false },
		})).
		Complete(t)
}

// Reconcile re-renders the record's cluster.
func (t *RevocationTrigger) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	// The name says the cluster (issued.RecordName); deleted records trigger too.
	if cluster, ok := issued.ClusterOfRecord(req.Name); ok {
		t.Trigger(cluster, identity.AddonName)
	}
	return ctrl.Result{}, nil
}
