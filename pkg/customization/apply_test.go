package customization_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/addon"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/customization"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/delivered"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
)

// fixed serves one customisation (nil: none) for every cluster.
type fixed struct{ c *customization.Customization }

func (f fixed) GetWithSpecHash(context.Context, string, string) (*customization.Customization, string, error) {
	return f.c, "h", nil
}

type noADC struct{}

func (noADC) GetWithSpecHash(context.Context, string, string) (*addonv1beta1.AddOnDeploymentConfig, string, error) {
	return nil, "", errors.New("none")
}

type ca struct{}

func (ca) Bundle(context.Context) ([]byte, error) {
	return []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), nil
}
func (ca) ID(context.Context) (string, error) { return "ca1", nil }

type reporter struct{ invalid []*agentconfig.FieldError }

func (r *reporter) Invalid(_ context.Context, _ *addonv1beta1.ManagedClusterAddOn, err *agentconfig.FieldError) {
	r.invalid = append(r.invalid, err)
}
func (r *reporter) Valid(context.Context, *addonv1beta1.ManagedClusterAddOn, principal.Endpoint, metav1.Condition) {
}
func (r *reporter) Held(context.Context, *addonv1beta1.ManagedClusterAddOn, metav1.Condition) {}

// render renders cluster c1 through the add-on, as the manager does, with spec (YAML) as its
// AgentCustomization.
func render(t *testing.T, spec string) ([]runtime.Object, *reporter, error) {
	t.Helper()
	var c *customization.Customization
	if spec != "" {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte("spec:\n"+indent(spec)), &u.Object); err != nil {
			t.Fatal(err)
		}
		u.SetGroupVersionKind(customization.GVK)
		u.SetNamespace("open-cluster-management")
		u.SetName("custom")
		var err error
		if c, err = customization.FromUnstructured(u); err != nil {
			return nil, nil, err
		}
	}
	return renderWith(t, c)
}

// renderWith renders cluster c1 with the customisation c (nil: none).
func renderWith(t testing.TB, c *customization.Customization) ([]runtime.Object, *reporter, error) {
	rep := &reporter{}
	a, err := addon.New(addon.Options{
		ConfigGetter:   noADC{},
		CA:             ca{},
		Subject:        identity.SubjectClusterName,
		Reporter:       rep,
		Customizations: fixed{c},
		Principal: func(context.Context) (principal.Endpoint, error) {
			return principal.Endpoint{Host: "principal.example.com", Port: 443, Source: "Test"}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mca := &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Name: identity.AddonName, Namespace: "c1"}}
	mca.Status.Conditions = []metav1.Condition{{Type: addonv1beta1.ManagedClusterAddOnConditionConfigured, Status: metav1.ConditionTrue, Reason: "ConfigurationsConfigured"}}
	if c != nil {
		// As OCM's addon-manager names the cluster's AgentCustomization; fixed serves it.
		mca.Status.ConfigReferences = []addonv1beta1.ConfigReference{{
			ConfigGroupResource: addonv1beta1.ConfigGroupResource{Group: customization.Group, Resource: customization.Resource},
			DesiredConfig:       &addonv1beta1.ConfigSpecHash{ConfigReferent: addonv1beta1.ConfigReferent{Namespace: "c1", Name: "custom"}, SpecHash: "h"},
		}}
	}
	objs, err := a.Manifests(context.Background(), &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}}, mca)
	return objs, rep, err
}

func indent(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = "  " + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}

func deploymentOf(t *testing.T, objs []runtime.Object) *appsv1.Deployment {
	t.Helper()
	d := delivered.Find(objs).Deployment
	if d == nil {
		t.Fatal("no agent Deployment rendered")
	}
	return d
}

func container(spec *corev1.PodSpec, name string) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	return nil
}

// The add-on's own guarantees, which no customisation may lose.
func checkGuarantees(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	spec := &d.Spec.Template.Spec
	agent := container(spec, identity.AgentName)
	if agent == nil {
		t.Fatal("no agent container")
	}
	if agent.ReadinessProbe == nil || agent.ReadinessProbe.HTTPGet == nil || agent.ReadinessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("readiness probe lost: %+v", agent.ReadinessProbe)
	}
	if !slices.ContainsFunc(agent.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "client-tls" }) ||
		!slices.ContainsFunc(agent.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "ca" }) {
		t.Errorf("certificate mounts lost: %+v", agent.VolumeMounts)
	}
	if !slices.ContainsFunc(agent.Env, func(e corev1.EnvVar) bool { return e.Name == delivered.ParamsContentEnv }) {
		t.Errorf("content key env %s lost", delivered.ParamsContentEnv)
	}
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType || d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("one-at-a-time roll lost: strategy %s, replicas %v", d.Spec.Strategy.Type, d.Spec.Replicas)
	}
}

// The agent's, and the add-on's, which no added container may mount.
var addonVolumes = []string{"client-tls", "ca", "kube-api-access"}

// extraKinds are the kinds a customisation may add (docs/design.md#customisation).
var extraKinds = []string{"v1/ConfigMap", "v1/Secret", "v1/Service", "networking.k8s.io/v1/NetworkPolicy", "policy/v1/PodDisruptionBudget"}

// checkDelivered: what a customisation added carries no credential to its containers, and its
// extra objects are of the allowlist, in the agent's namespace, under the add-on's prefix, with
// its marker.
func checkDelivered(t testing.TB, objs []runtime.Object) {
	t.Helper()
	var d *appsv1.Deployment
	for _, o := range objs {
		if dep, ok := o.(*appsv1.Deployment); ok {
			d = dep
		}
	}
	if d == nil {
		t.Fatal("no Deployment rendered")
	}
	secrets := map[string]bool{}
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue // the add-on's own, typed
		}
		kind := u.GetAPIVersion() + "/" + u.GetKind()
		if !slices.Contains(extraKinds, kind) {
			t.Errorf("extra object %s %s delivered: not of the allowlist", kind, u.GetName())
		}
		if u.GetNamespace() != d.Namespace || !strings.HasPrefix(u.GetName(), customization.ExtraObjectPrefix) {
			t.Errorf("extra object %s %s/%s: want the agent's namespace %s and the prefix %s", kind, u.GetNamespace(), u.GetName(), d.Namespace, customization.ExtraObjectPrefix)
		}
		if u.GetLabels()[customization.ExtraObjectLabel] != "true" || u.GetAnnotations()[customization.CustomizationAnnotation] == "" {
			t.Errorf("extra object %s %s lacks the add-on's marker", kind, u.GetName())
		}
		for k := range u.GetAnnotations() {
			if strings.HasPrefix(k, "kubernetes.io/service-account.") {
				t.Errorf("extra object %s %s is tied to a ServiceAccount: %s", kind, u.GetName(), k)
			}
		}
		for k := range u.GetLabels() {
			if strings.Contains(strings.SplitN(k, "/", 2)[0], "argoproj.io") {
				t.Errorf("extra object %s %s has Argo CD's label %s", kind, u.GetName(), k)
			}
		}
		switch kind {
		case "v1/Secret":
			if typ, _, _ := unstructured.NestedString(u.Object, "type"); typ != "" && typ != string(corev1.SecretTypeOpaque) {
				t.Errorf("extra Secret %s of type %s", u.GetName(), typ)
				continue // a credential: no added container may read it either
			}
			secrets[u.GetName()] = true
		case "v1/Service":
			typ, _, _ := unstructured.NestedString(u.Object, "spec", "type")
			ips, _, _ := unstructured.NestedSlice(u.Object, "spec", "externalIPs")
			if (typ != "" && typ != string(corev1.ServiceTypeClusterIP)) || len(ips) > 0 {
				t.Errorf("extra Service %s of type %q with external IPs %v", u.GetName(), typ, ips)
			}
		}
	}
	spec := &d.Spec.Template.Spec
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the pod automounts its ServiceAccount token: every container gets it")
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	ownSecret := func(what, name string) {
		t.Helper()
		if !secrets[name] {
			t.Errorf("%s reads Secret %s, which the customisation did not deliver", what, name)
		}
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		if c.Name == identity.AgentName {
			continue
		}
		what := "added container " + c.Name
		for _, m := range c.VolumeMounts {
			v, ok := volumes[m.Name]
			if !ok || slices.Contains(addonVolumes, m.Name) {
				t.Errorf("%s mounts the add-on's volume %s", what, m.Name)
				continue
			}
			src := v.VolumeSource
			switch {
			case src.EmptyDir != nil, src.ConfigMap != nil, src.DownwardAPI != nil:
			case src.Secret != nil:
				ownSecret(what, src.Secret.SecretName)
			case src.Projected != nil:
				for _, p := range src.Projected.Sources {
					switch {
					case p.ConfigMap != nil, p.DownwardAPI != nil, p.ClusterTrustBundle != nil:
					case p.Secret != nil:
						ownSecret(what, p.Secret.Name)
					default:
						t.Errorf("%s mounts volume %s projecting %+v: a token or a key", what, m.Name, p)
					}
				}
			default:
				b, _ := json.Marshal(src)
				t.Errorf("%s mounts volume %s of a type not allowed: %s", what, m.Name, b)
			}
		}
		for _, env := range c.Env {
			if env.ValueFrom != nil && env.ValueFrom.SecretKeyRef != nil {
				ownSecret(what, env.ValueFrom.SecretKeyRef.Name)
			}
		}
		for _, from := range c.EnvFrom {
			if from.SecretRef != nil {
				ownSecret(what, from.SecretRef.Name)
			}
		}
	}
}

// Every kind of the allowlist is delivered, marked, and the customisation's own Secret may be
// given to its sidecar.
func TestExtraObjectsOfTheAllowlist(t *testing.T) {
	objs, _, err := render(t, `
extraObjects:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: argocd-agent-addon-shipper, namespace: argocd}, data: {shipper.conf: "level=info"}}
- {apiVersion: v1, kind: Secret, type: Opaque, metadata: {name: argocd-agent-addon-shipper, namespace: argocd}, stringData: {apiKey: k}}
- apiVersion: v1
  kind: Service
  metadata: {name: argocd-agent-addon-metrics, namespace: argocd, labels: {app.kubernetes.io/part-of: argocd-agent}}
  spec: {selector: {app.kubernetes.io/name: argocd-agent-agent}, ports: [{name: metrics, port: 8181, targetPort: metrics}]}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: argocd-agent-addon-metrics, namespace: argocd}
  spec: {podSelector: {matchLabels: {app.kubernetes.io/name: argocd-agent-agent}}, policyTypes: [Ingress], ingress: [{ports: [{port: 8181}]}]}
- apiVersion: policy/v1
  kind: PodDisruptionBudget
  metadata: {name: argocd-agent-addon-agent, namespace: argocd}
  spec: {maxUnavailable: 1, selector: {matchLabels: {app.kubernetes.io/name: argocd-agent-agent}}}
pod:
  volumes:
  - {name: conf, configMap: {name: argocd-agent-addon-shipper}}
  - {name: key, secret: {secretName: argocd-agent-addon-shipper}}
  - {name: both, projected: {sources: [{secret: {name: argocd-agent-addon-shipper}}, {configMap: {name: argocd-agent-addon-shipper}}, {downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}}]}}
  containers:
  - name: log-shipper
    image: registry.example.com/shipper:1.0
    securityContext: {allowPrivilegeEscalation: false, runAsNonRoot: true, capabilities: {drop: [ALL]}, seccompProfile: {type: RuntimeDefault}}
    env: [{name: API_KEY, valueFrom: {secretKeyRef: {name: argocd-agent-addon-shipper, key: apiKey}}}]
    envFrom: [{secretRef: {name: argocd-agent-addon-shipper}}]
    volumeMounts: [{name: conf, mountPath: /conf}, {name: key, mountPath: /key}, {name: both, mountPath: /both}]
`)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		if u, ok := o.(*unstructured.Unstructured); ok {
			kinds = append(kinds, u.GetAPIVersion()+"/"+u.GetKind())
		}
	}
	if !slices.Equal(kinds, extraKinds) {
		t.Errorf("extra objects %v, want %v", kinds, extraKinds)
	}
	checkGuarantees(t, deploymentOf(t, objs))
	checkDelivered(t, objs)
}

const everything = `
labels: {team: platform}
annotations: {example.com/owner: platform}
pod:
  labels: {sidecar.istio.io/inject: "false"}
  annotations: {prometheus.io/scrape: "true"}
  priorityClassName: system-cluster-critical
  imagePullSecrets: [{name: mirror-pull}]
  securityContext: {runAsUser: 1001, supplementalGroups: [2000]}
  containers:
  - name: log-shipper
    image: registry.example.com/shipper:1.0
    securityContext:
      allowPrivilegeEscalation: false
      runAsNonRoot: true
      capabilities: {drop: [ALL]}
      seccompProfile: {type: RuntimeDefault}
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes:
  - {name: scratch, emptyDir: {}}
agent:
  env: [{name: ARGOCD_AGENT_KEEP_ALIVE_PING_INTERVAL, value: 30s}]
  args: [--enable-compression]
  volumeMounts: [{name: scratch, mountPath: /scratch}]
extraObjects:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: argocd-agent-addon-egress, namespace: argocd}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: argocd-agent-agent}}
    policyTypes: [Egress]
    egress: [{}]
`

func TestCustomizationAddsEveryField(t *testing.T) {
	plain, _, err := render(t, "")
	if err != nil {
		t.Fatal(err)
	}
	objs, rep, err := render(t, everything)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.invalid) != 0 {
		t.Fatalf("reported invalid: %v", rep.invalid[0])
	}
	if len(objs) != len(plain)+1 {
		t.Fatalf("%d objects, want the add-on's %d and the NetworkPolicy", len(objs), len(plain))
	}
	for _, o := range objs {
		m := o.(metav1.Object)
		if _, ok := o.(*corev1.Namespace); ok {
			if m.GetLabels()["team"] != "" {
				t.Errorf("Namespace %s labelled %v: Argo CD shares it, the customisation's labels stay off it", m.GetName(), m.GetLabels())
			}
			continue
		}
		if m.GetLabels()["team"] != "platform" || m.GetAnnotations()["example.com/owner"] != "platform" {
			t.Errorf("%T %s: labels %v, annotations %v: want the customisation's", o, m.GetName(), m.GetLabels(), m.GetAnnotations())
		}
	}
	np, ok := objs[len(objs)-1].(*unstructured.Unstructured)
	if !ok || np.GetKind() != "NetworkPolicy" || np.GetNamespace() != "argocd" {
		t.Errorf("last object %v, want the NetworkPolicy", objs[len(objs)-1])
	}
	if np.GetLabels()[customization.ExtraObjectLabel] != "true" || np.GetAnnotations()[customization.CustomizationAnnotation] != "open-cluster-management/custom" {
		t.Errorf("the NetworkPolicy lacks the add-on's marker: labels %v, annotations %v", np.GetLabels(), np.GetAnnotations())
	}
	d := deploymentOf(t, objs)
	checkGuarantees(t, d)
	checkDelivered(t, objs)
	tmpl := d.Spec.Template
	spec := tmpl.Spec
	if tmpl.Labels["sidecar.istio.io/inject"] != "false" || tmpl.Annotations["prometheus.io/scrape"] != "true" {
		t.Errorf("pod labels %v, annotations %v", tmpl.Labels, tmpl.Annotations)
	}
	if tmpl.Labels["app.kubernetes.io/name"] != identity.AgentName {
		t.Errorf("selector label lost: %v", tmpl.Labels)
	}
	if spec.PriorityClassName != "system-cluster-critical" || len(spec.ImagePullSecrets) != 1 || spec.ImagePullSecrets[0].Name != "mirror-pull" {
		t.Errorf("priorityClassName %q, imagePullSecrets %v", spec.PriorityClassName, spec.ImagePullSecrets)
	}
	sc := spec.SecurityContext
	if sc.RunAsUser == nil || *sc.RunAsUser != 1001 || !slices.Contains(sc.SupplementalGroups, 2000) ||
		sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.FSGroup == nil || *sc.FSGroup != 999 {
		t.Errorf("pod securityContext %+v: want runAsUser 1001, group 2000 added, the add-on's runAsNonRoot and fsGroup kept", sc)
	}
	if container(&spec, "log-shipper") == nil || !slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == "scratch" }) {
		t.Errorf("sidecar or its volume missing: %d containers, volumes %v", len(spec.Containers), spec.Volumes)
	}
	agent := container(&spec, identity.AgentName)
	if !slices.ContainsFunc(agent.Env, func(e corev1.EnvVar) bool {
		return e.Name == "ARGOCD_AGENT_KEEP_ALIVE_PING_INTERVAL" && e.Value == "30s"
	}) {
		t.Errorf("agent env %v", agent.Env)
	}
	if !slices.Equal(agent.Args, []string{"agent", "--enable-compression"}) {
		t.Errorf("agent args %v, want the command's and the customisation's", agent.Args)
	}
	if !slices.ContainsFunc(agent.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "scratch" && m.MountPath == "/scratch" }) {
		t.Errorf("agent mounts %v", agent.VolumeMounts)
	}
}

// Every refusal names its field, leaves nothing to deliver, and is reported.
func TestCustomizationRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, spec, field, reason string
	}{
		{"the add-on's label", `labels: {app.kubernetes.io/name: other}`, "spec.labels[app.kubernetes.io/name]", "set by the add-on"},
		{"the pod's selector label", `pod: {labels: {app.kubernetes.io/name: other}}`, "spec.pod.labels[app.kubernetes.io/name]", "set by the add-on"},
		{"OCM's domain", `annotations: {open-cluster-management.io/deletion-orphan: "true"}`, "spec.annotations[open-cluster-management.io/deletion-orphan]", "OCM's and the add-on's"},
		{"the add-on's roll annotation", `pod: {annotations: {argocd-agent-addon.open-cluster-management.io/config-hash: x}}`, "spec.pod.annotations[argocd-agent-addon.open-cluster-management.io/config-hash]", "OCM's and the add-on's"},
		{"a bad label value", `labels: {team: "a b"}`, "spec.labels[team]", "Invalid value"},
		{"the agent's credentials env", `agent: {env: [{name: ARGOCD_AGENT_CREDS, value: "userpass:x"}]}`, "spec.agent.env[0].name", "mTLS identity"},
		{"insecure TLS env", `agent: {env: [{name: ARGOCD_AGENT_TLS_INSECURE, value: "true"}]}`, "spec.agent.env[0].name", "weaken"},
		{"an env the add-on sets", `agent: {env: [{name: REDIS_PASSWORD, value: x}]}`, "spec.agent.env[0].name", "the add-on sets"},
		{"the content key env", `agent: {env: [{name: ARGOCD_AGENT_ADDON_PARAMS_HASH, value: x}]}`, "spec.agent.env[0].name", "the add-on sets"},
		{"insecure TLS flag", `agent: {args: [--enable-compression, --insecure-tls]}`, "spec.agent.args[1]", "weaken"},
		{"the principal's address flag", `agent: {args: ["--server-address=evil.example.com"]}`, "spec.agent.args[0]", "principal's address"},
		{"the health port flag", `agent: {args: [--healthz-port, "9000"]}`, "spec.agent.args[0]", "Available mean connected"},
		{"a shorthand flag", `agent: {args: [-n, other]}`, "spec.agent.args[0]", "long form"},
		{"a mount over the certificates", `
pod: {volumes: [{name: v, emptyDir: {}}]}
agent: {volumeMounts: [{name: v, mountPath: /app/config/tls/client/x}]}`, "spec.agent.volumeMounts[0].mountPath", "certificates"},
		{"a mount of no volume", `agent: {volumeMounts: [{name: nope, mountPath: /x}]}`, "spec.agent.volumeMounts[0].name", "not a volume"},
		{"a privileged sidecar", `
pod:
  containers:
  - name: debug
    image: busybox
    securityContext: {privileged: true}`, "spec.pod", "restricted Pod Security Standard"},
		{"root", `pod: {securityContext: {runAsUser: 0}}`, "spec.pod", "restricted Pod Security Standard"},
		{"a sidecar with the client key", `
pod:
  containers:
  - name: thief
    image: busybox
    volumeMounts: [{name: client-tls, mountPath: /k}]`, "spec.pod.containers[0].volumeMounts[0].name", "into the agent only"},
		{"a sidecar with the agent's token", `
pod:
  containers:
  - name: thief
    image: busybox
    volumeMounts: [{name: kube-api-access, mountPath: /var/run/secrets/kubernetes.io/serviceaccount}]`, "spec.pod.containers[0].volumeMounts[0].name", "ServiceAccount token is mounted into the agent only"},
		{"the client key again", "pod: {volumes: [{name: k, secret: {secretName: " + identity.ClientCertSecretName + "}}]}", "spec.pod.volumes[0].secret.secretName", "into the agent only"},
		{"a sidecar reading the key by env", `
pod:
  containers:
  - name: x
    image: busybox
    env: [{name: K, valueFrom: {secretKeyRef: {name: ` + identity.ClientCertSecretName + `, key: tls.key}}}]`, "spec.pod.containers[0].env[0].valueFrom.secretKeyRef.name", "agent's only"},
		{"a sidecar reading the key by envFrom", `
pod:
  containers:
  - {name: x, image: busybox, envFrom: [{secretRef: {name: ` + identity.ClientCertSecretName + `}}]}`, "spec.pod.containers[0].envFrom[0].secretRef.name", "agent's only"},
		{"the key in a projected volume", `pod: {volumes: [{name: k, projected: {sources: [{secret: {name: ` + identity.ClientCertSecretName + `}}]}}]}`, "spec.pod.volumes[0].projected.sources[0].secret.name", "into the agent only"},
		{"a ServiceAccount token", `pod: {volumes: [{name: k, projected: {sources: [{serviceAccountToken: {path: t}}]}}]}`, "spec.pod.volumes[0].projected.sources[0].serviceAccountToken", "agent's"},
		{"a sidecar on the health port", `pod: {containers: [{name: x, image: busybox, ports: [{containerPort: 8002}]}]}`, "spec.pod.containers[0].ports[0].containerPort", "Available mean connected"},
		{"a mount over the binary", `
pod: {volumes: [{name: v, emptyDir: {}}]}
agent: {volumeMounts: [{name: v, mountPath: /bin/argocd-agent}]}`, "spec.agent.volumeMounts[0].mountPath", "/bin"},
		{"a mount over the token", `
pod: {volumes: [{name: v, emptyDir: {}}]}
agent: {volumeMounts: [{name: v, mountPath: /var/run/secrets/kubernetes.io/serviceaccount}]}`, "spec.agent.volumeMounts[0].mountPath", "ServiceAccount token there"},
		{"an unclean mount path", `
pod: {volumes: [{name: v, emptyDir: {}}]}
agent: {volumeMounts: [{name: v, mountPath: /app/config/tls//ca}]}`, "spec.agent.volumeMounts[0].mountPath", "clean absolute path"},
		{"Go's TLS settings", `agent: {env: [{name: GODEBUG, value: tls10server=1}]}`, "spec.agent.env[0].name", "weaken"},
		{"another API server", `agent: {env: [{name: KUBERNETES_SERVICE_HOST, value: evil.example.com}]}`, "spec.agent.env[0].name", "cluster it runs in"},
		{"the redis password flag", `agent: {args: ["--redis-password=x"]}`, "spec.agent.args[0]", "the add-on sets it"},
		{"a workload", `extraObjects: [{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, namespace: argocd}}]`, "spec.extraObjects[0].kind", "workloads"},
		{"an autoscaler", `extraObjects: [{apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, metadata: {name: h, namespace: argocd}}]`, "spec.extraObjects[0].kind", "one agent per identity"},
		{"RBAC", `extraObjects: [{apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {name: r, namespace: argocd}}]`, "spec.extraObjects[0].kind", "permissions"},
		{"the CA volume's name", `pod: {volumes: [{name: ca, emptyDir: {}}]}`, "spec.pod.volumes[0].name", "already"},
		{"the agent container's name", `pod: {containers: [{name: argocd-agent-agent, image: x}]}`, "spec.pod.containers[0].name", "already"},
		{"a container without an image", `pod: {initContainers: [{name: init}]}`, "spec.pod.initContainers[0].image", "required"},
		{"the add-on's ConfigMap", `
extraObjects:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: argocd-agent-params, namespace: argocd}}`, "spec.extraObjects[0].metadata.name", "delivered already"},
		{"an object twice", `
extraObjects:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: argocd-agent-addon-a, namespace: argocd}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: argocd-agent-addon-a, namespace: argocd}}`, "spec.extraObjects[1].metadata.name", "delivered already"},
		{"an object without a kind", `extraObjects: [{apiVersion: v1, metadata: {name: a}}]`, "spec.extraObjects[0].kind", "required"},
		{"an object with a status", `extraObjects: [{apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: argocd}, status: {}}]`, "spec.extraObjects[0].status", "controller"},
		// The review: a token Secret of Argo CD's ServiceAccount as an extra object, mounted into a sidecar.
		{"the review's token Secret in a sidecar", `
extraObjects:
- apiVersion: v1
  kind: Secret
  type: kubernetes.io/service-account-token
  metadata:
    name: argocd-application-controller-token
    namespace: argocd
    annotations: {kubernetes.io/service-account.name: argocd-application-controller}
pod:
  volumes: [{name: tok, secret: {secretName: argocd-application-controller-token}}]
  containers:
  - name: thief
    image: busybox
    volumeMounts: [{name: tok, mountPath: /tok}]`, "spec.extraObjects[0].type", "must be of type Opaque"},
		{"a Secret tied to a ServiceAccount", `
extraObjects:
- {apiVersion: v1, kind: Secret, metadata: {name: argocd-agent-addon-t, namespace: argocd, annotations: {kubernetes.io/service-account.name: argocd-application-controller}}}`,
			"spec.extraObjects[0].metadata.annotations[kubernetes.io/service-account.name]", "ServiceAccount"},
		{"every object tied to a ServiceAccount", `annotations: {kubernetes.io/service-account.name: argocd-application-controller}`,
			"spec.annotations[kubernetes.io/service-account.name]", "ServiceAccount"},
		{"a sidecar with a token Secret of the cluster", `
pod:
  volumes: [{name: tok, secret: {secretName: argocd-application-controller-token}}]
  containers: [{name: thief, image: busybox, volumeMounts: [{name: tok, mountPath: /tok}]}]`,
			"spec.pod.volumes[0].secret.secretName", "only a Secret of spec.extraObjects"},
		{"a sidecar with Argo CD's redis password", `
pod:
  containers:
  - {name: x, image: busybox, env: [{name: P, valueFrom: {secretKeyRef: {name: argocd-redis, key: auth}}}]}`,
			"spec.pod.containers[0].env[0].valueFrom.secretKeyRef.name", "only a Secret of spec.extraObjects"},
		{"an init container with Argo CD's secret", `
pod:
  initContainers: [{name: x, image: busybox, envFrom: [{secretRef: {name: argocd-secret}}]}]`,
			"spec.pod.initContainers[0].envFrom[0].secretRef.name", "only a Secret of spec.extraObjects"},
		{"a projected Secret of the cluster", `pod: {volumes: [{name: k, projected: {sources: [{secret: {name: argocd-secret}}]}}]}`,
			"spec.pod.volumes[0].projected.sources[0].secret.name", "only a Secret of spec.extraObjects"},
		{"a pod certificate", `pod: {volumes: [{name: k, projected: {sources: [{podCertificate: {signerName: example.com/s, keyType: ED25519, credentialBundlePath: c}}]}}]}`,
			"spec.pod.volumes[0].projected.sources[0].podCertificate", "identity"},
		{"a csi volume", `pod: {volumes: [{name: k, csi: {driver: secrets-store.csi.k8s.io, volumeAttributes: {secretProviderClass: vault}}}]}`,
			"spec.pod.volumes[0].csi", "csi driver"},
		{"another workload's claim", `pod: {volumes: [{name: k, persistentVolumeClaim: {claimName: data}}]}`,
			"spec.pod.volumes[0].persistentVolumeClaim", "another workload"},
		{"a sidecar with the agent's CA volume", `pod: {containers: [{name: x, image: busybox, volumeMounts: [{name: ca, mountPath: /ca}]}]}`,
			"spec.pod.containers[0].volumeMounts[0].name", "not a volume of spec.pod.volumes"},
		{"an Argo CD Application", `
extraObjects:
- apiVersion: argoproj.io/v1alpha1
  kind: Application
  metadata: {name: argocd-agent-addon-app, namespace: argocd}
  spec: {project: default, source: {repoURL: "https://evil.example.com/r.git", path: .}, destination: {server: "https://kubernetes.default.svc", namespace: kube-system}}`,
			"spec.extraObjects[0].kind", "Argo CD's"},
		{"an APIService", `
extraObjects:
- {apiVersion: apiregistration.k8s.io/v1, kind: APIService, metadata: {name: v1beta1.metrics.k8s.io}, spec: {group: metrics.k8s.io, version: v1beta1, service: {name: evil, namespace: argocd}}}`,
			"spec.extraObjects[0].kind", "cluster's API"},
		{"a CustomResourceDefinition", `
extraObjects:
- {apiVersion: apiextensions.k8s.io/v1, kind: CustomResourceDefinition, metadata: {name: applications.argoproj.io}}`,
			"spec.extraObjects[0].kind", "cluster's API"},
		{"a PodMonitor", `
extraObjects:
- {apiVersion: monitoring.coreos.com/v1, kind: PodMonitor, metadata: {name: argocd-agent-addon-m, namespace: argocd}}`,
			"spec.extraObjects[0].kind", "Prometheus"},
		{"a Service with external IPs", `
extraObjects:
- apiVersion: v1
  kind: Service
  metadata: {name: argocd-agent-addon-mitm, namespace: argocd}
  spec: {selector: {app.kubernetes.io/name: argocd-agent-agent}, ports: [{port: 443}], externalIPs: [203.0.113.10]}`,
			"spec.extraObjects[0].spec.externalIPs", "CVE-2020-8554"},
		{"a LoadBalancer Service", `
extraObjects:
- {apiVersion: v1, kind: Service, metadata: {name: argocd-agent-addon-lb, namespace: argocd}, spec: {type: LoadBalancer, selector: {app.kubernetes.io/name: argocd-agent-agent}, ports: [{port: 8181}]}}`,
			"spec.extraObjects[0].spec.type", "only ClusterIP"},
		{"a Service of Argo CD's pods", `
extraObjects:
- {apiVersion: v1, kind: Service, metadata: {name: argocd-agent-addon-r, namespace: argocd}, spec: {selector: {app.kubernetes.io/name: argocd-redis}, ports: [{port: 6379}]}}`,
			"spec.extraObjects[0].spec.selector", "agent's pod"},
		{"a NetworkPolicy of every pod", `
extraObjects:
- {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: argocd-agent-addon-open, namespace: argocd}, spec: {podSelector: {}, ingress: [{}]}}`,
			"spec.extraObjects[0].spec.podSelector.matchLabels", "agent's pod only"},
		{"a PodDisruptionBudget of other pods", `
extraObjects:
- {apiVersion: policy/v1, kind: PodDisruptionBudget, metadata: {name: argocd-agent-addon-pdb, namespace: argocd}, spec: {minAvailable: 1, selector: {}}}`,
			"spec.extraObjects[0].spec.selector.matchLabels", "agent's pod only"},
		{"an older version", `
extraObjects:
- {apiVersion: policy/v1beta1, kind: PodDisruptionBudget, metadata: {name: argocd-agent-addon-pdb, namespace: argocd}}`,
			"spec.extraObjects[0].apiVersion", "want policy/v1"},
		{"a field the add-on cannot check", `
extraObjects:
- {apiVersion: v1, kind: Service, metadata: {name: argocd-agent-addon-s, namespace: argocd}, spec: {selector: {app.kubernetes.io/name: argocd-agent-agent}, newField: x}}`,
			"spec.extraObjects[0]", "unknown field"},
		{"Argo CD's ConfigMap taken over", `
extraObjects:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: argocd-cm, namespace: argocd}, data: {exec.enabled: "true"}}`,
			"spec.extraObjects[0].metadata.name", "beginning with argocd-agent-addon-"},
		{"an object in another namespace", `
extraObjects:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: argocd-agent-addon-coredns, namespace: kube-system}}`,
			"spec.extraObjects[0].metadata.namespace", "agent's namespace argocd"},
		{"an Argo CD cluster Secret", `
extraObjects:
- {apiVersion: v1, kind: Secret, metadata: {name: argocd-agent-addon-c, namespace: argocd, labels: {argocd.argoproj.io/secret-type: cluster}}, stringData: {server: "https://evil.example.com"}}`,
			"spec.extraObjects[0].metadata.labels[argocd.argoproj.io/secret-type]", "Argo CD's"},
		{"an owner reference", `
extraObjects:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: argocd-agent-addon-o, namespace: argocd, ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: argocd-cm, uid: x}]}}`,
			"spec.extraObjects[0].metadata.ownerReferences", "only metadata.name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, rep, err := render(t, tc.spec)
			var fe *agentconfig.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err %v, want a FieldError", err)
			}
			if objs != nil {
				t.Errorf("%d objects to deliver, want none", len(objs))
			}
			if fe.Field != tc.field || !strings.Contains(fe.Reason, tc.reason) {
				t.Errorf("refused %s: %s; want field %s and a reason with %q", fe.Field, fe.Reason, tc.field, tc.reason)
			}
			if !strings.HasPrefix(fe.Error(), "invalid AgentCustomization open-cluster-management/custom field ") {
				t.Errorf("error %q does not name the AgentCustomization", fe.Error())
			}
			if len(rep.invalid) != 1 || rep.invalid[0] != fe {
				t.Errorf("reported %v, want the refusal once", rep.invalid)
			}
		})
	}
}

// A field the type does not have is refused with its name, not dropped.
func TestUnknownFieldIsRefused(t *testing.T) {
	_, _, err := render(t, `pod: {priorityClass: high}`)
	var fe *agentconfig.FieldError
	if !errors.As(err, &fe) || !strings.Contains(fe.Reason, "priorityClass") {
		t.Fatalf("err %v, want a FieldError naming priorityClass", err)
	}
}

// Whatever an AgentCustomization holds, the render either refuses it with a FieldError or
// delivers objects that keep every guarantee; it never panics.
func FuzzCustomization(f *testing.F) {
	f.Add(everything)
	f.Add(`pod: {containers: [{name: x, image: y, securityContext: {privileged: true}}]}`)
	f.Add(`agent: {args: ["--creds=x", "-n"], env: [{name: A, valueFrom: {}}]}`)
	f.Add(`extraObjects: [{apiVersion: v1, kind: ConfigMap, metadata: {name: argocd-agent-params, namespace: argocd}}]`)
	f.Add(`labels: {"": x}`)
	restricted := `securityContext: {allowPrivilegeEscalation: false, runAsNonRoot: true, capabilities: {drop: [ALL]}, seccompProfile: {type: RuntimeDefault}}`
	f.Add(`
extraObjects:
- {apiVersion: v1, kind: Secret, type: kubernetes.io/service-account-token, metadata: {name: argocd-agent-addon-t, namespace: argocd}}
pod:
  volumes: [{name: t, secret: {secretName: argocd-agent-addon-t}}]
  containers: [{name: x, image: busybox, volumeMounts: [{name: t, mountPath: /t}], ` + restricted + `}]`)
	f.Add(`
extraObjects:
- {apiVersion: v1, kind: Service, metadata: {name: argocd-agent-addon-s, namespace: argocd}, spec: {selector: {app.kubernetes.io/name: argocd-agent-agent}, externalIPs: [1.2.3.4]}}
- {apiVersion: argoproj.io/v1alpha1, kind: Application, metadata: {name: argocd-agent-addon-a, namespace: argocd}}`)
	f.Add(`
pod:
  volumes: [{name: s, secret: {secretName: argocd-redis}}, {name: c, csi: {driver: secrets-store.csi.k8s.io}}]
  initContainers: [{name: x, image: busybox, volumeMounts: [{name: s, mountPath: /s}, {name: c, mountPath: /c}], ` + restricted + `}]
  containers: [{name: z, image: busybox, env: [{name: P, valueFrom: {secretKeyRef: {name: argocd-redis, key: auth}}}], ` + restricted + `}]`)
	f.Fuzz(func(t *testing.T, spec string) {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte("spec:\n"+indent(spec)), &u.Object); err != nil || u.Object == nil {
			t.Skip()
		}
		u.SetGroupVersionKind(customization.GVK)
		u.SetNamespace("open-cluster-management")
		u.SetName("custom")
		c, err := customization.FromUnstructured(u)
		var fe *agentconfig.FieldError
		if err != nil {
			if !errors.As(err, &fe) {
				t.Fatalf("decoding: %v, want a FieldError", err)
			}
			return
		}
		objs, _, err := renderWith(t, c)
		if err != nil {
			if !errors.As(err, &fe) || strings.Contains(err.Error(), "panicked") {
				t.Fatalf("render: %v, want a FieldError", err)
			}
			return
		}
		checkGuarantees(t, deploymentOf(t, objs))
		checkDelivered(t, objs)
	})
}
