// Package authority holds the CA that signs agent client certificates: parsing it from the hub
// secret (as `argocd-agentctl pki init` makes it), reading it from there as it changes (Source,
// SecretSource), issuing certificates from it and verifying them.
//
// addon-framework's utils.DefaultSignerWithExpiry is not used: it accepts only PKCS#1 RSA CA
// keys and stamps ServerAuth on client certificates.
package authority

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// Keys of the hub CA secret (type kubernetes.io/tls). CertKey and KeyKey are the signing CA;
// TrustKey, optional, holds more CA certificates to trust, such as the previous CA during a
// rollover. The principal trusts both CertKey and TrustKey, and so do the agents.
const (
	CertKey  = "tls.crt"
	KeyKey   = "tls.key"
	TrustKey = "ca.crt"
)

// ClockSkew backdates certificates so a spoke whose clock runs a little behind accepts them.
const ClockSkew = 5 * time.Minute

// CA is a parsed, usable certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Trusted are the CA certificates agents trust: Cert first, then those of TrustKey that
	// are still valid, without duplicates.
	Trusted []*x509.Certificate
}

// Parse reads a CA from PEM: the first certificate of certPEM is the CA, keyPEM holds its key
// (PKCS#1 RSA, PKCS#8 RSA/ECDSA/Ed25519, or SEC1 ECDSA). It checks that the certificate is a CA
// that may sign certificates, that the key matches it, and that it is valid at now.
func Parse(certPEM, keyPEM []byte, now time.Time) (*CA, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", CertKey)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CertKey, err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("%s: certificate %q is not a CA (basicConstraints CA:TRUE missing)", CertKey, cert.Subject)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: certificate %q may not sign certificates (keyUsage lacks certSign)", CertKey, cert.Subject)
	}
	if now.Before(cert.NotBefore) {
		return nil, fmt.Errorf("%s: CA %q is not valid before %s", CertKey, cert.Subject, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if !now.Before(cert.NotAfter) {
		return nil, fmt.Errorf("%s: CA %q expired at %s", CertKey, cert.Subject, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyKey, err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s: private key does not match the CA certificate in %s", KeyKey, CertKey)
	}
	return &CA{Cert: cert, Key: key, Trusted: []*x509.Certificate{cert}}, nil
}

// Trust adds the CA certificates of trustPEM (the secret's TrustKey) to ca.Trusted. Only
// CERTIFICATE blocks of CA certificates are accepted; one that has expired at now is left out,
// since it can verify nothing, and returned so the caller can say so.
func (ca *CA) Trust(trustPEM []byte, now time.Time) (expired []*x509.Certificate, err error) {
	found, err := ParseCertificates(trustPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", TrustKey, err)
	}
	for _, cert := range found {
		if !cert.IsCA || !cert.BasicConstraintsValid {
			return nil, fmt.Errorf("%s: certificate %q is not a CA", TrustKey, cert.Subject)
		}
	}
	for _, cert := range found {
		switch {
		case !now.Before(cert.NotAfter):
			expired = append(expired, cert)
		case !ca.trusts(cert):
			ca.Trusted = append(ca.Trusted, cert)
		}
	}
	return expired, nil
}

// ParseCertificates parses PEM that holds certificates and nothing else.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; len(bytes.TrimSpace(rest)) > 0; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return nil, errors.New("data that is not PEM")
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("holds a %q block; it may hold certificates only", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, cert)
	}
	return certs, nil
}

// firstExpiry is when the first of the trusted certificates expires.
func (ca *CA) firstExpiry() time.Time {
	first := ca.Cert.NotAfter
	for _, t := range ca.Trusted {
		if t.NotAfter.Before(first) {
			first = t.NotAfter
		}
	}
	return first
}

func (ca *CA) trusts(cert *x509.Certificate) bool {
	for _, t := range ca.Trusted {
		if t.Equal(cert) {
			return true
		}
	}
	return false
}

func parseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported PKCS#8 key type %T", k)
		}
		return signer, nil
	default:
		return nil, fmt.Errorf("unsupported PEM block %q (want RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY)", block.Type)
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}

// BundlePEM is the trust bundle agents get: the trusted CA certificates alone, re-encoded from
// their parsed form so that nothing else that may sit in the secret (a stray key) reaches a
// spoke. They are in a fixed order (by fingerprint), so that swapping the signing CA with one
// in ca.crt, as a rollover does, leaves the bundle, and the agents' pods, as they are.
func (ca *CA) BundlePEM() []byte {
	certs := slices.Clone(ca.Trusted)
	slices.SortFunc(certs, func(a, b *x509.Certificate) int { return strings.Compare(Fingerprint(a), Fingerprint(b)) })
	var b bytes.Buffer
	for _, cert := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	}
	return b.Bytes()
}

// Fingerprint is the hex SHA-256 of the CA certificate.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.Cert) }

// ID names the signing CA in certificate subjects (identity.CAUnit) and in status: the first 16
// hex digits of its SHA-256.
func (ca *CA) ID() string { return ID(ca.Cert) }

// Fingerprint is the hex SHA-256 of a certificate's DER.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// ID is the short name of CA certificate cert: the first 16 hex digits of its SHA-256.
func ID(cert *x509.Certificate) string { return Fingerprint(cert)[:16] }

// Sign issues a client certificate for req, which the caller has already checked. It is valid
// from now-ClockSkew for lifetime, but never past the CA's own expiry; the extended key usage is
// client authentication only.
func (ca *CA) Sign(req *x509.CertificateRequest, lifetime time.Duration, now time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := req.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               req.Subject,
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, req.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// Verify checks that certPEM is a client certificate issued by ca, at now.
func (ca *CA) Verify(certPEM []byte, now time.Time) (*x509.Certificate, error) {
	block, rest := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("want exactly one PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return cert, err
}
