// Package agentconfig turns an AddOnDeploymentConfig into the validated settings of one
// cluster's Argo CD agent: parsed input, which pkg/plan resolves into what is rendered.
//
// Validation is strict: an unknown variable, a malformed value or an unsupported option is an
// error that names the field and the value, so a bad config never ships a broken agent.
package agentconfig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/distribution/reference"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"open-cluster-management.io/addon-framework/pkg/addonfactory"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
)

// Names of the AddOnDeploymentConfig customizedVariables the add-on reads.
const (
	VarPrincipalAddress = "principalAddress"
	VarPrincipalPort    = "principalPort"
	VarAgentMode        = "agentMode"
	VarAgentImage       = "agentImage"
	VarLogLevel         = "logLevel"
	// VarDestinationBasedMapping ("true" or "false", default false) has a managed agent take
	// Applications by their destination name rather than their namespace on the hub
	// (argocd-agent's destination-based mapping, which the principal must use too, hub-wide):
	// what ApplicationSets need, which put every Application in their own namespace.
	VarDestinationBasedMapping = "destinationBasedMapping"
)

// Variables lists every customized variable the add-on accepts.
var Variables = []string{VarPrincipalAddress, VarPrincipalPort, VarAgentMode, VarAgentImage, VarLogLevel, VarDestinationBasedMapping}

// Agent modes, as argocd-agent names them.
const (
	ModeManaged    = "managed"
	ModeAutonomous = "autonomous"
)

// LogLevels are the levels argocd-agent accepts.
var LogLevels = []string{"trace", "debug", "info", "warn", "error"}

// Defaults used when no AddOnDeploymentConfig sets a value.
const (
	DefaultImage         = "quay.io/argoprojlabs/argocd-agent:v0.9.0"
	DefaultPrincipalPort = 443
	DefaultMode          = ModeManaged
	DefaultLogLevel      = "info"
)

// resourceContainerID is how addon-framework's resourceRequirements name the agent container:
// "<resource>:<name>:<container>".
var resourceContainerID = "deployments:" + identity.AgentName + ":" + identity.AgentName

// Config is the validated configuration of one cluster's agent, as its AddOnDeploymentConfig
// says it: parsed input, which pkg/plan resolves (principal, image) and never changes.
type Config struct {
	Namespace string
	// PrincipalAddress and PrincipalPort are what the AddOnDeploymentConfig says about where
	// the agent dials (Principal resolves the endpoint). PrincipalPortSet says it gave the port.
	PrincipalAddress string
	PrincipalPort    int
	PrincipalPortSet bool
	Mode             string
	// Image is the default image, or the one the AddOnDeploymentConfig pins (agentImage);
	// ImageSet says which. Unpinned, the manager gives the principal's (pkg/plan).
	Image    string
	ImageSet bool
	LogLevel string
	// DestinationBasedMapping is VarDestinationBasedMapping.
	DestinationBasedMapping bool
	NodeSelector            map[string]string
	Tolerations             []corev1.Toleration
	Registries              []addonv1beta1.ImageMirror
	Proxy                   addonv1beta1.ProxyConfig
	Resources               corev1.ResourceRequirements
}

// Default returns the configuration used where no AddOnDeploymentConfig applies. The principal
// address has no default: Principal discovers it or says it is required.
func Default() Config {
	return Config{
		Namespace:     identity.DefaultInstallNamespace,
		PrincipalPort: DefaultPrincipalPort,
		Mode:          DefaultMode,
		Image:         DefaultImage,
		LogLevel:      DefaultLogLevel,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("100m"),
				corev1.ResourceMemory: resource.MustParse("128Mi"),
			},
		},
	}
}

// FieldError is a configuration value the add-on refuses. Field is the path in the
// AddOnDeploymentConfig spec, e.g. `customizedVariables[principalPort]`.
type FieldError struct {
	// Config names the config the field is in ("AgentCustomization ns/name"); empty means the
	// AddOnDeploymentConfig.
	Config string
	Field  string
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	config := e.Config
	if config == "" {
		config = "AddOnDeploymentConfig"
	}
	return fmt.Sprintf("invalid %s field %s=%q: %s", config, e.Field, e.Value, e.Reason)
}

func fieldErr(field, value, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// FromDeploymentConfig applies adc (nil means none) on top of the defaults and validates the
// result. The returned error, if any, is a *FieldError.
func FromDeploymentConfig(adc *addonv1beta1.AddOnDeploymentConfig) (Config, error) {
	cfg := Default()
	if adc != nil {
		if err := cfg.apply(&adc.Spec); err != nil {
			return Config{}, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func (c *Config) apply(spec *addonv1beta1.AddOnDeploymentConfigSpec) error {
	seen := map[string]bool{}
	for _, v := range spec.CustomizedVariables {
		field := "customizedVariables[" + v.Name + "]"
		if seen[v.Name] {
			return fieldErr(field, v.Value, "variable set more than once")
		}
		seen[v.Name] = true
		switch v.Name {
		case VarPrincipalAddress:
			c.PrincipalAddress = v.Value
		case VarPrincipalPort:
			port, err := strconv.Atoi(v.Value)
			if err != nil {
				return fieldErr(field, v.Value, "not an integer port number")
			}
			c.PrincipalPort, c.PrincipalPortSet = port, true
		case VarAgentMode:
			c.Mode = v.Value
		case VarAgentImage:
			c.Image, c.ImageSet = v.Value, true
		case VarLogLevel:
			c.LogLevel = v.Value
		case VarDestinationBasedMapping:
			switch v.Value {
			case "true", "false":
				c.DestinationBasedMapping = v.Value == "true"
			default:
				return fieldErr(field, v.Value, `want "true" or "false"`)
			}
		default:
			return fieldErr("customizedVariables", v.Name, "unknown variable (known: %s)", strings.Join(Variables, ", "))
		}
	}
	// The AddOnDeploymentConfig CRD defaults agentInstallNamespace to addon-framework's
	// namespace, so every ADC carries it; only another value is the user's choice. The agent
	// belongs next to Argo CD.
	if ns := spec.AgentInstallNamespace; ns != "" && ns != addonfactory.AddonDefaultInstallNamespace {
		c.Namespace = ns
	}
	if spec.NodePlacement != nil {
		c.NodeSelector = spec.NodePlacement.NodeSelector
		c.Tolerations = spec.NodePlacement.Tolerations
	}
	c.Registries = spec.Registries
	c.Proxy = spec.ProxyConfig
	if len(spec.ResourceRequirements) > 0 {
		resources, err := agentResources(spec.ResourceRequirements)
		if err != nil {
			return err
		}
		if resources != nil {
			c.Resources = *resources
		}
	}
	return nil
}

// agentResources returns the requirements of the last entry whose containerID matches the agent
// container, as addon-framework's rule is: later entries win.
func agentResources(reqs []addonv1beta1.ContainerResourceRequirements) (*corev1.ResourceRequirements, error) {
	var found *corev1.ResourceRequirements
	for i, r := range reqs {
		field := fmt.Sprintf("resourceRequirements[%d].containerID", i)
		parts := strings.Split(r.ContainerID, ":")
		if len(parts) != 3 {
			return nil, fieldErr(field, r.ContainerID, "want <resource>:<name>:<container>, each part a name or *")
		}
		rx, err := addonfactory.GetRegexResourceRequirements([]addonv1beta1.ContainerResourceRequirements{r})
		if err != nil || len(rx) != 1 {
			return nil, fieldErr(field, r.ContainerID, "not a valid container ID pattern: %v", err)
		}
		re, err := regexp.Compile(rx[0].ContainerIDRegex)
		if err != nil {
			return nil, fieldErr(field, r.ContainerID, "not a valid container ID pattern: %v", err)
		}
		if re.MatchString(resourceContainerID) {
			found = r.Resources.DeepCopy()
		}
	}
	return found, nil
}

// Validate checks every setting and returns a *FieldError for the first bad one.
func (c *Config) Validate() error {
	if errs := validation.IsDNS1123Label(c.Namespace); len(errs) > 0 {
		return fieldErr("agentInstallNamespace", c.Namespace, "not a valid namespace name: %s", strings.Join(errs, "; "))
	}
	if c.PrincipalAddress != "" {
		if err := validatePrincipalAddress(c.PrincipalAddress); err != nil {
			return err
		}
	}
	if c.PrincipalPort < 1 || c.PrincipalPort > 65535 {
		return fieldErr("customizedVariables["+VarPrincipalPort+"]", strconv.Itoa(c.PrincipalPort), "port out of range 1-65535")
	}
	if c.Mode != ModeManaged && c.Mode != ModeAutonomous {
		return fieldErr("customizedVariables["+VarAgentMode+"]", c.Mode, "unknown agent mode (want %q or %q)", ModeManaged, ModeAutonomous)
	}
	if c.DestinationBasedMapping && c.Mode != ModeManaged {
		return fieldErr("customizedVariables["+VarDestinationBasedMapping+"]", "true",
			"destination-based mapping is for managed agents; an autonomous agent owns its Applications")
	}
	if err := validateImage("customizedVariables["+VarAgentImage+"]", c.Image); err != nil {
		return err
	}
	if !slices.Contains(LogLevels, c.LogLevel) {
		return fieldErr("customizedVariables["+VarLogLevel+"]", c.LogLevel, "unknown log level (want one of %s)", strings.Join(LogLevels, ", "))
	}
	for k, v := range c.NodeSelector {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fieldErr("nodePlacement.nodeSelector", k, "not a valid label key: %s", strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return fieldErr("nodePlacement.nodeSelector["+k+"]", v, "not a valid label value: %s", strings.Join(errs, "; "))
		}
	}
	for i, t := range c.Tolerations {
		if err := validateToleration(fmt.Sprintf("nodePlacement.tolerations[%d]", i), t); err != nil {
			return err
		}
	}
	for i, r := range c.Registries {
		if r.Source == "" || r.Mirror == "" {
			return fieldErr(fmt.Sprintf("registries[%d]", i), r.Source+" -> "+r.Mirror, "source and mirror are both required")
		}
	}
	return c.validateProxy()
}

// Principal decides where the agent dials: the AddOnDeploymentConfig's principalAddress if
// set; else what discover finds (nil: no discovery, as in the render command), an explicit
// principalPort still winning over the discovered port. When there is no address, the error is
// a *FieldError on principalAddress saying why; a failure to read is returned as it is (retried).
func (c Config) Principal(ctx context.Context, discover func(context.Context) (principal.Endpoint, error)) (principal.Endpoint, error) {
	field := "customizedVariables[" + VarPrincipalAddress + "]"
	if c.PrincipalAddress != "" {
		return principal.Endpoint{Host: c.PrincipalAddress, Port: c.PrincipalPort,
			Source: principal.SourceConfig, From: "AddOnDeploymentConfig " + field}, nil
	}
	if discover == nil {
		return principal.Endpoint{}, fieldErr(field, "", "required: the address agents dial to reach the Argo CD agent principal")
	}
	ep, err := discover(ctx)
	if errors.Is(err, principal.ErrNoAddress) {
		return principal.Endpoint{}, fieldErr(field, "", "not set, and %v: set it, or give the principal's Service a load balancer address", err)
	}
	if err != nil {
		return principal.Endpoint{}, err
	}
	if c.PrincipalPortSet {
		ep.Port = c.PrincipalPort
		ep.From += ", port from AddOnDeploymentConfig customizedVariables[" + VarPrincipalPort + "]"
	}
	if err := validatePrincipalAddress(ep.Host); err != nil {
		return principal.Endpoint{}, err
	}
	return ep, nil
}

func validatePrincipalAddress(addr string) error {
	field := "customizedVariables[" + VarPrincipalAddress + "]"
	if net.ParseIP(addr) != nil {
		return nil
	}
	if errs := validation.IsDNS1123Subdomain(addr); len(errs) > 0 {
		return fieldErr(field, addr, "not a DNS name or IP address (give the port in %s, no scheme): %s", VarPrincipalPort, strings.Join(errs, "; "))
	}
	return nil
}

func validateImage(field, image string) error {
	if _, err := reference.ParseNormalizedNamed(image); err != nil {
		return fieldErr(field, image, "not a valid image reference: %v", err)
	}
	return nil
}

func validateToleration(field string, t corev1.Toleration) error {
	switch t.Operator {
	case "", corev1.TolerationOpEqual:
	case corev1.TolerationOpExists:
		if t.Value != "" {
			return fieldErr(field+".value", t.Value, "must be empty when operator is Exists")
		}
	default:
		return fieldErr(field+".operator", string(t.Operator), "want Equal or Exists")
	}
	switch t.Effect {
	case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
	default:
		return fieldErr(field+".effect", string(t.Effect), "want NoSchedule, PreferNoSchedule or NoExecute")
	}
	if t.Key != "" {
		if errs := validation.IsQualifiedName(t.Key); len(errs) > 0 {
			return fieldErr(field+".key", t.Key, "not a valid taint key: %s", strings.Join(errs, "; "))
		}
	}
	return nil
}

func (c *Config) validateProxy() error {
	for _, p := range []struct{ field, value string }{
		{"proxyConfig.httpProxy", c.Proxy.HTTPProxy},
		{"proxyConfig.httpsProxy", c.Proxy.HTTPSProxy},
	} {
		if p.value == "" {
			continue
		}
		u, err := url.Parse(p.value)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fieldErr(p.field, p.value, "want an http:// or https:// proxy URL")
		}
	}
	if len(c.Proxy.CABundle) > 0 {
		// The agent's mTLS connection must reach the principal intact (tunnelled with CONNECT);
		// a proxy that terminates TLS would break client-certificate authentication.
		return fieldErr("proxyConfig.caBundle", fmt.Sprintf("<%d bytes>", len(c.Proxy.CABundle)),
			"not supported: the agent's mTLS connection is tunnelled through the proxy, never terminated by it")
	}
	return nil
}
