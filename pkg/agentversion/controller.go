package agentversion

import (
	"context"
	"errors"
	"fmt"

	"github.com/distribution/reference"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// ReasonFollowed is the event reason on the AgentVersion when it takes a new principal image.
const ReasonFollowed = "PrincipalVersionFollowed"

// Reconciler keeps one AgentVersion equal to the principal Deployment's image. It writes only
// when the image changes: once at install and once per principal upgrade.
type Reconciler struct {
	// Client reads the principal Deployment and the AgentVersion from the manager's cache, which
	// holds only those two, and writes the AgentVersion.
	Client    client.Client
	Principal types.NamespacedName
	Object    types.NamespacedName
	// DefaultImage is what a new AgentVersion holds while there is no principal Deployment to
	// read. An AgentVersion that exists keeps its image when the Deployment goes (a principal
	// reinstalled would otherwise roll the fleet twice).
	DefaultImage string
	Events       events.EventRecorder
}

// SetupWithManager watches the principal Deployment and the AgentVersion.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	key := reconcile.Request{NamespacedName: r.Object}
	one := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request { return []reconcile.Request{key} })
	is := func(k types.NamespacedName) predicate.Predicate {
		return predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() == k.Namespace && o.GetName() == k.Name })
	}
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(GVK)
	return ctrl.NewControllerManagedBy(mgr).
		Named("agent-version").
		For(obj, builder.WithPredicates(is(r.Object))).
		Watches(&appsv1.Deployment{}, one, builder.WithPredicates(is(r.Principal))).
		Watches(&addonv1beta1.ClusterManagementAddOn{}, one, builder.WithPredicates(is(types.NamespacedName{Name: identity.AddonName}))).
		Complete(r)
}

// Reconcile creates or updates the AgentVersion.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	current := &unstructured.Unstructured{}
	current.SetGroupVersionKind(GVK)
	err := r.Client.Get(ctx, r.Object, current)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}

	image, source := r.DefaultImage, fmt.Sprintf("the manager's default image: no principal Deployment %s", r.Principal)
	img, from, err := ReadPrincipalImage(ctx, r.Client, r.Principal)
	if err == nil {
		_, err = reference.ParseNormalizedNamed(img)
	}
	switch {
	case err == nil:
		image, source = img, from
	case apierrors.IsNotFound(err):
		if exists {
			return ctrl.Result{}, nil
		}
	case errors.As(err, new(apierrors.APIStatus)):
		return ctrl.Result{}, err
	default:
		// Nothing to follow; what agents run now stays (the Deployment is the user's to fix).
		logger.Info("Cannot read the principal's image: the agents' version stays as it is", "deployment", r.Principal.String(), "err", err.Error())
		if exists {
			return ctrl.Result{}, nil
		}
		source = fmt.Sprintf("the manager's default image: %v", err)
	}

	if !exists {
		// Owned by the ClusterManagementAddOn, so that uninstalling the add-on removes it.
		cma := &addonv1beta1.ClusterManagementAddOn{}
		if err := r.Client.Get(ctx, types.NamespacedName{Name: identity.AddonName}, cma); apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil // not installed, or being removed
		} else if err != nil {
			return ctrl.Result{}, err
		}
		if cma.DeletionTimestamp != nil {
			return ctrl.Result{}, nil
		}
		obj := &unstructured.Unstructured{}
		obj.SetGroupVersionKind(GVK)
		obj.SetNamespace(r.Object.Namespace)
		obj.SetName(r.Object.Name)
		obj.SetAnnotations(map[string]string{SourceAnnotation: source})
		obj.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: addonv1beta1.GroupVersion.String(), Kind: "ClusterManagementAddOn",
			Name: cma.Name, UID: cma.UID}})
		if err := unstructured.SetNestedField(obj.Object, image, "spec", "image"); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.Client.Create(ctx, obj); err != nil {
			return ctrl.Result{}, fmt.Errorf("creating %s %s: %w", Kind, r.Object, err)
		}
		logger.Info("Agents follow the principal's version", "agentVersion", r.Object.String(), "image", image, "from", source)
		return ctrl.Result{}, nil
	}
	was, _, _ := unstructured.NestedString(current.Object, "spec", "image")
	if was == image && current.GetAnnotations()[SourceAnnotation] == source {
		return ctrl.Result{}, nil
	}
	next := current.DeepCopy()
	if err := unstructured.SetNestedField(next.Object, image, "spec", "image"); err != nil {
		return ctrl.Result{}, err
	}
	annotations := next.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[SourceAnnotation] = source
	next.SetAnnotations(annotations)
	// The cached resourceVersion makes this an optimistic update: a conflict is retried.
	if err := r.Client.Update(ctx, next); err != nil {
		return ctrl.Result{}, fmt.Errorf("updating %s %s: %w", Kind, r.Object, err)
	}
	if was != image {
		logger.Info("The principal's version changed: agents follow it by the ClusterManagementAddOn's rollout strategy", "agentVersion", r.Object.String(), "from", was, "to", image)
		if r.Events != nil {
			r.Events.Eventf(next, nil, corev1.EventTypeNormal, ReasonFollowed, "Follow",
				"agents move from %s to the principal's %s (%s) by the ClusterManagementAddOn's rollout strategy", was, image, source)
		}
	}
	return ctrl.Result{}, nil
}
