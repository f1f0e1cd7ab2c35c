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
	cma := &addonv1beta1.ClusterManagementAddOn{ObjectMeta: metav1.ObjectMeta{Name: identity.AddonName, UID: "cma-uid"}}
	for _, fp := range []string{"A", "B", "A"} {
		if err := issued.Record(ctx, hub, "addon-ns", "c1", issued.Certificate{Fingerprint: fp, CA: "y", NotAfter: now.Add(2 * time.Hour)}, now, cma); err != nil {
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
	// Owned by the ClusterManagementAddOn, so that uninstalling the add-on removes it.
	if refs := cm.OwnerReferences; len(refs) != 1 || refs[0].UID != cma.UID || refs[0].Kind != "ClusterManagementAddOn" {
		t.Errorf("owner references %+v, want the ClusterManagementAddOn", refs)
	}
	// A record written before records were owned gets its owner with the next certificate.
	unowned := cm.DeepCopy()
	unowned.OwnerReferences = nil
	if err := hub.Update(ctx, unowned); err != nil {
		t.Fatal(err)
	}
	if err := issued.Record(ctx, hub, "addon-ns", "c1", issued.Certificate{Fingerprint: "B", CA: "y", NotAfter: now.Add(2 * time.Hour)}, now, cma); err != nil {
		t.Fatal(err)
	}
	if err := hub.Get(ctx, types.NamespacedName{Namespace: "addon-ns", Name: issued.RecordName("c1")}, cm); err != nil {
		t.Fatal(err)
	}
	if certs, _ := issued.ReadRecord(cm); len(cm.OwnerReferences) != 1 || len(certs) != 2 {
		t.Errorf("after adopting: owners %+v, %d certificates; want the CMA and still A and B", cm.OwnerReferences, len(certs))
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
