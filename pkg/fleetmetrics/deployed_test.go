package fleetmetrics

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/delivered"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

func manifest(t *testing.T, obj runtime.Object) workv1.Manifest {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return workv1.Manifest{RawExtension: runtime.RawExtension{Raw: raw}}
}

// deployWorks are a cluster's deploy works as addon-framework splits them: the agent's
// Deployment in one, its params in the next.
func deployWorks(t *testing.T, cluster, image, mode string) []*workv1.ManifestWork {
	deploy := &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: identity.AgentName, Namespace: "argocd"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "sidecar", Image: "example.com/sidecar:1"}, {Name: identity.AgentName, Image: image}}}}}}
	params := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: identity.ParamsConfigMapName, Namespace: "argocd"},
		Data:       map[string]string{delivered.ParamsMode: mode}}
	work := func(n string, m ...workv1.Manifest) *workv1.ManifestWork {
		return &workv1.ManifestWork{ObjectMeta: metav1.ObjectMeta{Namespace: cluster, Name: delivered.DeployWorkPrefix + n,
			Labels: map[string]string{addonv1beta1.AddonLabelKey: identity.AddonName}},
			Spec: workv1.ManifestWorkSpec{Workload: workv1.ManifestsTemplate{Manifests: m}}}
	}
	return []*workv1.ManifestWork{work("0", manifest(t, deploy)), work("1", manifest(t, params))}
}

// reduce keeps of a deploy work only the agent image and mode it delivers, and of any other
// work of the add-on nothing; the Collector counts clusters by them, none for a cluster without
// works.
func TestVersionAndModeGauges(t *testing.T) {
	var reduced []client.Object
	add := func(w *workv1.ManifestWork) {
		r, err := reduce(w)
		if err != nil {
			t.Fatal(err)
		}
		rw := r.(*workv1.ManifestWork)
		if len(rw.Spec.Workload.Manifests) != 0 {
			t.Fatalf("reduce kept the manifests of %s", w.Name)
		}
		reduced = append(reduced, rw)
	}
	for _, w := range deployWorks(t, "c1", "quay.io/argoprojlabs/argocd-agent:v0.9.0", "managed") {
		add(w)
	}
	for _, w := range deployWorks(t, "c2", "quay.io/argoprojlabs/argocd-agent:v0.9.0", "autonomous") {
		add(w)
	}
	for _, w := range deployWorks(t, "c3", "registry.example.com/argocd-agent:v0.10.0", "managed") {
		add(w)
	}
	readiness := &workv1.ManifestWork{ObjectMeta: metav1.ObjectMeta{Namespace: "c4", Name: "argocd-agent-spoke-readiness"},
		Spec: workv1.ManifestWorkSpec{Workload: workv1.ManifestsTemplate{Manifests: []workv1.Manifest{
			manifest(t, &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
				ObjectMeta: metav1.ObjectMeta{Name: identity.ParamsConfigMapName}, Data: map[string]string{delivered.ParamsMode: "managed"}})}}}}
	add(readiness)

	scheme, err := hubclient.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	hub := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		mcaOf("c1"), mcaOf("c2"), mcaOf("c3"), mcaOf("c4"),
	).Build()
	deployed := fake.NewClientBuilder().WithScheme(scheme).WithObjects(reduced...).Build()
	c := &Collector{Reader: hub, RecordNamespace: "addon", Deployed: deployed}
	want := `
# HELP argocd_agent_addon_agents_mode Clusters with the add-on by the agent mode (managed, autonomous) their deploy ManifestWorks deliver; none before the first.
# TYPE argocd_agent_addon_agents_mode gauge
argocd_agent_addon_agents_mode{mode="autonomous"} 1
argocd_agent_addon_agents_mode{mode="managed"} 2
argocd_agent_addon_agents_mode{mode="none"} 1
# HELP argocd_agent_addon_agents_version Clusters with the add-on by the agent version (image tag, or digest) their deploy ManifestWorks deliver; none before the first.
# TYPE argocd_agent_addon_agents_version gauge
argocd_agent_addon_agents_version{version="none"} 1
argocd_agent_addon_agents_version{version="v0.10.0"} 1
argocd_agent_addon_agents_version{version="v0.9.0"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "argocd_agent_addon_agents_version", "argocd_agent_addon_agents_mode"); err != nil {
		t.Error(err)
	}
}

func mcaOf(cluster string) *addonv1beta1.ManagedClusterAddOn {
	return &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: cluster, Name: identity.AddonName}}
}
