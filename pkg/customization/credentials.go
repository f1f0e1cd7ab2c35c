package customization

import (
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Containers a customisation adds get no credentials: no token of the agent's ServiceAccount,
// no key, no Secret the cluster holds. The pod does not automount its ServiceAccount token and
// the agent container alone mounts it (manifests/agent), so what remains to check is what a
// customisation's volumes and its containers' env read. Everything is checked against an
// allowlist: a volume type or a source Kubernetes adds later is refused until it is known.

const (
	whyKey          = "the agent's client key is mounted into the agent only"
	whyKeyEnv       = "the agent's client key is the agent's only"
	whyOtherSecrets = "only a Secret of spec.extraObjects may be read by what a customisation adds: a Secret already on the cluster may hold a ServiceAccount token or a key (Argo CD's, the agent's)"
	whyVolumeTypes  = "a customisation may add emptyDir, configMap, downwardAPI, secret (of spec.extraObjects) and projected (configMap, downwardAPI, clusterTrustBundle, secret of spec.extraObjects) volumes: " +
		"others may bring credentials or another workload's data (a csi driver may fetch secrets with the pod's ServiceAccount, a persistentVolumeClaim holds what another workload wrote)"
)

// volumeSource refuses a volume that is not of an allowed type or would read a Secret other
// than the customisation's own (key is the agent's client key Secret).
func (e *errs) volumeSource(vp *field.Path, src *corev1.VolumeSource, key string, secrets map[string]bool) error {
	rest := *src
	rest.EmptyDir, rest.ConfigMap, rest.DownwardAPI = nil, nil, nil
	if s := src.Secret; s != nil {
		if err := e.ownSecret(vp.Child("secret", "secretName"), s.SecretName, key, whyKey, secrets); err != nil {
			return err
		}
		rest.Secret = nil
	}
	if pr := src.Projected; pr != nil {
		for j, source := range pr.Sources {
			sp := vp.Child("projected", "sources").Index(j)
			if source.ServiceAccountToken != nil {
				return e.at(sp.Child("serviceAccountToken"), "", "a token of the agent's ServiceAccount is the agent's")
			}
			if source.PodCertificate != nil {
				return e.at(sp.Child("podCertificate"), "", "a key and certificate of the pod's ServiceAccount (podCertificate) are the agent's identity on the cluster")
			}
			if s := source.Secret; s != nil {
				if err := e.ownSecret(sp.Child("secret", "name"), s.Name, key, whyKey, secrets); err != nil {
					return err
				}
			}
			other := source
			other.Secret, other.ConfigMap, other.DownwardAPI, other.ClusterTrustBundle = nil, nil, nil, nil
			if name := firstSet(other); name != "" {
				return e.at(sp.Child(name), "", "%s", whyVolumeTypes)
			}
		}
		rest.Projected = nil
	}
	if name := firstSet(rest); name != "" {
		return e.at(vp.Child(name), "", "%s", whyVolumeTypes)
	}
	return nil
}

// ownSecret refuses a reference to a Secret that is not one of the customisation's extra
// Secrets; the agent's client key with the reason given.
func (e *errs) ownSecret(path *field.Path, name, key, whyKey string, secrets map[string]bool) error {
	if name == key {
		return e.at(path, name, "%s", whyKey)
	}
	if !secrets[name] {
		return e.at(path, name, "%s", whyOtherSecrets)
	}
	return nil
}

// noCredentials refuses an added container that would mount a volume the customisation did not
// add (the agent's client key, its ServiceAccount token, its CA), or read a Secret other than
// the customisation's own through env or envFrom.
func (e *errs) noCredentials(cp *field.Path, c *corev1.Container, volumes []corev1.Volume, key string, secrets map[string]bool) error {
	added := func(name string) bool {
		return slices.ContainsFunc(volumes, func(v corev1.Volume) bool { return v.Name == name })
	}
	mounted := func(path *field.Path, name string) error {
		switch {
		case name == clientTLSVolume:
			return e.at(path, name, "%s", whyKey)
		case name == tokenVolume:
			return e.at(path, name, "the agent's ServiceAccount token is mounted into the agent only")
		case !added(name):
			return e.at(path, name, "not a volume of spec.pod.volumes: the add-on's volumes (the agent's key, token and CA) are the agent's")
		}
		return nil
	}
	for j, m := range c.VolumeMounts {
		if err := mounted(cp.Child("volumeMounts").Index(j).Child("name"), m.Name); err != nil {
			return err
		}
	}
	for j, d := range c.VolumeDevices {
		if err := mounted(cp.Child("volumeDevices").Index(j).Child("name"), d.Name); err != nil {
			return err
		}
	}
	for j, env := range c.Env {
		if env.ValueFrom == nil {
			continue
		}
		ep := cp.Child("env").Index(j).Child("valueFrom")
		if ref := env.ValueFrom.SecretKeyRef; ref != nil {
			if err := e.ownSecret(ep.Child("secretKeyRef", "name"), ref.Name, key, whyKeyEnv, secrets); err != nil {
				return err
			}
		}
		if ref := env.ValueFrom.FileKeyRef; ref != nil {
			if err := mounted(ep.Child("fileKeyRef", "volumeName"), ref.VolumeName); err != nil {
				return err
			}
		}
	}
	for j, from := range c.EnvFrom {
		if from.SecretRef != nil {
			if err := e.ownSecret(cp.Child("envFrom").Index(j).Child("secretRef", "name"), from.SecretRef.Name, key, whyKeyEnv, secrets); err != nil {
				return err
			}
		}
	}
	return nil
}

// firstSet names (as JSON does) the first field of a struct of optional fields that is set.
func firstSet(v any) string {
	rv := reflect.ValueOf(v)
	for i := range rv.NumField() {
		if !rv.Field(i).IsZero() {
			name, _, _ := strings.Cut(rv.Type().Field(i).Tag.Get("json"), ",")
			return name
		}
	}
	return ""
}
