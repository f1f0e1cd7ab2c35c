package signer_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/signer"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/revocation"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/ocmcsr"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
)

const recordNamespace = "addon-ns"

type staticCA struct{ ca *authority.CA }

func (s staticCA) Get(context.Context) (*authority.CA, error) { return s.ca, nil }
func (s staticCA) Key() types.NamespacedName {
	return types.NamespacedName{Namespace: "argocd", Name: "argocd-agent-ca"}
}

// hub is a fake hub with cluster c1 accepted and enrolled; intercept, if set, wraps its writes.
func hub(t *testing.T, intercept *interceptor.Funcs) client.Client {
	t.Helper()
	scheme, err := hubclient.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	cluster := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}, Spec: clusterv1.ManagedClusterSpec{HubAcceptsClient: true},
		Status: clusterv1.ManagedClusterStatus{Conditions: []metav1.Condition{{Type: clusterv1.ManagedClusterConditionHubAccepted, Status: metav1.ConditionTrue}}}}
	mca := &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: "c1", Name: identity.AddonName}}
	b := fake.NewClientBuilder().WithScheme(scheme).WithObjects(cluster, mca).WithStatusSubresource(&certificatesv1.CertificateSigningRequest{})
	if intercept != nil {
		b = b.WithInterceptorFuncs(*intercept)
	}
	return b.Build()
}

func newSigner(t *testing.T, c client.Client) (*signer.Reconciler, *authority.CA) {
	t.Helper()
	certPEM, keyPEM, err := testca.New("test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := authority.Parse(certPEM, keyPEM, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &signer.Reconciler{Client: c, CA: staticCA{ca}, Policy: policy.Policy{Subject: identity.SubjectClusterName},
		Lifetime: time.Hour, RecordNamespace: recordNamespace, Events: events.NewFakeRecorder(100)}, ca
}

var filed int

// approved files an approved CSR of c1's agent, as OCM files it, and returns its name.
func approved(t *testing.T, c client.Client, ca *authority.CA, r ocmcsr.Request) string {
	t.Helper()
	r.Cluster, r.CAID, r.Username = "c1", ca.ID(), ocmcsr.AgentUsername("c1")
	csr, _, err := ocmcsr.New(r)
	if err != nil {
		t.Fatal(err)
	}
	filed++
	csr.Name, csr.UID = fmt.Sprintf("csr-%d", filed), types.UID(fmt.Sprintf("uid-%d", filed))
	csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
	if err := c.Create(context.Background(), csr); err != nil {
		t.Fatal(err)
	}
	return csr.Name
}

func reconcile(t *testing.T, s *signer.Reconciler, name string) error {
	t.Helper()
	_, err := s.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: name}})
	return err
}

func csrOf(t *testing.T, c client.Client, name string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	csr := &certificatesv1.CertificateSigningRequest{}
	if err := c.Get(context.Background(), types.NamespacedName{Name: name}, csr); err != nil {
		t.Fatal(err)
	}
	return csr
}

func failedReason(csr *certificatesv1.CertificateSigningRequest) string {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateFailed {
			return c.Reason
		}
	}
	return ""
}

// A signed certificate is in the record, with its key, before it is on the CSR; the key is not
// certified twice; and reconciling a signed CSR again signs nothing more.
func TestSignRecordsFirst(t *testing.T) {
	c := hub(t, nil)
	s, ca := newSigner(t, c)
	_, signerKey, err := ocmcsr.New(ocmcsr.Request{Cluster: "c1", CAID: ca.ID()})
	if err != nil {
		t.Fatal(err)
	}
	first := approved(t, c, ca, ocmcsr.Request{Key: signerKey})
	if err := reconcile(t, s, first); err != nil {
		t.Fatal(err)
	}
	csr := csrOf(t, c, first)
	if len(csr.Status.Certificate) == 0 {
		t.Fatalf("not signed: %+v", csr.Status)
	}
	rec, err := issued.Load(context.Background(), c, recordNamespace, "c1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := issued.ParseCertificate(csr.Status.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Certificates) != 1 || rec.Certificates[0].Fingerprint != issued.BlocklistKey(cert.Raw) || rec.Certificates[0].CSR != csr.UID || len(rec.Keys) != 1 {
		t.Fatalf("record %+v, want the one certificate on the CSR and its key", rec)
	}
	if err := reconcile(t, s, first); err != nil {
		t.Fatal(err)
	}
	if again := csrOf(t, c, first); string(again.Status.Certificate) != string(csr.Status.Certificate) {
		t.Fatal("a signed CSR got another certificate")
	}
	// The same key again, approved by whoever may approve: refused, even with the first CSR gone.
	if err := c.Delete(context.Background(), csr); err != nil {
		t.Fatal(err)
	}
	replay := approved(t, c, ca, ocmcsr.Request{Key: signerKey})
	if err := reconcile(t, s, replay); err != nil {
		t.Fatal(err)
	}
	if got := csrOf(t, c, replay); failedReason(got) != string(policy.ReasonDuplicateKey) || len(got.Status.Certificate) > 0 {
		t.Fatalf("replayed key: %+v, want Failed %s", got.Status, policy.ReasonDuplicateKey)
	}
}

// A revocation written between the signer's decision and its record write wins: the write
// conflicts, nothing is handed out, and the CSR is then refused Revoked. Every certificate that
// left the hub is in the record the revocation was written over.
func TestRevocationBetweenDecisionAndRecord(t *testing.T) {
	var c client.Client
	revokeOnce := true
	c = hub(t, &interceptor.Funcs{Update: func(ctx context.Context, w client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
		if _, ok := obj.(*corev1.ConfigMap); ok && revokeOnce {
			revokeOnce = false
			// `revoke` runs now, after the signer read the record.
			if _, err := issued.Update(ctx, w, w, recordNamespace, "c1", func(r *issued.Record) error {
				r.Revocation = &revocation.Revocation{Reason: "raced"}
				return nil
			}); err != nil {
				return err
			}
		}
		return w.Update(ctx, obj, opts...)
	}})
	s, ca := newSigner(t, c)
	// A first certificate, so that the record exists and the next write is an update.
	revokeOnce = false
	if err := reconcile(t, s, approved(t, c, ca, ocmcsr.Request{})); err != nil {
		t.Fatal(err)
	}
	revokeOnce = true
	raced := approved(t, c, ca, ocmcsr.Request{})
	err := reconcile(t, s, raced)
	if !apierrors.IsConflict(errors.Unwrap(err)) && !apierrors.IsConflict(err) {
		t.Fatalf("signing across a revocation: %v, want a conflict", err)
	}
	if len(csrOf(t, c, raced).Status.Certificate) > 0 {
		t.Fatal("a certificate left the hub after the revocation")
	}
	if err := reconcile(t, s, raced); err != nil {
		t.Fatal(err)
	}
	if got := csrOf(t, c, raced); failedReason(got) != string(policy.ReasonRevoked) || len(got.Status.Certificate) > 0 {
		t.Fatalf("after the conflict: %+v, want Failed %s", got.Status, policy.ReasonRevoked)
	}
	rec, err := issued.Load(context.Background(), c, recordNamespace, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Revocation == nil || len(rec.Certificates) != 1 {
		t.Fatalf("record %+v, want the revocation and only the certificate signed before it", rec)
	}
}

// Past issued.MaxUnexpired unexpired certificates, a cluster gets no more.
func TestBoundOnCertificatesHeld(t *testing.T) {
	c := hub(t, nil)
	s, ca := newSigner(t, c)
	signed := 0
	for i := range issued.MaxUnexpired + 3 {
		name := approved(t, c, ca, ocmcsr.Request{})
		if err := reconcile(t, s, name); err != nil {
			t.Fatal(err)
		}
		switch got := csrOf(t, c, name); {
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
