// Package integration runs the real add-on manager against a real kube-apiserver and etcd with
// the OCM CRDs. No OCM controller runs here: the tests do what OCM's addon-manager would (own
// the ManagedClusterAddOn by the ClusterManagementAddOn, point it at its config) and accept
// clusters as the registration hub would. test/e2e runs the real OCM controllers.
package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/manager"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testenv"
)

const (
	caNamespace     = "argocd"
	caName          = "argocd-agent-ca"
	leaderNamespace = "argocd-agent-addon"
	configNamespace = "open-cluster-management"
)

var (
	env         *testenv.Env
	caCertPEM   []byte
	caKeyPEM    []byte
	metricsAddr string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Unconditional teardown: a test binary that exits without it leaves etcd and kube-apiserver running.
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the API server:", err)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := setup(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- startManager(ctx) }()
	code := m.Run()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
			code = 1
		}
	case <-time.After(30 * time.Second):
		fmt.Fprintln(os.Stderr, "manager did not stop within 30s")
		code = 1
	}
	return code
}

func setup(ctx context.Context) error {
	for _, ns := range []string{caNamespace, leaderNamespace, configNamespace} {
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	var err error
	if caCertPEM, caKeyPEM, err = testca.New("argocd-agent-ca", 365*24*time.Hour); err != nil {
		return err
	}
	if err := env.Client.Create(ctx, caSecret()); err != nil {
		return err
	}
	// The ClusterManagementAddOn the chart installs.
	return env.Client.Create(ctx, &addonv1beta1.ClusterManagementAddOn{
		ObjectMeta: metav1.ObjectMeta{Name: identity.AddonName},
		Spec: addonv1beta1.ClusterManagementAddOnSpec{
			InstallStrategy: addonv1beta1.InstallStrategy{Type: addonv1beta1.AddonInstallStrategyManual},
		},
	})
}

func startManager(ctx context.Context) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	metricsAddr = l.Addr().String()
	_ = l.Close()
	o := manager.NewOptions()
	o.RestConfig = env.Config
	o.CASecret = caNamespace + "/" + caName
	o.LeaderElectionNamespace = leaderNamespace
	o.MetricsBindAddress = metricsAddr
	o.HealthProbeBindAddress = "0"
	if err := o.Validate(); err != nil {
		return err
	}
	return o.Run(klog.NewContext(ctx, klog.Background()))
}

func caSecret() *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: caNamespace, Name: caName},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: caCertPEM, corev1.TLSPrivateKeyKey: caKeyPEM},
	}
}
