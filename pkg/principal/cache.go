package principal

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
)

// ServiceCache is what the manager caches of Services for Discovery: the principal's, no other.
func ServiceCache(key types.NamespacedName) (client.Object, cache.ByObject) {
	return &corev1.Service{}, hubclient.OnlyObject(key)
}
