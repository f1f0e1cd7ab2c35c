package status

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
)

func TestPrint(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	out := &bytes.Buffer{}
	if err := Print(out, []Row{
		{Cluster: "c1", Available: "True", CertNotAfter: now.Add(36 * time.Hour), CA: "0123456789abcdef", Mode: "managed", Image: "quay.io/a:v1"},
		{Cluster: "c2", Available: "False", CertNotAfter: now.Add(-time.Minute), Revoked: "key leaked"},
		{Cluster: "c3", Available: "Unknown"},
	}, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "CLUSTER") {
		t.Fatalf("want a header and 3 rows:\n%s", out)
	}
	for i, want := range [][]string{
		{"c1", "True", "2026-11-26T00:00:00Z (in 36h0m0s)", "0123456789abcdef", "managed", "quay.io/a:v1", "no"},
		{"c2", "False", "(EXPIRED)", "yes: key leaked"},
		{"c3", "Unknown", "-"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("row %d %q lacks %q", i+1, lines[i+1], w)
			}
		}
	}
}

// During a CA rollover the operator reads here when the old CA may leave the trust bundle.
func TestPrintCAs(t *testing.T) {
	last := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	out := &bytes.Buffer{}
	if err := PrintCAs(out, []issued.CAUsage{
		{ID: "aaaaaaaaaaaaaaaa", Role: "signing", Valid: 3, LastExpiry: last},
		{ID: "bbbbbbbbbbbbbbbb", Role: "trusted", Valid: 1, LastExpiry: last},
		{ID: "cccccccccccccccc", Role: "trusted"},
		{ID: "dddddddddddddddd", Valid: 2, LastExpiry: last},
	}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	for i, want := range []string{"CA", "signing", "keep in ca.crt until 2026-11-25T12:00:00Z", "may leave ca.crt", "NOT TRUSTED"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d %q lacks %q", i, lines[i], want)
		}
	}
}
