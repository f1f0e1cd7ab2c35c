package addon

import (
	"k8s.io/apimachinery/pkg/fields"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// Caches are what the manager's controller-runtime cache holds of the add-on's own API objects:
// this add-on's ManagedClusterAddOns and ClusterManagementAddOn, no other add-on's.
// (addon-framework keeps informers of its own, StartManager.)
func Caches() map[client.Object]cache.ByObject {
	own := fields.OneTermEqualSelector("metadata.name", identity.AddonName)
	return map[client.Object]cache.ByObject{
		&addonv1beta1.ManagedClusterAddOn{}:    {Field: own},
		&addonv1beta1.ClusterManagementAddOn{}: {Field: own},
	}
}
