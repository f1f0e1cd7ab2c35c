package clustersecret

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
)

func newCA(t *testing.T, name string) *authority.CA {
	t.Helper()
	certPEM, keyPEM, err := testca.New(name, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := authority.Parse(certPEM, keyPEM, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestIssueAndCheck(t *testing.T) {
	ca := newCA(t, "hub-ca")
	now := time.Now()
	creds, err := Issue(ca, "cluster1", 30*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Verify(creds.CertPEM, now)
	if err != nil {
		t.Fatalf("not a client certificate of the CA: %v", err)
	}
	if cert.Subject.String() != "CN=cluster1" {
		t.Errorf("subject %q, want CN=cluster1 only", cert.Subject)
	}
	if !cert.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("notAfter %s: want the CA's expiry %s, since 30h is past it", cert.NotAfter, ca.Cert.NotAfter)
	}
	renewAt, err := Check(ca, "cluster1", creds, now)
	if err != nil {
		t.Fatal(err)
	}
	issued := cert.NotBefore.Add(authority.ClockSkew) // the signer backdates
	life := cert.NotAfter.Sub(issued)
	if got := renewAt.Sub(issued); got != life*2/3 {
		t.Errorf("renewal %s after issue, want two thirds of %s", got, life)
	}
	// A lifetime shorter than the backdating is still renewed two thirds into it, not at once
	// (which would renew it again on every reconcile).
	short, err := Issue(ca, "cluster1", time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	// (x509 keeps whole seconds: within a second of 40 s.)
	if renewAt, err := Check(ca, "cluster1", short, now); err != nil || renewAt.Sub(now) < 39*time.Second || renewAt.Sub(now) > 41*time.Second {
		t.Errorf("a 1m certificate is due %s after issue (%v), want 40s", renewAt.Sub(now), err)
	}

	other := newCA(t, "other-ca")
	otherCreds, err := Issue(other, "cluster1", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	foreignKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(foreignKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		agent string
		creds Credentials
		at    time.Time
		want  string
	}{
		"another agent's":  {"cluster2", creds, now, `CN "cluster1", want the agent name "cluster2"`},
		"another CA's":     {"cluster1", otherCreds, now, "not valid from the signing CA"},
		"expired":          {"cluster1", creds, cert.NotAfter.Add(time.Second), "not valid from the signing CA"},
		"key of another":   {"cluster1", Credentials{CertPEM: creds.CertPEM, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}, now, "does not match"},
		"no key":           {"cluster1", Credentials{CertPEM: creds.CertPEM}, now, "no PEM private key"},
		"garbage key":      {"cluster1", Credentials{CertPEM: creds.CertPEM, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("x")})}, now, "private key"},
		"two certificates": {"cluster1", Credentials{CertPEM: append(append([]byte{}, creds.CertPEM...), creds.CertPEM...), KeyPEM: creds.KeyPEM}, now, "exactly one"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Check(ca, tc.agent, tc.creds, tc.at); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// A server certificate of the CA (what the principal's own are) is no client certificate.
func TestCheckRefusesServerCertificate(t *testing.T) {
	ca := newCA(t, "hub-ca")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: ca.Cert.SerialNumber, Subject: pkix.Name{CommonName: "cluster1"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	creds := Credentials{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})}
	if _, err := Check(ca, "cluster1", creds, time.Now()); err == nil {
		t.Error("a serverAuth-only certificate passed as a cluster secret's client certificate")
	}
}

// Desired writes what `argocd-agentctl agent create` writes: the same data keys, Argo CD's JSON
// names in config, its labels and annotations, and takes no reserved label from the cluster.
func TestDesired(t *testing.T) {
	creds := Credentials{CertPEM: []byte("CERT"), KeyPEM: []byte("KEY")}
	labels := map[string]string{
		"env": "prod", "cluster.open-cluster-management.io/clusterset": "global",
		SecretTypeLabel: "repository", AgentNameLabel: "someone-else", ManagedLabel: "false",
		"argocd-agent-addon.open-cluster-management.io/revoked": "true",
		"feature.open-cluster-management.io/addon-argocd-agent": "available",
	}
	ac, err := Desired("argocd", "cluster1", "rp.example.com:9090", labels, creds, []byte("CA"))
	if err != nil {
		t.Fatal(err)
	}
	if *ac.Name != "cluster-cluster1" || *ac.Namespace != "argocd" {
		t.Errorf("name %s/%s", *ac.Namespace, *ac.Name)
	}
	wantLabels := map[string]string{
		"env": "prod", "cluster.open-cluster-management.io/clusterset": "global",
		SecretTypeLabel: "cluster", AgentNameLabel: "cluster1", ManagedLabel: "true",
	}
	if len(ac.Labels) != len(wantLabels) {
		t.Errorf("labels %v, want %v", ac.Labels, wantLabels)
	}
	for k, v := range wantLabels {
		if ac.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, ac.Labels[k], v)
		}
	}
	if ac.Annotations["argocd.argoproj.io/skip-reconcile"] != "true" || ac.Annotations["managed-by"] != "argocd-agent" {
		t.Errorf("annotations %v", ac.Annotations)
	}
	if got := string(ac.Data["server"]); got != "https://rp.example.com:9090?agentName=cluster1" {
		t.Errorf("server %q", got)
	}
	if got := string(ac.Data["name"]); got != "cluster1" {
		t.Errorf("name %q", got)
	}
	// Argo CD's ClusterConfig JSON: insecure always written, []byte as base64.
	if got, want := string(ac.Data["config"]), `{"tlsClientConfig":{"insecure":false,"certData":"Q0VSVA==","keyData":"S0VZ","caData":"Q0E="}}`; got != want {
		t.Errorf("config\n got %s\nwant %s", got, want)
	}
	secret := &corev1.Secret{Data: ac.Data}
	if got, ok := CredentialsOf(secret); !ok || string(got.CertPEM) != "CERT" || string(got.KeyPEM) != "KEY" {
		t.Errorf("CredentialsOf(Desired) = %+v, %v", got, ok)
	}
}

func TestCredentialsOfRefusesWhatIsNotThere(t *testing.T) {
	for name, data := range map[string]map[string][]byte{
		"no config":   {},
		"not JSON":    {"config": []byte("{")},
		"bearer only": {"config": []byte(`{"bearerToken":"t","tlsClientConfig":{"insecure":false}}`)},
		"no key":      {"config": mustJSON(t, map[string]any{"tlsClientConfig": map[string]any{"certData": []byte("C")}})},
	} {
		if _, ok := CredentialsOf(&corev1.Secret{Data: data}); ok {
			t.Errorf("%s: credentials found", name)
		}
	}
	if _, ok := CredentialsOf(nil); ok {
		t.Error("credentials in no secret")
	}
}

func TestValidateAddress(t *testing.T) {
	for _, ok := range []string{"argocd-agent-resource-proxy:9090", "10.0.0.1:9090", "[fd00::1]:443", "rp.argocd.svc.cluster.local:9090"} {
		if err := ValidateAddress(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "argocd-agent-resource-proxy", "https://rp:9090", "rp:0", "rp:99999", "rp:x", "under_score:9090", "rp:9090/path"} {
		if err := ValidateAddress(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseGroup(t *testing.T) {
	g, err := ParseGroup("argocd-agent-addon/argocd-agent-eu=argocd-eu,argocd-agent-resource-proxy.argocd-eu.svc:9090")
	if err != nil {
		t.Fatal(err)
	}
	if g.Placement.Namespace != "argocd-agent-addon" || g.Placement.Name != "argocd-agent-eu" || g.Namespace != "argocd-eu" ||
		g.ResourceProxyAddress != "argocd-agent-resource-proxy.argocd-eu.svc:9090" {
		t.Errorf("parsed %+v", g)
	}
	if g.String() != "argocd-agent-addon/argocd-agent-eu=argocd-eu,argocd-agent-resource-proxy.argocd-eu.svc:9090" {
		t.Errorf("String() = %q", g.String())
	}
	for _, bad := range []string{
		"", "eu=argocd-eu,proxy:9090", "addon/eu", "addon/eu=argocd-eu", "addon/eu=Argo CD,proxy:9090",
		"Addon/eu=argocd-eu,proxy:9090", "addon/=argocd-eu,proxy:9090", "addon/eu=argocd-eu,proxy", "addon/eu=argocd-eu,proxy:0",
	} {
		if _, err := ParseGroup(bad); err == nil {
			t.Errorf("ParseGroup(%q) accepted it", bad)
		} else {
			t.Log(err)
		}
	}
}
