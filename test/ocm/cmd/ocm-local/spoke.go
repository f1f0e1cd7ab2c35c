package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/transport"
	"k8s.io/klog/v2"

	ocmfeature "open-cluster-management.io/api/feature"

	commonoptions "open-cluster-management.io/ocm/pkg/common/options"
	"open-cluster-management.io/ocm/pkg/features"
	"open-cluster-management.io/ocm/pkg/registration/register"
	registrationspoke "open-cluster-management.io/ocm/pkg/registration/spoke"
	"open-cluster-management.io/ocm/pkg/registration/spoke/registration"
	singletonspoke "open-cluster-management.io/ocm/pkg/singleton/spoke"
	workspoke "open-cluster-management.io/ocm/pkg/work/spoke"
)

type spokeOptions struct {
	hubKubeconfig      string
	spokeKubeconfig    string
	clusterName        string
	agentNamespace     string
	workDir            string
	uniqueHubURL       bool
	hubProxyPort       int
	statusSyncInterval time.Duration
	featureGates       string
}

// runSpoke runs a klusterlet for one managed cluster: OCM's singleton agent (registration agent
// + work agent in one process, what `klusterlet agent` runs in Singleton mode).
//
// The managed cluster may be the hub's own API server (no --spoke-kubeconfig). That is
// acceptable for tests because the agents address the managed cluster only through ordinary
// objects (the agent namespace, ClusterClaims, AppliedManifestWorks and whatever ManifestWorks
// carry), while the hub side lives in the cluster namespace; a hub that manages itself
// ("local-cluster") is a normal OCM setup. Two such clusters on one API server need distinct
// --agent-namespace values and distinct hub URLs (see --unique-hub-url), and ManifestWorks of
// the two clusters must not apply the same objects.
func runSpoke(ctx context.Context, args []string) error {
	o := spokeOptions{}
	fs := newFlagSet("spoke")
	fs.StringVar(&o.hubKubeconfig, "hub-kubeconfig", "", "bootstrap kubeconfig for the hub (required; the admin kubeconfig works, as in OCM's integration tests)")
	fs.StringVar(&o.spokeKubeconfig, "spoke-kubeconfig", "", "kubeconfig of the managed cluster (default: --hub-kubeconfig, the hub manages itself)")
	fs.StringVar(&o.clusterName, "cluster-name", "", "ManagedCluster name (required)")
	fs.StringVar(&o.agentNamespace, "agent-namespace", "", "namespace on the managed cluster for the agent's secrets (default open-cluster-management-agent-<cluster>)")
	fs.StringVar(&o.workDir, "work-dir", "", "directory for the bootstrap and hub kubeconfigs (default: a temporary directory)")
	fs.BoolVar(&o.uniqueHubURL, "unique-hub-url", true, "reach a loopback hub through a per-process TCP forwarder, so this cluster's work agent has its own hub hash (see README)")
	fs.IntVar(&o.hubProxyPort, "hub-proxy-port", 0, "port of that forwarder (0: a free port); fix it to keep the hub hash across restarts")
	fs.DurationVar(&o.statusSyncInterval, "status-sync-interval", 5*time.Second, "work agent status feedback interval (OCM default 10s)")
	fs.StringVar(&o.featureGates, "feature-gates", "", "OCM spoke feature gates, e.g. ClusterProperty=true")
	_ = fs.Parse(args)
	setupLogging()
	if o.clusterName == "" {
		return fmt.Errorf("--cluster-name is required")
	}
	if o.agentNamespace == "" {
		o.agentNamespace = "open-cluster-management-agent-" + o.clusterName
	}
	if o.spokeKubeconfig == "" {
		o.spokeKubeconfig = o.hubKubeconfig
	}
	var err error
	if o.workDir == "" {
		// Only a cache: the registration agent keeps the hub credentials in a Secret in the agent
		// namespace and restores them from there on restart.
		if o.workDir, err = os.MkdirTemp("", "ocm-local-"+o.clusterName+"-"); err != nil {
			return err
		}
		defer os.RemoveAll(o.workDir)
	}

	// Gates as `klusterlet agent` registers them (pkg/cmd/spoke/operator.go).
	if err := addFeatureGates(features.SpokeMutableFeatureGate,
		ocmfeature.DefaultSpokeRegistrationFeatureGates, ocmfeature.DefaultSpokeWorkFeatureGates); err != nil {
		return err
	}
	if o.featureGates != "" {
		if err := features.SpokeMutableFeatureGate.Set(o.featureGates); err != nil {
			return err
		}
	}
	// Faster loops, as OCM's registration integration suite sets them: the agent notices its
	// signed certificate and the ManagedCluster within seconds instead of minutes.
	transport.CertCallbackRefreshDuration = 5 * time.Second
	register.ControllerResyncInterval = 5 * time.Second
	registration.CreatingControllerSyncInterval = 1 * time.Second

	hubCfg, err := restConfig(o.hubKubeconfig)
	if err != nil {
		return err
	}
	if o.uniqueHubURL {
		if hubCfg.Host, err = startHubForwarder(ctx, hubCfg.Host, o.hubProxyPort); err != nil {
			return err
		}
	}
	bootstrapFile := filepath.Join(o.workDir, "bootstrap", "kubeconfig")
	if err := writeKubeconfig(hubCfg, bootstrapFile); err != nil {
		return err
	}
	spokeCfg, err := restConfig(o.spokeKubeconfig)
	if err != nil {
		return err
	}
	if err := ensureNamespace(ctx, spokeCfg, o.agentNamespace); err != nil {
		return err
	}

	common := commonoptions.NewAgentOptions()
	common.SpokeClusterName = o.clusterName
	common.ComponentNamespace = o.agentNamespace
	common.HubKubeconfigDir = filepath.Join(o.workDir, "hub-kubeconfig")
	reg := registrationspoke.NewSpokeAgentOptions()
	reg.BootstrapKubeconfig = bootstrapFile
	reg.BootstrapKubeconfigSecret = "" // we bootstrap from the file only, as OCM's integration tests do
	work := workspoke.NewWorkloadAgentOptions()
	work.WorkloadSourceConfig = filepath.Join(common.HubKubeconfigDir, register.KubeconfigFile) // what the registration agent writes
	work.StatusSyncInterval = o.statusSyncInterval

	// The registration agent cancels its context when it must re-bootstrap (in a pod, the
	// container then restarts); we exit with an error so the caller notices.
	agentCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	agent := singletonspoke.NewAgentConfig(common, reg, work, stopAgent)
	klog.InfoS("Starting klusterlet agent", "cluster", o.clusterName, "hub", hubCfg.Host, "agentNamespace", o.agentNamespace, "workDir", o.workDir)
	if err := agent.RunSpokeAgent(agentCtx, controllerContext(spokeCfg, "klusterlet-"+o.clusterName)); err != nil {
		return err
	}
	if ctx.Err() == nil {
		return fmt.Errorf("the registration agent stopped itself (re-bootstrap needed); restart ocm-local spoke")
	}
	return nil
}

// startHubForwarder listens on 127.0.0.1 and pipes every connection to the hub, returning the
// hub URL with the forwarder's port. TLS stays end to end (same host name, so the API server's
// certificate still matches).
//
// Why: the work agent names each AppliedManifestWork "<sha256(hub URL)>-<work name>" on the
// managed cluster and garbage-collects AppliedManifestWorks of its hub hash whose ManifestWork
// is not in its own cluster namespace. Two managed clusters on one API server with the same
// hub URL would therefore share names (every add-on's "addon-<name>-deploy-0") and delete each
// other's work. A distinct URL per agent gives each its own hash.
func startHubForwarder(ctx context.Context, hubURL string, port int) (string, error) {
	u, err := url.Parse(hubURL)
	if err != nil {
		return "", err
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		klog.InfoS("Hub is not on loopback; not forwarding", "hub", hubURL)
		return hubURL, nil
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(host, "443")
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return "", err
	}
	go func() { <-ctx.Done(); _ = l.Close() }()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					klog.ErrorS(err, "Forwarding to hub", "hub", target)
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	u.Host = net.JoinHostPort(host, fmt.Sprint(l.Addr().(*net.TCPAddr).Port))
	return u.String(), nil
}

// writeKubeconfig writes cfg (certificate or token auth) as a self-contained kubeconfig.
func writeKubeconfig(cfg *rest.Config, path string) error {
	cfg = rest.CopyConfig(cfg)
	if err := rest.LoadTLSFiles(cfg); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["hub"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData, InsecureSkipTLSVerify: cfg.Insecure}
	kc.AuthInfos["bootstrap"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["hub"] = &clientcmdapi.Context{Cluster: "hub", AuthInfo: "bootstrap"}
	kc.CurrentContext = "hub"
	return clientcmd.WriteToFile(*kc, path)
}

func ensureNamespace(ctx context.Context, cfg *rest.Config, name string) error {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	_, err = client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
