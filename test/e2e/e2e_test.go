// Package e2e proves the add-on end to end on real parts: the OCM hub and klusterlet
// controllers (v1.2.1), the add-on manager binary installed from its chart, and the real Argo
// CD agent principal and agents (v0.9.0), each managed cluster with its own kube-apiserver.
//
// Each managed cluster has a real node (package test/node): the agent runs as the pod of the
// Deployment OCM's work agent applied, from upstream's image layout, under the ServiceAccount and
// RBAC the add-on delivers, and the kubelet's readiness probe on its /healthz makes the add-on
// Available. Stand-ins are listed in test/README.md.
package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/addon"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/clustersecret"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/revoke"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/customization"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/argocd"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/chart"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/e2e/harness"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/node"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
)

var applicationGVK = schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Application"}

func start(t *testing.T, o harness.Options) (context.Context, *harness.Env) {
	t.Helper()
	// Each test has a hub and clusters of its own (nodes take separate slots), and most of
	// their time is waiting for renewals and rollouts: two at a time (go test's -parallel,
	// GOMAXPROCS) halve the package's time on 2 cores.
	t.Parallel()
	dir, err := os.MkdirTemp("", "argocd-agent-addon-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.Dir = dir
	began := time.Now()
	o.Progress = func(format string, args ...any) {
		t.Logf("[%5.1fs] %s", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	e, err := harness.Start(ctx, o)
	t.Cleanup(func() {
		if e != nil {
			e.Stop()
		}
		cancel()
		if t.Failed() {
			dumpLogs(t, dir)
			t.Logf("logs kept in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	if err != nil {
		t.Fatal(err)
	}
	return ctx, e
}

func TestEndToEnd(t *testing.T) {
	ctx, e := start(t, harness.Options{})
	clusters := []string{"cluster1", "cluster2"}
	for _, c := range clusters {
		must.Succeed(t, e.SetEnabled(ctx, c, true))
	}
	agents := map[string]*harness.Agent{}
	for _, c := range clusters {
		a, err := e.StartAgent(ctx, c)
		must.Succeed(t, err)
		agents[c] = a
		t.Logf("%s: add-on objects and the signed certificate are on the spoke; agent started", c)
	}

	t.Run("each agent connects with the certificate the add-on signed", func(t *testing.T) {
		for _, c := range clusters {
			cert := parseCert(t, agents[c].Delivered().ClientCertPEM)
			if want := "CN=" + c + ",OU=" + identity.CAUnit(authority.ID(parseCert(t, e.CACertPEM))); cert.Subject.String() != want {
				t.Errorf("%s: certificate subject %q, want %s", c, cert.Subject, want)
			}
			if err := cert.CheckSignatureFrom(parseCert(t, e.CACertPEM)); err != nil {
				t.Errorf("%s: certificate not signed by the hub CA: %v", c, err)
			}
		}
		poll.Until(t, 60*time.Second, "principal lists both agents", func(ctx context.Context) (bool, error) {
			names, err := e.Principal.ConnectedAgents(ctx)
			return err == nil && slices.Contains(names, "cluster1") && slices.Contains(names, "cluster2"), err
		})
		n, err := e.Principal.ConnectedAgentCount(ctx)
		if err != nil || n != 2 {
			t.Errorf("agent_connected_with_principal = %d (%v), want 2", n, err)
		}
	})

	t.Run("ManagedClusterAddOn Available while connected", func(t *testing.T) {
		for _, c := range clusters {
			waitAvailable(t, e, c, metav1.ConditionTrue)
		}
	})

	t.Run("agents dial the address discovered from the principal's Service, and say so", func(t *testing.T) {
		for _, c := range clusters {
			if got, want := net.JoinHostPort(agents[c].Delivered().Address, strconv.Itoa(agents[c].Delivered().Port)), e.Principal.Addr(); got != want {
				t.Errorf("%s: agent dials %s, want the Service's load balancer address %s", c, got, want)
			}
			mca := &addonv1beta1.ManagedClusterAddOn{}
			must.Succeed(t, e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: c, Name: identity.AddonName}, mca))
			cond := meta.FindStatusCondition(mca.Status.Conditions, addon.ConditionPrincipalAddress)
			if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != principal.SourceService ||
				!strings.HasPrefix(cond.Message, e.Principal.Addr()+" (Service argocd/"+argocd.PrincipalName) {
				t.Errorf("%s: PrincipalAddress condition %+v, want True from the principal's Service", c, cond)
			}
		}
	})

	t.Run("a valid config is never reported invalid while OCM resolves it", func(t *testing.T) {
		// The manager renders nothing before OCM's addon-manager sets Configured: a render
		// before would find no config and report the valid fleet config invalid.
		for _, c := range clusters {
			events := &eventsv1.EventList{}
			must.Succeed(t, e.Hub.Client.List(ctx, events, client.InNamespace(c)))
			for _, ev := range events.Items {
				if ev.Reason == addon.ReasonInvalidAgentConfig {
					t.Errorf("%s: %s event for a valid config: %s", c, ev.Reason, ev.Note)
				}
			}
		}
	})

	t.Run("an Application in the cluster's hub namespace reaches its spoke", func(t *testing.T) {
		app := &unstructured.Unstructured{Object: map[string]any{
			"metadata": map[string]any{"name": "guestbook", "namespace": "cluster1"},
			"spec": map[string]any{
				"project":     "default",
				"source":      map[string]any{"repoURL": "https://example.com/argocd-example-apps.git", "path": "guestbook", "targetRevision": "HEAD"},
				"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": "guestbook"},
			},
		}}
		app.SetGroupVersionKind(applicationGVK)
		must.Succeed(t, e.Hub.Client.Create(ctx, app))
		poll.Until(t, 60*time.Second, "Application on cluster1's spoke", func(ctx context.Context) (bool, error) {
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(applicationGVK)
			err := e.Spokes["cluster1"].API.Client.Get(ctx, types.NamespacedName{Namespace: identity.DefaultInstallNamespace, Name: "guestbook"}, got)
			return err == nil, client.IgnoreNotFound(err)
		})
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(applicationGVK)
		err := e.Spokes["cluster2"].API.Client.Get(ctx, types.NamespacedName{Namespace: identity.DefaultInstallNamespace, Name: "guestbook"}, got)
		if !apierrors.IsNotFound(err) {
			t.Errorf("cluster1's Application reached cluster2 (err %v)", err)
		}
	})

	t.Run("Argo CD reads a spoke object through the resource proxy with the cluster secret the add-on keeps", func(t *testing.T) {
		// What Argo CD's application controller on the spoke deploys for guestbook carries its
		// tracking annotation; the agent serves only such objects, and only those its own RBAC
		// lets it read: here the argocd namespace, not guestbook's (docs/operations.md).
		want := trackedConfigMap(t, ctx, e, "cluster1")
		outOfReach := createTracked(t, ctx, e, "cluster1", "guestbook")
		resourceProxyGet(t, ctx, e, "cluster1", want)
		live := resourceProxyClient(t, ctx, e, "cluster1")
		for _, refused := range []struct{ namespace, name, why string }{
			{outOfReach.Namespace, outOfReach.Name, "outside the agent's RBAC"},
			{identity.DefaultInstallNamespace, identity.ParamsConfigMapName, "not managed by an Application"},
		} {
			if _, err := live.CoreV1().ConfigMaps(refused.namespace).Get(ctx, refused.name, metav1.GetOptions{}); err == nil {
				t.Errorf("the resource proxy served %s/%s, %s", refused.namespace, refused.name, refused.why)
			} else {
				t.Logf("%s/%s (%s) refused: %v", refused.namespace, refused.name, refused.why, err)
			}
		}
	})

	t.Run("a client certificate from another CA is refused", func(t *testing.T) {
		otherCA, otherKey, err := testca.New("another-ca", time.Hour)
		must.Succeed(t, err)
		cert, key, err := testca.IssueCert(otherCA, otherKey, testca.CertRequest{CommonName: "cluster1", Client: true})
		must.Succeed(t, err)
		if err := argocd.ProbeMTLS(ctx, e.Principal.Addr(), e.CACertPEM, cert, key); err == nil {
			t.Fatal("the principal accepted a certificate from another CA")
		}
		d := agents["cluster1"].Delivered()
		if err := argocd.ProbeMTLS(ctx, e.Principal.Addr(), e.CACertPEM, d.ClientCertPEM, d.ClientKey); err != nil {
			t.Fatalf("the principal refused the add-on's certificate: %v", err)
		}
	})

	t.Run("the CA private key is on no spoke", func(t *testing.T) {
		block, _ := pem.Decode(e.CAKeyPEM)
		for _, c := range clusters {
			spoke := e.Spokes[c].API.Client
			secrets, configMaps := &corev1.SecretList{}, &corev1.ConfigMapList{}
			must.Succeed(t, spoke.List(ctx, secrets))
			must.Succeed(t, spoke.List(ctx, configMaps))
			var values [][]byte
			for _, s := range secrets.Items {
				for _, v := range s.Data {
					values = append(values, v)
				}
			}
			for _, cm := range configMaps.Items {
				for _, v := range cm.Data {
					values = append(values, []byte(v))
				}
			}
			for _, v := range values {
				if bytes.Contains(v, block.Bytes) || bytes.Contains(v, bytes.TrimSpace(e.CAKeyPEM)) {
					t.Fatalf("%s: the CA private key is on the spoke", c)
				}
			}
			t.Logf("%s: %d secrets and %d config maps checked", c, len(secrets.Items), len(configMaps.Items))
		}
	})

	t.Run("not Available while the principal is down, Available again after", func(t *testing.T) {
		must.Succeed(t, e.StopPrincipal(ctx))
		waitAvailable(t, e, "cluster1", metav1.ConditionFalse)
		must.Succeed(t, e.StartPrincipal(ctx))
		waitAvailable(t, e, "cluster1", metav1.ConditionTrue)
	})

	t.Run("a customisation reaches the agent's pod, which stays connected; removed, it leaves nothing", func(t *testing.T) {
		const cluster = "cluster2"
		custom := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
			"pod": map[string]any{
				"annotations": map[string]any{"example.com/customised": "true"},
				// An init container from the image on the node: the agent binary's version.
				"initContainers": []any{map[string]any{
					"name": "version", "image": agentconfig.DefaultImage, "imagePullPolicy": "IfNotPresent", "args": []any{"version"},
					"securityContext": map[string]any{
						"allowPrivilegeEscalation": false, "runAsNonRoot": true,
						"capabilities": map[string]any{"drop": []any{"ALL"}}, "seccompProfile": map[string]any{"type": "RuntimeDefault"},
					},
				}},
			},
			"agent": map[string]any{"args": []any{"--keep-alive-ping-interval=30s"}},
			"extraObjects": []any{map[string]any{
				"apiVersion": "v1", "kind": "ConfigMap",
				"metadata": map[string]any{"name": "argocd-agent-addon-customisation-extra", "namespace": identity.DefaultInstallNamespace},
				"data":     map[string]any{"owner": "platform"},
			}},
		}}}
		custom.SetGroupVersionKind(customization.GVK)
		custom.SetNamespace(harness.AddonNamespace)
		custom.SetName(cluster + "-extras")
		must.Succeed(t, e.Hub.Client.Create(ctx, custom))
		useCustomization := func(name string) {
			must.Succeed(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
				mca := &addonv1beta1.ManagedClusterAddOn{}
				if err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: cluster, Name: identity.AddonName}, mca); err != nil {
					return err
				}
				gr := addonv1beta1.ConfigGroupResource{Group: customization.Group, Resource: customization.Resource}
				mca.Spec.Configs = slices.DeleteFunc(mca.Spec.Configs, func(c addonv1beta1.AddOnConfig) bool { return c.ConfigGroupResource == gr })
				if name != "" {
					mca.Spec.Configs = append(mca.Spec.Configs, addonv1beta1.AddOnConfig{ConfigGroupResource: gr,
						ConfigReferent: addonv1beta1.ConfigReferent{Namespace: harness.AddonNamespace, Name: name}})
				}
				return e.Hub.Client.Update(ctx, mca)
			}))
		}
		spoke := e.Spokes[cluster].API.Client
		extraOnSpoke := func(ctx context.Context) (bool, error) {
			err := spoke.Get(ctx, types.NamespacedName{Namespace: identity.DefaultInstallNamespace, Name: "argocd-agent-addon-customisation-extra"}, &corev1.ConfigMap{})
			return err == nil, client.IgnoreNotFound(err)
		}
		customisedPod := func(ctx context.Context) (*corev1.Pod, error) {
			pods := &corev1.PodList{}
			if err := spoke.List(ctx, pods, client.InNamespace(identity.DefaultInstallNamespace), client.MatchingLabels{"app.kubernetes.io/name": identity.AgentName}); err != nil {
				return nil, err
			}
			for i := range pods.Items {
				if p := &pods.Items[i]; p.DeletionTimestamp == nil && p.Annotations["example.com/customised"] == "true" {
					return p, nil
				}
			}
			return nil, nil
		}

		useCustomization(custom.GetName())
		poll.Until(t, 3*time.Minute, cluster+": customised agent pod Ready, its init container done, the extra object applied", func(ctx context.Context) (bool, error) {
			p, err := customisedPod(ctx)
			if err != nil || p == nil {
				return false, err
			}
			initDone := len(p.Status.InitContainerStatuses) == 1 && p.Status.InitContainerStatuses[0].State.Terminated != nil &&
				p.Status.InitContainerStatuses[0].State.Terminated.ExitCode == 0
			ready := slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue })
			extra, err := extraOnSpoke(ctx)
			return initDone && ready && extra && slices.Contains(p.Spec.Containers[0].Args, "--keep-alive-ping-interval=30s"), err
		})
		// The ServiceAccount token reaches the agent container only: the pod as the spoke's API
		// server admitted it (its ServiceAccount admission mounts a token into every container
		// of a pod that automounts one) has no token mount in the added container.
		p, err := customisedPod(ctx)
		must.Succeed(t, err)
		const tokenDir = "/var/run/secrets/kubernetes.io/serviceaccount"
		mountsToken := func(c corev1.Container) bool {
			return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return strings.HasPrefix(m.MountPath, tokenDir) })
		}
		if p == nil || len(p.Spec.Containers) == 0 || !mountsToken(p.Spec.Containers[0]) {
			t.Fatalf("the agent container has no ServiceAccount token mount: %+v", p)
		}
		for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers[1:]...) {
			if mountsToken(c) {
				t.Errorf("added container %s mounts the agent's ServiceAccount token: %+v", c.Name, c.VolumeMounts)
			}
		}
		waitAvailable(t, e, cluster, metav1.ConditionTrue)
		poll.Until(t, 60*time.Second, "the principal lists the customised agent", func(ctx context.Context) (bool, error) {
			names, err := e.Principal.ConnectedAgents(ctx)
			return slices.Contains(names, cluster), err
		})

		useCustomization("")
		poll.Until(t, 3*time.Minute, cluster+": the extra object gone and the agent's pod plain again", func(ctx context.Context) (bool, error) {
			extra, err := extraOnSpoke(ctx)
			if err != nil || extra {
				return false, err
			}
			p, err := customisedPod(ctx)
			return p == nil, err
		})
		waitAvailable(t, e, cluster, metav1.ConditionTrue)
	})

	t.Run("revoke removes the add-on; unrevoke brings it back with a new certificate", func(t *testing.T) {
		before := parseCert(t, agents["cluster1"].Delivered().ClientCertPEM).SerialNumber
		o := &revoke.Options{RestConfig: e.Hub.Config, Reason: "e2e: suspected compromise", PrincipalNamespace: harness.ArgoCDNamespace, Namespace: harness.AddonNamespace}
		must.Succeed(t, o.Revoke(ctx, "cluster1", io.Discard))
		poll.Until(t, 90*time.Second, "OCM removes cluster1's add-on", func(ctx context.Context) (bool, error) {
			err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: "cluster1", Name: identity.AddonName}, &addonv1beta1.ManagedClusterAddOn{})
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
		poll.Until(t, 90*time.Second, "cluster1's Argo CD cluster secret deleted", func(ctx context.Context) (bool, error) {
			err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: harness.ArgoCDNamespace, Name: clustersecret.Name("cluster1")}, &corev1.Secret{})
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
		poll.Until(t, 90*time.Second, "agent Deployment removed from cluster1", func(ctx context.Context) (bool, error) {
			err := e.Spokes["cluster1"].API.Client.Get(ctx, types.NamespacedName{Namespace: identity.DefaultInstallNamespace, Name: identity.AgentName}, &appsv1.Deployment{})
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})

		// The revoked cluster, with its own OCM credentials, tries to undo it.
		attacksFrom := time.Now()
		key, value := enrolmentLabel()
		revokedAttacks := append([]attack{
			{"remove the revoked label (update)", setOwnLabel("cluster1", identity.RevokedLabel, "", false)},
			{"remove the revoked label (merge patch)", setOwnLabel("cluster1", identity.RevokedLabel, "", true)},
			{"change the revoked label's value", setOwnLabel("cluster1", identity.RevokedLabel, "false", true)},
			{"change the enrolment label's value", setOwnLabel("cluster1", key, "again", true)},
		}, addonAttacks("cluster1")...)
		runAttacks(t, ctx, e, "cluster1", revokedAttacks)
		fileOwnCSRs(t, ctx, e, "cluster1", 3, policy.ReasonRevoked)
		time.Sleep(5 * time.Second) // room for OCM's Placement and addon-manager to act on anything that got through
		stillRevoked(t, ctx, e, "cluster1")
		if n := signedSince(t, ctx, e, "cluster1", attacksFrom); n != 0 {
			t.Fatalf("%d certificates signed for the revoked cluster during the attacks", n)
		}
		t.Logf("revoked cluster: %d hostile kinds and 3 CSRs, 0 certificates signed; enrolment label %s=%s untouched", len(revokedAttacks)+1, key, value)

		must.Succeed(t, o.Unrevoke(ctx, "cluster1", io.Discard))
		poll.Until(t, 120*time.Second, "cluster1's agent back with a new certificate", func(ctx context.Context) (bool, error) {
			d := agents["cluster1"].Delivered()
			names, err := e.Principal.ConnectedAgents(ctx)
			return parseCert(t, d.ClientCertPEM).SerialNumber.Cmp(before) != 0 && slices.Contains(names, "cluster1"), err
		})
		waitAvailable(t, e, "cluster1", metav1.ConditionTrue)
	})

	t.Run("removing the label removes the add-on and everything it put on the spoke", func(t *testing.T) {
		must.Succeed(t, e.SetEnabled(ctx, "cluster2", false))
		poll.Until(t, 90*time.Second, "ManagedClusterAddOn of cluster2 deleted", func(ctx context.Context) (bool, error) {
			err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: "cluster2", Name: identity.AddonName}, &addonv1beta1.ManagedClusterAddOn{})
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
		poll.Until(t, 90*time.Second, "cluster2's Argo CD cluster secret deleted", func(ctx context.Context) (bool, error) {
			err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: harness.ArgoCDNamespace, Name: clustersecret.Name("cluster2")}, &corev1.Secret{})
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
		// Unenrolled, cluster2 tries to enrol itself with its own OCM credentials.
		attacksFrom := time.Now()
		key, value := enrolmentLabel()
		unenrolledAttacks := append([]attack{
			{"add the enrolment label (update)", setOwnLabel("cluster2", key, value, false)},
			{"add the enrolment label (merge patch)", setOwnLabel("cluster2", key, value, true)},
		}, addonAttacks("cluster2")...)
		runAttacks(t, ctx, e, "cluster2", unenrolledAttacks)
		fileOwnCSRs(t, ctx, e, "cluster2", 2, policy.ReasonNotEnrolled)
		if n := signedSince(t, ctx, e, "cluster2", attacksFrom); n != 0 {
			t.Fatalf("%d certificates signed for the unenrolled cluster during the attacks", n)
		}
		t.Logf("unenrolled cluster: %d hostile kinds and 2 CSRs, 0 certificates signed", len(unenrolledAttacks)+1)

		spoke := e.Spokes["cluster2"].API.Client
		ns := identity.DefaultInstallNamespace
		gone := []client.Object{
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: identity.AgentName}},
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "argocd-agent-params"}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: identity.CASecretName}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: identity.ClientCertSecretName}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: identity.AgentName}},
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: identity.AgentName}},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: identity.AgentName}},
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: identity.AgentName}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: identity.AgentName}},
		}
		for _, obj := range gone {
			poll.Until(t, 90*time.Second, fmt.Sprintf("%T %s deleted from cluster2", obj, obj.GetName()), func(ctx context.Context) (bool, error) {
				err := spoke.Get(ctx, client.ObjectKeyFromObject(obj), obj)
				return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
			})
		}
		// And the agent's pod with its Deployment: the node stopped it.
		poll.Until(t, 90*time.Second, "agent pod gone from cluster2", func(ctx context.Context) (bool, error) {
			pods := &corev1.PodList{}
			err := spoke.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/name": identity.AgentName})
			return err == nil && len(pods.Items) == 0, err
		})
		// Argo CD's namespace is orphaned, never deleted, with the add-on.
		nsObj := &corev1.Namespace{}
		must.Succeed(t, spoke.Get(ctx, types.NamespacedName{Name: ns}, nsObj))
		if nsObj.DeletionTimestamp != nil {
			t.Error("the add-on deleted Argo CD's namespace")
		}
		// cluster1 is untouched.
		waitAvailable(t, e, "cluster1", metav1.ConditionTrue)
	})

	// Revoked before the uninstall: the revocation and the record of its certificates must
	// outlive it, so that a reinstall does not let the cluster back in.
	records := issued.Records{Reader: e.Hub.Client, Namespace: harness.AddonNamespace}
	var revokedCerts []issued.Certificate
	t.Run("revoke cluster1 before uninstalling", func(t *testing.T) {
		o := &revoke.Options{RestConfig: e.Hub.Config, Reason: "e2e: revoked across a reinstall", PrincipalNamespace: harness.ArgoCDNamespace, Namespace: harness.AddonNamespace}
		must.Succeed(t, o.Revoke(ctx, "cluster1", io.Discard))
		rec, err := issued.Load(ctx, e.Hub.Client, harness.AddonNamespace, "cluster1")
		must.Succeed(t, err)
		revokedCerts = rec.Unexpired(time.Now())
		if rec.Revocation == nil || len(revokedCerts) == 0 {
			t.Fatalf("record of cluster1 after revoke: %+v", rec)
		}
		blocked := blocklist(t, ctx, e)
		for _, c := range revokedCerts {
			if !blocked[c.Fingerprint] {
				t.Fatalf("certificate %s of cluster1 not blocklisted", c.Fingerprint)
			}
		}
	})

	t.Run("helm uninstall removes the agents and leaves nothing of ours on the hub but the records", func(t *testing.T) {
		must.Succeed(t, e.UninstallChart(ctx))
		hub := e.Hub.Client
		spoke := e.Spokes["cluster1"].API.Client
		poll.Until(t, 2*time.Minute, "cluster1's agent Deployment and pod gone", func(ctx context.Context) (bool, error) {
			pods := &corev1.PodList{}
			if err := spoke.List(ctx, pods, client.InNamespace(identity.DefaultInstallNamespace), client.MatchingLabels{"app.kubernetes.io/name": identity.AgentName}); err != nil {
				return false, err
			}
			err := spoke.Get(ctx, types.NamespacedName{Namespace: identity.DefaultInstallNamespace, Name: identity.AgentName}, &appsv1.Deployment{})
			return apierrors.IsNotFound(err) && len(pods.Items) == 0, client.IgnoreNotFound(err)
		})
		release := client.MatchingLabels{"app.kubernetes.io/instance": chart.ReleaseName}
		left := func(ctx context.Context) ([]string, error) {
			var names []string
			lists := map[string]client.ObjectList{
				"ClusterManagementAddOn": &addonv1beta1.ClusterManagementAddOnList{}, "ManagedClusterAddOn": &addonv1beta1.ManagedClusterAddOnList{},
				"ManifestWork": &workv1.ManifestWorkList{}, "ClusterRole": &rbacv1.ClusterRoleList{}, "ClusterRoleBinding": &rbacv1.ClusterRoleBindingList{},
				"ValidatingAdmissionPolicy": &admissionregistrationv1.ValidatingAdmissionPolicyList{}, "Pod": &corev1.PodList{},
				"Secret (Argo CD cluster secret)": &corev1.SecretList{},
			}
			for kind, list := range lists {
				var opts []client.ListOption
				switch kind {
				case "ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy":
					opts = append(opts, release)
				case "Pod":
					opts = append(opts, client.InNamespace(harness.AddonNamespace))
				case "Secret (Argo CD cluster secret)":
					opts = append(opts, client.HasLabels{clustersecret.ManagedLabel})
				case "ManifestWork":
					opts = append(opts, client.MatchingLabels{addonv1beta1.AddonLabelKey: identity.AddonName})
				}
				if err := hub.List(ctx, list, opts...); err != nil {
					return nil, err
				}
				items, err := meta.ExtractList(list)
				if err != nil {
					return nil, err
				}
				for _, item := range items {
					o, _ := meta.Accessor(item)
					if kind == "ClusterManagementAddOn" && o.GetName() != identity.AddonName {
						continue
					}
					names = append(names, kind+" "+o.GetNamespace()+"/"+o.GetName())
				}
			}
			return names, nil
		}
		var remaining []string
		poll.Until(t, 2*time.Minute, "nothing of the add-on left on the hub", func(ctx context.Context) (bool, error) {
			var err error
			remaining, err = left(ctx)
			if len(remaining) > 0 {
				err = fmt.Errorf("left: %v", remaining)
			}
			return err == nil, err
		})
		// The principal's certificates and JWT key the add-on made go with it; the CA it made
		// stays, since the principal and any agent elsewhere trust it.
		poll.Until(t, time.Minute, "the principal's certificates and JWT key the add-on made removed", func(ctx context.Context) (bool, error) {
			for _, name := range []string{argocd.PrincipalTLSSecret, argocd.ResourceProxyTLSSecret, argocd.JWTSecret} {
				err := hub.Get(ctx, types.NamespacedName{Namespace: harness.ArgoCDNamespace, Name: name}, &corev1.Secret{})
				if !apierrors.IsNotFound(err) {
					return false, client.IgnoreNotFound(err)
				}
			}
			return true, nil
		})
		must.Succeed(t, hub.Get(ctx, types.NamespacedName{Namespace: harness.ArgoCDNamespace, Name: harness.CASecretName}, &corev1.Secret{}))
		// The records stay, revocation included: they are no part of the release.
		rec, err := records.Revocation(ctx, "cluster1")
		if err != nil || rec == nil {
			t.Fatalf("cluster1's revocation after helm uninstall: %+v, %v", rec, err)
		}
		t.Log("helm uninstall: agents removed, and no ClusterManagementAddOn, ManagedClusterAddOn, ManifestWork, cluster secret, RBAC, admission policy or pod of the add-on left on the hub; the records and cluster1's revocation stay")
	})

	t.Run("helm install again and helm upgrade: the revoked cluster stays revoked", func(t *testing.T) {
		must.Succeed(t, e.ReinstallChart(ctx))
		check := func(when string) {
			t.Helper()
			rec, err := issued.Load(ctx, e.Hub.Client, harness.AddonNamespace, "cluster1")
			must.Succeed(t, err)
			if rec.Revocation == nil {
				t.Fatalf("%s: cluster1 is no longer revoked", when)
			}
			held := map[string]bool{}
			for _, c := range rec.Certificates {
				held[c.Fingerprint] = true
			}
			blocked := blocklist(t, ctx, e)
			for _, c := range revokedCerts {
				if !held[c.Fingerprint] || !blocked[c.Fingerprint] {
					t.Fatalf("%s: certificate %s of cluster1 recorded %v, blocklisted %v", when, c.Fingerprint, held[c.Fingerprint], blocked[c.Fingerprint])
				}
			}
			// Its CSRs, filed with its own registration credentials as OCM files them.
			fileOwnCSRs(t, ctx, e, "cluster1", 2, policy.ReasonRevoked)
			err = e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: "cluster1", Name: hubfixture.WorkName}, &workv1.ManifestWork{})
			if !apierrors.IsNotFound(err) {
				t.Fatalf("%s: cluster1 has a ManifestWork again (%v)", when, err)
			}
		}
		check("after helm install")
		must.Succeed(t, e.UpgradeChart(ctx, map[string]string{"logVerbosity": "3"}))
		check("after helm upgrade")
		t.Logf("cluster1 revoked across helm uninstall, install and upgrade: %d certificates still recorded and blocklisted, its CSRs denied Revoked", len(revokedCerts))
	})
}

// blocklist returns the fingerprints in the principal's TLS blocklist.
func blocklist(t *testing.T, ctx context.Context, e *harness.Env) map[string]bool {
	t.Helper()
	cm := &corev1.ConfigMap{}
	must.Succeed(t, e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: harness.ArgoCDNamespace, Name: identity.TLSBlocklistConfigMap}, cm))
	out := map[string]bool{}
	for k := range cm.Data {
		out[k] = true
	}
	return out
}

func waitAvailable(t *testing.T, e *harness.Env, cluster string, want metav1.ConditionStatus) {
	t.Helper()
	poll.Until(t, 120*time.Second, fmt.Sprintf("%s add-on Available=%s", cluster, want), func(ctx context.Context) (bool, error) {
		mca := &addonv1beta1.ManagedClusterAddOn{}
		if err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: cluster, Name: identity.AddonName}, mca); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(mca.Status.Conditions, addonv1beta1.ManagedClusterAddOnConditionAvailable)
		return c != nil && c.Status == want, nil
	})
}

// podLogs reads the streamed logs of pods (agents, the principal) for a check over their text,
// and fails on one that was not really read: a check for what a log must not say passes on an
// empty file.
func podLogs(t *testing.T, files []string) map[string]string {
	t.Helper()
	if len(files) == 0 {
		t.Fatal("no pod logs to check")
	}
	out := map[string]string{}
	for _, f := range files {
		// Logs are streamed by a goroutine per pod: the newest pod's first lines may still be
		// on their way (CI once read an agent pod's log while it was still empty).
		var data []byte
		waitErr := poll.Wait(context.Background(), 200*time.Millisecond, 30*time.Second, func(context.Context) (bool, error) {
			var err error
			data, err = os.ReadFile(f)
			return len(data) > 0, err
		})
		if len(data) == 0 || strings.HasPrefix(string(data), node.LogReadFailure) {
			t.Fatalf("%s: no log was read: %q (%v)", f, data, waitErr)
		}
		if strings.Contains(string(data), node.LogCut) {
			t.Fatalf("%s: only part of the log was read", f)
		}
		out[f] = string(data)
	}
	return out
}

// agentLogs are the log files of every pod the agent ran in.
func agentLogs(a *harness.Agent) []string {
	var out []string
	for _, p := range a.Pods() {
		out = append(out, p.Log)
	}
	return out
}

// dumpLogs prints the tail of every process log of a failed run.
func dumpLogs(t *testing.T, dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	more, _ := filepath.Glob(filepath.Join(dir, "*", "*.log"))
	for _, f := range append(logs, more...) {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		t.Logf("---- %s (last %d lines) ----\n%s", f, len(lines), strings.Join(lines, "\n"))
	}
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	must.Succeed(t, err)
	return cert
}

// With --certificate-subject=ocm the agent gets OCM's long subject, and a principal configured
// as for the existing OCM add-ons (regex on that CN, no match-subject) maps it to the cluster.
func TestOCMSubjectCompat(t *testing.T) {
	ctx, e := start(t, harness.Options{Clusters: []string{"compat1"}, CertificateSubject: string(identity.SubjectOCM), HarnessPKI: true})
	must.Succeed(t, e.SetEnabled(ctx, "compat1", true))
	a, err := e.StartAgent(ctx, "compat1")
	must.Succeed(t, err)
	want := "CN=system:open-cluster-management:cluster:compat1:addon:argocd-agent:agent:argocd-agent-agent"
	if got := parseCert(t, a.Delivered().ClientCertPEM).Subject.String(); !strings.HasPrefix(got, want+",") {
		t.Fatalf("subject %q, want %s plus OCM's groups", got, want)
	}
	poll.Until(t, 60*time.Second, "principal lists compat1", func(ctx context.Context) (bool, error) {
		names, err := e.Principal.ConnectedAgents(ctx)
		return err == nil && slices.Contains(names, "compat1"), err
	})
	waitAvailable(t, e, "compat1", metav1.ConditionTrue)
}

// OCM renews the agent's certificate when 20-25 % of its lifetime is left; the agent, which
// reads its certificate only at start-up, must come up with each new one before the old one
// expires, restarting once per renewal, with no connection failing on an expired certificate.
func TestCertificateRotation(t *testing.T) {
	const renewals = 3
	ctx, e := start(t, harness.Options{Clusters: []string{"rotate"}, CertLifetime: 2 * time.Minute})
	must.Succeed(t, e.SetEnabled(ctx, "rotate", true))
	a, err := e.StartAgent(ctx, "rotate")
	must.Succeed(t, err)
	waitAvailable(t, e, "rotate", metav1.ConditionTrue)
	// Renewals must not depend on the render: with an invalid fleet config value, the cluster
	// keeps the configuration it runs, and its agent still rolls onto every new certificate.
	goodPort := a.Delivered().Port
	setFleetVariable(t, ctx, e, agentconfig.VarPrincipalPort, "99999")
	poll.Until(t, 60*time.Second, "AgentConfigValid=False for the invalid port", func(ctx context.Context) (bool, error) {
		mca := &addonv1beta1.ManagedClusterAddOn{}
		err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: "rotate", Name: identity.AddonName}, mca)
		return err == nil && meta.IsStatusConditionFalse(mca.Status.Conditions, addon.ConditionAgentConfigValid), err
	})

	// Serial of each certificate the agent ran with, and when it was replaced.
	var serials []string
	var lastNotAfter time.Time
	rollsAtStart := -1
	poll.Until(t, 10*time.Minute, fmt.Sprintf("%d renewals used by the agent", renewals), func(ctx context.Context) (bool, error) {
		cert := parseCert(t, a.Delivered().ClientCertPEM)
		serial := cert.SerialNumber.String()
		if len(serials) == 0 || serials[len(serials)-1] != serial {
			if len(serials) > 0 && !time.Now().Before(lastNotAfter) {
				t.Errorf("the agent switched to certificate %s only after the previous one expired at %s", serial, lastNotAfter)
			}
			serials = append(serials, serial)
			lastNotAfter = cert.NotAfter
			if rollsAtStart < 0 {
				rollsAtStart = a.Restarts()
			}
			t.Logf("agent runs with certificate %s (valid %s to %s), %d rolls so far",
				serial, cert.NotBefore.Format(time.TimeOnly), cert.NotAfter.Format(time.TimeOnly), a.Restarts())
		}
		// The agent must be connected with each certificate.
		names, err := e.Principal.ConnectedAgents(ctx)
		return len(serials) > renewals && err == nil && slices.Contains(names, "rotate"), err
	})
	// Once per renewal (the first certificate may itself roll the pod once, at install).
	if rolls := a.Restarts() - rollsAtStart; rolls < renewals || rolls > renewals+1 {
		t.Errorf("%d rolls for %d renewals, want one per renewal", rolls, renewals)
	}
	if n := a.ContainerRestarts(); n != 0 {
		t.Errorf("the agent's container restarted %d times inside its pods: a crash, not a roll", n)
	}
	waitAvailable(t, e, "rotate", metav1.ConditionTrue)
	logs := podLogs(t, append(agentLogs(a), e.Principal.LogFiles()...))
	for f, data := range logs {
		if n := strings.Count(data, "expired certificate"); n > 0 {
			t.Errorf("%s: %d connection failures on an expired certificate", f, n)
		}
	}
	t.Logf("%d certificates, %d agent pods, 0 expired-certificate failures", len(serials), len(a.Pods()))
	// All of it on the configuration the cluster had: the invalid value reached nothing.
	if port := a.Delivered().Port; port != goodPort {
		t.Errorf("the agent runs with port %d after the renewals, want the last good %d", port, goodPort)
	}
	mca := &addonv1beta1.ManagedClusterAddOn{}
	must.Succeed(t, e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: "rotate", Name: identity.AddonName}, mca))
	if !meta.IsStatusConditionFalse(mca.Status.Conditions, addon.ConditionAgentConfigValid) {
		t.Error("AgentConfigValid is no longer False: the invalid value was not held back")
	}
	t.Logf("%d renewals delivered while the fleet config was invalid, on the last good port %d", len(serials)-1, goodPort)

	// Revoked, the agent gets no new certificate; v0.9.0's principal has no blocklist, so the
	// certificate it holds works until it lapses, and not a moment after.
	t.Run("a revoked agent cannot reconnect once its certificate lapses", func(t *testing.T) {
		held := a.Delivered()
		cert := parseCert(t, held.ClientCertPEM)
		out := &bytes.Buffer{}
		revokedAt := time.Now()
		must.Succeed(t, (&revoke.Options{RestConfig: e.Hub.Config, Reason: "lapse test", PrincipalNamespace: harness.ArgoCDNamespace, Namespace: harness.AddonNamespace}).Revoke(ctx, "rotate", out))
		t.Log(strings.TrimSpace(out.String()))
		if err := argocd.ProbeMTLS(ctx, e.Principal.Addr(), e.CACertPEM, held.ClientCertPEM, held.ClientKey); err != nil {
			t.Fatalf("before it lapses the held certificate should still work on v0.9.0 (no blocklist): %v", err)
		}
		poll.Until(t, time.Until(cert.NotAfter)+time.Minute, "the held certificate lapsed", func(context.Context) (bool, error) {
			return time.Now().After(cert.NotAfter.Add(time.Second)), nil
		})
		if err := argocd.ProbeMTLS(ctx, e.Principal.Addr(), e.CACertPEM, held.ClientCertPEM, held.ClientKey); err == nil {
			t.Fatal("the principal accepted the revoked agent's lapsed certificate")
		} else {
			t.Logf("lapsed certificate refused: %v", err)
		}
		// And nothing new was issued to it meanwhile.
		if r, err := (issued.Records{Reader: e.Hub.Client, Namespace: harness.AddonNamespace}).Revocation(ctx, "rotate"); err != nil || r == nil || r.CertificatesLapse == nil {
			t.Errorf("revoke did not note when the certificates lapse: %+v, %v", r, err)
		}
		csrs := &certificatesv1.CertificateSigningRequestList{}
		must.Succeed(t, e.Hub.Client.List(ctx, csrs, client.MatchingLabels{clusterv1.ClusterNameLabelKey: "rotate"}))
		for _, csr := range csrs.Items {
			if csr.Spec.SignerName != identity.SignerName {
				continue // the klusterlet's own hub credentials, not the add-on's
			}
			// Issued at NotBefore plus the signer's backdating.
			if c, err := issued.ParseCertificate(csr.Status.Certificate); err == nil && c.NotBefore.Add(authority.ClockSkew).After(revokedAt.Add(time.Second)) {
				t.Errorf("CSR %s was signed after the revocation", csr.Name)
			}
		}
	})
}
