package addon

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"

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
type StatusReporter struct {
	client   addonclient.Interface
	recorder events.EventRecorder

	mu sync.Mutex
	// owned holds, per add-on, the conditions of this manager's last apply, by type: an apply
	// names all of them (see setConditions), also those a call does not change.
	owned map[types.NamespacedName]map[string]metav1.Condition
}

// NewStatusReporter reports through client and recorder.
func NewStatusReporter(client addonclient.Interface, recorder events.EventRecorder) *StatusReporter {
	return &StatusReporter{client: client, recorder: recorder, owned: map[types.NamespacedName]map[string]metav1.Condition{}}
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
	r.mu.Lock()
	_, rendered := r.owned[types.NamespacedName{Namespace: addon.Namespace, Name: addon.Name}]
	r.mu.Unlock()
	if version.Type != "" && rendered {
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
// Nothing is sent when nothing changed.
func (r *StatusReporter) setConditions(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn, conds ...metav1.Condition) {
	conds = r.withOwned(addon, conds)
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
	if !changed {
		r.remember(addon, conds)
		return
	}
	patch, err := json.Marshal(map[string]any{
		"apiVersion": addonv1beta1.GroupVersion.String(),
		"kind":       "ManagedClusterAddOn",
		"metadata":   map[string]any{"name": addon.Name, "namespace": addon.Namespace},
		"status":     map[string]any{"conditions": conds},
	})
	if err == nil {
		_, err = r.client.AddonV1beta1().ManagedClusterAddOns(addon.Namespace).Patch(ctx, addon.Name, types.ApplyPatchType, patch,
			metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)}, "status")
	}
	if err == nil {
		r.remember(addon, conds)
	}
	// A failure is left to the next reconcile of the add-on, which reports again.
	if err != nil {
		klog.FromContext(ctx).Info("Could not update the add-on's conditions", "cluster", addon.Namespace, "err", err)
	}
}

// withOwned is conds plus the conditions of the last apply that conds does not name, in type
// order, so that an apply's content does not depend on which call made it.
func (r *StatusReporter) withOwned(addon *addonv1beta1.ManagedClusterAddOn, conds []metav1.Condition) []metav1.Condition {
	r.mu.Lock()
	defer r.mu.Unlock()
	merged := map[string]metav1.Condition{}
	for t, c := range r.owned[types.NamespacedName{Namespace: addon.Namespace, Name: addon.Name}] {
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

// remember notes the conditions of an apply.
func (r *StatusReporter) remember(addon *addonv1beta1.ManagedClusterAddOn, conds []metav1.Condition) {
	owned := map[string]metav1.Condition{}
	for _, c := range conds {
		owned[c.Type] = c
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.owned[types.NamespacedName{Namespace: addon.Namespace, Name: addon.Name}] = owned
}
