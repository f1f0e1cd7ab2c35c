package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/spokeready"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/argocd"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/e2e/harness"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/metrictext"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// waitSyncedHealthy waits until the hub's Application namespace/app is Synced and Healthy and
// cluster holds the revision's ConfigMap and a ready Deployment.
func waitSyncedHealthy(t *testing.T, e *harness.Env, namespace, app, cluster, revision string) {
	t.Helper()
	var last argocd.AppStatus
	poll.Until(t, 4*time.Minute, fmt.Sprintf("%s/%s Synced and Healthy on the hub at %s", namespace, app, revision), func(ctx context.Context) (bool, error) {
		s, err := argocd.ReadAppStatus(ctx, e.Hub.Client, namespace, app)
		if err != nil {
			return false, err
		}
		if s.String() != last.String() {
			t.Logf("hub %s/%s: %s", namespace, app, s)
			last = s
		}
		if s.Sync != "Synced" || s.Health != "Healthy" {
			return false, nil
		}
		spoke := e.Spokes[cluster].API.Client
		cm := &corev1.ConfigMap{}
		if err := spoke.Get(ctx, types.NamespacedName{Namespace: "guestbook", Name: "guestbook"}, cm); err != nil {
			return false, err
		}
		d := &appsv1.Deployment{}
		if err := spoke.Get(ctx, types.NamespacedName{Namespace: "guestbook", Name: "guestbook"}, d); err != nil {
			return false, err
		}
		return cm.Data["revision"] == revision && d.Status.AvailableReplicas == 1, nil
	})
}

// setTargetRevision points the hub's Application at another revision of its source, as a user
// promotes a release.
func setTargetRevision(ctx context.Context, c client.Client, namespace, name, revision string) error {
	app := &unstructured.Unstructured{}
	app.SetGroupVersionKind(argocd.ApplicationGVK)
	app.SetNamespace(namespace)
	app.SetName(name)
	patch := fmt.Sprintf(`{"spec":{"source":{"targetRevision":%q}}}`, revision)
	return c.Patch(ctx, app, client.RawPatch(types.MergePatchType, []byte(patch)))
}

// What users install the agent for: an Application created on the hub for a managed cluster
// deploys its objects there, from a real repo-server and application-controller on the spoke,
// and its sync and health come back to the hub; a new revision rolls out, also after the
// agent's certificate was renewed; a source that does not exist shows its error on the hub; and
// deleting the Application removes what it deployed.
func TestApplicationsReachTheFleet(t *testing.T) {
	const cluster, autonomous = "apps1", "auto1"
	ctx, e := start(t, harness.Options{Clusters: []string{cluster, autonomous}, ArgoCD: true, Autonomous: []string{autonomous},
		CertLifetime: 3 * time.Minute})
	for _, rev := range []string{"v1", "v2", "v3"} {
		must.Succeed(t, e.Sources.Push(ctx, argocd.GuestbookRepo, rev, argocd.Guestbook(rev)))
	}
	// The repository, on the hub, for the project: the principal hands it to the agents the
	// project reaches. The Application waits on the hub for the cluster's agent.
	must.Succeed(t, e.Hub.Client.Create(ctx, e.Sources.RepositorySecret(harness.ArgoCDNamespace, "guestbook-repo", argocd.GuestbookRepo, "default")))
	must.Succeed(t, e.Hub.Client.Create(ctx, argocd.HubApplication(cluster, "guestbook", e.Sources.RepoURL(argocd.GuestbookRepo), "v1")))

	labelled := time.Now()
	must.Succeed(t, e.SetEnabled(ctx, cluster, true))
	a, err := e.StartAgent(ctx, cluster)
	must.Succeed(t, err)

	t.Run("an Application created on the hub is deployed on the cluster and reports Synced and Healthy", func(t *testing.T) {
		waitSyncedHealthy(t, e, cluster, "guestbook", cluster, "v1")
		t.Logf("from the cluster's label to its first Application Synced and Healthy on the hub: %.1fs", time.Since(labelled).Seconds())
		waitAvailable(t, e, cluster, metav1.ConditionTrue)
		waitArgoCDReady(t, e, cluster, metav1.ConditionTrue, "")
		// The repository reached the spoke from the hub: repo-server could not have pulled over
		// plain HTTP without its insecureOCIForceHttp.
		repo := &corev1.Secret{}
		must.Succeed(t, e.Spokes[cluster].API.Client.Get(ctx, types.NamespacedName{Namespace: "argocd", Name: "guestbook-repo"}, repo))
		if string(repo.Data["url"]) != e.Sources.RepoURL(argocd.GuestbookRepo) {
			t.Errorf("the spoke's repository secret says url %q, want %s", repo.Data["url"], e.Sources.RepoURL(argocd.GuestbookRepo))
		}
	})

	t.Run("a new revision rolls out", func(t *testing.T) {
		must.Succeed(t, setTargetRevision(ctx, e.Hub.Client, cluster, "guestbook", "v2"))
		waitSyncedHealthy(t, e, cluster, "guestbook", cluster, "v2")
	})

	t.Run("after the agent rolls onto a renewed certificate, a new revision still arrives", func(t *testing.T) {
		rolls := a.Restarts()
		poll.Until(t, 4*time.Minute, "the agent rolled onto a renewed certificate", func(context.Context) (bool, error) {
			return a.Restarts() > rolls, nil
		})
		must.Succeed(t, setTargetRevision(ctx, e.Hub.Client, cluster, "guestbook", "v3"))
		waitSyncedHealthy(t, e, cluster, "guestbook", cluster, "v3")
	})

	t.Run("a source that does not exist shows its error on the hub", func(t *testing.T) {
		must.Succeed(t, e.Hub.Client.Create(ctx, argocd.HubApplication(cluster, "missing", e.Sources.RepoURL(argocd.GuestbookRepo), "no-such-tag")))
		poll.Until(t, 3*time.Minute, "the hub Application names the missing revision", func(ctx context.Context) (bool, error) {
			s, err := argocd.ReadAppStatus(ctx, e.Hub.Client, cluster, "missing")
			if err != nil {
				return false, err
			}
			for _, c := range s.Conditions {
				if strings.Contains(c, "no-such-tag") {
					t.Logf("hub shows: %s", c)
					return true, nil
				}
			}
			return false, nil
		})
	})

	t.Run("deleting the Application on the hub removes what it deployed", func(t *testing.T) {
		app := &unstructured.Unstructured{}
		app.SetGroupVersionKind(argocd.ApplicationGVK)
		app.SetNamespace(cluster)
		app.SetName("guestbook")
		must.Succeed(t, e.Hub.Client.Delete(ctx, app))
		spoke := e.Spokes[cluster].API.Client
		poll.Until(t, 3*time.Minute, "the guestbook objects gone from the cluster", func(ctx context.Context) (bool, error) {
			cmErr := spoke.Get(ctx, types.NamespacedName{Namespace: "guestbook", Name: "guestbook"}, &corev1.ConfigMap{})
			dErr := spoke.Get(ctx, types.NamespacedName{Namespace: "guestbook", Name: "guestbook"}, &appsv1.Deployment{})
			return apierrors.IsNotFound(cmErr) && apierrors.IsNotFound(dErr), nil
		})
	})

	t.Run("an Application created on an autonomous cluster appears on the hub with its status", func(t *testing.T) {
		startAutonomous(t, ctx, e, autonomous)
		spoke := e.Spokes[autonomous].API.Client
		// What the cluster's own GitOps would create there: the project, the repository and
		// the Application, all on the cluster.
		must.Succeed(t, spoke.Create(ctx, argocd.DefaultProject("argocd")))
		must.Succeed(t, spoke.Create(ctx, e.Sources.RepositorySecret("argocd", "guestbook-repo", argocd.GuestbookRepo, "")))
		app := argocd.HubApplication("argocd", "auto-guestbook", e.Sources.RepoURL(argocd.GuestbookRepo), "v2")
		must.Succeed(t, spoke.Create(ctx, app))
		// The principal keeps it in the agent's namespace on the hub, with the status the
		// cluster's application-controller gives it.
		waitSyncedHealthy(t, e, autonomous, "auto-guestbook", autonomous, "v2")
	})

	t.Run("the hub names what the cluster's Argo CD lacks", func(t *testing.T) {
		spoke := e.Spokes[cluster].API.Client
		sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "argocd", Name: string(argocd.ApplicationController)}}
		must.Succeed(t, spoke.Delete(ctx, sts, client.PropagationPolicy(metav1.DeletePropagationBackground)))
		waitArgoCDReady(t, e, cluster, metav1.ConditionFalse, "the application-controller (StatefulSet argocd/argocd-application-controller)")
		// Read only: the work agent that reported it missing did not put it back.
		if err := spoke.Get(ctx, client.ObjectKeyFromObject(sts), &appsv1.StatefulSet{}); !apierrors.IsNotFound(err) {
			t.Errorf("the application-controller StatefulSet is back (%v): the readiness work wrote to the cluster", err)
		}
		// The agent itself is still connected: Available says so, ArgoCDReady says it deploys nothing.
		waitAvailable(t, e, cluster, metav1.ConditionTrue)
		// And so say the manager's fleet gauges, scraped from its pod as Prometheus would.
		mcas := &addonv1beta1.ManagedClusterAddOnList{}
		must.Succeed(t, e.Hub.Client.List(ctx, mcas))
		n := float64(len(mcas.Items))
		poll.Until(t, time.Minute, "fleet gauges: every agent connected, this one's Argo CD not ready", func(ctx context.Context) (bool, error) {
			body, err := e.Metrics(ctx)
			if err != nil {
				return false, err
			}
			for _, want := range []struct {
				labels map[string]string
				value  float64
			}{
				{map[string]string{"condition": "Available", "status": "True"}, n},
				{map[string]string{"condition": "ArgoCDReady", "status": "True"}, n - 1},
				{map[string]string{"condition": "ArgoCDReady", "status": "False"}, 1},
			} {
				v, ok, err := metrictext.Value(body, "argocd_agent_addon_agents_condition", want.labels)
				if err != nil || !ok || v != want.value {
					return false, fmt.Errorf("argocd_agent_addon_agents_condition%v = %v (found %v, %v), want %v", want.labels, v, ok, err, want.value)
				}
			}
			v, ok, err := metrictext.Value(body, "argocd_agent_addon_agents", nil)
			return err == nil && ok && v == n, err
		})
	})
}

// startAutonomous enrols cluster with an AddOnDeploymentConfig of its own, the fleet's with
// agentMode autonomous, and waits until its agent runs in that mode, connected.
func startAutonomous(t *testing.T, ctx context.Context, e *harness.Env, cluster string) {
	t.Helper()
	fleet := &addonv1beta1.AddOnDeploymentConfig{}
	must.Succeed(t, e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: harness.AddonNamespace, Name: harness.FleetConfigName}, fleet))
	adc := &addonv1beta1.AddOnDeploymentConfig{ObjectMeta: metav1.ObjectMeta{Namespace: harness.AddonNamespace, Name: cluster}, Spec: *fleet.Spec.DeepCopy()}
	adc.Spec.CustomizedVariables = slices.DeleteFunc(adc.Spec.CustomizedVariables, func(v addonv1beta1.CustomizedVariable) bool {
		return v.Name == agentconfig.VarAgentMode
	})
	adc.Spec.CustomizedVariables = append(adc.Spec.CustomizedVariables, addonv1beta1.CustomizedVariable{Name: agentconfig.VarAgentMode, Value: agentconfig.ModeAutonomous})
	must.Succeed(t, e.Hub.Client.Create(ctx, adc))
	must.Succeed(t, e.SetEnabled(ctx, cluster, true))
	poll.Until(t, 2*time.Minute, cluster+"'s ManagedClusterAddOn", func(ctx context.Context) (bool, error) {
		err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: cluster, Name: identity.AddonName}, &addonv1beta1.ManagedClusterAddOn{})
		return err == nil, client.IgnoreNotFound(err)
	})
	setClusterConfig(t, ctx, e, cluster, adc)
	a, err := e.StartAgent(ctx, cluster)
	must.Succeed(t, err)
	poll.Until(t, 3*time.Minute, cluster+"'s agent in autonomous mode", func(context.Context) (bool, error) {
		d := a.Delivered()
		return d != nil && d.Mode == agentconfig.ModeAutonomous, nil
	})
	waitAvailable(t, e, cluster, metav1.ConditionTrue)
}

// waitArgoCDReady waits for the add-on's ArgoCDReady condition, which the cluster's work agent
// feeds from its read-only report on the cluster's Argo CD.
func waitArgoCDReady(t *testing.T, e *harness.Env, cluster string, status metav1.ConditionStatus, says string) {
	t.Helper()
	poll.Until(t, 2*time.Minute, fmt.Sprintf("%s ArgoCDReady=%s", cluster, status), func(ctx context.Context) (bool, error) {
		mca := &addonv1beta1.ManagedClusterAddOn{}
		if err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: cluster, Name: identity.AddonName}, mca); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(mca.Status.Conditions, spokeready.ConditionArgoCDReady)
		if c == nil {
			return false, nil
		}
		if c.Status == status && strings.Contains(c.Message, says) {
			t.Logf("%s: ArgoCDReady %s %s: %s", cluster, c.Status, c.Reason, c.Message)
			return true, nil
		}
		return false, fmt.Errorf("ArgoCDReady %s %s: %s", c.Status, c.Reason, c.Message)
	})
}
