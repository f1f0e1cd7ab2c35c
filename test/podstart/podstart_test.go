package podstart

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// A case is a pod spec (its containers' names and images are filled in by the kubelet test)
// checked against the objects of testObjects; want is a substring of Check's error, "" if the
// pod starts.
type testCase struct {
	name string
	spec corev1.PodSpec
	want string
}

// testObjects: ConfigMap cm with data key a and binary key b, Secret s with key ca.crt.
func testObjects() Objects {
	return Objects{
		ConfigMaps: map[string]*corev1.ConfigMap{"cm": {Data: map[string]string{"a": "1"}, BinaryData: map[string][]byte{"b": []byte("2")}}},
		Secrets:    map[string]*corev1.Secret{"s": {Data: map[string][]byte{"ca.crt": []byte("3")}}},
	}
}

func testCases() []testCase {
	yes := true
	env := func(e corev1.EnvVar) corev1.PodSpec {
		return corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Env: []corev1.EnvVar{e}}}}
	}
	cmRef := func(name, key string, optional *bool) corev1.EnvVar {
		return corev1.EnvVar{Name: "E", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key, Optional: optional}}}
	}
	secretVolume := func(name string, optional *bool, keys ...string) corev1.PodSpec {
		v := corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name, Optional: optional}}}
		for _, k := range keys {
			v.Secret.Items = append(v.Secret.Items, corev1.KeyToPath{Key: k, Path: k})
		}
		return corev1.PodSpec{Containers: []corev1.Container{{Name: "c", VolumeMounts: []corev1.VolumeMount{{Name: "v", MountPath: "/v"}}}},
			Volumes: []corev1.Volume{v}}
	}
	projected := func(sources ...corev1.VolumeProjection) corev1.PodSpec {
		return corev1.PodSpec{Containers: []corev1.Container{{Name: "c", VolumeMounts: []corev1.VolumeMount{{Name: "v", MountPath: "/v"}}}},
			Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: sources}}}}}
	}
	token := corev1.VolumeProjection{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}
	rootCA := corev1.VolumeProjection{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: RootCAConfigMap},
		Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}}
	namespace := corev1.VolumeProjection{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace",
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}}
	unmounted := secretVolume("none", nil)
	unmounted.Containers[0].VolumeMounts = nil
	return []testCase{
		{"env key present", env(cmRef("cm", "a", nil)), ""},
		{"env from a binary key", env(cmRef("cm", "b", nil)), `couldn't find key b in ConfigMap "cm"`},
		{"volume of a binary key", corev1.PodSpec{Containers: []corev1.Container{{Name: "c", VolumeMounts: []corev1.VolumeMount{{Name: "v", MountPath: "/v"}}}}, Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Items: []corev1.KeyToPath{{Key: "b", Path: "b"}}}}}}}, ""},
		{"env key missing", env(cmRef("cm", "x", nil)), `couldn't find key x in ConfigMap "cm"`},
		{"env key missing, optional", env(cmRef("cm", "x", &yes)), ""},
		{"env ConfigMap missing", env(cmRef("other", "a", nil)), `ConfigMap "other" not found`},
		{"env secret key missing", env(corev1.EnvVar{Name: "E", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "tls.key"}}}), `couldn't find key tls.key in Secret "s"`},
		{"envFrom ConfigMap missing", corev1.PodSpec{Containers: []corev1.Container{{Name: "c", EnvFrom: []corev1.EnvFromSource{{
			ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "none"}}}}}}}, `ConfigMap "none" not found`},
		{"init container checked", corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}},
			InitContainers: []corev1.Container{{Name: "i", Env: []corev1.EnvVar{cmRef("cm", "x", nil)}}}}, "container i env E"},
		{"volume whole secret", secretVolume("s", nil), ""},
		{"projected token, the cluster's root CA and the namespace", projected(token, rootCA, namespace), ""},
		{"projected secret missing", projected(token, corev1.VolumeProjection{Secret: &corev1.SecretProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: "none"}}}), `Secret "none" not found`},
		{"projected ConfigMap key missing", projected(corev1.VolumeProjection{ConfigMap: &corev1.ConfigMapProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Items: []corev1.KeyToPath{{Key: "x", Path: "x"}}}}), `couldn't find key x in ConfigMap "cm"`},
		{"volume item present", secretVolume("s", nil, "ca.crt"), ""},
		{"volume item missing", secretVolume("s", nil, "ca.crt", "addon.content-hash.1"), `volume v: couldn't find key addon.content-hash.1 in Secret "s"`},
		{"volume secret missing", secretVolume("none", nil), `Secret "none" not found`},
		{"volume secret missing, optional", secretVolume("none", &yes, "k"), ""},
		// The kubelet mounts only the volumes a container mounts.
		{"volume no container mounts, secret missing", unmounted, ""},
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range testCases() {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.spec, testObjects())
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Check: %v, want %q", err, tc.want)
			}
		})
	}
}
