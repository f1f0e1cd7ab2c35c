package addon_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"open-cluster-management.io/addon-framework/pkg/agent"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/addon"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/delivered"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/plan"
	principalpkg "github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/revocation"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/podstart"
)

const caPEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

type getter struct {
	adc *addonv1beta1.AddOnDeploymentConfig
}

// GetWithSpecHash gives the spec hash mcaFor names as desired.
func (g getter) GetWithSpecHash(_ context.Context, ns, name string) (*addonv1beta1.AddOnDeploymentConfig, string, error) {
	if g.adc == nil || g.adc.Namespace != ns || g.adc.Name != name {
		return nil, "", fmt.Errorf("no ADC %s/%s", ns, name)
	}
	return g.adc, "h", nil
}

// recordingReporter records what the add-on reported.
type recordingReporter struct {
	invalid []*agentconfig.FieldError
	valid   int
	// principal and version are what the last Valid was told; held what Held was.
	principal principalpkg.Endpoint
	version   metav1.Condition
	held      []metav1.Condition
}

func (r *recordingReporter) Invalid(_ context.Context, _ *addonv1beta1.ManagedClusterAddOn, err *agentconfig.FieldError) {
	r.invalid = append(r.invalid, err)
}
func (r *recordingReporter) Valid(_ context.Context, _ *addonv1beta1.ManagedClusterAddOn, p principalpkg.Endpoint, version metav1.Condition) {
	r.valid++
	r.principal, r.version = p, version
}
func (r *recordingReporter) Held(_ context.Context, _ *addonv1beta1.ManagedClusterAddOn, version metav1.Condition) {
	r.held = append(r.held, version)
}

func mcaFor(adc *addonv1beta1.AddOnDeploymentConfig) *addonv1beta1.ManagedClusterAddOn {
	mca := &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Name: identity.AddonName, Namespace: "c1"}}
	// As OCM's addon-manager leaves it once it has resolved the configs.
	mca.Status.Conditions = []metav1.Condition{{Type: addonv1beta1.ManagedClusterAddOnConditionConfigured, Status: metav1.ConditionTrue, Reason: "ConfigurationsConfigured"}}
	if adc != nil {
		mca.Status.ConfigReferences = []addonv1beta1.ConfigReference{{
			ConfigGroupResource: addonv1beta1.ConfigGroupResource{Group: utils.AddOnDeploymentConfigGVR.Group, Resource: utils.AddOnDeploymentConfigGVR.Resource},
			DesiredConfig: &addonv1beta1.ConfigSpecHash{
				ConfigReferent: addonv1beta1.ConfigReferent{Namespace: adc.Namespace, Name: adc.Name}, SpecHash: "h",
			},
		}}
	}
	return mca
}

func newADC(vars map[string]string, mutate func(*addonv1beta1.AddOnDeploymentConfigSpec)) *addonv1beta1.AddOnDeploymentConfig {
	a := &addonv1beta1.AddOnDeploymentConfig{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "open-cluster-management"}}
	for k, v := range vars {
		a.Spec.CustomizedVariables = append(a.Spec.CustomizedVariables, addonv1beta1.CustomizedVariable{Name: k, Value: v})
	}
	if mutate != nil {
		mutate(&a.Spec)
	}
	return a
}

// testCA is a fixed CA bundle and signing-CA ID, or an error from both.
type testCA struct {
	bundle, id string
	err        error
}

func (c testCA) Bundle(context.Context) ([]byte, error) { return []byte(c.bundle), c.err }
func (c testCA) ID(context.Context) (string, error)     { return c.id, c.err }

func render(t *testing.T, style identity.SubjectStyle, adc *addonv1beta1.AddOnDeploymentConfig, bundle string, rep addon.ConfigReporter) ([]runtime.Object, error) {
	t.Helper()
	a, err := addon.New(addon.Options{
		ConfigGetter: getter{adc},
		CA:           testCA{bundle: bundle},
		Subject:      style,
		Reporter:     rep,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a.Manifests(context.Background(), &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}}, mcaFor(adc))
}

type rendered struct {
	deployment *appsv1.Deployment
	params     *corev1.ConfigMap
	caSecret   *corev1.Secret
	kinds      map[string]int
	namespaces map[string]bool
}

// spoke is what kubelet finds on the spoke when r has been applied there.
func spoke(r rendered) podstart.Objects {
	return podstart.Objects{
		ConfigMaps: map[string]*corev1.ConfigMap{r.params.Name: r.params},
		Secrets: map[string]*corev1.Secret{r.caSecret.Name: r.caSecret,
			identity.ClientCertSecretName: {Data: map[string][]byte{"tls.crt": nil, "tls.key": nil}}},
	}
}

func index(t *testing.T, objs []runtime.Object) rendered {
	t.Helper()
	r := rendered{kinds: map[string]int{}, namespaces: map[string]bool{}}
	for _, o := range objs {
		kind := fmt.Sprintf("%T", o)
		r.kinds[kind]++
		if m, ok := o.(metav1.Object); ok && m.GetNamespace() != "" {
			r.namespaces[m.GetNamespace()] = true
		}
		switch v := o.(type) {
		case *appsv1.Deployment:
			r.deployment = v
		case *corev1.ConfigMap:
			r.params = v
		case *corev1.Secret:
			r.caSecret = v
		}
	}
	if r.deployment == nil || r.params == nil {
		t.Fatalf("missing Deployment or ConfigMap in %v", r.kinds)
	}
	return r
}

// Every template renders, for every supported configuration variant, into the expected objects.
func TestManifestsForEveryVariant(t *testing.T) {
	principal := map[string]string{"principalAddress": "principal.example.com"}
	variants := []struct {
		name   string
		style  identity.SubjectStyle
		adc    *addonv1beta1.AddOnDeploymentConfig
		bundle string
		check  func(t *testing.T, r rendered)
	}{
		{name: "defaults", adc: newADC(principal, nil), bundle: caPEM, check: func(t *testing.T, r rendered) {
			c := r.deployment.Spec.Template.Spec.Containers[0]
			if c.Image != agentconfig.DefaultImage || r.params.Data["agent.mode"] != "managed" || r.params.Data["agent.server.port"] != "443" {
				t.Errorf("defaults: image %s, params %v", c.Image, r.params.Data)
			}
			if r.deployment.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
				t.Errorf("strategy %q: a roll must stop the old agent before the new one connects with the same identity", r.deployment.Spec.Strategy.Type)
			}
			if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/healthz" || c.LivenessProbe != nil {
				t.Error("want a /healthz readiness probe and no liveness probe")
			}
			sc := c.SecurityContext
			if sc == nil || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem || !*sc.RunAsNonRoot || sc.Capabilities.Drop[0] != "ALL" {
				t.Error("container is not restricted")
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Error("no resource requests")
			}
			if r.params.Data["agent.creds"] != "mtls:" || r.params.Data["agent.tls.client.cert-path"] != "/app/config/tls/client/tls.crt" {
				t.Errorf("mTLS settings: %v", r.params.Data)
			}
			if got := r.deployment.Spec.Template.Spec.Volumes[0].Secret.SecretName; got != identity.ClientCertSecretName {
				t.Errorf("client cert secret %q, want %q", got, identity.ClientCertSecretName)
			}
			if r.caSecret == nil || string(r.caSecret.Data["ca.crt"]) != caPEM || len(r.caSecret.Data) != 2 {
				t.Errorf("CA secret must hold exactly ca.crt and its content key: %+v", r.caSecret)
			}
			for k, v := range r.caSecret.Data {
				if k != "ca.crt" && (!strings.HasPrefix(k, delivered.ContentKeyPrefix) || k != delivered.ContentKeyPrefix+string(v)) {
					t.Errorf("CA secret key %q = %q: want ca.crt or the content key", k, v)
				}
			}
			// Off by default, and then absent: turning it into a key would roll every agent.
			if _, ok := r.params.Data["agent.destination-based-mapping"]; ok {
				t.Errorf("destination-based mapping in the default params: %v", r.params.Data)
			}
			if !r.namespaces["argocd"] || len(r.namespaces) != 1 {
				t.Errorf("namespaces %v, want argocd only", r.namespaces)
			}
			for kind, n := range map[string]int{"*v1.Namespace": 1, "*v1.ServiceAccount": 1, "*v1.Role": 1, "*v1.RoleBinding": 1,
				"*v1.ClusterRole": 1, "*v1.ClusterRoleBinding": 1, "*v1.ConfigMap": 1, "*v1.Deployment": 1, "*v1.Secret": 1} {
				if r.kinds[kind] != n {
					t.Errorf("%d %s, want %d (all: %v)", r.kinds[kind], kind, n, r.kinds)
				}
			}
		}},
		{name: "autonomous mode, port, image, log level", adc: newADC(map[string]string{
			"principalAddress": "10.1.2.3", "principalPort": "8443", "agentMode": "autonomous",
			"agentImage": "registry.local/argocd-agent:v0.9.1", "logLevel": "debug"}, nil), bundle: caPEM,
			check: func(t *testing.T, r rendered) {
				d := r.params.Data
				if d["agent.mode"] != "autonomous" || d["agent.server.port"] != "8443" || d["agent.server.address"] != "10.1.2.3" || d["agent.log.level"] != "debug" {
					t.Errorf("params %v", d)
				}
				if img := r.deployment.Spec.Template.Spec.Containers[0].Image; img != "registry.local/argocd-agent:v0.9.1" {
					t.Errorf("image %s", img)
				}
			}},
		{name: "destination-based mapping", adc: newADC(map[string]string{"principalAddress": "principal.example.com", "destinationBasedMapping": "true"}, nil), bundle: caPEM,
			check: func(t *testing.T, r rendered) {
				d := r.params.Data
				if d["agent.destination-based-mapping"] != "true" {
					t.Errorf("params %v", d)
				}
				env := map[string]string{}
				for _, e := range r.deployment.Spec.Template.Spec.Containers[0].Env {
					if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
						env[e.Name] = e.ValueFrom.ConfigMapKeyRef.Key
					}
				}
				if env["ARGOCD_AGENT_DESTINATION_BASED_MAPPING"] != "agent.destination-based-mapping" {
					t.Errorf("env from params %v", env)
				}
			}},
		{name: "install namespace", adc: newADC(principal, func(s *addonv1beta1.AddOnDeploymentConfigSpec) { s.AgentInstallNamespace = "gitops" }), bundle: caPEM,
			check: func(t *testing.T, r rendered) {
				if !r.namespaces["gitops"] || len(r.namespaces) != 1 || r.params.Data["agent.namespace"] != "gitops" {
					t.Errorf("namespaces %v, agent.namespace %q", r.namespaces, r.params.Data["agent.namespace"])
				}
			}},
		{name: "node placement", adc: newADC(principal, func(s *addonv1beta1.AddOnDeploymentConfigSpec) {
			s.NodePlacement = &addonv1beta1.NodePlacement{
				NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
				Tolerations:  []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "gitops", Effect: corev1.TaintEffectNoSchedule}},
			}
		}), bundle: caPEM, check: func(t *testing.T, r rendered) {
			spec := r.deployment.Spec.Template.Spec
			if spec.NodeSelector["kubernetes.io/os"] != "linux" || len(spec.Tolerations) != 1 || spec.Tolerations[0].Value != "gitops" {
				t.Errorf("node placement: %v %v", spec.NodeSelector, spec.Tolerations)
			}
		}},
		{name: "registries", adc: newADC(principal, func(s *addonv1beta1.AddOnDeploymentConfigSpec) {
			s.Registries = []addonv1beta1.ImageMirror{{Source: "quay.io/argoprojlabs", Mirror: "mirror.local/argo"}}
		}), bundle: caPEM, check: func(t *testing.T, r rendered) {
			if img := r.deployment.Spec.Template.Spec.Containers[0].Image; img != "mirror.local/argo/argocd-agent:v0.9.0" {
				t.Errorf("image %s", img)
			}
		}},
		{name: "proxy", adc: newADC(principal, func(s *addonv1beta1.AddOnDeploymentConfigSpec) {
			s.ProxyConfig = addonv1beta1.ProxyConfig{HTTPProxy: "http://p:3128", HTTPSProxy: "http://p:3128", NoProxy: "10.0.0.0/8,.svc"}
		}), bundle: caPEM, check: func(t *testing.T, r rendered) {
			env := map[string]string{}
			for _, e := range r.deployment.Spec.Template.Spec.Containers[0].Env {
				env[e.Name] = e.Value
			}
			// The agent's own API server is never proxied.
			if env["HTTP_PROXY"] != "http://p:3128" || env["HTTPS_PROXY"] != "http://p:3128" ||
				env["NO_PROXY"] != "10.0.0.0/8,.svc,$(KUBERNETES_SERVICE_HOST),kubernetes.default.svc,kubernetes.default.svc.cluster.local" {
				t.Errorf("proxy env %v", env)
			}
		}},
		{name: "proxy without noProxy", adc: newADC(principal, func(s *addonv1beta1.AddOnDeploymentConfigSpec) {
			s.ProxyConfig = addonv1beta1.ProxyConfig{HTTPSProxy: "http://p:3128"}
		}), bundle: caPEM, check: func(t *testing.T, r rendered) {
			env := map[string]string{}
			for _, e := range r.deployment.Spec.Template.Spec.Containers[0].Env {
				env[e.Name] = e.Value
			}
			if env["HTTPS_PROXY"] != "http://p:3128" || env["NO_PROXY"] != agentconfig.InClusterNoProxy {
				t.Errorf("proxy env %v", env)
			}
		}},
		{name: "resources", adc: newADC(principal, func(s *addonv1beta1.AddOnDeploymentConfigSpec) {
			s.ResourceRequirements = []addonv1beta1.ContainerResourceRequirements{{ContainerID: "*:*:*",
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}}}
		}), bundle: caPEM, check: func(t *testing.T, r rendered) {
			if got := r.deployment.Spec.Template.Spec.Containers[0].Resources.Limits.Memory().String(); got != "1Gi" {
				t.Errorf("memory limit %s", got)
			}
		}},
		{name: "ocm subject style", style: identity.SubjectOCM, adc: newADC(principal, nil), bundle: caPEM, check: func(t *testing.T, r rendered) {}},
		{name: "no CA bundle (render without --ca)", adc: newADC(principal, nil), check: func(t *testing.T, r rendered) {
			if r.caSecret != nil {
				t.Error("CA secret rendered without a bundle")
			}
		}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			style := v.style
			if style == "" {
				style = identity.SubjectClusterName
			}
			rep := &recordingReporter{}
			objs, err := render(t, style, v.adc, v.bundle, rep)
			if err != nil {
				t.Fatal(err)
			}
			if rep.valid != 1 || len(rep.invalid) != 0 {
				t.Errorf("reporter: valid=%d invalid=%v", rep.valid, rep.invalid)
			}
			if rep.principal.Source != principalpkg.SourceConfig || rep.principal.Host == "" {
				t.Errorf("reporter told principal %+v, want the AddOnDeploymentConfig's", rep.principal)
			}
			r := index(t, objs)
			for _, o := range objs {
				if cr, ok := o.(*rbacv1.ClusterRole); ok && len(cr.Rules) == 0 {
					t.Error("empty ClusterRole")
				}
			}
			v.check(t, r)
		})
	}
}

func TestConfigChangeRollsThePod(t *testing.T) {
	hash := func(vars map[string]string, bundle string) string {
		objs, err := render(t, identity.SubjectClusterName, newADC(vars, nil), bundle, nil)
		if err != nil {
			t.Fatal(err)
		}
		return index(t, objs).deployment.Spec.Template.Annotations["argocd-agent-addon.open-cluster-management.io/config-hash"]
	}
	base := hash(map[string]string{"principalAddress": "a.example.com"}, caPEM)
	if base == "" {
		t.Fatal("no config hash on the pod template")
	}
	if base == hash(map[string]string{"principalAddress": "b.example.com"}, caPEM) {
		t.Error("a new principal address does not change the pod template")
	}
	if base == hash(map[string]string{"principalAddress": "a.example.com"}, caPEM+caPEM) {
		t.Error("a new CA bundle does not change the pod template")
	}
	if base != hash(map[string]string{"principalAddress": "a.example.com"}, caPEM) {
		t.Error("the same config renders a different hash")
	}
}

// The work agent may apply the Deployment before the ConfigMap and Secret it reads, and kubelet
// reads them when the container starts. For every change the agent reads at start-up, the new pod
// template cannot start from the previous objects, only from its own.
func TestPodStartsOnlyFromItsOwnContent(t *testing.T) {
	renderAt := func(vars map[string]string, bundle string) rendered {
		t.Helper()
		objs, err := render(t, identity.SubjectClusterName, newADC(vars, nil), bundle, nil)
		if err != nil {
			t.Fatal(err)
		}
		return index(t, objs)
	}
	base := map[string]string{"principalAddress": "a.example.com"}
	with := func(k, v string) map[string]string {
		m := maps.Clone(base)
		m[k] = v
		return m
	}
	before := renderAt(base, caPEM)
	if err := podstart.Check(before.deployment.Spec.Template.Spec, spoke(before)); err != nil {
		t.Fatalf("the pod cannot start from its own objects: %v", err)
	}
	for _, change := range []struct {
		name    string
		after   rendered
		blocked string // the object the new pod must wait for
	}{
		{"log level", renderAt(with("logLevel", "debug"), caPEM), "ConfigMap"},
		{"principal address", renderAt(with("principalAddress", "b.example.com"), caPEM), "ConfigMap"},
		{"principal port", renderAt(with("principalPort", "8443"), caPEM), "ConfigMap"},
		{"agent mode", renderAt(with("agentMode", "autonomous"), caPEM), "ConfigMap"},
		{"CA bundle", renderAt(base, caPEM+caPEM), "Secret"},
	} {
		t.Run(change.name, func(t *testing.T) {
			pod := change.after.deployment.Spec.Template.Spec
			err := podstart.Check(pod, spoke(before))
			if err == nil || !strings.Contains(err.Error(), "couldn't find key "+delivered.ContentKeyPrefix) || !strings.Contains(err.Error(), change.blocked) {
				t.Errorf("the new pod template can start from the previous objects (%v); want it held for the new %s", err, change.blocked)
			}
			if err := podstart.Check(pod, spoke(change.after)); err != nil {
				t.Errorf("the new pod template cannot start from its own objects: %v", err)
			}
		})
	}
	// The same configuration names the same content: no change, no roll.
	if again := renderAt(base, caPEM); !equality.Semantic.DeepEqual(again.deployment.Spec.Template, before.deployment.Spec.Template) {
		t.Error("the same configuration renders a different pod template")
	}
}

func TestInvalidConfigIsReportedNotRendered(t *testing.T) {
	rep := &recordingReporter{}
	objs, err := render(t, identity.SubjectClusterName, newADC(map[string]string{"principalAddress": "a", "principalPort": "99999"}, nil), caPEM, rep)
	var fe *agentconfig.FieldError
	if !errors.As(err, &fe) || fe.Field != "customizedVariables[principalPort]" || fe.Value != "99999" {
		t.Fatalf("want a FieldError for principalPort=99999, got %v", err)
	}
	if objs != nil {
		t.Fatal("objects rendered for an invalid config")
	}
	if len(rep.invalid) != 1 || rep.valid != 0 {
		t.Fatalf("reporter: valid=%d invalid=%v", rep.valid, rep.invalid)
	}
}

func TestRegistrationAndOptions(t *testing.T) {
	for _, style := range identity.SubjectStyles {
		a, err := addon.New(addon.Options{ConfigGetter: getter{}, CA: testCA{id: "0123456789abcdef"}, Subject: style})
		if err != nil {
			t.Fatal(err)
		}
		opts := a.GetAgentAddonOptions()
		if opts.AddonName != identity.AddonName || opts.HealthProber.Type != agent.HealthProberTypeDeploymentAvailability {
			t.Fatalf("options %+v", opts)
		}
		if opts.Registration.CSRApproveCheck != nil || opts.Registration.CSRSign != nil {
			t.Fatal("the framework's approver/signer must stay off: pkg/certificates does it strictly")
		}
		regs, err := opts.Registration.Configurations(context.Background(), &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}}, nil)
		if err != nil || len(regs) != 1 {
			t.Fatalf("registrations %v %v", regs, err)
		}
		api := regs[0].RegistrationAPI()
		want := style.For("c1", "0123456789abcdef")
		if api.Type != addonv1beta1.CustomSigner || api.CustomSigner.SignerName != identity.SignerName || api.CustomSigner.Subject.User != want.User ||
			!slices.Equal(api.CustomSigner.Subject.OrganizationUnits, []string{"ca-0123456789abcdef"}) {
			t.Fatalf("registration %+v, want user %q and the signing CA's OU", api, want.User)
		}
	}
	// With no usable CA the registration cannot be computed: an error, not a subject without OU.
	a, err := addon.New(addon.Options{ConfigGetter: getter{}, CA: testCA{err: errors.New("CA secret missing")}, Subject: identity.SubjectClusterName})
	if err != nil {
		t.Fatal(err)
	}
	if regs, err := a.GetAgentAddonOptions().Registration.Configurations(context.Background(), &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}}, nil); err == nil {
		t.Fatalf("registrations %v without a CA", regs)
	}
	if _, err := addon.New(addon.Options{ConfigGetter: getter{}, CA: testCA{}, Subject: "bogus"}); err == nil {
		t.Fatal("unknown subject style accepted")
	}
}

func TestBundleErrorStopsRendering(t *testing.T) {
	a, err := addon.New(addon.Options{
		ConfigGetter: getter{newADC(map[string]string{"principalAddress": "a"}, nil)},
		CA:           testCA{err: errors.New("CA secret argocd/argocd-agent-ca not found")},
		Subject:      identity.SubjectClusterName,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Manifests(context.Background(), &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}}, mcaFor(newADC(map[string]string{"principalAddress": "a"}, nil)))
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("want the CA error, got %v", err)
	}
}

// FuzzManifests: whatever principal address and log level a user writes, the manifests either
// are refused with a FieldError or carry exactly those values: no input changes the structure
// of what is rendered.
func FuzzManifests(f *testing.F) {
	f.Add("principal.example.com", "info")
	f.Add("a\"\nagent.creds: none", "debug")
	f.Add("{{ .Namespace }}", "info")
	f.Fuzz(func(t *testing.T, address, logLevel string) {
		objs, err := render(t, identity.SubjectClusterName, newADC(map[string]string{"principalAddress": address, "logLevel": logLevel}, nil), caPEM, nil)
		if err != nil {
			var fe *agentconfig.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("not a FieldError: %v", err)
			}
			return
		}
		r := index(t, objs)
		if r.params.Data["agent.server.address"] != address || r.params.Data["agent.log.level"] != logLevel || r.params.Data["agent.creds"] != "mtls:" {
			t.Fatalf("rendered params differ from the input: %v", r.params.Data)
		}
	})
}

// A certificate OCM stored on the spoke rolls the agent's pod once: the hash follows the
// ClusterCertificateRotated condition, and nothing else in the add-on's status.
func TestRenewedCertificateRollsThePodOnce(t *testing.T) {
	adc := newADC(map[string]string{"principalAddress": "a.example.com"}, nil)
	a, err := addon.New(addon.Options{ConfigGetter: getter{adc}, Subject: identity.SubjectClusterName,
		CA: testCA{bundle: caPEM}})
	if err != nil {
		t.Fatal(err)
	}
	hash := func(conds ...metav1.Condition) string {
		mca := mcaFor(adc)
		mca.Status.Conditions = append(mca.Status.Conditions, conds...)
		objs, err := a.Manifests(context.Background(), &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}}, mca)
		if err != nil {
			t.Fatal(err)
		}
		return index(t, objs).deployment.Spec.Template.Annotations[delivered.ClientCertificateAnnotation]
	}
	rotated := func(msg string, status metav1.ConditionStatus) metav1.Condition {
		return metav1.Condition{Type: plan.ConditionClusterCertificateRotated, Status: status, Reason: "ClientCertificateUpdated", Message: msg}
	}
	first := hash(rotated("client certificate rotated starting from 2026-11-24 10:00:00 to 2026-11-25 10:00:00", metav1.ConditionTrue))
	if first == hash() {
		t.Error("the first certificate does not change the pod template")
	}
	if first != hash(rotated("client certificate rotated starting from 2026-11-24 10:00:00 to 2026-11-25 10:00:00", metav1.ConditionTrue),
		metav1.Condition{Type: "Available", Status: metav1.ConditionTrue, Reason: "x"}) {
		t.Error("another condition changes the pod template")
	}
	if first == hash(rotated("client certificate rotated starting from 2026-11-25 04:00:00 to 2026-11-26 04:00:00", metav1.ConditionTrue)) {
		t.Error("a renewed certificate does not roll the pod")
	}
	if hash() != hash(rotated("Failed to create CSR", metav1.ConditionFalse)) {
		t.Error("a failed rotation rolls the pod")
	}
}

// hashingGetter is a getter that gives another spec hash.
type hashingGetter struct {
	getter
	hash string
}

func (g hashingGetter) GetWithSpecHash(ctx context.Context, ns, name string) (*addonv1beta1.AddOnDeploymentConfig, string, error) {
	adc, _, err := g.getter.GetWithSpecHash(ctx, ns, name)
	return adc, g.hash, err
}

// A config that has moved on from the spec OCM's rollout has the cluster on is not rendered:
// the cluster keeps its ManifestWork until the rollout reaches it.
func TestRenderWaitsForTheRollout(t *testing.T) {
	adc := newADC(map[string]string{"principalAddress": "principal.example.com"}, nil)
	cluster := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}}
	for name, tc := range map[string]struct {
		getter  plan.ConfigSource[*addonv1beta1.AddOnDeploymentConfig]
		pending bool
	}{
		"hash the rollout wants":              {hashingGetter{getter{adc}, "h"}, false},
		"newer spec than the rollout reached": {hashingGetter{getter{adc}, "newer"}, true},
	} {
		t.Run(name, func(t *testing.T) {
			rep := &recordingReporter{}
			a, err := addon.New(addon.Options{ConfigGetter: tc.getter, CA: testCA{bundle: "ca"}, Subject: identity.SubjectClusterName, Reporter: rep})
			if err != nil {
				t.Fatal(err)
			}
			objs, err := a.Manifests(context.Background(), cluster, mcaFor(adc))
			if got := errors.Is(err, plan.ErrRolloutPending); got != tc.pending {
				t.Fatalf("rollout pending = %v (err %v), want %v", got, err, tc.pending)
			}
			if tc.pending && (objs != nil || len(rep.invalid) > 0 || rep.valid > 0) {
				t.Fatalf("a pending rollout rendered or reported: %d objects, %+v", len(objs), rep)
			}
			if !tc.pending && len(objs) == 0 {
				t.Fatalf("nothing rendered: %v", err)
			}
		})
	}
}

// A revoked cluster gets nothing rendered, whatever its ManagedCluster's labels say: the
// revocation in its record decides.
func TestRevokedClusterGetsNothing(t *testing.T) {
	scheme, err := hubclient.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	hub := fake.NewClientBuilder().WithScheme(scheme).Build()
	adc := newADC(map[string]string{"principalAddress": "a"}, nil)
	a, err := addon.New(addon.Options{ConfigGetter: getter{adc}, CA: testCA{bundle: caPEM}, Subject: identity.SubjectClusterName,
		Records: &issued.Records{Reader: hub, Namespace: "addon-ns"}})
	if err != nil {
		t.Fatal(err)
	}
	cluster := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}} // no revoked label
	if objs, err := a.Manifests(context.Background(), cluster, mcaFor(adc)); err != nil || len(objs) == 0 {
		t.Fatalf("before revocation: %d objects, %v", len(objs), err)
	}
	if _, err := issued.Update(context.Background(), hub, hub, "addon-ns", "c1", func(r *issued.Record) error {
		r.Revocation = &revocation.Revocation{Reason: "key leaked"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	objs, err := a.Manifests(context.Background(), cluster, mcaFor(adc))
	if !errors.Is(err, plan.ErrRevoked) || !strings.Contains(err.Error(), "key leaked") || objs != nil {
		t.Fatalf("revoked: %d objects, %v; want none and ErrRevoked with the reason", len(objs), err)
	}
	if objs, err := a.Manifests(context.Background(), &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c2"}}, mcaFor(adc)); err != nil || len(objs) == 0 {
		t.Fatalf("another cluster: %d objects, %v", len(objs), err)
	}
	// An unreadable record decides nothing.
	cm := &corev1.ConfigMap{}
	if err := hub.Get(context.Background(), types.NamespacedName{Namespace: "addon-ns", Name: issued.RecordName("c1")}, cm); err != nil {
		t.Fatal(err)
	}
	delete(cm.Data, "revocation")
	cm.Data["certificates"] = "[{"
	if err := hub.Update(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Manifests(context.Background(), cluster, mcaFor(adc)); err == nil {
		t.Fatal("rendered with an unreadable record")
	}
	// Nor does it get a renewal on its last ManifestWork, whatever OCM reports of the spoke.
	shipped, err := render(t, identity.SubjectClusterName, adc, caPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	work := deployWork(t, "c1", shipped)
	if err := hub.Create(context.Background(), work); err != nil {
		t.Fatal(err)
	}
	withWorks, err := addon.New(addon.Options{ConfigGetter: getter{adc}, CA: testCA{bundle: caPEM + caPEM}, Subject: identity.SubjectClusterName,
		Records: &issued.Records{Reader: hub, Namespace: "addon-ns"}, Works: hub})
	if err != nil {
		t.Fatal(err)
	}
	mca := mcaFor(adc)
	mca.Status.Conditions = append(mca.Status.Conditions, metav1.Condition{Type: plan.ConditionClusterCertificateRotated, Status: metav1.ConditionTrue,
		Reason: "ClientCertificateUpdated", Message: "client certificate rotated starting from x to 2026-12-09"})
	if objs, err := withWorks.Manifests(context.Background(), cluster, mca); !errors.Is(err, plan.ErrRevocationUnknown) || objs != nil {
		t.Fatalf("unreadable record, renewal due: %d objects, %v; want none and ErrRevocationUnknown", len(objs), err)
	}
}

// While a cluster's render is held back (here: an invalid config value), a renewed client
// certificate and a new trust bundle still reach its agent, on the configuration it runs.
func TestRenewalReachesTheAgentWhileTheConfigIsHeld(t *testing.T) {
	scheme, err := hubclient.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cluster := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}}
	good := newADC(map[string]string{"principalAddress": "principal.example.com", "principalPort": "8443"}, nil)
	rotated := func(mca *addonv1beta1.ManagedClusterAddOn, notAfter string) *addonv1beta1.ManagedClusterAddOn {
		mca.Status.Conditions = append(mca.Status.Conditions, metav1.Condition{Type: plan.ConditionClusterCertificateRotated, Status: metav1.ConditionTrue,
			Reason: "ClientCertificateUpdated", Message: "client certificate rotated starting from x to " + notAfter})
		return mca
	}
	// What the manager delivered with the good config: the cluster's ManifestWork.
	shipped, err := render(t, identity.SubjectClusterName, good, caPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	work := deployWork(t, "c1", shipped)
	// An AgentCustomization's extra object of a kind no built-in API has.
	work.Spec.Workload.Manifests = append(work.Spec.Workload.Manifests, workv1.Manifest{RawExtension: runtime.RawExtension{
		Raw: []byte(`{"apiVersion":"monitoring.coreos.com/v1","kind":"PodMonitor","metadata":{"name":"agent","namespace":"argocd"},"spec":{}}`)}})
	works := fake.NewClientBuilder().WithScheme(scheme).WithObjects(work).Build()
	bad := newADC(map[string]string{"principalAddress": "principal.example.com", "principalPort": "99999"}, nil)
	held := func(bundle string) agent.AgentAddon {
		a, err := addon.New(addon.Options{ConfigGetter: getter{bad}, CA: testCA{bundle: bundle}, Subject: identity.SubjectClusterName, Works: works})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	// Nothing new to deliver: the held render's error stands, and nothing changes.
	if objs, err := held(caPEM).Manifests(ctx, cluster, mcaFor(bad)); err == nil || objs != nil {
		t.Fatalf("no renewal pending: %d objects, %v; want the config error", len(objs), err)
	}
	// A renewal: the last configuration, with the new certificate.
	objs, err := held(caPEM).Manifests(ctx, cluster, rotated(mcaFor(bad), "2026-12-09"))
	if err != nil {
		t.Fatalf("renewal while held: %v", err)
	}
	if !slices.ContainsFunc(objs, func(o runtime.Object) bool { return o.GetObjectKind().GroupVersionKind().Kind == "PodMonitor" }) {
		t.Error("the renewal dropped the extra PodMonitor")
	}
	before, after := index(t, shipped), index(t, objs)
	if after.params.Data["agent.server.port"] != "8443" || !equality.Semantic.DeepEqual(after.params, before.params) {
		t.Errorf("the held config leaked: params %v", after.params.Data)
	}
	ann := func(r rendered, k string) string { return r.deployment.Spec.Template.Annotations[k] }
	if ann(after, delivered.ClientCertificateAnnotation) == ann(before, delivered.ClientCertificateAnnotation) {
		t.Error("the renewed certificate does not roll the agent")
	}
	if ann(after, "argocd-agent-addon.open-cluster-management.io/config-hash") != ann(before, "argocd-agent-addon.open-cluster-management.io/config-hash") {
		t.Error("the configuration changed with the renewal")
	}
	for _, o := range objs {
		if o.GetObjectKind().GroupVersionKind().Kind == "" {
			t.Errorf("%T delivered without its kind", o)
		}
	}
	// The same while OCM's rollout has not reached the cluster: the config object holds a newer
	// spec than the one the cluster's rollout is on.
	pending, err := addon.New(addon.Options{ConfigGetter: hashingGetter{getter{good}, "newer"}, CA: testCA{bundle: caPEM},
		Subject: identity.SubjectClusterName, Works: works})
	if err != nil {
		t.Fatal(err)
	}
	mca := rotated(mcaFor(good), "2026-12-10")
	mca.Status.ConfigReferences[0].DesiredConfig.SpecHash = "older"
	if objs, err := pending.Manifests(ctx, cluster, mca); err != nil || index(t, objs).params.Data["agent.server.port"] != "8443" {
		t.Fatalf("renewal while the rollout is pending: %v", err)
	}
	// A new trust bundle (CA rollover) too, with the content key that makes the new pod wait for it.
	objs, err = held(caPEM+caPEM).Manifests(ctx, cluster, mcaFor(bad))
	if err != nil {
		t.Fatalf("new bundle while held: %v", err)
	}
	after = index(t, objs)
	if string(after.caSecret.Data["ca.crt"]) != caPEM+caPEM {
		t.Errorf("bundle %q not delivered", after.caSecret.Data["ca.crt"])
	}
	if err := podstart.Check(after.deployment.Spec.Template.Spec, spoke(before)); err == nil {
		t.Error("the new pod could start from the previous CA Secret")
	}
	if err := podstart.Check(after.deployment.Spec.Template.Spec, spoke(after)); err != nil {
		t.Errorf("the new pod cannot start from its own objects: %v", err)
	}
	// Without a ManifestWork (first install) there is nothing to keep: the error stands.
	empty, err := addon.New(addon.Options{ConfigGetter: getter{bad}, CA: testCA{bundle: caPEM}, Subject: identity.SubjectClusterName,
		Works: fake.NewClientBuilder().WithScheme(scheme).Build()})
	if err != nil {
		t.Fatal(err)
	}
	if objs, err := empty.Manifests(ctx, cluster, rotated(mcaFor(bad), "2026-12-09")); err == nil || objs != nil {
		t.Fatalf("no work yet: %d objects, %v", len(objs), err)
	}
}

// deployWork is cluster's first deploy ManifestWork, as addon-framework makes it, delivering objs.
func deployWork(t *testing.T, cluster string, objs []runtime.Object) *workv1.ManifestWork {
	t.Helper()
	work := &workv1.ManifestWork{ObjectMeta: metav1.ObjectMeta{Namespace: cluster, Name: delivered.DeployWorkPrefix + "0",
		Labels: map[string]string{addonv1beta1.AddonLabelKey: identity.AddonName}}}
	for _, o := range objs {
		raw, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		work.Spec.Workload.Manifests = append(work.Spec.Workload.Manifests, workv1.Manifest{RawExtension: runtime.RawExtension{Raw: raw}})
	}
	return work
}
