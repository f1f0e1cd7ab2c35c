package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
)

// NodeNetwork makes an API server one that real nodes (package test/node) can join and whose
// pods can reach it: it serves on every address, advertises AdvertiseAddress as the endpoint of
// the kubernetes Service, authorizes kubelets with the Node authorizer, admits pods with the
// ServiceAccount and NodeRestriction plugins (envtest turns the first off), and signs service
// account tokens with a key kube-controller-manager can read.
type NodeNetwork struct {
	// AdvertiseAddress is a host address pods can route to: never loopback, which inside a pod
	// is the pod itself.
	AdvertiseAddress net.IP
	// ServiceCIDR holds the cluster's ClusterIPs; its first address is the kubernetes Service's.
	// Clusters on one machine should not share one, so that a route to a ClusterIP names its
	// cluster.
	ServiceCIDR string
}

// NodeFiles are the files a node and its controllers need, all in the server's ClientCADir.
type NodeFiles struct {
	// ServingCA verifies the API server (kube-root-ca.crt in every namespace).
	ServingCA string
	// ServiceAccountKey signs service account tokens (kube-controller-manager's
	// --service-account-private-key-file).
	ServiceAccountKey string
	// ClientCACert and ClientCAKey sign client certificates the API server trusts (kubelets,
	// controllers, and kube-controller-manager's CSR signer); kubelets trust the API server's
	// own client certificate by the same CA.
	ClientCACert, ClientCAKey string
	// KubernetesServiceIP is the kubernetes Service's ClusterIP; Port the API server's.
	KubernetesServiceIP net.IP
	AdvertiseAddress    net.IP
	Port                int
}

// week is how long the test certificates last: longer than any test run.
const week = 7 * 24 * time.Hour

const (
	servingCAFile  = "serving-ca.crt"
	servingCAKey   = "serving-ca.key"
	servingCert    = "apiserver.crt" // envtest's names: it keeps files that are there
	servingKey     = "apiserver.key"
	saSignerCert   = "sa-signer.crt"
	saSignerKey    = "sa-signer.key"
	kubeletClient  = "apiserver-kubelet-client.crt"
	kubeletClientK = "apiserver-kubelet-client.key"
)

// configureForNodes writes the serving certificate (valid for the kubernetes Service's names and
// addresses, which envtest's own is not), the service account key and the API server's client
// certificate for kubelets into dir, and sets the flags that use them.
func configureForNodes(api *envtest.APIServer, dir string, n *NodeNetwork) (*NodeFiles, error) {
	if n.AdvertiseAddress == nil || n.AdvertiseAddress.IsLoopback() {
		return nil, fmt.Errorf("NodeNetwork: AdvertiseAddress %v must be a non-loopback address pods can route to", n.AdvertiseAddress)
	}
	_, cidr, err := net.ParseCIDR(n.ServiceCIDR)
	if err != nil {
		return nil, fmt.Errorf("NodeNetwork: ServiceCIDR: %w", err)
	}
	if cidr.IP.To4() == nil {
		return nil, errors.New("NodeNetwork: ServiceCIDR must be IPv4")
	}
	svcIP := make(net.IP, 4)
	copy(svcIP, cidr.IP.To4())
	svcIP[3]++
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	caCert, caKey, err := testca.New("testenv-serving-ca", week)
	if err != nil {
		return nil, err
	}
	cert, key, err := testca.IssueCert(caCert, caKey, testca.CertRequest{
		CommonName: "kube-apiserver", Server: true,
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), n.AdvertiseAddress, svcIP},
		Lifetime:    week,
	})
	if err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	saDER, err := x509.MarshalPKCS8PrivateKey(saKey)
	if err != nil {
		return nil, err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		servingCAFile: caCert, servingCAKey: caKey, servingCert: cert, servingKey: key,
		saSignerKey:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: saDER}),
		saSignerCert: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	api.CertDir = dir
	api.SecureServing.CA = caCert
	args := api.Configure()
	args.Set("bind-address", "0.0.0.0")
	args.Set("advertise-address", n.AdvertiseAddress.String())
	args.Set("service-cluster-ip-range", n.ServiceCIDR)
	args.Set("authorization-mode", "Node", "RBAC")
	args.Set("enable-admission-plugins", "NodeRestriction")
	args.Disable("disable-admission-plugins")
	args.Set("kubelet-client-certificate", filepath.Join(dir, kubeletClient))
	args.Set("kubelet-client-key", filepath.Join(dir, kubeletClientK))
	// Reach kubelets (logs, exec) at the node's InternalIP: nothing here resolves node names.
	args.Set("kubelet-preferred-address-types", "InternalIP")
	cacert, cakey := ClientCAFiles(dir)
	return &NodeFiles{
		ServingCA: filepath.Join(dir, servingCAFile), ServiceAccountKey: filepath.Join(dir, saSignerKey),
		ClientCACert: cacert, ClientCAKey: cakey, KubernetesServiceIP: svcIP, AdvertiseAddress: n.AdvertiseAddress,
	}, nil
}

// issueKubeletClient signs the API server's client certificate for kubelets (logs, exec) once
// the client CA exists. kubeadm gives it system:masters too, so kubelets' webhook authorizer
// allows it.
func issueKubeletClient(dir string) error {
	caCert, caKey := ClientCAFiles(dir)
	certPEM, err := os.ReadFile(caCert)
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(caKey)
	if err != nil {
		return err
	}
	cert, key, err := testca.IssueCert(certPEM, keyPEM, testca.CertRequest{
		CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}, Client: true, Lifetime: week,
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, kubeletClient), cert, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, kubeletClientK), key, 0o600)
}
