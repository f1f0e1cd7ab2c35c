package plan

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
)

func TestConfigResolved(t *testing.T) {
	configured := metav1.Condition{Type: addonv1beta1.ManagedClusterAddOnConditionConfigured, Status: metav1.ConditionTrue, Reason: "ConfigurationsConfigured"}
	notConfigured := metav1.Condition{Type: addonv1beta1.ManagedClusterAddOnConditionConfigured, Status: metav1.ConditionFalse, Reason: "ConfigurationsNotConfigured"}
	desired := []addonv1beta1.ConfigReference{{DesiredConfig: &addonv1beta1.ConfigSpecHash{SpecHash: "h"}}}
	for _, tc := range []struct {
		name   string
		status addonv1beta1.ManagedClusterAddOnStatus
		want   bool
	}{
		{"new: no condition", addonv1beta1.ManagedClusterAddOnStatus{}, false},
		{"configured", addonv1beta1.ManagedClusterAddOnStatus{Conditions: []metav1.Condition{configured}}, true},
		{"new, outside the rollout batch", addonv1beta1.ManagedClusterAddOnStatus{Conditions: []metav1.Condition{notConfigured}}, false},
		{"ran before, rollout pending", addonv1beta1.ManagedClusterAddOnStatus{Conditions: []metav1.Condition{notConfigured}, ConfigReferences: desired}, true},
	} {
		if got := configResolved(&addonv1beta1.ManagedClusterAddOn{Status: tc.status}); got != tc.want {
			t.Errorf("%s: configResolved = %v, want %v", tc.name, got, tc.want)
		}
	}
}
