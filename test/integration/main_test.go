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

	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testenv"
)

const (
	caNamespace = hubfixture.CANamespace
	caName      = hubfixture.CAName
)

var (
	env         *testenv.Env
	hub         *hubfixture.Hub
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
	if hub, err = hubfixture.Prepare(ctx, env.Client); err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		return 1
	}
	caCertPEM, caKeyPEM = hub.CACertPEM, hub.CAKeyPEM
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: groupNamespace}}); err != nil {
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

func startManager(ctx context.Context) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	metricsAddr = l.Addr().String()
	_ = l.Close()
	o := hubfixture.ManagerOptions(env.Config)
	o.MetricsBindAddress = metricsAddr
	o.MetricsSecure = false // the tests scrape plain HTTP; test/chartinstall proves the secure endpoint
	o.ClusterSecretGroups = []string{groupPlacement.Namespace + "/" + groupPlacement.Name + "=" + groupNamespace + "," + groupResourceProxy}
	cfg, err := o.Validate()
	if err != nil {
		return err
	}
	return cfg.Run(klog.NewContext(ctx, klog.Background()))
}

func caSecret() *corev1.Secret { return hub.CASecret() }
