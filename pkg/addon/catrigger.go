package addon

import (
	"context"

	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	corev1 "k8s.io/api/core/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// CATrigger re-renders every cluster's manifests when the CA secret changes, because the CA
// bundle is part of them, and logs the CA in use and its expiry (the metrics collector,
// pkg/certificates/metrics, exports it).
type CATrigger struct {
	Client client.Client
	CA     authority.Source
	// Trigger asks addon-framework to reconcile one cluster's add-on.
	Trigger func(clusterName, addonName string)
}

// SetupWithManager watches the CA secret.
func (t *CATrigger) SetupWithManager(mgr ctrl.Manager) error {
	key := t.CA.Key()
	return ctrl.NewControllerManagedBy(mgr).
		Named("ca-trigger").
		For(&corev1.Secret{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetNamespace() == key.Namespace && o.GetName() == key.Name
		}))).
		Complete(t)
}

// Reconcile reacts to a change of the CA secret.
func (t *CATrigger) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	ca, err := t.CA.Get(ctx)
	if err != nil {
		logger.Error(err, "No usable CA: agent certificates are not signed and manifests not updated until it is fixed")
	} else {
		logger.Info("Using CA", "subject", ca.Cert.Subject.String(), "notAfter", ca.Cert.NotAfter, "sha256", ca.Fingerprint())
	}
	return ctrl.Result{}, triggerAddons(ctx, t.Client, t.Trigger, func(*addonv1beta1.ManagedClusterAddOn) bool { return true })
}

// triggerAddons asks addon-framework to reconcile every cluster's add-on that match selects.
func triggerAddons(ctx context.Context, c client.Reader, trigger func(clusterName, addonName string),
	match func(*addonv1beta1.ManagedClusterAddOn) bool) error {
	addons := &addonv1beta1.ManagedClusterAddOnList{}
	if err := c.List(ctx, addons); err != nil {
		return err
	}
	for i := range addons.Items {
		if a := &addons.Items[i]; a.Name == identity.AddonName && match(a) {
			trigger(a.Namespace, a.Name)
		}
	}
	return nil
}
