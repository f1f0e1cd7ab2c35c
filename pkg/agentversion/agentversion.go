// Package agentversion keeps the agents' version equal to the principal's.
//
// argocd-agent refuses an agent whose version is not exactly the principal's, and the refused
// agent retries forever while its pod keeps running. The manager therefore copies the image of
// the principal Deployment on the hub into an AgentVersion object, which the
// ClusterManagementAddOn lists as a default config of the add-on. OCM then treats a new
// principal version like any other config change: it reaches the clusters through the
// ClusterManagementAddOn's rollout strategy, and each cluster's render waits until the rollout
// reaches it (pkg/plan). An agentImage in an AddOnDeploymentConfig pins the image instead.
//
// The principal Deployment is a hub object only hub administrators write; nothing a managed
// cluster can write is read here.
package agentversion

import (
	"context"
	"fmt"
	"strings"

	"github.com/distribution/reference"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"open-cluster-management.io/addon-framework/pkg/utils"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The AgentVersion config type (charts/argocd-agent-addon/crds).
const (
	Group    = "argocd-agent-addon.open-cluster-management.io"
	Version  = "v1alpha1"
	Kind     = "AgentVersion"
	Resource = "agentversions"
	// DefaultName is the AgentVersion the manager keeps, in its own namespace.
	DefaultName = "argocd-agent"
	// SourceAnnotation says, for people, where the manager read the image. Metadata is not part
	// of the config's spec hash, so it changes nothing on the clusters.
	SourceAnnotation = Group + "/source"
)

// GVR is the config type as ClusterManagementAddOns and addon-framework name it.
var GVR = schema.GroupVersionResource{Group: Group, Version: Version, Resource: Resource}

// GVK is its kind.
var GVK = schema.GroupVersionKind{Group: Group, Version: Version, Kind: Kind}

// PrincipalContainer is the principal's container in upstream's Deployment.
const PrincipalContainer = "argocd-agent-principal"

// PrincipalImage is the image of the principal's container: the one named as upstream names it,
// else the one started with upstream's "principal" command, else the only container.
func PrincipalImage(d *appsv1.Deployment) (string, error) {
	containers := d.Spec.Template.Spec.Containers
	for _, c := range containers {
		if c.Name == PrincipalContainer {
			return c.Image, nil
		}
	}
	for _, c := range containers {
		if len(c.Args) > 0 && c.Args[0] == "principal" {
			return c.Image, nil
		}
	}
	if len(containers) == 1 {
		return containers[0].Image, nil
	}
	return "", fmt.Errorf("the principal Deployment %s/%s has no container %s, none runs the principal command, and it has %d containers",
		d.Namespace, d.Name, PrincipalContainer, len(containers))
}

// ReadPrincipalImage reads the principal Deployment and returns its image and, for people,
// where it was read.
func ReadPrincipalImage(ctx context.Context, reader client.Reader, key types.NamespacedName) (image, from string, err error) {
	d := &appsv1.Deployment{}
	if err := reader.Get(ctx, key, d); err != nil {
		return "", "", fmt.Errorf("reading the principal Deployment %s: %w", key, err)
	}
	image, err = PrincipalImage(d)
	return image, "Deployment " + key.String(), err
}

// Of is the version an image reference names: its tag, else its digest, else "" (an untagged
// reference means latest, which says nothing about the version).
func Of(image string) string {
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return ""
	}
	if t, ok := ref.(reference.Tagged); ok {
		return t.Tag()
	}
	if d, ok := ref.(reference.Digested); ok {
		return d.Digest().String()
	}
	return ""
}

// Match compares an agent image with the principal's by the version each names: the same tag
// (a registry mirror changes the repository, not the version), or the same digest. known is
// false when either names no version, or one a tag and the other a digest.
func Match(agentImage, principalImage string) (match, known bool) {
	a, p := Of(agentImage), Of(principalImage)
	if a == "" || p == "" {
		return false, false
	}
	if strings.Contains(a, ":") != strings.Contains(p, ":") { // a digest against a tag
		return agentImage == principalImage, agentImage == principalImage
	}
	return a == p, true
}

// Config is one AgentVersion as a cluster's render uses it.
type Config struct {
	Key   types.NamespacedName
	Image string
	// Source is where the manager read the image (SourceAnnotation).
	Source string
}

// Getter reads a cluster's AgentVersion, unstructured as the API server serves it, so that its
// spec hash is the one addon-framework gives OCM.
type Getter struct {
	Reader client.Reader
}

// GetWithSpecHash reads one AgentVersion and its spec hash.
func (g Getter) GetWithSpecHash(ctx context.Context, namespace, name string) (Config, string, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(GVK)
	if err := g.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, u); err != nil {
		return Config{}, "", err
	}
	hash, err := utils.GetSpecHash(u)
	if err != nil {
		return Config{}, "", err
	}
	image, _, err := unstructured.NestedString(u.Object, "spec", "image")
	if err != nil {
		return Config{}, "", fmt.Errorf("%s %s/%s: %w", Kind, namespace, name, err)
	}
	return Config{Key: types.NamespacedName{Namespace: namespace, Name: name}, Image: image, Source: u.GetAnnotations()[SourceAnnotation]}, hash, nil
}
