package addon_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/addon"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentversion"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/plan"
)

// agentVersionReader serves one AgentVersion, as the manager's cache does.
type agentVersionReader struct {
	client.Reader
	image string
}

func (r agentVersionReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || key.Name != agentversion.DefaultName {
		return errors.New("not served")
	}
	u.SetNamespace(key.Namespace)
	u.SetName(key.Name)
	return unstructured.SetNestedField(u.Object, r.image, "spec", "image")
}

// Unpinned agents run the image of the AgentVersion OCM resolved for their cluster, once the
// rollout has reached it; a pin wins; either way AgentVersion says how it compares with what
// the principal runs now.
func TestAgentFollowsThePrincipal(t *testing.T) {
	const principalImage = "quay.io/argoprojlabs/argocd-agent:v0.9.1"
	reader := agentVersionReader{image: principalImage}
	versions := &agentversion.Getter{Reader: reader}
	_, hash, err := versions.GetWithSpecHash(context.Background(), "ns", agentversion.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	cluster := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}}
	mca := func(adc *addonv1beta1.AddOnDeploymentConfig, versionHash string) *addonv1beta1.ManagedClusterAddOn {
		m := mcaFor(adc)
		m.Status.ConfigReferences = append(m.Status.ConfigReferences, addonv1beta1.ConfigReference{
			ConfigGroupResource: addonv1beta1.ConfigGroupResource{Group: agentversion.Group, Resource: agentversion.Resource},
			DesiredConfig: &addonv1beta1.ConfigSpecHash{
				ConfigReferent: addonv1beta1.ConfigReferent{Namespace: "ns", Name: agentversion.DefaultName}, SpecHash: versionHash,
			},
		})
		return m
	}
	for name, tc := range map[string]struct {
		pin, versionHash string
		wantImage        string
		wantStatus       metav1.ConditionStatus
		wantMessage      string
		pending          bool
		noReference      bool
	}{
		// Not the default image, which is another version: the principal's as it is now.
		"no AgentVersion resolved yet": {noReference: true, wantImage: principalImage, wantStatus: metav1.ConditionTrue},
		"follows":                      {versionHash: hash, wantImage: principalImage, wantStatus: metav1.ConditionTrue},
		"pinned to another version":    {pin: "quay.io/argoprojlabs/argocd-agent:v0.9.0", versionHash: hash, wantImage: "quay.io/argoprojlabs/argocd-agent:v0.9.0", wantStatus: metav1.ConditionFalse, wantMessage: "customizedVariables[agentImage]"},
		"pinned to the same":           {pin: "mirror.example.com/argocd-agent:v0.9.1", versionHash: hash, wantImage: "mirror.example.com/argocd-agent:v0.9.1", wantStatus: metav1.ConditionTrue},
		"rollout not there yet":        {versionHash: "older", pending: true},
	} {
		t.Run(name, func(t *testing.T) {
			vars := map[string]string{"principalAddress": "principal.example.com"}
			if tc.pin != "" {
				vars["agentImage"] = tc.pin
			}
			adc := newADC(vars, nil)
			rep := &recordingReporter{}
			a, err := addon.New(addon.Options{ConfigGetter: hashingGetter{getter{adc}, "h"}, CA: testCA{bundle: caPEM}, Subject: identity.SubjectClusterName,
				Reporter: rep, AgentVersions: versions,
				PrincipalImage: func(context.Context) (string, string, error) {
					return principalImage, "Deployment argocd/argocd-agent-principal", nil
				}})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(gvrs(a.GetAgentAddonOptions().SupportedConfigGVRs), ","), agentversion.Resource) {
				t.Fatalf("AgentVersion is not a config type of the add-on: %v", a.GetAgentAddonOptions().SupportedConfigGVRs)
			}
			m := mca(adc, tc.versionHash)
			if tc.noReference {
				m = mcaFor(adc)
			}
			objs, err := a.Manifests(context.Background(), cluster, m)
			if tc.pending {
				if !errors.Is(err, plan.ErrRolloutPending) || objs != nil {
					t.Fatalf("rendered before the rollout reached the cluster: %d objects, %v", len(objs), err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := index(t, objs).deployment.Spec.Template.Spec.Containers[0].Image; got != tc.wantImage {
				t.Errorf("image %s, want %s", got, tc.wantImage)
			}
			c := rep.version
			if c.Type != addon.ConditionAgentVersion || c.Status != tc.wantStatus || !strings.Contains(c.Message, tc.wantMessage) {
				t.Errorf("AgentVersion condition %+v, want %s with %q", c, tc.wantStatus, tc.wantMessage)
			}
		})
	}
}

func gvrs(list []schema.GroupVersionResource) []string {
	var out []string
	for _, g := range list {
		out = append(out, g.Resource)
	}
	return out
}
