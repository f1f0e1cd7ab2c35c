package addon

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// caBundleKey is the key of the trust bundle in the agent's CA Secret.
const caBundleKey = "ca.crt"

// deliverRenewal is what the manager delivers while a cluster's render is held back: its
// config rollout has not reached it, its config is invalid, or the CA secret is unusable. The
// cluster keeps the configuration it runs, which its deploy ManifestWork holds, but what the hub
// alone decides must still reach it: the client certificate the spoke holds now (each renewal
// rolls the agent, which reads its certificate only at start-up) and, when the CA is usable, the
// trust bundle of a CA rollover. Without this a rollout paused for longer than a certificate's
// remaining life, or one bad config value, would leave agents on expiring certificates.
//
// It returns the last work's objects with those two brought up to date, or nil when they are
// already up to date (the held render's error then stands) or there is no work yet; and the
// agent image the work delivers.
func (g *guardedAddon) deliverRenewal(ctx context.Context, cluster *clusterv1.ManagedCluster, addon *addonv1beta1.ManagedClusterAddOn) (renewal []runtime.Object, image string, err error) {
	objects, err := lastDelivered(ctx, g.works, cluster.Name)
	if err != nil || objects == nil {
		return nil, "", err
	}
	deployment, _, caSecret := findAgentObjects(objects)
	if deployment == nil {
		return nil, "", fmt.Errorf("the ManifestWork of cluster %s has no Deployment %s", cluster.Name, identity.AgentName)
	}
	for _, c := range deployment.Spec.Template.Spec.Containers {
		if c.Name == identity.AgentName {
			image = c.Image
		}
	}
	changed := false
	want := agentconfig.CertificateDigest(CertificateOnSpoke(addon))
	if deployment.Spec.Template.Annotations[agentconfig.ClientCertificateAnnotation] != want {
		if deployment.Spec.Template.Annotations == nil {
			deployment.Spec.Template.Annotations = map[string]string{}
		}
		deployment.Spec.Template.Annotations[agentconfig.ClientCertificateAnnotation] = want
		changed = true
	}
	// A CA that cannot be read now leaves the bundle as delivered.
	if bundle, err := g.ca.Bundle(ctx); err == nil && len(bundle) > 0 && caSecret != nil && !bytes.Equal(caSecret.Data[caBundleKey], bundle) {
		caSecret.Data[caBundleKey] = bundle
		changed = true
	}
	if !changed {
		return nil, image, nil
	}
	// The Secret's content key follows its new bundle, and with it the pod template.
	if err := requireOwnContent(objects); err != nil {
		return nil, image, err
	}
	return objects, image, nil
}

// lastDelivered decodes the objects of cluster's deploy ManifestWorks (addon-framework's
// addon-<addon>-deploy-<n>, in order), or returns nil if there are none.
func lastDelivered(ctx context.Context, works client.Reader, cluster string) ([]runtime.Object, error) {
	list := &workv1.ManifestWorkList{}
	if err := works.List(ctx, list, client.InNamespace(cluster), client.MatchingLabels{addonv1beta1.AddonLabelKey: identity.AddonName}); err != nil {
		return nil, fmt.Errorf("reading the ManifestWorks of cluster %s: %w", cluster, err)
	}
	prefix := "addon-" + identity.AddonName + "-deploy-"
	items := slices.DeleteFunc(list.Items, func(w workv1.ManifestWork) bool { return !strings.HasPrefix(w.Name, prefix) })
	slices.SortFunc(items, func(a, b workv1.ManifestWork) int { return strings.Compare(a.Name, b.Name) })
	decoder := clientgoscheme.Codecs.UniversalDeserializer()
	var objects []runtime.Object
	for _, w := range items {
		for i, m := range w.Spec.Workload.Manifests {
			obj, _, err := decoder.Decode(m.Raw, nil, nil)
			if runtime.IsNotRegisteredError(err) {
				// A kind of no built-in API, an AgentCustomization's extra object (a PodMonitor):
				// delivered again as it is.
				u := &unstructured.Unstructured{}
				if err = u.UnmarshalJSON(m.Raw); err == nil {
					obj = u
				}
			}
			if err != nil {
				return nil, fmt.Errorf("ManifestWork %s/%s manifest %d: %w", w.Namespace, w.Name, i, err)
			}
			objects = append(objects, obj)
		}
	}
	return objects, nil
}
