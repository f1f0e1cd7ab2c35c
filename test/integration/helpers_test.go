package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/podstart"
)

const (
	workName        = hubfixture.WorkName
	configNamespace = hubfixture.ConfigNamespace
)

// joinCluster joins an accepted cluster whose add-on uses adc, creating adc first.
func joinCluster(t *testing.T, name string, adc *addonv1beta1.AddOnDeploymentConfig) {
	t.Helper()
	if adc != nil {
		must.Succeed(t, env.Client.Create(context.Background(), adc))
	}
	must.Succeed(t, hub.JoinCluster(context.Background(), name, adc))
}

func setVariable(t *testing.T, adcName, name, value string) {
	t.Helper()
	must.Succeed(t, hubfixture.SetVariable(context.Background(), env.Client, types.NamespacedName{Namespace: configNamespace, Name: adcName}, name, value))
}

// workObjects returns the cluster's ManifestWork (nil if absent) and its manifests by kind/name.
func workObjects(ctx context.Context, cluster string) (*workv1.ManifestWork, map[string]*unstructured.Unstructured, error) {
	mw := &workv1.ManifestWork{}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: cluster, Name: workName}, mw); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	objs := map[string]*unstructured.Unstructured{}
	for _, m := range mw.Spec.Workload.Manifests {
		u := &unstructured.Unstructured{}
		if err := json.Unmarshal(m.Raw, &u.Object); err != nil {
			return nil, nil, err
		}
		objs[u.GetKind()+"/"+u.GetName()] = u
	}
	return mw, objs, nil
}

// paramsOf is the delivered argocd-agent-params data.
func paramsOf(objs map[string]*unstructured.Unstructured) map[string]string {
	cm, ok := objs["ConfigMap/argocd-agent-params"]
	if !ok {
		return nil
	}
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	return data
}

func deploymentOf(t *testing.T, objs map[string]*unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	u, ok := objs["Deployment/"+identity.AgentName]
	if !ok {
		t.Fatal("no agent Deployment in the ManifestWork")
	}
	d := &appsv1.Deployment{}
	b, _ := json.Marshal(u.Object)
	must.Succeed(t, json.Unmarshal(b, d))
	return d
}

func addonCondition(ctx context.Context, cluster, condType string) (*metav1.Condition, error) {
	mca := &addonv1beta1.ManagedClusterAddOn{}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: cluster, Name: identity.AddonName}, mca); err != nil {
		return nil, err
	}
	c := meta.FindStatusCondition(mca.Status.Conditions, condType)
	if c == nil {
		return nil, fmt.Errorf("no %s condition yet", condType)
	}
	return c, nil
}

// podStartsFrom applies kubelet's start rules to the agent pod template of one delivered work
// against the ConfigMap and CA Secret of another (see package podstart).
func podStartsFrom(t *testing.T, pod, objects map[string]*unstructured.Unstructured) error {
	t.Helper()
	cm, ca := &corev1.ConfigMap{}, &corev1.Secret{}
	for key, into := range map[string]any{"ConfigMap/" + identity.ParamsConfigMapName: cm, "Secret/" + identity.CASecretName: ca} {
		u, ok := objects[key]
		if !ok {
			t.Fatalf("no %s in the ManifestWork", key)
		}
		must.Succeed(t, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into))
	}
	return podstart.Check(deploymentOf(t, pod).Spec.Template.Spec, podstart.Objects{
		ConfigMaps: map[string]*corev1.ConfigMap{cm.Name: cm},
		Secrets: map[string]*corev1.Secret{ca.Name: ca,
			identity.ClientCertSecretName: {Data: map[string][]byte{"tls.crt": nil, "tls.key": nil}}},
	})
}
