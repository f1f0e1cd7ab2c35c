package addon

import (
	"context"
	"encoding/json"
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

// StatusReporter records configuration validity as a condition and, for bad input, an event on
// the ManagedClusterAddOn.
type StatusReporter struct {
	client   addonclient.Interface
	recorder events.EventRecorder

	mu sync.Mutex
	// principal is the PrincipalAddress condition last applied per add-on.
	principal map[types.NamespacedName]metav1.Condition
}

// NewStatusReporter reports through client and recorder.
func NewStatusReporter(client addonclient.Interface, recorder events.EventRecorder) *StatusReporter {
	return &StatusReporter{client: client, recorder: recorder, principal: map[types.NamespacedName]metav1.Condition{}}
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
	} else if c, ok := r.lastPrincipal(addon); ok {
		// Ours, from this manager's memory, never the status, which the cluster can write: an
		// apply without it would remove it. A manager restarted since forgets it; the
		// condition then goes until the config renders again.
		conds = append(conds, c)
	}
	r.setConditions(ctx, addon, conds...)
}

func (r *StatusReporter) lastPrincipal(addon *addonv1beta1.ManagedClusterAddOn) (metav1.Condition, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.principal[types.NamespacedName{Namespace: addon.Namespace, Name: addon.Name}]
	return c, ok
}

// Valid sets AgentConfigValid to True and PrincipalAddress to the principal the agent was given.
func (r *StatusReporter) Valid(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn, p principal.Endpoint) {
	conds := []metav1.Condition{{
		Type: ConditionAgentConfigValid, Status: metav1.ConditionTrue, Reason: ReasonAgentConfigValid,
		Message: "the agent configuration is valid and rendered",
	}}
	if p.Host != "" {
		conds = append(conds, metav1.Condition{Type: ConditionPrincipalAddress, Status: metav1.ConditionTrue,
			Reason: p.Source, Message: p.String()})
	}
	r.setConditions(ctx, addon, conds...)
}

// FieldManager is the manager's name in the ManagedClusterAddOn's managedFields.
const FieldManager = "argocd-agent-addon"

// setConditions applies the conditions the add-on owns with server-side apply, in one request.
// addon-framework's controllers patch the same status with optimistic locking, and a
// resourceVersion-guarded patch from here would lose to them about twice per cluster on a
// rollout (test/bench saw 400 conflicts for 200 clusters). The conditions list is a map keyed
// by type, so applying only ours needs no resourceVersion and touches nothing else; every apply
// names all of them, since one left out would be removed. Nothing is sent when nothing changed.
func (r *StatusReporter) setConditions(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn, conds ...metav1.Condition) {
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

// remember notes the PrincipalAddress condition of an apply, or its absence.
func (r *StatusReporter) remember(addon *addonv1beta1.ManagedClusterAddOn, conds []metav1.Condition) {
	key := types.NamespacedName{Namespace: addon.Namespace, Name: addon.Name}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.principal, key)
	for _, c := range conds {
		if c.Type == ConditionPrincipalAddress {
			r.principal[key] = c
		}
	}
}
