package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/addon"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentversion"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// TestAgentVersionFollowsPrincipal: the manager keeps its AgentVersion equal to the principal
// Deployment's image, writing it only when that image changes; a cluster whose add-on status
// names the AgentVersion gets that image only once OCM's rollout reaches the new spec (until
// then it keeps the old one and says VersionMismatch), an agentImage pin wins and is reported
// as a mismatch, and a deleted principal Deployment leaves the agents' version as it is.
// OCM's addon-manager is played by the test (it writes the desired spec hashes); test/e2e
// runs the real one.
func TestAgentVersionFollowsPrincipal(t *testing.T) {
	ctx := context.Background()
	const cluster = "version"
	// Neither is the manager's default image, so only the AgentVersion can deliver them.
	const v1, v2 = "mirror.example.com/argoprojlabs/argocd-agent:v0.9.0", "registry.example.com/argocd-agent:v0.9.1"
	avKey := types.NamespacedName{Namespace: hubfixture.LeaderNamespace, Name: agentversion.DefaultName}
	readAV := func(ctx context.Context) (*unstructured.Unstructured, string, error) {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(agentversion.GVK)
		if err := env.Client.Get(ctx, avKey, u); err != nil {
			return nil, "", err
		}
		image, _, _ := unstructured.NestedString(u.Object, "spec", "image")
		return u, image, nil
	}
	poll.Until(t, 30*time.Second, "the manager creates its AgentVersion, owned by the ClusterManagementAddOn", func(ctx context.Context) (bool, error) {
		u, image, err := readAV(ctx)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil && image != "" && len(u.GetOwnerReferences()) == 1 && u.GetOwnerReferences()[0].Name == identity.AddonName, err
	})

	principalDeploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: principal.DefaultService.Namespace, Name: principal.DefaultService.Name},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "principal"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "principal"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{
					{Name: "redis-sidecar", Image: "redis:7"},
					{Name: agentversion.PrincipalContainer, Image: v1, Args: []string{"principal"}},
				}}}},
	}
	must.Succeed(t, env.Client.Create(ctx, principalDeploy))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), principalDeploy) })
	follows := func(image string) *unstructured.Unstructured {
		t.Helper()
		var got *unstructured.Unstructured
		poll.Until(t, 30*time.Second, "AgentVersion follows the principal to "+image, func(ctx context.Context) (bool, error) {
			u, img, err := readAV(ctx)
			got = u
			return err == nil && img == image &&
				u.GetAnnotations()[agentversion.SourceAnnotation] == "Deployment "+principal.DefaultService.String(), err
		})
		return got
	}
	av := follows(v1)

	// A cluster whose add-on status names the AgentVersion at its current spec hash, as OCM's
	// addon-manager writes it for a default config of the ClusterManagementAddOn.
	joinCluster(t, cluster, hubfixture.NewADC(cluster, "principalAddress", "principal.example.com"))
	setDesired := func(u *unstructured.Unstructured) {
		t.Helper()
		hash, err := utils.GetSpecHash(u)
		must.Succeed(t, err)
		must.Succeed(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			mca := &addonv1beta1.ManagedClusterAddOn{}
			if err := env.Client.Get(ctx, types.NamespacedName{Namespace: cluster, Name: identity.AddonName}, mca); err != nil {
				return err
			}
			ref := addonv1beta1.ConfigReference{
				ConfigGroupResource: addonv1beta1.ConfigGroupResource{Group: agentversion.Group, Resource: agentversion.Resource},
				DesiredConfig:       &addonv1beta1.ConfigSpecHash{ConfigReferent: addonv1beta1.ConfigReferent{Namespace: avKey.Namespace, Name: avKey.Name}, SpecHash: hash},
			}
			refs := []addonv1beta1.ConfigReference{ref}
			for _, r := range mca.Status.ConfigReferences {
				if r.Resource != agentversion.Resource {
					refs = append(refs, r)
				}
			}
			mca.Status.ConfigReferences = refs
			return env.Client.Status().Update(ctx, mca)
		}))
	}
	delivered := func(what, image, reason, inMessage string) {
		t.Helper()
		var last string
		defer func() {
			if t.Failed() {
				t.Logf("last seen: %s", last)
			}
		}()
		poll.Until(t, 30*time.Second, what, func(ctx context.Context) (bool, error) {
			_, objs, err := workObjects(ctx, cluster)
			if err != nil || objs == nil {
				return false, err
			}
			d := deploymentOf(t, objs)
			c, err := addonCondition(ctx, cluster, addon.ConditionAgentVersion)
			if err != nil {
				return false, nil
			}
			last = d.Spec.Template.Spec.Containers[0].Image + " " + c.Reason + ": " + c.Message
			return d.Spec.Template.Spec.Containers[0].Image == image && c.Reason == reason && strings.Contains(c.Message, inMessage), nil
		})
	}
	setDesired(av)
	delivered("the agent gets the principal's image", v1, addon.ReasonVersionMatches, "has the principal's version v0.9.0")

	// The principal moves on: the AgentVersion follows at once, the cluster only when OCM's
	// rollout gives it the new spec hash.
	setPrincipalImage := func(image string) {
		t.Helper()
		must.Succeed(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(principalDeploy), principalDeploy); err != nil {
				return err
			}
			principalDeploy.Spec.Template.Spec.Containers[1].Image = image
			return env.Client.Update(ctx, principalDeploy)
		}))
	}
	setPrincipalImage(v2)
	av = follows(v2)
	delivered("held: the rollout has not reached the cluster, its agent keeps the old version", v1, addon.ReasonVersionMismatch,
		"rollout has not reached this cluster yet: rollout pending: agentversions")
	poll.Until(t, 30*time.Second, "an event on the AgentVersion says it followed the principal", func(ctx context.Context) (bool, error) {
		list := &eventsv1.EventList{}
		if err := env.Client.List(ctx, list, client.InNamespace(avKey.Namespace)); err != nil {
			return false, err
		}
		for _, e := range list.Items {
			if e.Regarding.Name == avKey.Name && e.Reason == agentversion.ReasonFollowed && strings.Contains(e.Note, v2) {
				return true, nil
			}
		}
		return false, nil
	})
	setDesired(av)
	delivered("the rollout reaches the cluster", v2, addon.ReasonVersionMatches, "v0.9.1")

	// Steady state: an update of the Deployment that does not change its image writes nothing.
	rv := av.GetResourceVersion()
	must.Succeed(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(principalDeploy), principalDeploy); err != nil {
			return err
		}
		principalDeploy.Spec.Template.Annotations = map[string]string{"touched": "yes"}
		return env.Client.Update(ctx, principalDeploy)
	}))

	// A pin wins: a mirror's image of the principal's version matches; another version is a
	// mismatch that names the pin.
	setVariable(t, cluster, "agentImage", "mirror.example.com/argocd-agent:v0.9.1")
	delivered("a pin to a mirror of the principal's version", "mirror.example.com/argocd-agent:v0.9.1", addon.ReasonVersionMatches, "v0.9.1")
	setVariable(t, cluster, "agentImage", "quay.io/argoprojlabs/argocd-agent:v0.8.0")
	delivered("a pinned image wins", "quay.io/argoprojlabs/argocd-agent:v0.8.0", addon.ReasonVersionMismatch, "customizedVariables[agentImage]")

	// The principal Deployment goes: the agents keep their version.
	must.Succeed(t, env.Client.Delete(ctx, principalDeploy))
	poll.Until(t, 30*time.Second, "principal Deployment gone", func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(principalDeploy), &appsv1.Deployment{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	// The pinned cluster's next render cannot read the principal's image: VersionUnknown.
	setVariable(t, cluster, "logLevel", "debug")
	delivered("without a principal the version is unknown", "quay.io/argoprojlabs/argocd-agent:v0.8.0", addon.ReasonVersionUnknown, "not found")
	u, image, err := readAV(ctx)
	must.Succeed(t, err)
	if image != v2 || u.GetResourceVersion() != rv {
		t.Errorf("AgentVersion after a no-op Deployment update and the Deployment's deletion: image %s resourceVersion %s, want %s and unchanged %s (0 writes)",
			image, u.GetResourceVersion(), v2, rv)
	}
}
