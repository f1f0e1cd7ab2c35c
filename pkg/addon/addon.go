// Package addon builds the argocd-agent AgentAddon: addon-framework's template add-on over the
// embedded manifests, with values from pkg/agentconfig, a CustomSigner registration, and a
// health prober that follows the agent Deployment's availability.
//
// The manager and the render command both get their add-on from New, so render prints exactly
// what the manager delivers.
package addon

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"

	"github.com/distribution/reference"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"
	"open-cluster-management.io/addon-framework/pkg/addonfactory"
	"open-cluster-management.io/addon-framework/pkg/agent"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/manifests"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentversion"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/assignment"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/customization"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
)

// CA is the hub CA as the add-on needs it.
type CA interface {
	// Bundle returns the PEM CA certificates agents trust. An empty bundle with no error leaves
	// the CA secret out of the manifests (render without --ca); the manager always returns one
	// or an error.
	Bundle(ctx context.Context) ([]byte, error)
	// ID returns the ID of the signing CA, which every agent's certificate subject names
	// (identity.CAUnit), so that a new signing CA makes every agent ask for a new certificate.
	ID(ctx context.Context) (string, error)
}

// ConfigReporter records, on the ManagedClusterAddOn, whether its configuration rendered.
// The render command has none.
type ConfigReporter interface {
	Invalid(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn, err *agentconfig.FieldError)
	// Valid also says which principal the agent was given, and where that came from, and how
	// its version compares with the principal's (AgentVersion).
	Valid(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn, p principal.Endpoint, version metav1.Condition)
	// Held says, for a cluster whose rollout has not reached it, how the version of the agent
	// it keeps compares with the principal's.
	Held(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn, version metav1.Condition)
}

// Options configure the add-on.
type Options struct {
	// ConfigGetter reads the AddOnDeploymentConfig a ManagedClusterAddOn's status refers to.
	ConfigGetter utils.AddOnDeploymentConfigGetter
	// CA gives the trust bundle delivered to agents and the signing CA they register for.
	CA CA
	// Subject is the certificate subject style agents register with.
	Subject identity.SubjectStyle
	// Reporter, if set, reports configuration errors and recoveries.
	Reporter ConfigReporter
	// Records, if set, are read for the cluster's revocation (pkg/certificates/issued): nothing
	// is rendered for a revoked cluster, whatever its ManagedCluster's labels say. The render
	// command has none.
	Records *issued.Records
	// Principal, if set, discovers the principal's address for clusters whose
	// AddOnDeploymentConfig gives none (pkg/principal). Without it (the render command) the
	// address is required.
	Principal func(context.Context) (principal.Endpoint, error)
	// AgentVersions, if set, reads the AgentVersion OCM resolved for each cluster, whose image
	// the agent runs unless its AddOnDeploymentConfig pins agentImage (pkg/agentversion).
	// Without it (the render command) the agent gets the default image.
	AgentVersions *agentversion.Getter
	// PrincipalImage, if set, reads the image the principal runs now, and where it was read,
	// for the AgentVersion condition.
	PrincipalImage func(context.Context) (image, from string, err error)
	// Customizations, if set, reads the AgentCustomization OCM resolved for each cluster, which
	// adds to what is delivered (pkg/customization).
	Customizations Customizations
	// Assignment, if set, checks that the configs a ManagedClusterAddOn's status names are the
	// ones the hub assigns to the cluster (pkg/assignment): the status is the cluster's to
	// write too. A cluster whose status names another is held, like one a rollout has not
	// reached. The render command has none.
	Assignment Assignment
	// Works, if set, reads a cluster's deploy ManifestWorks when its render is held back, so
	// that a renewed certificate still reaches its agent (deliverRenewal). Uncached: it is read
	// only then.
	Works client.Reader
}

// Assignment checks a ManagedClusterAddOn's configs against the hub's; assignment.Resolver is
// one.
type Assignment interface {
	Verify(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn) error
}

// Customizations reads a cluster's AgentCustomization; customization.Getter is one.
type Customizations interface {
	// Desired returns the one the add-on's status names as desired, nil if none.
	Desired(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn) (*customization.Customization, error)
	// GetWithSpecHash reads one, and its spec hash as OCM computes it.
	GetWithSpecHash(ctx context.Context, namespace, name string) (*customization.Customization, string, error)
}

// New builds the add-on.
func New(o Options) (agent.AgentAddon, error) {
	if o.ConfigGetter == nil || o.CA == nil {
		return nil, errors.New("addon: ConfigGetter and CA are required")
	}
	if _, err := identity.ParseSubjectStyle(string(o.Subject)); err != nil {
		return nil, err
	}
	config := func(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn) (agentconfig.Config, error) {
		if o.Assignment != nil {
			// Before any config is read: every one the status names, of every type.
			if err := o.Assignment.Verify(ctx, addon); err != nil {
				return agentconfig.Config{}, err
			}
		}
		adc, err := utils.GetDesiredAddOnDeploymentConfig(addon, o.ConfigGetter)
		if err != nil {
			return agentconfig.Config{}, fmt.Errorf("reading AddOnDeploymentConfig: %w", err)
		}
		return agentconfig.FromDeploymentConfig(adc)
	}
	g := &guardedAddon{reporter: o.Reporter, records: o.Records, works: o.Works, ca: o.CA, principalImage: o.PrincipalImage, config: config,
		customizations: o.Customizations}
	hashers := specHashers(o)
	configGVRs := []schema.GroupVersionResource{utils.AddOnDeploymentConfigGVR}
	if o.AgentVersions != nil {
		configGVRs = append(configGVRs, agentversion.GVR)
	}
	if o.Customizations != nil {
		configGVRs = append(configGVRs, customization.GVR)
	}
	values := func(cluster *clusterv1.ManagedCluster, addon *addonv1beta1.ManagedClusterAddOn) (addonfactory.Values, error) {
		ctx := context.Background() // addonfactory passes values funcs no context
		if err := rolledOut(ctx, addon, hashers); err != nil {
			return nil, err
		}
		cfg, err := config(ctx, addon)
		if err != nil {
			return nil, err
		}
		if !cfg.ImageSet && o.AgentVersions != nil {
			av, ok, err := o.AgentVersions.Desired(ctx, addon)
			if err != nil {
				return nil, err
			}
			switch {
			case ok:
				if _, err := reference.ParseNormalizedNamed(av.Image); err != nil {
					return nil, fmt.Errorf("%s %s: spec.image %q is not an image reference: %w", agentversion.Kind, av.Key, av.Image, err)
				}
				cfg.Image = av.Image
			case o.PrincipalImage != nil:
				// No AgentVersion resolved for the cluster (yet): the principal's image as it is
				// now, which the AgentVersion holds too once the manager has caught up, so that
				// the reference appearing later rolls nothing; the default only without one.
				if image, _, err := o.PrincipalImage(ctx); err == nil {
					if _, err := reference.ParseNormalizedNamed(image); err == nil {
						cfg.Image = image
					}
				}
			}
		}
		if err := cfg.ResolvePrincipal(ctx, o.Principal); err != nil {
			return nil, err
		}
		bundle, err := o.CA.Bundle(ctx)
		if err != nil {
			return nil, err
		}
		v, err := cfg.Values(cluster, bundle, CertificateOnSpoke(addon))
		if err == nil {
			g.principals.Store(cluster.Name, cfg.Principal)
			g.images.Store(cluster.Name, cfg.Image)
		}
		return v, err
	}
	installNamespace := func(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn) (string, error) {
		cfg, err := config(ctx, addon)
		if err != nil {
			return "", err
		}
		return cfg.Namespace, nil
	}
	registration := &agent.RegistrationOption{
		Configurations: func(ctx context.Context, cluster *clusterv1.ManagedCluster, _ *addonv1beta1.ManagedClusterAddOn) ([]agent.RegistrationConfig, error) {
			caID, err := o.CA.ID(ctx)
			if err != nil {
				return nil, err
			}
			return []agent.RegistrationConfig{o.Subject.For(cluster.Name, caID).Registration()}, nil
		},
		// CSRApproveCheck and CSRSign stay nil: the framework's approver checks no signer name
		// and never denies, so pkg/certificates approves, denies and signs instead.
	}
	inner, err := addonfactory.NewAgentAddonFactory(identity.AddonName, manifests.AgentFS, manifests.AgentDir).
		WithConfigGVRs(configGVRs...).
		WithGetValuesFuncs(values).
		WithAgentInstallNamespace(installNamespace).
		WithAgentRegistrationOption(registration).
		WithAgentHealthProber(&agent.HealthProber{Type: agent.HealthProberTypeDeploymentAvailability}).
		BuildTemplateAgentAddon()
	if err != nil {
		return nil, fmt.Errorf("building the add-on from its templates: %w", err)
	}
	g.inner = inner
	return g, nil
}

// ErrRevoked says the cluster's agent is revoked: nothing is delivered to it.
var ErrRevoked = errors.New("agent revoked")

// SpecHashGetter gives a config's spec hash as OCM computes it; CachedConfigGetter is one.
type SpecHashGetter interface {
	GetWithSpecHash(ctx context.Context, namespace, name string) (*addonv1beta1.AddOnDeploymentConfig, string, error)
}

// specHash reads the spec hash of one config object of a type.
type specHash func(ctx context.Context, namespace, name string) (string, error)

// specHashers are the config types whose rollout rolledOut checks: AddOnDeploymentConfigs when
// the getter gives OCM's spec hash (not the render command's or unit tests' getters), and
// AgentVersions.
func specHashers(o Options) map[schema.GroupResource]specHash {
	out := map[schema.GroupResource]specHash{}
	if h, ok := o.ConfigGetter.(SpecHashGetter); ok {
		out[utils.AddOnDeploymentConfigGVR.GroupResource()] = func(ctx context.Context, namespace, name string) (string, error) {
			_, hash, err := h.GetWithSpecHash(ctx, namespace, name)
			return hash, err
		}
	}
	if o.AgentVersions != nil {
		out[agentversion.GVR.GroupResource()] = func(ctx context.Context, namespace, name string) (string, error) {
			_, hash, err := o.AgentVersions.GetWithSpecHash(ctx, namespace, name)
			return hash, err
		}
	}
	if o.Customizations != nil {
		out[customization.GVR.GroupResource()] = func(ctx context.Context, namespace, name string) (string, error) {
			_, hash, err := o.Customizations.GetWithSpecHash(ctx, namespace, name)
			var fieldErr *agentconfig.FieldError
			if errors.As(err, &fieldErr) {
				// Its hash is still known: the render reports the field.
				return hash, nil
			}
			return hash, err
		}
	}
	return out
}

// ErrRolloutPending says a cluster's config has changed but OCM's rollout has not reached the
// cluster yet.
var ErrRolloutPending = errors.New("rollout pending")

// rolledOut checks that each config as it is now is the one OCM wants on this cluster. A config
// object holds only its newest spec, and addon-framework re-renders a cluster for many reasons
// (its status changes, a resync every 10 minutes), each time reading the newest spec. While a
// rollout has not reached the cluster, its desired spec hash still names the older spec;
// rendering the newest would skip the ClusterManagementAddOn's rollout strategy. An error makes
// addon-framework keep the cluster's ManifestWork as it is until OCM moves the cluster on (and
// retry, which also covers a cache that has not seen the config change yet).
func rolledOut(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn, hashers map[schema.GroupResource]specHash) error {
	for _, ref := range addon.Status.ConfigReferences {
		hasher, ok := hashers[schema.GroupResource{Group: ref.Group, Resource: ref.Resource}]
		if !ok || ref.DesiredConfig == nil || ref.DesiredConfig.SpecHash == "" {
			continue // addon-framework's own config lookup says what is missing
		}
		hash, err := hasher(ctx, ref.DesiredConfig.Namespace, ref.DesiredConfig.Name)
		if err != nil {
			return fmt.Errorf("reading %s %s/%s: %w", ref.Resource, ref.DesiredConfig.Namespace, ref.DesiredConfig.Name, err)
		}
		if hash != ref.DesiredConfig.SpecHash {
			return fmt.Errorf("%w: %s %s/%s is now at spec hash %.12s, and OCM's rollout has cluster %s on %.12s; its ManifestWork stays as it is until the rollout reaches it",
				ErrRolloutPending, ref.Resource, ref.DesiredConfig.Namespace, ref.DesiredConfig.Name, hash, addon.Namespace, ref.DesiredConfig.SpecHash)
		}
	}
	return nil
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

// guardedAddon keeps a bad config or template from reaching a cluster or crashing the manager:
// addon-framework's template path panics on a render error, and an error from Manifests leaves
// the cluster's existing ManifestWork untouched.
type guardedAddon struct {
	inner    agent.AgentAddon
	reporter ConfigReporter
	records  *issued.Records
	works    client.Reader
	ca       CA
	// principals and images hold, per cluster name, the principal and the image its last
	// successful render gave the agent: the values func knows them, the reporter tells them.
	principals sync.Map
	images     sync.Map
	// principalImage reads the principal's image now; config reads a cluster's config.
	principalImage func(context.Context) (image, from string, err error)
	config         func(context.Context, *addonv1beta1.ManagedClusterAddOn) (agentconfig.Config, error)
	customizations Customizations
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

func (g *guardedAddon) GetAgentAddonOptions() agent.AgentAddonOptions {
	return g.inner.GetAgentAddonOptions()
}

func (g *guardedAddon) Manifests(ctx context.Context, cluster *clusterv1.ManagedCluster,
	addon *addonv1beta1.ManagedClusterAddOn) (objects []runtime.Object, err error) {
	defer func() {
		if r := recover(); r != nil {
			klog.ErrorS(nil, "Rendering the agent manifests panicked", "cluster", cluster.Name, "panic", r, "stack", string(debug.Stack()))
			objects, err = nil, fmt.Errorf("rendering the agent manifests failed: %v", r)
		}
	}()
	if g.records != nil {
		// The Placement drops a revoked cluster by its label, which the cluster itself may be
		// able to change (docs/design.md#trust-model): the record decides.
		r, err := g.records.Revocation(ctx, cluster.Name)
		if err != nil {
			return nil, err
		}
		if r != nil {
			return nil, fmt.Errorf("%w: cluster %s (%s); nothing is delivered to it until `argocd-agent-addon unrevoke %s`", ErrRevoked, cluster.Name, r.Reason, cluster.Name)
		}
	}
	// OCM's addon-manager first resolves the add-on's configs into the ManagedClusterAddOn's
	// status and sets its Configured condition. Before that (a new cluster), a render would
	// read no config and report a valid fleet config as invalid, with a warning event, then
	// retry with backoff. Deliver nothing yet instead: OCM's status update triggers the next
	// render. A cluster a rollout has not reached (Configured=False) is rendered when it has a
	// resolved config: the render holds that config and still delivers renewals (renewal.go),
	// which addon-framework's ConfigCheckEnabled, skipping every Configured=False, would stop.
	if !configResolved(addon) {
		klog.InfoS("Waiting for OCM's addon-manager to resolve the add-on's configuration before rendering", "cluster", cluster.Name)
		return nil, nil
	}
	objects, err = g.inner.Manifests(ctx, cluster, addon)
	if err == nil {
		err = requireOwnContent(objects)
	}
	if err == nil && g.customizations != nil {
		// After the content keys, which it must not change (nor can: it only adds).
		objects, err = customize(ctx, g.customizations, addon, objects)
	}
	if err != nil {
		objects = nil
	}
	if g.reporter != nil {
		var fieldErr *agentconfig.FieldError
		switch {
		case errors.As(err, &fieldErr):
			g.reporter.Invalid(ctx, addon, fieldErr)
		case err == nil:
			p, _ := g.principals.Load(cluster.Name)
			ep, _ := p.(principal.Endpoint)
			image, _ := g.images.Load(cluster.Name)
			s, _ := image.(string)
			g.reporter.Valid(ctx, addon, ep, g.versionCondition(ctx, addon, s, ""))
		}
	}
	if err != nil && g.works != nil {
		renewal, delivered, rerr := g.deliverRenewal(ctx, cluster, addon)
		held := errors.Is(err, ErrRolloutPending) || errors.Is(err, assignment.ErrNotAssigned)
		if g.reporter != nil && held && delivered != "" {
			g.reporter.Held(ctx, addon, g.versionCondition(ctx, addon, delivered, err.Error()))
		}
		if rerr != nil {
			return nil, fmt.Errorf("%w; and the renewal could not be delivered on the last configuration: %v", err, rerr)
		}
		if renewal != nil {
			klog.InfoS("Delivering the agent's renewed certificate or trust bundle on its last configuration", "cluster", cluster.Name, "held", err.Error())
			return renewal, nil
		}
	}
	return objects, err
}

// customize adds the cluster's AgentCustomization, if it has one, to the rendered objects.
func customize(ctx context.Context, c Customizations, addon *addonv1beta1.ManagedClusterAddOn, objects []runtime.Object) ([]runtime.Object, error) {
	cust, err := c.Desired(ctx, addon)
	if err != nil || cust == nil {
		return objects, err
	}
	return cust.Apply(objects)
}
