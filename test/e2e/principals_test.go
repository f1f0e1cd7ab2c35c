package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	clusterv1alpha1 "open-cluster-management.io/api/cluster/v1alpha1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/clustersecret"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/status"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/argocd"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/e2e/harness"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// groupLabel puts a cluster in group b, whose agents connect to the second principal. The chart
// protects it from the clusters themselves (admissionPolicy.protectedLabels).
const groupLabel = "example.com/principal-group"

// TestFleetSplitBetweenTwoPrincipals: two Placements of the add-on, each with its own
// AddOnDeploymentConfig naming a principal, split the fleet; each agent connects to its group's
// principal only, `status` shows which, a cluster cannot move itself, and a cluster moved by
// the hub's administrator reconnects to its new group's principal and leaves the old one.
func TestFleetSplitBetweenTwoPrincipals(t *testing.T) {
	ctx, e := start(t, harness.Options{SecondPrincipal: true,
		ChartValues: map[string]string{"admissionPolicy.protectedLabels[0]": groupLabel}})
	a, b := e.Principal, e.SecondPrincipal
	c := e.Hub.Client

	// Group b: its own Placement, with a config naming the second principal.
	adc := &addonv1beta1.AddOnDeploymentConfig{ObjectMeta: metav1.ObjectMeta{Namespace: harness.AddonNamespace, Name: "principal-b"},
		Spec: addonv1beta1.AddOnDeploymentConfigSpec{CustomizedVariables: []addonv1beta1.CustomizedVariable{
			{Name: "principalAddress", Value: b.Host()}, {Name: "principalPort", Value: strconv.Itoa(b.Port())}}}}
	must.Succeed(t, c.Create(ctx, adc))
	placementA := &clusterv1beta1.Placement{}
	must.Succeed(t, c.Get(ctx, types.NamespacedName{Namespace: harness.AddonNamespace, Name: "argocd-agent"}, placementA))
	placementB := &clusterv1beta1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: harness.AddonNamespace, Name: harness.SecondPlacement}, Spec: *placementA.Spec.DeepCopy()}
	sel := &placementB.Spec.Predicates[0].RequiredClusterSelector.LabelSelector
	sel.MatchLabels = map[string]string{harness.EnableLabel: "enabled", groupLabel: "b"}
	must.Succeed(t, c.Create(ctx, placementB))
	// Group a, the chart's Placement, leaves group b out: one cluster, one Placement.
	must.Succeed(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(placementA), placementA); err != nil {
			return err
		}
		sel := &placementA.Spec.Predicates[0].RequiredClusterSelector.LabelSelector
		sel.MatchExpressions = append(sel.MatchExpressions, metav1.LabelSelectorRequirement{Key: groupLabel, Operator: metav1.LabelSelectorOpDoesNotExist})
		return c.Update(ctx, placementA)
	}))
	must.Succeed(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cma := &addonv1beta1.ClusterManagementAddOn{}
		if err := c.Get(ctx, types.NamespacedName{Name: identity.AddonName}, cma); err != nil {
			return err
		}
		cma.Spec.InstallStrategy.Placements = append(cma.Spec.InstallStrategy.Placements, addonv1beta1.PlacementStrategy{
			PlacementRef: addonv1beta1.PlacementRef{Namespace: placementB.Namespace, Name: placementB.Name},
			Configs: []addonv1beta1.AddOnConfig{{
				ConfigGroupResource: addonv1beta1.ConfigGroupResource{Group: addonv1beta1.GroupName, Resource: "addondeploymentconfigs"},
				ConfigReferent:      addonv1beta1.ConfigReferent{Namespace: adc.Namespace, Name: adc.Name},
			}},
			RolloutStrategy: clusterv1alpha1.RolloutStrategy{Type: clusterv1alpha1.All},
		})
		return c.Update(ctx, cma)
	}))
	setGroup(t, ctx, e, "cluster2", "b")
	enrolAll(t, ctx, e, []string{"cluster1", "cluster2"})

	waitConnected(t, e, a, "cluster1", "cluster2")
	waitConnected(t, e, b, "cluster2", "cluster1")
	rows, _, err := status.Collect(ctx, c, time.Now(), nil)
	must.Succeed(t, err)
	for _, r := range rows {
		want := map[string]string{"cluster1": a.Addr(), "cluster2": b.Addr()}[r.Cluster]
		if !strings.HasPrefix(r.Principal, want) {
			t.Errorf("status: %s's principal %q, want %s", r.Cluster, r.Principal, want)
		}
		t.Logf("status: %s -> %s, %s", r.Cluster, r.Principal, r.Available)
	}

	// Each group's Argo CD has the cluster secrets of its clusters, through its own principal's
	// resource proxy (clusterSecrets.groups), and none of the other group's.
	tracked := trackedConfigMap(t, ctx, e, "cluster2")
	resourceProxyGetVia(t, resourceProxyClientOf(t, ctx, e, "cluster2", harness.SecondArgoCDNamespace, e.SecondResourceProxyAddr()), "cluster2", tracked)
	resourceProxyGet(t, ctx, e, "cluster1", trackedConfigMap(t, ctx, e, "cluster1"))
	noClusterSecret(t, ctx, e, harness.ArgoCDNamespace, "cluster2")
	noClusterSecret(t, ctx, e, harness.SecondArgoCDNamespace, "cluster1")

	// The cluster cannot move itself with its own OCM credentials.
	runAttacks(t, ctx, e, "cluster2", []attack{
		{"leave group b (update)", setOwnLabel("cluster2", groupLabel, "", false)},
		{"leave group b (merge patch)", setOwnLabel("cluster2", groupLabel, "", true)},
	})
	runAttacks(t, ctx, e, "cluster1", []attack{{"join group b", setOwnLabel("cluster1", groupLabel, "b", true)}})
	pointOwnStatusAt(t, ctx, e, "cluster1", adc)
	waitConnected(t, e, a, "cluster1", "")
	waitConnected(t, e, b, "cluster2", "cluster1")

	// The hub's administrator moves cluster2 to group a: its agent follows.
	setGroup(t, ctx, e, "cluster2", "")
	waitConnected(t, e, a, "cluster2", "")
	waitConnected(t, e, b, "", "cluster2")
	waitAvailable(t, e, "cluster2", metav1.ConditionTrue)
	names, err := b.ConnectedAgents(ctx)
	must.Succeed(t, err)
	if len(names) != 0 {
		t.Errorf("the second principal still lists %v after its only cluster moved", names)
	}
	// Its cluster secret moved with it: group a's Argo CD reaches it through principal a.
	resourceProxyGet(t, ctx, e, "cluster2", tracked)
	poll.Until(t, time.Minute, "cluster2's secret gone from "+harness.SecondArgoCDNamespace, func(ctx context.Context) (bool, error) {
		err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: harness.SecondArgoCDNamespace, Name: clustersecret.Name("cluster2")}, &corev1.Secret{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}

// noClusterSecret fails if namespace's Argo CD has a cluster secret for cluster.
func noClusterSecret(t *testing.T, ctx context.Context, e *harness.Env, namespace, cluster string) {
	t.Helper()
	err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: clustersecret.Name(cluster)}, &corev1.Secret{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("%s has a cluster secret for %s (err %v): it belongs to the other group's Argo CD", namespace, cluster, err)
	}
}

// pointOwnStatusAt is the move the protected label does not stop: cluster patches its own
// ManagedClusterAddOn status, as its registration identity may, to name adc (another group's,
// at its current spec hash) as its desired config, which addon-framework would render from. The
// API server accepts it; the manager must not act on it (pkg/assignment): the cluster's
// ManifestWork keeps its generation while the cluster keeps re-writing the status for 30 s
// (OCM's addon-manager writes it back each time).
func pointOwnStatusAt(t *testing.T, ctx context.Context, e *harness.Env, cluster string, adc *addonv1beta1.AddOnDeploymentConfig) {
	t.Helper()
	id, err := e.ClusterIdentity(ctx, cluster)
	must.Succeed(t, err)
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(addonv1beta1.GroupVersion.String())
	u.SetKind("AddOnDeploymentConfig")
	must.Succeed(t, e.Hub.Client.Get(ctx, client.ObjectKeyFromObject(adc), u))
	hash, err := utils.GetSpecHash(u)
	must.Succeed(t, err)
	work := func() int64 {
		mw := &workv1.ManifestWork{}
		must.Succeed(t, e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: cluster, Name: "addon-" + identity.AddonName + "-deploy-0"}, mw))
		return mw.Generation
	}
	before := work()
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"configReferences": []map[string]any{{
		"group": addonv1beta1.GroupName, "resource": "addondeploymentconfigs",
		"desiredConfig": map[string]any{"namespace": adc.Namespace, "name": adc.Name, "specHash": hash},
	}}}})
	must.Succeed(t, err)
	mca := &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: cluster, Name: identity.AddonName}}
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(2 * time.Second) {
		if err := id.Client.Status().Patch(ctx, mca, client.RawPatch(types.MergePatchType, patch)); err != nil {
			t.Fatalf("patching its own add-on status as %s: %v (OCM's RBAC allows it: the attack is real only if it lands)", id.User, err)
		}
	}
	t.Logf("%s pointed its own add-on status at %s/%s for 30 s, as %s", cluster, adc.Namespace, adc.Name, id.User)
	if after := work(); after != before {
		t.Errorf("%s's ManifestWork went from generation %d to %d: the manager rendered from a config the cluster named", cluster, before, after)
	}
}

// setGroup sets (or, with "", removes) cluster's group label, as the hub's administrator.
func setGroup(t *testing.T, ctx context.Context, e *harness.Env, cluster, group string) {
	t.Helper()
	must.Succeed(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mc := &clusterv1.ManagedCluster{}
		if err := e.Hub.Client.Get(ctx, types.NamespacedName{Name: cluster}, mc); err != nil {
			return err
		}
		if mc.Labels == nil {
			mc.Labels = map[string]string{}
		}
		if group == "" {
			delete(mc.Labels, groupLabel)
		} else {
			mc.Labels[groupLabel] = group
		}
		return e.Hub.Client.Update(ctx, mc)
	}))
}

// waitConnected waits until p lists agent (unless "") and does not list absent (unless "").
func waitConnected(t *testing.T, e *harness.Env, p *argocd.PrincipalPod, agent, absent string) {
	t.Helper()
	poll.Until(t, 3*time.Minute, "principal "+p.Addr()+" lists "+agent+", not "+absent, func(ctx context.Context) (bool, error) {
		names, err := p.ConnectedAgents(ctx)
		if err != nil {
			return false, nil // a principal restarting or a metric not there yet
		}
		return (agent == "" || slices.Contains(names, agent)) && (absent == "" || !slices.Contains(names, absent)), nil
	})
}
