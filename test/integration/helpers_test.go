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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

const workName = "addon-" + identity.AddonName + "-deploy-0"

// joinCluster does what the OCM registration hub and addon-manager do for an accepted cluster
// whose add-on uses the AddOnDeploymentConfig adc: cluster namespace, accepted ManagedCluster,
// and a ManagedClusterAddOn owned by the ClusterManagementAddOn and pointing at adc.
func joinCluster(t *testing.T, name string, adc *addonv1beta1.AddOnDeploymentConfig) {
	t.Helper()
	ctx := context.Background()
	c := env.Client
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}))
	mc := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: clusterv1.ManagedClusterSpec{HubAcceptsClient: true}}
	must(t, c.Create(ctx, mc))
	meta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{Type: clusterv1.ManagedClusterConditionHubAccepted, Status: metav1.ConditionTrue, Reason: "HubClusterAdminAccepted"})
	meta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{Type: clusterv1.ManagedClusterConditionAvailable, Status: metav1.ConditionTrue, Reason: "ManagedClusterAvailable"})
	must(t, c.Status().Update(ctx, mc))

	if adc != nil {
		must(t, c.Create(ctx, adc))
	}
	cma := &addonv1beta1.ClusterManagementAddOn{}
	must(t, c.Get(ctx, types.NamespacedName{Name: identity.AddonName}, cma))
	mca := &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{
		Name: identity.AddonName, Namespace: name,
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: addonv1beta1.GroupVersion.String(), Kind: "ClusterManagementAddOn", Name: cma.Name, UID: cma.UID,
		}},
	}}
	gr := addonv1beta1.ConfigGroupResource{Group: addonv1beta1.GroupName, Resource: "addondeploymentconfigs"}
	if adc != nil {
		mca.Spec.Configs = []addonv1beta1.AddOnConfig{{ConfigGroupResource: gr, ConfigReferent: addonv1beta1.ConfigReferent{Namespace: adc.Namespace, Name: adc.Name}}}
	}
	must(t, c.Create(ctx, mca))
	if adc != nil {
		// The add-on manager writes the same status concurrently: retry on conflicts.
		must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(mca), mca); err != nil {
				return err
			}
			mca.Status.ConfigReferences = []addonv1beta1.ConfigReference{{
				ConfigGroupResource: gr,
				DesiredConfig:       &addonv1beta1.ConfigSpecHash{ConfigReferent: addonv1beta1.ConfigReferent{Namespace: adc.Namespace, Name: adc.Name}},
			}}
			return c.Status().Update(ctx, mca)
		}))
	}
}

func newADC(name string, vars ...string) *addonv1beta1.AddOnDeploymentConfig {
	a := &addonv1beta1.AddOnDeploymentConfig{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: configNamespace}}
	for i := 0; i+1 < len(vars); i += 2 {
		a.Spec.CustomizedVariables = append(a.Spec.CustomizedVariables, addonv1beta1.CustomizedVariable{Name: vars[i], Value: vars[i+1]})
	}
	return a
}

func setVariable(t *testing.T, adcName, name, value string) {
	t.Helper()
	ctx := context.Background()
	adc := &addonv1beta1.AddOnDeploymentConfig{}
	must(t, env.Client.Get(ctx, types.NamespacedName{Namespace: configNamespace, Name: adcName}, adc))
	found := false
	for i := range adc.Spec.CustomizedVariables {
		if adc.Spec.CustomizedVariables[i].Name == name {
			adc.Spec.CustomizedVariables[i].Value, found = value, true
		}
	}
	if !found {
		adc.Spec.CustomizedVariables = append(adc.Spec.CustomizedVariables, addonv1beta1.CustomizedVariable{Name: name, Value: value})
	}
	must(t, env.Client.Update(ctx, adc))
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
	must(t, json.Unmarshal(b, d))
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

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
