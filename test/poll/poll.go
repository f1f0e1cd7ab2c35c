// Package poll waits in tests for a condition on a live system.
package poll

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Until polls cond every 200 ms until it returns true, failing the test after timeout with
// what was awaited and the last error cond returned. Errors do not stop the polling: a
// condition on a live system is often briefly unreadable.
func Until(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	var last error
	if err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil {
			last = err
		}
		return ok, nil
	}); err != nil {
		t.Fatalf("%s: not within %s (last error: %v)", what, timeout, last)
	}
}
