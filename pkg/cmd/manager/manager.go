// Package manager is the `argocd-agent-addon manager` command: the hub manager that renders
// the agent's ManifestWorks, and approves and signs the agents' client certificates.
//
// Options are the flags (AddFlags), Validate parses them once into a Config, and Config.Run
// builds the controller-runtime manager from the controllers list (controllers.go): each says
// when it runs, what it caches and how it is set up, as Kubernetes' controller-manager lists
// its controllers.
package manager

import (
	"context"
	"fmt"
	"reflect"

	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"open-cluster-management.io/addon-framework/pkg/addonmanager"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/version"
)

// shared is what the controllers share, built once by Run and handed to each setup.
type shared struct {
	cfg        *Config
	mgr        manager.Manager
	restConfig *rest.Config
	recorder   events.EventRecorder
	ca         *authority.SecretSource
	records    *issued.Records
	discovery  *principal.Discovery
	// addonManager is addon-framework's, which the triggers re-render through; set by the
	// "addon" controller, listed before them.
	addonManager addonmanager.AddonManager
}

// metricsServerOptions serve metrics over HTTPS behind controller-runtime's authentication and
// authorization filter, unless MetricsSecure is off.
func (c *Config) metricsServerOptions() metricsserver.Options {
	opts := metricsserver.Options{BindAddress: c.MetricsBindAddress, SecureServing: c.MetricsSecure}
	if c.MetricsSecure {
		opts.FilterProvider = filters.WithAuthenticationAndAuthorization
		opts.CertDir = c.MetricsCertDir
	}
	return opts
}

// cacheOptions merges what the enabled controllers cache. Two that cache the same type must
// agree on what of it.
func (c *Config) cacheOptions(enabled []controller) (map[client.Object]cache.ByObject, error) {
	byObject := map[client.Object]cache.ByObject{}
	byType := map[reflect.Type]string{}
	for _, ctl := range enabled {
		if ctl.caches == nil {
			continue
		}
		for obj, by := range ctl.caches(c) {
			t := reflect.TypeOf(obj)
			if other, ok := byType[t]; ok {
				for have, haveBy := range byObject {
					if reflect.TypeOf(have) == t && !sameCache(haveBy, by) {
						return nil, fmt.Errorf("controllers %s and %s cache %s differently", other, ctl.name, t)
					}
				}
				continue
			}
			byType[t] = ctl.name
			byObject[obj] = by
		}
	}
	return byObject, nil
}

// sameCache says whether a and b cache the same objects the same way. Transforms are functions,
// which only compare as the same function.
func sameCache(a, b cache.ByObject) bool {
	fn := func(f toolscache.TransformFunc) uintptr {
		if f == nil {
			return 0
		}
		return reflect.ValueOf(f).Pointer()
	}
	selector := func(s fmt.Stringer) string {
		if s == nil || reflect.ValueOf(s).IsNil() {
			return ""
		}
		return s.String()
	}
	return reflect.DeepEqual(a.Namespaces, b.Namespaces) && selector(a.Label) == selector(b.Label) &&
		selector(a.Field) == selector(b.Field) && fn(a.Transform) == fn(b.Transform) &&
		reflect.DeepEqual(a.UnsafeDisableDeepCopy, b.UnsafeDisableDeepCopy)
}

// Run runs the manager until ctx ends.
func (c *Config) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	ctrl.SetLogger(klog.NewKlogr())
	logger.Info("Starting", "version", version.String())

	restConfig, err := hubclient.Config(c.Kubeconfig, c.RestConfig)
	if err != nil {
		return err
	}
	// Every client below (controller-runtime's and addon-framework's) is built from restConfig.
	restConfig.QPS, restConfig.Burst = c.KubeAPIQPS, c.KubeAPIBurst
	scheme, err := hubclient.Scheme()
	if err != nil {
		return err
	}
	var enabled []controller
	for _, ctl := range controllers {
		if ctl.enabled == nil || ctl.enabled(c) {
			enabled = append(enabled, ctl)
		}
	}
	byObject, err := c.cacheOptions(enabled)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       c.metricsServerOptions(),
		HealthProbeBindAddress:        c.HealthProbeBindAddress,
		PprofBindAddress:              c.PprofBindAddress,
		LeaderElection:                c.LeaderElect,
		LeaderElectionID:              leaderElectionID,
		LeaderElectionNamespace:       c.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &c.LeaseDuration,
		RenewDeadline:                 &c.RenewDeadline,
		RetryPeriod:                   &c.RetryPeriod,
		// CachedConfigGetter reads AddOnDeploymentConfigs unstructured; without this, unstructured
		// reads bypass the cache and go to the API server.
		Client: client.Options{Cache: &client.CacheOptions{Unstructured: true}},
		// Nothing reads managedFields from the cache; a ManagedClusterAddOn's are larger than
		// the rest of it.
		Cache:      cache.Options{ByObject: byObject, DefaultTransform: cache.TransformStripManagedFields()},
		Controller: config.Controller{SkipNameValidation: ptr.To(c.SkipControllerNameValidation)},
	})
	if err != nil {
		return fmt.Errorf("creating the controller manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	s := &shared{
		cfg: c, mgr: mgr, restConfig: restConfig,
		recorder:  mgr.GetEventRecorder("argocd-agent-addon"),
		ca:        authority.NewSecretSource(mgr.GetClient(), c.CAKey),
		records:   &issued.Records{Reader: mgr.GetClient(), Namespace: c.Namespace},
		discovery: &principal.Discovery{Reader: mgr.GetClient(), Service: c.PrincipalServiceKey, Fallback: c.PrincipalFallbackAddress},
	}
	for _, ctl := range enabled {
		if err := ctl.setup(ctx, s); err != nil {
			return fmt.Errorf("setting up %s: %w", ctl.name, err)
		}
	}
	// Before any controller decides: what an earlier version kept (revocations on the
	// ClusterManagementAddOn, records it owned) is brought into the records, all that is read now.
	if copied, released, err := issued.Migrate(ctx, mgr.GetClient(), mgr.GetAPIReader(), c.Namespace); err != nil {
		return fmt.Errorf("bringing an earlier version's revocations and records into the records (nothing is decided until they are): %w", err)
	} else if copied+released > 0 {
		klog.InfoS("Brought an earlier version's state into the records", "revocations", copied, "recordsReleased", released, "namespace", c.Namespace)
	}
	return mgr.Start(ctx)
}
