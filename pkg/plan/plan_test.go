package plan

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentversion"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/customization"
)

// source serves objects by name with a fixed hash, and counts reads.
type source[T any] struct {
	objects map[string]T
	hash    string
	reads   *int
}

func (s source[T]) GetWithSpecHash(_ context.Context, _, name string) (T, string, error) {
	*s.reads++
	obj, ok := s.objects[name]
	if !ok {
		var zero T
		return zero, "", fmt.Errorf("%s not found", name)
	}
	return obj, s.hash, nil
}

type bundle string

func (b bundle) Bundle(context.Context) ([]byte, error) { return []byte(b), nil }

func ref(gr configType, name, hash string) addonv1beta1.ConfigReference {
	r := addonv1beta1.ConfigReference{ConfigGroupResource: addonv1beta1.ConfigGroupResource{Group: gr.Group, Resource: gr.Resource}}
	r.DesiredConfig = &addonv1beta1.ConfigSpecHash{ConfigReferent: addonv1beta1.ConfigReferent{Namespace: "ns", Name: name}, SpecHash: hash}
	return r
}

func mca(refs ...addonv1beta1.ConfigReference) *addonv1beta1.ManagedClusterAddOn {
	return &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: "c1", Name: "argocd-agent"},
		Status: addonv1beta1.ManagedClusterAddOnStatus{ConfigReferences: refs,
			Conditions: []metav1.Condition{{Type: addonv1beta1.ManagedClusterAddOnConditionConfigured, Status: metav1.ConditionTrue, Reason: "Configured"}}}}
}

// Each config is read once per render, however many of its references the status names.
func TestEachConfigReadOnce(t *testing.T) {
	var adcReads, avReads, custReads int
	adc := &addonv1beta1.AddOnDeploymentConfig{Spec: addonv1beta1.AddOnDeploymentConfigSpec{
		CustomizedVariables: []addonv1beta1.CustomizedVariable{{Name: agentconfig.VarPrincipalAddress, Value: "p.example.com"}}}}
	r := &Resolver{
		DeploymentConfigs: source[*addonv1beta1.AddOnDeploymentConfig]{objects: map[string]*addonv1beta1.AddOnDeploymentConfig{"cfg": adc}, hash: "h", reads: &adcReads},
		AgentVersions:     source[agentversion.Config]{objects: map[string]agentversion.Config{"v": {Image: "quay.io/argoprojlabs/argocd-agent:v0.9.5"}}, hash: "h", reads: &avReads},
		Customizations:    source[*customization.Customization]{objects: map[string]*customization.Customization{"c": {Name: "ns/c"}}, hash: "h", reads: &custReads},
		CA:                bundle("ca"),
	}
	p, err := r.Resolve(context.Background(), &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}},
		mca(ref(deploymentConfigType, "cfg", "h"), ref(agentVersionType, "v", "h"), ref(customizationType, "c", "h")))
	if err != nil {
		t.Fatal(err)
	}
	if adcReads != 1 || avReads != 1 || custReads != 1 {
		t.Errorf("reads: AddOnDeploymentConfig %d, AgentVersion %d, AgentCustomization %d; want 1 each", adcReads, avReads, custReads)
	}
	if p.Image != "quay.io/argoprojlabs/argocd-agent:v0.9.5" || p.Principal.Host != "p.example.com" || p.Customization == nil || string(p.CABundle) != "ca" {
		t.Errorf("plan %+v", p)
	}
}

func TestReferences(t *testing.T) {
	adc := &addonv1beta1.AddOnDeploymentConfig{Spec: addonv1beta1.AddOnDeploymentConfigSpec{
		CustomizedVariables: []addonv1beta1.CustomizedVariable{{Name: agentconfig.VarPrincipalAddress, Value: "p.example.com"}}}}
	var reads int
	r := &Resolver{
		DeploymentConfigs: source[*addonv1beta1.AddOnDeploymentConfig]{objects: map[string]*addonv1beta1.AddOnDeploymentConfig{"cfg": adc, "": adc}, hash: "h", reads: &reads},
		AgentVersions:     source[agentversion.Config]{objects: map[string]agentversion.Config{"v": {Image: "quay.io/argoprojlabs/argocd-agent:v0.9.5"}}, hash: "h", reads: &reads},
		Customizations:    source[*customization.Customization]{objects: map[string]*customization.Customization{}, hash: "h", reads: &reads},
		CA:                bundle("ca"),
	}
	cluster := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}}
	for _, tc := range []struct {
		name      string
		refs      []addonv1beta1.ConfigReference
		wantImage string
		wantErr   string
		pending   bool
	}{
		{"an AgentVersion named without a hash is read as it is", []addonv1beta1.ConfigReference{ref(deploymentConfigType, "cfg", "h"), ref(agentVersionType, "v", "")},
			"quay.io/argoprojlabs/argocd-agent:v0.9.5", "", false},
		{"a missing AgentCustomization named without a hash holds the render", []addonv1beta1.ConfigReference{ref(deploymentConfigType, "cfg", "h"), ref(customizationType, "gone", "")},
			"", "reading agentcustomizations ns/gone: gone not found", false},
		{"an AddOnDeploymentConfig without a name is still read", []addonv1beta1.ConfigReference{ref(deploymentConfigType, "", "h")},
			agentconfig.DefaultImage, "", false},
		{"an AddOnDeploymentConfig without a hash is an error", []addonv1beta1.ConfigReference{ref(deploymentConfigType, "cfg", "")},
			"", "desired spec hash of its addondeploymentconfigs is empty", false},
		{"a second reference of a type is gated too", []addonv1beta1.ConfigReference{ref(deploymentConfigType, "cfg", "h"), ref(agentVersionType, "v", "h"), ref(agentVersionType, "v", "older")},
			"", "rollout pending", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := r.Resolve(context.Background(), cluster, mca(tc.refs...))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || errors.Is(err, ErrRolloutPending) != tc.pending {
					t.Fatalf("err %v, want one containing %q (rollout pending: %v)", err, tc.wantErr, tc.pending)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Image != tc.wantImage {
				t.Errorf("image %q, want %q", p.Image, tc.wantImage)
			}
		})
	}
}

// A missing principal address is reported before a bad image mirror annotation, as the
// PrincipalAddress condition needs.
func TestPrincipalBeforeMirrors(t *testing.T) {
	var reads int
	r := &Resolver{DeploymentConfigs: source[*addonv1beta1.AddOnDeploymentConfig]{reads: &reads}, CA: bundle("ca")}
	cluster := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1", Annotations: map[string]string{
		clusterv1.ClusterImageRegistriesAnnotationKey: "{not json"}}}
	_, err := r.Resolve(context.Background(), cluster, mca())
	var fe *agentconfig.FieldError
	if !errors.As(err, &fe) || fe.Field != "customizedVariables["+agentconfig.VarPrincipalAddress+"]" {
		t.Fatalf("err %v, want the principal address field", err)
	}
}
