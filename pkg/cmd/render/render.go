// Package render is the `argocd-agent-addon render` command: it prints, with no API server,
// the objects the manager would deliver to one cluster, through the same add-on code.
package render

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/addon"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/customization"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// Options are the render settings.
type Options struct {
	Cluster string
	// ConfigFiles are an AddOnDeploymentConfig and an AgentCustomization, each at most once.
	ConfigFiles        []string
	CAFile             string
	CertificateSubject string
}

// NewCommand returns the render command.
func NewCommand() *cobra.Command {
	o := &Options{CertificateSubject: string(identity.SubjectClusterName)}
	cmd := &cobra.Command{
		Use:   "render --cluster NAME [--config ADC.yaml] [--config CUSTOMIZATION.yaml] [--ca CA.crt]",
		Short: "Print the manifests the manager would deliver to a cluster",
		Long: `Render prints, without any API server, the objects the manager delivers to the named cluster,
given the AddOnDeploymentConfig and the AgentCustomization that apply to it. Use it to review a
configuration or to diff it in GitOps; a customisation the manager would refuse is refused here
with the same field and reason. Without --ca the argocd-agent-ca Secret is left out.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Cluster, "cluster", o.Cluster, "Name of the managed cluster (required).")
	fs.StringArrayVar(&o.ConfigFiles, "config", o.ConfigFiles, "AddOnDeploymentConfig or AgentCustomization YAML that applies to the cluster; give it twice for both. None means the defaults.")
	fs.StringVar(&o.CAFile, "ca", o.CAFile, "PEM CA certificate(s) the agent trusts (certificates only, never the key).")
	fs.StringVar(&o.CertificateSubject, "certificate-subject", o.CertificateSubject, "Agent certificate subject style, as the manager's flag.")
}

// Validate checks the options.
func (o *Options) Validate() error {
	if o.Cluster == "" {
		return errors.New("--cluster is required")
	}
	if errs := validation.IsDNS1123Label(o.Cluster); len(errs) > 0 {
		return fmt.Errorf("--cluster %q: %v", o.Cluster, errs)
	}
	_, err := identity.ParseSubjectStyle(o.CertificateSubject)
	return err
}

// Run writes the rendered objects to out as a YAML stream.
func (o *Options) Run(ctx context.Context, out io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	getter := &fileConfigGetter{}
	// As OCM's addon-manager leaves it once it has resolved the configs: the manager renders
	// nothing before.
	mca := &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Name: identity.AddonName, Namespace: o.Cluster},
		Status: addonv1beta1.ManagedClusterAddOnStatus{Conditions: []metav1.Condition{{
			Type: addonv1beta1.ManagedClusterAddOnConditionConfigured, Status: metav1.ConditionTrue, Reason: "ConfigurationsConfigured"}}}}
	var custom *customization.Customization
	for _, path := range o.ConfigFiles {
		adc, c, err := readConfig(path)
		if err != nil {
			return err
		}
		ref := addonv1beta1.ConfigReference{DesiredConfig: &addonv1beta1.ConfigSpecHash{SpecHash: fromFileHash}}
		switch {
		case adc != nil && getter.adc == nil:
			getter.adc = adc
			ref.ConfigGroupResource = addonv1beta1.ConfigGroupResource{Group: utils.AddOnDeploymentConfigGVR.Group, Resource: utils.AddOnDeploymentConfigGVR.Resource}
			ref.DesiredConfig.ConfigReferent = addonv1beta1.ConfigReferent{Namespace: adc.Namespace, Name: adc.Name}
		case c != nil && custom == nil:
			custom = c
			ref.ConfigGroupResource = addonv1beta1.ConfigGroupResource{Group: customization.Group, Resource: customization.Resource}
			// fileCustomization serves it whatever its name; the reference needs one.
			ref.DesiredConfig.ConfigReferent = addonv1beta1.ConfigReferent{Name: "from-file"}
		default:
			return fmt.Errorf("--config %s: a second config of its kind; a cluster has one of each", path)
		}
		// Point the add-on at the config the way OCM's addon-manager does.
		mca.Status.ConfigReferences = append(mca.Status.ConfigReferences, ref)
	}
	var bundle []byte
	if o.CAFile != "" {
		var err error
		if bundle, err = readCABundle(o.CAFile); err != nil {
			return err
		}
	}
	a, err := addon.New(addon.Options{
		ConfigGetter:   getter,
		Customizations: fileCustomization{custom},
		CA:             fileCA(bundle),
		Subject:        identity.SubjectStyle(o.CertificateSubject),
	})
	if err != nil {
		return err
	}
	cluster := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: o.Cluster}}
	objects, err := a.Manifests(ctx, cluster, mca)
	if err != nil {
		return err
	}
	return writeYAML(out, objects)
}

// fileCA is the --ca bundle. Only the bundle shows in the manifests; the CA's ID goes into the
// registration, which render does not print.
type fileCA []byte

func (f fileCA) Bundle(context.Context) ([]byte, error) { return f, nil }
func (f fileCA) ID(context.Context) (string, error)     { return "", nil }

func writeYAML(out io.Writer, objects []runtime.Object) error {
	for i, obj := range objects {
		b, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		if i > 0 {
			if _, err := io.WriteString(out, "---\n"); err != nil {
				return err
			}
		}
		if _, err := out.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// readConfig reads an AddOnDeploymentConfig or an AgentCustomization: one of the two is set.
func readConfig(path string) (*addonv1beta1.AddOnDeploymentConfig, *customization.Customization, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var head metav1.TypeMeta
	if err := yaml.Unmarshal(data, &head); err != nil {
		return nil, nil, fmt.Errorf("--config %s: %w", path, err)
	}
	switch head.Kind {
	case "AddOnDeploymentConfig":
		adc := &addonv1beta1.AddOnDeploymentConfig{}
		if err := yaml.UnmarshalStrict(data, adc); err != nil {
			return nil, nil, fmt.Errorf("--config %s: %w", path, err)
		}
		return adc, nil, nil
	case customization.Kind:
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &u.Object); err != nil {
			return nil, nil, fmt.Errorf("--config %s: %w", path, err)
		}
		c, err := customization.FromUnstructured(u)
		if err != nil {
			return nil, nil, fmt.Errorf("--config %s: %w", path, err)
		}
		return nil, c, nil
	}
	return nil, nil, fmt.Errorf("--config %s: kind %q, want AddOnDeploymentConfig or %s", path, head.Kind, customization.Kind)
}

// fileCustomization serves the AgentCustomization read from --config, if any.
type fileCustomization struct{ c *customization.Customization }

func (f fileCustomization) GetWithSpecHash(context.Context, string, string) (*customization.Customization, string, error) {
	return f.c, fromFileHash, nil
}

// fromFileHash is the spec hash of a config read from a file, which the add-on's status names as
// desired: a render from files is never held by a rollout.
const fromFileHash = "rendered-from-file"

// readCABundle returns the certificates of path re-encoded, and refuses a file with a key in it.
func readCABundle(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var bundle bytes.Buffer
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("--ca %s: holds a %q block; give the CA certificate only, never its key", path, block.Type)
		}
		if err := pem.Encode(&bundle, block); err != nil {
			return nil, err
		}
	}
	if bundle.Len() == 0 {
		return nil, fmt.Errorf("--ca %s: no PEM CERTIFICATE found", path)
	}
	return bundle.Bytes(), nil
}

// fileConfigGetter serves the one AddOnDeploymentConfig read from --config.
type fileConfigGetter struct {
	adc *addonv1beta1.AddOnDeploymentConfig
}

func (g *fileConfigGetter) GetWithSpecHash(_ context.Context, namespace, name string) (*addonv1beta1.AddOnDeploymentConfig, string, error) {
	if g.adc == nil || g.adc.Namespace != namespace || g.adc.Name != name {
		return nil, "", fmt.Errorf("AddOnDeploymentConfig %s/%s not given", namespace, name)
	}
	return g.adc, fromFileHash, nil
}
