package podstart

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/node"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// TestCheckAgreesWithKubelet runs every case of TestCheck as a pod on a real node: Check must
// say "starts" exactly for the pods the kubelet starts. Unit and integration tests that run no
// node rely on Check; this is what makes it a model of the kubelet rather than a guess.
func TestCheckAgreesWithKubelet(t *testing.T) {
	ctx := context.Background()
	n := node.StartForTest(t, "podstart", "10.96.201.0/24")
	api := n.API

	const ns = "cases"
	c := api.Client
	must.Succeed(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	objs := testObjects()
	for name, cm := range objs.ConfigMaps {
		cm.Namespace, cm.Name = ns, name
		must.Succeed(t, c.Create(ctx, cm))
	}
	for name, s := range objs.Secrets {
		s.Namespace, s.Name = ns, name
		must.Succeed(t, c.Create(ctx, s))
	}
	// The default ServiceAccount and the kube-root-ca.crt ConfigMap every pod's token volume
	// projects: a pod created before the latter exists fails that mount for a while.
	poll.Until(t, 2*time.Minute, "default ServiceAccount and kube-root-ca.crt", func(ctx context.Context) (bool, error) {
		return c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "default"}, &corev1.ServiceAccount{}) == nil &&
			c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "kube-root-ca.crt"}, &corev1.ConfigMap{}) == nil, nil
	})

	var wg sync.WaitGroup
	for i, tc := range testCases() {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("case-%d", i)}, Spec: *tc.spec.DeepCopy()}
		for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
			for j := range cs {
				cs[j].Image, cs[j].ImagePullPolicy = node.PauseImage, corev1.PullNever
			}
		}
		// An init container of the pause image never exits: its start is the verdict.
		must.Succeed(t, c.Create(ctx, pod))
		wg.Add(1)
		go func() {
			defer wg.Done()
			started, why, err := observe(ctx, c, pod)
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				return
			}
			if model := tc.want == ""; started != model {
				t.Errorf("%s: the kubelet started it: %v (%s); Check says %v", tc.name, started, why, model)
			} else {
				t.Logf("%s: kubelet and Check agree: starts=%v (%s)", tc.name, started, why)
			}
		}()
	}
	wg.Wait()
}

// observe waits for the kubelet's verdict on pod: started once a container runs, held once it
// reports CreateContainerConfigError or a FailedMount event. Only such evidence counts: a pod
// that is merely slow (a loaded machine) is neither, and after 3 minutes the case fails.
func observe(ctx context.Context, c client.Client, pod *corev1.Pod) (started bool, why string, err error) {
	var last string
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		p := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(pod), p); err != nil {
			return false, nil
		}
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			if cs.State.Running != nil {
				started, why = true, "container "+cs.Name+" running"
				return true, nil
			}
			if w := cs.State.Waiting; w != nil && w.Reason == "CreateContainerConfigError" {
				why = w.Reason + ": " + w.Message
				return true, nil
			}
		}
		events := &corev1.EventList{}
		if err := c.List(ctx, events, client.InNamespace(pod.Namespace)); err == nil {
			for _, e := range events.Items {
				// The token volume (kube-api-access-*) is no case's subject, and its mount
				// failures are transient: the kubelet's ConfigMap manager registers the pod's
				// kube-root-ca.crt a moment after the pod, and retries.
				if e.InvolvedObject.Name == pod.Name && e.Reason == "FailedMount" && !strings.Contains(e.Message, `"kube-api-access-`) {
					why = "FailedMount: " + strings.TrimSpace(e.Message)
					return true, nil
				}
			}
		}
		last = fmt.Sprintf("phase %s", p.Status.Phase)
		return false, nil
	})
	if err != nil {
		return false, "", fmt.Errorf("no verdict from the kubelet within 3 minutes (%s)", last)
	}
	return started, why, nil
}
