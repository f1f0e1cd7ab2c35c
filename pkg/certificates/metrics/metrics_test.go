package metrics_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/metrics"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
)

// Each reason's series exists from the start (package init), so that the first denial is an
// increase. Nothing in this test binary creates one.
func TestReasonCountersStartAtZero(t *testing.T) {
	if n := testutil.CollectAndCount(metrics.CSRsDenied); n < len(policy.Reasons) {
		t.Errorf("csr_denied_total has %d series, want one per reason (%d) from the start", n, len(policy.Reasons))
	}
	if n := testutil.CollectAndCount(metrics.CSRsFailed); n < len(policy.Reasons) {
		t.Errorf("csr_sign_failed_total has %d series, want one per reason (%d) from the start", n, len(policy.Reasons))
	}
}
