package customization_test

import (
	"context"
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
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
)

// fixed serves one customisation (nil: none) for every cluster.
type fixed struct{ c *customization.Customization }

func (f fixed) Desired(context.Context, *addonv1beta1.ManagedClusterAddOn) (*customization.Customization, error) {
	return f.c, nil
}

func (f fixed) GetWithSpecHash(context.Context, string, string) (*customization.Customization, string, error) {
	return f.c, "h", nil
}

type noADC struct{}

func (noADC) Get(context.Context, string, string) (*addonv1beta1.AddOnDeploymentConfig, error) {
	return nil, errors.New("none")
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
	for _, o := range objs {
		if d, ok := o.(*appsv1.Deployment); ok {
			return d
		}
	}
	t.Fatal("no Deployment rendered")
	return nil
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
	if !slices.ContainsFunc(agent.Env, func(e corev1.EnvVar) bool { return e.Name == addon.ParamsContentEnv }) {
		t.Errorf("content key env %s lost", addon.ParamsContentEnv)
	}
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType || d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("one-at-a-time roll lost: strategy %s, replicas %v", d.Spec.Strategy.Type, d.Spec.Replicas)
	}
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
  metadata: {name: argocd-agent-egress, namespace: argocd}
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
	d := deploymentOf(t, objs)
	checkGuarantees(t, d)
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
- {apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: argocd}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: argocd}}`, "spec.extraObjects[1].metadata.name", "delivered already"},
		{"an object without a kind", `extraObjects: [{apiVersion: v1, metadata: {name: a}}]`, "spec.extraObjects[0].kind", "required"},
		{"an object with a status", `extraObjects: [{apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: argocd}, status: {}}]`, "spec.extraObjects[0].status", "controller"},
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
	})
}
