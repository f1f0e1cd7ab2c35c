package integration

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/clustersecret"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// The manager runs with one cluster secret group (startManager): the clusters whose add-on comes
// through groupPlacement keep their cluster secret in groupNamespace, for another principal.
var groupPlacement = addonv1beta1.PlacementRef{Namespace: hubfixture.ConfigNamespace, Name: "group-eu"}

const (
	groupNamespace     = "argocd-eu"
	groupResourceProxy = "argocd-agent-resource-proxy.argocd-eu.svc:9090"
)

// setPlacements makes the ClusterManagementAddOn install through placements, in order (none:
// back to Manual, as the fixture has it).
func setPlacements(t *testing.T, ctx context.Context, placements ...addonv1beta1.PlacementRef) {
	t.Helper()
	must.Succeed(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cma := &addonv1beta1.ClusterManagementAddOn{}
		if err := env.Client.Get(ctx, types.NamespacedName{Name: identity.AddonName}, cma); err != nil {
			return err
		}
		cma.Spec.InstallStrategy = addonv1beta1.InstallStrategy{Type: addonv1beta1.AddonInstallStrategyManual}
		if len(placements) > 0 {
			cma.Spec.InstallStrategy.Type = addonv1beta1.AddonInstallStrategyPlacements
		}
		for _, p := range placements {
			cma.Spec.InstallStrategy.Placements = append(cma.Spec.InstallStrategy.Placements, addonv1beta1.PlacementStrategy{PlacementRef: p})
		}
		return env.Client.Update(ctx, cma)
	}))
}

// decide sets the decisions of placement to clusters, as OCM's placement controller writes them.
func decide(t *testing.T, ctx context.Context, placement addonv1beta1.PlacementRef, clusters ...string) {
	t.Helper()
	d := &clusterv1beta1.PlacementDecision{ObjectMeta: metav1.ObjectMeta{Namespace: placement.Namespace, Name: placement.Name + "-decision-1",
		Labels: map[string]string{clusterv1beta1.PlacementLabel: placement.Name}}}
	if err := env.Client.Create(ctx, d); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	must.Succeed(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
			return err
		}
		d.Status.Decisions = []clusterv1beta1.ClusterDecision{}
		for _, c := range clusters {
			d.Status.Decisions = append(d.Status.Decisions, clusterv1beta1.ClusterDecision{ClusterName: c})
		}
		return env.Client.Status().Update(ctx, d)
	}))
}

// secretsIn returns which of the namespaces hold cluster's secret, and the server of each.
func secretsIn(ctx context.Context, cluster string) (map[string]string, error) {
	out := map[string]string{}
	for _, ns := range []string{caNamespace, groupNamespace} {
		s := &corev1.Secret{}
		err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: clustersecret.Name(cluster)}, s)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[ns] = string(s.Data["server"])
	}
	return out, nil
}

func waitSecretIn(t *testing.T, cluster, namespace, server string) {
	t.Helper()
	var last map[string]string
	poll.Until(t, 30*time.Second, cluster+"'s cluster secret in "+namespace+" only, server "+server, func(ctx context.Context) (bool, error) {
		var err error
		last, err = secretsIn(ctx, cluster)
		return len(last) == 1 && last[namespace] == server, err
	})
	t.Logf("%s: %v", cluster, last)
}

// TestClusterSecretGroups: a cluster's secret goes to its group's Argo CD namespace, with that
// group's resource proxy, by the Placement OCM installs its add-on through; it moves with the
// Placement's decisions, keeps its client certificate, and stays put while no Placement holds
// the cluster (between two Placements' decisions).
func TestClusterSecretGroups(t *testing.T) {
	ctx := context.Background()
	const cluster = "grouped"
	joinCluster(t, cluster, hubfixture.NewADC(cluster, "principalAddress", "principal.example.com"))
	t.Cleanup(func() { setPlacements(t, context.Background()) })
	defaultServer := clustersecret.ServerURL(clustersecret.DefaultResourceProxyAddress, cluster)
	groupServer := clustersecret.ServerURL(groupResourceProxy, cluster)

	// A Manual add-on, no Placement: the default namespace.
	waitSecretIn(t, cluster, caNamespace, defaultServer)
	first, err := clusterSecret(ctx, cluster)
	must.Succeed(t, err)
	cert, _, _ := tlsConfigOf(t, first)

	fleet := addonv1beta1.PlacementRef{Namespace: hubfixture.ConfigNamespace, Name: "fleet"}
	decide(t, ctx, fleet, cluster)
	decide(t, ctx, groupPlacement)
	setPlacements(t, ctx, fleet, groupPlacement)
	// The group's Placement decides the cluster: the secret moves to the group's Argo CD.
	decide(t, ctx, groupPlacement, cluster)
	waitSecretIn(t, cluster, groupNamespace, groupServer)
	moved := &corev1.Secret{}
	must.Succeed(t, env.Client.Get(ctx, types.NamespacedName{Namespace: groupNamespace, Name: clustersecret.Name(cluster)}, moved))
	if movedCert, _, _ := tlsConfigOf(t, moved); string(movedCert) != string(cert) {
		t.Error("the moved secret has a new client certificate; the CA every principal trusts signed the first")
	}

	// Between two Placements' decisions: it stays where it is.
	decide(t, ctx, fleet)
	decide(t, ctx, groupPlacement)
	time.Sleep(3 * time.Second)
	got, err := secretsIn(ctx, cluster)
	must.Succeed(t, err)
	if len(got) != 1 || got[groupNamespace] != groupServer {
		t.Errorf("a cluster no Placement holds: secrets %v, want it left in %s", got, groupNamespace)
	}

	// Back in the fleet's Placement, which is no group's: the default namespace again.
	decide(t, ctx, fleet, cluster)
	waitSecretIn(t, cluster, caNamespace, defaultServer)

	// In both, the later Placement of the ClusterManagementAddOn wins, as for its configs.
	decide(t, ctx, groupPlacement, cluster)
	waitSecretIn(t, cluster, groupNamespace, groupServer)
	setPlacements(t, ctx, groupPlacement, fleet)
	waitSecretIn(t, cluster, caNamespace, defaultServer)
}
