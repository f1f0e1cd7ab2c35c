package certificates

import (
	"time"

	"golang.org/x/time/rate"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// MaxRetryDelay caps how long a CSR waits to be retried after failures. controller-runtime's
// default doubles from 5 ms up to 16 minutes, so a CSR that failed through a minute of hub API
// outage (or of forbidden requests while a restarted API server's authorizer syncs) would be
// retried minutes after the hub came back, its agent waiting for its certificate meanwhile.
const MaxRetryDelay = 30 * time.Second

// ControllerOptions are the options of the CSR controllers: controller-runtime's rate limiter
// (per-CSR exponential backoff from 5 ms, at most 10 retries a second overall) with the backoff
// capped at MaxRetryDelay.
func ControllerOptions() controller.Options {
	return controller.Options{RateLimiter: workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](5*time.Millisecond, MaxRetryDelay),
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)}
}
