package addon

import (
	"bytes"
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/delivered"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/plan"
)

// deliverRenewal is what the manager delivers while a cluster's render is held back (renderErr):
// its config rollout has not reached it, its config is invalid, or the CA secret is unusable.
// The cluster keeps the configuration it runs, which its deploy ManifestWorks hold, but what the
// hub alone decides must still reach it: the client certificate the spoke holds now (each
// renewal rolls the agent, which reads its certificate only at start-up) and, when the CA is
// usable, the trust bundle of a CA rollover. Without this a rollout paused for longer than a
// certificate's remaining life, or one bad config value, would leave agents on expiring
// certificates.
//
// It returns the last works' objects with those two brought up to date; or renderErr when they
// are already up to date or there is no work yet.
func (a *agentAddon) deliverRenewal(ctx context.Context, cluster *clusterv1.ManagedCluster, addon *addonv1beta1.ManagedClusterAddOn, renderErr error) ([]runtime.Object, error) {
	renewal, image, err := a.renewal(ctx, cluster, addon)
	if a.reporter != nil && held(renderErr) && image != "" {
		// The agent keeps the image it was delivered; the principal's is read once for this.
		var pi *plan.PrincipalImage
		if a.resolver.PrincipalImages != nil {
			img, from, err := a.resolver.PrincipalImages(ctx)
			pi = &plan.PrincipalImage{Image: img, From: from, Err: err}
		}
		a.reporter.Held(ctx, addon, versionCondition(pi, image, false, renderErr.Error()))
	}
	if err != nil {
		return nil, fmt.Errorf("%w; and the renewal could not be delivered on the last configuration: %v", renderErr, err)
	}
	if renewal == nil {
		return nil, renderErr
	}
	klog.InfoS("Delivering the agent's renewed certificate or trust bundle on its last configuration", "cluster", cluster.Name, "held", renderErr.Error())
	return renewal, nil
}

// renewal returns the objects of cluster's deploy ManifestWorks with the client certificate and
// the trust bundle brought up to date, or nil if they are (or there is no work); and the agent
// image they deliver.
func (a *agentAddon) renewal(ctx context.Context, cluster *clusterv1.ManagedCluster, addon *addonv1beta1.ManagedClusterAddOn) (renewal []runtime.Object, image string, err error) {
	works, err := delivered.ReadWorks(ctx, a.works, cluster.Name)
	if err != nil || len(works) == 0 {
		return nil, "", err
	}
	objects, err := works.Objects()
	if err != nil {
		return nil, "", err
	}
	agent := delivered.Find(objects)
	if agent.Deployment == nil {
		return nil, "", fmt.Errorf("the ManifestWork of cluster %s has no Deployment %s", cluster.Name, identity.AgentName)
	}
	image = agent.Image()
	changed := false
	if want := delivered.CertificateDigest(plan.CertificateOnSpoke(addon)); agent.Certificate() != want {
		template := &agent.Deployment.Spec.Template
		if template.Annotations == nil {
			template.Annotations = map[string]string{}
		}
		template.Annotations[delivered.ClientCertificateAnnotation] = want
		changed = true
	}
	// A CA that cannot be read now leaves the bundle as delivered.
	if bundle, err := a.ca.Bundle(ctx); err == nil && len(bundle) > 0 && agent.CASecret != nil && !bytes.Equal(agent.CASecret.Data[delivered.CABundleKey], bundle) {
		if agent.CASecret.Data == nil {
			agent.CASecret.Data = map[string][]byte{}
		}
		agent.CASecret.Data[delivered.CABundleKey] = bundle
		changed = true
	}
	if !changed {
		return nil, image, nil
	}
	// The Secret's content key follows its new bundle, and with it the pod template.
	if err := delivered.RequireOwnContent(objects); err != nil {
		return nil, image, err
	}
	return objects, image, nil
}
