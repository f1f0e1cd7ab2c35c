package customization

import "strings"

// setting is one argocd-agent (v0.9) setting, as a flag and as the environment variable the
// agent reads when the flag is not given.
type setting struct {
	flag, env string
	// why the add-on keeps it: a customisation may not set it, by flag or by env.
	why string
}

const (
	whyAddon    = "the add-on sets it from the AddOnDeploymentConfig and the principal's address"
	whyIdentity = "it is the agent's mTLS identity, which the add-on's certificate and CA bundle provide"
	whyInsecure = "it would weaken or drop the agent's verified TLS connection to the principal"
	whyHealth   = "the readiness probe on it is what makes the add-on Available mean connected"
	whyCluster  = "the agent manages the cluster it runs in, under the add-on's ServiceAccount and RBAC"
)

// protected are the agent's settings a customisation may not set.
var protected = []setting{
	{"server-address", "ARGOCD_AGENT_REMOTE_SERVER", whyAddon},
	{"server-port", "ARGOCD_AGENT_REMOTE_PORT", whyAddon},
	{"agent-mode", "ARGOCD_AGENT_MODE", whyAddon},
	{"namespace", "ARGOCD_AGENT_NAMESPACE", whyAddon},
	{"log-level", "ARGOCD_AGENT_LOG_LEVEL", whyAddon},
	{"metrics-port", "ARGOCD_AGENT_METRICS_PORT", whyAddon},
	{"creds", "ARGOCD_AGENT_CREDS", whyIdentity},
	{"tls-client-cert", "ARGOCD_AGENT_TLS_CLIENT_CERT_PATH", whyIdentity},
	{"tls-client-key", "ARGOCD_AGENT_TLS_CLIENT_KEY_PATH", whyIdentity},
	{"tls-secret-name", "ARGOCD_AGENT_TLS_SECRET_NAME", whyIdentity},
	{"root-ca-path", "ARGOCD_AGENT_TLS_ROOT_CA_PATH", whyIdentity},
	{"root-ca-secret-name", "ARGOCD_AGENT_TLS_ROOT_CA_SECRET_NAME", whyIdentity},
	{"insecure-tls", "ARGOCD_AGENT_TLS_INSECURE", whyInsecure},
	{"insecure-plaintext", "ARGOCD_AGENT_INSECURE_PLAINTEXT", whyInsecure},
	{"tls-min-version", "ARGOCD_AGENT_TLS_MIN_VERSION", whyInsecure},
	{"tls-max-version", "ARGOCD_AGENT_TLS_MAX_VERSION", whyInsecure},
	{"tls-ciphersuites", "ARGOCD_AGENT_TLS_CIPHERSUITES", whyInsecure},
	{"healthz-port", "ARGOCD_AGENT_HEALTH_CHECK_PORT", whyHealth},
	{"redis-password", "REDIS_PASSWORD", whyAddon},
	{"kubeconfig", "KUBERNETES_SERVICE_HOST", whyCluster},
	{"kubecontext", "KUBERNETES_SERVICE_PORT", whyCluster},
	// Go's runtime settings re-enable TLS versions and ciphers Go turned off.
	{"", "GODEBUG", whyInsecure},
}

// protectedFlag says why the flag an argument sets may not be given, or "" when it may (or the
// argument is no flag). Shorthand flags are refused whole: pflag reads "-xn" as -x and -n,
// and the long form says what is meant.
func protectedFlag(arg string) (flag, why string) {
	if !strings.HasPrefix(arg, "-") || arg == "-" || arg == "--" {
		return "", ""
	}
	if !strings.HasPrefix(arg, "--") {
		return arg, "shorthand flags are not accepted; give the long form (--name=value)"
	}
	name, _, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
	for _, s := range protected {
		if s.flag != "" && s.flag == name {
			return name, s.why
		}
	}
	return "", ""
}

// protectedEnv says why an environment variable is protected, or "".
func protectedEnv(name string) string {
	for _, s := range protected {
		if s.env != "" && s.env == name {
			return s.why
		}
	}
	return ""
}
