package agentconfig_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
)

func adc(vars map[string]string, mutate ...func(*addonv1beta1.AddOnDeploymentConfigSpec)) *addonv1beta1.AddOnDeploymentConfig {
	a := &addonv1beta1.AddOnDeploymentConfig{}
	for _, name := range []string{"principalAddress", "principalPort", "agentMode", "agentImage", "logLevel", "destinationBasedMapping", "bogus"} {
		if v, ok := vars[name]; ok {
			a.Spec.CustomizedVariables = append(a.Spec.CustomizedVariables, addonv1beta1.CustomizedVariable{Name: name, Value: v})
		}
	}
	for _, m := range mutate {
		m(&a.Spec)
	}
	return a
}

func withPrincipal(extra map[string]string) map[string]string {
	vars := map[string]string{"principalAddress": "principal.example.com"}
	for k, v := range extra {
		vars[k] = v
	}
	return vars
}

func TestFromDeploymentConfig(t *testing.T) {
	cfg, err := agentconfig.FromDeploymentConfig(adc(withPrincipal(map[string]string{
		"principalPort": "8443", "agentMode": "autonomous", "agentImage": "registry.local/argocd-agent@sha256:" + sha, "logLevel": "debug",
	}), func(s *addonv1beta1.AddOnDeploymentConfigSpec) {
		s.AgentInstallNamespace = "gitops"
		s.ResourceRequirements = []addonv1beta1.ContainerResourceRequirements{
			{ContainerID: "*:*:*", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}},
			{ContainerID: "deployments:argocd-agent-agent:*", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")}}},
			{ContainerID: "deployments:other:*", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("3Gi")}}},
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PrincipalPort != 8443 || cfg.Mode != "autonomous" || cfg.LogLevel != "debug" || cfg.Namespace != "gitops" {
		t.Fatalf("config not applied: %+v", cfg)
	}
	if got := cfg.Resources.Limits.Memory().String(); got != "2Gi" {
		t.Fatalf("resources: the last matching entry must win, got memory limit %s", got)
	}

	def, err := agentconfig.FromDeploymentConfig(adc(withPrincipal(nil), func(s *addonv1beta1.AddOnDeploymentConfigSpec) {
		// What the CRD defaults every ADC to: not a user's choice.
		s.AgentInstallNamespace = "open-cluster-management-agent-addon"
	}))
	if err != nil {
		t.Fatal(err)
	}
	if def.PrincipalPort != 443 || def.Mode != "managed" || def.Namespace != "argocd" || def.Image != agentconfig.DefaultImage || def.DestinationBasedMapping {
		t.Fatalf("defaults not applied: %+v", def)
	}
	for value, want := range map[string]bool{"true": true, "false": false} {
		cfg, err := agentconfig.FromDeploymentConfig(adc(withPrincipal(map[string]string{"destinationBasedMapping": value})))
		if err != nil || cfg.DestinationBasedMapping != want {
			t.Errorf("destinationBasedMapping %q: %v %v, want %v", value, cfg.DestinationBasedMapping, err, want)
		}
	}
}

const sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestFromDeploymentConfigRejects(t *testing.T) {
	tests := []struct {
		name      string
		adc       *addonv1beta1.AddOnDeploymentConfig
		wantField string
		wantValue string
	}{
		{"principal address with scheme", adc(map[string]string{"principalAddress": "https://hub:443"}), "customizedVariables[principalAddress]", "https://hub:443"},
		{"principal address with YAML", adc(map[string]string{"principalAddress": "a\nagent.creds: none"}), "customizedVariables[principalAddress]", "a\nagent.creds: none"},
		{"port not a number", adc(withPrincipal(map[string]string{"principalPort": "https"})), "customizedVariables[principalPort]", "https"},
		{"port 0", adc(withPrincipal(map[string]string{"principalPort": "0"})), "customizedVariables[principalPort]", "0"},
		{"port 65536", adc(withPrincipal(map[string]string{"principalPort": "65536"})), "customizedVariables[principalPort]", "65536"},
		{"unknown mode", adc(withPrincipal(map[string]string{"agentMode": "hybrid"})), "customizedVariables[agentMode]", "hybrid"},
		{"malformed image", adc(withPrincipal(map[string]string{"agentImage": "Quay.io/Bad Image:tag"})), "customizedVariables[agentImage]", "Quay.io/Bad Image:tag"},
		{"image with bad digest", adc(withPrincipal(map[string]string{"agentImage": "quay.io/a/b@sha256:xyz"})), "customizedVariables[agentImage]", "quay.io/a/b@sha256:xyz"},
		{"unknown log level", adc(withPrincipal(map[string]string{"logLevel": "verbose"})), "customizedVariables[logLevel]", "verbose"},
		{"unknown variable", adc(withPrincipal(map[string]string{"bogus": "1"})), "customizedVariables", "bogus"},
		{"destination-based mapping not a bool", adc(withPrincipal(map[string]string{"destinationBasedMapping": "yes"})), "customizedVariables[destinationBasedMapping]", "yes"},
		{"destination-based mapping on an autonomous agent", adc(withPrincipal(map[string]string{"destinationBasedMapping": "true", "agentMode": "autonomous"})),
			"customizedVariables[destinationBasedMapping]", "true"},
		{"duplicate variable", func() *addonv1beta1.AddOnDeploymentConfig {
			a := adc(withPrincipal(nil))
			a.Spec.CustomizedVariables = append(a.Spec.CustomizedVariables, addonv1beta1.CustomizedVariable{Name: "principalAddress", Value: "b"})
			return a
		}(), "customizedVariables[principalAddress]", "b"},
		{"bad install namespace", adc(withPrincipal(nil), func(s *addonv1beta1.AddOnDeploymentConfigSpec) { s.AgentInstallNamespace = "Argo_CD" }), "agentInstallNamespace", "Argo_CD"},
		{"bad node selector value", adc(withPrincipal(nil), func(s *addonv1beta1.AddOnDeploymentConfigSpec) {
			s.NodePlacement = &addonv1beta1.NodePlacement{NodeSelector: map[string]string{"zone": "a b"}}
		}), "nodePlacement.nodeSelector[zone]", "a b"},
		{"bad toleration operator", adc(withPrincipal(nil), func(s *addonv1beta1.AddOnDeploymentConfigSpec) {
			s.NodePlacement = &addonv1beta1.NodePlacement{Tolerations: []corev1.Toleration{{Key: "k", Operator: "Maybe"}}}
		}), "nodePlacement.tolerations[0].operator", "Maybe"},
		{"bad toleration effect", adc(withPrincipal(nil), func(s *addonv1beta1.AddOnDeploymentConfigSpec) {
			s.NodePlacement = &addonv1beta1.NodePlacement{Tolerations: []corev1.Toleration{{Key: "k", Effect: "Evict"}}}
		}), "nodePlacement.tolerations[0].effect", "Evict"},
		{"registry without mirror", adc(withPrincipal(nil), func(s *addonv1beta1.AddOnDeploymentConfigSpec) {
			s.Registries = []addonv1beta1.ImageMirror{{Source: "quay.io"}}
		}), "registries[0]", "quay.io -> "},
		{"proxy without scheme", adc(withPrincipal(nil), func(s *addonv1beta1.AddOnDeploymentConfigSpec) {
			s.ProxyConfig.HTTPSProxy = "proxy:3128"
		}), "proxyConfig.httpsProxy", "proxy:3128"},
		{"proxy CA bundle", adc(withPrincipal(nil), func(s *addonv1beta1.AddOnDeploymentConfigSpec) {
			s.ProxyConfig.CABundle = []byte("x")
		}), "proxyConfig.caBundle", "<1 bytes>"},
		{"bad container ID", adc(withPrincipal(nil), func(s *addonv1beta1.AddOnDeploymentConfigSpec) {
			s.ResourceRequirements = []addonv1beta1.ContainerResourceRequirements{{ContainerID: "agent"}}
		}), "resourceRequirements[0].containerID", "agent"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := agentconfig.FromDeploymentConfig(tc.adc)
			var fe *agentconfig.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("want a FieldError, got %v", err)
			}
			if fe.Field != tc.wantField || fe.Value != tc.wantValue {
				t.Fatalf("got field %q value %q (%v), want field %q value %q", fe.Field, fe.Value, err, tc.wantField, tc.wantValue)
			}
		})
	}
}

func TestMirroredImage(t *testing.T) {
	cluster := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1", Annotations: map[string]string{
		clusterv1.ClusterImageRegistriesAnnotationKey: `{"registries":[{"source":"quay.io/argoprojlabs","mirror":"cluster.local/mirror"}]}`,
	}}}
	cfg, _ := agentconfig.FromDeploymentConfig(adc(withPrincipal(nil)))
	if got, err := cfg.MirroredImage(cluster, cfg.Image); err != nil || got != "cluster.local/mirror/argocd-agent:v0.9.0" {
		t.Fatalf("cluster annotation mirror: got %q, %v", got, err)
	}
	cfg, _ = agentconfig.FromDeploymentConfig(adc(withPrincipal(nil), func(s *addonv1beta1.AddOnDeploymentConfigSpec) {
		s.Registries = []addonv1beta1.ImageMirror{{Source: "quay.io/argoprojlabs", Mirror: "adc.local/mirror"}}
	}))
	if got, err := cfg.MirroredImage(cluster, cfg.Image); err != nil || got != "adc.local/mirror/argocd-agent:v0.9.0" {
		t.Fatalf("the ADC's registries must win over the cluster annotation: got %q, %v", got, err)
	}
	cluster.Annotations[clusterv1.ClusterImageRegistriesAnnotationKey] = "{not json"
	cfg, _ = agentconfig.FromDeploymentConfig(adc(withPrincipal(nil)))
	var fe *agentconfig.FieldError
	if _, err := cfg.MirroredImage(cluster, cfg.Image); !errors.As(err, &fe) {
		t.Fatalf("malformed cluster annotation: want a FieldError, got %v", err)
	}
}

// FuzzFromDeploymentConfig: any variable name and value either validates or yields a
// FieldError; nothing panics.
func FuzzFromDeploymentConfig(f *testing.F) {
	f.Add("principalPort", "443", "gitops")
	f.Add("agentImage", "quay.io/a/b:c", "")
	f.Add("principalAddress", "10.0.0.1", "x")
	f.Fuzz(func(t *testing.T, name, value, namespace string) {
		a := adc(withPrincipal(nil), func(s *addonv1beta1.AddOnDeploymentConfigSpec) {
			s.AgentInstallNamespace = namespace
			if name != "principalAddress" {
				s.CustomizedVariables = append(s.CustomizedVariables, addonv1beta1.CustomizedVariable{Name: name, Value: value})
			} else {
				s.CustomizedVariables[0].Value = value
			}
		})
		cfg, err := agentconfig.FromDeploymentConfig(a)
		if err != nil {
			var fe *agentconfig.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("not a FieldError: %v", err)
			}
			return
		}
		if _, err := cfg.MirroredImage(&clusterv1.ManagedCluster{}, cfg.Image); err != nil {
			t.Fatalf("valid config has no image: %v", err)
		}
	})
}

// TestPrincipal: an address in the AddOnDeploymentConfig wins; without one, discovery
// decides (an explicit port still wins); no address is a field error saying why; a read error
// stays a plain error, retried rather than reported as bad config.
func TestPrincipal(t *testing.T) {
	discovered := func(context.Context) (principal.Endpoint, error) {
		return principal.Endpoint{Host: "10.0.0.7", Port: 8443, Source: principal.SourceService, From: "Service argocd/argocd-agent-principal"}, nil
	}
	none := func(context.Context) (principal.Endpoint, error) {
		return principal.Endpoint{}, fmt.Errorf("%w: Service argocd/argocd-agent-principal not found", principal.ErrNoAddress)
	}
	broken := func(context.Context) (principal.Endpoint, error) {
		return principal.Endpoint{}, errors.New("connection refused")
	}
	tests := []struct {
		name      string
		vars      map[string]string
		discover  func(context.Context) (principal.Endpoint, error)
		want      string
		source    string
		wantField bool
		wantErr   string
	}{
		{"explicit address wins", map[string]string{"principalAddress": "p.example.com"}, discovered, "p.example.com:443", principal.SourceConfig, false, ""},
		{"explicit address and port", map[string]string{"principalAddress": "p.example.com", "principalPort": "9443"}, discovered, "p.example.com:9443", principal.SourceConfig, false, ""},
		{"discovered", nil, discovered, "10.0.0.7:8443", principal.SourceService, false, ""},
		{"discovered, explicit port wins", map[string]string{"principalPort": "9443"}, discovered, "10.0.0.7:9443", principal.SourceService, false, ""},
		{"empty address is unset", map[string]string{"principalAddress": ""}, discovered, "10.0.0.7:8443", principal.SourceService, false, ""},
		{"no discovery: required", nil, nil, "", "", true, "required"},
		{"nothing to discover", nil, none, "", "", true, "not found"},
		{"read error is not a config error", nil, broken, "", "", false, "connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var a *addonv1beta1.AddOnDeploymentConfig
			if tc.vars != nil {
				a = adc(tc.vars)
			}
			cfg, err := agentconfig.FromDeploymentConfig(a)
			if err != nil {
				t.Fatal(err)
			}
			ep, err := cfg.Principal(context.Background(), tc.discover)
			var fe *agentconfig.FieldError
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || errors.As(err, &fe) != tc.wantField {
					t.Fatalf("err = %v, want one containing %q (field error: %v)", err, tc.wantErr, tc.wantField)
				}
				if tc.wantField && fe.Field != "customizedVariables[principalAddress]" {
					t.Errorf("field %q", fe.Field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ep.Address(); got != tc.want || ep.Source != tc.source {
				t.Errorf("principal %s from %s, want %s from %s", got, ep.Source, tc.want, tc.source)
			}
			if ep.Host+":"+strconv.Itoa(ep.Port) != tc.want {
				t.Errorf("agent dials %s:%d, want %s", ep.Host, ep.Port, tc.want)
			}
		})
	}
}
