package certificates

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// However often a CSR failed, its next retry is at most MaxRetryDelay away, and the backoff
// still grows from milliseconds.
func TestRetryDelayIsCapped(t *testing.T) {
	rl := ControllerOptions().RateLimiter
	req := reconcile.Request{NamespacedName: types.NamespacedName{Name: "csr"}}
	first := rl.When(req)
	var last = first
	for range 40 {
		last = rl.When(req)
	}
	if first >= MaxRetryDelay/1000 || last != MaxRetryDelay {
		t.Errorf("first retry after %s, 41st after %s: want milliseconds, then %s", first, last, MaxRetryDelay)
	}
}
