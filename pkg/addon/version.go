package addon

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentversion"
)

// versionCondition compares agentImage, the image the cluster's agent is given, with the image
// the principal runs now. held, if set, is why the cluster's render is held back: its agent
// keeps agentImage. Without a way to read the principal's image (the render command) there is
// no condition.
func (g *guardedAddon) versionCondition(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn, agentImage, held string) metav1.Condition {
	if g.principalImage == nil || agentImage == "" {
		return metav1.Condition{}
	}
	cond := metav1.Condition{Type: ConditionAgentVersion}
	principalImage, from, err := g.principalImage(ctx)
	if err != nil {
		cond.Status, cond.Reason = metav1.ConditionUnknown, ReasonVersionUnknown
		cond.Message = fmt.Sprintf("agent image %s; the principal's version is unknown: %v", agentImage, err)
		return cond
	}
	match, known := agentversion.Match(agentImage, principalImage)
	switch {
	case !known:
		cond.Status, cond.Reason = metav1.ConditionUnknown, ReasonVersionUnknown
		cond.Message = fmt.Sprintf("cannot compare agent image %s with the principal's %s (%s): each must name a version tag, or both the same digest",
			agentImage, principalImage, from)
	case match:
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonVersionMatches
		cond.Message = fmt.Sprintf("agent image %s has the principal's version %s (%s)", agentImage, agentversion.Of(principalImage), from)
	default:
		why := "the agents follow the principal through its AgentVersion, which has not caught up yet"
		cfg, err := g.config(ctx, addon)
		switch {
		case err == nil && cfg.ImageSet:
			why = fmt.Sprintf("customizedVariables[%s] of the cluster's AddOnDeploymentConfig pins the image: remove it to follow the principal", agentconfig.VarAgentImage)
		case held != "":
			why = "the ClusterManagementAddOn's rollout has not reached this cluster yet: " + held
		}
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonVersionMismatch
		cond.Message = fmt.Sprintf("agent image %s (version %s) is not the principal's version %s (%s, %s): the principal refuses the agent; %s",
			agentImage, agentversion.Of(agentImage), agentversion.Of(principalImage), principalImage, from, why)
	}
	return cond
}
