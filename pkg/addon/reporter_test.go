package addon

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	addonfake "open-cluster-management.io/api/client/addon/clientset/versioned/fake"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
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
	r := NewStatusReporter(client, events.NewFakeRecorder(10), 0)
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

// The conditions of a render are written once, after the render's sync: the renders of one
// sync (addon-framework renders twice per sync) and repeats on a status read before the write
// send nothing more, while a status changed since (someone removed a condition) gets them again.
func TestDelayedReportWritesOnce(t *testing.T) {
	//lint:ignore SA1019 OCM's api module generates no NewClientset (no apply configurations); the reactor below is all this test needs.
	client := addonfake.NewSimpleClientset()
	var mu sync.Mutex
	applies := 0
	client.PrependReactor("patch", "managedclusteraddons", func(a clienttesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		applies++
		return true, &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: "c1", Name: "argocd-agent", ResourceVersion: "10"}}, nil
	})
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return applies
	}
	r := NewStatusReporter(client, events.NewFakeRecorder(10), 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitApplies := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for count() < want && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		// Whatever else was due is written within the delay: wait past it before counting.
		time.Sleep(50 * time.Millisecond)
		if got := count(); got != want {
			t.Fatalf("%d applies, want %d", got, want)
		}
	}
	p := principal.Endpoint{Host: "p.example.com", Port: 443, Source: principal.SourceConfig}
	stale := &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: "c1", Name: "argocd-agent", ResourceVersion: "5"}}
	for range 3 {
		r.Valid(ctx, stale, p, metav1.Condition{})
	}
	if got := count(); got != 0 {
		t.Fatalf("%d applies in the render's call, want none before the delay", got)
	}
	waitApplies(1)

	// The same status, read before the apply: already done.
	r.Valid(ctx, stale, p, metav1.Condition{})
	waitApplies(1)

	// A newer status without the conditions: written again.
	newer := stale.DeepCopy()
	newer.ResourceVersion = "11"
	r.Valid(ctx, newer, p, metav1.Condition{})
	waitApplies(2)

	// A newer status that shows them: nothing to do, also for a pending apply.
	shows := newer.DeepCopy()
	shows.ResourceVersion = "12"
	shows.Status.Conditions = []metav1.Condition{
		{Type: ConditionAgentConfigValid, Status: metav1.ConditionTrue, Reason: ReasonAgentConfigValid, Message: "the agent configuration is valid and rendered"},
		{Type: ConditionPrincipalAddress, Status: metav1.ConditionTrue, Reason: principal.SourceConfig, Message: p.String()},
	}
	r.Invalid(ctx, newer, &agentconfig.FieldError{Field: "customizedVariables[logLevel]", Value: "x", Reason: "bad"})
	r.Valid(ctx, shows, p, metav1.Condition{})
	waitApplies(2)
}

// What the reporter holds of an add-on lives as long as the add-on: deleted (or seen deleted
// through a tombstone), it is forgotten, and a Held for a cluster that comes back under the
// same name applies nothing before a render of its own.
func TestDeletedAddOnIsForgotten(t *testing.T) {
	//lint:ignore SA1019 as above: no NewClientset in OCM's api module.
	client := addonfake.NewSimpleClientset()
	client.PrependReactor("patch", "managedclusteraddons", func(a clienttesting.Action) (bool, runtime.Object, error) {
		return true, &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: a.GetNamespace(), Name: "argocd-agent", ResourceVersion: "5"}}, nil
	})
	r := NewStatusReporter(client, events.NewFakeRecorder(10), 0)
	ctx := context.Background()
	valid := metav1.Condition{Type: ConditionAgentVersion, Status: metav1.ConditionTrue, Reason: ReasonVersionMatches, Message: "ok"}
	for i, deleted := range []func(*addonv1beta1.ManagedClusterAddOn) any{
		func(m *addonv1beta1.ManagedClusterAddOn) any { return m },
		func(m *addonv1beta1.ManagedClusterAddOn) any {
			return toolscache.DeletedFinalStateUnknown{Key: m.Namespace + "/" + m.Name, Obj: m}
		},
	} {
		mca := &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: "c" + string(rune('1'+i)), Name: "argocd-agent"}}
		key := types.NamespacedName{Namespace: mca.Namespace, Name: mca.Name}
		r.Valid(ctx, mca, principal.Endpoint{Host: "p.example.com", Port: 443, Source: principal.SourceConfig}, valid)
		if !r.rendered(key) {
			t.Fatalf("%s: not held after a render", key)
		}
		r.forgetDeleted(deleted(mca))
		r.mu.Lock()
		_, owned := r.owned[key]
		_, pending := r.pending[key]
		r.mu.Unlock()
		if owned || pending || r.rendered(key) {
			t.Errorf("%s: still held after its deletion (owned %v, pending %v)", key, owned, pending)
		}
	}
}
