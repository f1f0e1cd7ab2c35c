package approver_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/approver"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/internal/csrtest"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/metrics"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/revocation"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/ocmcsr"
)

var now = time.Now().UTC().Truncate(time.Second)

// setup returns a hub whose calls funcs intercept, the count of its writes, an approver on it,
// its event recorder, and the CA it expects subjects to name.
func setup(t *testing.T, funcs interceptor.Funcs) (client.Client, *csrtest.Writes, *approver.Reconciler, *events.FakeRecorder, *authority.CA) {
	t.Helper()
	counted, writes := csrtest.Counting(funcs)
	c := csrtest.Hub(t, counted)
	ca := csrtest.NewCA(t)
	recorder := events.NewFakeRecorder(100)
	a := &approver.Reconciler{Client: c, CA: csrtest.StaticCA{CA: ca}, Policy: policy.Policy{Subject: identity.SubjectClusterName},
		RecordNamespace: csrtest.RecordNamespace, Events: recorder, Now: func() time.Time { return now }}
	return c, writes, a, recorder, ca
}

func reconcileOK(t *testing.T, a *approver.Reconciler, name string) {
	t.Helper()
	if res, err := csrtest.Reconcile(a, name); err != nil || !res.IsZero() {
		t.Fatalf("reconcile %s: %+v, %v; want done", name, res, err)
	}
}

// A CSR filed as the cluster's OCM agent files it is approved, through the approval
// subresource, and nothing else: no certificate, no record, no event.
func TestApprovesAgentCSR(t *testing.T) {
	c, writes, a, recorder, ca := setup(t, interceptor.Funcs{})
	approvedBefore := testutil.ToFloat64(metrics.CSRsApproved)
	csr := csrtest.File(t, c, ca, ocmcsr.Request{})
	reconcileOK(t, a, csr.Name)

	got := csrtest.Get(t, c, csr.Name)
	want := fmt.Sprintf("request from cluster %q matches its agent's registration", csrtest.Cluster)
	if len(got.Status.Conditions) != 1 {
		t.Fatalf("conditions %+v, want Approved only", got.Status.Conditions)
	}
	if cond := got.Status.Conditions[0]; cond.Type != certificatesv1.CertificateApproved || cond.Status != corev1.ConditionTrue ||
		cond.Reason != approver.ReasonApproved || cond.Message != want || cond.LastUpdateTime.IsZero() {
		t.Fatalf("condition %+v, want Approved %s: %s", cond, approver.ReasonApproved, want)
	}
	if len(got.Status.Certificate) > 0 {
		t.Fatal("the approver put a certificate on the CSR")
	}
	if w := writes.CSRs(); !reflect.DeepEqual(w, []string{"patch approval"}) {
		t.Fatalf("CSR writes %v, want one patch of the approval subresource", w)
	}
	if r := writes.Records(); len(r) != 0 {
		t.Fatalf("record writes %v: the approver writes no record", r)
	}
	if d := testutil.ToFloat64(metrics.CSRsApproved) - approvedBefore; d != 1 {
		t.Errorf("csr_approved_total went up by %v, want 1", d)
	}
	if ev := csrtest.Events(recorder); len(ev) != 0 {
		t.Errorf("events %q, want none for an approval", ev)
	}
}

// A CSR for another signer is not the approver's: it stays undecided, and nothing is written
// or recorded for it, whatever it asks for.
func TestIgnoresOtherSigners(t *testing.T) {
	c, writes, a, recorder, ca := setup(t, interceptor.Funcs{})
	for _, r := range []ocmcsr.Request{
		{Signer: "example.com/other-signer"},
		{Signer: certificatesv1.KubeAPIServerClientSignerName, Username: "mallory"},
	} {
		csr := csrtest.File(t, c, ca, r)
		reconcileOK(t, a, csr.Name)
		if got := csrtest.Get(t, c, csr.Name); len(got.Status.Conditions) != 0 || len(got.Status.Certificate) > 0 {
			t.Fatalf("CSR for %s decided: %+v", r.Signer, got.Status)
		}
	}
	if w := writes.CSRs(); len(w) != 0 {
		t.Fatalf("CSR writes %v, want none", w)
	}
	if ev := csrtest.Events(recorder); len(ev) != 0 {
		t.Fatalf("events %q, want none", ev)
	}
}

// A CSR the policy refuses is denied through the approval subresource, with the policy's reason
// and message in the condition and in a warning event, and counted by reason. The policy's own
// cases are policy_test's and test/integration's; these are one of each kind of fact it reads:
// the CSR alone, the ManagedCluster, the record.
func TestDeniesWithThePolicyReason(t *testing.T) {
	// A key the record says was certified for the cluster before.
	certified, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(certified.Public())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		// record, if set, changes the cluster's record before the CSR is filed.
		record func(*issued.Record)
		file   func(t *testing.T, c client.Client, ca *authority.CA) *certificatesv1.CertificateSigningRequest
		want   policy.Reason
	}{
		{name: "requester of another cluster", want: policy.ReasonWrongRequester,
			file: func(t *testing.T, c client.Client, ca *authority.CA) *certificatesv1.CertificateSigningRequest {
				return csrtest.File(t, c, ca, ocmcsr.Request{Username: ocmcsr.AgentUsername("c2")})
			}},
		{name: "malformed request", want: policy.ReasonMalformedRequest,
			file: func(t *testing.T, c client.Client, _ *authority.CA) *certificatesv1.CertificateSigningRequest {
				// The API server refuses it; the approver must too if it ever sees one.
				return csrtest.Create(t, c, ocmcsr.Wrap(ocmcsr.Request{Cluster: csrtest.Cluster, Username: ocmcsr.AgentUsername(csrtest.Cluster)},
					[]byte("-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgQ1NS\n-----END CERTIFICATE REQUEST-----\n")))
			}},
		{name: "request over the size bound", want: policy.ReasonRequestTooLarge,
			file: func(t *testing.T, c client.Client, _ *authority.CA) *certificatesv1.CertificateSigningRequest {
				return csrtest.Create(t, c, ocmcsr.Wrap(ocmcsr.Request{Cluster: csrtest.Cluster, Username: ocmcsr.AgentUsername(csrtest.Cluster)},
					bytes.Repeat([]byte("A"), certificates.MaxRequestBytes+1)))
			}},
		{name: "subject of another cluster", want: policy.ReasonSubjectMismatch,
			file: func(t *testing.T, c client.Client, ca *authority.CA) *certificatesv1.CertificateSigningRequest {
				return csrtest.File(t, c, ca, ocmcsr.Request{Subject: &pkix.Name{CommonName: "c2", OrganizationalUnit: []string{identity.CAUnit(ca.ID())}}})
			}},
		{name: "server auth usage", want: policy.ReasonDisallowedUsages,
			file: func(t *testing.T, c client.Client, ca *authority.CA) *certificatesv1.CertificateSigningRequest {
				return csrtest.File(t, c, ca, ocmcsr.Request{Usages: []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth, certificatesv1.UsageServerAuth}})
			}},
		{name: "unknown cluster", want: policy.ReasonUnknownCluster,
			file: func(t *testing.T, c client.Client, ca *authority.CA) *certificatesv1.CertificateSigningRequest {
				return csrtest.File(t, c, ca, ocmcsr.Request{Cluster: "ghost"})
			}},
		{name: "key certified before", want: policy.ReasonDuplicateKey,
			record: func(r *issued.Record) {
				r.Issue(issued.Certificate{Fingerprint: "EARLIER", NotAfter: now.Add(time.Hour)}, issued.KeyOf(spki), now)
			},
			file: func(t *testing.T, c client.Client, ca *authority.CA) *certificatesv1.CertificateSigningRequest {
				return csrtest.File(t, c, ca, ocmcsr.Request{Key: certified})
			}},
		{name: "revoked cluster", want: policy.ReasonRevoked,
			record: func(r *issued.Record) { r.Revocation = &revocation.Revocation{Reason: "key leaked", RevokedAt: now} },
			file: func(t *testing.T, c client.Client, ca *authority.CA) *certificatesv1.CertificateSigningRequest {
				return csrtest.File(t, c, ca, ocmcsr.Request{})
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, writes, a, recorder, ca := setup(t, interceptor.Funcs{})
			if tc.record != nil {
				if _, err := issued.Update(context.Background(), c, c, csrtest.RecordNamespace, csrtest.Cluster, func(r *issued.Record) error {
					tc.record(r)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			recordWrites := len(writes.Records())
			csr := tc.file(t, c, ca)
			// What the policy says of it, which the approver must pass on as it is.
			_, _, rej, err := a.Policy.Decide(context.Background(), c, csr, ca.ID(), csrtest.RecordNamespace, now)
			if err != nil || rej == nil || rej.Reason != tc.want || rej.Message == "" {
				t.Fatalf("policy: %v, %v; want %s", rej, err, tc.want)
			}
			deniedBefore := testutil.ToFloat64(metrics.CSRsDenied.WithLabelValues(string(tc.want)))
			reconcileOK(t, a, csr.Name)

			got := csrtest.Get(t, c, csr.Name)
			if len(got.Status.Conditions) != 1 {
				t.Fatalf("conditions %+v, want Denied only", got.Status.Conditions)
			}
			if cond := got.Status.Conditions[0]; cond.Type != certificatesv1.CertificateDenied || cond.Status != corev1.ConditionTrue ||
				cond.Reason != string(tc.want) || cond.Message != rej.Message {
				t.Fatalf("condition %+v, want Denied %s: %s", cond, tc.want, rej.Message)
			}
			if w := writes.CSRs(); !reflect.DeepEqual(w, []string{"patch approval"}) {
				t.Fatalf("CSR writes %v, want one patch of the approval subresource", w)
			}
			if r := writes.Records()[recordWrites:]; len(r) != 0 {
				t.Fatalf("record writes %v: the approver writes no record", r)
			}
			if d := testutil.ToFloat64(metrics.CSRsDenied.WithLabelValues(string(tc.want))) - deniedBefore; d != 1 {
				t.Errorf("csr_denied_total{reason=%s} went up by %v, want 1", tc.want, d)
			}
			if ev, want := csrtest.Events(recorder), "Warning "+string(tc.want)+" denied: "+rej.Message; !reflect.DeepEqual(ev, []string{want}) {
				t.Errorf("events %q, want %q", ev, want)
			}
		})
	}
}

// A decided CSR is left as it is, even one the policy would refuse now: the approver never
// changes a decision, and an approved CSR is the signer's to check again.
func TestLeavesDecidedCSRs(t *testing.T) {
	c, writes, a, recorder, ca := setup(t, interceptor.Funcs{})
	hostile := ocmcsr.Request{Username: ocmcsr.AgentUsername("c2")}
	for _, decided := range [][]certificatesv1.RequestConditionType{
		{certificatesv1.CertificateApproved},
		{certificatesv1.CertificateDenied},
		{certificatesv1.CertificateApproved, certificatesv1.CertificateFailed},
	} {
		for _, r := range []ocmcsr.Request{{}, hostile} {
			csr := csrtest.File(t, c, ca, r, decided...)
			before := csrtest.Get(t, c, csr.Name)
			reconcileOK(t, a, csr.Name)
			if after := csrtest.Get(t, c, csr.Name); !reflect.DeepEqual(after.Status, before.Status) {
				t.Fatalf("%v CSR from %s: status %+v, was %+v", decided, csr.Spec.Username, after.Status, before.Status)
			}
		}
	}
	if w := writes.CSRs(); len(w) != 0 {
		t.Fatalf("CSR writes %v, want none", w)
	}
	if ev := csrtest.Events(recorder); len(ev) != 0 {
		t.Fatalf("events %q, want none", ev)
	}
}

// Without a usable CA no subject can be checked: the CSR stays undecided, is retried after
// certificates.CARetry (the CA secret watch usually comes first), and an event says why.
func TestApproverWaitsForCA(t *testing.T) {
	c, writes, a, recorder, ca := setup(t, interceptor.Funcs{})
	a.CA = csrtest.StaticCA{Err: errors.New("CA secret argocd/argocd-agent-ca not found")}
	csr := csrtest.File(t, c, ca, ocmcsr.Request{})
	res, err := csrtest.Reconcile(a, csr.Name)
	if err != nil || res.RequeueAfter != certificates.CARetry {
		t.Fatalf("reconcile without a CA: %+v, %v; want a retry after %s", res, err, certificates.CARetry)
	}
	if got := csrtest.Get(t, c, csr.Name); !certificates.Pending(got) {
		t.Fatalf("decided without a CA: %+v", got.Status)
	}
	if w := writes.CSRs(); len(w) != 0 {
		t.Fatalf("CSR writes %v, want none", w)
	}
	want := "Warning " + certificates.ReasonCAUnavailable + " waiting for a usable CA: CA secret argocd/argocd-agent-ca not found"
	if ev := csrtest.Events(recorder); !reflect.DeepEqual(ev, []string{want}) {
		t.Fatalf("events %q, want %q", ev, want)
	}
}

// Another approver (anyone with the approve right) decided the CSR after this one read it: this
// one's decision, written over the version it read, is refused, so the CSR never holds both;
// the CSR is retried soon, and then left as the other decided.
func TestDecisionRacedByAnotherApprover(t *testing.T) {
	raced := false
	c, writes, a, recorder, ca := setup(t, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if sub == "approval" && !raced {
				raced = true
				other := &certificatesv1.CertificateSigningRequest{}
				if err := c.Get(ctx, types.NamespacedName{Name: obj.GetName()}, other); err != nil {
					return err
				}
				orig := other.DeepCopy()
				other.Status.Conditions = append(other.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
					Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue, Reason: "DeniedByAnAdmin", LastUpdateTime: metav1.Now()})
				if err := c.SubResource("approval").Patch(ctx, other, client.MergeFrom(orig)); err != nil {
					return err
				}
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	})
	approvedBefore := testutil.ToFloat64(metrics.CSRsApproved)
	csr := csrtest.File(t, c, ca, ocmcsr.Request{})
	res, err := csrtest.Reconcile(a, csr.Name)
	if err != nil || res.RequeueAfter <= 0 {
		t.Fatalf("reconcile across another decision: %+v, %v; want a retry and no error", res, err)
	}
	check := func() {
		t.Helper()
		got := csrtest.Get(t, c, csr.Name)
		if len(got.Status.Conditions) != 1 || got.Status.Conditions[0].Reason != "DeniedByAnAdmin" {
			t.Fatalf("conditions %+v, want the other approver's denial only", got.Status.Conditions)
		}
	}
	check()
	reconcileOK(t, a, csr.Name)
	check()
	if w := writes.CSRs(); !reflect.DeepEqual(w, []string{"patch approval"}) {
		t.Fatalf("CSR writes %v, want the one refused patch", w)
	}
	if d := testutil.ToFloat64(metrics.CSRsApproved) - approvedBefore; d != 0 {
		t.Errorf("csr_approved_total went up by %v for a decision that was refused", d)
	}
	if ev := csrtest.Events(recorder); len(ev) != 0 {
		t.Fatalf("events %q, want none", ev)
	}
}
