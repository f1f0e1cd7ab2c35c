// Package hubpki keeps the hub side of the principal's PKI, in upstream's names and formats,
// for users who opt in: the CA (argocd-agent-ca, created only if absent, never replaced), the
// principal's gRPC and resource proxy server certificates (argocd-agent-principal-tls,
// argocd-agent-resource-proxy-tls), issued from that CA for the names and addresses of the
// principal's Services and renewed before they expire with sdk-go's certrotation, and the JWT
// signing key (argocd-agent-jwt), created once. argocd-agent v0.9.0 reads all of them only at
// start-up, so a change rolls the principal's Deployment.
//
// Secrets the user made are never touched: the add-on renews only the server certificates it
// created, which it marks by their owner, the add-on's ClusterManagementAddOn.
package hubpki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sort"
	"time"

	"github.com/openshift/library-go/pkg/crypto"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"open-cluster-management.io/sdk-go/pkg/certrotation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
)

// Upstream's secret names and keys (argocd-agent v0.9.0 internal/config and cmd/ctl).
const (
	PrincipalTLSSecret     = "argocd-agent-principal-tls"
	ResourceProxyTLSSecret = "argocd-agent-resource-proxy-tls"
	JWTSecret              = "argocd-agent-jwt"
	JWTKey                 = "jwt.key"
)

// RollAnnotation on the principal Deployment's pod template holds a digest of the secrets the
// principal reads at start-up that the add-on keeps; a new value rolls the principal.
const RollAnnotation = "argocd-agent-addon.open-cluster-management.io/principal-pki"

// CALifetime is the lifetime of a CA the add-on creates.
const CALifetime = 10 * 365 * 24 * time.Hour

// NewCA makes a self-signed CA, as a kubernetes.io/tls secret's tls.crt and tls.key (PKCS#8).
// ECDSA P-256, where `argocd-agentctl pki init` makes RSA-4096: as strong for a CA that lives
// ten years, and the signatures of every certificate it issues are cheaper to make and check.
func NewCA(commonName string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: commonName},
		NotBefore: now.Add(-authority.ClockSkew), NotAfter: now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// NewJWTKey makes the principal's token signing key as upstream expects it: RSA, PKCS#8 PEM
// (`argocd-agentctl jwt create-key` makes RSA-4096 too).
func NewJWTKey() ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ServiceHostNames are the names and addresses a server behind svc answers to: its load
// balancer ingress (IPs and host names), its cluster IPs and its in-cluster DNS names, plus
// extra, sorted and without duplicates.
func ServiceHostNames(svc *corev1.Service, extra []string) []string {
	set := map[string]bool{}
	for _, h := range extra {
		if h != "" {
			set[h] = true
		}
	}
	if svc != nil {
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IP != "" {
				set[ing.IP] = true
			}
			if ing.Hostname != "" {
				set[ing.Hostname] = true
			}
		}
		for _, ip := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
			if net.ParseIP(ip) != nil {
				set[ip] = true
			}
		}
		for _, n := range []string{svc.Name, svc.Name + "." + svc.Namespace, svc.Name + "." + svc.Namespace + ".svc", svc.Name + "." + svc.Namespace + ".svc.cluster.local"} {
			set[n] = true
		}
	}
	out := make([]string, 0, len(set))
	for h := range set {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// libraryCA adapts the add-on's CA to what certrotation signs with.
func libraryCA(ca *authority.CA) *crypto.CA {
	return &crypto.CA{
		Config:          &crypto.TLSCertificateConfig{Certs: []*x509.Certificate{ca.Cert}, Key: ca.Key},
		SerialGenerator: &crypto.RandomSerialGenerator{},
	}
}

// Digest is a short digest of the given secrets' data, in order: what the principal loaded.
func Digest(secrets ...*corev1.Secret) string {
	h := sha256.New()
	for _, s := range secrets {
		if s == nil {
			h.Write([]byte{0})
			continue
		}
		keys := make([]string, 0, len(s.Data))
		for k := range s.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(h, "%s=%x;", k, s.Data[k])
		}
		h.Write([]byte{1})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// RenewalTime is when certrotation renews the server certificate in secret: at 80 % of its
// life. Zero if there is none.
func RenewalTime(secret *corev1.Secret) time.Time {
	if secret == nil {
		return time.Time{}
	}
	certs, err := authority.ParseCertificates(secret.Data[corev1.TLSCertKey])
	if err != nil || len(certs) == 0 {
		return time.Time{}
	}
	c := certs[0]
	return c.NotAfter.Add(-c.NotAfter.Sub(c.NotBefore) / 5)
}

// readerLister serves certrotation's secret lister from a controller-runtime reader.
type readerLister struct {
	ctx    context.Context
	reader client.Reader
}

var _ corev1listers.SecretLister = readerLister{}

func (l readerLister) List(selector labels.Selector) ([]*corev1.Secret, error) {
	return nil, fmt.Errorf("listing every secret is not needed and not allowed")
}

func (l readerLister) Secrets(namespace string) corev1listers.SecretNamespaceLister {
	return namespaceLister{readerLister: l, namespace: namespace}
}

type namespaceLister struct {
	readerLister
	namespace string
}

func (l namespaceLister) List(selector labels.Selector) ([]*corev1.Secret, error) {
	return nil, fmt.Errorf("listing secrets is not needed and not allowed")
}

func (l namespaceLister) Get(name string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	if err := l.reader.Get(l.ctx, types.NamespacedName{Namespace: l.namespace, Name: name}, s); err != nil {
		return nil, err
	}
	return s, nil
}

// ensureServerCert issues or renews a server certificate the add-on keeps, for hostNames. A
// secret of that name the add-on did not create (not owned by owner) is left as it is.
func ensureServerCert(ctx context.Context, reader client.Reader, secrets corev1client.SecretsGetter, ca *authority.CA,
	owner metav1.OwnerReference, key types.NamespacedName, hostNames []string, lifetime time.Duration) (kept bool, err error) {
	existing := &corev1.Secret{}
	if err := reader.Get(ctx, key, existing); err == nil {
		if !ownedBy(existing, owner.UID) {
			return false, nil
		}
	} else if !apierrors.IsNotFound(err) {
		return false, err
	}
	rotation := certrotation.TargetRotation{
		Namespace: key.Namespace, Name: key.Name, Validity: lifetime, HostNames: hostNames,
		Lister: readerLister{ctx: ctx, reader: reader}, Client: secrets, OwnerReference: &owner,
	}
	// library-go's template asks for SHA256WithRSA; the CA may have any key type the authority
	// accepts (ECDSA, Ed25519), so let crypto/x509 pick the algorithm for the CA's key.
	anyKey := func(tmpl *x509.Certificate) error {
		tmpl.SignatureAlgorithm = x509.UnknownSignatureAlgorithm
		return nil
	}
	if err := rotation.EnsureTargetCertKeyPair(libraryCA(ca), ca.Trusted, anyKey); err != nil {
		return true, fmt.Errorf("server certificate %s: %w", key, err)
	}
	return true, nil
}

func ownedBy(obj metav1.Object, uid types.UID) bool {
	for _, r := range obj.GetOwnerReferences() {
		if r.UID == uid {
			return true
		}
	}
	return false
}
