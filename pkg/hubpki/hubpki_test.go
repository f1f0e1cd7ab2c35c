package hubpki

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
)

// The CA is one the signer accepts: a P-256 CA certificate valid for CALifetime, backdated for
// clock skew, whose key goes with it.
func TestNewCA(t *testing.T) {
	now := time.Now()
	certPEM, keyPEM, err := NewCA("argocd-agent-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := authority.Parse(certPEM, keyPEM, now)
	if err != nil {
		t.Fatalf("the signer refuses the CA it would create: %v", err)
	}
	c := ca.Cert
	if !c.IsCA || c.Subject.CommonName != "argocd-agent-ca" || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA certificate: IsCA %v, CN %q, key usage %b", c.IsCA, c.Subject.CommonName, c.KeyUsage)
	}
	if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("CA key %T, want ECDSA", c.PublicKey)
	}
	if got := c.NotAfter.Sub(now).Round(time.Hour); got != CALifetime.Round(time.Hour) {
		t.Errorf("CA valid for %s, want %s", got, CALifetime)
	}
	if !c.NotBefore.Before(now.Add(-authority.ClockSkew + time.Second)) {
		t.Errorf("CA not backdated: NotBefore %s, now %s", c.NotBefore, now)
	}
}

// The JWT key is what upstream's principal reads: an RSA key, PKCS#8 PEM.
func TestNewJWTKey(t *testing.T) {
	data, err := NewJWTKey()
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" || len(rest) != 0 {
		t.Fatalf("not one PKCS#8 PEM block: %q", data)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := key.(*rsa.PrivateKey); !ok || k.N.BitLen() != 4096 {
		t.Errorf("key %T, want RSA-4096", key)
	}
}

// A server certificate covers every way a client reaches the Service: load balancer IPs and
// host names, cluster IPs (IPv4 and IPv6), in-cluster DNS names, plus the extra names, once each.
func TestServiceHostNames(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "argocd", Name: "argocd-agent-principal"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00::10"}},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
			{IP: "203.0.113.7"}, {Hostname: "lb.example.com"},
		}}},
	}
	got := ServiceHostNames(svc, []string{"principal.example.com", "", "lb.example.com"})
	want := []string{"10.96.0.10", "203.0.113.7", "argocd-agent-principal", "argocd-agent-principal.argocd",
		"argocd-agent-principal.argocd.svc", "argocd-agent-principal.argocd.svc.cluster.local", "fd00::10",
		"lb.example.com", "principal.example.com"}
	if !slices.Equal(got, want) {
		t.Errorf("names\n got %v\nwant %v", got, want)
	}
	// "None" (a headless Service) is no address.
	headless := svc.DeepCopy()
	headless.Spec.ClusterIP, headless.Spec.ClusterIPs = corev1.ClusterIPNone, nil
	if slices.Contains(ServiceHostNames(headless, nil), corev1.ClusterIPNone) {
		t.Error("a headless Service's ClusterIP None became a SAN")
	}
	if got := ServiceHostNames(nil, []string{"x.example.com"}); !slices.Equal(got, []string{"x.example.com"}) {
		t.Errorf("without a Service: %v, want the extra names only", got)
	}
}

// The digest changes with any key or value of any secret, and with a secret's absence, so the
// principal is rolled exactly when what it would load changes.
func TestDigest(t *testing.T) {
	a := &corev1.Secret{Data: map[string][]byte{"tls.crt": []byte("a"), "tls.key": []byte("k")}}
	b := &corev1.Secret{Data: map[string][]byte{"jwt.key": []byte("j")}}
	base := Digest(a, b)
	if Digest(a.DeepCopy(), b.DeepCopy()) != base {
		t.Error("the same data gives another digest")
	}
	changed := a.DeepCopy()
	changed.Data["tls.crt"] = []byte("b")
	for name, d := range map[string]string{
		"a value":          Digest(changed, b),
		"a secret missing": Digest(nil, b),
		"the order":        Digest(b, a),
		"data moved across secrets": Digest(&corev1.Secret{Data: map[string][]byte{"tls.crt": []byte("a")}},
			&corev1.Secret{Data: map[string][]byte{"tls.key": []byte("k"), "jwt.key": []byte("j")}}),
	} {
		if d == base {
			t.Errorf("%s changed and the digest did not", name)
		}
	}
}

// certrotation renews at 80 % of a certificate's life.
func TestRenewalTime(t *testing.T) {
	certPEM, keyPEM, err := NewCA("ca", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certs, err := authority.ParseCertificates(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	c := certs[0]
	got := RenewalTime(&corev1.Secret{Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}})
	if want := c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 4 / 5); got.Sub(want).Abs() > time.Second {
		t.Errorf("renewal at %s, want %s", got, want)
	}
	if !RenewalTime(nil).IsZero() || !RenewalTime(&corev1.Secret{Data: map[string][]byte{corev1.TLSCertKey: []byte("junk")}}).IsZero() {
		t.Error("no certificate, yet a renewal time")
	}
}
