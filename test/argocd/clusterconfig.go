package argocd

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
)

// ClusterRESTConfig is the client configuration Argo CD builds from a cluster secret with TLS
// client credentials (Argo CD's Cluster.RESTConfig for tlsClientConfig): host from `server`,
// certificate, key and CA from `config.tlsClientConfig`. It reads only what Argo CD reads, so a
// test that connects with it proves the secret works for Argo CD.
func ClusterRESTConfig(secret *corev1.Secret) (*rest.Config, error) {
	var cfg struct {
		TLSClientConfig struct {
			Insecure   bool   `json:"insecure"`
			ServerName string `json:"serverName"`
			CertData   []byte `json:"certData"`
			KeyData    []byte `json:"keyData"`
			CAData     []byte `json:"caData"`
		} `json:"tlsClientConfig"`
	}
	if err := json.Unmarshal(secret.Data["config"], &cfg); err != nil {
		return nil, fmt.Errorf("cluster secret %s/%s: config: %w", secret.Namespace, secret.Name, err)
	}
	server := string(secret.Data["server"])
	if server == "" {
		return nil, fmt.Errorf("cluster secret %s/%s has no server", secret.Namespace, secret.Name)
	}
	tls := cfg.TLSClientConfig
	return &rest.Config{Host: server, TLSClientConfig: rest.TLSClientConfig{
		Insecure: tls.Insecure, ServerName: tls.ServerName, CertData: tls.CertData, KeyData: tls.KeyData, CAData: tls.CAData,
	}}, nil
}
