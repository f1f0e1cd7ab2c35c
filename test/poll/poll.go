// Package poll waits in tests for a condition on a live system.
package poll

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Until polls cond every 200 ms until it returns true, failing the test after timeout with
// what was awaited and the last error cond returned. Errors do not stop the polling: a
// condition on a live system is often briefly unreadable.
func Until(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	if err := Wait(context.Background(), 200*time.Millisecond, timeout, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Wait is Until for code that is not a test (test/bench): it polls cond every interval and
// returns an error after timeout, with the last error cond returned. Errors do not stop the
// polling, except one cond wraps with Stop, which Wait returns at once.
func Wait(ctx context.Context, interval, timeout time.Duration, cond func(ctx context.Context) (bool, error)) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if errors.As(err, new(stop)) {
			return false, err
		}
		if err != nil {
			last = err
		}
		return ok, nil
	})
	switch {
	case err == nil:
		return nil
	case errors.As(err, new(stop)):
		return err
	}
	return fmt.Errorf("not within %s (last error: %v)", timeout, last)
}

// Stop makes Wait return err at once: the condition can no longer come true.
func Stop(err error) error { return stop{err} }

type stop struct{ error }

func (s stop) Unwrap() error { return s.error }
