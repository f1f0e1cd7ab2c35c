package issued_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/revocation"
)

func fakeHub(t *testing.T, objs ...client.Object) client.Client {
	t.Helper()
	scheme, err := hubclient.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
}

// The record is a ConfigMap of its own, written as certificates are issued; OnHub reads it with
// what earlier versions recorded on the ManagedClusterAddOn.
func TestRecordStore(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	legacy, _ := json.Marshal([]issued.Certificate{{Fingerprint: "OLD", CA: "x", NotAfter: now.Add(time.Hour)}})
	hub := fakeHub(t, &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{
		Namespace: "c1", Name: identity.AddonName, Annotations: map[string]string{issued.Annotation: string(legacy)}}})
	for _, fp := range []string{"A", "B", "A"} {
		if _, err := issued.Update(ctx, hub, hub, "addon-ns", "c1", func(r *issued.Record) error {
			r.Issue(issued.Certificate{Fingerprint: fp, CA: "y", NotAfter: now.Add(2 * time.Hour)}, "key-"+fp, now)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := issued.Load(ctx, hub, "addon-ns", "c1")
	if err != nil || len(rec.Certificates) != 2 || !rec.KeyUsed("key-A") || !rec.KeyUsed("key-B") || len(rec.Keys) != 2 {
		t.Fatalf("record %+v (%v): want A and B once each, and their keys", rec, err)
	}
	cm := &corev1.ConfigMap{}
	if err := hub.Get(ctx, types.NamespacedName{Namespace: "addon-ns", Name: issued.RecordName("c1")}, cm); err != nil {
		t.Fatal(err)
	}
	// No owner: uninstalling the add-on (its ClusterManagementAddOn) must not remove it.
	if cm.Labels[issued.RecordLabel] != "c1" || len(cm.OwnerReferences) != 0 {
		t.Errorf("labels %v, owners %+v: want the record label and no owner", cm.Labels, cm.OwnerReferences)
	}
	// A record an earlier version made owned by the ClusterManagementAddOn loses that owner.
	cm.OwnerReferences = []metav1.OwnerReference{{APIVersion: addonv1beta1.GroupVersion.String(), Kind: "ClusterManagementAddOn", Name: identity.AddonName, UID: "u"}}
	if err := hub.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if _, err := issued.Update(ctx, hub, hub, "addon-ns", "c1", func(*issued.Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := hub.Get(ctx, client.ObjectKeyFromObject(cm), cm); err != nil || len(cm.OwnerReferences) != 0 {
		t.Fatalf("owners %+v (%v), want none", cm.OwnerReferences, err)
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

// A save over a version another writer replaced fails: a certificate and a revocation are
// ordered by the record, so neither is lost.
func TestSaveIsOptimistic(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	hub := fakeHub(t)
	first, err := issued.Load(ctx, hub, "ns", "c1")
	if err != nil {
		t.Fatal(err)
	}
	second, err := issued.Load(ctx, hub, "ns", "c1")
	if err != nil {
		t.Fatal(err)
	}
	first.Revocation = &revocation.Revocation{Reason: "r"}
	if err := first.Save(ctx, hub, "ns"); err != nil {
		t.Fatal(err)
	}
	second.Issue(issued.Certificate{Fingerprint: "A", NotAfter: now.Add(time.Hour)}, "k", now)
	if err := second.Save(ctx, hub, "ns"); !apierrors.IsAlreadyExists(errors.Unwrap(err)) && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating over a record created since: %v, want AlreadyExists", err)
	}
	// Both read it now; the first to write wins, the other conflicts.
	a, _ := issued.Load(ctx, hub, "ns", "c1")
	b, _ := issued.Load(ctx, hub, "ns", "c1")
	a.Revocation = nil
	if err := a.Save(ctx, hub, "ns"); err != nil {
		t.Fatal(err)
	}
	b.Issue(issued.Certificate{Fingerprint: "A", NotAfter: now.Add(time.Hour)}, "k", now)
	if err := b.Save(ctx, hub, "ns"); !apierrors.IsConflict(errors.Unwrap(err)) && !apierrors.IsConflict(err) {
		t.Fatalf("saving over a version replaced since: %v, want a conflict", err)
	}
}

// A damaged revocation still revokes; damaged certificates are an error, never an empty record.
func TestDamagedRecord(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: issued.RecordName("c1"), Labels: map[string]string{issued.RecordLabel: "c1"}},
		Data: map[string]string{"revocation": "{not json"}}
	rec, err := issued.FromConfigMap(cm)
	if err != nil || rec.Revocation == nil || !strings.Contains(rec.Revocation.Reason, "unreadable") {
		t.Fatalf("record %+v, %v: want revoked", rec, err)
	}
	cm.Data = map[string]string{"certificates": "[{"}
	if _, err := issued.FromConfigMap(cm); err == nil {
		t.Fatal("damaged certificates read as a record")
	}
	cm.Data = nil
	cm.Labels[issued.RecordLabel] = "c2"
	if _, err := issued.FromConfigMap(cm); err == nil {
		t.Fatal("a record labelled for another cluster than its name says was read")
	}
}

// Revocations an earlier version kept on the ClusterManagementAddOn are copied into the records
// (the annotations stay, for a manager of that version still running), and records it made
// owned by the ClusterManagementAddOn are released.
func TestMigrate(t *testing.T) {
	ctx := context.Background()
	entry, _ := json.Marshal(revocation.Revocation{Reason: "key leaked"})
	owned := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: issued.RecordName("c3"), Labels: map[string]string{issued.RecordLabel: "c3"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: addonv1beta1.GroupVersion.String(), Kind: "ClusterManagementAddOn", Name: identity.AddonName, UID: "u"}}},
		Data: map[string]string{"certificates": `[{"sha256":"A","ca":"x","notAfter":"2099-01-01T00:00:00Z"}]`}}
	hub := fakeHub(t, owned, &addonv1beta1.ClusterManagementAddOn{ObjectMeta: metav1.ObjectMeta{Name: identity.AddonName, Annotations: map[string]string{
		revocation.Annotation("c1"): string(entry), revocation.Annotation("c2"): "{damaged", "keep": "me"}}})
	copied, released, err := issued.Migrate(ctx, hub, hub, "ns")
	if err != nil || copied != 2 || released != 1 {
		t.Fatalf("copied %d, released %d, %v; want 2 and 1", copied, released, err)
	}
	for cluster, reason := range map[string]string{"c1": "key leaked", "c2": "unreadable"} {
		r, err := issued.Records{Reader: hub, Namespace: "ns"}.Revocation(ctx, cluster)
		if err != nil || r == nil || !strings.Contains(r.Reason, reason) {
			t.Errorf("%s: %+v, %v; want revoked (%s)", cluster, r, err, reason)
		}
	}
	cma := &addonv1beta1.ClusterManagementAddOn{}
	if err := hub.Get(ctx, types.NamespacedName{Name: identity.AddonName}, cma); err != nil || len(cma.Annotations) != 3 {
		t.Fatalf("annotations %v (%v): want all kept, for a manager of the earlier version", cma.Annotations, err)
	}
	rec, err := issued.Load(ctx, hub, "ns", "c3")
	if err != nil || len(rec.Certificates) != 1 || len(rec.Object().OwnerReferences) != 0 {
		t.Fatalf("record c3 %+v, %v: want its certificate and no owner", rec, err)
	}
	if copied, released, err := issued.Migrate(ctx, hub, hub, "ns"); err != nil || copied != 0 || released != 0 {
		t.Fatalf("second run copied %d, released %d, %v", copied, released, err)
	}
}
