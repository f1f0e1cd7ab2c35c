package agentversion

import (
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
)

// PrincipalCache is what the manager caches of Deployments: the principal's, whose image agents
// follow (and which pkg/hubpki rolls), no other.
func PrincipalCache(key types.NamespacedName) (client.Object, cache.ByObject) {
	return &appsv1.Deployment{}, hubclient.OnlyObject(key)
}
