package manager

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/clustersecret"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
)

// Defaults.
const (
	// DefaultCertLifetime is a week: OCM renews when 20-25 % is left, so a hub outage of up to
	// ~1.4 days never lets a certificate lapse, while a stolen key is good for a week at most.
	DefaultCertLifetime = 7 * 24 * time.Hour
	// MinCertLifetime allows the short lifetimes tests use to drive renewals; production
	// lifetimes are hours to days.
	MinCertLifetime = time.Minute
	// MaxCertLifetime bounds what a typo can issue.
	MaxCertLifetime = 365 * 24 * time.Hour
	// DefaultClusterSecretCertLifetime is 30 days, renewed after 20: the certificate and its key
	// never leave the hub, so a longer life than the agents' costs little, and a renewal is one
	// write per cluster every 20 days.
	DefaultClusterSecretCertLifetime = 30 * 24 * time.Hour
	// DefaultServerCertLifetime is 90 days for the principal's server certificates, renewed
	// (and the principal rolled) after 72.
	DefaultServerCertLifetime = 90 * 24 * time.Hour
	// DefaultGRPCServerUsername is the identity of OCM's gRPC registration server.
	DefaultGRPCServerUsername = "system:serviceaccount:open-cluster-management-hub:grpc-server-sa"
	leaderElectionID          = identity.ManagerLease
	// statusReportDelay is how long after a render its conditions are written: past the deploy
	// controller's own status patch of the same sync (addon.StatusReporter).
	statusReportDelay = time.Second
)

// Options are the manager's settings.
type Options struct {
	Kubeconfig              string
	CASecret                string
	CertLifetime            time.Duration
	CertificateSubject      string
	GRPCServerUsername      string
	LeaderElect             bool
	LeaderElectionNamespace string
	// LeaseDuration, RenewDeadline and RetryPeriod time the leader lease: a standby takes over
	// a leader that died without releasing it after at most LeaseDuration + RetryPeriod.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// Namespace is where the manager runs and keeps the record of the certificates it issued.
	Namespace              string
	MetricsBindAddress     string
	HealthProbeBindAddress string
	// PprofBindAddress serves Go's /debug/pprof/ profiles, unauthenticated: off by default.
	PprofBindAddress string
	KubeAPIQPS       float32
	KubeAPIBurst     int
	// PrincipalService is NAMESPACE/NAME of the principal's Service, whose load balancer
	// address clusters without a principalAddress of their own dial; PrincipalFallbackAddress
	// is used when it has none.
	PrincipalService         string
	PrincipalFallbackAddress string

	// ClusterSecrets keeps one Argo CD cluster secret per cluster with the add-on in
	// ClusterSecretNamespace (empty: the CA secret's), reaching it through the principal's
	// resource proxy at ResourceProxyAddress, with a client certificate valid for
	// ClusterSecretCertLifetime (pkg/clustersecret).
	ClusterSecrets         bool
	ClusterSecretNamespace string
	// ClusterSecretGroups put the cluster secrets of the clusters a Placement holds in another
	// Argo CD's namespace, with its principal's resource proxy (clustersecret.ParseGroup).
	ClusterSecretGroups       []string
	ResourceProxyAddress      string
	ClusterSecretCertLifetime time.Duration
	// ClusterSecretLabels are the ManagedCluster labels copied into the cluster secrets
	// (clustersecret.ParseLabelFilter).
	ClusterSecretLabels []string

	// CreateCA creates the CA secret when it is absent; PrincipalPKI keeps the principal's
	// server certificates (for its Services' names and addresses plus the extra SANs) and JWT
	// key, and rolls PrincipalDeployment when they change (pkg/hubpki).
	CreateCA               bool
	PrincipalPKI           bool
	PrincipalDeployment    string
	ResourceProxyService   string
	PrincipalExtraSANs     []string
	ResourceProxyExtraSANs []string
	ServerCertLifetime     time.Duration

	// MetricsSecure serves metrics over HTTPS, only to callers the hub API server authenticates
	// (TokenReview) and authorizes for get on /metrics (SubjectAccessReview).
	MetricsSecure bool
	// MetricsCertDir holds the metrics serving certificate (tls.crt, tls.key); empty means a
	// self-signed certificate generated at start (see the flag's help for the one exception).
	MetricsCertDir string

	// RestConfig, if set, is used instead of Kubeconfig (tests).
	RestConfig *rest.Config
	// SkipControllerNameValidation lets one process run the manager more than once (tests):
	// controller-runtime refuses a controller name it has seen in the process before.
	SkipControllerNameValidation bool
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{
		Namespace:          os.Getenv("POD_NAMESPACE"),
		CASecret:           hubclient.DefaultCASecret,
		CertLifetime:       DefaultCertLifetime,
		CertificateSubject: string(identity.SubjectClusterName),
		GRPCServerUsername: DefaultGRPCServerUsername,
		LeaderElect:        true,
		// client-go's and controller-runtime's defaults.
		LeaseDuration:          15 * time.Second,
		RenewDeadline:          10 * time.Second,
		RetryPeriod:            2 * time.Second,
		MetricsBindAddress:     ":8080",
		MetricsSecure:          true,
		HealthProbeBindAddress: ":8081",
		PprofBindAddress:       "0",
		// client-go's own default (5/10) throttles a fleet-wide rollout to a crawl; see
		// docs/operations.md#sizing for what test/bench measured.
		KubeAPIQPS:       50,
		KubeAPIBurst:     100,
		PrincipalService: principal.DefaultService.String(),

		ClusterSecrets:            true,
		ResourceProxyAddress:      clustersecret.DefaultResourceProxyAddress,
		ClusterSecretCertLifetime: DefaultClusterSecretCertLifetime,
		ClusterSecretLabels:       append([]string(nil), clustersecret.DefaultCopyLabels...),

		PrincipalDeployment:  principal.DefaultService.String(),
		ResourceProxyService: principal.DefaultService.Namespace + "/argocd-agent-resource-proxy",
		ServerCertLifetime:   DefaultServerCertLifetime,
	}
}

// NewCommand returns the manager command.
func NewCommand() *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the add-on manager on the OCM hub",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.Validate()
			if err != nil {
				return err
			}
			return cfg.Run(ctrl.SetupSignalHandler())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	hubclient.AddKubeconfigFlag(fs, &o.Kubeconfig)
	fs.StringVar(&o.CASecret, "ca-secret", o.CASecret,
		"NAMESPACE/NAME of the kubernetes.io/tls secret holding the CA (tls.crt, tls.key) the principal trusts; agent certificates are signed with it.")
	fs.DurationVar(&o.CertLifetime, "cert-lifetime", o.CertLifetime,
		fmt.Sprintf("Lifetime of agent client certificates (%s to %s), never past the CA's expiry. OCM renews them when 20-25%% is left.", MinCertLifetime, MaxCertLifetime))
	fs.StringVar(&o.CertificateSubject, "certificate-subject", o.CertificateSubject,
		fmt.Sprintf("Agent certificate subject: %q (CN=<cluster>, for the principal's default mtls:CN=([^,]+) regex) or %q (OCM's long default CN, for principals set up for the existing OCM add-ons).",
			identity.SubjectClusterName, identity.SubjectOCM))
	fs.StringVar(&o.GRPCServerUsername, "grpc-server-username", o.GRPCServerUsername,
		"Username of OCM's gRPC registration server, whose CSRs name the real requester in the open-cluster-management.io/csr-user annotation. Empty trusts that annotation from nobody.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "Run controllers only while holding the leader lease, so replicas can stand by.")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace,
		"Namespace the manager runs in (default $POD_NAMESPACE); it keeps the record of the certificates it issued there, one ConfigMap per cluster, which the revoke command blocklists from.")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", o.LeaderElectionNamespace,
		"Namespace of the leader lease; empty means the namespace the manager runs in.")
	fs.DurationVar(&o.LeaseDuration, "leader-election-lease-duration", o.LeaseDuration,
		"How long a standby waits, from the leader's last renewal, before it takes the lease of a leader that died without releasing it.")
	fs.DurationVar(&o.RenewDeadline, "leader-election-renew-deadline", o.RenewDeadline,
		"How long the leader keeps retrying a failed renewal before it gives up leading and exits; below the lease duration.")
	fs.DurationVar(&o.RetryPeriod, "leader-election-retry-period", o.RetryPeriod,
		"How often the leader renews and standbys try to acquire the lease.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, "Address of the Prometheus metrics endpoint; 0 disables it.")
	fs.BoolVar(&o.MetricsSecure, "metrics-secure", o.MetricsSecure,
		"Serve metrics over HTTPS, only to scrapers sending a bearer token whose identity may get the non-resource URL /metrics (checked with TokenReview and SubjectAccessReview on the hub API server). false serves plain HTTP to anyone who can reach the port.")
	fs.StringVar(&o.MetricsCertDir, "metrics-cert-dir", o.MetricsCertDir,
		"Directory with the metrics serving certificate and key (tls.crt, tls.key; reloaded when they change), for scrapers that verify it. Empty means a self-signed certificate generated in memory at start (unless controller-runtime's default directory, $TMPDIR/k8s-metrics-server/serving-certs, holds both files). Needs --metrics-secure.")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress, "Address of the /healthz and /readyz endpoints; 0 disables them.")
	fs.StringVar(&o.PprofBindAddress, "pprof-bind-address", o.PprofBindAddress,
		"Address of Go's /debug/pprof/ profiling endpoints, to find where memory or CPU goes; 0 disables them. They have no authentication: bind to 127.0.0.1 and reach them with kubectl port-forward.")
	fs.StringVar(&o.PrincipalService, "principal-service", o.PrincipalService,
		"NAMESPACE/NAME of the Argo CD agent principal's Service on the hub. Clusters whose AddOnDeploymentConfig sets no principalAddress dial its first load balancer address (status.loadBalancer.ingress) on its https port (else its first TCP port); principalPort, if set, still wins.")
	fs.StringVar(&o.PrincipalFallbackAddress, "principal-fallback-address", o.PrincipalFallbackAddress,
		"HOST or HOST:PORT agents dial when neither their AddOnDeploymentConfig nor the principal's Service gives an address (a principal behind an Ingress or a NodePort). Without a port: the Service's, else 443.")
	fs.BoolVar(&o.ClusterSecrets, "cluster-secrets", o.ClusterSecrets,
		"Keep one Argo CD cluster secret (cluster-<cluster>, as argocd-agentctl agent create makes it) per cluster with the add-on, so Argo CD on the hub shows live resources through the principal's resource proxy; removed when the add-on leaves the cluster or the agent is revoked.")
	fs.StringVar(&o.ClusterSecretNamespace, "cluster-secret-namespace", o.ClusterSecretNamespace,
		"Namespace of Argo CD and the principal, where the cluster secrets are kept; empty means the --ca-secret namespace.")
	fs.StringArrayVar(&o.ClusterSecretGroups, "cluster-secret-group", o.ClusterSecretGroups,
		"PLACEMENT_NAMESPACE/PLACEMENT=ARGOCD_NAMESPACE,RESOURCE_PROXY_HOST:PORT, repeatable: the cluster secrets of the clusters whose add-on comes through that Placement of the ClusterManagementAddOn (the last one holding a cluster, as for its configs) go to that namespace, reaching that principal's resource proxy; the rest to --cluster-secret-namespace. For a fleet split between principals.")
	fs.StringVar(&o.ResourceProxyAddress, "resource-proxy-address", o.ResourceProxyAddress,
		"HOST:PORT at which Argo CD reaches the principal's resource proxy; the cluster secrets' server is https://HOST:PORT?agentName=<cluster>.")
	fs.DurationVar(&o.ClusterSecretCertLifetime, "cluster-secret-cert-lifetime", o.ClusterSecretCertLifetime,
		fmt.Sprintf("Lifetime of the client certificates in the cluster secrets (%s to %s), never past the CA's expiry; renewed when two thirds have passed.", MinCertLifetime, MaxCertLifetime))
	fs.StringSliceVar(&o.ClusterSecretLabels, "cluster-secret-labels", o.ClusterSecretLabels,
		"ManagedCluster labels copied into the cluster secrets, for ApplicationSet cluster generators: label keys (env, example.com/team), key prefixes ending in * (example.com/*), or * for all; empty copies none. A managed cluster may write its own labels, so a copied label is its claim: the default copies only the ManagedClusterSet label, which OCM's webhook guards, and name, which is only ever copied when it is the cluster's own name. Keys under argocd.argoproj.io/, argocd-agent.argoproj-labs.io/, argocd-agent-addon.open-cluster-management.io/ and feature.open-cluster-management.io/ are never copied.")
	fs.BoolVar(&o.CreateCA, "create-ca", o.CreateCA,
		"Create the --ca-secret CA (kubernetes.io/tls, ECDSA P-256, 10 years) when it does not exist. An existing CA is never changed.")
	fs.BoolVar(&o.PrincipalPKI, "principal-pki", o.PrincipalPKI,
		"Keep the principal's server certificates (argocd-agent-principal-tls, argocd-agent-resource-proxy-tls in the --principal-deployment namespace) issued from the CA for its Services' addresses and names, renewed at 80% of their lifetime, and its JWT key (argocd-agent-jwt), and roll the principal Deployment when they change. Secrets the add-on did not create are left alone.")
	fs.StringVar(&o.PrincipalDeployment, "principal-deployment", o.PrincipalDeployment,
		"NAMESPACE/NAME of the principal's Deployment. Agents run its image unless their AddOnDeploymentConfig pins agentImage: the manager copies it into the AgentVersion argocd-agent in --namespace, which reaches the clusters by the ClusterManagementAddOn's rollout strategy. With --principal-pki it is rolled when its certificates change.")
	fs.StringVar(&o.ResourceProxyService, "resource-proxy-service", o.ResourceProxyService,
		"NAMESPACE/NAME of the Service of the principal's resource proxy, whose names and addresses its certificate covers (--principal-pki).")
	fs.StringSliceVar(&o.PrincipalExtraSANs, "principal-extra-sans", o.PrincipalExtraSANs,
		"More DNS names or IP addresses for the principal's gRPC certificate, e.g. an Ingress host (--principal-pki).")
	fs.StringSliceVar(&o.ResourceProxyExtraSANs, "resource-proxy-extra-sans", o.ResourceProxyExtraSANs,
		"More DNS names or IP addresses for the resource proxy's certificate (--principal-pki).")
	fs.DurationVar(&o.ServerCertLifetime, "server-cert-lifetime", o.ServerCertLifetime,
		fmt.Sprintf("Lifetime of the principal's server certificates (%s to %s), never past the CA's expiry (--principal-pki).", MinCertLifetime, MaxCertLifetime))
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "Sustained requests per second the manager may send to the hub API server.")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "Requests the manager may send to the hub API server in a burst above --kube-api-qps.")
}

// Validate checks the options, says which flag is wrong, and returns them parsed.
func (o *Options) Validate() (*Config, error) {
	cfg := &Config{Options: o}
	var errs []error
	if len(validation.IsDNS1123Label(o.Namespace)) > 0 {
		errs = append(errs, fmt.Errorf("--namespace %q: want the namespace the manager runs in (or set $POD_NAMESPACE)", o.Namespace))
	}
	var err error
	if cfg.CAKey, err = hubclient.CASecretKey(o.CASecret); err != nil {
		errs = append(errs, err)
	}
	if cfg.PrincipalServiceKey, err = namespacedName("--principal-service", o.PrincipalService); err != nil {
		errs = append(errs, err)
	}
	if o.PrincipalFallbackAddress != "" {
		if _, _, err := principal.ParseFallback(o.PrincipalFallbackAddress); err != nil {
			errs = append(errs, fmt.Errorf("--principal-fallback-address: %w", err))
		}
	}
	if o.LeaderElect && (o.RetryPeriod <= 0 || float64(o.RenewDeadline) <= leaderelection.JitterFactor*float64(o.RetryPeriod) || o.LeaseDuration <= o.RenewDeadline) {
		// client-go's leader election refuses these at run time; say so before starting.
		errs = append(errs, fmt.Errorf("--leader-election-lease-duration %s, --leader-election-renew-deadline %s, --leader-election-retry-period %s: want lease duration > renew deadline > %.1f × retry period > 0",
			o.LeaseDuration, o.RenewDeadline, o.RetryPeriod, leaderelection.JitterFactor))
	}
	if o.CertLifetime < MinCertLifetime || o.CertLifetime > MaxCertLifetime {
		errs = append(errs, fmt.Errorf("--cert-lifetime %s is outside %s to %s", o.CertLifetime, MinCertLifetime, MaxCertLifetime))
	}
	if cfg.Subject, err = identity.ParseSubjectStyle(o.CertificateSubject); err != nil {
		errs = append(errs, fmt.Errorf("--certificate-subject: %w", err))
	}
	if o.ClusterSecrets {
		if o.ClusterSecretNamespace != "" && len(validation.IsDNS1123Label(o.ClusterSecretNamespace)) > 0 {
			errs = append(errs, fmt.Errorf("--cluster-secret-namespace %q is not a namespace name", o.ClusterSecretNamespace))
		}
		if err := clustersecret.ValidateAddress(o.ResourceProxyAddress); err != nil {
			errs = append(errs, fmt.Errorf("--resource-proxy-address: %w", err))
		}
		seen := map[addonv1beta1.PlacementRef]bool{}
		for _, g := range o.ClusterSecretGroups {
			group, err := clustersecret.ParseGroup(g)
			if err != nil {
				errs = append(errs, fmt.Errorf("--cluster-secret-group: %w", err))
				continue
			}
			if seen[group.Placement] {
				errs = append(errs, fmt.Errorf("--cluster-secret-group: Placement %s/%s given twice", group.Placement.Namespace, group.Placement.Name))
			}
			seen[group.Placement] = true
			cfg.ClusterSecretGroups = append(cfg.ClusterSecretGroups, group)
		}
		if o.ClusterSecretCertLifetime < MinCertLifetime || o.ClusterSecretCertLifetime > MaxCertLifetime {
			errs = append(errs, fmt.Errorf("--cluster-secret-cert-lifetime %s is outside %s to %s", o.ClusterSecretCertLifetime, MinCertLifetime, MaxCertLifetime))
		}
		if cfg.CopyLabels, err = clustersecret.ParseLabelFilter(o.ClusterSecretLabels); err != nil {
			errs = append(errs, fmt.Errorf("--cluster-secret-labels: %w", err))
		}
	}
	if cfg.PrincipalDeploymentKey, err = namespacedName("--principal-deployment", o.PrincipalDeployment); err != nil {
		errs = append(errs, err)
	}
	if o.PrincipalPKI {
		if cfg.ResourceProxyServiceKey, err = namespacedName("--resource-proxy-service", o.ResourceProxyService); err != nil {
			errs = append(errs, err)
		}
		for flag, sans := range map[string][]string{"--principal-extra-sans": o.PrincipalExtraSANs, "--resource-proxy-extra-sans": o.ResourceProxyExtraSANs} {
			for _, san := range sans {
				if net.ParseIP(san) == nil && len(validation.IsDNS1123Subdomain(strings.TrimPrefix(san, "*."))) > 0 {
					errs = append(errs, fmt.Errorf("%s: %q is neither an IP address nor a DNS name", flag, san))
				}
			}
		}
		if o.ServerCertLifetime < MinCertLifetime || o.ServerCertLifetime > MaxCertLifetime {
			errs = append(errs, fmt.Errorf("--server-cert-lifetime %s is outside %s to %s", o.ServerCertLifetime, MinCertLifetime, MaxCertLifetime))
		}
	}
	if !(o.KubeAPIQPS > 0) { // also refuses NaN
		errs = append(errs, fmt.Errorf("--kube-api-qps %g must be above 0", o.KubeAPIQPS))
	}
	if float32(o.KubeAPIBurst) < o.KubeAPIQPS {
		errs = append(errs, fmt.Errorf("--kube-api-burst %d must be at least --kube-api-qps %g", o.KubeAPIBurst, o.KubeAPIQPS))
	}
	if o.MetricsCertDir != "" {
		if !o.MetricsSecure {
			errs = append(errs, errors.New("--metrics-cert-dir needs --metrics-secure"))
		}
		// controller-runtime would fall back to a self-signed certificate without a word.
		for _, name := range []string{"tls.crt", "tls.key"} {
			if _, err := os.Stat(filepath.Join(o.MetricsCertDir, name)); err != nil {
				errs = append(errs, fmt.Errorf("--metrics-cert-dir: %w", err))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// Config is the manager's settings as Validate parsed them: the flags, and each NAMESPACE/NAME,
// style, group and filter parsed once.
type Config struct {
	*Options
	CAKey, PrincipalServiceKey, PrincipalDeploymentKey types.NamespacedName
	// ResourceProxyServiceKey is set with --principal-pki.
	ResourceProxyServiceKey types.NamespacedName
	Subject                 identity.SubjectStyle
	// ClusterSecretGroups and CopyLabels are set with --cluster-secrets.
	ClusterSecretGroups []clustersecret.Group
	CopyLabels          clustersecret.LabelFilter
}

// namespacedName parses flag's NAMESPACE/NAME value.
func namespacedName(flag, s string) (types.NamespacedName, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Label(name)) > 0 {
		return types.NamespacedName{}, fmt.Errorf("%s %q: want NAMESPACE/NAME", flag, s)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}
