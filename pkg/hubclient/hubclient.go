// Package hubclient builds clients of the OCM hub for the add-on's commands: one scheme with
// every type they read, and one way to load the hub kubeconfig.
package hubclient

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Scheme holds Kubernetes' types and the OCM types the add-on reads.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, clusterv1.Install, addonv1beta1.Install, workv1.Install} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Config loads the hub's rest config: the kubeconfig file if given, else $KUBECONFIG, the
// default kubeconfig, or the in-cluster configuration.
func Config(kubeconfig string) (*rest.Config, error) {
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig, Precedence: clientcmd.NewDefaultClientConfigLoadingRules().Precedence},
		&clientcmd.ConfigOverrides{})
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the hub kubeconfig: %w", err)
	}
	return cfg, nil
}

// New returns a client of the hub: cfg if set, else the config Config(kubeconfig) loads.
func New(kubeconfig string, cfg *rest.Config) (client.Client, error) {
	if cfg == nil {
		var err error
		if cfg, err = Config(kubeconfig); err != nil {
			return nil, err
		}
	}
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}
