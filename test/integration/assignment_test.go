package integration

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// TestStatusCannotPickTheConfig: addon-framework renders from the config a ManagedClusterAddOn's
// status names, which the managed cluster may write. A status naming a config the hub does not
// assign to the cluster (pkg/assignment) changes nothing delivered; once the hub assigns it
// (spec.configs), it is delivered. test/e2e makes the same move with the cluster's own
// credentials against OCM's real addon-manager.
func TestStatusCannotPickTheConfig(t *testing.T) {
	ctx := context.Background()
	const cluster = "picks-its-config"
	joinCluster(t, cluster, hubfixture.NewADC(cluster, "principalAddress", "principal-a.example.com"))
	other := hubfixture.NewADC(cluster+"-other", "principalAddress", "principal-b.example.com")
	must.Succeed(t, env.Client.Create(ctx, other))
	address := func(ctx context.Context) (string, int64, error) {
		mw, objs, err := workObjects(ctx, cluster)
		if err != nil || mw == nil {
			return "", 0, err
		}
		return paramsOf(objs)["agent.server.address"], mw.Generation, nil
	}
	var generation int64
	poll.Until(t, 30*time.Second, "principal-a delivered", func(ctx context.Context) (bool, error) {
		a, g, err := address(ctx)
		generation = g
		return a == "principal-a.example.com", err
	})

	// The status alone names the other config, at its spec hash, as the attacker can work out.
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(addonv1beta1.GroupVersion.String())
	u.SetKind("AddOnDeploymentConfig")
	must.Succeed(t, env.Client.Get(ctx, client.ObjectKeyFromObject(other), u))
	hash, err := utils.GetSpecHash(u)
	must.Succeed(t, err)
	must.Succeed(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mca := &addonv1beta1.ManagedClusterAddOn{}
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: cluster, Name: identity.AddonName}, mca); err != nil {
			return err
		}
		mca.Status.ConfigReferences = []addonv1beta1.ConfigReference{{
			ConfigGroupResource: addonv1beta1.ConfigGroupResource{Group: addonv1beta1.GroupName, Resource: "addondeploymentconfigs"},
			DesiredConfig:       &addonv1beta1.ConfigSpecHash{ConfigReferent: addonv1beta1.ConfigReferent{Namespace: other.Namespace, Name: other.Name}, SpecHash: hash},
		}}
		return env.Client.Status().Update(ctx, mca)
	}))
	time.Sleep(5 * time.Second) // the status update re-renders at once; give it time to (wrongly) land
	a, g, err := address(ctx)
	must.Succeed(t, err)
	if a != "principal-a.example.com" || g != generation {
		t.Fatalf("after the status alone named %s: address %q, generation %d (was %d)", other.Name, a, g, generation)
	}

	// The hub assigns it: delivered.
	must.Succeed(t, hubfixture.UseConfig(ctx, env.Client, cluster, addonv1beta1.GroupName, "addondeploymentconfigs", other.Namespace, other.Name))
	poll.Until(t, 30*time.Second, "principal-b delivered once the hub assigns its config", func(ctx context.Context) (bool, error) {
		a, _, err := address(ctx)
		return a == "principal-b.example.com", err
	})
}
