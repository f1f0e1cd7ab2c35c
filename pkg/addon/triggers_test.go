package addon

import (
	"context"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

func addonUsing(cluster, name string, adc types.NamespacedName) *addonv1beta1.ManagedClusterAddOn {
	a := &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: cluster, Name: name}}
	if adc.Name != "" {
		a.Status.ConfigReferences = []addonv1beta1.ConfigReference{{
			ConfigGroupResource: addonv1beta1.ConfigGroupResource{Group: addonv1beta1.GroupName, Resource: "addondeploymentconfigs"},
			DesiredConfig:       &addonv1beta1.ConfigSpecHash{ConfigReferent: addonv1beta1.ConfigReferent{Namespace: adc.Namespace, Name: adc.Name}},
		}}
	}
	return a
}

// A config change re-renders exactly the clusters whose add-on uses that config.
func TestConfigTriggerSelectsUsers(t *testing.T) {
	scheme, err := hubclient.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	fleet := types.NamespacedName{Namespace: "open-cluster-management", Name: "fleet"}
	own := types.NamespacedName{Namespace: "c3", Name: "c3-config"}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		addonUsing("c1", identity.AddonName, fleet),
		addonUsing("c2", identity.AddonName, fleet),
		addonUsing("c3", identity.AddonName, own),
		addonUsing("c4", identity.AddonName, types.NamespacedName{}),
		addonUsing("c5", "another-addon", fleet),
	).Build()
	var triggered []string
	tr := &ConfigTrigger{Client: c, Trigger: func(cluster, addon string) {
		if addon != identity.AddonName {
			t.Errorf("triggered add-on %q", addon)
		}
		triggered = append(triggered, cluster)
	}}
	for _, tc := range []struct {
		config types.NamespacedName
		want   []string
	}{
		{fleet, []string{"c1", "c2"}},
		{own, []string{"c3"}},
		{types.NamespacedName{Namespace: "open-cluster-management", Name: "unused"}, nil},
	} {
		triggered = nil
		if _, err := tr.Reconcile(context.Background(), ctrl.Request{NamespacedName: tc.config}); err != nil {
			t.Fatal(err)
		}
		slices.Sort(triggered)
		if !slices.Equal(triggered, tc.want) {
			t.Errorf("config %s triggered %v, want %v", tc.config, triggered, tc.want)
		}
	}
}

func TestCachedConfigGetter(t *testing.T) {
	scheme, err := hubclient.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	adc := &addonv1beta1.AddOnDeploymentConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cfg"},
		Spec: addonv1beta1.AddOnDeploymentConfigSpec{AgentInstallNamespace: "gitops"}}
	g := CachedConfigGetter{Reader: fake.NewClientBuilder().WithScheme(scheme).WithObjects(adc).Build()}
	got, err := g.Get(context.Background(), "ns", "cfg")
	if err != nil || got.Spec.AgentInstallNamespace != "gitops" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if _, err := g.Get(context.Background(), "ns", "missing"); err == nil {
		t.Fatal("a missing config was found")
	}
}
