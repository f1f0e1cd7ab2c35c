package harness

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
)

// HubKubeconfigSecret is where OCM's registration agent keeps its hub credentials on the spoke,
// in the klusterlet's agent namespace; the work agent uses the same.
const HubKubeconfigSecret = "hub-kubeconfig-secret"

// ClusterIdentity is a managed cluster's own OCM identity on the hub, read from its spoke as an
// attacker who owns the cluster would read it.
type ClusterIdentity struct {
	// User is the name the hub knows it by: system:open-cluster-management:<cluster>:<agent id>.
	User   string
	Config *rest.Config
	Client client.Client
}

// ClusterIdentity reads cluster name's registration agent credentials from its spoke (the
// kubeconfig and client certificate in hub-kubeconfig-secret) and returns a hub client that
// authenticates with them, with no other rights than OCM gives the cluster.
func (e *Env) ClusterIdentity(ctx context.Context, name string) (*ClusterIdentity, error) {
	s := e.Spokes[name]
	if s == nil {
		return nil, fmt.Errorf("no spoke %s", name)
	}
	secret := &corev1.Secret{}
	key := types.NamespacedName{Namespace: "open-cluster-management-agent-" + name, Name: HubKubeconfigSecret}
	if err := s.API.Client.Get(ctx, key, secret); err != nil {
		return nil, fmt.Errorf("reading %s's hub credentials %s: %w", name, key, err)
	}
	kc, err := clientcmd.Load(secret.Data["kubeconfig"])
	if err != nil {
		return nil, fmt.Errorf("%s: kubeconfig: %w", key, err)
	}
	kctx := kc.Contexts[kc.CurrentContext]
	if kctx == nil || kc.Clusters[kctx.Cluster] == nil {
		return nil, fmt.Errorf("%s: kubeconfig has no current cluster", key)
	}
	hub := kc.Clusters[kctx.Cluster]
	// The kubeconfig names the certificate files next to it; the secret holds them.
	cert, keyPEM := secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey]
	if len(cert) == 0 || len(keyPEM) == 0 {
		return nil, errors.New(key.String() + ": no tls.crt/tls.key")
	}
	cfg := &rest.Config{Host: hub.Server, TLSClientConfig: rest.TLSClientConfig{CAData: hub.CertificateAuthorityData, CertData: cert, KeyData: keyPEM}}
	c, err := client.New(cfg, client.Options{Scheme: e.Hub.Scheme})
	if err != nil {
		return nil, err
	}
	parsed, err := issued.ParseCertificate(cert)
	if err != nil {
		return nil, fmt.Errorf("%s: tls.crt: %w", key, err)
	}
	return &ClusterIdentity{User: parsed.Subject.CommonName, Config: cfg, Client: c}, nil
}
