package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	whv1alpha1 "open-cluster-management.io/ocm/pkg/addon/webhook/v1alpha1"
	whv1beta1 "open-cluster-management.io/ocm/pkg/addon/webhook/v1beta1"
)

// The add-on CRDs whose v1alpha1 <-> v1beta1 conversion OCM's webhook serves.
var addonCRDs = []string{
	"managedclusteraddons.addon.open-cluster-management.io",
	"clustermanagementaddons.addon.open-cluster-management.io",
}

type conversionWebhook struct {
	url    string
	caFile string
	errs   chan error
}

// wait blocks until the webhook server stops.
func (w *conversionWebhook) wait(ctx context.Context) error {
	select {
	case err := <-w.errs:
		return err
	case <-ctx.Done():
		return nil
	}
}

// startConversionWebhook serves OCM v1.2.1's add-on conversion webhook on 127.0.0.1 with a
// self-signed certificate and points the add-on CRDs' spec.conversion at it.
//
// It registers the same scheme and webhooks as pkg/addon/webhook.SetupWebhookServer, but builds
// the manager itself instead of calling WebhookOptions.RunWebhookServer, which binds health and
// metrics servers to the fixed ports :8000 and :8080 on all interfaces (clashing with anything
// else on the machine, e.g. a second test run) and reads its config from the global --kubeconfig.
func startConversionWebhook(ctx context.Context, cfg *rest.Config, port int, certDir string) (*conversionWebhook, error) {
	var err error
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	// certutil makes a CA and a serving cert signed by it; certPEM holds both, so it also works
	// as the CRDs' caBundle.
	certPEM, keyPEM, err := cert.GenerateSelfSignedCertKey("127.0.0.1", nil, []string{"localhost"})
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(certDir, "ca.crt")
	for name, data := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM, "ca.crt": certPEM} {
		if err := os.WriteFile(filepath.Join(certDir, name), data, 0o600); err != nil {
			return nil, err
		}
	}

	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, whv1alpha1.Install, whv1beta1.Install} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: "127.0.0.1", Port: port, CertDir: certDir,
			TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }},
		}),
	})
	if err != nil {
		return nil, err
	}
	for _, w := range []interface{ Init(ctrl.Manager) error }{
		&whv1alpha1.ManagedClusterAddOnWebhook{}, &whv1beta1.ManagedClusterAddOnWebhook{},
		&whv1alpha1.ClusterManagementAddOnWebhook{}, &whv1beta1.ClusterManagementAddOnWebhook{},
	} {
		if err := w.Init(mgr); err != nil {
			return nil, err
		}
	}
	wh := &conversionWebhook{url: fmt.Sprintf("https://127.0.0.1:%d/convert", port), caFile: caFile, errs: make(chan error, 1)}
	go func() { wh.errs <- mgr.Start(ctx) }()

	started := mgr.GetWebhookServer().StartedChecker()
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		select {
		case err := <-wh.errs:
			return false, fmt.Errorf("webhook server stopped: %v", err)
		default:
		}
		return started(nil) == nil, nil
	}); err != nil {
		return nil, fmt.Errorf("waiting for the conversion webhook on port %d: %w", port, err)
	}

	if err := patchAddonCRDs(ctx, cfg, wh.url, certPEM); err != nil {
		return nil, err
	}
	return wh, nil
}

// patchAddonCRDs sets spec.conversion of the add-on CRDs to our webhook. The caller installs the
// CRDs first; we wait a little in case it does so concurrently.
func patchAddonCRDs(ctx context.Context, cfg *rest.Config, url string, caBundle []byte) error {
	client, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	crds := client.ApiextensionsV1().CustomResourceDefinitions()
	for _, name := range addonCRDs {
		err := wait.PollUntilContextTimeout(ctx, time.Second, 60*time.Second, true, func(ctx context.Context) (bool, error) {
			err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				crd, err := crds.Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if len(crd.Spec.Versions) < 2 {
					klog.InfoS("CRD serves a single version; conversion will never be called", "crd", name)
				}
				crd.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{
					Strategy: apiextensionsv1.WebhookConverter,
					Webhook: &apiextensionsv1.WebhookConversion{
						ClientConfig:             &apiextensionsv1.WebhookClientConfig{URL: &url, CABundle: caBundle},
						ConversionReviewVersions: []string{"v1", "v1beta1"},
					},
				}
				_, err = crds.Update(ctx, crd, metav1.UpdateOptions{})
				return err
			})
			if apierrors.IsNotFound(err) {
				klog.InfoS("Waiting for CRD to be installed", "crd", name)
				return false, nil
			}
			return err == nil, err
		})
		if err != nil {
			return fmt.Errorf("pointing CRD %s at the conversion webhook: %w", name, err)
		}
		klog.InfoS("CRD conversion set to webhook", "crd", name, "url", url)
	}
	return nil
}

// freePort asks the kernel for a free loopback port. Another process could take it before we
// bind it; pass --webhook-port to avoid that race.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
