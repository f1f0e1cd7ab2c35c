package clustersecret

import (
	"context"
	"fmt"
	"reflect"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/tools/events"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// FieldManager owns what the controller applies to a cluster secret.
const FieldManager = "argocd-agent-addon"

// Event reasons, on the cluster's ManagedClusterAddOn.
const (
	ReasonIssued     = "ClusterSecretIssued"
	ReasonUpdated    = "ClusterSecretUpdated"
	ReasonNotAdopted = "ClusterSecretNotAdopted"
	ReasonMoved      = "ClusterSecretMoved"
)

// Reconciler keeps one cluster secret per cluster with the add-on, keyed by cluster name.
type Reconciler struct {
	// Client writes the secrets and reads ManagedClusterAddOns, ManagedClusters and the
	// ClusterManagementAddOn from the manager's cache.
	Client client.Client
	// Secrets is a cache of the secrets in Namespaces() labelled AgentNameLabel (SecretCacheOptions).
	Secrets cache.Cache
	// APIReader reads a secret the cache does not hold, before one is created: a secret of that
	// name without the label must not be taken over.
	APIReader client.Reader
	CA        authority.Source
	// Records are the clusters' records, whose revocations remove the secret.
	Records *issued.Records
	// Namespace is Argo CD's, where the principal looks for cluster secrets, and
	// ResourceProxyAddress where Argo CD reaches the principal's resource proxy: the clusters of
	// no group's.
	Namespace            string
	ResourceProxyAddress string
	// Groups split the fleet between principals, by Placement (groups.go); Placements finds a
	// cluster's. Without groups every cluster's secret is in Namespace.
	Groups     []Group
	Placements interface {
		Placement(ctx context.Context, cma *addonv1beta1.ClusterManagementAddOn, cluster string) (addonv1beta1.PlacementStrategy, bool, error)
	}
	// CopyLabels are the ManagedCluster labels the secret gets (--cluster-secret-labels); the
	// zero value copies none.
	CopyLabels LabelFilter
	// Lifetime of the client certificates issued, never past the CA's expiry.
	Lifetime time.Duration
	Events   events.EventRecorder
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// SecretCacheOptions limit a cache to the cluster secrets of namespaces (Namespaces), which is
// all the controller reads of it. It keeps managedFields: the steady-state check compares what
// this add-on owns of a secret (ExtractSecret).
func SecretCacheOptions(namespaces ...string) (cache.Options, error) {
	req, err := labels.NewRequirement(AgentNameLabel, selection.Exists, nil)
	if err != nil {
		return cache.Options{}, err
	}
	byNamespace := map[string]cache.Config{}
	for _, ns := range namespaces {
		byNamespace[ns] = cache.Config{}
	}
	return cache.Options{
		DefaultNamespaces: byNamespace,
		ByObject:          map[client.Object]cache.ByObject{&corev1.Secret{}: {Label: labels.NewSelector().Add(*req)}},
	}, nil
}

// SetupWithManager watches the add-on's ManagedClusterAddOns, the ManagedClusters (for their
// labels), the cluster secrets, the ClusterManagementAddOn (revocations) and the CA secret.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	byNamespace := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetNamespace()}}}
	})
	byName := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetName()}}}
	})
	everyCluster := handler.EnqueueRequestsFromMapFunc(r.everyCluster)
	caKey := r.CA.Key()
	b := ctrl.NewControllerManagedBy(mgr)
	if len(r.Groups) > 0 {
		// A cluster's group follows its Placement's decisions (old and new objects both map).
		b = b.Watches(&clusterv1beta1.PlacementDecision{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			d, _ := o.(*clusterv1beta1.PlacementDecision)
			if d == nil {
				return nil
			}
			reqs := make([]reconcile.Request, 0, len(d.Status.Decisions))
			for _, c := range d.Status.Decisions {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: c.ClusterName}})
			}
			return reqs
		}))
	}
	return b.
		Named("cluster-secret").
		Watches(&addonv1beta1.ManagedClusterAddOn{}, byNamespace, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetName() == identity.AddonName
		}))).
		Watches(&clusterv1.ManagedCluster{}, byName, builder.WithPredicates(predicate.LabelChangedPredicate{})).
		// Its placements (spec).
		Watches(&addonv1beta1.ClusterManagementAddOn{}, everyCluster, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Revocations, in the records.
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if cluster, ok := issued.ClusterOfRecord(o.GetName()); ok && o.GetNamespace() == r.Records.Namespace {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: cluster}}}
			}
			return nil
		})).
		Watches(&corev1.Secret{}, everyCluster, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetNamespace() == caKey.Namespace && o.GetName() == caKey.Name
		}))).
		WatchesRawSource(source.Kind(r.Secrets, &corev1.Secret{}, handler.TypedEnqueueRequestsFromMapFunc(
			func(_ context.Context, s *corev1.Secret) []reconcile.Request {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: s.Labels[AgentNameLabel]}}}
			}))).
		Complete(r)
}

// everyCluster enqueues every cluster with the add-on or a cluster secret.
func (r *Reconciler) everyCluster(ctx context.Context, _ client.Object) []reconcile.Request {
	var reqs []reconcile.Request
	addons := &addonv1beta1.ManagedClusterAddOnList{}
	if err := r.Client.List(ctx, addons); err != nil {
		log.FromContext(ctx).Error(err, "Listing ManagedClusterAddOns")
	}
	for _, a := range addons.Items {
		if a.Name == identity.AddonName {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: a.Namespace}})
		}
	}
	secrets := &corev1.SecretList{}
	if err := r.Secrets.List(ctx, secrets); err != nil {
		log.FromContext(ctx).Error(err, "Listing cluster secrets")
	}
	for _, s := range secrets.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: s.Labels[AgentNameLabel]}})
	}
	return reqs
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Reconcile brings cluster req.Name's secret to what it should be: present and current, in
// its group's namespace, while the cluster has the add-on and is not revoked, else gone.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	agent := req.Name
	logger := log.FromContext(ctx).WithValues("cluster", agent)
	have, err := r.secretsOf(ctx, agent)
	if err != nil {
		return ctrl.Result{}, err
	}
	owner, addon, cluster, why, err := r.wanted(ctx, agent)
	if err != nil {
		return ctrl.Result{}, err
	}
	if why != "" {
		return ctrl.Result{}, r.remove(ctx, have, agent, why)
	}
	current := ""
	for ns, s := range have {
		if s.Labels[ManagedLabel] == "true" && (current == "" || ns == r.Namespace) {
			current = ns
		}
	}
	namespace, address, err := r.target(ctx, owner, agent, current)
	if err != nil {
		return ctrl.Result{}, err
	}
	secret := have[namespace]
	if secret == nil {
		live := &corev1.Secret{}
		if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: Name(agent)}, live); err == nil {
			secret = live
		} else if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
	}
	if secret != nil && secret.Labels[AgentNameLabel] != agent && secret.Labels[ManagedLabel] != "true" {
		// A secret of that name that is no agent's: someone else's, not ours to take.
		r.Events.Eventf(addon, nil, corev1.EventTypeWarning, ReasonNotAdopted, "KeepClusterSecret",
			"secret %s/%s exists without label %s=%s: not taking it over; delete or rename it to let the add-on keep the cluster secret",
			namespace, Name(agent), AgentNameLabel, agent)
		return ctrl.Result{}, nil
	}
	ca, err := r.CA.Get(ctx)
	if err != nil {
		// The signer and CATrigger report an unusable CA; the CA secret's watch brings us back.
		logger.V(1).Info("No usable CA for the cluster secret", "err", err)
		return ctrl.Result{}, nil
	}
	now := r.now()
	creds, had := CredentialsOf(secret)
	if !had && current != "" && current != namespace {
		// Moving to another group: the same client certificate, valid for every principal.
		creds, had = CredentialsOf(have[current])
	}
	issue := !had
	var renewAt time.Time
	if had {
		if renewAt, err = Check(ca, agent, creds, now); err != nil || !now.Before(renewAt) {
			issue = true
			if err == nil {
				err = fmt.Errorf("renewal due since %s", renewAt.Format(time.RFC3339))
			}
			logger.Info("Issuing a new client certificate for the cluster secret", "why", err.Error())
		}
	}
	if issue {
		if creds, err = Issue(ca, agent, r.Lifetime, now); err != nil {
			return ctrl.Result{}, err
		}
		if renewAt, err = Check(ca, agent, creds, now); err != nil {
			return ctrl.Result{}, fmt.Errorf("checking the certificate just issued: %w", err)
		}
	}
	var owned *corev1ac.SecretApplyConfiguration
	if secret != nil {
		if owned, err = corev1ac.ExtractSecret(secret, FieldManager); err != nil {
			return ctrl.Result{}, fmt.Errorf("reading what the add-on owns of secret %s/%s: %w", namespace, Name(agent), err)
		}
	}
	// Only the labels the hub admin allows, and none over a label someone else set on the
	// secret: the apply is forced, and would otherwise overwrite it and take it over.
	copied := r.CopyLabels.Select(agent, cluster.Labels)
	for k := range othersLabels(secret, owned) {
		if _, ok := copied[k]; ok {
			logger.V(1).Info("Not copying a ManagedCluster label over one someone else set on the cluster secret", "label", k)
			delete(copied, k)
		}
	}
	want, err := Desired(namespace, agent, address, copied, creds, ca.BundlePEM())
	if err != nil {
		return ctrl.Result{}, err
	}
	want.WithOwnerReferences(metav1ac.OwnerReference().WithAPIVersion(addonv1beta1.GroupVersion.String()).
		WithKind("ClusterManagementAddOn").WithName(owner.Name).WithUID(owner.UID))
	requeue := ctrl.Result{RequeueAfter: renewAt.Sub(now)}
	steady := owned != nil && reflect.DeepEqual(owned, want)
	if !steady {
		// Forced: the add-on is the controller of the fields it sets (its labels and
		// annotations, data, owner), which argocd-agentctl also set on a secret it adopts.
		// Fields it does not set, such as an admin's labels and annotations, stay as they are.
		// Only over the secret read: a label set since then, which the cache may not hold yet,
		// is someone else's too.
		if secret != nil {
			want.WithResourceVersion(secret.ResourceVersion)
		}
		if err := r.Client.Apply(ctx, want, client.FieldOwner(FieldManager), client.ForceOwnership); apierrors.IsConflict(err) {
			// The change brings the secret's watch event; this is a fallback.
			logger.V(1).Info("Cluster secret changed since read; reconciling again", "secret", namespace+"/"+Name(agent))
			return ctrl.Result{RequeueAfter: time.Second}, nil
		} else if err != nil {
			return ctrl.Result{}, fmt.Errorf("applying cluster secret %s/%s: %w", namespace, Name(agent), err)
		}
		reason, note := ReasonUpdated, "updated"
		switch {
		case secret == nil && current != "" && current != namespace:
			reason, note = ReasonMoved, "moved from "+current+" to"
		case secret == nil:
			reason, note = ReasonIssued, "created"
		case issue:
			reason, note = ReasonIssued, "renewed the client certificate of"
		case secret.Labels[ManagedLabel] != "true":
			note = "adopted"
		}
		writes.WithLabelValues(reason).Inc()
		r.Events.Eventf(addon, nil, corev1.EventTypeNormal, reason, "KeepClusterSecret", "%s Argo CD cluster secret %s/%s (server %s)",
			note, namespace, Name(agent), ServerURL(address, agent))
		logger.Info("Cluster secret "+note, "secret", namespace+"/"+Name(agent), "renewAt", renewAt)
	}
	// The group's Argo CD has it now: the others' go (a cluster that moved).
	delete(have, namespace)
	if err := r.remove(ctx, have, agent, "the cluster's group keeps its secret in "+namespace); err != nil {
		return ctrl.Result{}, err
	}
	return requeue, nil
}

// secretsOf returns agent's cluster secrets in the cache, by namespace.
func (r *Reconciler) secretsOf(ctx context.Context, agent string) (map[string]*corev1.Secret, error) {
	list := &corev1.SecretList{}
	if err := r.Secrets.List(ctx, list, client.MatchingLabels{AgentNameLabel: agent}); err != nil {
		return nil, err
	}
	out := map[string]*corev1.Secret{}
	for i := range list.Items {
		if s := &list.Items[i]; s.Name == Name(agent) {
			out[s.Namespace] = s
		}
	}
	return out, nil
}

// wanted returns why agent should have no cluster secret ("" if it should), and otherwise the
// ClusterManagementAddOn (owner of the secret), the ManagedClusterAddOn and the ManagedCluster.
func (r *Reconciler) wanted(ctx context.Context, agent string) (*addonv1beta1.ClusterManagementAddOn, *addonv1beta1.ManagedClusterAddOn, *clusterv1.ManagedCluster, string, error) {
	if errs := validation.IsDNS1123Label(agent); len(errs) > 0 {
		return nil, nil, nil, "not a valid agent name", nil
	}
	cma := &addonv1beta1.ClusterManagementAddOn{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: identity.AddonName}, cma); apierrors.IsNotFound(err) {
		return nil, nil, nil, "the add-on is uninstalled", nil
	} else if err != nil {
		return nil, nil, nil, "", err
	}
	if cma.DeletionTimestamp != nil {
		return nil, nil, nil, "the add-on is being uninstalled", nil
	}
	// A damaged revocation still revokes; an unreadable record decides nothing.
	if rev, err := r.Records.Revocation(ctx, agent); err != nil {
		return nil, nil, nil, "", err
	} else if rev != nil {
		return nil, nil, nil, "the agent is revoked: " + rev.Reason, nil
	}
	addon := &addonv1beta1.ManagedClusterAddOn{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: agent, Name: identity.AddonName}, addon); apierrors.IsNotFound(err) {
		return nil, nil, nil, "the add-on left the cluster", nil
	} else if err != nil {
		return nil, nil, nil, "", err
	}
	if addon.DeletionTimestamp != nil {
		return nil, nil, nil, "the add-on is leaving the cluster", nil
	}
	cluster := &clusterv1.ManagedCluster{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: agent}, cluster); apierrors.IsNotFound(err) {
		return nil, nil, nil, "the ManagedCluster is gone", nil
	} else if err != nil {
		return nil, nil, nil, "", err
	}
	return cma, addon, cluster, "", nil
}

// remove deletes agent's cluster secrets the add-on keeps; one it does not keep stays.
func (r *Reconciler) remove(ctx context.Context, secrets map[string]*corev1.Secret, agent, why string) error {
	for _, secret := range secrets {
		if secret.Labels[ManagedLabel] != "true" {
			continue
		}
		err := r.Client.Delete(ctx, secret, client.Preconditions{UID: &secret.UID, ResourceVersion: &secret.ResourceVersion})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("deleting cluster secret %s/%s: %w", secret.Namespace, secret.Name, err)
		}
		writes.WithLabelValues("Deleted").Inc()
		log.FromContext(ctx).Info("Deleted the cluster secret", "cluster", agent, "secret", secret.Namespace+"/"+secret.Name, "why", why)
	}
	return nil
}
