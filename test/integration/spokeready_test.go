package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/spokeready"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// The manager asks each cluster's work agent about its Argo CD through a read-only work and
// reports what comes back as ArgoCDReady, beside the conditions other writers own; the work
// goes with the add-on. No work agent runs here: the test writes its report (test/e2e runs the
// real one against a spoke missing its application-controller).
func TestSpokeReadiness(t *testing.T) {
	const cluster = "ready1"
	joinCluster(t, cluster, hubfixture.NewADC(cluster, "principalAddress", "principal.example.com"))
	key := types.NamespacedName{Namespace: cluster, Name: spokeready.WorkName}
	var work *workv1.ManifestWork
	poll.Until(t, 30*time.Second, "the readiness work", func(ctx context.Context) (bool, error) {
		work = &workv1.ManifestWork{}
		err := env.Client.Get(ctx, key, work)
		return err == nil, client404(err)
	})
	for _, cfg := range work.Spec.ManifestConfigs {
		if cfg.UpdateStrategy == nil || cfg.UpdateStrategy.Type != workv1.UpdateStrategyTypeReadOnly {
			t.Errorf("%+v is not read-only", cfg.ResourceIdentifier)
		}
		if cfg.ResourceIdentifier.Resource != "customresourcedefinitions" && cfg.ResourceIdentifier.Namespace != identity.DefaultInstallNamespace {
			t.Errorf("%+v is not in the agent's namespace", cfg.ResourceIdentifier)
		}
	}
	waitReadiness(t, cluster, metav1.ConditionUnknown, spokeready.ReasonUnknown, "has not reported")
	// addon-framework's conditions, written beside ours.
	var others []string
	mca := &addonv1beta1.ManagedClusterAddOn{}
	must.Succeed(t, env.Client.Get(context.Background(), types.NamespacedName{Namespace: cluster, Name: identity.AddonName}, mca))
	for _, c := range mca.Status.Conditions {
		if c.Type != spokeready.ConditionArgoCDReady {
			others = append(others, c.Type)
		}
	}
	if len(others) == 0 {
		t.Fatal("no other condition on the add-on to keep")
	}

	writeReport := func(missing string) {
		must.Succeed(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			w := &workv1.ManifestWork{}
			if err := env.Client.Get(context.Background(), key, w); err != nil {
				return err
			}
			w.Status.Conditions = []metav1.Condition{{Type: workv1.WorkApplied, Status: metav1.ConditionTrue, Reason: "AppliedManifestWorkComplete",
				ObservedGeneration: w.Generation, LastTransitionTime: metav1.Now()}}
			w.Status.ResourceStatus.Manifests = nil
			one := int64(1)
			for _, cfg := range w.Spec.ManifestConfigs {
				id := cfg.ResourceIdentifier
				status := metav1.ConditionTrue
				if id.Name == missing {
					status = metav1.ConditionFalse
				}
				m := workv1.ManifestCondition{
					ResourceMeta: workv1.ManifestResourceMeta{Group: id.Group, Resource: id.Resource, Namespace: id.Namespace, Name: id.Name},
					Conditions:   []metav1.Condition{{Type: workv1.ManifestAvailable, Status: status, Reason: "ResourceAvailable", LastTransitionTime: metav1.Now()}},
				}
				for _, rule := range cfg.FeedbackRules {
					for _, p := range rule.JsonPaths {
						if status == metav1.ConditionTrue {
							m.StatusFeedbacks.Values = append(m.StatusFeedbacks.Values, workv1.FeedbackValue{Name: p.Name, Value: workv1.FieldValue{Type: workv1.Integer, Integer: &one}})
						}
					}
				}
				w.Status.ResourceStatus.Manifests = append(w.Status.ResourceStatus.Manifests, m)
			}
			return env.Client.Status().Update(context.Background(), w)
		}))
	}
	writeReport("")
	waitReadiness(t, cluster, metav1.ConditionTrue, spokeready.ReasonReady, "")
	writeReport(spokeready.ApplicationController)
	waitReadiness(t, cluster, metav1.ConditionFalse, spokeready.ReasonMissing, "StatefulSet argocd/argocd-application-controller")

	// The other writers' conditions stay: server-side apply owns one condition per writer.
	for _, c := range others {
		if _, err := addonCondition(context.Background(), cluster, c); err != nil {
			t.Errorf("%s after the readiness condition was written: %v", c, err)
		}
	}

	// Gone with the add-on (no garbage collector runs here: the manager removes it).
	must.Succeed(t, env.Client.Delete(context.Background(), &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: cluster, Name: identity.AddonName}}))
	poll.Until(t, 30*time.Second, "the readiness work removed with the add-on", func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, key, &workv1.ManifestWork{})
		return apierrors.IsNotFound(err), client404(err)
	})
}

func client404(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func waitReadiness(t *testing.T, cluster string, status metav1.ConditionStatus, reason, says string) {
	t.Helper()
	poll.Until(t, 30*time.Second, "ArgoCDReady "+string(status)+" "+reason, func(ctx context.Context) (bool, error) {
		c, err := addonCondition(ctx, cluster, spokeready.ConditionArgoCDReady)
		if err != nil {
			return false, err
		}
		if c.Status == status && c.Reason == reason && strings.Contains(c.Message, says) {
			return true, nil
		}
		return false, fmt.Errorf("ArgoCDReady %s %s: %s", c.Status, c.Reason, c.Message)
	})
}
