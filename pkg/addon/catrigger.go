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

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/metrics"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// CATrigger re-renders every cluster's manifests when the CA secret changes, because the CA
// bundle is part of them, and exports the CA's expiry.
type CATrigger struct {
	Client client.Client
	CA     certificates.CASource
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
		metrics.CANotAfter.Set(0)
		logger.Error(err, "No usable CA: agent certificates are not signed and manifests not updated until it is fixed")
	} else {
		metrics.CANotAfter.Set(float64(ca.Cert.NotAfter.Unix()))
		logger.Info("Using CA", "subject", ca.Cert.Subject.String(), "notAfter", ca.Cert.NotAfter, "sha256", ca.Fingerprint())
	}
	addons := &addonv1beta1.ManagedClusterAddOnList{}
	if err := t.Client.List(ctx, addons); err != nil {
		return ctrl.Result{}, err
	}
	for _, a := range addons.Items {
		if a.Name == identity.AddonName {
			t.Trigger(a.Namespace, a.Name)
		}
	}
	return ctrl.Result{}, nil
}
