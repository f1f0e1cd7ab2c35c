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
	got, hash, err := g.GetWithSpecHash(context.Background(), "ns", "cfg")
	if err != nil || got.Spec.AgentInstallNamespace != "gitops" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	// A changed spec has another hash. That it is OCM's hash shows on a real API server:
	// test/integration and test/e2e render only when it matches the desired spec hash.
	adc.Spec.AgentInstallNamespace = "other"
	g2 := CachedConfigGetter{Reader: fake.NewClientBuilder().WithScheme(scheme).WithObjects(adc).Build()}
	if _, hash2, err := g2.GetWithSpecHash(context.Background(), "ns", "cfg"); err != nil || hash2 == hash || hash == "" {
		t.Fatalf("hashes %q and %q for two specs (%v)", hash, hash2, err)
	}
	if _, err := g.Get(context.Background(), "ns", "missing"); err == nil {
		t.Fatal("a missing config was found")
	}
}
