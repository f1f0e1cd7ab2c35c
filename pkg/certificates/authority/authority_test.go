package authority_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/ocmcsr"
)

var now = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

type caSpec struct {
	key      crypto.Signer
	isCA     bool
	usage    x509.KeyUsage
	notAfter time.Time
}

func makeCA(t testing.TB, s caSpec) []byte {
	t.Helper()
	if s.notAfter.IsZero() {
		s.notAfter = now.Add(365 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "argocd-agent-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              s.notAfter,
		IsCA:                  s.isCA,
		BasicConstraintsValid: true,
		KeyUsage:              s.usage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.key.Public(), s.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func pkcs8(t testing.TB, k crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestParseKeyFormats(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	for name, tc := range map[string]struct {
		key    crypto.Signer
		keyPEM []byte
	}{
		"RSA PKCS#1":   {rsaKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})},
		"RSA PKCS#8":   {rsaKey, pkcs8(t, rsaKey)},
		"ECDSA SEC1":   {ecKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})},
		"ECDSA PKCS#8": {ecKey, pkcs8(t, ecKey)},
	} {
		t.Run(name, func(t *testing.T) {
			certPEM := makeCA(t, caSpec{key: tc.key, isCA: true, usage: x509.KeyUsageCertSign})
			ca, err := authority.Parse(certPEM, tc.keyPEM, now)
			if err != nil {
				t.Fatal(err)
			}
			csr, _, err := ocmcsr.New(ocmcsr.Request{Cluster: "c1"})
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode(csr.Spec.Request)
			req, _ := x509.ParseCertificateRequest(block.Bytes)
			certOut, err := ca.Sign(req, time.Hour, now)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := ca.Verify(certOut, now)
			if err != nil {
				t.Fatalf("issued certificate does not verify: %v", err)
			}
			if cert.Subject.CommonName != "c1" {
				t.Errorf("CN %q", cert.Subject.CommonName)
			}
			if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
				t.Errorf("ext key usage %v, want client auth only", cert.ExtKeyUsage)
			}
			if cert.IsCA {
				t.Error("issued a CA certificate")
			}
			if len(cert.DNSNames)+len(cert.IPAddresses)+len(cert.URIs)+len(cert.EmailAddresses) != 0 {
				t.Error("issued certificate carries SANs")
			}
			if got := cert.NotAfter.Sub(now); got != time.Hour {
				t.Errorf("lifetime %s, want 1h", got)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := makeCA(t, caSpec{key: key, isCA: true, usage: x509.KeyUsageCertSign})
	for name, tc := range map[string]struct {
		cert, key []byte
		want      string
	}{
		"no certificate":       {nil, pkcs8(t, key), "no PEM CERTIFICATE"},
		"not a CA":             {makeCA(t, caSpec{key: key, usage: x509.KeyUsageDigitalSignature}), pkcs8(t, key), "not a CA"},
		"CA without certSign":  {makeCA(t, caSpec{key: key, isCA: true, usage: x509.KeyUsageDigitalSignature}), pkcs8(t, key), "certSign"},
		"expired CA":           {makeCA(t, caSpec{key: key, isCA: true, usage: x509.KeyUsageCertSign, notAfter: now.Add(-time.Minute)}), pkcs8(t, key), "expired"},
		"key of another CA":    {good, pkcs8(t, other), "does not match"},
		"no key":               {good, nil, "no PEM block"},
		"unsupported key type": {good, pem.EncodeToMemory(&pem.Block{Type: "DSA PRIVATE KEY", Bytes: []byte{1}}), "unsupported"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := authority.Parse(tc.cert, tc.key, now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestSignNeverOutlivesCA(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caNotAfter := now.Add(2 * time.Hour)
	ca, err := authority.Parse(makeCA(t, caSpec{key: key, isCA: true, usage: x509.KeyUsageCertSign, notAfter: caNotAfter}), pkcs8(t, key), now)
	if err != nil {
		t.Fatal(err)
	}
	csr, _, _ := ocmcsr.New(ocmcsr.Request{Cluster: "c1"})
	block, _ := pem.Decode(csr.Spec.Request)
	req, _ := x509.ParseCertificateRequest(block.Bytes)
	out, err := ca.Sign(req, 7*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Verify(out, now)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.Equal(caNotAfter.Truncate(time.Second)) {
		t.Fatalf("notAfter %s, want the CA's %s", cert.NotAfter, caNotAfter)
	}
	if !cert.NotBefore.Equal(now.Add(-authority.ClockSkew)) {
		t.Fatalf("notBefore %s, want now-%s", cert.NotBefore, authority.ClockSkew)
	}
}

func TestBundleHoldsOnlyTheCertificate(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	certPEM := makeCA(t, caSpec{key: key, isCA: true, usage: x509.KeyUsageCertSign})
	keyPEM := pkcs8(t, key)
	// A secret whose tls.crt also carries the key must not leak it through the bundle.
	ca, err := authority.Parse(append(append([]byte{}, certPEM...), keyPEM...), keyPEM, now)
	if err != nil {
		t.Fatal(err)
	}
	bundle := string(ca.BundlePEM())
	if strings.Contains(bundle, "PRIVATE KEY") || strings.Count(bundle, "BEGIN CERTIFICATE") != 1 {
		t.Fatalf("bundle is not exactly the CA certificate:\n%s", bundle)
	}
}

// The trust bundle agents get is the signing CA plus the valid CAs of ca.crt, once each: the
// overlap that lets a CA roll over without an agent losing trust in the principal.
func TestTrustBundle(t *testing.T) {
	key := func() crypto.Signer { k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return k }
	signingKey := key()
	signing := makeCA(t, caSpec{key: signingKey, isCA: true, usage: x509.KeyUsageCertSign})
	previousKey := key()
	previous := makeCA(t, caSpec{key: previousKey, isCA: true, usage: x509.KeyUsageCertSign})
	expired := makeCA(t, caSpec{key: key(), isCA: true, usage: x509.KeyUsageCertSign, notAfter: now.Add(-time.Minute)})
	leaf := makeCA(t, caSpec{key: key(), isCA: false})

	parse := func(t *testing.T) *authority.CA {
		ca, err := authority.Parse(signing, pkcs8(t, signingKey), now)
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	join := func(pems ...[]byte) []byte {
		return []byte(strings.Join(func() []string {
			var s []string
			for _, p := range pems {
				s = append(s, string(p))
			}
			return s
		}(), ""))
	}

	t.Run("signing CA alone", func(t *testing.T) {
		ca := parse(t)
		if _, err := ca.Trust(nil, now); err != nil {
			t.Fatal(err)
		}
		if got := string(ca.BundlePEM()); got != string(signing) {
			t.Fatalf("bundle %q, want the signing CA only", got)
		}
	})
	t.Run("previous CA added, signing CA and duplicates once", func(t *testing.T) {
		ca := parse(t)
		dropped, err := ca.Trust(join(previous, signing, previous, expired), now)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(ca.BundlePEM()); got != string(join(signing, previous)) && got != string(join(previous, signing)) {
			t.Fatalf("bundle\n%s\nwant the signing and the previous CA, once each", got)
		}
		// Swapping which of the two signs leaves the bundle as it is: no pod rolls for it.
		swapped, err := authority.Parse(previous, pkcs8(t, previousKey), now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := swapped.Trust(signing, now); err != nil {
			t.Fatal(err)
		}
		if string(swapped.BundlePEM()) != string(ca.BundlePEM()) || swapped.ID() == ca.ID() {
			t.Fatal("swapping the signing CA changed the bundle, or kept the ID")
		}
		if len(dropped) != 1 || !dropped[0].NotAfter.Before(now) {
			t.Fatalf("expired CAs reported: %v, want the expired one", dropped)
		}
		if ca.ID() != authority.ID(ca.Cert) || len(ca.ID()) != 16 {
			t.Fatalf("ID %q is not the 16-digit ID of the signing CA", ca.ID())
		}
	})
	for name, bad := range map[string]struct {
		data []byte
		want string
	}{
		"a private key": {pkcs8(t, signingKey), `"PRIVATE KEY" block`},
		"a non-CA":      {leaf, "is not a CA"},
		"not PEM":       {[]byte("hello"), "not PEM"},
		"a broken cert": {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), "ca.crt"},
	} {
		t.Run("refuses "+name, func(t *testing.T) {
			_, err := parse(t).Trust(join(previous, bad.data), now)
			if err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Fatalf("error %v, want one containing %q", err, bad.want)
			}
		})
	}
}

// FuzzTrust: whatever an operator puts in ca.crt, Trust either refuses it with an error or
// yields a bundle of CA certificates that starts with the signing CA; it never panics.
func FuzzTrust(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signing := makeCA(f, caSpec{key: k, isCA: true, usage: x509.KeyUsageCertSign})
	f.Add(makeCA(f, caSpec{key: other, isCA: true, usage: x509.KeyUsageCertSign}))
	f.Add(signing)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	key := pkcs8(f, k)
	f.Fuzz(func(t *testing.T, trust []byte) {
		ca, err := authority.Parse(signing, key, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ca.Trust(trust, now); err != nil {
			return
		}
		if !ca.Trusted[0].Equal(ca.Cert) {
			t.Fatal("the signing CA is not first in the trusted set")
		}
		for _, c := range ca.Trusted {
			if !c.IsCA || !now.Before(c.NotAfter) {
				t.Fatalf("trusted a non-CA or expired certificate %q", c.Subject)
			}
		}
		if _, err := authority.ParseCertificates(ca.BundlePEM()); err != nil {
			t.Fatalf("bundle does not parse: %v", err)
		}
	})
}
