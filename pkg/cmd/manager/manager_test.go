package manager

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestOptions(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "argocd-agent-addon") // as the chart's Deployment sets it
	o := NewOptions()
	if o.Namespace != "argocd-agent-addon" {
		t.Fatalf("namespace %q, want $POD_NAMESPACE", o.Namespace)
	}
	if _, err := o.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	fs := pflag.NewFlagSet("manager", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--ca-secret=gitops/ca", "--cert-lifetime=24h", "--certificate-subject=ocm", "--leader-elect=false", "--kube-api-qps=20", "--kube-api-burst=40"}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Validate(); err != nil || o.CASecret != "gitops/ca" || o.CertLifetime != 24*time.Hour || o.LeaderElect || o.KubeAPIQPS != 20 || o.KubeAPIBurst != 40 {
		t.Fatalf("flags not applied: %+v (%v)", o, err)
	}

	for name, tc := range map[string]struct {
		mutate func(*Options)
		want   string
	}{
		"CA secret without namespace":          {func(o *Options) { o.CASecret = "argocd-agent-ca" }, "--ca-secret"},
		"CA secret bad name":                   {func(o *Options) { o.CASecret = "argocd/Bad_Name" }, "--ca-secret"},
		"lifetime too short":                   {func(o *Options) { o.CertLifetime = 30 * time.Second }, "--cert-lifetime"},
		"lifetime too long":                    {func(o *Options) { o.CertLifetime = 10 * 365 * 24 * time.Hour }, "--cert-lifetime"},
		"unknown subject":                      {func(o *Options) { o.CertificateSubject = "cn" }, "--certificate-subject"},
		"renew deadline past the lease":        {func(o *Options) { o.RenewDeadline = o.LeaseDuration }, "--leader-election-lease-duration"},
		"retry period near the renew deadline": {func(o *Options) { o.RetryPeriod = o.RenewDeadline }, "--leader-election-retry-period"},
		"zero QPS":                             {func(o *Options) { o.KubeAPIQPS = 0 }, "--kube-api-qps"},
		"NaN QPS":                              {func(o *Options) { o.KubeAPIQPS = float32(math.NaN()) }, "--kube-api-qps"},
		"burst below QPS":                      {func(o *Options) { o.KubeAPIBurst = 10 }, "--kube-api-burst"},
		"no namespace":                         {func(o *Options) { o.Namespace = "" }, "--namespace"},
		"principal service without namespace":  {func(o *Options) { o.PrincipalService = "argocd-agent-principal" }, "--principal-service"},
		"principal fallback with a scheme":     {func(o *Options) { o.PrincipalFallbackAddress = "https://principal" }, "--principal-fallback-address"},
		"resource proxy without a port":        {func(o *Options) { o.ResourceProxyAddress = "argocd-agent-resource-proxy" }, "--resource-proxy-address"},
		"cluster secret namespace bad":         {func(o *Options) { o.ClusterSecretNamespace = "Argo CD" }, "--cluster-secret-namespace"},
		"cluster secret group without address": {func(o *Options) { o.ClusterSecretGroups = []string{"addon/eu=argocd-eu"} }, "--cluster-secret-group"},
		"cluster secret group twice": {func(o *Options) {
			o.ClusterSecretGroups = []string{"addon/eu=argocd-eu,proxy:9090", "addon/eu=argocd-eu2,proxy:9090"}
		}, "given twice"},
		"cluster secret lifetime too long": {func(o *Options) { o.ClusterSecretCertLifetime = 10 * 365 * 24 * time.Hour }, "--cluster-secret-cert-lifetime"},
	} {
		t.Run(name, func(t *testing.T) {
			o := NewOptions()
			tc.mutate(o)
			if _, err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error naming %s, got %v", tc.want, err)
			}
		})
	}
}

func TestMetricsOptions(t *testing.T) {
	o := NewOptions()
	if !o.MetricsSecure || o.MetricsCertDir != "" {
		t.Fatalf("metrics default to secure=%v cert-dir=%q, want secure with a self-signed certificate", o.MetricsSecure, o.MetricsCertDir)
	}
	secure := (&Config{Options: o}).metricsServerOptions()
	if !secure.SecureServing || secure.FilterProvider == nil || secure.BindAddress != ":8080" || secure.CertDir != "" {
		t.Fatalf("default metrics server options %+v, want HTTPS on :8080 behind the authentication and authorization filter", secure)
	}

	fs := pflag.NewFlagSet("manager", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--metrics-secure=false", "--metrics-bind-address=127.0.0.1:9090"}); err != nil {
		t.Fatal(err)
	}
	if err := metricsErr(validate(o)); err != nil {
		t.Fatal(err)
	}
	plain := (&Config{Options: o}).metricsServerOptions()
	if plain.SecureServing || plain.FilterProvider != nil || plain.BindAddress != "127.0.0.1:9090" {
		t.Fatalf("--metrics-secure=false gives %+v, want plain HTTP without a filter", plain)
	}

	// A certificate directory must hold the certificate and key: controller-runtime would serve
	// a self-signed certificate instead without saying so.
	dir := t.TempDir()
	o = NewOptions()
	fs = pflag.NewFlagSet("manager", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--metrics-cert-dir=" + dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--metrics-cert-dir") {
		t.Fatalf("an empty --metrics-cert-dir validates: %v", err)
	}
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := metricsErr(validate(o)); err != nil {
		t.Fatal(err)
	}
	if got := (&Config{Options: o}).metricsServerOptions().CertDir; got != dir {
		t.Fatalf("cert dir %q, want %q", got, dir)
	}
	o.MetricsSecure = false
	if _, err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--metrics-cert-dir needs --metrics-secure") {
		t.Fatalf("--metrics-cert-dir without --metrics-secure validates: %v", err)
	}
}

// metricsErr is err if it is about a metrics flag: the other flags have their own test.
func metricsErr(err error) error {
	if err != nil && strings.Contains(err.Error(), "--metrics") {
		return err
	}
	return nil
}

// validate is Validate's error alone.
func validate(o *Options) error {
	_, err := o.Validate()
	return err
}

// Controllers that cache the same type must agree on what of it; the ones listed do.
func TestControllerCachesAgree(t *testing.T) {
	o := NewOptions()
	o.Namespace = "addon"
	o.ClusterSecrets, o.CreateCA, o.PrincipalPKI = true, true, true
	cfg, err := o.Validate()
	if err != nil {
		t.Fatal(err)
	}
	byObject, err := cfg.cacheOptions(controllers)
	if err != nil {
		t.Fatal(err)
	}
	if len(byObject) != 8 {
		t.Errorf("%d cached types, want 8 (records, CA secret, CSRs, principal Service and Deployment, the add-on's MCAs and CMA, readiness works)", len(byObject))
	}
	// Two that disagree are refused.
	clash := append([]controller{}, controllers...)
	clash = append(clash, controller{name: "clash", caches: func(c *Config) map[client.Object]cache.ByObject {
		return map[client.Object]cache.ByObject{&corev1.Secret{}: {}}
	}})
	if _, err := cfg.cacheOptions(clash); err == nil || !strings.Contains(err.Error(), "clash") {
		t.Errorf("a second, different cache of Secrets: %v, want an error naming the controller", err)
	}
}
