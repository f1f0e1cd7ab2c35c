package revocation_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/revocation"
)

func TestSetGetLift(t *testing.T) {
	scheme, err := hubclient.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cma := &addonv1beta1.ClusterManagementAddOn{ObjectMeta: metav1.ObjectMeta{Name: identity.AddonName,
		Annotations: map[string]string{"keep": "me"}}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(cma).Build()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if err := revocation.Set(ctx, c, "c1", &revocation.Revocation{Reason: "key leaked", RevokedAt: at}); err != nil {
		t.Fatal(err)
	}
	r, err := revocation.Get(ctx, c, "c1")
	if err != nil || r == nil || r.Reason != "key leaked" || !r.RevokedAt.Equal(at) {
		t.Fatalf("got %+v, %v", r, err)
	}
	if r, err := revocation.Get(ctx, c, "c2"); err != nil || r != nil {
		t.Fatalf("c2: %+v, %v", r, err)
	}
	if err := revocation.Set(ctx, c, "c1", nil); err != nil {
		t.Fatal(err)
	}
	if r, err := revocation.Get(ctx, c, "c1"); err != nil || r != nil {
		t.Fatalf("after lifting: %+v, %v", r, err)
	}
	got := &addonv1beta1.ClusterManagementAddOn{}
	if err := c.Get(ctx, types.NamespacedName{Name: identity.AddonName}, got); err != nil || got.Annotations["keep"] != "me" {
		t.Fatalf("other annotations touched: %v, %v", got.Annotations, err)
	}
	if err := revocation.Set(ctx, c, "Not_A_Cluster", &revocation.Revocation{}); err == nil {
		t.Fatal("an invalid cluster name was accepted")
	}
	if _, err := revocation.Get(ctx, fake.NewClientBuilder().WithScheme(scheme).Build(), "c1"); err == nil {
		t.Fatal("no error without the ClusterManagementAddOn")
	}
}

// A damaged entry still revokes: the list fails closed.
func TestUnreadableEntryStillRevokes(t *testing.T) {
	cma := &addonv1beta1.ClusterManagementAddOn{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
		revocation.Annotation("c1"): "{not json", "unrelated/annotation": "x"}}}
	list := revocation.List(cma)
	if r, ok := list["c1"]; !ok || !strings.Contains(r.Reason, "unreadable") || len(list) != 1 {
		t.Fatalf("list %+v", list)
	}
}
