package certificates_test

import (
	"bytes"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	operatorv1 "open-cluster-management.io/api/operator/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// The cache holds only the add-on's signer's CSRs, each cut to what is decided from: a hostile
// CSR costs the manager at most about certificates.MaxRequestBytes.
func TestCSRCache(t *testing.T) {
	byObject := certificates.CSRCache()
	if want := fields.OneTermEqualSelector("spec.signerName", identity.SignerName).String(); byObject.Field == nil || byObject.Field.String() != want {
		t.Fatalf("field selector %v, want %s", byObject.Field, want)
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{
			Labels: map[string]string{clusterv1.ClusterNameLabelKey: "c1", addonv1beta1.AddonLabelKey: identity.AddonName,
				"padding": strings.Repeat("x", 63)},
			Annotations:   map[string]string{operatorv1.CSRUsernameAnnotation: strings.Repeat("u", 4<<10), "padding": strings.Repeat("x", 200<<10)},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "x"}},
		},
		Spec: certificatesv1.CertificateSigningRequestSpec{Request: bytes.Repeat([]byte("r"), 1<<20)},
	}
	out, err := byObject.Transform(csr)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*certificatesv1.CertificateSigningRequest)
	if n := len(got.Spec.Request); n != certificates.MaxRequestBytes+1 || cap(got.Spec.Request) != n {
		t.Errorf("request kept %d bytes (capacity %d), want %d: one past the limit, so it is still refused, and no more", n, cap(got.Spec.Request), certificates.MaxRequestBytes+1)
	}
	if len(got.Labels) != 2 || got.Labels[clusterv1.ClusterNameLabelKey] != "c1" {
		t.Errorf("labels %v, want the cluster and add-on labels only", got.Labels)
	}
	if len(got.Annotations) != 1 || len(got.Annotations[operatorv1.CSRUsernameAnnotation]) != 1<<10 {
		t.Errorf("annotations kept %d, csr-user of %d bytes; want only csr-user, cut to 1 KiB", len(got.Annotations), len(got.Annotations[operatorv1.CSRUsernameAnnotation]))
	}
	if got.ManagedFields != nil {
		t.Error("managedFields kept")
	}
	if _, rej := policy.ParseRequest(got.Spec.Request); rej == nil || rej.Reason != policy.ReasonRequestTooLarge {
		t.Errorf("cut request: %v, want %s", rej, policy.ReasonRequestTooLarge)
	}
}
