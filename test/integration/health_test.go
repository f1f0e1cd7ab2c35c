package integration

import (
	"context"
	"testing"
	"time"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
)

// The add-on's Available condition follows the agent Deployment's readiness, which the agent's
// /healthz probe ties to its connection to the principal. No work agent runs here, so the test
// reports the Deployment's status feedback as the OCM work agent would (test/e2e runs the real
// one); what is proven is the add-on's prober wiring on a real API server.
func TestAvailabilityFollowsAgentDeployment(t *testing.T) {
	joinCluster(t, "health", hubfixture.NewADC("health", "principalAddress", "principal.example.com"))
	poll.Until(t, 30*time.Second, "ManifestWork", func(ctx context.Context) (bool, error) {
		mw, _, err := workObjects(ctx, "health")
		return mw != nil, err
	})
	report := func(ready int64) {
		must.Succeed(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			mw := &workv1.ManifestWork{}
			if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: "health", Name: workName}, mw); err != nil {
				return err
			}
			now := metav1.Now()
			mw.Status.Conditions = []metav1.Condition{
				{Type: workv1.WorkApplied, Status: metav1.ConditionTrue, Reason: "AppliedManifestWorkComplete", LastTransitionTime: now},
				{Type: workv1.WorkAvailable, Status: metav1.ConditionTrue, Reason: "ResourcesAvailable", LastTransitionTime: now},
			}
			one := int64(1)
			mw.Status.ResourceStatus.Manifests = []workv1.ManifestCondition{{
				ResourceMeta: workv1.ManifestResourceMeta{Group: "apps", Version: "v1", Kind: "Deployment", Resource: "deployments",
					Name: identity.AgentName, Namespace: identity.DefaultInstallNamespace},
				StatusFeedbacks: workv1.StatusFeedbackResult{Values: []workv1.FeedbackValue{
					{Name: "Replicas", Value: workv1.FieldValue{Type: workv1.Integer, Integer: &one}},
					{Name: "ReadyReplicas", Value: workv1.FieldValue{Type: workv1.Integer, Integer: &ready}},
				}},
				Conditions: []metav1.Condition{},
			}}
			return env.Client.Status().Update(context.Background(), mw)
		}))
	}
	report(1)
	poll.Until(t, 30*time.Second, "add-on Available while the agent is ready (connected)", func(ctx context.Context) (bool, error) {
		c, err := addonCondition(ctx, "health", addonv1beta1.ManagedClusterAddOnConditionAvailable)
		return c != nil && c.Status == metav1.ConditionTrue, err
	})
	report(0)
	poll.Until(t, 30*time.Second, "add-on not Available once the agent is not ready (disconnected)", func(ctx context.Context) (bool, error) {
		c, err := addonCondition(ctx, "health", addonv1beta1.ManagedClusterAddOnConditionAvailable)
		return c != nil && c.Status == metav1.ConditionFalse, err
	})
}
