package delivered

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

const (
	// ContentKeyPrefix starts the key, in the ConfigMap and in the agent's CA Secret, named
	// after that object's rendered content; its value is the digest alone.
	ContentKeyPrefix = "addon.content-hash."
	// ParamsContentEnv is the env var through which the agent's pod requires the ConfigMap's
	// content key. The agent ignores it.
	ParamsContentEnv = "ARGOCD_AGENT_ADDON_PARAMS_HASH"
)

// RequireOwnContent makes the agent's pod start only from the ConfigMap and CA Secret rendered
// with it. The agent reads both once, at start-up, and OCM's work agent applies a ManifestWork's
// manifests in the work's order, which addon-framework's work builder sets by size: the
// Deployment comes first. Its new pod could start on the previous settings or CA and keep them
// until the next roll. So each object gets a key named after a digest of its content, and the
// pod template requires it: kubelet does not start a container whose non-optional ConfigMap key
// is missing, nor mount a Secret volume whose listed item is missing, and retries both. The
// digest is over the rendered content, so a manager whose templates render the same objects
// rolls no pod.
func RequireOwnContent(objects []runtime.Object) error {
	a := Find(objects)
	params, ca := a.Params, a.CASecret
	if a.Deployment == nil || params == nil {
		return fmt.Errorf("the rendered manifests lack Deployment %s or ConfigMap %s", identity.AgentName, identity.ParamsConfigMapName)
	}
	spec := &a.Deployment.Spec.Template.Spec
	c := a.Container()
	if c == nil {
		return fmt.Errorf("the Deployment %s has no container %s", identity.AgentName, identity.AgentName)
	}

	paramsDigest := contentDigest(params.Data)
	if params.Data == nil {
		params.Data = map[string]string{}
	}
	maps.DeleteFunc(params.Data, func(k, _ string) bool { return strings.HasPrefix(k, ContentKeyPrefix) })
	params.Data[ContentKeyPrefix+paramsDigest] = paramsDigest
	env := corev1.EnvVar{
		Name: ParamsContentEnv,
		ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: params.Name}, Key: ContentKeyPrefix + paramsDigest}},
	}
	if i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == ParamsContentEnv }); i >= 0 {
		c.Env[i] = env
	} else {
		c.Env = append(c.Env, env)
	}

	if ca == nil { // render without --ca: the operator provides the Secret
		return nil
	}
	data := map[string]string{}
	for k, v := range ca.Data {
		data[k] = string(v)
	}
	caDigest := contentDigest(data)
	mounted := false
	for i := range spec.Volumes {
		v := spec.Volumes[i].Secret
		if v == nil || v.SecretName != ca.Name {
			continue
		}
		// Listing items mounts only those: every key the Secret has, plus the content key.
		v.Items = nil
		for _, k := range sortedKeys(data) {
			v.Items = append(v.Items, corev1.KeyToPath{Key: k, Path: k})
		}
		v.Items = append(v.Items, corev1.KeyToPath{Key: ContentKeyPrefix + caDigest, Path: "content-hash"})
		mounted = true
	}
	if !mounted {
		return fmt.Errorf("the Deployment %s mounts no volume of Secret %s", identity.AgentName, ca.Name)
	}
	if ca.Data == nil {
		ca.Data = map[string][]byte{}
	}
	maps.DeleteFunc(ca.Data, func(k string, _ []byte) bool { return strings.HasPrefix(k, ContentKeyPrefix) })
	ca.Data[ContentKeyPrefix+caDigest] = []byte(caDigest)
	return nil
}

// contentDigest is the first 16 hex digits of the SHA-256 over data's keys and values in key
// order.
func contentDigest(data map[string]string) string {
	h := sha256.New()
	for _, k := range sortedKeys(data) {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(data[k]))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func sortedKeys(data map[string]string) []string {
	keys := make([]string, 0, len(data))
	for k := range data {
		if !strings.HasPrefix(k, ContentKeyPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
