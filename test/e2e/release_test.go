package e2e

import (
	"context"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/revoke"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/chart"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/e2e/harness"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// TestReleaseFromRegistry follows a user's path through two releases: `make release` pushes the
// manager image and the chart pinned to its digest to a registry (go-containerregistry's, served
// by the test), `helm install oci://...` installs it and the hub's node pulls the image from the
// registry; then `helm upgrade` to the next release rolls the manager once and keeps every agent
// connected, every record and the revocation.
func TestReleaseFromRegistry(t *testing.T) {
	const first, second = "v0.1.0-e2e.1", "v0.1.0-e2e.2"
	ctx, e := start(t, harness.Options{Release: first})
	checkManagerImage(t, ctx, e)

	clusters := []string{"cluster1", "cluster2"}
	for _, c := range clusters {
		must.Succeed(t, e.SetEnabled(ctx, c, true))
	}
	agent, err := e.StartAgent(ctx, "cluster1")
	must.Succeed(t, err)
	_, err = e.StartAgent(ctx, "cluster2")
	must.Succeed(t, err)
	for _, c := range clusters {
		waitAvailable(t, e, c, metav1.ConditionTrue)
	}
	o := &revoke.Options{RestConfig: e.Hub.Config, Reason: "e2e: revoked across an upgrade", PrincipalNamespace: harness.ArgoCDNamespace, Namespace: harness.AddonNamespace}
	must.Succeed(t, o.Revoke(ctx, "cluster2", io.Discard))
	records := map[string][]string{}
	for _, c := range clusters {
		rec, err := issued.Load(ctx, e.Hub.Client, harness.AddonNamespace, c)
		must.Succeed(t, err)
		for _, cert := range rec.Certificates {
			records[c] = append(records[c], cert.Fingerprint)
		}
	}
	deploy := &appsv1.Deployment{}
	must.Succeed(t, e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: harness.AddonNamespace, Name: chart.ReleaseName}, deploy))
	generation := deploy.Generation
	if n := len(managerReplicaSets(t, ctx, e)); n != 1 {
		t.Fatalf("%d ReplicaSets of the manager after helm install, want 1", n)
	}

	// Watch cluster1's add-on through the upgrade: it must never stop being Available.
	var (
		mu       sync.Mutex
		notAvail []string
	)
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watchCtx.Err() == nil {
			mca := &addonv1beta1.ManagedClusterAddOn{}
			if err := e.Hub.Client.Get(watchCtx, types.NamespacedName{Namespace: "cluster1", Name: identity.AddonName}, mca); err == nil {
				if c := meta.FindStatusCondition(mca.Status.Conditions, "Available"); c == nil || c.Status != metav1.ConditionTrue {
					mu.Lock()
					notAvail = append(notAvail, time.Now().Format(time.RFC3339))
					mu.Unlock()
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()
	began := time.Now()
	must.Succeed(t, e.UpgradeRelease(ctx, second))
	took := time.Since(began)
	stopWatch()
	<-watched
	checkManagerImage(t, ctx, e)

	t.Run("the manager rolled once to the new release", func(t *testing.T) {
		must.Succeed(t, e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: harness.AddonNamespace, Name: chart.ReleaseName}, deploy))
		if deploy.Generation != generation+1 {
			t.Errorf("manager Deployment generation %d after helm upgrade, want %d: one change", deploy.Generation, generation+1)
		}
		poll.Until(t, 2*time.Minute, "the old ReplicaSet scaled to 0", func(ctx context.Context) (bool, error) {
			rs := managerReplicaSets(t, ctx, e)
			if len(rs) != 2 {
				t.Fatalf("%d ReplicaSets of the manager after helm upgrade, want 2: the old and one new", len(rs))
			}
			for _, r := range rs {
				if r.Spec.Template.Spec.Containers[0].Image != e.Released.Image+"@"+e.Released.Digest && r.Status.Replicas != 0 {
					return false, nil
				}
			}
			return true, nil
		})
		t.Logf("helm upgrade %s -> %s: manager rolled once (Deployment generation %d -> %d, 2 ReplicaSets), new pod %s leading after %.1fs",
			first, second, generation, deploy.Generation, e.ManagerPod, took.Seconds())
	})

	t.Run("every agent stayed connected", func(t *testing.T) {
		mu.Lock()
		defer mu.Unlock()
		if len(notAvail) > 0 {
			t.Errorf("cluster1's add-on was not Available during the upgrade at %v", notAvail)
		}
		if n := agent.Restarts() + agent.ContainerRestarts(); n != 0 {
			t.Errorf("cluster1's agent restarted %d times across the upgrade", n)
		}
		poll.Until(t, time.Minute, "principal lists cluster1", func(ctx context.Context) (bool, error) {
			names, err := e.Principal.ConnectedAgents(ctx)
			return err == nil && slices.Contains(names, "cluster1"), err
		})
	})

	t.Run("records and the revocation survive the upgrade", func(t *testing.T) {
		for _, c := range clusters {
			rec, err := issued.Load(ctx, e.Hub.Client, harness.AddonNamespace, c)
			must.Succeed(t, err)
			var now []string
			for _, cert := range rec.Certificates {
				now = append(now, cert.Fingerprint)
			}
			for _, f := range records[c] {
				if !slices.Contains(now, f) {
					t.Errorf("%s: certificate %s left its record in the upgrade", c, f)
				}
			}
		}
		stillRevoked(t, ctx, e, "cluster2")
		fileOwnCSRs(t, ctx, e, "cluster2", 1, policy.ReasonRevoked)
	})

	t.Run("a released version is never replaced", func(t *testing.T) {
		_, err := e.Release(ctx, first)
		if err == nil || !strings.Contains(err.Error(), "is already in") {
			t.Fatalf("releasing %s again: %v, want it refused", first, err)
		}
		t.Logf("releasing %s again is refused: %s", first, lastLine(err.Error()))
	})
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// checkManagerImage checks the leading manager pod runs the release's image by digest, pulled
// from the test's registry by the node.
func checkManagerImage(t *testing.T, ctx context.Context, e *harness.Env) {
	t.Helper()
	pod := &corev1.Pod{}
	must.Succeed(t, e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: harness.AddonNamespace, Name: e.ManagerPod}, pod))
	want := e.Released.Image + "@" + e.Released.Digest
	if got := pod.Spec.Containers[0].Image; got != want {
		t.Fatalf("manager pod %s runs %s, want the release's %s", pod.Name, got, want)
	}
	if !strings.HasPrefix(want, e.Registry.Addr+"/") {
		t.Fatalf("release image %s is not in the test's registry %s", want, e.Registry.Addr)
	}
	var id string
	for _, s := range pod.Status.ContainerStatuses {
		id = s.ImageID
	}
	if !strings.HasPrefix(id, e.Registry.Addr+"/argocd-agent-addon/argocd-agent-addon@sha256:") {
		t.Fatalf("manager pod %s: image ID %q, want one pulled from %s", pod.Name, id, e.Registry.Addr)
	}
	t.Logf("manager pod %s runs %s (%s), pulled from the test's registry", pod.Name, want, id)
}

// managerReplicaSets are the ReplicaSets of the manager's Deployment.
func managerReplicaSets(t *testing.T, ctx context.Context, e *harness.Env) []appsv1.ReplicaSet {
	t.Helper()
	list := &appsv1.ReplicaSetList{}
	must.Succeed(t, e.Hub.Client.List(ctx, list, client.InNamespace(harness.AddonNamespace),
		client.MatchingLabels{"app.kubernetes.io/name": chart.ReleaseName, "app.kubernetes.io/component": "manager"}))
	return list.Items
}
