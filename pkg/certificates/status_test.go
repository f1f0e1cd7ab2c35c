package certificates_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates"
)

// writer is a status subresource whose Patch returns err.
type writer struct {
	client.SubResourceWriter
	err     error
	written *certificatesv1.CertificateSigningRequest
	patch   string
}

func (w *writer) Patch(_ context.Context, obj client.Object, p client.Patch, _ ...client.SubResourcePatchOption) error {
	w.written = obj.(*certificatesv1.CertificateSigningRequest).DeepCopy()
	data, err := p.Data(obj)
	if err != nil {
		return err
	}
	w.patch = string(data)
	return w.err
}

func TestSetCondition(t *testing.T) {
	ctx := context.Background()
	csr := func() *certificatesv1.CertificateSigningRequest {
		return &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: "c1-abc", ResourceVersion: "7",
			Labels: map[string]string{"kept": "as the API server has it"}}}
	}

	w := &writer{}
	res, ok, err := certificates.SetCondition(ctx, w, csr(), certificatesv1.CertificateDenied, "Revoked", "cluster revoked")
	if !ok || err != nil || !res.IsZero() {
		t.Fatalf("written: ok=%v err=%v result=%+v", ok, err, res)
	}
	if c := w.written.Status.Conditions; len(c) != 1 || c[0].Type != certificatesv1.CertificateDenied || c[0].Status != corev1.ConditionTrue ||
		c[0].Reason != "Revoked" || c[0].Message != "cluster revoked" || c[0].LastUpdateTime.IsZero() {
		t.Fatalf("conditions written %+v", c)
	}
	// Only the status, locked to the version read: the cached copy's metadata is never sent.
	if !strings.Contains(w.patch, `"resourceVersion":"7"`) || !strings.Contains(w.patch, `"conditions"`) || strings.Contains(w.patch, "kept") {
		t.Fatalf("patch %s, want the conditions and the resourceVersion only", w.patch)
	}

	// A conflict is no error: the CSR is decided again, from its newer copy.
	w = &writer{err: apierrors.NewConflict(schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}, "c1-abc", errors.New("changed"))}
	res, ok, err = certificates.SetCondition(ctx, w, csr(), certificatesv1.CertificateApproved, "ArgoCDAgentAddonApproved", "ok")
	if ok || err != nil || res.RequeueAfter <= 0 {
		t.Fatalf("conflict: ok=%v err=%v result=%+v, want a retry and no error", ok, err, res)
	}

	w = &writer{err: errors.New("connection refused")}
	if _, ok, err = certificates.UpdateStatus(ctx, w, csr(), func(*certificatesv1.CertificateSigningRequest) {}); ok || err == nil || !strings.Contains(err.Error(), "c1-abc") {
		t.Fatalf("failed write: ok=%v err=%v, want an error naming the CSR", ok, err)
	}
}
