package revocation_test

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/revocation"
)

// A damaged legacy entry still revokes: the list fails closed.
func TestUnreadableLegacyEntryStillRevokes(t *testing.T) {
	cma := &addonv1beta1.ClusterManagementAddOn{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
		revocation.Annotation("c1"): "{not json", "unrelated/annotation": "x"}}}
	list := revocation.Legacy(cma)
	if r, ok := list["c1"]; !ok || !strings.Contains(r.Reason, "unreadable") || len(list) != 1 {
		t.Fatalf("list %+v", list)
	}
}

func TestRemoveLegacy(t *testing.T) {
	scheme, err := hubclient.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cma := &addonv1beta1.ClusterManagementAddOn{ObjectMeta: metav1.ObjectMeta{Name: identity.AddonName,
		Annotations: map[string]string{"keep": "me", revocation.Annotation("c1"): "{}"}}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(cma).Build()
	if err := revocation.RemoveLegacy(ctx, c, "c1"); err != nil {
		t.Fatal(err)
	}
	got := &addonv1beta1.ClusterManagementAddOn{}
	if err := c.Get(ctx, types.NamespacedName{Name: identity.AddonName}, got); err != nil || len(got.Annotations) != 1 || got.Annotations["keep"] != "me" {
		t.Fatalf("annotations %v, %v", got.Annotations, err)
	}
	// No ClusterManagementAddOn (uninstalled): nothing to remove.
	if err := revocation.RemoveLegacy(ctx, fake.NewClientBuilder().WithScheme(scheme).Build(), "c1"); err != nil {
		t.Fatal(err)
	}
	if err := revocation.ValidateCluster("Not_A_Cluster"); err == nil {
		t.Fatal("an invalid cluster name was accepted")
	}
}
