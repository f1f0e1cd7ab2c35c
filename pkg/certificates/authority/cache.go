package authority

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
)

// SecretCache is what the manager caches of Secrets for the CA: the CA secret key, no other
// (cluster secrets have a cache of their own, pkg/clustersecret).
func SecretCache(key types.NamespacedName) (client.Object, cache.ByObject) {
	return &corev1.Secret{}, hubclient.OnlyObject(key)
}
