package harness

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/podstart"
)

// Delivered is what the add-on put on a spoke for its agent: the settings its Deployment passes
// it from the argocd-agent-params ConfigMap, the CA bundle, and the client certificate the OCM
// registration agent wrote.
type Delivered struct {
	Address                  string
	Port                     int
	Mode                     string
	LogLevel                 string
	Namespace                string
	CAPEM                    []byte
	ClientCertPEM, ClientKey []byte
	// Template identifies the pod template these were read for (see podTemplate).
	Template string
}

// ErrPodHeld says kubelet would not start the agent's pod yet: its template requires a ConfigMap
// or Secret key the spoke does not have.
var ErrPodHeld = errors.New("kubelet would hold the agent's pod")

// ReadDelivered reads what the agent's pod would be given in namespace of the spoke, as kubelet
// would start it: from the Deployment's pod template and only once every ConfigMap and Secret
// key that template requires is there (see package podstart). It fails while any of it is
// missing.
func ReadDelivered(ctx context.Context, spoke client.Client, namespace string) (*Delivered, error) {
	d := &appsv1.Deployment{}
	if err := spoke.Get(ctx, types.NamespacedName{Namespace: namespace, Name: identity.AgentName}, d); err != nil {
		return nil, err
	}
	cm := &corev1.ConfigMap{}
	if err := spoke.Get(ctx, types.NamespacedName{Namespace: namespace, Name: identity.ParamsConfigMapName}, cm); err != nil {
		return nil, err
	}
	ca := &corev1.Secret{}
	if err := spoke.Get(ctx, types.NamespacedName{Namespace: namespace, Name: identity.CASecretName}, ca); err != nil {
		return nil, err
	}
	cert := &corev1.Secret{}
	if err := spoke.Get(ctx, types.NamespacedName{Namespace: namespace, Name: identity.ClientCertSecretName}, cert); err != nil {
		return nil, err
	}
	if len(cert.Data[corev1.TLSCertKey]) == 0 || len(cert.Data[corev1.TLSPrivateKeyKey]) == 0 {
		return nil, fmt.Errorf("secret %s/%s has no certificate yet", namespace, identity.ClientCertSecretName)
	}
	// Read after the Deployment, these are what kubelet would find for its newest template.
	if err := podstart.Check(d.Spec.Template.Spec, podstart.Objects{
		ConfigMaps: map[string]*corev1.ConfigMap{cm.Name: cm},
		Secrets:    map[string]*corev1.Secret{ca.Name: ca, cert.Name: cert},
	}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPodHeld, err)
	}
	port, err := strconv.Atoi(cm.Data["agent.server.port"])
	if err != nil {
		return nil, fmt.Errorf("agent.server.port %q: %w", cm.Data["agent.server.port"], err)
	}
	return &Delivered{
		Address: cm.Data["agent.server.address"], Port: port, Mode: cm.Data["agent.mode"], LogLevel: cm.Data["agent.log.level"], Namespace: cm.Data["agent.namespace"],
		CAPEM: ca.Data["ca.crt"], ClientCertPEM: cert.Data[corev1.TLSCertKey], ClientKey: cert.Data[corev1.TLSPrivateKeyKey],
		Template: podTemplate(d),
	}, nil
}

// podTemplate identifies the agent Deployment's pod template: what a change of rolls the pod.
func podTemplate(d *appsv1.Deployment) string {
	return fmt.Sprint(d.Spec.Template.Annotations, d.Spec.Template.Spec.Containers[0].Image, d.Spec.Template.Spec.Containers[0].Env, d.Spec.Template.Spec.Volumes)
}
