package harness

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PlayKubelet stands in for the kubelet and the deployment controller, which do not run here,
// for one Deployment only: the agent's. Every interval it sets the Deployment's status to one
// ready, available replica exactly when healthy() is true (the agent process's /healthz
// answers 200), and to none otherwise. That is what the agent's readiness probe on /healthz
// does on a real cluster. It returns when ctx ends.
func PlayKubelet(ctx context.Context, c client.Client, deployment types.NamespacedName, healthy func() bool, interval time.Duration) {
	logger := klog.FromContext(ctx).WithValues("deployment", deployment)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if err := setReadiness(ctx, c, deployment, healthy()); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
			logger.V(2).Info("Could not update the agent Deployment's status", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func setReadiness(ctx context.Context, c client.Client, key types.NamespacedName, ready bool) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, key, d); err != nil {
			return err
		}
		var n int32
		status, reason := corev1.ConditionFalse, "AgentNotConnected"
		if ready {
			n, status, reason = 1, corev1.ConditionTrue, "AgentConnected"
		}
		if d.Status.ReadyReplicas == n && d.Status.ObservedGeneration == d.Generation && d.Status.Replicas == 1 {
			return nil
		}
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1,
			ReadyReplicas: n, AvailableReplicas: n, UnavailableReplicas: 1 - n,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: status, Reason: reason}},
		}
		return c.Status().Update(ctx, d)
	})
}
