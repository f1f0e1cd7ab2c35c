// Package addon builds the argocd-agent AgentAddon for addon-framework: per cluster, the plan
// resolved once (pkg/plan) rendered into the embedded manifests (package manifests), with its
// content keys (pkg/delivered) and AgentCustomization; a CustomSigner registration; and a health
// prober that follows the agent Deployment's availability.
//
// The manager and the render command both get their add-on from New, so render prints exactly
// what the manager delivers.
package addon

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"
	"open-cluster-management.io/addon-framework/pkg/addonmanager/constants"
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
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/delivered"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/plan"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
)

// CA is the hub CA as the add-on needs it.
type CA interface {
	plan.CA
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
	// ConfigGetter reads the AddOnDeploymentConfig a ManagedClusterAddOn's status refers to, and
	// its spec hash; CachedConfigGetter is one.
	ConfigGetter plan.ConfigSource[*addonv1beta1.AddOnDeploymentConfig]
	// CA gives the trust bundle delivered to agents and the signing CA they register for.
	CA CA
	// Subject is the certificate subject style agents register with.
	Subject identity.SubjectStyle
	// Reporter, if set, reports configuration errors and recoveries.
	Reporter ConfigReporter
	// Records, if set, are read for the cluster's revocation (pkg/certificates/issued): nothing
	// is rendered for a revoked cluster. The render command has none.
	Records *issued.Records
	// Principal, if set, discovers the principal's address for clusters whose
	// AddOnDeploymentConfig gives none (pkg/principal). Without it (the render command) the
	// address is required.
	Principal func(context.Context) (principal.Endpoint, error)
	// AgentVersions, if set, reads the AgentVersion OCM resolved for each cluster, whose image
	// the agent runs unless its AddOnDeploymentConfig pins agentImage (pkg/agentversion).
	// Without it (the render command) the agent gets the default image.
	AgentVersions plan.ConfigSource[agentversion.Config]
	// PrincipalImage, if set, reads the image the principal runs now, and where it was read,
	// for the AgentVersion condition.
	PrincipalImage func(context.Context) (image, from string, err error)
	// Customizations, if set, reads the AgentCustomization OCM resolved for each cluster, which
	// adds to what is delivered (pkg/customization).
	Customizations plan.ConfigSource[*customization.Customization]
	// Assignment, if set, checks that the configs a ManagedClusterAddOn's status names are the
	// ones the hub assigns to the cluster (pkg/assignment). The render command has none.
	Assignment plan.Assignment
	// Works, if set, reads a cluster's deploy ManifestWorks when its render is held back, so
	// that a renewed certificate still reaches its agent (deliverRenewal). Uncached: it is read
	// only then.
	Works client.Reader
}

// New builds the add-on.
func New(o Options) (agent.AgentAddon, error) {
	if o.ConfigGetter == nil || o.CA == nil {
		return nil, errors.New("addon: ConfigGetter and CA are required")
	}
	if _, err := identity.ParseSubjectStyle(string(o.Subject)); err != nil {
		return nil, err
	}
	a := &agentAddon{reporter: o.Reporter, works: o.Works, ca: o.CA, resolver: &plan.Resolver{
		DeploymentConfigs: o.ConfigGetter, CA: o.CA, Records: o.Records, Assignment: o.Assignment,
		AgentVersions: o.AgentVersions, Customizations: o.Customizations,
		Principal: o.Principal, PrincipalImages: o.PrincipalImage,
	}}
	configGVRs := []schema.GroupVersionResource{utils.AddOnDeploymentConfigGVR}
	if o.AgentVersions != nil {
		configGVRs = append(configGVRs, agentversion.GVR)
	}
	if o.Customizations != nil {
		configGVRs = append(configGVRs, customization.GVR)
	}
	a.options = agent.AgentAddonOptions{
		AddonName:           identity.AddonName,
		SupportedConfigGVRs: configGVRs,
		HostedModeInfoFunc:  constants.GetHostedModeInfo,
		// addon-framework's registration and agent controllers ask for the namespace outside any
		// render: the cluster's (assigned) AddOnDeploymentConfig says it.
		AgentInstallNamespace: func(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn) (string, error) {
			if o.Assignment != nil {
				if err := o.Assignment.Verify(ctx, addon); err != nil {
					return "", err
				}
			}
			adc, err := utils.GetDesiredAddOnDeploymentConfig(addon, configGetter{o.ConfigGetter})
			if err != nil {
				return "", fmt.Errorf("reading AddOnDeploymentConfig: %w", err)
			}
			cfg, err := agentconfig.FromDeploymentConfig(adc)
			return cfg.Namespace, err
		},
		Registration: &agent.RegistrationOption{
			Configurations: func(ctx context.Context, cluster *clusterv1.ManagedCluster, _ *addonv1beta1.ManagedClusterAddOn) ([]agent.RegistrationConfig, error) {
				caID, err := o.CA.ID(ctx)
				if err != nil {
					return nil, err
				}
				return []agent.RegistrationConfig{o.Subject.For(cluster.Name, caID).Registration()}, nil
			},
			// CSRApproveCheck and CSRSign stay nil: the framework's approver checks no signer name
			// and never denies, so pkg/certificates approves, denies and signs instead.
		},
		HealthProber: &agent.HealthProber{Type: agent.HealthProberTypeDeploymentAvailability},
	}
	return a, nil
}

// configGetter is a ConfigSource as addon-framework's AddOnDeploymentConfigGetter.
type configGetter struct {
	plan.ConfigSource[*addonv1beta1.AddOnDeploymentConfig]
}

func (g configGetter) Get(ctx context.Context, namespace, name string) (*addonv1beta1.AddOnDeploymentConfig, error) {
	adc, _, err := g.GetWithSpecHash(ctx, namespace, name)
	return adc, err
}

// agentAddon keeps a bad config or template from reaching a cluster or crashing the manager: an
// error from Manifests leaves the cluster's existing ManifestWork untouched.
type agentAddon struct {
	options  agent.AgentAddonOptions
	resolver *plan.Resolver
	reporter ConfigReporter
	works    client.Reader
	ca       CA
}

func (a *agentAddon) GetAgentAddonOptions() agent.AgentAddonOptions {
	return a.options
}

// Manifests renders one cluster's agent: its plan resolved once, rendered, reported; and, for a
// render held back, the renewal its agent still needs.
func (a *agentAddon) Manifests(ctx context.Context, cluster *clusterv1.ManagedCluster,
	addon *addonv1beta1.ManagedClusterAddOn) (objects []runtime.Object, err error) {
	defer func() {
		if r := recover(); r != nil {
			klog.ErrorS(nil, "Rendering the agent manifests panicked", "cluster", cluster.Name, "panic", r, "stack", string(debug.Stack()))
			objects, err = nil, fmt.Errorf("rendering the agent manifests failed: %v", r)
		}
	}()
	p, err := a.resolver.Resolve(ctx, cluster, addon)
	switch {
	case errors.Is(err, plan.ErrRevoked), errors.Is(err, plan.ErrRevocationUnknown):
		// Nothing at all, not even a renewal: the hub alone decides, from a record it can read.
		return nil, err
	case errors.Is(err, plan.ErrNotConfigured):
		// OCM's addon-manager first resolves the add-on's configs into the ManagedClusterAddOn's
		// status and sets its Configured condition. Before that (a new cluster), a render would
		// read no config and report a valid fleet config as invalid, with a warning event, then
		// retry with backoff. Deliver nothing yet instead: OCM's status update triggers the next
		// render. A cluster a rollout has not reached (Configured=False) is rendered when it has
		// a resolved config: the render holds that config and still delivers renewals
		// (renewal.go), which addon-framework's ConfigCheckEnabled, skipping every
		// Configured=False, would stop.
		klog.InfoS("Waiting for OCM's addon-manager to resolve the add-on's configuration before rendering", "cluster", cluster.Name)
		return nil, nil
	case err == nil:
		objects, err = Render(p)
	}
	if a.reporter != nil {
		var fieldErr *agentconfig.FieldError
		switch {
		case errors.As(err, &fieldErr):
			a.reporter.Invalid(ctx, addon, fieldErr)
		case err == nil:
			a.reporter.Valid(ctx, addon, p.Principal, versionCondition(p.PrincipalImage, p.Image, p.Config.ImageSet, ""))
		}
	}
	if err != nil && a.works != nil {
		return a.deliverRenewal(ctx, cluster, addon, err)
	}
	if err != nil {
		return nil, err
	}
	return objects, nil
}

// Render renders p into the objects delivered to its cluster: the agent templates, the content
// keys its pod requires, and its AgentCustomization.
func Render(p *plan.Plan) ([]runtime.Object, error) {
	objects, err := manifests.RenderAgent(p.Values())
	if err != nil {
		return nil, fmt.Errorf("rendering the agent manifests: %w", err)
	}
	if err := delivered.RequireOwnContent(objects); err != nil {
		return nil, err
	}
	if p.Customization == nil {
		return objects, nil
	}
	// After the content keys, which it must not change (nor can: it only adds).
	return p.Customization.Apply(objects)
}

// held says whether err holds the cluster's render back on purpose: its agent keeps what it runs.
func held(err error) bool {
	return errors.Is(err, plan.ErrRolloutPending) || errors.Is(err, assignment.ErrNotAssigned)
}
