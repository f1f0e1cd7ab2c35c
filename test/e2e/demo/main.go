// Command demo boots a local OCM hub with simulated managed clusters, each running Argo CD's
// application-controller and repo-server, the Argo CD agent principal, and the add-on installed
// from its chart; it labels the first cluster, which gets the agent, and ends with an Argo CD
// Application created on the hub deployed there, Synced and Healthy on the hub. `make demo`
// builds the tools it needs and runs it. Ctrl-C stops everything it started.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/argocd"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/e2e/harness"
)

func main() {
	n := flag.Int("clusters", 2, "number of simulated managed clusters")
	dir := flag.String("dir", "", "directory for kubeconfigs, files and logs (default: a new temporary directory)")
	flag.Parse()
	// The API servers' test environment logs through controller-runtime, which otherwise prints
	// a stack trace saying no logger was set; the demo prints its own progress instead.
	ctrllog.SetLogger(logr.Discard())
	if err := run(*n, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(n int, dir string) error {
	if n < 1 {
		return fmt.Errorf("--clusters must be at least 1")
	}
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "argocd-agent-addon-demo-"); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	began := time.Now()
	say := func(format string, args ...any) {
		fmt.Printf("[%6.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	var clusters []string
	for i := 1; i <= n; i++ {
		clusters = append(clusters, fmt.Sprintf("cluster%d", i))
	}
	say("starting: hub, %d managed clusters, principal and add-on (files and logs in %s)", n, dir)
	e, err := harness.Start(ctx, harness.Options{Dir: dir, Clusters: clusters, Progress: say, ArgoCD: true})
	defer harness.RemoveManagerImage()
	if err != nil {
		return err
	}
	defer func() {
		say("stopping everything")
		e.Stop()
		say("stopped; files and logs are in %s", dir)
	}()

	// An app for cluster1, waiting on the hub before the cluster has an agent: revisions v1 and
	// v2 of a source served from a registry on this machine, and its repository for the
	// project, which the principal hands to the agents.
	for _, rev := range []string{"v1", "v2"} {
		if err := e.Sources.Push(ctx, argocd.GuestbookRepo, rev, argocd.Guestbook(rev)); err != nil {
			return err
		}
	}
	repoURL := e.Sources.RepoURL(argocd.GuestbookRepo)
	if err := e.Hub.Client.Create(ctx, e.Sources.RepositorySecret(harness.ArgoCDNamespace, "guestbook-repo", argocd.GuestbookRepo, "default")); err != nil {
		return err
	}
	if err := e.Hub.Client.Create(ctx, argocd.HubApplication(clusters[0], "guestbook", repoURL, "v1")); err != nil {
		return err
	}
	say("Application %s/guestbook created on the hub (source %s, revision v1)", clusters[0], repoURL)
	labelled := time.Now()
	if err := e.SetEnabled(ctx, clusters[0], true); err != nil {
		return err
	}
	say("labelled %s %s=enabled: OCM installs the add-on there", clusters[0], harness.EnableLabel)
	if _, err := e.StartAgent(ctx, clusters[0]); err != nil {
		return err
	}
	say("%s: add-on applied, certificate issued, the Argo CD agent's pod runs on the cluster's node", clusters[0])
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		names, _ := e.Principal.ConnectedAgents(ctx)
		mca := &addonv1beta1.ManagedClusterAddOn{}
		if err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: clusters[0], Name: identity.AddonName}, mca); err != nil {
			return false, nil
		}
		return slices.Contains(names, clusters[0]) &&
			meta.IsStatusConditionTrue(mca.Status.Conditions, addonv1beta1.ManagedClusterAddOnConditionAvailable), nil
	}); err != nil {
		return fmt.Errorf("the agent of %s did not connect: see the logs in %s", clusters[0], dir)
	}
	say("%s: agent connected to the principal over mTLS; the add-on is Available", clusters[0])
	var last argocd.AppStatus
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		st, err := argocd.ReadAppStatus(ctx, e.Hub.Client, clusters[0], "guestbook")
		if err != nil {
			return false, nil
		}
		last = st
		return st.Sync == "Synced" && st.Health == "Healthy", nil
	}); err != nil {
		return fmt.Errorf("the Application %s/guestbook is not Synced and Healthy on the hub (last: %s): see the logs in %s", clusters[0], last, dir)
	}
	say("%s: Application guestbook deployed by the cluster's Argo CD, Synced and Healthy on the hub, %.0fs after the label",
		clusters[0], time.Since(labelled).Seconds())

	adc := &addonv1beta1.AddOnDeploymentConfig{}
	if err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: harness.AddonNamespace, Name: "argocd-agent"}, adc); err != nil {
		return err
	}
	adc.APIVersion, adc.Kind, adc.ManagedFields = addonv1beta1.GroupVersion.String(), "AddOnDeploymentConfig", nil
	adcYAML, err := yaml.Marshal(adc)
	if err != nil {
		return err
	}
	adcFile, caFile := filepath.Join(dir, "addondeploymentconfig.yaml"), filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(adcFile, adcYAML, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(caFile, e.CACertPEM, 0o600); err != nil {
		return err
	}
	fmt.Printf(`
The hub is up. Try:

  export KUBECONFIG=%s
  kubectl get managedclusters
  kubectl get managedclusteraddons -A
  kubectl get csr
  kubectl get applications -A -w                    # watch sync and health come back
  kubectl -n %s patch application guestbook --type merge -p '{"spec":{"source":{"targetRevision":"v2"}}}'
`, e.HubKubeconfig, clusters[0])
	if n > 1 {
		appFile := filepath.Join(dir, "guestbook-"+clusters[1]+".yaml")
		app, err := yaml.Marshal(argocd.HubApplication(clusters[1], "guestbook", repoURL, "v1").Object)
		if err != nil {
			return err
		}
		if err := os.WriteFile(appFile, app, 0o600); err != nil {
			return err
		}
		fmt.Printf("  kubectl apply -f %s   # another app, for %s\n", appFile, clusters[1])
		fmt.Printf("  kubectl label managedcluster %s %s=enabled     # its agent starts, connects and deploys it\n", clusters[1], harness.EnableLabel)
	}
	fmt.Printf(`  kubectl label managedcluster %s %s-                # the add-on and its objects go away
  go run ./cmd/argocd-agent-addon render --cluster %s --config %s --ca %s

Each cluster has its own API server and a real node that runs its pods:
  KUBECONFIG=%[6]s/<cluster>.kubeconfig kubectl get pods -A
  KUBECONFIG=%[6]s/<cluster>.kubeconfig kubectl logs -n argocd deploy/argocd-agent-agent
The manager runs as pod %[7]s in %[8]s on the hub's node:
  KUBECONFIG=%[9]s kubectl get pods -n %[8]s
Press Ctrl-C to stop everything.
`, clusters[0], harness.EnableLabel, clusters[0], adcFile, caFile, dir, e.ManagerPod, harness.AddonNamespace, e.HubKubeconfig)
	<-ctx.Done()
	return nil
}
