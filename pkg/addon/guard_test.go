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

func TestRenderPanicBecomesAnError(t *testing.T) {
	g := &guardedAddon{inner: panickingAddon{}}
	objs, err := g.Manifests(context.Background(), &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}}, &addonv1beta1.ManagedClusterAddOn{})
	if err == nil || !strings.Contains(err.Error(), "executing") || objs != nil {
		t.Fatalf("want the panic as an error and no objects, got %v, %v", objs, err)
	}
}
