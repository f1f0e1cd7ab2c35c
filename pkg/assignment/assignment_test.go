package assignment

import (
	"context"
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

var (
	adcs     = addonv1beta1.ConfigGroupResource{Group: addonv1beta1.GroupName, Resource: "addondeploymentconfigs"}
	versions = addonv1beta1.ConfigGroupResource{Group: "argocd-agent-addon.open-cluster-management.io", Resource: "agentversions"}
	// customizations are supported without a default.
	customizations = addonv1beta1.ConfigGroupResource{Group: "argocd-agent-addon.open-cluster-management.io", Resource: "agentcustomizations"}
)

func ref(name string) addonv1beta1.ConfigReferent {
	return addonv1beta1.ConfigReferent{Namespace: "addon", Name: name}
}

func config(gr addonv1beta1.ConfigGroupResource, name string) addonv1beta1.AddOnConfig {
	return addonv1beta1.AddOnConfig{ConfigGroupResource: gr, ConfigReferent: ref(name)}
}

func decision(placement string, clusters ...string) *clusterv1beta1.PlacementDecision {
	d := &clusterv1beta1.PlacementDecision{ObjectMeta: metav1.ObjectMeta{Namespace: "addon", Name: placement + "-decision-1",
		Labels: map[string]string{clusterv1beta1.PlacementLabel: placement}}}
	for _, c := range clusters {
		d.Status.Decisions = append(d.Status.Decisions, clusterv1beta1.ClusterDecision{ClusterName: c})
	}
	return d
}

// cma has the default ADC "fleet" and AgentVersion "av", and placements a (no configs), b
// (ADC "group-b") and c (ADC "group-c" and AgentVersion "av-c"), in that order.
func cma() *addonv1beta1.ClusterManagementAddOn {
	placement := func(name string, configs ...addonv1beta1.AddOnConfig) addonv1beta1.PlacementStrategy {
		return addonv1beta1.PlacementStrategy{PlacementRef: addonv1beta1.PlacementRef{Namespace: "addon", Name: name}, Configs: configs}
	}
	return &addonv1beta1.ClusterManagementAddOn{
		ObjectMeta: metav1.ObjectMeta{Name: "argocd-agent"},
		Spec: addonv1beta1.ClusterManagementAddOnSpec{
			DefaultConfigs: []addonv1beta1.AddOnConfig{config(adcs, "fleet"), config(versions, "av"),
				{ConfigGroupResource: customizations, ConfigReferent: addonv1beta1.ConfigReferent{Name: addonv1beta1.ReservedNoDefaultConfigName}}},
			InstallStrategy: addonv1beta1.InstallStrategy{Type: addonv1beta1.AddonInstallStrategyPlacements, Placements: []addonv1beta1.PlacementStrategy{
				placement("a"), placement("b", config(adcs, "group-b")), placement("c", config(adcs, "group-c"), config(versions, "av-c")),
			}},
		},
	}
}

func resolver(t *testing.T, objs ...client.Object) Resolver {
	t.Helper()
	s := runtime.NewScheme()
	if err := clusterv1beta1.Install(s); err != nil {
		t.Fatal(err)
	}
	if err := addonv1beta1.Install(s); err != nil {
		t.Fatal(err)
	}
	return Resolver{Reader: fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()}
}

func mca(cluster string, spec ...addonv1beta1.AddOnConfig) *addonv1beta1.ManagedClusterAddOn {
	return &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: cluster, Name: "argocd-agent"},
		Spec: addonv1beta1.ManagedClusterAddOnSpec{Configs: spec}}
}

// desire sets what OCM's addon-manager (or the cluster) writes into the status.
func desire(m *addonv1beta1.ManagedClusterAddOn, configs ...addonv1beta1.AddOnConfig) *addonv1beta1.ManagedClusterAddOn {
	for _, c := range configs {
		m.Status.ConfigReferences = append(m.Status.ConfigReferences, addonv1beta1.ConfigReference{ConfigGroupResource: c.ConfigGroupResource,
			DesiredConfig: &addonv1beta1.ConfigSpecHash{ConfigReferent: c.ConfigReferent, SpecHash: "h"}})
	}
	return m
}

func TestAssigned(t *testing.T) {
	r := resolver(t, decision("a", "in-a", "in-a-and-b"), decision("b", "in-b", "in-a-and-b", "in-b-and-c"), decision("c", "in-b-and-c"))
	for name, tc := range map[string]struct {
		addon *addonv1beta1.ManagedClusterAddOn
		want  Configs
	}{
		"in no placement: the defaults":               {mca("none"), Configs{adcs: {ref("fleet")}, versions: {ref("av")}}},
		"placement without configs":                   {mca("in-a"), Configs{adcs: {ref("fleet")}, versions: {ref("av")}}},
		"placement's config overrides its type only":  {mca("in-b"), Configs{adcs: {ref("group-b")}, versions: {ref("av")}}},
		"the last placement holding the cluster wins": {mca("in-a-and-b"), Configs{adcs: {ref("group-b")}, versions: {ref("av")}}},
		"later placement, both types":                 {mca("in-b-and-c"), Configs{adcs: {ref("group-c")}, versions: {ref("av-c")}}},
		"the add-on's spec overrides the placement's, per type": {mca("in-b-and-c", config(adcs, "own"), config(adcs, "own-2")),
			Configs{adcs: {ref("own"), ref("own-2")}, versions: {ref("av-c")}}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := r.Assigned(context.Background(), cma(), tc.addon)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for gr, want := range tc.want {
				if len(got[gr]) != len(want) {
					t.Fatalf("%v: got %v, want %v", gr, got[gr], want)
				}
				for i := range want {
					if got[gr][i] != want[i] {
						t.Errorf("%v: got %v, want %v", gr, got[gr], want)
					}
				}
			}
		})
	}
}

func TestManualStrategyIgnoresPlacements(t *testing.T) {
	c := cma()
	c.Spec.InstallStrategy.Type = addonv1beta1.AddonInstallStrategyManual
	got, err := resolver(t, decision("b", "in-b")).Assigned(context.Background(), c, mca("in-b"))
	if err != nil {
		t.Fatal(err)
	}
	if got[adcs][0] != ref("fleet") {
		t.Errorf("got %v, want the default", got[adcs])
	}
}

func TestVerify(t *testing.T) {
	r := resolver(t, cma(), decision("a", "cluster-a"), decision("b", "cluster-b"))
	ctx := context.Background()
	for name, tc := range map[string]struct {
		addon *addonv1beta1.ManagedClusterAddOn
		ok    bool
	}{
		"as OCM resolves it":                       {desire(mca("cluster-a"), config(adcs, "fleet"), config(versions, "av")), true},
		"its group's config":                       {desire(mca("cluster-b"), config(adcs, "group-b"), config(versions, "av")), true},
		"nothing resolved yet":                     {mca("cluster-a"), true},
		"another group's principal":                {desire(mca("cluster-a"), config(adcs, "group-b")), false},
		"back to the fleet's from its group":       {desire(mca("cluster-b"), config(adcs, "fleet")), false},
		"a config of no group":                     {desire(mca("cluster-a"), config(adcs, "made-up")), false},
		"another namespace":                        {desire(mca("cluster-a"), addonv1beta1.AddOnConfig{ConfigGroupResource: adcs, ConfigReferent: addonv1beta1.ConfigReferent{Namespace: "other", Name: "fleet"}}), false},
		"a type the hub assigns nothing of":        {desire(mca("cluster-a"), config(addonv1beta1.ConfigGroupResource{Group: "x", Resource: "y"}, "fleet")), false},
		"a customisation where the fleet has none": {desire(mca("cluster-a"), config(adcs, "fleet"), config(customizations, "mine")), false},
		"an AgentVersion of another group":         {desire(mca("cluster-a"), config(adcs, "fleet"), config(versions, "av-c")), false},
	} {
		t.Run(name, func(t *testing.T) {
			err := r.Verify(ctx, tc.addon)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrNotAssigned) {
				t.Fatalf("got %v, want ErrNotAssigned", err)
			}
			if err != nil {
				t.Log(err)
			}
		})
	}
}

func TestVerifyWithoutTheClusterManagementAddOn(t *testing.T) {
	err := resolver(t).Verify(context.Background(), mca("cluster-a"))
	if err == nil || errors.Is(err, ErrNotAssigned) {
		t.Fatalf("got %v, want the read error", err)
	}
}
