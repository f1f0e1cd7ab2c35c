package plan

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentversion"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/customization"
)

// configType is a config type a render reads from the ManagedClusterAddOn's status.
type configType = schema.GroupResource

var (
	deploymentConfigType = utils.AddOnDeploymentConfigGVR.GroupResource()
	agentVersionType     = schema.GroupResource{Group: agentversion.Group, Resource: agentversion.Resource}
	customizationType    = schema.GroupResource{Group: customization.Group, Resource: customization.Resource}
)

// ErrRolloutPending says a cluster's config has changed but OCM's rollout has not reached the
// cluster yet.
var ErrRolloutPending = errors.New("rollout pending")

// configRead reads one config object of a type, as any, and its spec hash.
type configRead func(ctx context.Context, namespace, name string) (any, string, error)

func reader[T any](src ConfigSource[T]) configRead {
	return func(ctx context.Context, namespace, name string) (any, string, error) {
		return src.GetWithSpecHash(ctx, namespace, name)
	}
}

// configs are the configs a render uses, each read once: per type, the object of the first
// reference of that type in the add-on's status (addon-framework's rule).
type configs struct {
	objects map[configType]any
	// customizationErr is the AgentCustomization's *agentconfig.FieldError, reported after the
	// AddOnDeploymentConfig's fields; later is an error of the first references that is no
	// gate's, reported after them (as addon-framework's lookup did).
	customizationErr, later error
}

// readConfigs reads every config the add-on's status names, of the types the resolver reads,
// once, and checks each against its rollout gate: a config object holds only its newest spec,
// and addon-framework re-renders a cluster for many reasons (its status changes, a resync every
// 10 minutes), each time reading the newest spec. While a rollout has not reached the cluster,
// its desired spec hash still names the older spec; rendering the newest would skip the
// ClusterManagementAddOn's rollout strategy. ErrRolloutPending makes addon-framework keep the
// cluster's ManifestWork as it is until OCM moves the cluster on (and retry, which also covers
// a cache that has not seen the config change yet).
//
// A reference with no desired spec hash is not gated: an AddOnDeploymentConfig's is an error,
// as addon-framework's GetDesiredAddOnDeploymentConfig has it; an AgentVersion or
// AgentCustomization it names is read as it is (addon-framework leaves the hash unset while the
// object is missing, which the read then says).
func (r *Resolver) readConfigs(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn) (configs, error) {
	reads := map[configType]configRead{deploymentConfigType: reader(r.DeploymentConfigs)}
	if r.AgentVersions != nil {
		reads[agentVersionType] = reader(r.AgentVersions)
	}
	if r.Customizations != nil {
		reads[customizationType] = reader(r.Customizations)
	}
	out := configs{objects: map[configType]any{}}
	seen := map[configType]bool{}
	for _, ref := range addon.Status.ConfigReferences {
		t := configType{Group: ref.Group, Resource: ref.Resource}
		read, ok := reads[t]
		if !ok {
			continue
		}
		first := !seen[t]
		seen[t] = true
		d := ref.DesiredConfig
		gated := d != nil && d.SpecHash != ""
		switch {
		case gated:
		case !first || d == nil && t != deploymentConfigType:
			continue
		case t == deploymentConfigType:
			if out.later == nil {
				out.later = fmt.Errorf("add-on %s/%s: the desired spec hash of its %s is empty", addon.Namespace, addon.Name, t.Resource)
			}
			continue
		case d.Name == "":
			continue
		}
		obj, hash, err := read(ctx, d.Namespace, d.Name)
		fieldErr := isFieldError(err) && hash != ""
		if err != nil && !fieldErr {
			err = fmt.Errorf("reading %s %s/%s: %w", t.Resource, d.Namespace, d.Name, err)
			if gated {
				return configs{}, err
			}
			if out.later == nil {
				out.later = err
			}
			continue
		}
		if gated && hash != d.SpecHash {
			return configs{}, fmt.Errorf("%w: %s %s/%s is now at spec hash %.12s, and OCM's rollout has cluster %s on %.12s; its ManifestWork stays as it is until the rollout reaches it",
				ErrRolloutPending, t.Resource, d.Namespace, d.Name, hash, addon.Namespace, d.SpecHash)
		}
		if !first {
			continue
		}
		if fieldErr {
			out.customizationErr = err
			continue
		}
		out.objects[t] = obj
	}
	return out, nil
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
