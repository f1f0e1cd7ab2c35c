package spokeready

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// FieldManager owns the ArgoCDReady condition (server-side apply: the add-on's other conditions
// stay with their writers).
const FieldManager = "argocd-agent-addon-spoke-readiness"

// WorkCache is what the manager's cache holds of ManifestWorks: the readiness works only.
func WorkCache() (client.Object, cache.ByObject) {
	return &workv1.ManifestWork{}, cache.ByObject{
		Label: labels.SelectorFromSet(labels.Set{WorkLabel: "true"}),
		Field: fields.OneTermEqualSelector("metadata.name", WorkName),
	}
}

// Reconciler keeps, for each of this add-on's ManagedClusterAddOns, the readiness work in the
// cluster's namespace, and the ArgoCDReady condition from what the cluster reports in it.
type Reconciler struct {
	// Client reads the add-ons and works from the cache and writes through the API server.
	Client client.Client
}

// SetupWithManager runs it for this add-on's ManagedClusterAddOns and their readiness works.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	own := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetName() == identity.AddonName })
	return ctrl.NewControllerManagedBy(mgr).Named("spoke-readiness").
		For(&addonv1beta1.ManagedClusterAddOn{}, builder.WithPredicates(own)).
		Watches(&workv1.ManifestWork{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: identity.AddonName}}}
		}), builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetName() == WorkName }))).
		Complete(r)
}

// Reconcile makes the cluster's readiness work match its add-on and reports on it.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	addon := &addonv1beta1.ManagedClusterAddOn{}
	if err := r.Client.Get(ctx, req.NamespacedName, addon); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		// The add-on is gone: so is its work (the hub's garbage collector would also remove it,
		// through the owner reference; a hub without one still ends clean).
		work := &workv1.ManifestWork{}
		work.Namespace, work.Name = req.Namespace, WorkName
		return ctrl.Result{}, client.IgnoreNotFound(r.Client.Delete(ctx, work))
	}
	// The agent's namespace, as addon-framework (in this manager) writes it into the add-on's
	// status; until then there is nothing to ask. The cluster may write that status too: a
	// namespace it chose only moves the read-only checks of its own report, which it could fake
	// anyway, and a value that is no namespace name is not used.
	namespace := addon.Status.Namespace
	if addon.DeletionTimestamp != nil || len(validation.IsDNS1123Label(namespace)) > 0 {
		return ctrl.Result{}, nil
	}
	want, err := Work(addon, namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	work := &workv1.ManifestWork{}
	err = r.Client.Get(ctx, client.ObjectKeyFromObject(want), work)
	switch {
	case apierrors.IsNotFound(err):
		if err := r.Client.Create(ctx, want); apierrors.IsAlreadyExists(err) {
			// Not in the cache, yet there: it lost WorkLabel, which the cache selects on.
			return ctrl.Result{}, fmt.Errorf("the readiness work %s/%s exists without its label %s: delete it, the manager makes it again",
				addon.Namespace, WorkName, WorkLabel)
		} else if err != nil {
			return ctrl.Result{}, fmt.Errorf("creating the readiness work of %s: %w", addon.Namespace, err)
		}
		// Not reported yet, as the work's event will find it: one status write, not two.
		work = want
	case err != nil:
		return ctrl.Result{}, err
	case work.Annotations[SpecHashAnnotation] != want.Annotations[SpecHashAnnotation] ||
		!equality.Semantic.DeepEqual(work.OwnerReferences, want.OwnerReferences):
		// Compared by the hash of what was written: the API server defaults fields of the spec.
		// A report on the old spec names other objects, which Evaluate does not count. A spec
		// edited by someone else under the same annotation is not put back: only the cluster's
		// own work agent acts on it, and the cluster reports on itself anyway.
		work.Spec, work.OwnerReferences = want.Spec, want.OwnerReferences
		work.Annotations = want.Annotations
		if err := r.Client.Update(ctx, work); err != nil {
			return ctrl.Result{}, fmt.Errorf("updating the readiness work of %s: %w", addon.Namespace, err)
		}
	}
	cond := Evaluate(work, namespace)
	if cur := meta.FindStatusCondition(addon.Status.Conditions, ConditionArgoCDReady); cur != nil &&
		cur.Status == cond.Status && cur.Reason == cond.Reason && cur.Message == cond.Message {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.applyCondition(ctx, addon, cond)
}

// applyCondition sets the condition on the add-on's status with server-side apply, as its only
// field of this manager's.
func (r *Reconciler) applyCondition(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn, cond metav1.Condition) error {
	if cur := meta.FindStatusCondition(addon.Status.Conditions, cond.Type); cur != nil && cur.Status == cond.Status {
		cond.LastTransitionTime = cur.LastTransitionTime
	} else {
		cond.LastTransitionTime = metav1.Now()
	}
	patch, err := json.Marshal(map[string]any{
		"apiVersion": addonv1beta1.GroupVersion.String(), "kind": "ManagedClusterAddOn",
		"metadata": map[string]any{"namespace": addon.Namespace, "name": addon.Name},
		"status":   map[string]any{"conditions": []metav1.Condition{cond}},
	})
	if err != nil {
		return err
	}
	obj := &addonv1beta1.ManagedClusterAddOn{}
	obj.Namespace, obj.Name = addon.Namespace, addon.Name
	return r.Client.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, patch),
		client.FieldOwner(FieldManager), client.ForceOwnership)
}
