package addon

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// panickingGetter panics as a bug in any step of a render would.
type panickingGetter struct{}

func (panickingGetter) GetWithSpecHash(context.Context, string, string) (*addonv1beta1.AddOnDeploymentConfig, string, error) {
	panic("runtime error: invalid memory address or nil pointer dereference")
}

type noCA struct{}

func (noCA) Bundle(context.Context) ([]byte, error) { return nil, nil }
func (noCA) ID(context.Context) (string, error)     { return "", nil }

// configured is the condition OCM's addon-manager sets once it has resolved the add-on's configs.
var configured = metav1.Condition{Type: addonv1beta1.ManagedClusterAddOnConditionConfigured, Status: metav1.ConditionTrue, Reason: "ConfigurationsConfigured"}

func newPanicking(t *testing.T) *agentAddon {
	t.Helper()
	a, err := New(Options{ConfigGetter: panickingGetter{}, CA: noCA{}, Subject: identity.SubjectClusterName})
	if err != nil {
		t.Fatal(err)
	}
	return a.(*agentAddon)
}

func TestRenderPanicBecomesAnError(t *testing.T) {
	mca := &addonv1beta1.ManagedClusterAddOn{Status: addonv1beta1.ManagedClusterAddOnStatus{
		Conditions: []metav1.Condition{configured},
		ConfigReferences: []addonv1beta1.ConfigReference{{
			ConfigGroupResource: addonv1beta1.ConfigGroupResource{Group: utils.AddOnDeploymentConfigGVR.Group, Resource: utils.AddOnDeploymentConfigGVR.Resource},
			DesiredConfig:       &addonv1beta1.ConfigSpecHash{ConfigReferent: addonv1beta1.ConfigReferent{Namespace: "ns", Name: "cfg"}, SpecHash: "h"},
		}},
	}}
	objs, err := newPanicking(t).Manifests(context.Background(), &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}}, mca)
	if err == nil || !strings.Contains(err.Error(), "nil pointer dereference") || objs != nil {
		t.Fatalf("want the panic as an error and no objects, got %v, %v", objs, err)
	}
}

// Before OCM has resolved the configs (no Configured condition yet), nothing is rendered: no
// invalid-config report, no error and its backoff, no objects, and no config read.
func TestNothingRenderedBeforeOCMResolvesTheConfig(t *testing.T) {
	objs, err := newPanicking(t).Manifests(context.Background(), &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}}, &addonv1beta1.ManagedClusterAddOn{})
	if err != nil || objs != nil {
		t.Fatalf("want no render before the Configured condition, got %v, %v", objs, err)
	}
}
