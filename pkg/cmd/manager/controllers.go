package manager

import (
	"context"
	"fmt"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"open-cluster-management.io/addon-framework/pkg/addonmanager"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/addon"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentversion"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/assignment"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/approver"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/metrics"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/signer"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/clustersecret"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/customization"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/fleetmetrics"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubpki"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/spokeready"
)

// controller is one part of the manager: its name, when it runs (nil: always), what it needs in
// the manager's cache, and how it is set up on the shared parts.
type controller struct {
	name    string
	enabled func(*Config) bool
	caches  func(*Config) map[client.Object]cache.ByObject
	setup   func(ctx context.Context, s *shared) error
}

// controllers are the manager's parts, set up in this order: the add-on first, whose
// addon-framework manager the triggers re-render through. Every one runs only while the manager
// leads, as controller-runtime runs what does not say otherwise.
var controllers = []controller{
	{name: "addon", caches: addonCaches, setup: setupAddon},
	{name: "csr-approver", caches: certificateCaches, setup: setupApprover},
	{name: "csr-signer", caches: certificateCaches, setup: setupSigner},
	{name: "certificate-metrics", caches: certificateCaches, setup: setupCertificateMetrics},
	{name: "fleet-metrics", caches: fleetMetricsCaches, setup: setupFleetMetrics},
	{name: "ca-trigger", caches: certificateCaches, setup: func(_ context.Context, s *shared) error {
		return (&addon.CATrigger{Client: s.mgr.GetClient(), CA: s.ca, Trigger: s.addonManager.Trigger}).SetupWithManager(s.mgr)
	}},
	{name: "revocation-trigger", caches: certificateCaches, setup: func(_ context.Context, s *shared) error {
		return (&addon.RevocationTrigger{Namespace: s.cfg.Namespace, Trigger: s.addonManager.Trigger}).SetupWithManager(s.mgr)
	}},
	{name: "principal-trigger", caches: principalCaches, setup: func(_ context.Context, s *shared) error {
		return (&addon.PrincipalTrigger{Client: s.mgr.GetClient(), Discovery: s.discovery, Trigger: s.addonManager.Trigger}).SetupWithManager(s.mgr)
	}},
	{name: "agent-version", caches: principalCaches, setup: func(_ context.Context, s *shared) error {
		return (&agentversion.Reconciler{Client: s.mgr.GetClient(), Principal: s.cfg.PrincipalDeploymentKey,
			Object:       types.NamespacedName{Namespace: s.cfg.Namespace, Name: agentversion.DefaultName},
			DefaultImage: agentconfig.DefaultImage, Events: s.recorder}).SetupWithManager(s.mgr)
	}},
	{name: "cluster-secrets", enabled: func(c *Config) bool { return c.ClusterSecrets }, caches: certificateCaches, setup: setupClusterSecrets},
	{name: "hub-pki", enabled: func(c *Config) bool { return c.CreateCA || c.PrincipalPKI }, caches: principalCaches, setup: setupHubPKI},
	{name: "spoke-readiness", caches: spokeReadinessCaches, setup: func(_ context.Context, s *shared) error {
		return (&spokeready.Reconciler{Client: s.mgr.GetClient()}).SetupWithManager(s.mgr)
	}},
}

// addonCaches: the add-on's own API objects, and what its render reads (pkg/plan): the records,
// the CA secret, the principal's Service and Deployment.
func addonCaches(c *Config) map[client.Object]cache.ByObject {
	out := addon.Caches()
	for obj, by := range certificateCaches(c) {
		out[obj] = by
	}
	for obj, by := range principalCaches(c) {
		out[obj] = by
	}
	return out
}

// spokeReadinessCaches: the add-on's own API objects and the readiness works.
func spokeReadinessCaches(*Config) map[client.Object]cache.ByObject {
	out := addon.Caches()
	work, workBy := spokeready.WorkCache()
	out[work] = workBy
	return out
}

// certificateCaches: the records in the manager's namespace, the CA secret, and the CSRs of
// this add-on's signer.
func certificateCaches(c *Config) map[client.Object]cache.ByObject {
	records, recordsBy := issued.RecordsCache(c.Namespace)
	secret, secretBy := authority.SecretCache(c.CAKey)
	return map[client.Object]cache.ByObject{records: recordsBy, secret: secretBy, &certificatesv1.CertificateSigningRequest{}: certificates.CSRCache()}
}

// principalCaches: the principal's Service (discovery) and Deployment (its image, its roll).
func principalCaches(c *Config) map[client.Object]cache.ByObject {
	svc, svcBy := principal.ServiceCache(c.PrincipalServiceKey)
	deploy, deployBy := agentversion.PrincipalCache(c.PrincipalDeploymentKey)
	return map[client.Object]cache.ByObject{svc: svcBy, deploy: deployBy}
}

// setupAddon runs addon-framework's manager with this add-on, and the status reporter.
func setupAddon(_ context.Context, s *shared) error {
	addonClient, err := addonclient.NewForConfig(s.restConfig)
	if err != nil {
		return err
	}
	reporter := addon.NewStatusReporter(addonClient, s.recorder, statusReportDelay)
	if err := reporter.SetupWithManager(s.mgr); err != nil {
		return err
	}
	reader := s.mgr.GetClient()
	agentAddon, err := addon.New(addon.Options{
		Principal:     s.discovery.Discover,
		AgentVersions: agentversion.Getter{Reader: reader},
		PrincipalImage: func(ctx context.Context) (string, string, error) {
			return agentversion.ReadPrincipalImage(ctx, reader, s.cfg.PrincipalDeploymentKey)
		},
		ConfigGetter:   addon.CachedConfigGetter{Reader: reader},
		Customizations: customization.Getter{Reader: reader},
		CA:             s.ca,
		Subject:        s.cfg.Subject,
		Reporter:       reporter,
		Records:        s.records,
		Assignment:     assignment.Resolver{Reader: reader},
		Works:          s.mgr.GetAPIReader(),
	})
	if err != nil {
		return err
	}
	addonMgr, err := addonmanager.New(s.restConfig)
	if err != nil {
		return fmt.Errorf("creating the add-on manager: %w", err)
	}
	if err := addonMgr.AddAgent(agentAddon); err != nil {
		return err
	}
	s.addonManager = addonMgr
	// addon-framework has no leader election of its own: run it as a leader-only runnable.
	return s.mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if err := addon.StartManager(ctx, s.restConfig, addonMgr); err != nil {
			return fmt.Errorf("starting the add-on manager: %w", err)
		}
		<-ctx.Done()
		return nil
	}))
}

func (c *Config) policy() policy.Policy {
	return policy.Policy{Subject: c.Subject, GRPCServerUsername: c.GRPCServerUsername, MaxLifetime: c.CertLifetime}
}

func setupApprover(_ context.Context, s *shared) error {
	return (&approver.Reconciler{Client: s.mgr.GetClient(), CA: s.ca, Policy: s.cfg.policy(), RecordNamespace: s.cfg.Namespace,
		Events: s.recorder}).SetupWithManager(s.mgr)
}

func setupSigner(_ context.Context, s *shared) error {
	return (&signer.Reconciler{Client: s.mgr.GetClient(), CA: s.ca, Policy: s.cfg.policy(), Lifetime: s.cfg.CertLifetime,
		RecordNamespace: s.cfg.Namespace, Events: s.recorder}).SetupWithManager(s.mgr)
}

// setupCertificateMetrics registers the per-CA certificate collector, computed from the cache at
// scrape time. Replace, not add: a process may run the manager more than once (tests).
func setupCertificateMetrics(_ context.Context, s *shared) error {
	collector := &metrics.Collector{Reader: s.mgr.GetClient(), CA: s.ca}
	ctrlmetrics.Registry.Unregister(collector)
	if err := ctrlmetrics.Registry.Register(collector); err != nil {
		return fmt.Errorf("registering the per-CA certificate metric: %w", err)
	}
	return nil
}

// fleetMetricsCaches: the add-on's ManagedClusterAddOns and the records.
func fleetMetricsCaches(c *Config) map[client.Object]cache.ByObject {
	out := addon.Caches()
	records, recordsBy := issued.RecordsCache(c.Namespace)
	out[records] = recordsBy
	return out
}

// setupFleetMetrics registers the fleet's gauges (pkg/fleetmetrics), computed from the cache at
// scrape time, on every replica, with the cache of reduced deploy works the version and mode
// gauges read. Replace, not add, as for the certificate metrics.
func setupFleetMetrics(_ context.Context, s *shared) error {
	deployed, err := fleetmetrics.NewDeployedCache(s.mgr.GetConfig(), s.mgr.GetScheme())
	if err != nil {
		return fmt.Errorf("the fleet metrics' cache of deploy works: %w", err)
	}
	if err := s.mgr.Add(fleetmetrics.RunOnEveryReplica{Cache: deployed}); err != nil {
		return err
	}
	collector := &fleetmetrics.Collector{Reader: s.mgr.GetClient(), RecordNamespace: s.cfg.Namespace, Deployed: deployed}
	ctrlmetrics.Registry.Unregister(collector)
	if err := ctrlmetrics.Registry.Register(collector); err != nil {
		return fmt.Errorf("registering the fleet metrics: %w", err)
	}
	return nil
}

// setupClusterSecrets runs the cluster secret controller with a cache of its own: the
// manager's cache holds the CA secret only, and this one only the agents' cluster secrets.
func setupClusterSecrets(_ context.Context, s *shared) error {
	c, mgr := s.cfg, s.mgr
	namespace := c.ClusterSecretNamespace
	if namespace == "" {
		namespace = c.CAKey.Namespace
	}
	r := &clustersecret.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), CA: s.ca, Namespace: namespace,
		Records: s.records, ResourceProxyAddress: c.ResourceProxyAddress, Lifetime: c.ClusterSecretCertLifetime, Events: s.recorder,
		Placements: assignment.Resolver{Reader: mgr.GetClient()}, Groups: c.ClusterSecretGroups, CopyLabels: c.CopyLabels}
	opts, err := clustersecret.SecretCacheOptions(r.Namespaces()...)
	if err != nil {
		return err
	}
	opts.Scheme, opts.Mapper = mgr.GetScheme(), mgr.GetRESTMapper()
	secrets, err := cache.New(mgr.GetConfig(), opts)
	if err != nil {
		return fmt.Errorf("creating the cluster secret cache: %w", err)
	}
	if err := mgr.Add(secrets); err != nil {
		return err
	}
	r.Secrets = secrets
	return r.SetupWithManager(mgr)
}

// setupHubPKI runs the hub PKI controller (pkg/hubpki).
func setupHubPKI(_ context.Context, s *shared) error {
	cs, err := kubernetes.NewForConfig(s.mgr.GetConfig())
	if err != nil {
		return err
	}
	c := s.cfg
	return (&hubpki.Reconciler{
		Client: s.mgr.GetClient(), APIReader: s.mgr.GetAPIReader(), Secrets: cs.CoreV1(), CA: s.ca,
		CreateCA: c.CreateCA, ServerCerts: c.PrincipalPKI,
		PrincipalService: c.PrincipalServiceKey, ResourceProxyService: c.ResourceProxyServiceKey, PrincipalDeployment: c.PrincipalDeploymentKey,
		PrincipalSANs: c.PrincipalExtraSANs, ResourceProxySANs: c.ResourceProxyExtraSANs,
		Lifetime: c.ServerCertLifetime, Events: s.recorder,
	}).SetupWithManager(s.mgr)
}
