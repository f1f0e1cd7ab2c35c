package delivered

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

func agentObjects(params map[string]string, ca map[string][]byte) []runtime.Object {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: identity.AgentName}}
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: identity.AgentName}}
	d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "ca", VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: identity.CASecretName}}}}
	objs := []runtime.Object{d, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: identity.ParamsConfigMapName}, Data: params}}
	if ca != nil {
		objs = append(objs, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: identity.CASecretName}, Data: ca})
	}
	return objs
}

func TestRequireOwnContent(t *testing.T) {
	objs := agentObjects(map[string]string{"agent.mode": "managed", "agent.log.level": "info"}, map[string][]byte{"ca.crt": []byte("pem")})
	if err := RequireOwnContent(objs); err != nil {
		t.Fatal(err)
	}
	pod := objs[0].(*appsv1.Deployment).Spec.Template.Spec
	params, ca := objs[1].(*corev1.ConfigMap), objs[2].(*corev1.Secret)

	env := pod.Containers[0].Env
	if len(env) != 1 || env[0].Name != ParamsContentEnv || env[0].ValueFrom.ConfigMapKeyRef.Name != identity.ParamsConfigMapName {
		t.Fatalf("env %+v: want one %s from the ConfigMap", env, ParamsContentEnv)
	}
	key := env[0].ValueFrom.ConfigMapKeyRef.Key
	if !strings.HasPrefix(key, ContentKeyPrefix) || params.Data[key] != strings.TrimPrefix(key, ContentKeyPrefix) || len(params.Data) != 3 {
		t.Errorf("ConfigMap %v lacks the content key %s the pod requires", params.Data, key)
	}
	items := pod.Volumes[0].Secret.Items
	if len(items) != 2 || items[0].Key != "ca.crt" || items[0].Path != "ca.crt" || items[1].Path != "content-hash" ||
		string(ca.Data[items[1].Key]) != strings.TrimPrefix(items[1].Key, ContentKeyPrefix) || len(ca.Data) != 2 {
		t.Errorf("CA volume items %+v over Secret keys %v: want ca.crt and the content key", items, ca.Data)
	}

	// Applying it again changes nothing.
	before := objs[0].(*appsv1.Deployment).DeepCopy()
	if err := RequireOwnContent(objs); err != nil || !equality.Semantic.DeepEqual(before, objs[0]) {
		t.Errorf("a second pass changed the Deployment (%v)", err)
	}

	// The same content, given in another order, names the same key; other content another.
	same := agentObjects(map[string]string{"agent.log.level": "info", "agent.mode": "managed"}, nil)
	other := agentObjects(map[string]string{"agent.log.level": "debug", "agent.mode": "managed"}, nil)
	for _, o := range [][]runtime.Object{same, other} {
		if err := RequireOwnContent(o); err != nil {
			t.Fatal(err)
		}
	}
	keyOf := func(objs []runtime.Object) string {
		return objs[0].(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Env[0].ValueFrom.ConfigMapKeyRef.Key
	}
	if keyOf(same) != key || keyOf(other) == key {
		t.Errorf("content keys: %s, same content %s, other content %s", key, keyOf(same), keyOf(other))
	}
	if items := same[0].(*appsv1.Deployment).Spec.Template.Spec.Volumes[0].Secret.Items; items != nil {
		t.Errorf("without a rendered CA Secret the volume is left alone, got items %+v", items)
	}
}

func TestRequireOwnContentNeedsTheAgentObjects(t *testing.T) {
	objs := agentObjects(map[string]string{"agent.mode": "managed"}, nil)
	unmounted := objs[0].(*appsv1.Deployment).DeepCopy()
	unmounted.Spec.Template.Spec.Volumes = nil
	for name, o := range map[string][]runtime.Object{
		"no Deployment":      objs[1:],
		"no ConfigMap":       objs[:1],
		"no agent container": {&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: identity.AgentName}}, objs[1]},
		"CA Secret not mounted": {unmounted, objs[1],
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: identity.CASecretName}, Data: map[string][]byte{"ca.crt": nil}}},
	} {
		if err := RequireOwnContent(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
