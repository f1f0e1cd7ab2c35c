package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/addon"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/render"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/delivered"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/plan"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
)

// A joined cluster with an add-on gets a ManifestWork with the agent's objects, its CA bundle
// and nothing of the CA key, and its add-on is registered for the custom signer.
func TestManifestWorkDelivered(t *testing.T) {
	joinCluster(t, "deliver", hubfixture.NewADC("deliver", "principalAddress", "principal.example.com", "principalPort", "8443"))
	var objs map[string]*unstructured.Unstructured
	poll.Until(t, 30*time.Second, "ManifestWork with the agent", func(ctx context.Context) (bool, error) {
		mw, o, err := workObjects(ctx, "deliver")
		objs = o
		return mw != nil && paramsOf(o)["agent.server.port"] == "8443", err
	})
	for _, want := range []string{"Namespace/argocd", "ServiceAccount/argocd-agent-agent", "Role/argocd-agent-agent", "RoleBinding/argocd-agent-agent",
		"ClusterRole/argocd-agent-agent", "ClusterRoleBinding/argocd-agent-agent", "ConfigMap/argocd-agent-params",
		"Deployment/argocd-agent-agent", "Secret/argocd-agent-ca"} {
		if objs[want] == nil {
			t.Errorf("ManifestWork lacks %s (has %v)", want, keys(objs))
		}
	}
	p := paramsOf(objs)
	if p["agent.server.address"] != "principal.example.com" || p["agent.creds"] != "mtls:" || p["agent.mode"] != "managed" {
		t.Errorf("params %v", p)
	}
	ca := objs["Secret/argocd-agent-ca"]
	data := ca.Object["data"].(map[string]any)
	for k, v := range data {
		hash, _ := base64.StdEncoding.DecodeString(v.(string))
		if k != "ca.crt" && k != delivered.ContentKeyPrefix+string(hash) {
			t.Errorf("CA secret key %q: want ca.crt and its content key only", k)
		}
	}
	got, _ := base64.StdEncoding.DecodeString(data["ca.crt"].(string))
	if !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(caCertPEM)) {
		t.Error("delivered CA bundle is not the hub CA certificate")
	}
	assertNoCAKey(t, "deliver")
	assertRenderMatches(t, "deliver", "deliver")

	ctx := context.Background()
	poll.Until(t, 30*time.Second, "registration for the custom signer", func(ctx context.Context) (bool, error) {
		mca := &addonv1beta1.ManagedClusterAddOn{}
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: "deliver", Name: identity.AddonName}, mca); err != nil {
			return false, err
		}
		for _, r := range mca.Status.Registrations {
			if r.Type == addonv1beta1.CustomSigner && r.CustomSigner.SignerName == identity.SignerName &&
				r.CustomSigner.Subject.User == "deliver" && mca.Status.Namespace == "argocd" {
				return true, nil
			}
		}
		return false, nil
	})
	// The manager writes its conditions a moment after rendering, coalesced per add-on.
	poll.Until(t, 20*time.Second, "AgentConfigValid=True", func(ctx context.Context) (bool, error) {
		cond, err := addonCondition(ctx, "deliver", addon.ConditionAgentConfigValid)
		return err == nil && cond.Status == metav1.ConditionTrue, err
	})
	// The condition is applied server-side, so addon-framework's concurrent status patches do
	// not conflict with it.
	mca := &addonv1beta1.ManagedClusterAddOn{}
	must.Succeed(t, env.Client.Get(ctx, types.NamespacedName{Namespace: "deliver", Name: identity.AddonName}, mca))
	applied := false
	for _, f := range mca.ManagedFields {
		applied = applied || (f.Manager == addon.FieldManager && f.Operation == metav1.ManagedFieldsOperationApply && f.Subresource == "status")
	}
	if !applied {
		t.Errorf("no status apply by %s in managedFields %+v", addon.FieldManager, mca.ManagedFields)
	}
}

// A changed AddOnDeploymentConfig reaches the ManifestWork; a bad one is reported on the
// add-on, with an event naming the field and value, and the last good ManifestWork stays.
func TestConfigChangeAndBadConfig(t *testing.T) {
	joinCluster(t, "config", hubfixture.NewADC("config", "principalAddress", "principal.example.com"))
	poll.Until(t, 30*time.Second, "first ManifestWork", func(ctx context.Context) (bool, error) {
		mw, o, err := workObjects(ctx, "config")
		return mw != nil && paramsOf(o)["agent.server.port"] == "443", err
	})
	_, first, err := workObjects(context.Background(), "config")
	must.Succeed(t, err)

	setVariable(t, "config", "principalPort", "9443")
	setVariable(t, "config", "agentMode", "autonomous")
	poll.Until(t, 30*time.Second, "ManifestWork updated to port 9443, autonomous", func(ctx context.Context) (bool, error) {
		_, o, err := workObjects(ctx, "config")
		p := paramsOf(o)
		return p["agent.server.port"] == "9443" && p["agent.mode"] == "autonomous", err
	})
	_, before, _ := workObjects(context.Background(), "config")
	// Whatever order the work agent applies them in, the new pod starts only from its own
	// settings: kubelet's rules hold it against the first work's ConfigMap.
	if err := podStartsFrom(t, before, first); err == nil || !strings.Contains(err.Error(), delivered.ContentKeyPrefix) {
		t.Errorf("the updated pod template could start from the previous ConfigMap (%v)", err)
	}
	if err := podStartsFrom(t, before, before); err != nil {
		t.Errorf("the updated pod template cannot start from its own objects: %v", err)
	}
	hashBefore := deploymentOf(t, before).Spec.Template.Annotations["argocd-agent-addon.open-cluster-management.io/config-hash"]

	setVariable(t, "config", "principalPort", "99999")
	poll.Until(t, 30*time.Second, "AgentConfigValid=False naming the field and value", func(ctx context.Context) (bool, error) {
		c, err := addonCondition(ctx, "config", addon.ConditionAgentConfigValid)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == addon.ReasonInvalidAgentConfig &&
			strings.Contains(c.Message, "customizedVariables[principalPort]") && strings.Contains(c.Message, "99999"), err
	})
	poll.Until(t, 30*time.Second, "warning event naming the field and value", func(ctx context.Context) (bool, error) {
		events := &eventsv1.EventList{}
		if err := env.Client.List(ctx, events, client.InNamespace("config")); err != nil {
			return false, err
		}
		for _, e := range events.Items {
			if e.Regarding.Kind == "ManagedClusterAddOn" && e.Reason == addon.ReasonInvalidAgentConfig && e.Type == corev1.EventTypeWarning &&
				strings.Contains(e.Note, "principalPort") && strings.Contains(e.Note, "99999") {
				return true, nil
			}
		}
		return false, nil
	})
	// The last good manifests stay: give the manager time to (wrongly) change them.
	time.Sleep(3 * time.Second)
	_, after, err := workObjects(context.Background(), "config")
	must.Succeed(t, err)
	if p := paramsOf(after); p["agent.server.port"] != "9443" {
		t.Fatalf("bad config reached the ManifestWork: port %q", p["agent.server.port"])
	}
	if deploymentOf(t, after).Spec.Template.Annotations["argocd-agent-addon.open-cluster-management.io/config-hash"] != hashBefore {
		t.Fatal("the Deployment changed while the config was invalid")
	}

	// A certificate renewal while the config is invalid still reaches the agent, on the last good
	// configuration: OCM's registration agent reports it, the Deployment rolls, nothing else moves.
	certBefore := deploymentOf(t, after).Spec.Template.Annotations[delivered.ClientCertificateAnnotation]
	must.Succeed(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mca := &addonv1beta1.ManagedClusterAddOn{}
		if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: "config", Name: identity.AddonName}, mca); err != nil {
			return err
		}
		meta.SetStatusCondition(&mca.Status.Conditions, metav1.Condition{Type: plan.ConditionClusterCertificateRotated, Status: metav1.ConditionTrue,
			Reason: "ClientCertificateUpdated", Message: "client certificate rotated starting from 2026-12-01 10:00:00 to 2026-12-08 10:00:00"})
		return env.Client.Status().Update(context.Background(), mca)
	}))
	poll.Until(t, 30*time.Second, "renewal delivered on the last good configuration", func(ctx context.Context) (bool, error) {
		_, o, err := workObjects(ctx, "config")
		if err != nil {
			return false, err
		}
		if p := paramsOf(o); p["agent.server.port"] != "9443" {
			t.Fatalf("the invalid config reached the ManifestWork with the renewal: port %q", p["agent.server.port"])
		}
		d := deploymentOf(t, o)
		return d.Spec.Template.Annotations[delivered.ClientCertificateAnnotation] != certBefore &&
			d.Spec.Template.Annotations["argocd-agent-addon.open-cluster-management.io/config-hash"] == hashBefore, nil
	})
	if c, err := addonCondition(context.Background(), "config", addon.ConditionAgentConfigValid); err != nil || c == nil || c.Status != metav1.ConditionFalse {
		t.Fatalf("AgentConfigValid after the renewal: %+v, %v; want still False", c, err)
	}

	setVariable(t, "config", "principalPort", "10443")
	poll.Until(t, 30*time.Second, "recovery: new port delivered and AgentConfigValid=True", func(ctx context.Context) (bool, error) {
		_, o, err := workObjects(ctx, "config")
		if err != nil {
			return false, err
		}
		c, err := addonCondition(ctx, "config", addon.ConditionAgentConfigValid)
		return paramsOf(o)["agent.server.port"] == "10443" && c != nil && c.Status == metav1.ConditionTrue, err
	})
}

// assertNoCAKey checks that nothing derived from the CA private key is in the cluster's work.
func assertNoCAKey(t *testing.T, cluster string) {
	t.Helper()
	mw, _, err := workObjects(context.Background(), cluster)
	must.Succeed(t, err)
	raw := &bytes.Buffer{}
	for _, m := range mw.Spec.Workload.Manifests {
		raw.Write(m.Raw)
	}
	keyB64 := base64.StdEncoding.EncodeToString(caKeyPEM)
	for _, needle := range []string{"PRIVATE KEY", keyB64[:40], base64.StdEncoding.EncodeToString([]byte("-----BEGIN PRIVATE KEY"))[:28]} {
		if strings.Contains(raw.String(), needle) {
			t.Fatalf("ManifestWork of %s contains CA key material (%q)", cluster, needle)
		}
	}
}

func keys(m map[string]*unstructured.Unstructured) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// assertRenderMatches checks that `argocd-agent-addon render`, given the cluster's config and
// the CA certificate, prints exactly the objects the manager put in its ManifestWork.
func assertRenderMatches(t *testing.T, cluster, adcName string, moreConfigs ...string) {
	t.Helper()
	ctx := context.Background()
	adc := &addonv1beta1.AddOnDeploymentConfig{}
	must.Succeed(t, env.Client.Get(ctx, types.NamespacedName{Namespace: configNamespace, Name: adcName}, adc))
	adc.APIVersion, adc.Kind = addonv1beta1.GroupVersion.String(), "AddOnDeploymentConfig"
	adc.ManagedFields = nil
	dir := t.TempDir()
	adcYAML, err := yaml.Marshal(adc)
	must.Succeed(t, err)
	must.Succeed(t, os.WriteFile(filepath.Join(dir, "adc.yaml"), adcYAML, 0o600))
	must.Succeed(t, os.WriteFile(filepath.Join(dir, "ca.crt"), caCertPEM, 0o600))
	out := &bytes.Buffer{}
	o := &render.Options{Cluster: cluster, ConfigFiles: append([]string{filepath.Join(dir, "adc.yaml")}, moreConfigs...), CAFile: filepath.Join(dir, "ca.crt"),
		CertificateSubject: string(identity.SubjectClusterName)}
	must.Succeed(t, o.Validate())
	must.Succeed(t, o.Run(ctx, out))

	rendered := map[string]any{}
	for _, doc := range strings.Split(out.String(), "\n---\n") {
		j, err := yaml.YAMLToJSON([]byte(doc))
		must.Succeed(t, err)
		var obj map[string]any
		must.Succeed(t, json.Unmarshal(j, &obj))
		meta := obj["metadata"].(map[string]any)
		rendered[obj["kind"].(string)+"/"+meta["name"].(string)] = obj
	}
	_, delivered, err := workObjects(ctx, cluster)
	must.Succeed(t, err)
	if len(rendered) != len(delivered) {
		t.Fatalf("render printed %d objects, the ManifestWork has %d", len(rendered), len(delivered))
	}
	for k, u := range delivered {
		j, err := json.Marshal(u.Object)
		must.Succeed(t, err)
		var obj map[string]any
		must.Succeed(t, json.Unmarshal(j, &obj))
		if !reflect.DeepEqual(rendered[k], obj) {
			t.Errorf("render and the manager differ on %s:\nrender:  %v\nmanager: %v", k, rendered[k], obj)
		}
	}
}
