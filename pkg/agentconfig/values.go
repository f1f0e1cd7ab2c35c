package agentconfig

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"open-cluster-management.io/addon-framework/pkg/addonfactory"
	"open-cluster-management.io/addon-framework/pkg/utils"
	clusterv1 "open-cluster-management.io/api/cluster/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// ResolveImage applies image mirrors: the AddOnDeploymentConfig's registries first and, if they
// do not change the image, the cluster's image-registries annotation (addon-framework's rule).
func (c *Config) ResolveImage(cluster *clusterv1.ManagedCluster) (string, error) {
	if mirrored := addonfactory.OverrideImage(c.Registries, c.Image); mirrored != c.Image {
		return mirrored, validateImage("registries", mirrored)
	}
	mirrored, err := utils.OverrideImageByAnnotation(cluster.GetAnnotations(), c.Image)
	if err != nil {
		return "", fieldErr("ManagedCluster annotation "+clusterv1.ClusterImageRegistriesAnnotationKey,
			cluster.GetAnnotations()[clusterv1.ClusterImageRegistriesAnnotationKey], "%v", err)
	}
	return mirrored, validateImage("ManagedCluster annotation "+clusterv1.ClusterImageRegistriesAnnotationKey, mirrored)
}

// Values returns the template values for cfg on cluster. caBundle is the PEM trust bundle the
// agent verifies the principal with; empty leaves the CA secret out (the render command without
// --ca). certificate identifies the client certificate the spoke holds now (see
// pkg/addon.CertificateOnSpoke); a new one rolls the agent's pod, since the agent reads its
// certificate only at start-up. Every value is JSON, which YAML reads as is (see package
// manifests).
func (c *Config) Values(cluster *clusterv1.ManagedCluster, caBundle []byte, certificate string) (addonfactory.Values, error) {
	if c.PrincipalAddress == "" {
		return nil, fieldErr("customizedVariables["+VarPrincipalAddress+"]", "", "required: the address agents dial to reach the Argo CD agent principal (not resolved)")
	}
	image, err := c.ResolveImage(cluster)
	if err != nil {
		return nil, err
	}
	var proxyEnv []string
	for _, e := range []corev1.EnvVar{
		{Name: "HTTP_PROXY", Value: c.Proxy.HTTPProxy},
		{Name: "HTTPS_PROXY", Value: c.Proxy.HTTPSProxy},
		{Name: "NO_PROXY", Value: c.noProxy()},
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
	port := strconv.Itoa(c.PrincipalPort)
	values := addonfactory.Values{
		"Namespace":        mustJSON(c.Namespace),
		"PrincipalAddress": mustJSON(c.PrincipalAddress),
		"PrincipalPort":    mustJSON(port),
		"Mode":             mustJSON(c.Mode),
		"LogLevel":         mustJSON(c.LogLevel),
		"Image":            mustJSON(image),
		"NodeSelector":     mustJSON(nodeSelector),
		"Tolerations":      mustJSON(tolerations),
		"Resources":        mustJSON(c.Resources),
		"ProxyEnv":         proxyEnv,
		"ClientCertSecret": mustJSON(identity.ClientCertSecretName),
		"CABundle":         "",
	}
	if len(caBundle) > 0 {
		values["CABundle"] = base64.StdEncoding.EncodeToString(caBundle)
	}
	// The agent reads its settings and CA only at start-up; hashing what it reads into the pod
	// template makes any change roll the pod, once. The image and resources roll it by
	// themselves. The certificate has an annotation of its own, which a renewal updates even
	// while the configuration is held (pkg/addon).
	h := sha256.New()
	for _, part := range []string{c.Namespace, c.PrincipalAddress, port, c.Mode, c.LogLevel,
		c.Proxy.HTTPProxy, c.Proxy.HTTPSProxy, c.Proxy.NoProxy, string(caBundle)} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	values["ConfigHash"] = mustJSON(hex.EncodeToString(h.Sum(nil))[:16])
	values["ClientCertificate"] = mustJSON(CertificateDigest(certificate))
	return values, nil
}

// ClientCertificateAnnotation on the agent's pod template names the client certificate the spoke
// held when it was rendered (CertificateDigest), so that each renewal rolls the pod once.
const ClientCertificateAnnotation = "argocd-agent-addon.open-cluster-management.io/client-certificate"

// CertificateDigest is the ClientCertificateAnnotation value for certificate (see
// pkg/addon.CertificateOnSpoke): "none" before the first, else 16 hex digits of its SHA-256.
func CertificateDigest(certificate string) string {
	if certificate == "" {
		return "none"
	}
	sum := sha256.Sum256([]byte(certificate))
	return hex.EncodeToString(sum[:])[:16]
}

// InClusterNoProxy is what NO_PROXY always holds when the agent has a proxy: the cluster's own
// API server, which client-go reaches in-cluster at the kubernetes Service's IP. kubelet expands
// $(KUBERNETES_SERVICE_HOST) from the service variables it gives every container. Without it a
// proxy meant for the principal would carry, or refuse, the agent's Kubernetes traffic.
const InClusterNoProxy = "$(KUBERNETES_SERVICE_HOST),kubernetes.default.svc,kubernetes.default.svc.cluster.local"

// noProxy is the user's noProxy plus InClusterNoProxy whenever a proxy is set.
func (c *Config) noProxy() string {
	if c.Proxy.HTTPProxy == "" && c.Proxy.HTTPSProxy == "" {
		return c.Proxy.NoProxy
	}
	if c.Proxy.NoProxy == "" {
		return InClusterNoProxy
	}
	return c.Proxy.NoProxy + "," + InClusterNoProxy
}

// mustJSON encodes values that always encode (strings, maps of strings, API structs).
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
