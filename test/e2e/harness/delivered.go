package harness

import (
	"context"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// Delivered is what the spoke held for an agent pod when its container started: the settings its
// Deployment passes it from the argocd-agent-params ConfigMap, the CA bundle, and the client
// certificate the OCM registration agent wrote. The agent reads all of it once, at start-up.
type Delivered struct {
	Address                  string
	Port                     int
	Mode                     string
	LogLevel                 string
	Namespace                string
	CAPEM                    []byte
	ClientCertPEM, ClientKey []byte
}

// readDelivered reads the agent's objects in namespace of the spoke.
func readDelivered(ctx context.Context, spoke client.Client, namespace string) (*Delivered, error) {
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
	port, err := strconv.Atoi(cm.Data["agent.server.port"])
	if err != nil {
		return nil, fmt.Errorf("agent.server.port %q: %w", cm.Data["agent.server.port"], err)
	}
	return &Delivered{
		Address: cm.Data["agent.server.address"], Port: port, Mode: cm.Data["agent.mode"], LogLevel: cm.Data["agent.log.level"], Namespace: cm.Data["agent.namespace"],
		CAPEM: ca.Data["ca.crt"], ClientCertPEM: cert.Data[corev1.TLSCertKey], ClientKey: cert.Data[corev1.TLSPrivateKeyKey],
	}, nil
}
