package signer_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/internal/csrtest"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/metrics"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/signer"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/revocation"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/ocmcsr"
)

// now is the signers' clock, to the second, as certificates hold it.
var now = time.Now().UTC().Truncate(time.Second)

// newSigner returns a signer on c, signing with ca for an hour at now, and its event recorder.
// Signers made with the same c and ca are replicas of one manager, or the manager restarted.
func newSigner(c client.Client, ca *authority.CA) (*signer.Reconciler, *events.FakeRecorder) {
	recorder := events.NewFakeRecorder(100)
	return &signer.Reconciler{Client: c, CA: csrtest.StaticCA{CA: ca}, Policy: policy.Policy{Subject: identity.SubjectClusterName},
		Lifetime: time.Hour, RecordNamespace: csrtest.RecordNamespace, Events: recorder, Now: func() time.Time { return now }}, recorder
}

// setup returns a hub whose calls funcs intercept, the count of its writes, a signer on it and
// the signer's CA.
func setup(t *testing.T, funcs interceptor.Funcs) (client.Client, *csrtest.Writes, *signer.Reconciler, *events.FakeRecorder, *authority.CA) {
	t.Helper()
	counted, writes := csrtest.Counting(funcs)
	c := csrtest.Hub(t, counted)
	ca := csrtest.NewCA(t)
	s, recorder := newSigner(c, ca)
	return c, writes, s, recorder, ca
}

// approved files an approved CSR of the cluster's agent, as OCM files it, and returns it.
func approved(t *testing.T, c client.Client, ca *authority.CA, r ocmcsr.Request) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	return csrtest.File(t, c, ca, r, certificatesv1.CertificateApproved)
}

func reconcileOK(t *testing.T, s *signer.Reconciler, name string) {
	t.Helper()
	if res, err := csrtest.Reconcile(s, name); err != nil || !res.IsZero() {
		t.Fatalf("reconcile %s: %+v, %v; want done", name, res, err)
	}
}

func failedReason(csr *certificatesv1.CertificateSigningRequest) string {
	if c := ocmcsr.Condition(csr, certificatesv1.CertificateFailed); c != nil {
		return c.Reason
	}
	return ""
}

// request parses csr's request.
func request(t *testing.T, csr *certificatesv1.CertificateSigningRequest) *x509.CertificateRequest {
	t.Helper()
	req, rej := policy.ParseRequest(csr.Spec.Request)
	if rej != nil {
		t.Fatal(rej)
	}
	return req
}

// forCSR returns the record's entries for the CSR with UID uid.
func forCSR(rec *issued.Record, uid types.UID) []issued.Certificate {
	var out []issued.Certificate
	for _, c := range rec.Certificates {
		if c.CSR == uid {
			out = append(out, c)
		}
	}
	return out
}

// A signed certificate is in the record, with its key, before it is on the CSR; the key is not
// certified twice; and reconciling a signed CSR again signs nothing more.
func TestSignRecordsFirst(t *testing.T) {
	c, _, s, _, ca := setup(t, interceptor.Funcs{})
	_, signerKey, err := ocmcsr.New(ocmcsr.Request{Cluster: csrtest.Cluster, CAID: ca.ID()})
	if err != nil {
		t.Fatal(err)
	}
	first := approved(t, c, ca, ocmcsr.Request{Key: signerKey}).Name
	reconcileOK(t, s, first)
	csr := csrtest.Get(t, c, first)
	if len(csr.Status.Certificate) == 0 {
		t.Fatalf("not signed: %+v", csr.Status)
	}
	rec, _ := csrtest.Record(t, c)
	cert, err := issued.ParseCertificate(csr.Status.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Certificates) != 1 || rec.Certificates[0].Fingerprint != issued.BlocklistKey(cert.Raw) || rec.Certificates[0].CSR != csr.UID || len(rec.Keys) != 1 {
		t.Fatalf("record %+v, want the one certificate on the CSR and its key", rec)
	}
	reconcileOK(t, s, first)
	if again := csrtest.Get(t, c, first); string(again.Status.Certificate) != string(csr.Status.Certificate) {
		t.Fatal("a signed CSR got another certificate")
	}
	// The same key again, approved by whoever may approve: refused, even with the first CSR gone.
	if err := c.Delete(context.Background(), csr); err != nil {
		t.Fatal(err)
	}
	replay := approved(t, c, ca, ocmcsr.Request{Key: signerKey}).Name
	reconcileOK(t, s, replay)
	if got := csrtest.Get(t, c, replay); failedReason(got) != string(policy.ReasonDuplicateKey) || len(got.Status.Certificate) > 0 {
		t.Fatalf("replayed key: %+v, want Failed %s", got.Status, policy.ReasonDuplicateKey)
	}
}

// The certificate an approved CSR gets is the one recorded for it, written over the version of
// the record the CSR was decided from, and then put on the CSR; a second reconcile writes
// nothing at all.
func TestSignOnceAtTheVersionDecidedFrom(t *testing.T) {
	c, writes, s, recorder, ca := setup(t, interceptor.Funcs{})
	reconcileOK(t, s, approved(t, c, ca, ocmcsr.Request{}).Name) // the record exists from here on
	_, decidedFrom := csrtest.Record(t, c)
	recordWrites, csrWrites := len(writes.Records()), len(writes.CSRs())
	csrtest.Events(recorder)
	signed := testutil.ToFloat64(metrics.CSRsSigned)

	csr := approved(t, c, ca, ocmcsr.Request{})
	reconcileOK(t, s, csr.Name)

	if got := writes.Records()[recordWrites:]; !reflect.DeepEqual(got, []string{"update@" + decidedFrom}) {
		t.Fatalf("record writes %v, want one update over the version decided from, %s", got, decidedFrom)
	}
	if got := writes.CSRs()[csrWrites:]; !reflect.DeepEqual(got, []string{"patch status"}) {
		t.Fatalf("CSR writes %v, want one status patch", got)
	}
	got := csrtest.Get(t, c, csr.Name)
	cert, err := ca.Verify(got.Status.Certificate, now)
	if err != nil {
		t.Fatalf("certificate on the CSR: %v", err)
	}
	if want := "CN=" + csrtest.Cluster + ",OU=" + identity.CAUnit(ca.ID()); cert.Subject.String() != want {
		t.Errorf("subject %s, want %s", cert.Subject, want)
	}
	if !cert.NotBefore.Equal(now.Add(-authority.ClockSkew)) || !cert.NotAfter.Equal(now.Add(time.Hour)) {
		t.Errorf("valid %s to %s, want %s to %s", cert.NotBefore, cert.NotAfter, now.Add(-authority.ClockSkew), now.Add(time.Hour))
	}
	rec, version := csrtest.Record(t, c)
	want := issued.Certificate{Fingerprint: issued.BlocklistKey(cert.Raw), CA: ca.ID(), NotAfter: now.Add(time.Hour), CSR: csr.UID, PEM: string(got.Status.Certificate)}
	if entries := forCSR(rec, csr.UID); len(entries) != 1 || entries[0].Fingerprint != want.Fingerprint || entries[0].CA != want.CA ||
		!entries[0].NotAfter.Equal(want.NotAfter) || entries[0].PEM != want.PEM {
		t.Fatalf("record entries for the CSR %+v, want exactly %+v", entries, want)
	}
	if len(rec.Certificates) != 2 || !rec.KeyUsed(issued.KeyOf(request(t, csr).RawSubjectPublicKeyInfo)) {
		t.Fatalf("record %+v, want both certificates and this CSR's key", rec)
	}
	if d := testutil.ToFloat64(metrics.CSRsSigned) - signed; d != 1 {
		t.Errorf("csr_signed_total went up by %v, want 1", d)
	}
	wantEvent := fmt.Sprintf("Normal %s issued a client certificate for cluster %q valid until %s", signer.ReasonSigned, csrtest.Cluster, now.Add(time.Hour).Format(time.RFC3339))
	if ev := csrtest.Events(recorder); !reflect.DeepEqual(ev, []string{wantEvent}) {
		t.Errorf("events %q, want %q", ev, wantEvent)
	}

	// Again, as the watch event of the signer's own write brings it back: nothing is written.
	recordWrites, csrWrites = len(writes.Records()), len(writes.CSRs())
	reconcileOK(t, s, csr.Name)
	if r, w := writes.Records()[recordWrites:], writes.CSRs()[csrWrites:]; len(r) != 0 || len(w) != 0 {
		t.Fatalf("a signed CSR reconciled again wrote records %v and CSRs %v", r, w)
	}
	if again := csrtest.Get(t, c, csr.Name); string(again.Status.Certificate) != string(got.Status.Certificate) {
		t.Fatal("a signed CSR got another certificate")
	}
	if _, v := csrtest.Record(t, c); v != version {
		t.Fatalf("record rewritten: version %s, was %s", v, version)
	}
}

// A shorter lifetime asked for in expirationSeconds is honoured.
func TestRequestedLifetime(t *testing.T) {
	c, _, s, _, ca := setup(t, interceptor.Funcs{})
	tenMinutes := int32(600)
	csr := approved(t, c, ca, ocmcsr.Request{ExpirationSeconds: &tenMinutes})
	reconcileOK(t, s, csr.Name)
	cert, err := issued.ParseCertificate(csrtest.Get(t, c, csr.Name).Status.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.Equal(now.Add(10 * time.Minute)) {
		t.Fatalf("not after %s, want %s", cert.NotAfter, now.Add(10*time.Minute))
	}
}

// The manager's cache may serve a CSR as it was before the signer put the certificate on it,
// and the record as it was before the signer wrote it. Neither gets the CSR a second
// certificate: with the record up to date, the one recorded for the CSR is put on it again, and
// that write, over the stale version, conflicts; with the record stale too, a second
// certificate is signed but its record write, over the stale version, fails, so it never
// leaves the hub.
func TestStaleCopyGetsNoSecondCertificate(t *testing.T) {
	// What the signer reads while stale is set; the test reads the hub as it is.
	var stale bool
	var staleCSR *certificatesv1.CertificateSigningRequest
	var staleRecord *corev1.ConfigMap
	c, writes, s, recorder, ca := setup(t, interceptor.Funcs{
		Get: func(ctx context.Context, w client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			switch o := obj.(type) {
			case *certificatesv1.CertificateSigningRequest:
				if stale && staleCSR != nil && key.Name == staleCSR.Name {
					staleCSR.DeepCopyInto(o)
					return nil
				}
			case *corev1.ConfigMap:
				if stale && staleRecord != nil && key.Name == staleRecord.Name {
					staleRecord.DeepCopyInto(o)
					return nil
				}
			}
			return w.Get(ctx, key, obj, opts...)
		},
	})
	reconcileOK(t, s, approved(t, c, ca, ocmcsr.Request{}).Name) // the record exists from here on
	csr := approved(t, c, ca, ocmcsr.Request{})
	staleCSR = csrtest.Get(t, c, csr.Name)
	recordBefore, _ := csrtest.Record(t, c)
	reconcileOK(t, s, csr.Name)
	signed := csrtest.Get(t, c, csr.Name).Status.Certificate
	if len(signed) == 0 {
		t.Fatal("not signed")
	}

	// reconcileStale reconciles the CSR with s reading the stale copies, checks that it got no
	// second certificate, and returns the reconcile's result, the writes it made and its error.
	reconcileStale := func(t *testing.T, s *signer.Reconciler) (res reconcile.Result, records, csrs []string, err error) {
		t.Helper()
		recordWrites, csrWrites := len(writes.Records()), len(writes.CSRs())
		stale = true
		res, err = csrtest.Reconcile(s, csr.Name)
		stale = false
		if got := csrtest.Get(t, c, csr.Name).Status.Certificate; string(got) != string(signed) {
			t.Fatal("the CSR got a second certificate")
		}
		rec, _ := csrtest.Record(t, c)
		if entries := forCSR(rec, csr.UID); len(entries) != 1 || entries[0].PEM != string(signed) || len(rec.Certificates) != 2 {
			t.Fatalf("record %+v, want the CSR's one certificate and the first CSR's", rec.Certificates)
		}
		return res, writes.Records()[recordWrites:], writes.CSRs()[csrWrites:], err
	}

	t.Run("stale CSR", func(t *testing.T) {
		restarted, restartedEvents := newSigner(c, ca)
		for _, s := range []struct {
			*signer.Reconciler
			events *events.FakeRecorder
		}{{s, recorder}, {restarted, restartedEvents}} {
			csrtest.Events(s.events)
			signed := testutil.ToFloat64(metrics.CSRsSigned)
			// The recorded certificate, not a new one: no record write; its status write, over
			// the stale version, is refused (the fake client checks the resourceVersion of a
			// merge patch), and the CSR is decided again from the newer copy, soon.
			res, r, w, err := reconcileStale(t, s.Reconciler)
			if err != nil || res.RequeueAfter <= 0 || len(r) != 0 || !reflect.DeepEqual(w, []string{"patch status"}) {
				t.Fatalf("result %+v, error %v, record writes %v, CSR writes %v; want a retry, no error, none and one status patch", res, err, r, w)
			}
			// Nothing was signed: no event or count says so.
			if ev := csrtest.Events(s.events); len(ev) != 0 || testutil.ToFloat64(metrics.CSRsSigned) != signed {
				t.Fatalf("events %q, csr_signed_total %v (was %v): the stale copy was counted as signed", ev, testutil.ToFloat64(metrics.CSRsSigned), signed)
			}
		}
	})
	t.Run("stale CSR and record", func(t *testing.T) {
		staleRecord = recordBefore.Object().DeepCopy()
		// The signer holds the certificate it recorded for the CSR and could not put on it
		// (its write above was refused): it puts that one, signs nothing, writes no record.
		res, r, w, err := reconcileStale(t, s)
		if err != nil || res.RequeueAfter <= 0 || len(r) != 0 || !reflect.DeepEqual(w, []string{"patch status"}) {
			t.Fatalf("result %+v, error %v, record writes %v, CSR writes %v; want a retry, no error, none and one status patch", res, err, r, w)
		}
		// Restarted, it holds none and the stale record has none: it signs one, but the record
		// write, over the stale version, is refused, so it never reaches the CSR.
		restarted, _ := newSigner(c, ca)
		_, r, w, err = reconcileStale(t, restarted)
		if !apierrors.IsConflict(err) || !reflect.DeepEqual(r, []string{"update@" + staleRecord.ResourceVersion}) || len(w) != 0 {
			t.Fatalf("error %v, record writes %v, CSR writes %v; want a conflict, one update over the stale version, none", err, r, w)
		}
	})
}

// Another replica recorded a certificate for the CSR between this signer's decision and its
// record write (a leader change; it died before putting it on the CSR): this signer's record
// write conflicts, it reads the record again, and puts the other's certificate on the CSR
// instead of signing another.
func TestRecordConflictRereadsAndDoesNotSignTwice(t *testing.T) {
	var target *certificatesv1.CertificateSigningRequest
	var ca *authority.CA
	var othersPEM []byte
	c, writes, s, _, ca := setup(t, interceptor.Funcs{
		Update: func(ctx context.Context, w client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if _, ok := obj.(*corev1.ConfigMap); ok && target != nil && othersPEM == nil {
				// The other replica, which read the CSR and the record as this one did.
				req, rej := policy.ParseRequest(target.Spec.Request)
				if rej != nil {
					return rej
				}
				pem, err := ca.Sign(req, time.Hour, now)
				if err != nil {
					return err
				}
				cert, err := issued.ParseCertificate(pem)
				if err != nil {
					return err
				}
				entry := issued.Of(cert, ca.ID())
				entry.CSR, entry.PEM = target.UID, string(pem)
				if _, err := issued.Update(ctx, w, w, csrtest.RecordNamespace, csrtest.Cluster, func(r *issued.Record) error {
					r.Issue(entry, issued.KeyOf(req.RawSubjectPublicKeyInfo), now)
					return nil
				}); err != nil {
					return err
				}
				othersPEM = pem
			}
			return w.Update(ctx, obj, opts...)
		},
	})
	reconcileOK(t, s, approved(t, c, ca, ocmcsr.Request{}).Name) // the record exists from here on
	target = approved(t, c, ca, ocmcsr.Request{})
	recordWrites := len(writes.Records())

	if _, err := csrtest.Reconcile(s, target.Name); !apierrors.IsConflict(err) {
		t.Fatalf("record write across the other replica's: %v, want a conflict", err)
	}
	if othersPEM == nil {
		t.Fatal("the other replica did not run")
	}
	if got := csrtest.Get(t, c, target.Name); len(got.Status.Certificate) > 0 {
		t.Fatal("a certificate left the hub from a record write that failed")
	}
	reconcileOK(t, s, target.Name)
	if got := csrtest.Get(t, c, target.Name).Status.Certificate; string(got) != string(othersPEM) {
		t.Fatal("the CSR got a certificate of its own, not the one the other replica recorded for it: two were signed for it")
	}
	if r := writes.Records()[recordWrites:]; len(r) != 1 {
		t.Fatalf("record writes %v, want only the one that conflicted", r)
	}
	rec, _ := csrtest.Record(t, c)
	if entries := forCSR(rec, target.UID); len(entries) != 1 || entries[0].PEM != string(othersPEM) || len(rec.Certificates) != 2 {
		t.Fatalf("record %+v, want the first CSR's certificate and the other replica's for this one", rec.Certificates)
	}
}

// A certificate recorded whose status write failed is the one the CSR gets, whether the same
// signer tries again or a restarted one: the record holds only certificates handed out, one per
// CSR.
func TestStatusWriteFailureKeepsTheRecordedCertificate(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restarted=%v", restart), func(t *testing.T) {
			failures := 1
			c, writes, s, _, ca := setup(t, interceptor.Funcs{
				SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
					if sub == "status" && failures > 0 {
						failures--
						return errors.New("connection refused")
					}
					return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
				},
			})
			csr := approved(t, c, ca, ocmcsr.Request{})
			if _, err := csrtest.Reconcile(s, csr.Name); err == nil || !strings.Contains(err.Error(), "connection refused") {
				t.Fatalf("reconcile with the status write failing: %v", err)
			}
			if got := csrtest.Get(t, c, csr.Name); len(got.Status.Certificate) > 0 {
				t.Fatal("the failed write reached the CSR")
			}
			rec, _ := csrtest.Record(t, c)
			entries := forCSR(rec, csr.UID)
			if len(entries) != 1 || entries[0].PEM == "" {
				t.Fatalf("record %+v: the certificate must be recorded before it is put on the CSR", rec.Certificates)
			}
			if restart {
				s, _ = newSigner(c, ca)
			}
			reconcileOK(t, s, csr.Name)
			if got := csrtest.Get(t, c, csr.Name).Status.Certificate; string(got) != entries[0].PEM {
				t.Fatal("the CSR got another certificate than the one recorded for it")
			}
			if r := writes.Records(); !reflect.DeepEqual(r, []string{"create"}) {
				t.Fatalf("record writes %v, want the one create", r)
			}
			if w := writes.CSRs(); !reflect.DeepEqual(w, []string{"patch status", "patch status"}) {
				t.Fatalf("CSR writes %v, want the failed status patch and its retry", w)
			}
		})
	}
}

// Only approved CSRs of the add-on's signer that are not failed or signed yet are signed: the
// signer writes nothing for any other.
func TestSignsOnlyApprovedCSRs(t *testing.T) {
	c, writes, s, recorder, ca := setup(t, interceptor.Funcs{})
	cases := map[string]*certificatesv1.CertificateSigningRequest{
		"pending":          csrtest.File(t, c, ca, ocmcsr.Request{}),
		"denied":           csrtest.File(t, c, ca, ocmcsr.Request{}, certificatesv1.CertificateDenied),
		"failed":           csrtest.File(t, c, ca, ocmcsr.Request{}, certificatesv1.CertificateApproved, certificatesv1.CertificateFailed),
		"another signer's": csrtest.File(t, c, ca, ocmcsr.Request{Signer: "example.com/other-signer"}, certificatesv1.CertificateApproved),
	}
	for name, csr := range cases {
		t.Run(name, func(t *testing.T) {
			before := csrtest.Get(t, c, csr.Name)
			reconcileOK(t, s, csr.Name)
			if after := csrtest.Get(t, c, csr.Name); !reflect.DeepEqual(after.Status, before.Status) {
				t.Fatalf("status %+v, was %+v", after.Status, before.Status)
			}
		})
	}
	if r, w := writes.Records(), writes.CSRs(); len(r) != 0 || len(w) != 0 {
		t.Fatalf("record writes %v, CSR writes %v; want none", r, w)
	}
	if rec, version := csrtest.Record(t, c); version != "" || len(rec.Certificates) != 0 {
		t.Fatalf("record %+v at %q, want none", rec, version)
	}
	if ev := csrtest.Events(recorder); len(ev) != 0 {
		t.Fatalf("events %q, want none", ev)
	}
}

// A revoked cluster gets nothing: an approved CSR is marked Failed (Revoked), also when a
// certificate was recorded for it before the revocation but never put on it, which then never
// is (the record, which `revoke` blocklists, keeps it).
func TestRefusesRevokedCluster(t *testing.T) {
	failures := 0
	c, writes, s, recorder, ca := setup(t, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if sub == "status" && failures > 0 {
				failures--
				return errors.New("connection refused")
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	})
	// Recorded, not handed out: the status write fails.
	recordedFirst := approved(t, c, ca, ocmcsr.Request{})
	failures = 1
	if _, err := csrtest.Reconcile(s, recordedFirst.Name); err == nil {
		t.Fatal("the status write did not fail")
	}
	if _, err := issued.Update(context.Background(), c, c, csrtest.RecordNamespace, csrtest.Cluster, func(r *issued.Record) error {
		r.Revocation = &revocation.Revocation{Reason: "key leaked", RevokedAt: now}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_, revokedAt := csrtest.Record(t, c)
	recordWrites := len(writes.Records())
	csrtest.Events(recorder)
	refused := testutil.ToFloat64(metrics.CSRsFailed.WithLabelValues(string(policy.ReasonRevoked)))

	for _, csr := range []*certificatesv1.CertificateSigningRequest{recordedFirst, approved(t, c, ca, ocmcsr.Request{})} {
		reconcileOK(t, s, csr.Name)
		got := csrtest.Get(t, c, csr.Name)
		if len(got.Status.Certificate) > 0 {
			t.Fatalf("CSR %s signed for a revoked cluster", csr.Name)
		}
		want := fmt.Sprintf("the agent of cluster %q is revoked (key leaked); `argocd-agent-addon unrevoke %s` restores it", csrtest.Cluster, csrtest.Cluster)
		if f := ocmcsr.Condition(got, certificatesv1.CertificateFailed); f == nil || f.Reason != string(policy.ReasonRevoked) || f.Message != want || f.Status != corev1.ConditionTrue {
			t.Fatalf("CSR %s: Failed condition %+v, want %s: %s", csr.Name, f, policy.ReasonRevoked, want)
		}
	}
	if r := writes.Records()[recordWrites:]; len(r) != 0 {
		t.Fatalf("record writes %v after the revocation, want none", r)
	}
	rec, version := csrtest.Record(t, c)
	if version != revokedAt || len(rec.Certificates) != 1 || rec.Certificates[0].CSR != recordedFirst.UID {
		t.Fatalf("record %+v at %s, want as revoked (%s): only the certificate recorded before", rec.Certificates, version, revokedAt)
	}
	if d := testutil.ToFloat64(metrics.CSRsFailed.WithLabelValues(string(policy.ReasonRevoked))) - refused; d != 2 {
		t.Errorf("csr_sign_failed_total{reason=Revoked} went up by %v, want 2", d)
	}
	if ev := csrtest.Events(recorder); len(ev) != 2 || !strings.HasPrefix(ev[0], "Warning "+string(policy.ReasonRevoked)+" not signed: ") {
		t.Errorf("events %q, want two Revoked warnings", ev)
	}
}

// Without a usable CA nothing is decided or signed; the CSR is retried after certificates.CARetry
// (the CA secret watch usually comes first), and an event says why it waits.
func TestSignerWaitsForCA(t *testing.T) {
	c, writes, s, recorder, ca := setup(t, interceptor.Funcs{})
	s.CA = csrtest.StaticCA{Err: errors.New("CA secret argocd/argocd-agent-ca not found")}
	csr := approved(t, c, ca, ocmcsr.Request{})
	res, err := csrtest.Reconcile(s, csr.Name)
	if err != nil || res.RequeueAfter != certificates.CARetry {
		t.Fatalf("reconcile without a CA: %+v, %v; want a retry after %s", res, err, certificates.CARetry)
	}
	if got := csrtest.Get(t, c, csr.Name); len(got.Status.Certificate) > 0 || len(got.Status.Conditions) != 1 {
		t.Fatalf("status %+v, want approved only", got.Status)
	}
	if r, w := writes.Records(), writes.CSRs(); len(r) != 0 || len(w) != 0 {
		t.Fatalf("record writes %v, CSR writes %v; want none", r, w)
	}
	want := "Warning " + certificates.ReasonCAUnavailable + " waiting for a usable CA: CA secret argocd/argocd-agent-ca not found"
	if ev := csrtest.Events(recorder); !reflect.DeepEqual(ev, []string{want}) {
		t.Fatalf("events %q, want %q", ev, want)
	}
}

// A revocation written between the signer's decision and its record write wins: the write
// conflicts, nothing is handed out, and the CSR is then refused Revoked. Every certificate that
// left the hub is in the record the revocation was written over.
func TestRevocationBetweenDecisionAndRecord(t *testing.T) {
	revokeOnce := true
	c, _, s, _, ca := setup(t, interceptor.Funcs{Update: func(ctx context.Context, w client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
		if _, ok := obj.(*corev1.ConfigMap); ok && revokeOnce {
			revokeOnce = false
			// `revoke` runs now, after the signer read the record.
			if _, err := issued.Update(ctx, w, w, csrtest.RecordNamespace, csrtest.Cluster, func(r *issued.Record) error {
				r.Revocation = &revocation.Revocation{Reason: "raced"}
				return nil
			}); err != nil {
				return err
			}
		}
		return w.Update(ctx, obj, opts...)
	}})
	// A first certificate, so that the record exists and the next write is an update.
	revokeOnce = false
	reconcileOK(t, s, approved(t, c, ca, ocmcsr.Request{}).Name)
	revokeOnce = true
	raced := approved(t, c, ca, ocmcsr.Request{}).Name
	_, err := csrtest.Reconcile(s, raced)
	if !apierrors.IsConflict(errors.Unwrap(err)) && !apierrors.IsConflict(err) {
		t.Fatalf("signing across a revocation: %v, want a conflict", err)
	}
	if len(csrtest.Get(t, c, raced).Status.Certificate) > 0 {
		t.Fatal("a certificate left the hub after the revocation")
	}
	reconcileOK(t, s, raced)
	if got := csrtest.Get(t, c, raced); failedReason(got) != string(policy.ReasonRevoked) || len(got.Status.Certificate) > 0 {
		t.Fatalf("after the conflict: %+v, want Failed %s", got.Status, policy.ReasonRevoked)
	}
	rec, _ := csrtest.Record(t, c)
	if rec.Revocation == nil || len(rec.Certificates) != 1 {
		t.Fatalf("record %+v, want the revocation and only the certificate signed before it", rec)
	}
}

// Past issued.MaxUnexpired unexpired certificates, a cluster gets no more.
func TestBoundOnCertificatesHeld(t *testing.T) {
	c, _, s, _, ca := setup(t, interceptor.Funcs{})
	signed := 0
	for i := range issued.MaxUnexpired + 3 {
		name := approved(t, c, ca, ocmcsr.Request{}).Name
		reconcileOK(t, s, name)
		switch got := csrtest.Get(t, c, name); {
		case len(got.Status.Certificate) > 0:
			signed++
		case failedReason(got) != string(policy.ReasonTooManyCertificates):
			t.Fatalf("CSR %d: %+v, want signed or Failed %s", i, got.Status, policy.ReasonTooManyCertificates)
		}
	}
	if signed != issued.MaxUnexpired {
		t.Fatalf("%d signed, want %d", signed, issued.MaxUnexpired)
	}
}
