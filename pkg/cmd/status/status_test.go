package status

import (
	"bytes"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/delivered"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
)

func TestPrint(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	out := &bytes.Buffer{}
	if err := Print(out, []Row{
		{Cluster: "c1", Available: "True", ArgoCD: "ready", CertNotAfter: now.Add(36 * time.Hour), CA: "0123456789abcdef", Mode: "managed", Image: "quay.io/a:v1", Config: "1a2b3c4d (Completed)"},
		{Cluster: "c2", Available: "False", ArgoCD: "NOT READY (ArgoCDMissing)", CertNotAfter: now.Add(-time.Minute), Revoked: "key leaked"},
		{Cluster: "c3", Available: "Unknown"},
	}, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "CLUSTER") {
		t.Fatalf("want a header and 3 rows:\n%s", out)
	}
	for i, want := range [][]string{
		{"c1", "True", "ready", "2026-11-26T00:00:00Z (in 36h0m0s)", "0123456789abcdef", "managed", "quay.io/a:v1", "1a2b3c4d (Completed)", "no"},
		{"c2", "False", "NOT READY (ArgoCDMissing)", "(EXPIRED)", "yes: key leaked"},
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
	}, nil); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	for i, want := range []string{"CA", "signing", "keep in ca.crt until 2026-11-25T12:00:00Z", "may leave ca.crt", "NOT TRUSTED"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d %q lacks %q", i, lines[i], want)
		}
	}
	// A cluster that has not applied a bundle with the signing CA keeps the old CA in.
	out.Reset()
	if err := PrintCAs(out, []issued.CAUsage{{ID: "cccccccccccccccc", Role: "trusted"}}, []string{"c7"}); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); strings.Contains(got, "may leave") || !strings.Contains(got, "1 cluster(s) have not applied a trust bundle with the signing CA (c7)") {
		t.Errorf("with a bundle pending:\n%s", got)
	}
}

func TestRunning(t *testing.T) {
	// As OCM's registration agent writes it.
	msg := "client certificate rotated starting from 2026-12-01 09:55:00 +0000 UTC to 2026-12-08 10:00:00 +0000 UTC"
	onSpoke := time.Date(2026, 12, 8, 10, 0, 0, 0, time.UTC)
	previous := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	a := &addonv1beta1.ManagedClusterAddOn{Status: addonv1beta1.ManagedClusterAddOnStatus{Conditions: []metav1.Condition{{
		Type: "ClusterCertificateRotated", Status: metav1.ConditionTrue, Reason: "ClientCertificateUpdated", Message: msg}}}}
	recorded := []issued.Certificate{{NotAfter: previous}, {NotAfter: onSpoke}}
	delivered := workState{certificate: delivered.CertificateDigest(msg), applied: true}
	if r := running(a, delivered, recorded, true); !r.Known || !r.NotAfter.Equal(onSpoke) {
		t.Errorf("rolled out and Available: %+v, want the spoke's certificate", r)
	}
	if r := running(a, workState{certificate: "0123456789abcdef", applied: true}, recorded, true); r.Known || !r.RenewalPending || !r.NotAfter.Equal(previous) {
		t.Errorf("renewal not in the work: %+v, want pending and the previous certificate", r)
	}
	if r := running(a, workState{certificate: delivered.certificate}, recorded, true); r.Known || r.RenewalPending {
		t.Errorf("work not applied: %+v, want unknown, not pending", r)
	}
	out := &bytes.Buffer{}
	now := previous.Add(-10 * time.Minute)
	must.Succeed(t, Print(out, []Row{{Cluster: "c1", Running: running(a, workState{applied: true}, recorded, true)}}, now))
	if !strings.Contains(out.String(), "RENEWAL NOT DELIVERED, running one expires 2026-12-02T12:00:00Z") {
		t.Errorf("a running certificate about to expire before its renewal is not flagged:\n%s", out)
	}
}

func TestConfigState(t *testing.T) {
	ref := func(desired, applied string) addonv1beta1.ConfigReference {
		r := addonv1beta1.ConfigReference{
			ConfigGroupResource: addonv1beta1.ConfigGroupResource{Group: addonv1beta1.GroupName, Resource: "addondeploymentconfigs"},
			DesiredConfig:       &addonv1beta1.ConfigSpecHash{SpecHash: desired},
		}
		if applied != "" {
			r.LastAppliedConfig = &addonv1beta1.ConfigSpecHash{SpecHash: applied}
		}
		return r
	}
	progressing := func(reason string) []metav1.Condition {
		return []metav1.Condition{{Type: addonv1beta1.ManagedClusterAddOnConditionProgressing, Reason: reason}}
	}
	for _, tc := range []struct {
		refs  []addonv1beta1.ConfigReference
		conds []metav1.Condition
		want  string
	}{
		{nil, nil, ""},
		{[]addonv1beta1.ConfigReference{ref("aaaaaaaa1111", "aaaaaaaa1111")}, progressing("Completed"), "aaaaaaaa (Completed)"},
		{[]addonv1beta1.ConfigReference{ref("bbbbbbbb2222", "aaaaaaaa1111")}, progressing("Progressing"), "aaaaaaaa -> bbbbbbbb (Progressing)"},
		{[]addonv1beta1.ConfigReference{ref("bbbbbbbb2222", "")}, nil, "none -> bbbbbbbb"},
	} {
		a := &addonv1beta1.ManagedClusterAddOn{Status: addonv1beta1.ManagedClusterAddOnStatus{ConfigReferences: tc.refs, Conditions: tc.conds}}
		if got := configState(a); got != tc.want {
			t.Errorf("configState = %q, want %q", got, tc.want)
		}
	}
}

func TestPrincipalState(t *testing.T) {
	cond := func(status metav1.ConditionStatus, reason string) []metav1.Condition {
		return []metav1.Condition{{Type: "PrincipalAddress", Status: status, Reason: reason}}
	}
	for _, tc := range []struct {
		conds     []metav1.Condition
		delivered string
		want      string
	}{
		{nil, "", ""},
		{nil, "10.0.0.1:443", "10.0.0.1:443"},
		{cond(metav1.ConditionTrue, "PrincipalService"), "10.0.0.1:443", "10.0.0.1:443 (PrincipalService)"},
		{cond(metav1.ConditionFalse, "NoPrincipalAddress"), "", "none (NoPrincipalAddress)"},
		{cond(metav1.ConditionFalse, "NoPrincipalAddress"), "10.0.0.1:443", "10.0.0.1:443 (now none: NoPrincipalAddress)"},
	} {
		a := &addonv1beta1.ManagedClusterAddOn{Status: addonv1beta1.ManagedClusterAddOnStatus{Conditions: tc.conds}}
		if got := principalState(a, tc.delivered); got != tc.want {
			t.Errorf("principalState(%v, %q) = %q, want %q", tc.conds, tc.delivered, got, tc.want)
		}
	}
}

// The report carries what the tables do, in its stable schema; JSON and YAML say the same.
func TestReport(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	rows := []Row{
		{Cluster: "c1", Available: "True", ArgoCD: "ready", CertNotAfter: now.Add(36 * time.Hour), CA: "ca1", Mode: "managed", Image: "quay.io/a:v1",
			Running: Running{Known: true, NotAfter: now.Add(36 * time.Hour)}, BundleApplied: true},
		{Cluster: "c2", Available: "-", CertNotAfter: now.Add(-time.Minute), Revoked: "key leaked (revoked 2026-11-24T11:00:00Z)"},
		{Cluster: "c3", Available: "Unknown"},
	}
	cas := []issued.CAUsage{{ID: "ca1", Role: issued.RoleSigning, Valid: 1, LastExpiry: now.Add(36 * time.Hour)}, {ID: "ca0", Role: issued.RoleTrusted}}
	r := NewReport(rows, cas, now)
	for _, format := range []string{OutputJSON, OutputYAML} {
		out := &bytes.Buffer{}
		must.Succeed(t, PrintReport(out, format, r))
		var got Report
		must.Succeed(t, yaml.Unmarshal(out.Bytes(), &got))
		if got.APIVersion != ReportAPIVersion || got.Kind != ReportKind || !got.Time.Equal(now) || len(got.Clusters) != 3 || len(got.CAs) != 2 {
			t.Fatalf("-o %s: %s", format, out)
		}
		c1, c2, c3 := got.Clusters[0], got.Clusters[1], got.Clusters[2]
		if c1.Name != "c1" || c1.Available != "True" || c1.Certificate == nil || c1.Certificate.CA != "ca1" || c1.Certificate.Expired ||
			!c1.Certificate.NotAfter.Equal(now.Add(36*time.Hour)) || !c1.Running.Known || c1.Running.NotAfter == nil || !c1.BundleApplied || c1.Mode != "managed" || c1.ArgoCD != "ready" {
			t.Errorf("-o %s: c1 %+v", format, c1)
		}
		if c2.Available != "Removed" || c2.Certificate == nil || !c2.Certificate.Expired || !strings.HasPrefix(c2.Revoked, "key leaked") {
			t.Errorf("-o %s: c2 %+v", format, c2)
		}
		if c3.Certificate != nil || c3.Running.NotAfter != nil || c3.Revoked != "" {
			t.Errorf("-o %s: c3 %+v", format, c3)
		}
		// c3 has the add-on and no bundle applied; c2's add-on is gone.
		if len(got.BundlePending) != 1 || got.BundlePending[0] != "c3" {
			t.Errorf("-o %s: bundle pending %v", format, got.BundlePending)
		}
		if got.CAs[1].ID != "ca0" || !strings.Contains(got.CAs[1].Note, "keep in ca.crt") || got.CAs[1].LastExpiry != nil {
			t.Errorf("-o %s: trusted CA %+v", format, got.CAs[1])
		}
	}
	if err := (&Options{Output: "xml"}).Validate(); err == nil || !strings.Contains(err.Error(), "-o \"xml\"") {
		t.Errorf("-o xml: %v", err)
	}
}
