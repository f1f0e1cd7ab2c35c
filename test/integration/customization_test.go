package integration

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/addon"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/customization"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// setCustomization creates or replaces the AgentCustomization name's spec (YAML).
func setCustomization(t *testing.T, name, spec string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	must.Succeed(t, yaml.Unmarshal([]byte(spec), &u.Object))
	u.Object = map[string]any{"spec": u.Object}
	u.SetGroupVersionKind(customization.GVK)
	u.SetNamespace(configNamespace)
	u.SetName(name)
	must.Succeed(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		have := &unstructured.Unstructured{}
		have.SetGroupVersionKind(customization.GVK)
		err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: configNamespace, Name: name}, have)
		if err != nil {
			return env.Client.Create(context.Background(), u.DeepCopy())
		}
		have.Object["spec"] = u.Object["spec"]
		return env.Client.Update(context.Background(), have)
	}))
	return u
}

const sidecarSpec = `
annotations: {example.com/owner: platform}
pod:
  annotations: {prometheus.io/scrape: "true"}
  priorityClassName: system-cluster-critical
  imagePullSecrets: [{name: mirror-pull}]
  containers:
  - name: log-shipper
    image: registry.example.com/shipper:1.0
    securityContext:
      allowPrivilegeEscalation: false
      runAsNonRoot: true
      capabilities: {drop: [ALL]}
      seccompProfile: {type: RuntimeDefault}
agent:
  env: [{name: ARGOCD_AGENT_KEEP_ALIVE_PING_INTERVAL, value: 30s}]
  args: [--enable-compression]
extraObjects:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: argocd-agent-addon-egress, namespace: argocd}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: argocd-agent-agent}}
    policyTypes: [Egress]
    egress: [{}]
`

// TestAgentCustomization: an AgentCustomization a cluster's add-on names reaches its
// ManifestWork, as render --config prints it; one that would break the agent's guarantees is
// refused with a condition and an event naming the field, the last good manifests stay, and a
// fixed one is delivered again.
func TestAgentCustomization(t *testing.T) {
	const cluster = "custom"
	joinCluster(t, cluster, hubfixture.NewADC(cluster, "principalAddress", "principal.example.com"))
	setCustomization(t, cluster, sidecarSpec)
	must.Succeed(t, hubfixture.UseConfig(context.Background(), env.Client, cluster, customization.Group, customization.Resource, configNamespace, cluster))

	poll.Until(t, 30*time.Second, "customised ManifestWork", func(ctx context.Context) (bool, error) {
		_, o, err := workObjects(ctx, cluster)
		if err != nil || o["NetworkPolicy/argocd-agent-addon-egress"] == nil {
			return false, err
		}
		d := deploymentOf(t, o)
		return slices.ContainsFunc(d.Spec.Template.Spec.Containers, func(c corev1.Container) bool { return c.Name == "log-shipper" }), nil
	})
	_, good, err := workObjects(context.Background(), cluster)
	must.Succeed(t, err)
	// The extra object carries the add-on's marker, and the customisation's name.
	np := good["NetworkPolicy/argocd-agent-addon-egress"]
	if np.GetLabels()[customization.ExtraObjectLabel] != "true" ||
		np.GetAnnotations()[customization.CustomizationAnnotation] != configNamespace+"/"+cluster {
		t.Errorf("the extra NetworkPolicy lacks the add-on's marker: labels %v, annotations %v", np.GetLabels(), np.GetAnnotations())
	}
	d := deploymentOf(t, good)
	if d.Spec.Template.Annotations["prometheus.io/scrape"] != "true" || d.Spec.Template.Spec.PriorityClassName != "system-cluster-critical" ||
		d.Annotations["example.com/owner"] != "platform" {
		t.Errorf("Deployment lacks the customisation: annotations %v, pod annotations %v, priorityClassName %q",
			d.Annotations, d.Spec.Template.Annotations, d.Spec.Template.Spec.PriorityClassName)
	}
	for k, o := range good {
		if o.GetKind() == "Namespace" {
			if o.GetAnnotations()["example.com/owner"] != "" {
				t.Errorf("%s annotated: Argo CD shares it, the customisation stays off it", k)
			}
			continue
		}
		if o.GetAnnotations()["example.com/owner"] != "platform" {
			t.Errorf("%s lacks the fleet annotation", k)
		}
	}
	poll.Until(t, 30*time.Second, "AgentConfigValid=True", func(ctx context.Context) (bool, error) {
		c, err := addonCondition(ctx, cluster, addon.ConditionAgentConfigValid)
		return c != nil && c.Status == metav1.ConditionTrue, err
	})
	// render --config with both configs prints what the manager delivered.
	dir := t.TempDir()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(customization.GVK)
	must.Succeed(t, env.Client.Get(context.Background(), types.NamespacedName{Namespace: configNamespace, Name: cluster}, u))
	u.SetManagedFields(nil)
	b, err := yaml.Marshal(u.Object)
	must.Succeed(t, err)
	customFile := filepath.Join(dir, "customization.yaml")
	must.Succeed(t, os.WriteFile(customFile, b, 0o600))
	assertRenderMatches(t, cluster, cluster, customFile)

	// Refused: the agent's credentials may not be changed.
	setCustomization(t, cluster, strings.Replace(sidecarSpec, "ARGOCD_AGENT_KEEP_ALIVE_PING_INTERVAL", "ARGOCD_AGENT_CREDS", 1))
	poll.Until(t, 30*time.Second, "AgentConfigValid=False naming the field", func(ctx context.Context) (bool, error) {
		c, err := addonCondition(ctx, cluster, addon.ConditionAgentConfigValid)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == addon.ReasonInvalidAgentConfig &&
			strings.Contains(c.Message, "AgentCustomization "+configNamespace+"/"+cluster) &&
			strings.Contains(c.Message, "spec.agent.env[0].name") && strings.Contains(c.Message, "mTLS identity"), err
	})
	poll.Until(t, 30*time.Second, "warning event naming the field", func(ctx context.Context) (bool, error) {
		events := &eventsv1.EventList{}
		if err := env.Client.List(ctx, events, client.InNamespace(cluster)); err != nil {
			return false, err
		}
		for _, e := range events.Items {
			if e.Regarding.Kind == "ManagedClusterAddOn" && e.Reason == addon.ReasonInvalidAgentConfig && e.Type == corev1.EventTypeWarning &&
				strings.Contains(e.Note, "spec.agent.env[0].name") {
				return true, nil
			}
		}
		return false, nil
	})
	time.Sleep(3 * time.Second) // give the manager time to (wrongly) change the work
	_, after, err := workObjects(context.Background(), cluster)
	must.Succeed(t, err)
	agent := func(objs map[string]*unstructured.Unstructured) corev1.Container {
		spec := deploymentOf(t, objs).Spec.Template.Spec
		i := slices.IndexFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == identity.AgentName })
		if i < 0 {
			t.Fatal("no agent container")
		}
		return spec.Containers[i]
	}
	if !slices.ContainsFunc(agent(after).Env, func(e corev1.EnvVar) bool { return e.Name == "ARGOCD_AGENT_KEEP_ALIVE_PING_INTERVAL" }) ||
		slices.ContainsFunc(agent(after).Env, func(e corev1.EnvVar) bool { return e.Name == "ARGOCD_AGENT_CREDS" && e.Value != "" }) {
		t.Fatalf("the refused customisation changed the ManifestWork: agent env %v", agent(after).Env)
	}

	// Fixed: an extra object replaced by another, the sidecar dropped. The work follows.
	setCustomization(t, cluster, `
agent: {args: [--enable-compression]}
extraObjects:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: argocd-agent-addon-extra, namespace: argocd}, data: {k: v}}
`)
	poll.Until(t, 30*time.Second, "fixed customisation delivered", func(ctx context.Context) (bool, error) {
		_, o, err := workObjects(ctx, cluster)
		if err != nil || o["ConfigMap/argocd-agent-addon-extra"] == nil || o["NetworkPolicy/argocd-agent-addon-egress"] != nil {
			return false, err
		}
		c, err := addonCondition(ctx, cluster, addon.ConditionAgentConfigValid)
		return c != nil && c.Status == metav1.ConditionTrue &&
			!slices.ContainsFunc(deploymentOf(t, o).Spec.Template.Spec.Containers, func(c corev1.Container) bool { return c.Name == "log-shipper" }), err
	})
}

// TestDocumentedCustomizations: each example of docs/examples is accepted by the CRD's schema on
// the real API server and reaches a cluster's ManifestWork.
func TestDocumentedCustomizations(t *testing.T) {
	const cluster = "custom-docs"
	joinCluster(t, cluster, hubfixture.NewADC(cluster, "principalAddress", "principal.example.com"))
	for _, tc := range []struct{ file, want string }{
		{"agentcustomization-service-mesh.yaml", `"sidecar.istio.io/inject":"false"`},
		{"agentcustomization-metrics.yaml", `"prometheus.io/scrape":"true"`},
		{"agentcustomization-private-registry.yaml", `"priorityClassName":"system-cluster-critical"`},
		{"agentcustomization-agent-flags.yaml", `"--keep-alive-ping-interval=30s"`},
		{"agentcustomization-sidecar.yaml", `"name":"log-shipper"`},
		{"agentcustomization-network-policy.yaml", `"kind":"NetworkPolicy"`},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("..", "..", "docs", "examples", tc.file))
			must.Succeed(t, err)
			u := &unstructured.Unstructured{}
			must.Succeed(t, yaml.Unmarshal(data, &u.Object))
			u.SetNamespace(configNamespace)
			must.Succeed(t, env.Client.Create(context.Background(), u))
			must.Succeed(t, hubfixture.UseConfig(context.Background(), env.Client, cluster, customization.Group, customization.Resource, configNamespace, u.GetName()))
			poll.Until(t, 30*time.Second, "the example in the ManifestWork", func(ctx context.Context) (bool, error) {
				mw, _, err := workObjects(ctx, cluster)
				if err != nil || mw == nil {
					return false, err
				}
				for _, m := range mw.Spec.Workload.Manifests {
					if strings.Contains(string(m.Raw), tc.want) {
						return true, nil
					}
				}
				return false, nil
			})
		})
	}
}
