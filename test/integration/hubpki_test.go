package integration

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubpki"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// TestHubPKI runs the hub PKI controller against the real API server: it creates a missing CA
// and never touches it again, issues the principal's and the resource proxy's server
// certificates for their Services' addresses and names, creates the JWT key once, rolls the
// principal when they change, writes nothing in steady state, re-issues when the principal's
// address changes, renews before expiry, and leaves a certificate the user made alone.
func TestHubPKI(t *testing.T) {
	ctx := context.Background()
	const ns = "pki-test"
	must.Succeed(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	principalSvc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "argocd-agent-principal"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "p"},
			Ports: []corev1.ServicePort{{Name: "https", Port: 443}}},
	}
	proxySvc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "argocd-agent-resource-proxy"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "p"}, Ports: []corev1.ServicePort{{Port: 9090}}},
	}
	must.Succeed(t, env.Client.Create(ctx, principalSvc))
	must.Succeed(t, env.Client.Create(ctx, proxySvc))
	setIngress := func(ip string) {
		principalSvc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
		must.Succeed(t, env.Client.Status().Update(ctx, principalSvc))
	}
	setIngress("203.0.113.7")
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "argocd-agent-principal"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "p"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "p"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "principal", Image: "principal:test"}}}}},
	}
	must.Succeed(t, env.Client.Create(ctx, deploy))

	cs, err := kubernetes.NewForConfig(env.Config)
	must.Succeed(t, err)
	caKey := types.NamespacedName{Namespace: ns, Name: "argocd-agent-ca"}
	r := &hubpki.Reconciler{
		Client: env.Client, APIReader: env.Client, Secrets: cs.CoreV1(), CA: authority.NewSecretSource(env.Client, caKey),
		CreateCA: true, ServerCerts: true,
		PrincipalService: client.ObjectKeyFromObject(principalSvc), ResourceProxyService: client.ObjectKeyFromObject(proxySvc),
		PrincipalDeployment: client.ObjectKeyFromObject(deploy), PrincipalSANs: []string{"principal.example.com"},
		Lifetime: 90 * 24 * time.Hour, Events: events.NewFakeRecorder(100),
	}
	reconcile := func() ctrl.Result {
		t.Helper()
		res, err := r.Reconcile(ctx, ctrl.Request{})
		must.Succeed(t, err)
		return res
	}
	get := func(name string) *corev1.Secret {
		t.Helper()
		s := &corev1.Secret{}
		must.Succeed(t, env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, s))
		return s
	}
	rollDigest := func() string {
		t.Helper()
		d := &appsv1.Deployment{}
		must.Succeed(t, env.Client.Get(ctx, client.ObjectKeyFromObject(deploy), d))
		return d.Spec.Template.Annotations[hubpki.RollAnnotation]
	}

	// First pass creates the CA; the server certificates follow once it reads back.
	reconcile()
	caSecret := get(caKey.Name)
	if caSecret.Type != corev1.SecretTypeTLS {
		t.Fatalf("CA secret type %q, want kubernetes.io/tls as argocd-agentctl pki init writes it", caSecret.Type)
	}
	ca, err := authority.Parse(caSecret.Data[corev1.TLSCertKey], caSecret.Data[corev1.TLSPrivateKeyKey], time.Now())
	must.Succeed(t, err)
	for range 3 {
		if res := reconcile(); res.RequeueAfter <= 5*time.Second {
			continue
		}
		break
	}
	principalTLS := get(hubpki.PrincipalTLSSecret)
	checkServerCert(t, ca, principalTLS, []string{"203.0.113.7", principalSvc.Spec.ClusterIP, "principal.example.com",
		"argocd-agent-principal", "argocd-agent-principal.pki-test.svc", "argocd-agent-principal.pki-test.svc.cluster.local"})
	proxyTLS := get(hubpki.ResourceProxyTLSSecret)
	checkServerCert(t, ca, proxyTLS, []string{proxySvc.Spec.ClusterIP, "argocd-agent-resource-proxy", "argocd-agent-resource-proxy.pki-test.svc"})
	jwt := get(hubpki.JWTSecret)
	block, _ := pem.Decode(jwt.Data[hubpki.JWTKey])
	if block == nil {
		t.Fatal("jwt.key is not PEM")
	}
	if key, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		t.Fatalf("jwt.key: %v", err)
	} else if _, ok := key.(*rsa.PrivateKey); !ok {
		t.Fatalf("jwt.key is a %T, want RSA as upstream expects", key)
	}
	firstDigest := rollDigest()
	if firstDigest == "" {
		t.Fatal("the principal was not rolled to load the certificates")
	}

	// Steady state: nothing written.
	writes := secretWriteRequests(t)
	for range 3 {
		reconcile()
	}
	if w := secretWriteRequests(t) - writes; w != 0 {
		t.Errorf("%v secret writes in steady state, want 0", w)
	}
	if d := rollDigest(); d != firstDigest {
		t.Errorf("the principal was rolled in steady state")
	}
	if s := get(hubpki.PrincipalTLSSecret); s.ResourceVersion != principalTLS.ResourceVersion {
		t.Errorf("principal certificate rewritten in steady state")
	}

	// The principal's address changes: its certificate follows, the resource proxy's stays,
	// the principal rolls.
	setIngress("203.0.113.8")
	reconcile()
	renewed := get(hubpki.PrincipalTLSSecret)
	checkServerCert(t, ca, renewed, []string{"203.0.113.8"})
	if bytes.Equal(renewed.Data[corev1.TLSCertKey], principalTLS.Data[corev1.TLSCertKey]) {
		t.Error("the principal certificate was not re-issued for its new address")
	}
	if get(hubpki.ResourceProxyTLSSecret).ResourceVersion != proxyTLS.ResourceVersion {
		t.Error("the resource proxy certificate changed with the principal's address")
	}
	if d := rollDigest(); d == firstDigest || d == "" {
		t.Error("the principal was not rolled after its certificate changed")
	}

	// A short lifetime is renewed before it expires (certrotation renews at 80 %).
	r.Lifetime = 10 * time.Second
	must.Succeed(t, env.Client.Delete(ctx, renewed))
	reconcile()
	short := get(hubpki.PrincipalTLSSecret)
	shortCert := checkServerCert(t, ca, short, nil)
	time.Sleep(time.Until(shortCert.NotAfter.Add(-shortCert.NotAfter.Sub(shortCert.NotBefore)/5)) + 100*time.Millisecond)
	reconcile()
	renewedShort := get(hubpki.PrincipalTLSSecret)
	if renewedShort.ResourceVersion == short.ResourceVersion {
		t.Error("not renewed after 80 % of its life")
	}
	if now := time.Now(); !now.Before(shortCert.NotAfter) {
		t.Errorf("renewal checked only after expiry (%s)", shortCert.NotAfter)
	}
	r.Lifetime = 90 * 24 * time.Hour

	// A certificate the user made is theirs.
	must.Succeed(t, env.Client.Delete(ctx, get(hubpki.ResourceProxyTLSSecret)))
	mine := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: hubpki.ResourceProxyTLSSecret}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: []byte("mine"), corev1.TLSPrivateKeyKey: []byte("mine")}}
	must.Succeed(t, env.Client.Create(ctx, mine))
	reconcile()
	if got := get(hubpki.ResourceProxyTLSSecret); got.ResourceVersion != mine.ResourceVersion {
		t.Error("a certificate the user made was overwritten")
	}

	// A principal installed after its certificates were written holds them already: recorded,
	// not rolled.
	must.Succeed(t, env.Client.Delete(ctx, deploy))
	time.Sleep(1100 * time.Millisecond) // creation timestamps have one-second resolution
	fresh := deploy.DeepCopy()
	fresh.ResourceVersion, fresh.UID, fresh.Spec.Template.Annotations = "", "", nil
	poll.Until(t, 30*time.Second, "old principal Deployment gone", func(ctx context.Context) (bool, error) {
		err := env.Client.Create(ctx, fresh)
		return err == nil, client.IgnoreAlreadyExists(err)
	})
	reconcile()
	got := &appsv1.Deployment{}
	must.Succeed(t, env.Client.Get(ctx, client.ObjectKeyFromObject(fresh), got))
	if got.Annotations[hubpki.RollAnnotation] == "" || got.Spec.Template.Annotations[hubpki.RollAnnotation] != "" {
		t.Errorf("a principal that started after its certificates: annotations %v, template annotations %v; want it recorded and not rolled",
			got.Annotations, got.Spec.Template.Annotations)
	}

	// The CA was never written after its creation.
	if got := get(caKey.Name); got.ResourceVersion != caSecret.ResourceVersion {
		t.Error("the CA secret was changed")
	}
}

// checkServerCert checks secret holds a server certificate of ca (then the CA, as certrotation
// writes the chain) with the key that goes with it, and every name in want.
func checkServerCert(t *testing.T, ca *authority.CA, secret *corev1.Secret, want []string) *x509.Certificate {
	t.Helper()
	if secret.Type != corev1.SecretTypeTLS {
		t.Errorf("%s: type %q, want kubernetes.io/tls", secret.Name, secret.Type)
	}
	certs, err := authority.ParseCertificates(secret.Data[corev1.TLSCertKey])
	must.Succeed(t, err)
	cert := certs[0]
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("%s: not a server certificate of the CA: %v", secret.Name, err)
	}
	if _, err := tlsKeyPair(secret); err != nil {
		t.Errorf("%s: key: %v", secret.Name, err)
	}
	names := slices.Clone(cert.DNSNames)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	for _, w := range want {
		if net.ParseIP(w) != nil {
			w = net.ParseIP(w).String()
		}
		if !slices.Contains(names, w) {
			t.Errorf("%s: SANs %v lack %q", secret.Name, names, w)
		}
	}
	return cert
}

func tlsKeyPair(secret *corev1.Secret) (tls.Certificate, error) {
	return tls.X509KeyPair(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
}
