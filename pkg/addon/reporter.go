package addon

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"
	"open-cluster-management.io/sdk-go/pkg/patcher"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
)

// Condition on the ManagedClusterAddOn that says whether its configuration is usable.
const (
	ConditionAgentConfigValid = "AgentConfigValid"
	ReasonAgentConfigValid    = "AgentConfigValid"
	ReasonInvalidAgentConfig  = "InvalidAgentConfig"
)

// StatusReporter records configuration validity as a condition and, for bad input, an event on
// the ManagedClusterAddOn.
type StatusReporter struct {
	client   addonclient.Interface
	recorder events.EventRecorder
}

// NewStatusReporter reports through client and recorder.
func NewStatusReporter(client addonclient.Interface, recorder events.EventRecorder) *StatusReporter {
	return &StatusReporter{client: client, recorder: recorder}
}

// Invalid sets the condition to False with the field error, and records a warning event.
func (r *StatusReporter) Invalid(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn, err *agentconfig.FieldError) {
	msg := err.Error() + "; the agent keeps its last applied configuration"
	r.recorder.Eventf(addon, nil, corev1.EventTypeWarning, ReasonInvalidAgentConfig, "Render", msg)
	r.setCondition(ctx, addon, metav1.Condition{
		Type: ConditionAgentConfigValid, Status: metav1.ConditionFalse, Reason: ReasonInvalidAgentConfig, Message: msg,
	})
}

// Valid sets the condition to True.
func (r *StatusReporter) Valid(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn) {
	r.setCondition(ctx, addon, metav1.Condition{
		Type: ConditionAgentConfigValid, Status: metav1.ConditionTrue, Reason: ReasonAgentConfigValid,
		Message: "the agent configuration is valid and rendered",
	})
}

func (r *StatusReporter) setCondition(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn, cond metav1.Condition) {
	existing := meta.FindStatusCondition(addon.Status.Conditions, cond.Type)
	if existing != nil && existing.Status == cond.Status && existing.Reason == cond.Reason && existing.Message == cond.Message {
		return
	}
	newStatus := addon.Status.DeepCopy()
	meta.SetStatusCondition(&newStatus.Conditions, cond)
	p := patcher.NewPatcher[*addonv1beta1.ManagedClusterAddOn, addonv1beta1.ManagedClusterAddOnSpec, addonv1beta1.ManagedClusterAddOnStatus](
		r.client.AddonV1beta1().ManagedClusterAddOns(addon.Namespace))
	// A conflict is left to the next reconcile of the add-on, which reports again.
	if _, err := p.PatchStatus(ctx, addon, *newStatus, addon.Status); err != nil {
		klog.FromContext(ctx).Info("Could not update the add-on's configuration condition", "cluster", addon.Namespace, "err", err)
	}
}
