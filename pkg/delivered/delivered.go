// Package delivered is the one home of what the manager delivers to a spoke and how it is
// found again: the deploy ManifestWorks' names, the agent's objects among the rendered ones and
// its container, the keys of its ConfigMap and CA Secret, the annotation that names the client
// certificate the pod was rendered for, and the content keys that make the pod start only from
// its own settings. The render (pkg/addon), the customisation (pkg/customization), the renewal
// of a held cluster and the status command all read and write through it.
package delivered

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// Keys of the agent's argocd-agent-params ConfigMap (manifests/agent/07-params-configmap.yaml)
// that the hub reads back.
const (
	ParamsMode          = "agent.mode"
	ParamsServerAddress = "agent.server.address"
	ParamsServerPort    = "agent.server.port"
)

// CABundleKey is the key of the trust bundle in the agent's CA Secret
// (manifests/agent/06-ca-secret.yaml), which the agent reads from its mount.
const CABundleKey = "ca.crt"

// ClientCertificateAnnotation on the agent's pod template names the client certificate the spoke
// held when it was rendered (CertificateDigest), so that each renewal rolls the pod once.
const ClientCertificateAnnotation = "argocd-agent-addon.open-cluster-management.io/client-certificate"

// CertificateDigest is the ClientCertificateAnnotation value for certificate, what OCM's
// registration agent reports of the certificate the spoke holds (pkg/plan.CertificateOnSpoke):
// "none" before the first, else 16 hex digits of its SHA-256.
func CertificateDigest(certificate string) string {
	if certificate == "" {
		return "none"
	}
	sum := sha256.Sum256([]byte(certificate))
	return hex.EncodeToString(sum[:])[:16]
}

// Agent is the agent's own objects among the delivered ones; nil where one is missing. They
// point into the objects they were found in: a change to them changes those.
type Agent struct {
	Deployment *appsv1.Deployment
	Params     *corev1.ConfigMap
	CASecret   *corev1.Secret
}

// Find finds the agent's Deployment, its argocd-agent-params ConfigMap and its CA Secret among
// objects.
func Find(objects []runtime.Object) Agent {
	var a Agent
	for _, o := range objects {
		switch v := o.(type) {
		case *appsv1.Deployment:
			if v.Name == identity.AgentName {
				a.Deployment = v
			}
		case *corev1.ConfigMap:
			if v.Name == identity.ParamsConfigMapName {
				a.Params = v
			}
		case *corev1.Secret:
			if v.Name == identity.CASecretName {
				a.CASecret = v
			}
		}
	}
	return a
}

// Container is the agent's container in its Deployment, found by name (a customisation may
// add containers before or after it); nil if there is none.
func (a Agent) Container() *corev1.Container {
	if a.Deployment == nil {
		return nil
	}
	spec := &a.Deployment.Spec.Template.Spec
	if i := slices.IndexFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == identity.AgentName }); i >= 0 {
		return &spec.Containers[i]
	}
	return nil
}

// Image is the agent container's image; empty if there is none.
func (a Agent) Image() string {
	if c := a.Container(); c != nil {
		return c.Image
	}
	return ""
}

// Certificate is the ClientCertificateAnnotation the pod template carries; empty if none.
func (a Agent) Certificate() string {
	if a.Deployment == nil {
		return ""
	}
	return a.Deployment.Spec.Template.Annotations[ClientCertificateAnnotation]
}
