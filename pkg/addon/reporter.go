package addon

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
)

// Condition on the ManagedClusterAddOn that says whether its configuration is usable.
const (
	ConditionAgentConfigValid = "AgentConfigValid"
	ReasonAgentConfigValid    = "AgentConfigValid"
	ReasonInvalidAgentConfig  = "InvalidAgentConfig"
)

// Condition that says which principal address the agent was given and where it came from:
// True with reason principal.SourceConfig, SourceService or SourceFallback and the address in
// the message, or False with ReasonNoPrincipalAddress when there is none (nothing is delivered).
// For people and `status`: nothing decides on it, and the cluster itself can write it.
const (
	ConditionPrincipalAddress = "PrincipalAddress"
	ReasonNoPrincipalAddress  = "NoPrincipalAddress"
)

// Condition that says whether the agent's version is the principal's: argocd-agent refuses an
// agent of any other version, which then retries forever while its pod keeps running. True with
// ReasonVersionMatches; False with ReasonVersionMismatch (the message says whether an
// AddOnDeploymentConfig pins the image or the rollout has not reached the cluster yet); Unknown
// with ReasonVersionUnknown when the principal's image cannot be read or either image names no
// version. For people and `status`, like PrincipalAddress.
const (
	ConditionAgentVersion = "AgentVersion"
	ReasonVersionMatches  = "VersionMatchesPrincipal"
	ReasonVersionMismatch = "VersionMismatch"
	ReasonVersionUnknown  = "VersionUnknown"
)

// StatusReporter records configuration validity as a condition and, for bad input, an event on
// the ManagedClusterAddOn.
//
// The conditions are written a moment after the render that produced them (delay), by Run:
// a render runs inside addon-framework's deploy controller, which then patches the same status
// guarded by the resourceVersion it read, so a write of ours in between made that patch fail
// with a conflict and the whole sync, render included, run again (test/bench counted it on
// every cluster of a rollout). Waiting also folds the several renders of one sync into one write.
type StatusReporter struct {
	client   addonclient.Interface
	recorder events.EventRecorder
	delay    time.Duration
	queue    workqueue.TypedDelayingInterface[types.NamespacedName]

	mu sync.Mutex
	// owned holds, per add-on, the conditions of this manager's last apply, by type: an apply
	// names all of them (see setConditions), also those a call does not change.
	owned map[types.NamespacedName]applied
	// pending holds the apply due for an add-on, the newest render's.
	pending map[types.NamespacedName][]metav1.Condition
}

// applied is one apply: its conditions by type, and the resourceVersion the API server gave the
// add-on with it.
type applied struct {
	conds           map[string]metav1.Condition
	resourceVersion string
}

// NewStatusReporter reports through client and recorder, delay after a render; with a delay,
// Run must run for anything to be written. A zero delay writes in the render's call.
func NewStatusReporter(client addonclient.Interface, recorder events.EventRecorder, delay time.Duration) *StatusReporter {
	r := &StatusReporter{client: client, recorder: recorder, delay: delay,
		owned: map[types.NamespacedName]applied{}, pending: map[types.NamespacedName][]metav1.Condition{}}
	if delay > 0 {
		r.queue = workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[types.NamespacedName]{Name: "addon-status-reporter"})
	}
	return r
}

// Run writes the pending conditions until ctx ends. The manager runs it while it leads.
func (r *StatusReporter) Run(ctx context.Context) error {
	if r.queue == nil {
		return nil
	}
	go func() {
		<-ctx.Done()
		r.queue.ShutDown()
	}()
	for {
		key, shutdown := r.queue.Get()
		if shutdown {
			return nil
		}
		r.mu.Lock()
		conds, ok := r.pending[key]
		delete(r.pending, key)
		r.mu.Unlock()
		if ok {
			r.apply(ctx, key, conds)
		}
		r.queue.Done(key)
	}
}

// SetupWithManager writes the pending conditions while mgr leads (Run), and forgets an add-on
// when it is deleted: what the reporter holds lives as long as the add-on, not the manager.
func (r *StatusReporter) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		informer, err := mgr.GetCache().GetInformer(ctx, &addonv1beta1.ManagedClusterAddOn{})
		if err != nil {
			return err
		}
		if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{DeleteFunc: r.forgetDeleted}); err != nil {
			return err
		}
		return r.Run(ctx)
	})); err != nil {
		return err
	}
	return nil
}

// forgetDeleted drops what the reporter holds of a deleted add-on.
func (r *StatusReporter) forgetDeleted(obj any) {
	if tombstone, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	mca, ok := obj.(*addonv1beta1.ManagedClusterAddOn)
	if !ok {
		return
	}
	key := types.NamespacedName{Namespace: mca.Namespace, Name: mca.Name}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.owned, key)
	delete(r.pending, key)
}

// Invalid sets the condition to False with the field error, and records a warning event.
func (r *StatusReporter) Invalid(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn, err *agentconfig.FieldError) {
	msg := err.Error() + "; the agent keeps its last applied configuration"
	r.recorder.Eventf(addon, nil, corev1.EventTypeWarning, ReasonInvalidAgentConfig, "Render", msg)
	conds := []metav1.Condition{{
		Type: ConditionAgentConfigValid, Status: metav1.ConditionFalse, Reason: ReasonInvalidAgentConfig, Message: msg,
	}}
	if err.Field == "customizedVariables["+agentconfig.VarPrincipalAddress+"]" && err.Value == "" {
		conds = append(conds, metav1.Condition{Type: ConditionPrincipalAddress, Status: metav1.ConditionFalse,
			Reason: ReasonNoPrincipalAddress, Message: err.Reason})
	}
	r.setConditions(ctx, addon, conds...)
}

// Valid sets AgentConfigValid to True, PrincipalAddress to the principal the agent was given,
// and AgentVersion to version (none if its Type is empty).
func (r *StatusReporter) Valid(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn, p principal.Endpoint, version metav1.Condition) {
	conds := []metav1.Condition{{
		Type: ConditionAgentConfigValid, Status: metav1.ConditionTrue, Reason: ReasonAgentConfigValid,
		Message: "the agent configuration is valid and rendered",
	}}
	if p.Host != "" {
		conds = append(conds, metav1.Condition{Type: ConditionPrincipalAddress, Status: metav1.ConditionTrue,
			Reason: p.Source, Message: p.String()})
	}
	if version.Type != "" {
		conds = append(conds, version)
	}
	r.setConditions(ctx, addon, conds...)
}

// Held sets AgentVersion for a cluster whose render is held back (its rollout has not reached
// it): its agent runs what it ran, which may no longer be the principal's version. Only after a
// render of this manager's: an apply from a manager restarted since would name AgentVersion
// alone and so remove the other conditions of its last apply, which a held cluster may not
// render again for long (a paused rollout).
func (r *StatusReporter) Held(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn, version metav1.Condition) {
	if version.Type != "" && r.rendered(types.NamespacedName{Namespace: addon.Namespace, Name: addon.Name}) {
		r.setConditions(ctx, addon, version)
	}
}

// FieldManager is the manager's name in the ManagedClusterAddOn's managedFields.
const FieldManager = "argocd-agent-addon"

// setConditions applies the conditions the add-on owns with server-side apply, in one request.
// addon-framework's controllers patch the same status with optimistic locking, and a
// resourceVersion-guarded patch from here would lose to them about twice per cluster on a
// rollout (test/bench saw 400 conflicts for 200 clusters). The conditions list is a map keyed
// by type, so applying only ours needs no resourceVersion and touches nothing else; every apply
// names all of them, since one left out would be removed: conds, and the others of this
// manager's last apply. Those come from its memory, never from the status, which the cluster can
// write; a manager restarted since forgets them, and they come back with the next render.
// Nothing is sent when nothing changed, nor again for a status this manager has already
// applied to since the caller read it (a later render of the same sync sees the old status).
func (r *StatusReporter) setConditions(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn, conds ...metav1.Condition) {
	key := types.NamespacedName{Namespace: addon.Namespace, Name: addon.Name}
	conds = r.withOwned(key, conds)
	changed := false
	for i := range conds {
		cond := &conds[i]
		existing := meta.FindStatusCondition(addon.Status.Conditions, cond.Type)
		if existing != nil && existing.Status == cond.Status && existing.Reason == cond.Reason && existing.Message == cond.Message {
			*cond = *existing
			continue
		}
		changed = true
		cond.LastTransitionTime = metav1.Now()
		if existing != nil && existing.Status == cond.Status {
			cond.LastTransitionTime = existing.LastTransitionTime
		}
		cond.ObservedGeneration = addon.Generation
	}
	r.mu.Lock()
	last, hasLast := r.owned[key]
	switch {
	case !changed:
		// The status shows them: nothing is due, an older pending apply included.
		delete(r.pending, key)
		r.owned[key] = applied{conds: byType(conds), resourceVersion: last.resourceVersion}
		r.mu.Unlock()
		return
	case hasLast && sameConditions(last.conds, conds) && olderThan(addon.ResourceVersion, last.resourceVersion):
		delete(r.pending, key)
		r.mu.Unlock()
		return
	}
	if r.queue == nil {
		r.mu.Unlock()
		r.apply(ctx, key, conds)
		return
	}
	r.pending[key] = conds
	r.mu.Unlock()
	r.queue.AddAfter(key, r.delay)
}

// apply sends one apply of conds.
func (r *StatusReporter) apply(ctx context.Context, key types.NamespacedName, conds []metav1.Condition) {
	patch, err := json.Marshal(map[string]any{
		"apiVersion": addonv1beta1.GroupVersion.String(),
		"kind":       "ManagedClusterAddOn",
		"metadata":   map[string]any{"name": key.Name, "namespace": key.Namespace},
		"status":     map[string]any{"conditions": conds},
	})
	var out *addonv1beta1.ManagedClusterAddOn
	if err == nil {
		out, err = r.client.AddonV1beta1().ManagedClusterAddOns(key.Namespace).Patch(ctx, key.Name, types.ApplyPatchType, patch,
			metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)}, "status")
	}
	// A failure is left to the next reconcile of the add-on, which reports again.
	if err != nil {
		klog.FromContext(ctx).Info("Could not update the add-on's conditions", "cluster", key.Namespace, "err", err)
		return
	}
	r.mu.Lock()
	r.owned[key] = applied{conds: byType(conds), resourceVersion: out.ResourceVersion}
	r.mu.Unlock()
}

// withOwned is conds plus the conditions of the last apply that conds does not name, in type
// order, so that an apply's content does not depend on which call made it.
func (r *StatusReporter) withOwned(key types.NamespacedName, conds []metav1.Condition) []metav1.Condition {
	r.mu.Lock()
	defer r.mu.Unlock()
	merged := map[string]metav1.Condition{}
	for t, c := range r.owned[key].conds {
		merged[t] = c
	}
	for _, c := range conds {
		merged[c.Type] = c
	}
	out := make([]metav1.Condition, 0, len(merged))
	for _, t := range slices.Sorted(maps.Keys(merged)) {
		out = append(out, merged[t])
	}
	return out
}

// rendered says whether this manager has applied or is about to apply the add-on's conditions.
func (r *StatusReporter) rendered(key types.NamespacedName) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, applied := r.owned[key]
	_, pending := r.pending[key]
	return applied || pending
}

func byType(conds []metav1.Condition) map[string]metav1.Condition {
	out := make(map[string]metav1.Condition, len(conds))
	for _, c := range conds {
		out[c.Type] = c
	}
	return out
}

// sameConditions says whether conds say what last does, times aside.
func sameConditions(last map[string]metav1.Condition, conds []metav1.Condition) bool {
	if len(last) != len(conds) {
		return false
	}
	for _, c := range conds {
		l, ok := last[c.Type]
		if !ok || l.Status != c.Status || l.Reason != c.Reason || l.Message != c.Message {
			return false
		}
	}
	return true
}

// olderThan says whether resourceVersion a is older than b. Resource versions are opaque, but
// the Kubernetes API server's are etcd revisions, which only grow; anything else is not older,
// so the apply is sent.
func olderThan(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	return errA == nil && errB == nil && x < y
}
