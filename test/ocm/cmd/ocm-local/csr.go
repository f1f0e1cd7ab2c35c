package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
	"k8s.io/klog/v2"

	clusterclient "open-cluster-management.io/api/client/cluster/clientset/versioned"
)

// csrSigner stands in for kube-controller-manager's kubernetes.io/kube-apiserver-client signer:
// it issues a client certificate, signed by the API server's client CA, for every approved and
// not yet issued CSR of that signer. Approval stays with OCM (the registration hub approves a
// klusterlet's bootstrap and renewal CSRs, addon-framework approves add-on CSRs), like on a real
// hub. The certificate is made the way OCM's integration helper does it
// (test/integration/util/authentication.go FillCertificateToApprovedCSR).
type csrSigner struct {
	client   kubernetes.Interface
	clusters clusterclient.Interface
	ca       *x509.Certificate
	key      crypto.Signer
	duration time.Duration
}

func newCSRSigner(client kubernetes.Interface, clusters clusterclient.Interface, certFile, keyFile string, duration time.Duration) (*csrSigner, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("--client-ca-cert and --client-ca-key must be given together")
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	cas, err := cert.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	key, err := keyutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type %T", keyFile, key)
	}
	return &csrSigner{client: client, clusters: clusters, ca: cas[0], key: signer, duration: duration}, nil
}

// run polls CSRs once a second: simpler than an informer and cheap on a test API server.
func (s *csrSigner) run(ctx context.Context) error {
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		csrs, err := s.client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
		if err != nil {
			klog.ErrorS(err, "Listing CSRs")
			return
		}
		for i := range csrs.Items {
			csr := &csrs.Items[i]
			if csr.Spec.SignerName != certificatesv1.KubeAPIServerClientSignerName || len(csr.Status.Certificate) > 0 ||
				!hasCondition(csr, certificatesv1.CertificateApproved) || hasCondition(csr, certificatesv1.CertificateDenied) ||
				hasCondition(csr, certificatesv1.CertificateFailed) {
				continue
			}
			if !s.clusterExists(ctx, csr) {
				continue
			}
			if err := s.sign(ctx, csr); err != nil {
				klog.ErrorS(err, "Signing CSR", "csr", csr.Name)
				continue
			}
			klog.InfoS("Signed CSR", "csr", csr.Name, "user", csr.Spec.Username)
		}
	}, time.Second)
	return nil
}

// clusterExists holds back a klusterlet's own CSR until its ManagedCluster exists. The agent
// creates the ManagedCluster only while it bootstraps and stops trying once it has a signed
// certificate; with auto approval and an instant signer, a slow first ManagedCluster create
// (about 2 s on a fresh API server) loses that race and the cluster never joins. On a real hub
// the ordering comes from an admin accepting the cluster, or from kube-controller-manager's lag.
func (s *csrSigner) clusterExists(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) bool {
	cluster := csr.Labels["open-cluster-management.io/cluster-name"]
	if cluster == "" || csr.Labels["open-cluster-management.io/addon-name"] != "" {
		return true
	}
	_, err := s.clusters.ClusterV1().ManagedClusters().Get(ctx, cluster, metav1.GetOptions{})
	if err != nil {
		klog.V(2).InfoS("Not signing the CSR until its ManagedCluster exists", "csr", csr.Name, "cluster", cluster, "err", err)
	}
	return err == nil
}

func (s *csrSigner) sign(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil {
		return fmt.Errorf("no PEM block in spec.request")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return err
	}
	if err := req.CheckSignature(); err != nil {
		return err
	}
	lifetime := s.duration
	if es := csr.Spec.ExpirationSeconds; es != nil && time.Duration(*es)*time.Second < lifetime {
		lifetime = time.Duration(*es) * time.Second
	}
	now := time.Now()
	notAfter := now.Add(lifetime)
	if notAfter.After(s.ca.NotAfter) {
		notAfter = s.ca.NotAfter
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial,
		Subject:      req.Subject,
		NotBefore:    now.Add(-time.Minute), // tolerate small clock differences, as kcm does
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, s.ca, req.PublicKey, s.key)
	if err != nil {
		return err
	}
	csr.Status.Certificate = pem.EncodeToMemory(&pem.Block{Type: cert.CertificateBlockType, Bytes: der})
	_, err = s.client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{})
	return err
}

// runCSRCleaner deletes old CSRs, like kube-controller-manager's csrcleaner (which uses 24h for
// pending and 1h for finished ones). It matters for OCM: the klusterlet stops filing new CSRs for
// an add-on while 10 exist for it.
func runCSRCleaner(ctx context.Context, client kubernetes.Interface, maxAge, doneMaxAge time.Duration) error {
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		csrs, err := client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
		if err != nil {
			klog.ErrorS(err, "Listing CSRs")
			return
		}
		for _, csr := range csrs.Items {
			age := time.Since(csr.CreationTimestamp.Time)
			done := hasCondition(&csr, certificatesv1.CertificateApproved) ||
				hasCondition(&csr, certificatesv1.CertificateDenied) || hasCondition(&csr, certificatesv1.CertificateFailed)
			if age < maxAge && (!done || age < doneMaxAge) {
				continue
			}
			err := client.CertificatesV1().CertificateSigningRequests().Delete(ctx, csr.Name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				klog.ErrorS(err, "Deleting CSR", "csr", csr.Name)
				continue
			}
			klog.V(2).InfoS("Deleted old CSR", "csr", csr.Name, "age", age.Round(time.Second))
		}
	}, 30*time.Second)
	return nil
}

func hasCondition(csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == t && c.Status != corev1.ConditionFalse {
			return true
		}
	}
	return false
}
