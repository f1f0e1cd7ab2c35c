package plan

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/delivered"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// Values returns the values the agent templates (package manifests) render with. Every value is
// JSON, which YAML reads as is.
func (p *Plan) Values() map[string]any {
	c := p.Config
	var proxyEnv []string
	for _, e := range []corev1.EnvVar{
		{Name: "HTTP_PROXY", Value: c.Proxy.HTTPProxy},
		{Name: "HTTPS_PROXY", Value: c.Proxy.HTTPSProxy},
		{Name: "NO_PROXY", Value: c.NoProxy()},
	} {
		if e.Value != "" {
			proxyEnv = append(proxyEnv, mustJSON(e))
		}
	}
	nodeSelector := c.NodeSelector
	if nodeSelector == nil {
		nodeSelector = map[string]string{}
	}
	tolerations := c.Tolerations
	if tolerations == nil {
		tolerations = []corev1.Toleration{}
	}
	port := strconv.Itoa(p.Principal.Port)
	values := map[string]any{
		"Namespace":        mustJSON(c.Namespace),
		"PrincipalAddress": mustJSON(p.Principal.Host),
		"PrincipalPort":    mustJSON(port),
		"Mode":             mustJSON(c.Mode),
		"LogLevel":         mustJSON(c.LogLevel),
		// A bool for the templates' if: its keys and env exist only when it is on, so an
		// upgrade of the add-on rolls no agent that does not use it.
		"DestinationBasedMapping": c.DestinationBasedMapping,
		"Image":                   mustJSON(p.PullImage),
		"NodeSelector":            mustJSON(nodeSelector),
		"Tolerations":             mustJSON(tolerations),
		"Resources":               mustJSON(c.Resources),
		"ProxyEnv":                proxyEnv,
		"ClientCertSecret":        mustJSON(identity.ClientCertSecretName),
		"CABundle":                "",
	}
	if len(p.CABundle) > 0 {
		values["CABundle"] = base64.StdEncoding.EncodeToString(p.CABundle)
	}
	// The agent reads its settings and CA only at start-up; hashing what it reads into the pod
	// template makes any change roll the pod, once. The image and resources roll it by
	// themselves. The certificate has an annotation of its own, which a renewal updates even
	// while the configuration is held (pkg/addon).
	h := sha256.New()
	for _, part := range []string{c.Namespace, p.Principal.Host, port, c.Mode, c.LogLevel,
		c.Proxy.HTTPProxy, c.Proxy.HTTPSProxy, c.Proxy.NoProxy, string(p.CABundle)} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	values["ConfigHash"] = mustJSON(hex.EncodeToString(h.Sum(nil))[:16])
	values["ClientCertificate"] = mustJSON(delivered.CertificateDigest(p.Certificate))
	return values
}

// mustJSON encodes values that always encode (strings, maps of strings, API structs).
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
