package e2e

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/revoke"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/argocd"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/e2e/harness"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

var applicationSetGVK = schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "ApplicationSet"}

// guestbookLabel selects clusters for the ApplicationSet's Placement.
const guestbookLabel = "guestbook"

// placementApplicationSet deploys the guestbook to every cluster the Placement "guestbook"
// holds, through OCM's integration: the clusterDecisionResource generator over the Placement's
// PlacementDecisions (the chart's generator ConfigMap), each decision matched against a cluster
// secret's data.name, and destination.name naming the agent (destination-based mapping).
func placementApplicationSet(repoURL string) *unstructured.Unstructured {
	set := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"namespace": harness.ArgoCDNamespace, "name": "guestbook"},
		"spec": map[string]any{
			"generators": []any{map[string]any{"clusterDecisionResource": map[string]any{
				"configMapRef":        "ocm-placement-generator",
				"labelSelector":       map[string]any{"matchLabels": map[string]any{clusterv1beta1.PlacementLabel: "guestbook"}},
				"requeueAfterSeconds": int64(10),
			}}},
			"template": map[string]any{
				"metadata": map[string]any{"name": "{{name}}-guestbook", "finalizers": []any{"resources-finalizer.argocd.argoproj.io"}},
				"spec": map[string]any{
					"project":     "default",
					"source":      map[string]any{"repoURL": repoURL, "targetRevision": "v1", "path": "."},
					"destination": map[string]any{"name": "{{name}}", "namespace": "guestbook"},
					"syncPolicy": map[string]any{
						"automated":   map[string]any{"prune": true, "selfHeal": true},
						"syncOptions": []any{"CreateNamespace=true"},
					},
				},
			},
		},
	}}
	set.SetGroupVersionKind(applicationSetGVK)
	return set
}

// hubApplications are the names of the Applications in Argo CD's namespace on the hub.
func hubApplications(ctx context.Context, c client.Client) ([]string, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(argocd.ApplicationGVK)
	if err := c.List(ctx, list, client.InNamespace(harness.ArgoCDNamespace)); err != nil {
		return nil, err
	}
	var names []string
	for _, a := range list.Items {
		names = append(names, a.GetName())
	}
	slices.Sort(names)
	return names, nil
}

// A platform team targets clusters by OCM Placement with one ApplicationSet: every cluster the
// Placement holds gets the app, a cluster added gets it, a cluster removed loses it, and a
// revoked cluster gets nothing, though the Placement holds it. The wiring is the chart's
// (applicationSets.placementGenerator: the generator ConfigMap, the ApplicationSet controller's
// read access to PlacementDecisions) and the cluster secrets the manager keeps.
func TestApplicationSetsByPlacement(t *testing.T) {
	clusters := []string{"set1", "set2", "set3"}
	ctx, e := start(t, harness.Options{Clusters: clusters, ArgoCD: true,
		ChartValues: map[string]string{"applicationSets.placementGenerator": "true", "agent.destinationBasedMapping": "true"},
		// The ApplicationSet's Applications live in Argo CD's namespace on the hub: the
		// principal routes them by destination name and must allow that namespace.
		PrincipalParams: map[string]string{"principal.destination-based-mapping": "true",
			"principal.allowed-namespaces": strings.Join(append(slices.Clone(clusters), harness.ArgoCDNamespace), ",")},
	})
	hub := e.Hub.Client

	// set3 is revoked before it ever gets the agent; it is labelled like the others.
	out := &bytes.Buffer{}
	must.Succeed(t, (&revoke.Options{RestConfig: e.Hub.Config, Reason: "never trusted", PrincipalNamespace: harness.ArgoCDNamespace,
		Namespace: harness.AddonNamespace}).Revoke(ctx, "set3", out))
	for _, c := range clusters {
		must.Succeed(t, e.SetEnabled(ctx, c, true))
	}
	for _, c := range clusters[:2] {
		_, err := e.StartAgent(ctx, c)
		must.Succeed(t, err)
		waitAvailable(t, e, c, metav1.ConditionTrue)
	}

	must.Succeed(t, e.Sources.Push(ctx, argocd.GuestbookRepo, "v1", argocd.Guestbook("v1")))
	must.Succeed(t, hub.Create(ctx, e.Sources.RepositorySecret(harness.ArgoCDNamespace, "guestbook-repo", argocd.GuestbookRepo, "default")))
	// The Placement in Argo CD's namespace, from the global set, of the clusters labelled
	// guestbook=enabled.
	must.Succeed(t, hub.Create(ctx, &clusterv1beta2.ManagedClusterSetBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: harness.ArgoCDNamespace, Name: "global"},
		Spec:       clusterv1beta2.ManagedClusterSetBindingSpec{ClusterSet: "global"},
	}))
	must.Succeed(t, hub.Create(ctx, &clusterv1beta1.Placement{
		ObjectMeta: metav1.ObjectMeta{Namespace: harness.ArgoCDNamespace, Name: "guestbook"},
		Spec: clusterv1beta1.PlacementSpec{
			ClusterSets: []string{"global"},
			Predicates: []clusterv1beta1.ClusterPredicate{{RequiredClusterSelector: clusterv1beta1.ClusterSelector{
				LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{guestbookLabel: "enabled"}}}}},
		},
	}))
	for _, c := range []string{"set1", "set3"} {
		must.Succeed(t, e.SetClusterLabel(ctx, c, guestbookLabel, "enabled"))
	}
	must.Succeed(t, hub.Create(ctx, placementApplicationSet(e.Sources.RepoURL(argocd.GuestbookRepo))))

	t.Run("every cluster the Placement holds gets the app, but the revoked one", func(t *testing.T) {
		waitPlacementHolds(t, e, "set1", "set3")
		waitSyncedHealthy(t, e, harness.ArgoCDNamespace, "set1-guestbook", "set1", "v1")
		waitHubApplications(t, e, "set1-guestbook")
	})

	t.Run("a cluster added to the Placement gets the app", func(t *testing.T) {
		must.Succeed(t, e.SetClusterLabel(ctx, "set2", guestbookLabel, "enabled"))
		waitSyncedHealthy(t, e, harness.ArgoCDNamespace, "set2-guestbook", "set2", "v1")
		waitHubApplications(t, e, "set1-guestbook", "set2-guestbook")
	})

	t.Run("a cluster removed from the Placement loses the app", func(t *testing.T) {
		must.Succeed(t, e.SetClusterLabel(ctx, "set1", guestbookLabel, ""))
		waitHubApplications(t, e, "set2-guestbook")
		spoke := e.Spokes["set1"].API.Client
		poll.Until(t, 3*time.Minute, "the guestbook objects gone from set1", func(ctx context.Context) (bool, error) {
			err := spoke.Get(ctx, types.NamespacedName{Namespace: "guestbook", Name: "guestbook"}, &corev1.ConfigMap{})
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
	})

	t.Run("the revoked cluster got nothing", func(t *testing.T) {
		// The Placement still holds set3, a generator requeue has passed (waitHubApplications),
		// and no Application was generated for it: the generator found no cluster secret.
		waitPlacementHolds(t, e, "set2", "set3")
		names, err := hubApplications(ctx, hub)
		must.Succeed(t, err)
		if slices.Contains(names, "set3-guestbook") {
			t.Errorf("hub Applications %v: the revoked set3 got one", names)
		}
		err = hub.Get(ctx, types.NamespacedName{Namespace: harness.ArgoCDNamespace, Name: "cluster-set3"}, &corev1.Secret{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("a cluster secret for the revoked set3 (%v)", err)
		}
	})
}

// waitPlacementHolds waits until the Placement "guestbook" decides exactly clusters.
func waitPlacementHolds(t *testing.T, e *harness.Env, clusters ...string) {
	t.Helper()
	poll.Until(t, 2*time.Minute, fmt.Sprintf("Placement guestbook holds %v", clusters), func(ctx context.Context) (bool, error) {
		list := &clusterv1beta1.PlacementDecisionList{}
		if err := e.Hub.Client.List(ctx, list, client.InNamespace(harness.ArgoCDNamespace),
			client.MatchingLabels{clusterv1beta1.PlacementLabel: "guestbook"}); err != nil {
			return false, err
		}
		var got []string
		for _, d := range list.Items {
			for _, c := range d.Status.Decisions {
				got = append(got, c.ClusterName)
			}
		}
		slices.Sort(got)
		return slices.Equal(got, clusters), nil
	})
}

// waitHubApplications waits until Argo CD's namespace on the hub holds exactly names, and
// checks it still does a generator requeue later (an extra one would take that long to come).
func waitHubApplications(t *testing.T, e *harness.Env, names ...string) {
	t.Helper()
	check := func(ctx context.Context) (bool, error) {
		got, err := hubApplications(ctx, e.Hub.Client)
		if err != nil {
			return false, err
		}
		if !slices.Equal(got, names) {
			return false, fmt.Errorf("hub Applications %v", got)
		}
		return true, nil
	}
	poll.Until(t, 3*time.Minute, fmt.Sprintf("hub Applications %v", names), check)
	time.Sleep(15 * time.Second)
	if ok, err := check(context.Background()); !ok {
		t.Errorf("after a generator requeue: %v", err)
	}
}
