// Command ocm-local runs real Open Cluster Management (OCM v1.2.1) controllers as local processes
// against an existing kube-apiserver (for example one started by controller-runtime's envtest),
// so tests can exercise a real hub and real klusterlet agents without containers.
//
//	ocm-local hub   --kubeconfig K [--client-ca-cert C --client-ca-key K] [--webhook-port P] ...
//	ocm-local spoke --hub-kubeconfig K --cluster-name C --agent-namespace NS [--spoke-kubeconfig S] ...
//
// It wires OCM's own entry points the way OCM's test/integration suites do; see README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/openshift/library-go/pkg/controller/controllercmd"
	"github.com/openshift/library-go/pkg/operator/events"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/featuregate"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var run func(ctx context.Context, args []string) error
	switch os.Args[1] {
	case "hub":
		run = runHub
	case "spoke":
		run = runSpoke
	default:
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[2:]); err != nil {
		klog.ErrorS(err, "ocm-local "+os.Args[1]+" failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: ocm-local hub|spoke [flags]   (ocm-local hub -h for flags)")
	os.Exit(2)
}

// newFlagSet returns a flag set with klog's flags (-v, ...) added. Each subcommand uses its own
// set rather than flag.CommandLine, where controller-runtime already registers --kubeconfig.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("ocm-local "+name, flag.ExitOnError)
	klog.InitFlags(fs)
	return fs
}

// setupLogging sends controller-runtime's logs (used by the webhook server and some OCM code)
// through klog, as OCM's binaries do.
func setupLogging() {
	ctrl.SetLogger(klog.NewKlogr())
}

// restConfig loads a kubeconfig file with the QPS/burst OCM's commands set (startWithQPS in
// pkg/common/options); client-go's default of 5 QPS slows every controller down.
func restConfig(path string) (*rest.Config, error) {
	if path == "" {
		return nil, fmt.Errorf("a kubeconfig path is required")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// controllerContext is what OCM's Run* entry points take. OCM's binaries get it from
// library-go's controllercmd (leader election, health server); we only need the config and a
// recorder. Server stays nil, which only skips placement's debug endpoint.
func controllerContext(cfg *rest.Config, component string) *controllercmd.ControllerContext {
	cfg = rest.CopyConfig(cfg)
	// Each component says who it is, so an API server audit log can tell their requests apart.
	cfg.UserAgent = "ocm-local/" + component
	return &controllercmd.ControllerContext{
		KubeConfig:    cfg,
		EventRecorder: events.NewLoggingEventRecorder(component, clock.RealClock{}),
	}
}

// addFeatureGates registers OCM's default gates on gate, as OCM's commands do before parsing
// flags (the controllers panic on unknown gates otherwise).
func addFeatureGates(gate featuregate.MutableFeatureGate, defaults ...map[featuregate.Feature]featuregate.FeatureSpec) error {
	for _, d := range defaults {
		if err := gate.Add(d); err != nil {
			return err
		}
	}
	return nil
}

// component is one long-running part of a process; run returns when ctx ends.
type component struct {
	name string
	run  func(ctx context.Context) error
}

// runAll runs all components until ctx ends (nil) or one of them stops early (its error). A
// test harness wants a dead process rather than one that silently lacks a controller.
func runAll(ctx context.Context, comps ...component) error {
	errs := make(chan error, len(comps))
	for _, c := range comps {
		go func() {
			err := c.run(ctx)
			if err == nil {
				err = fmt.Errorf("stopped")
			}
			errs <- fmt.Errorf("%s: %w", c.name, err)
		}()
	}
	select {
	case err := <-errs:
		if ctx.Err() == nil {
			return err
		}
	case <-ctx.Done():
	}
	return nil
}
