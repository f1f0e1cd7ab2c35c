// Package podstart applies kubelet's rules for whether a pod can start from the ConfigMaps and
// Secrets it references, for unit and integration tests that run no node: they check that the
// agent's pod template can start only from the objects rendered with it. It is a model of the
// kubelet, checked against a real one (kubelet_test.go runs every case on a node); the e2e tests
// run the agent's pods on real nodes.
package podstart

import (
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
)

// Objects are the ConfigMaps and Secrets of the pod's namespace, by name.
type Objects struct {
	ConfigMaps map[string]*corev1.ConfigMap
	Secrets    map[string]*corev1.Secret
}

// Check returns why kubelet would not start spec's containers from objs yet, or nil. A missing
// object or key that is not optional keeps the container from starting (objs need not hold
// what the cluster itself publishes in every namespace, RootCAConfigMap)
// (CreateContainerConfigError for env, a failed mount for a volume); kubelet retries both.
func Check(spec corev1.PodSpec, objs Objects) error {
	objs = objs.withClusterProvided()
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				if err := objs.configMapKeys(r.Name, r.Optional, false, r.Key); err != nil {
					return fmt.Errorf("container %s env %s: %w", c.Name, e.Name, err)
				}
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				if err := objs.secretKeys(r.Name, r.Optional, r.Key); err != nil {
					return fmt.Errorf("container %s env %s: %w", c.Name, e.Name, err)
				}
			}
		}
		for _, from := range c.EnvFrom {
			if r := from.ConfigMapRef; r != nil {
				if err := objs.configMapKeys(r.Name, r.Optional, false); err != nil {
					return fmt.Errorf("container %s envFrom: %w", c.Name, err)
				}
			}
			if r := from.SecretRef; r != nil {
				if err := objs.secretKeys(r.Name, r.Optional); err != nil {
					return fmt.Errorf("container %s envFrom: %w", c.Name, err)
				}
			}
		}
	}
	mounted := map[string]bool{}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		for _, m := range c.VolumeMounts {
			mounted[m.Name] = true
		}
		for _, d := range c.VolumeDevices {
			mounted[d.Name] = true
		}
	}
	for _, v := range spec.Volumes {
		if !mounted[v.Name] {
			continue // the kubelet mounts only the volumes a container mounts (checked in kubelet_test.go)
		}
		if s := v.Secret; s != nil {
			if err := objs.secretKeys(s.SecretName, s.Optional, itemKeys(s.Items)...); err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
		}
		if cm := v.ConfigMap; cm != nil {
			if err := objs.configMapKeys(cm.Name, cm.Optional, true, itemKeys(cm.Items)...); err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
		}
		if v.Projected != nil {
			for i, src := range v.Projected.Sources {
				switch {
				case src.Secret != nil:
					if err := objs.secretKeys(src.Secret.Name, src.Secret.Optional, itemKeys(src.Secret.Items)...); err != nil {
						return fmt.Errorf("volume %s source %d: %w", v.Name, i, err)
					}
				case src.ConfigMap != nil:
					if err := objs.configMapKeys(src.ConfigMap.Name, src.ConfigMap.Optional, true, itemKeys(src.ConfigMap.Items)...); err != nil {
						return fmt.Errorf("volume %s source %d: %w", v.Name, i, err)
					}
				case src.ServiceAccountToken != nil, src.DownwardAPI != nil:
					// From the API server and the pod itself: nothing to wait for.
				default:
					return fmt.Errorf("volume %s source %d: not modelled", v.Name, i)
				}
			}
		}
	}
	return nil
}

// RootCAConfigMap is the ConfigMap kube-controller-manager publishes in every namespace, with
// the cluster's CA as ca.crt: the one every ServiceAccount token volume projects.
const RootCAConfigMap = "kube-root-ca.crt"

// withClusterProvided adds what the cluster puts in every namespace to o.
func (o Objects) withClusterProvided() Objects {
	out := Objects{ConfigMaps: maps.Clone(o.ConfigMaps), Secrets: o.Secrets}
	if out.ConfigMaps == nil {
		out.ConfigMaps = map[string]*corev1.ConfigMap{}
	}
	if _, ok := out.ConfigMaps[RootCAConfigMap]; !ok {
		out.ConfigMaps[RootCAConfigMap] = &corev1.ConfigMap{Data: map[string]string{"ca.crt": ""}}
	}
	return out
}

// configMapKeys checks keys of ConfigMap name. Env reads only its Data; a volume also mounts
// its BinaryData.
func (o Objects) configMapKeys(name string, optional *bool, binary bool, keys ...string) error {
	cm, ok := o.ConfigMaps[name]
	var data map[string]bool
	if ok {
		data = keySet(cm.Data)
		if binary {
			maps.Copy(data, keySet(cm.BinaryData))
		}
	}
	return present("ConfigMap", name, ok, data, optional, keys)
}

func (o Objects) secretKeys(name string, optional *bool, keys ...string) error {
	s, ok := o.Secrets[name]
	var data map[string]bool
	if ok {
		data = keySet(s.Data)
	}
	return present("Secret", name, ok, data, optional, keys)
}

func keySet[V any](m map[string]V) map[string]bool {
	set := make(map[string]bool, len(m))
	for k := range m {
		set[k] = true
	}
	return set
}

func present(kind, name string, exists bool, data map[string]bool, optional *bool, keys []string) error {
	if optional != nil && *optional {
		return nil
	}
	if !exists {
		return fmt.Errorf("%s %q not found", kind, name)
	}
	for _, k := range keys {
		if !data[k] {
			return fmt.Errorf("couldn't find key %s in %s %q", k, kind, name)
		}
	}
	return nil
}

func itemKeys(items []corev1.KeyToPath) []string {
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = it.Key
	}
	return keys
}
