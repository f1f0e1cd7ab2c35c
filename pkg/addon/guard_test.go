package addon

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"open-cluster-management.io/addon-framework/pkg/agent"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
)

// panickingAddon behaves as addon-framework's template add-on does on a template error.
type panickingAddon struct{}

func (panickingAddon) Manifests(context.Context, *clusterv1.ManagedCluster, *addonv1beta1.ManagedClusterAddOn) ([]runtime.Object, error) {
	panic("template: deployment.yaml:12: executing \"deployment.yaml\" at <.Missing>: nil pointer")
}
func (panickingAddon) GetAgentAddonOptions() agent.AgentAddonOptions {
	return agent.AgentAddonOptions{}
}

// configured is the condition OCM's addon-manager sets once it has resolved the add-on's configs.
var configured = metav1.Condition{Type: addonv1beta1.ManagedClusterAddOnConditionConfigured, Status: metav1.ConditionTrue, Reason: "ConfigurationsConfigured"}

func TestRenderPanicBecomesAnError(t *testing.T) {
	g := &guardedAddon{inner: panickingAddon{}}
	objs, err := g.Manifests(context.Background(), &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}},
		&addonv1beta1.ManagedClusterAddOn{Status: addonv1beta1.ManagedClusterAddOnStatus{Conditions: []metav1.Condition{configured}}})
	if err == nil || !strings.Contains(err.Error(), "executing") || objs != nil {
		t.Fatalf("want the panic as an error and no objects, got %v, %v", objs, err)
	}
}

// Before OCM has resolved the configs (no Configured condition yet), nothing is rendered: no
// invalid-config report, no error and its backoff, no objects.
func TestNothingRenderedBeforeOCMResolvesTheConfig(t *testing.T) {
	g := &guardedAddon{inner: panickingAddon{}}
	objs, err := g.Manifests(context.Background(), &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}}, &addonv1beta1.ManagedClusterAddOn{})
	if err != nil || objs != nil {
		t.Fatalf("want no render before the Configured condition, got %v, %v", objs, err)
	}
}

func TestConfigResolved(t *testing.T) {
	notConfigured := metav1.Condition{Type: addonv1beta1.ManagedClusterAddOnConditionConfigured, Status: metav1.ConditionFalse, Reason: "ConfigurationsNotConfigured"}
	desired := []addonv1beta1.ConfigReference{{DesiredConfig: &addonv1beta1.ConfigSpecHash{SpecHash: "h"}}}
	for _, tc := range []struct {
		name   string
		status addonv1beta1.ManagedClusterAddOnStatus
		want   bool
	}{
		{"new: no condition", addonv1beta1.ManagedClusterAddOnStatus{}, false},
		{"configured", addonv1beta1.ManagedClusterAddOnStatus{Conditions: []metav1.Condition{configured}}, true},
		{"new, outside the rollout batch", addonv1beta1.ManagedClusterAddOnStatus{Conditions: []metav1.Condition{notConfigured}}, false},
		{"ran before, rollout pending", addonv1beta1.ManagedClusterAddOnStatus{Conditions: []metav1.Condition{notConfigured}, ConfigReferences: desired}, true},
	} {
		if got := configResolved(&addonv1beta1.ManagedClusterAddOn{Status: tc.status}); got != tc.want {
			t.Errorf("%s: configResolved = %v, want %v", tc.name, got, tc.want)
		}
	}
}
