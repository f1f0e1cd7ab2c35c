// Package plan resolves, once per render, everything one cluster's agent is rendered from, in
// order: the revocation, OCM's resolution of the add-on's configs, the hub's assignment of them,
// the rollout gate over each config (each read once), the AddOnDeploymentConfig, the agent
// image, the principal, the CA bundle and the AgentCustomization. The result, a Plan, is what
// the template values, the status conditions and the render command read; nothing re-reads an
// input after it.
package plan

import (
	"context"
	"errors"
	"fmt"

	"github.com/distribution/reference"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentversion"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/customization"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
)

// Plan is everything one render of a cluster's agent is made from, resolved once. It is not
// changed after Resolve returns it.
type Plan struct {
	Cluster *clusterv1.ManagedCluster
	// Config is the cluster's AddOnDeploymentConfig, parsed and validated (defaults without one).
	Config agentconfig.Config
	// Image is the agent image the principal's version is compared with: the one Config pins,
	// else the cluster's AgentVersion's, else the principal's as it runs now, else the default.
	// PullImage is Image through the image mirrors, what the Deployment names.
	Image, PullImage string
	// PrincipalImage is the principal's image as read for this render, if the manager can read
	// it (not the render command).
	PrincipalImage *PrincipalImage
	// Principal is where the agent dials, and where that came from.
	Principal principal.Endpoint
	// CABundle is the PEM trust bundle the agent verifies the principal with; empty leaves the
	// CA Secret out (the render command without --ca).
	CABundle []byte
	// Customization is the cluster's AgentCustomization; nil if none.
	Customization *customization.Customization
	// Certificate is what OCM reports of the client certificate the spoke holds now
	// (CertificateOnSpoke).
	Certificate string
}

// PrincipalImage is one read of the image the principal runs.
type PrincipalImage struct {
	Image, From string
	Err         error
}

// CA gives the trust bundle delivered to agents.
type CA interface {
	// Bundle returns the PEM CA certificates agents trust. An empty bundle with no error leaves
	// the CA secret out of the manifests (render without --ca).
	Bundle(ctx context.Context) ([]byte, error)
}

// Assignment checks a ManagedClusterAddOn's configs against the hub's; assignment.Resolver is
// one.
type Assignment interface {
	Verify(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn) error
}

// ConfigSource reads one config object of a type and its spec hash as OCM computes it, from the
// same read.
type ConfigSource[T any] interface {
	GetWithSpecHash(ctx context.Context, namespace, name string) (T, string, error)
}

// Resolver resolves plans from its sources. The optional ones may be nil: the render command
// has no records, assignment, AgentVersions, principal discovery or principal image.
type Resolver struct {
	// DeploymentConfigs reads AddOnDeploymentConfigs (required).
	DeploymentConfigs ConfigSource[*addonv1beta1.AddOnDeploymentConfig]
	// CA gives the trust bundle (required).
	CA CA
	// Records, if set, are read for the cluster's revocation: nothing is rendered for a revoked
	// cluster, whatever its ManagedCluster's labels say.
	Records *issued.Records
	// Assignment, if set, checks that the configs a ManagedClusterAddOn's status names are the
	// ones the hub assigns to the cluster: the status is the cluster's to write too. A cluster
	// whose status names another is held, like one a rollout has not reached.
	Assignment Assignment
	// AgentVersions, if set, reads the AgentVersion OCM resolved for each cluster, whose image
	// the agent runs unless its AddOnDeploymentConfig pins agentImage.
	AgentVersions ConfigSource[agentversion.Config]
	// Customizations, if set, reads the AgentCustomization OCM resolved for each cluster.
	Customizations ConfigSource[*customization.Customization]
	// Principal, if set, discovers the principal's address for clusters whose
	// AddOnDeploymentConfig gives none. Without it the address is required.
	Principal func(context.Context) (principal.Endpoint, error)
	// PrincipalImages, if set, reads the image the principal runs now, and where it was read.
	PrincipalImages func(ctx context.Context) (image, from string, err error)
}

// Errors that stop a render before anything is resolved; nothing at all is delivered for them,
// not even a renewal.
var (
	// ErrRevoked says the cluster's agent is revoked: nothing is delivered to it.
	ErrRevoked = errors.New("agent revoked")
	// ErrRevocationUnknown says the cluster's record cannot be read: nothing may be decided
	// without it.
	ErrRevocationUnknown = errors.New("the cluster's revocation cannot be read")
	// ErrNotConfigured says OCM's addon-manager has not resolved the add-on's configs yet.
	ErrNotConfigured = errors.New("the add-on's configuration is not resolved by OCM yet")
)

// Resolve resolves the plan of one render of cluster's agent. A held render (a rollout that has
// not reached the cluster, a config the hub does not assign) and a bad config value are errors;
// a bad value is an *agentconfig.FieldError naming the field.
func (r *Resolver) Resolve(ctx context.Context, cluster *clusterv1.ManagedCluster, addon *addonv1beta1.ManagedClusterAddOn) (*Plan, error) {
	if r.Records != nil {
		// The Placement drops a revoked cluster by its label, which the cluster itself may be
		// able to change (docs/design.md#trust-model): the record decides.
		rev, err := r.Records.Revocation(ctx, cluster.Name)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRevocationUnknown, err)
		}
		if rev != nil {
			return nil, fmt.Errorf("%w: cluster %s (%s); nothing is delivered to it until `argocd-agent-addon unrevoke %s`", ErrRevoked, cluster.Name, rev.Reason, cluster.Name)
		}
	}
	if !configResolved(addon) {
		return nil, ErrNotConfigured
	}
	if r.Assignment != nil {
		// Before any config is read: every one the status names, of every type.
		if err := r.Assignment.Verify(ctx, addon); err != nil {
			return nil, err
		}
	}
	configs, err := r.readConfigs(ctx, addon)
	if err != nil {
		return nil, err
	}
	adc, _ := configs.objects[deploymentConfigType].(*addonv1beta1.AddOnDeploymentConfig)
	av, _ := configs.objects[agentVersionType].(agentversion.Config)
	cust, _ := configs.objects[customizationType].(*customization.Customization)

	p := &Plan{Cluster: cluster, Certificate: CertificateOnSpoke(addon)}
	if p.Config, err = agentconfig.FromDeploymentConfig(adc); err != nil {
		return nil, err
	}
	if configs.later != nil {
		return nil, configs.later
	}
	if r.PrincipalImages != nil {
		image, from, err := r.PrincipalImages(ctx)
		p.PrincipalImage = &PrincipalImage{Image: image, From: from, Err: err}
	}
	var version *agentversion.Config
	if _, ok := configs.objects[agentVersionType]; ok {
		version = &av
	}
	if p.Image, err = p.image(version); err != nil {
		return nil, err
	}
	if p.Principal, err = p.Config.Principal(ctx, r.Principal); err != nil {
		return nil, err
	}
	if p.CABundle, err = r.CA.Bundle(ctx); err != nil {
		return nil, err
	}
	if p.PullImage, err = p.Config.MirroredImage(cluster, p.Image); err != nil {
		return nil, err
	}
	if configs.customizationErr != nil {
		return nil, configs.customizationErr
	}
	p.Customization = cust
	return p, nil
}

// image chooses the agent image: the one the AddOnDeploymentConfig pins; else the cluster's
// AgentVersion's; else, with no AgentVersion resolved for the cluster yet, the principal's as it
// is now, which the AgentVersion holds too once the manager has caught up, so that the
// reference appearing later rolls nothing; the default only without either.
func (p *Plan) image(av *agentversion.Config) (string, error) {
	switch {
	case p.Config.ImageSet:
		return p.Config.Image, nil
	case av != nil:
		if av.Image == "" {
			return "", fmt.Errorf("%s %s has no spec.image", agentversion.Kind, av.Key)
		}
		if _, err := reference.ParseNormalizedNamed(av.Image); err != nil {
			return "", fmt.Errorf("%s %s: spec.image %q is not an image reference: %w", agentversion.Kind, av.Key, av.Image, err)
		}
		return av.Image, nil
	case p.PrincipalImage != nil && p.PrincipalImage.Err == nil:
		if _, err := reference.ParseNormalizedNamed(p.PrincipalImage.Image); err == nil {
			return p.PrincipalImage.Image, nil
		}
	}
	return p.Config.Image, nil
}

func isFieldError(err error) bool {
	var fieldErr *agentconfig.FieldError
	return errors.As(err, &fieldErr)
}
