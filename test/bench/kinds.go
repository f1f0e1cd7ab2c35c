package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	addonv1alpha1 "open-cluster-management.io/api/addon/v1alpha1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/render"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/chart"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
)

// The two managers the bench compares.
const (
	kindAddon    = "addon"    // this repository's manager, installed by its chart
	kindTemplate = "template" // an AddOnTemplate run by OCM's addon-manager
)

const (
	placementName    = "argocd-agent"
	principalAddress = "principal.example.com"
	principalImage   = "quay.io/argoprojlabs/argocd-agent:v0.5.0"
	templateName     = "argocd-agent"
)

// chartValues are the chart values both kinds start from. The Placement is the bench's, made
// when the timer starts. Cluster secrets are off: the template add-on has nothing like them,
// and the bench compares the same work (-cluster-secrets turns them on).
func chartValues(clusterSecrets bool) map[string]string {
	return map[string]string{
		"placement.create":                    "false",
		"agent.principal.address":             principalAddress,
		"clusterSecrets.enabled":              fmt.Sprint(clusterSecrets),
		"clusterSecrets.resourceProxyAddress": "resource-proxy.example.com:443",
	}
}

// installAddon installs the chart as a user does (helm install), then runs the manager as its
// own process with the chart's arguments, under the chart's ServiceAccount and RBAC, and waits
// until it leads.
func (h *hub) installAddon(ctx context.Context, bin string, clusterSecrets bool, extra map[string]string) (*proc.Process, error) {
	values := chartValues(clusterSecrets)
	maps.Copy(values, extra)
	if err := chart.Install(h.helm, h.admin, addonNamespace, values); err != nil {
		return nil, err
	}
	objs, err := chart.Render(h.helm, addonNamespace, values)
	if err != nil {
		return nil, err
	}
	args, err := managerArgs(objs)
	if err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(h.dir, "manager.kubeconfig")
	if err := h.env.KubeconfigFor(managerUser, []string{"system:serviceaccounts", "system:serviceaccounts:" + addonNamespace, "system:authenticated"}, kubeconfig); err != nil {
		return nil, err
	}
	args = append(args, "--kubeconfig="+kubeconfig)
	args = append(args, pprofFlag)
	return h.startManager(ctx, bin, args)
}

// startManager starts the manager and waits until it leads.
func (h *hub) startManager(ctx context.Context, bin string, args []string) (*proc.Process, error) {
	p, err := h.spawnManager(ctx, bin, args)
	if err != nil {
		return nil, err
	}
	return p, waitLeads(ctx, p)
}

// pprofFlag asks spawnManager for a profiling endpoint on a loopback port of the replica's own.
const pprofFlag = "--pprof-bind-address="

// spawnManager starts a manager replica, leading or standing by. A --pprof-bind-address
// argument gets a free loopback port, which h.pprof names until the next replica starts.
func (h *hub) spawnManager(ctx context.Context, bin string, args []string) (*proc.Process, error) {
	args = slices.Clone(args)
	for i, a := range args {
		if strings.HasPrefix(a, pprofFlag) {
			addr, err := freeLocalAddress()
			if err != nil {
				return nil, err
			}
			args[i], h.pprof = pprofFlag+addr, addr
		}
	}
	p, err := proc.Start(ctx, "manager", h.dir, bin, args...)
	if err != nil {
		return nil, err
	}
	h.stops = append(h.stops, p.Stop)
	return p, nil
}

// managerArgs are the manager container's arguments in the chart's Deployment, with the metrics
// and health servers off: several benches may run on one machine.
func managerArgs(objs []*unstructured.Unstructured) ([]string, error) {
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		containers, _, err := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		if err != nil || len(containers) == 0 {
			return nil, fmt.Errorf("chart Deployment %s: no containers (%v)", o.GetName(), err)
		}
		raw, _, err := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
		if err != nil {
			return nil, err
		}
		var args []string
		for _, a := range raw {
			switch {
			case strings.HasPrefix(a, "--metrics-bind-address="):
				a = "--metrics-bind-address=0"
			case strings.HasPrefix(a, "--health-probe-bind-address="):
				a = "--health-probe-bind-address=0"
			}
			args = append(args, a)
		}
		return args, nil
	}
	return nil, errors.New("the chart renders no Deployment")
}

// installTemplate installs what a user of an AddOnTemplate-based argocd-agent add-on (as
// addon-contrib's) creates: the AddOnTemplate carrying the same agent manifests our manager
// delivers, with a CustomSigner registration signed by the same CA, the chart's
// AddOnDeploymentConfig, and a ClusterManagementAddOn pointing at both. OCM's addon-manager does
// the rest; note that OCM's template approver approves every CSR of the signer.
func (h *hub) installTemplate(ctx context.Context) error {
	objs, err := chart.Render(h.helm, addonNamespace, chartValues(false))
	if err != nil {
		return err
	}
	var adc *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "AddOnDeploymentConfig" {
			adc = o
		}
	}
	if adc == nil {
		return errors.New("the chart renders no AddOnDeploymentConfig")
	}
	if err := h.c.Create(ctx, adc.DeepCopy()); err != nil {
		return err
	}
	manifests, err := templateManifests(h.dir, adc, h.caCert)
	if err != nil {
		return err
	}
	tmpl := &addonv1alpha1.AddOnTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: templateName},
		Spec: addonv1alpha1.AddOnTemplateSpec{
			AddonName: identity.AddonName,
			AgentSpec: workManifests(manifests),
			Registration: []addonv1alpha1.RegistrationSpec{{
				Type: addonv1alpha1.RegistrationTypeCustomSigner,
				CustomSigner: &addonv1alpha1.CustomSignerRegistrationConfig{
					SignerName: identity.SignerName,
					SigningCA:  addonv1alpha1.SigningCARef{Namespace: argocdNamespace, Name: caSecretName},
				},
			}},
		},
	}
	if err := h.c.Create(ctx, tmpl); err != nil {
		return fmt.Errorf("AddOnTemplate: %w", err)
	}
	return h.c.Create(ctx, &addonv1alpha1.ClusterManagementAddOn{
		ObjectMeta: metav1.ObjectMeta{Name: identity.AddonName,
			Annotations: map[string]string{addonv1alpha1.AddonLifecycleAnnotationKey: addonv1alpha1.AddonLifecycleAddonManagerAnnotationValue}},
		Spec: addonv1alpha1.ClusterManagementAddOnSpec{
			//lint:ignore SA1019 the v1alpha1 form is what the AddOnTemplate add-ons users run today declare (addon-contrib's argocd-agent add-on).
			SupportedConfigs: []addonv1alpha1.ConfigMeta{
				{ConfigGroupResource: addonv1alpha1.ConfigGroupResource{Group: addonv1alpha1.GroupName, Resource: "addontemplates"},
					DefaultConfig: &addonv1alpha1.ConfigReferent{Name: templateName}},
				{ConfigGroupResource: addonv1alpha1.ConfigGroupResource{Group: addonv1alpha1.GroupName, Resource: "addondeploymentconfigs"},
					DefaultConfig: &addonv1alpha1.ConfigReferent{Namespace: adc.GetNamespace(), Name: adc.GetName()}},
			},
			InstallStrategy: addonv1alpha1.InstallStrategy{
				Type: addonv1alpha1.AddonInstallStrategyPlacements,
				Placements: []addonv1alpha1.PlacementStrategy{{
					PlacementRef: addonv1alpha1.PlacementRef{Namespace: addonNamespace, Name: placementName},
				}},
			},
		},
	})
}

// clusterPlaceholder stands for the cluster name in the rendered manifests; the AddOnTemplate
// carries OCM's {{CLUSTER_NAME}} there instead.
const clusterPlaceholder = "benchclusterplaceholder"

// templateManifests renders, with `argocd-agent-addon render`'s code, what our manager delivers
// to a cluster given adc (and the principal's image, which our manager reads from the principal's
// Deployment), with the cluster's name as OCM's template variable.
func templateManifests(dir string, adc *unstructured.Unstructured, caCert []byte) ([]*unstructured.Unstructured, error) {
	cfg := adc.DeepCopy()
	vars, _, _ := unstructured.NestedSlice(cfg.Object, "spec", "customizedVariables")
	vars = append(vars, map[string]any{"name": "agentImage", "value": principalImage})
	if err := unstructured.SetNestedSlice(cfg.Object, vars, "spec", "customizedVariables"); err != nil {
		return nil, err
	}
	cfg.SetAPIVersion("addon.open-cluster-management.io/v1beta1")
	cfg.SetLabels(nil)
	cfgYAML, err := yaml.Marshal(cfg.Object)
	if err != nil {
		return nil, err
	}
	cfgFile, caFile := filepath.Join(dir, "template-adc.yaml"), filepath.Join(dir, "template-ca.crt")
	if err := os.WriteFile(cfgFile, cfgYAML, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(caFile, caCert, 0o600); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	o := render.Options{Cluster: clusterPlaceholder, ConfigFiles: []string{cfgFile}, CAFile: caFile, CertificateSubject: string(identity.SubjectClusterName)}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := o.Run(context.Background(), &out); err != nil {
		return nil, fmt.Errorf("rendering the agent's manifests: %w", err)
	}
	stream := strings.ReplaceAll(out.String(), clusterPlaceholder, "{{CLUSTER_NAME}}")
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(stream), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if err.Error() == "EOF" {
				break
			}
			return nil, err
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	if len(objs) == 0 {
		return nil, errors.New("render printed no objects")
	}
	return objs, nil
}

func workManifests(objs []*unstructured.Unstructured) workv1.ManifestWorkSpec {
	spec := workv1.ManifestWorkSpec{}
	for _, o := range objs {
		spec.Workload.Manifests = append(spec.Workload.Manifests, workv1.Manifest{RawExtension: runtime.RawExtension{Object: o}})
	}
	return spec
}

// createPlacement binds the global cluster set to the add-on namespace and creates the
// Placement selecting the labelled clusters, as the chart does with placement.create. It
// tolerates the taints OCM puts on clusters that never report a lease: no klusterlet runs.
func (h *hub) createPlacement(ctx context.Context) error {
	if err := h.c.Create(ctx, &clusterv1beta2.ManagedClusterSetBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: addonNamespace, Name: "global"},
		Spec:       clusterv1beta2.ManagedClusterSetBindingSpec{ClusterSet: "global"},
	}); err != nil {
		return err
	}
	return h.c.Create(ctx, &clusterv1beta1.Placement{
		ObjectMeta: metav1.ObjectMeta{Namespace: addonNamespace, Name: placementName},
		Spec: clusterv1beta1.PlacementSpec{
			ClusterSets: []string{"global"},
			Predicates: []clusterv1beta1.ClusterPredicate{{RequiredClusterSelector: clusterv1beta1.ClusterSelector{
				LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{clusterLabel: "enabled"}},
			}}},
			Tolerations: []clusterv1beta1.Toleration{
				{Key: "cluster.open-cluster-management.io/unreachable", Operator: clusterv1beta1.TolerationOpExists},
				{Key: "cluster.open-cluster-management.io/unavailable", Operator: clusterv1beta1.TolerationOpExists},
			},
		},
	})
}
