// Package clustersecret keeps, for every cluster with the add-on, the Argo CD cluster secret
// through which Argo CD on the hub reaches that cluster's agent by the principal's resource
// proxy, in the format `argocd-agentctl agent create` (argocd-agent v0.9.0) writes, so that
// argocd-agentctl, Argo CD and the principal read it as their own.
//
// Its client certificate is issued here, from the CA the principal trusts, with CN = the agent
// name, which is how the resource proxy tells agents apart. The key is made on the hub and
// stays there, in the secret. A certificate is issued once and renewed when two thirds of its
// life have passed; in steady state the controller writes nothing.
package clustersecret

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
)

// Upstream's names (argocd-agent internal/argocd/cluster and Argo CD common), which
// argocd-agentctl and the principal look for.
const (
	// AgentNameLabel maps a cluster secret to its agent.
	AgentNameLabel = "argocd-agent.argoproj-labs.io/agent-name"
	// SecretTypeLabel with value SecretTypeCluster makes Argo CD read the secret as a cluster.
	SecretTypeLabel   = "argocd.argoproj.io/secret-type"
	SecretTypeCluster = "cluster"
	// SkipReconcileAnnotation keeps Argo CD's application controller from reconciling the
	// cluster itself: the agent does that on the spoke (Argo CD v3.4+).
	SkipReconcileAnnotation = "argocd.argoproj.io/skip-reconcile"
	// ManagedByAnnotation is what upstream's conversion sets, with value ManagedBy.
	ManagedByAnnotation = "managed-by"
	ManagedBy           = "argocd-agent"
	// DefaultResourceProxyAddress is where Argo CD, next to the principal, reaches the resource
	// proxy: upstream's Service name and port, and argocd-agentctl's default.
	DefaultResourceProxyAddress = "argocd-agent-resource-proxy:9090"
)

// ManagedLabel marks a cluster secret this add-on keeps: only those it ever deletes or renews.
// A secret argocd-agentctl made for a cluster with the add-on gets it when it is adopted.
const ManagedLabel = "argocd-agent-addon.open-cluster-management.io/cluster-secret"

// Secret data keys, as Argo CD reads a cluster secret.
const (
	keyName   = "name"
	keyServer = "server"
	keyConfig = "config"
)

// reservedPrefixes are label key prefixes a ManagedCluster's labels may not bring into the
// cluster secret: Argo CD's and argocd-agent's own, and this add-on's (which include the
// revoked label); and OCM's feature.open-cluster-management.io/ add-on availability marks,
// which change with every add-on's health and would make the secret churn.
var reservedPrefixes = []string{"argocd.argoproj.io/", "argocd-agent.argoproj-labs.io/", "argocd-agent-addon.open-cluster-management.io/",
	"feature.open-cluster-management.io/"}

// Name is the cluster secret of agent.
func Name(agent string) string { return "cluster-" + agent }

// ServerURL is the cluster's server URL: the resource proxy, with the agent named as upstream
// names it. The resource proxy itself identifies the agent by the client certificate's CN.
func ServerURL(resourceProxyAddress, agent string) string {
	return "https://" + resourceProxyAddress + "?agentName=" + agent
}

// ValidateAddress checks a resource proxy address: HOST:PORT, as argocd-agentctl takes it.
func ValidateAddress(address string) error {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%q: want HOST:PORT: %w", address, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not 1-65535", address, port)
	}
	if net.ParseIP(host) == nil && len(validation.IsDNS1123Subdomain(host)) > 0 {
		return fmt.Errorf("%q: host %q is neither an IP address nor a DNS name", address, host)
	}
	return nil
}

// tlsClientConfig and clusterConfig are the part of Argo CD's ClusterConfig the secret carries,
// with Argo CD's JSON names; []byte fields are base64 in JSON as in Argo CD.
type tlsClientConfig struct {
	Insecure bool   `json:"insecure"`
	CertData []byte `json:"certData,omitempty"`
	KeyData  []byte `json:"keyData,omitempty"`
	CAData   []byte `json:"caData,omitempty"`
}

type clusterConfig struct {
	TLSClientConfig tlsClientConfig `json:"tlsClientConfig"`
}

// Credentials are the client certificate and key of a cluster secret, PEM.
type Credentials struct {
	CertPEM []byte
	KeyPEM  []byte
}

// Issue makes a new key on the hub and a client certificate for agent from ca, valid for
// lifetime (never past the CA's expiry).
func Issue(ca *authority.CA, agent string, lifetime time.Duration, now time.Time) (Credentials, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Credentials{}, fmt.Errorf("generating a key: %w", err)
	}
	certPEM, err := ca.Sign(&x509.CertificateRequest{Subject: pkix.Name{CommonName: agent}, PublicKey: key.Public()}, lifetime, now)
	if err != nil {
		return Credentials{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Credentials{}, fmt.Errorf("encoding the key: %w", err)
	}
	return Credentials{CertPEM: certPEM, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}, nil
}

// Check says whether creds can stay in agent's cluster secret at now: a certificate of the
// signing CA for client authentication, CN = agent, with the key that goes with it. It returns
// when the certificate is due for renewal: two thirds into its life (renewalTime).
func Check(ca *authority.CA, agent string, creds Credentials, now time.Time) (renewAt time.Time, err error) {
	cert, err := ca.Verify(creds.CertPEM, now)
	if err != nil {
		return time.Time{}, fmt.Errorf("certificate not valid from the signing CA %s: %w", ca.ID(), err)
	}
	if cert.Subject.CommonName != agent {
		return time.Time{}, fmt.Errorf("certificate CN %q, want the agent name %q", cert.Subject.CommonName, agent)
	}
	block, _ := pem.Decode(creds.KeyPEM)
	if block == nil {
		return time.Time{}, errors.New("no PEM private key")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		// argocd-agentctl writes PKCS#1 RSA keys.
		if rsaKey, rsaErr := x509.ParsePKCS1PrivateKey(block.Bytes); rsaErr == nil {
			key, err = rsaKey, nil
		}
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return time.Time{}, fmt.Errorf("private key of type %T cannot sign", key)
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return time.Time{}, errors.New("private key does not match the certificate")
	}
	return renewalTime(cert), nil
}

// renewalTime is two thirds into a certificate's life counted from when it was issued, not from
// its NotBefore, which the signer backdates by authority.ClockSkew: counted from NotBefore, a
// certificate whose lifetime is under twice the skew would be due at once, and each renewal
// would be due again as soon as it was written. A certificate another tool issued without
// backdating is renewed a third of the skew later than it would be otherwise.
func renewalTime(cert *x509.Certificate) time.Time {
	issued := cert.NotBefore.Add(authority.ClockSkew)
	if !issued.Before(cert.NotAfter) {
		issued = cert.NotBefore
	}
	return issued.Add(cert.NotAfter.Sub(issued) * 2 / 3)
}

// CredentialsOf reads the client certificate and key of a cluster secret; ok is false when the
// secret has none that parse.
func CredentialsOf(secret *corev1.Secret) (Credentials, bool) {
	var cfg clusterConfig
	if secret == nil || json.Unmarshal(secret.Data[keyConfig], &cfg) != nil ||
		len(cfg.TLSClientConfig.CertData) == 0 || len(cfg.TLSClientConfig.KeyData) == 0 {
		return Credentials{}, false
	}
	return Credentials{CertPEM: cfg.TLSClientConfig.CertData, KeyPEM: cfg.TLSClientConfig.KeyData}, true
}

// Desired is the cluster secret of agent: upstream's data keys and metadata, the copied
// ManagedCluster labels (LabelFilter.Select; reserved keys are dropped here too), and
// ManagedLabel.
func Desired(namespace, agent, resourceProxyAddress string, copied map[string]string, creds Credentials, caBundle []byte) (*corev1ac.SecretApplyConfiguration, error) {
	config, err := json.Marshal(clusterConfig{TLSClientConfig: tlsClientConfig{
		CertData: creds.CertPEM, KeyData: creds.KeyPEM, CAData: caBundle,
	}})
	if err != nil {
		return nil, err
	}
	labels := map[string]string{}
	for k, v := range copied {
		if !reserved(k) {
			labels[k] = v
		}
	}
	labels[SecretTypeLabel] = SecretTypeCluster
	labels[AgentNameLabel] = agent
	labels[ManagedLabel] = "true"
	return corev1ac.Secret(Name(agent), namespace).
		WithLabels(labels).
		WithAnnotations(map[string]string{SkipReconcileAnnotation: "true", ManagedByAnnotation: ManagedBy}).
		WithData(map[string][]byte{
			keyName:   []byte(agent),
			keyServer: []byte(ServerURL(resourceProxyAddress, agent)),
			keyConfig: config,
		}), nil
}

func reserved(key string) bool {
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}
