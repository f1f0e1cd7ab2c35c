package addon

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CachedConfigGetter reads AddOnDeploymentConfigs from the manager's informer cache.
// addon-framework asks for a cluster's config about ten times per reconcile (values and the
// install namespace, from several controllers); with a client, each ask is a GET of an object
// the whole fleet usually shares (test/bench measured ten per cluster). It reads the
// unstructured form, as the API server serves it, so the spec hash it gives is the one OCM
// computes (the typed form adds empty structs the server leaves out).
type CachedConfigGetter struct {
	Reader client.Reader
}

// Get reads one config.
func (g CachedConfigGetter) Get(ctx context.Context, namespace, name string) (*addonv1beta1.AddOnDeploymentConfig, error) {
	adc, _, err := g.GetWithSpecHash(ctx, namespace, name)
	return adc, err
}

// GetWithSpecHash reads one config and its spec hash, from the same read.
func (g CachedConfigGetter) GetWithSpecHash(ctx context.Context, namespace, name string) (*addonv1beta1.AddOnDeploymentConfig, string, error) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(addonv1beta1.GroupVersion.String())
	u.SetKind("AddOnDeploymentConfig")
	if err := g.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, u); err != nil {
		return nil, "", err
	}
	hash, err := utils.GetSpecHash(u)
	if err != nil {
		return nil, "", err
	}
	adc := &addonv1beta1.AddOnDeploymentConfig{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, adc); err != nil {
		return nil, "", fmt.Errorf("AddOnDeploymentConfig %s/%s: %w", namespace, name, err)
	}
	return adc, hash, nil
}
