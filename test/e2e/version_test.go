package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/addon"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/status"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/e2e/harness"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// The principal refuses an agent of another version. The agents follow the principal's image
// by default: when the principal is upgraded, the agent that follows moves to its version and
// stays connected; the agent whose cluster pins the old image is refused, which its add-on
// says with AgentVersion=False (and status with its VERSION column), and removing the pin
// brings it onto the principal's version and back. The upgrade is a stand-in: the same
// argocd-agent code stamped with another version (harness.UpgradeAgentImage).
func TestAgentVersionFollowsThePrincipal(t *testing.T) {
	const follow, pinned = "follow", "pinned"
	clusters := []string{follow, pinned}
	ctx, e := start(t, harness.Options{Clusters: clusters, UpgradeImage: true})
	enrolAll(t, ctx, e, clusters)
	initial := agentconfig.DefaultImage
	for _, cl := range clusters {
		waitVersion(t, e, cl, initial, metav1.ConditionTrue, addon.ReasonVersionMatches, "has the principal's version")
	}

	// Pin the old image on one cluster with a per-cluster AddOnDeploymentConfig.
	pin := hubfixture.NewADC("pin-agent-image", agentconfig.VarAgentImage, initial)
	pin.Namespace = pinned
	must.Succeed(t, e.Hub.Client.Create(ctx, pin))
	setClusterConfig(t, ctx, e, pinned, pin)
	waitVersion(t, e, pinned, initial, metav1.ConditionTrue, addon.ReasonVersionMatches, "has the principal's version")

	upgraded := time.Now()
	must.Succeed(t, e.Principal.SetImage(ctx, harness.UpgradeAgentImage))
	t.Logf("principal runs %s", harness.UpgradeAgentImage)
	waitVersion(t, e, follow, harness.UpgradeAgentImage, metav1.ConditionTrue, addon.ReasonVersionMatches, "v0.9.0-upgrade")
	waitRunning(t, e, follow, harness.UpgradeAgentImage)
	waitAvailable(t, e, follow, metav1.ConditionTrue)
	t.Logf("%s: agent on the principal's new version and Available %s after the upgrade", follow, time.Since(upgraded).Round(time.Second))

	waitVersion(t, e, pinned, initial, metav1.ConditionFalse, addon.ReasonVersionMismatch, "customizedVariables[agentImage]")
	waitAvailable(t, e, pinned, metav1.ConditionFalse)
	rows, _, err := status.Collect(ctx, e.Hub.Client, time.Now(), nil)
	must.Succeed(t, err)
	for _, r := range rows {
		want := "v0.9.0-upgrade (= principal)"
		if r.Cluster == pinned {
			want = "v0.9.0 MISMATCH: principal refuses it (pinned)"
		}
		if r.Version != want {
			t.Errorf("status VERSION of %s: %q, want %q", r.Cluster, r.Version, want)
		}
	}

	// Unpinned, it follows the principal and is accepted again.
	unpinned := time.Now()
	setClusterConfig(t, ctx, e, pinned, nil)
	waitVersion(t, e, pinned, harness.UpgradeAgentImage, metav1.ConditionTrue, addon.ReasonVersionMatches, "v0.9.0-upgrade")
	waitRunning(t, e, pinned, harness.UpgradeAgentImage)
	waitAvailable(t, e, pinned, metav1.ConditionTrue)
	t.Logf("%s: unpinned, on the principal's version and Available %s later", pinned, time.Since(unpinned).Round(time.Second))
	poll.Until(t, time.Minute, "the principal has both agents connected", func(ctx context.Context) (bool, error) {
		connected, err := e.Principal.ConnectedAgents(ctx)
		return err == nil && strings.Join(connected, ",") == strings.Join(clusters, ","), nil
	})
}

// setClusterConfig points cluster's add-on at adc instead of the fleet's config (nil: back to
// the fleet's), as a hub administrator does for one cluster.
func setClusterConfig(t *testing.T, ctx context.Context, e *harness.Env, cluster string, adc *addonv1beta1.AddOnDeploymentConfig) {
	t.Helper()
	must.Succeed(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mca := &addonv1beta1.ManagedClusterAddOn{}
		if err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: cluster, Name: identity.AddonName}, mca); err != nil {
			return err
		}
		mca.Spec.Configs = nil
		if adc != nil {
			mca.Spec.Configs = []addonv1beta1.AddOnConfig{{
				ConfigGroupResource: addonv1beta1.ConfigGroupResource{Group: addonv1beta1.GroupName, Resource: "addondeploymentconfigs"},
				ConfigReferent:      addonv1beta1.ConfigReferent{Namespace: adc.Namespace, Name: adc.Name},
			}}
		}
		return e.Hub.Client.Update(ctx, mca)
	}))
}

// waitVersion waits until cluster's ManifestWork gives the agent image and its add-on's
// AgentVersion condition has status and reason, its message containing inMessage.
func waitVersion(t *testing.T, e *harness.Env, cluster, image string, st metav1.ConditionStatus, reason, inMessage string) {
	t.Helper()
	var last string
	poll.Until(t, 3*time.Minute, fmt.Sprintf("%s: work delivers %s, AgentVersion=%s %s", cluster, image, st, reason), func(ctx context.Context) (bool, error) {
		got, err := workImage(ctx, e, cluster)
		if err != nil {
			return false, err
		}
		mca := &addonv1beta1.ManagedClusterAddOn{}
		if err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: cluster, Name: identity.AddonName}, mca); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(mca.Status.Conditions, addon.ConditionAgentVersion)
		if c == nil {
			last = got + ", no AgentVersion condition"
			return false, nil
		}
		last = fmt.Sprintf("%s, %s %s: %s", got, c.Status, c.Reason, c.Message)
		return got == image && c.Status == st && c.Reason == reason && strings.Contains(c.Message, inMessage), nil
	})
	t.Logf("%s: %s", cluster, last)
}

// workImage is the agent container's image in cluster's ManifestWork on the hub.
func workImage(ctx context.Context, e *harness.Env, cluster string) (string, error) {
	rows, _, err := status.Collect(ctx, e.Hub.Client, time.Now(), nil)
	if err != nil {
		return "", err
	}
	for _, r := range rows {
		if r.Cluster == cluster {
			return r.Image, nil
		}
	}
	return "", fmt.Errorf("no status row for %s", cluster)
}

// waitRunning waits until the spoke's only agent pod runs image and is Ready.
func waitRunning(t *testing.T, e *harness.Env, cluster, image string) {
	t.Helper()
	spoke := e.Spokes[cluster].API.Client
	poll.Until(t, 3*time.Minute, cluster+": the agent pod runs "+image, func(ctx context.Context) (bool, error) {
		d := &appsv1.Deployment{}
		if err := spoke.Get(ctx, types.NamespacedName{Namespace: identity.DefaultInstallNamespace, Name: identity.AgentName}, d); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		pods := &corev1.PodList{}
		if err := spoke.List(ctx, pods, client.InNamespace(d.Namespace), client.MatchingLabels(d.Spec.Selector.MatchLabels)); err != nil {
			return false, err
		}
		if len(pods.Items) != 1 || pods.Items[0].DeletionTimestamp != nil || pods.Items[0].Spec.Containers[0].Image != image {
			return false, nil
		}
		for _, c := range pods.Items[0].Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
}
