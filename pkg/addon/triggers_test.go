package addon

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
)

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
