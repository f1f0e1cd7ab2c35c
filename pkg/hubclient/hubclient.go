// Package hubclient builds clients of the OCM hub for the add-on's commands: one scheme with
// every type they read, one way to load the hub kubeconfig, and the hub objects every command
// names the same way (the CA secret).
package hubclient

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Scheme holds Kubernetes' types and the OCM types the add-on reads.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, clusterv1.Install, clusterv1beta1.Install, addonv1beta1.Install, workv1.Install} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// DefaultCASecret is the hub secret (NAMESPACE/NAME) of the CA the principal trusts, where
// `argocd-agentctl pki init` creates it.
const DefaultCASecret = "argocd/argocd-agent-ca"

// CASecretKey parses a --ca-secret value, NAMESPACE/NAME.
func CASecretKey(ref string) (types.NamespacedName, error) {
	ns, name, ok := strings.Cut(ref, "/")
	if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return types.NamespacedName{}, fmt.Errorf("--ca-secret %q: want NAMESPACE/NAME", ref)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

// AddKubeconfigFlag binds --kubeconfig, what Config loads, to kubeconfig.
func AddKubeconfigFlag(fs *pflag.FlagSet, kubeconfig *string) {
	fs.StringVar(kubeconfig, "kubeconfig", *kubeconfig,
		"Kubeconfig of the hub; empty means $KUBECONFIG, else ~/.kube/config, else the in-cluster configuration.")
}

// Config returns the hub's rest config: a copy of cfg if set (tests), else the kubeconfig file
// if given, else $KUBECONFIG, the default kubeconfig, or the in-cluster configuration.
func Config(kubeconfig string, cfg *rest.Config) (*rest.Config, error) {
	if cfg != nil {
		return rest.CopyConfig(cfg), nil
	}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig, Precedence: clientcmd.NewDefaultClientConfigLoadingRules().Precedence},
		&clientcmd.ConfigOverrides{})
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the hub kubeconfig: %w", err)
	}
	return cfg, nil
}

// New returns a client of the hub, from the config Config returns.
func New(kubeconfig string, cfg *rest.Config) (client.Client, error) {
	cfg, err := Config(kubeconfig, cfg)
	if err != nil {
		return nil, err
	}
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}

// OnlyObject is a cache that holds one object of its type, key, and no other: what the manager
// caches of the CA secret, the principal's Service and its Deployment.
func OnlyObject(key types.NamespacedName) cache.ByObject {
	return cache.ByObject{
		Namespaces: map[string]cache.Config{key.Namespace: {}},
		Field:      fields.OneTermEqualSelector("metadata.name", key.Name),
	}
}
