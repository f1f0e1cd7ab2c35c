package issued_test

import (
	"crypto/x509"
	"regexp"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
)

func TestBlocklistKey(t *testing.T) {
	// argocd-agent's TLS blocklist keys: SHA-256 of the DER, 64 upper-case hex digits, no
	// separators (ConfigMap keys cannot hold colons).
	if fp := issued.BlocklistKey([]byte("der")); !regexp.MustCompile(`^[0-9A-F]{64}$`).MatchString(fp) {
		t.Fatalf("fingerprint %q", fp)
	}
}

func TestRecord(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var certs []issued.Certificate
	certs = issued.Add(certs, issued.Certificate{Fingerprint: "A", CA: "old", NotAfter: now.Add(time.Minute)}, now)
	certs = issued.Add(certs, issued.Certificate{Fingerprint: "B", CA: "new", NotAfter: now.Add(time.Hour)}, now)
	// Later, A has expired: adding C drops it.
	later := now.Add(2 * time.Minute)
	certs = issued.Add(certs, issued.Certificate{Fingerprint: "C", CA: "new", NotAfter: later.Add(30 * time.Minute)}, later)
	if len(certs) != 2 || certs[0].Fingerprint != "B" || certs[1].Fingerprint != "C" {
		t.Fatalf("record %+v, want B then C", certs)
	}
	if n, _ := issued.Newest(certs); n.Fingerprint != "B" {
		t.Fatalf("newest %+v, want B (expires last)", n)
	}
	if v := issued.Valid(certs, now.Add(45*time.Minute)); len(v) != 1 || v[0].Fingerprint != "B" {
		t.Fatalf("valid %+v", v)
	}
	// Nothing unexpired is ever dropped: `revoke` must find every certificate.
	for i := 0; i < 40; i++ {
		certs = issued.Add(certs, issued.Certificate{Fingerprint: "X", NotAfter: now.Add(time.Hour)}, now)
	}
	if len(certs) != 42 {
		t.Fatalf("%d records, want all 42 unexpired ones", len(certs))
	}
}

func TestReadRefusesGarbage(t *testing.T) {
	obj := &metav1.ObjectMeta{Name: "argocd-agent", Namespace: "c1", Annotations: map[string]string{issued.Annotation: "{"}}
	if _, err := issued.Read(obj); err == nil {
		t.Fatal("a broken record was read")
	}
	obj.Annotations = nil
	if certs, err := issued.Read(obj); err != nil || certs != nil {
		t.Fatalf("no record: %v %v", certs, err)
	}
}

// What status and the metric say about each CA during a rollover.
func TestByCA(t *testing.T) {
	now := time.Now()
	ca := func(name string) *x509.Certificate {
		certPEM, _, err := testca.New(name, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		certs, err := authority.ParseCertificates(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		return certs[0]
	}
	signing, old, gone := ca("new"), ca("old"), ca("gone")
	rows := issued.ByCA(signing, []*x509.Certificate{old}, []issued.Certificate{
		{Fingerprint: "A", CA: authority.ID(signing), NotAfter: now.Add(time.Hour)},
		{Fingerprint: "B", CA: authority.ID(old), NotAfter: now.Add(time.Minute)},
		{Fingerprint: "C", CA: authority.ID(old), NotAfter: now.Add(-time.Minute)}, // expired: not counted
		{Fingerprint: "D", CA: authority.ID(gone), NotAfter: now.Add(time.Minute)},
	}, now)
	want := []issued.CAUsage{
		{ID: authority.ID(signing), Role: issued.RoleSigning, Valid: 1, LastExpiry: now.Add(time.Hour)},
		{ID: authority.ID(old), Role: issued.RoleTrusted, Valid: 1, LastExpiry: now.Add(time.Minute)},
		{ID: authority.ID(gone), Valid: 1, LastExpiry: now.Add(time.Minute)},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v", rows)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d %+v, want %+v", i, rows[i], want[i])
		}
	}
}

// ForCSR finds the certificate recorded for a CSR only for that CSR, from the same CA, unexpired.
func TestForCSR(t *testing.T) {
	now := time.Now()
	certs := []issued.Certificate{
		{Fingerprint: "OLD", CA: "ca", NotAfter: now.Add(-time.Minute), CSR: "u1", PEM: "expired"},
		{Fingerprint: "A", CA: "ca", NotAfter: now.Add(time.Hour), CSR: "u1", PEM: "a"},
		{Fingerprint: "B", CA: "ca", NotAfter: now.Add(time.Hour)}, // recorded by an earlier version
	}
	if pem, ok := issued.ForCSR(certs, "u1", "ca", now); !ok || string(pem) != "a" {
		t.Errorf("ForCSR(u1) = %q, %v; want a", pem, ok)
	}
	for _, tc := range []struct{ uid, ca string }{{"u2", "ca"}, {"u1", "other-ca"}, {"", "ca"}} {
		if pem, ok := issued.ForCSR(certs, types.UID(tc.uid), tc.ca, now); ok {
			t.Errorf("ForCSR(%q, %q) = %q, want none", tc.uid, tc.ca, pem)
		}
	}
}
