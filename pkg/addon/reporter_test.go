package addon

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/events"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	addonfake "open-cluster-management.io/api/client/addon/clientset/versioned/fake"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
)

// Every status apply names all the conditions this manager owns: a held cluster's AgentVersion
// is applied only together with the conditions of the manager's last render of it, and not at
// all by a manager that has not rendered it since it started (that apply would remove them).
func TestHeldKeepsTheOtherConditions(t *testing.T) {
	mca := &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: "c1", Name: "argocd-agent"}}
	//lint:ignore SA1019 OCM's api module generates no NewClientset (no apply configurations); the reactor below is all this test needs.
	client := addonfake.NewSimpleClientset()
	var applied [][]string
	client.PrependReactor("patch", "managedclusteraddons", func(a clienttesting.Action) (bool, runtime.Object, error) {
		var body struct {
			Status struct {
				Conditions []metav1.Condition `json:"conditions"`
			} `json:"status"`
		}
		if err := json.Unmarshal(a.(clienttesting.PatchAction).GetPatch(), &body); err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, c := range body.Status.Conditions {
			types = append(types, c.Type)
		}
		applied = append(applied, types)
		return true, mca, nil
	})
	r := NewStatusReporter(client, events.NewFakeRecorder(10))
	ctx := context.Background()
	mismatch := metav1.Condition{Type: ConditionAgentVersion, Status: metav1.ConditionFalse, Reason: ReasonVersionMismatch, Message: "held"}

	r.Held(ctx, mca, mismatch)
	if len(applied) != 0 {
		t.Fatalf("a manager that has not rendered the cluster applied %v", applied)
	}
	r.Valid(ctx, mca, principal.Endpoint{Host: "p.example.com", Port: 443, Source: principal.SourceConfig},
		metav1.Condition{Type: ConditionAgentVersion, Status: metav1.ConditionTrue, Reason: ReasonVersionMatches, Message: "ok"})
	r.Held(ctx, mca, mismatch)
	want := []string{ConditionAgentConfigValid, ConditionAgentVersion, ConditionPrincipalAddress}
	if len(applied) != 2 || !slices.Equal(applied[0], want) || !slices.Equal(applied[1], want) {
		t.Errorf("applies %v, want two naming %v", applied, want)
	}
}
