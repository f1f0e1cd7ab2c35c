package fleetmetrics_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/fleetmetrics"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/revocation"
)

func mca(cluster, name string, conds ...metav1.Condition) *addonv1beta1.ManagedClusterAddOn {
	return &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: cluster, Name: name},
		Status: addonv1beta1.ManagedClusterAddOnStatus{Conditions: conds}}
}

func cond(t, s string) metav1.Condition {
	return metav1.Condition{Type: t, Status: metav1.ConditionStatus(s), Reason: "R"}
}

// The gauges count this add-on's clusters by each condition's status, from the cache alone;
// another add-on's and a missing condition (Unknown) are told apart, and revocations come from
// the records, also of clusters whose add-on is gone.
func TestFleetGauges(t *testing.T) {
	scheme, err := hubclient.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	hub := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		mca("c1", identity.AddonName, cond("Available", "True"), cond("AgentVersion", "True"), cond("ArgoCDReady", "True")),
		mca("c2", identity.AddonName, cond("Available", "False"), cond("AgentVersion", "False"), cond("ArgoCDReady", "False"), cond("AgentConfigValid", "False")),
		mca("c3", identity.AddonName),
		mca("c1", "another-addon", cond("Available", "False")),
	).WithStatusSubresource(&addonv1beta1.ManagedClusterAddOn{}).Build()
	for _, cluster := range []string{"c2", "gone"} {
		if _, err := issued.Update(context.Background(), hub, hub, "addon", cluster, func(r *issued.Record) error {
			r.Revocation = &revocation.Revocation{Reason: "test", RevokedAt: time.Now()}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := issued.Update(context.Background(), hub, hub, "addon", "c1", func(*issued.Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP argocd_agent_addon_agents Clusters with the add-on (a ManagedClusterAddOn argocd-agent).
# TYPE argocd_agent_addon_agents gauge
argocd_agent_addon_agents 3
# HELP argocd_agent_addon_clusters_revoked Clusters revoked on the hub (their record holds a revocation), with the add-on or not.
# TYPE argocd_agent_addon_clusters_revoked gauge
argocd_agent_addon_clusters_revoked 2
`
	c := &fleetmetrics.Collector{Reader: hub, RecordNamespace: "addon"}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "argocd_agent_addon_agents", "argocd_agent_addon_clusters_revoked"); err != nil {
		t.Error(err)
	}
	for _, tc := range []struct {
		condition               string
		true_, false_, unknown_ int
	}{
		{"Available", 1, 1, 1},
		{"AgentVersion", 1, 1, 1},
		{"ArgoCDReady", 1, 1, 1},
		{"AgentConfigValid", 0, 1, 2},
		{"PrincipalAddress", 0, 0, 3},
	} {
		for status, n := range map[string]int{"True": tc.true_, "False": tc.false_, "Unknown": tc.unknown_} {
			if got := conditionGauge(t, c, tc.condition, status); got != float64(n) {
				t.Errorf("%s=%s: %v clusters, want %d", tc.condition, status, got, n)
			}
		}
	}
}

// conditionGauge is argocd_agent_addon_agents_condition{condition, status}, -1 if absent.
func conditionGauge(t *testing.T, c *fleetmetrics.Collector, condition, status string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "argocd_agent_addon_agents_condition" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["condition"] == condition && labels["status"] == status {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}
