package issued_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// The record is a ConfigMap of its own, written as certificates are issued; OnHub reads it with
// what earlier versions recorded on the ManagedClusterAddOn.
func TestRecordStore(t *testing.T) {
	scheme, err := hubclient.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	legacy, _ := json.Marshal([]issued.Certificate{{Fingerprint: "OLD", CA: "x", NotAfter: now.Add(time.Hour)}})
	hub := fake.NewClientBuilder().WithScheme(scheme).WithObjects(&addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{
		Namespace: "c1", Name: identity.AddonName, Annotations: map[string]string{issued.Annotation: string(legacy)}}}).Build()
	for _, fp := range []string{"A", "B", "A"} {
		if err := issued.Record(ctx, hub, "addon-ns", "c1", issued.Certificate{Fingerprint: fp, CA: "y", NotAfter: now.Add(2 * time.Hour)}, now); err != nil {
			t.Fatal(err)
		}
	}
	cm := &corev1.ConfigMap{}
	if err := hub.Get(ctx, types.NamespacedName{Namespace: "addon-ns", Name: issued.RecordName("c1")}, cm); err != nil {
		t.Fatal(err)
	}
	if certs, err := issued.ReadRecord(cm); err != nil || len(certs) != 2 || cm.Labels[issued.RecordLabel] != "c1" {
		t.Fatalf("record %+v (%v), labels %v: want A and B once each", certs, err, cm.Labels)
	}
	onHub, err := issued.OnHub(ctx, hub, nil)
	if err != nil {
		t.Fatal(err)
	}
	var fps []string
	for _, c := range onHub["c1"] {
		fps = append(fps, c.Fingerprint)
	}
	if len(fps) != 3 {
		t.Fatalf("on hub %v, want A, B and the legacy OLD", fps)
	}
}
