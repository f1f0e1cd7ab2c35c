package plan

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentversion"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/customization"
)

// configType is a config type a render reads from the ManagedClusterAddOn's status.
type configType struct {
	group, resource string
	// hashRequired: a reference with no desired spec hash is an error, as addon-framework's
	// GetDesiredAddOnDeploymentConfig has it; for the others it names nothing yet.
	hashRequired bool
}

var (
	deploymentConfigType = configType{group: utils.AddOnDeploymentConfigGVR.Group, resource: utils.AddOnDeploymentConfigGVR.Resource, hashRequired: true}
	agentVersionType     = configType{group: agentversion.Group, resource: agentversion.Resource}
	customizationType    = configType{group: customization.Group, resource: customization.Resource}
)

// ErrRolloutPending says a cluster's config has changed but OCM's rollout has not reached the
// cluster yet.
var ErrRolloutPending = errors.New("rollout pending")

// desired reads the config of type t that the add-on's status names as desired, once, and checks
// that it is, as it is now, the one OCM wants on this cluster; found is false when the status
// names none. A config object holds only its newest spec, and addon-framework re-renders a
// cluster for many reasons (its status changes, a resync every 10 minutes), each time reading
// the newest spec. While a rollout has not reached the cluster, its desired spec hash still
// names the older spec; rendering the newest would skip the ClusterManagementAddOn's rollout
// strategy. ErrRolloutPending makes addon-framework keep the cluster's ManifestWork as it is
// until OCM moves the cluster on (and retry, which also covers a cache that has not seen the
// config change yet). A *agentconfig.FieldError from src comes back with the object's hash
// checked: the caller reports the field.
func desired[T any](ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn, t configType, src ConfigSource[T]) (obj T, found bool, err error) {
	ok, ref := utils.GetAddOnConfigRef(addon.Status.ConfigReferences, t.group, t.resource)
	if !ok {
		return obj, false, nil
	}
	d := ref.DesiredConfig
	if d == nil || d.SpecHash == "" {
		if t.hashRequired {
			return obj, false, fmt.Errorf("add-on %s/%s: the desired spec hash of its %s is empty", addon.Namespace, addon.Name, t.resource)
		}
		return obj, false, nil
	}
	if d.Name == "" {
		return obj, false, nil
	}
	obj, hash, err := src.GetWithSpecHash(ctx, d.Namespace, d.Name)
	if err != nil && !(isFieldError(err) && hash != "") {
		return obj, false, fmt.Errorf("reading %s %s/%s: %w", t.resource, d.Namespace, d.Name, err)
	}
	if hash != d.SpecHash {
		var zero T
		return zero, false, fmt.Errorf("%w: %s %s/%s is now at spec hash %.12s, and OCM's rollout has cluster %s on %.12s; its ManifestWork stays as it is until the rollout reaches it",
			ErrRolloutPending, t.resource, d.Namespace, d.Name, hash, addon.Namespace, d.SpecHash)
	}
	return obj, true, err
}

// configResolved: OCM has set Configured=True, or set the condition at all while the status
// already names a desired config (a rollout pending on a cluster that has run before). A new
// cluster outside the current rollout batch gets Configured=False with no config yet.
func configResolved(mca *addonv1beta1.ManagedClusterAddOn) bool {
	c := meta.FindStatusCondition(mca.Status.Conditions, addonv1beta1.ManagedClusterAddOnConditionConfigured)
	if c == nil {
		return false
	}
	if c.Status == metav1.ConditionTrue {
		return true
	}
	return slices.ContainsFunc(mca.Status.ConfigReferences, func(r addonv1beta1.ConfigReference) bool {
		return r.DesiredConfig != nil && r.DesiredConfig.SpecHash != ""
	})
}

// ConditionClusterCertificateRotated is the condition OCM's registration agent sets on the
// ManagedClusterAddOn each time it stores a newly signed client certificate on the spoke.
const ConditionClusterCertificateRotated = "ClusterCertificateRotated"

// CertificateOnSpoke identifies the client certificate the spoke holds, from what OCM's
// registration agent reports when it stores one ("client certificate rotated starting from
// <notBefore> to <notAfter>"); empty before the first. The agent reads its certificate only at
// start-up, so a new value rolls its pod: exactly once per renewal, long before the old
// certificate expires (OCM renews with 20-25 % of the lifetime left). The agent reports the
// condition just before it writes the secret; the new pod reads the secret when it starts,
// after the ManifestWork round trip, well after that write.
func CertificateOnSpoke(addon *addonv1beta1.ManagedClusterAddOn) string {
	c := meta.FindStatusCondition(addon.Status.Conditions, ConditionClusterCertificateRotated)
	if c == nil || c.Status != metav1.ConditionTrue {
		return ""
	}
	return c.Message
}
