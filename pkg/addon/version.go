package addon

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentversion"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/plan"
)

// versionCondition compares agentImage, the image the cluster's agent is given, with the image
// the principal runs (pi, read once for the render). pinned says the cluster's
// AddOnDeploymentConfig pins the image; held, if set, is why the cluster's render is held back:
// its agent keeps agentImage. Without a read of the principal's image (the render command)
// there is no condition.
func versionCondition(pi *plan.PrincipalImage, agentImage string, pinned bool, held string) metav1.Condition {
	if pi == nil || agentImage == "" {
		return metav1.Condition{}
	}
	cond := metav1.Condition{Type: ConditionAgentVersion}
	if pi.Err != nil {
		cond.Status, cond.Reason = metav1.ConditionUnknown, ReasonVersionUnknown
		cond.Message = fmt.Sprintf("agent image %s; the principal's version is unknown: %v", agentImage, pi.Err)
		return cond
	}
	match, known := agentversion.Match(agentImage, pi.Image)
	switch {
	case !known:
		cond.Status, cond.Reason = metav1.ConditionUnknown, ReasonVersionUnknown
		cond.Message = fmt.Sprintf("cannot compare agent image %s with the principal's %s (%s): each must name a version tag, or both the same digest",
			agentImage, pi.Image, pi.From)
	case match:
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonVersionMatches
		cond.Message = fmt.Sprintf("agent image %s has the principal's version %s (%s)", agentImage, agentversion.Of(pi.Image), pi.From)
	default:
		why := "the agents follow the principal through its AgentVersion, which has not caught up yet"
		switch {
		case held != "":
			why = "the ClusterManagementAddOn's rollout has not reached this cluster yet: " + held
		case pinned:
			why = fmt.Sprintf("customizedVariables[%s] of the cluster's AddOnDeploymentConfig pins the image: remove it to follow the principal", agentconfig.VarAgentImage)
		}
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonVersionMismatch
		cond.Message = fmt.Sprintf("agent image %s (version %s) is not the principal's version %s (%s, %s): the principal refuses the agent; %s",
			agentImage, agentversion.Of(agentImage), agentversion.Of(pi.Image), pi.Image, pi.From, why)
	}
	return cond
}
