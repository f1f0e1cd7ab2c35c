package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/klog/v2"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/argocd"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/chart"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testenv"
)

// Names on the hub.
const (
	// ArgoCDNamespace holds the CA secret and the principal, as in an upstream install.
	ArgoCDNamespace = "argocd"
	// AddonNamespace is where the chart is installed.
	AddonNamespace = "argocd-agent-addon"
	// EnableLabel selects clusters for the chart's Placement.
	EnableLabel = "argocd-agent"
	// FleetConfigName is the chart's fleet-wide AddOnDeploymentConfig, in AddonNamespace.
	FleetConfigName = "argocd-agent"
	// CASecretName is the hub CA secret, in ArgoCDNamespace, that the manager signs with and
	// the principal trusts.
	CASecretName = "argocd-agent-ca"
)

// Options configure Start.
type Options struct {
	// Dir holds every file and log. Required.
	Dir string
	// Clusters to join; default cluster1 and cluster2.
	Clusters []string
	// CertificateSubject and CertLifetime are passed to the manager.
	CertificateSubject string
	CertLifetime       time.Duration
	// Progress, if set, is told each step.
	Progress func(format string, args ...any)
}

// Env is a running hub, its managed clusters, the principal and the manager.
type Env struct {
	opts          Options
	Hub           *testenv.Env
	HubKubeconfig string
	Spokes        map[string]*Spoke
	OCMHub        *proc.Process
	Manager       *proc.Process
	ManagerBin    string
	MetricsAddr   string
	Principal     *argocd.Principal
	CACertPEM     []byte
	CAKeyPEM      []byte
	// ServerCACertPEM and ServerCAKeyPEM, if set, issue the principal's server certificate
	// when it (re)starts, instead of the hub CA: a CA rollover reissues it from the new CA.
	ServerCACertPEM, ServerCAKeyPEM []byte

	ctx     context.Context
	mu      sync.Mutex
	stops   []func()
	agents  map[string]*RunningAgent
	redises []func()
}

// Spoke is one managed cluster: its own API server and its OCM klusterlet agents.
type Spoke struct {
	Name       string
	API        *testenv.Env
	Kubeconfig string
	OCM        *proc.Process
}

// RunningAgent is a cluster's Argo CD agent process, started from what the add-on delivered and
// restarted, from what is delivered then, whenever the agent Deployment's pod template changes,
// as the deployment controller and kubelet would roll its pod.
type RunningAgent struct {
	name   string
	cancel context.CancelFunc

	mu        sync.Mutex
	agent     *argocd.Agent
	delivered *Delivered
	restarts  int
	stopRedis func()
}

// Agent is the current agent process.
func (r *RunningAgent) Agent() *argocd.Agent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.agent
}

// Delivered is what the current process was started with.
func (r *RunningAgent) Delivered() *Delivered {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.delivered
}

// Restarts counts the rolls since the first start.
func (r *RunningAgent) Restarts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.restarts
}

func (r *RunningAgent) stop() {
	r.cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.agent != nil {
		r.agent.Stop()
	}
	if r.stopRedis != nil {
		r.stopRedis()
	}
}

func (o Options) progress(format string, args ...any) {
	if o.Progress != nil {
		o.Progress(format, args...)
	}
}

// Start boots everything but the agents: hub API server and OCM hub, one API server and
// klusterlet per cluster (joined and accepted), the CA, the principal, the chart's objects and
// the manager. Stop undoes it; processes also end with ctx.
func Start(ctx context.Context, o Options) (_ *Env, err error) {
	if o.Dir == "" {
		return nil, errors.New("harness: Dir is required")
	}
	if len(o.Clusters) == 0 {
		o.Clusters = []string{"cluster1", "cluster2"}
	}
	if o.CertificateSubject == "" {
		o.CertificateSubject = string(identity.SubjectClusterName)
	}
	if o.CertLifetime == 0 {
		o.CertLifetime = 24 * time.Hour
	}
	e := &Env{opts: o, ctx: ctx, Spokes: map[string]*Spoke{}, agents: map[string]*RunningAgent{}}
	defer func() {
		if err != nil {
			e.Stop()
		}
	}()
	ocmLocal, err := binaryFromEnv("OCM_LOCAL_BIN")
	if err != nil {
		return nil, err
	}
	helm, err := binaryFromEnv("HELM")
	if err != nil {
		return nil, err
	}
	if e.ManagerBin, err = proc.BuildAddon(o.Dir); err != nil {
		return nil, err
	}

	// Hub.
	hubCRDs, err := HubCRDs(ctx)
	if err != nil {
		return nil, err
	}
	caDir := filepath.Join(o.Dir, "hub-client-ca")
	if e.Hub, err = testenv.StartWith(testenv.Options{CRDs: hubCRDs, ClientCADir: caDir}); err != nil {
		return nil, fmt.Errorf("hub API server: %w", err)
	}
	e.stops = append(e.stops, func() { _ = e.Hub.Stop() })
	e.HubKubeconfig = filepath.Join(o.Dir, "hub.kubeconfig")
	if err := e.Hub.KubeconfigFor("hub-admin", []string{"system:masters"}, e.HubKubeconfig); err != nil {
		return nil, err
	}
	kcm, err := binaryFromEnv("KUBE_CONTROLLER_MANAGER_BIN")
	if err != nil {
		return nil, err
	}
	if err := e.startControllerManager(ctx, kcm, "hub", e.HubKubeconfig); err != nil {
		return nil, err
	}
	o.progress("hub API server up (%s), with kube-controller-manager's garbage collector", e.Hub.Config.Host)
	caCert, caKey := testenv.ClientCAFiles(caDir)
	ready := filepath.Join(o.Dir, "ocm-hub-ready.json")
	if e.OCMHub, err = proc.Start(ctx, "ocm-hub", o.Dir, ocmLocal, "hub", "--kubeconfig", e.HubKubeconfig,
		"--client-ca-cert", caCert, "--client-ca-key", caKey, "--ready-file", ready, "-v", "2"); err != nil {
		return nil, err
	}
	e.stops = append(e.stops, e.OCMHub.Stop)
	if err := e.OCMHub.WaitFor(ctx, 90*time.Second, "OCM hub ready", func() error { _, err := os.Stat(ready); return err }); err != nil {
		return nil, err
	}
	o.progress("OCM hub controllers up (registration, placement, work, addon-manager, conversion webhook)")

	// Managed clusters, each with its own API server.
	spokeCRDs, err := SpokeCRDs(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range o.Clusters {
		s := &Spoke{Name: name}
		if s.API, err = testenv.StartWith(testenv.Options{CRDs: spokeCRDs}); err != nil {
			return nil, fmt.Errorf("API server of %s: %w", name, err)
		}
		e.stops = append(e.stops, func() { _ = s.API.Stop() })
		s.Kubeconfig = filepath.Join(o.Dir, name+".kubeconfig")
		if err := s.API.KubeconfigFor(name+"-admin", []string{"system:masters"}, s.Kubeconfig); err != nil {
			return nil, err
		}
		if err := e.startControllerManager(ctx, kcm, name, s.Kubeconfig); err != nil {
			return nil, err
		}
		if s.OCM, err = proc.Start(ctx, "ocm-"+name, o.Dir, ocmLocal, "spoke", "--hub-kubeconfig", e.HubKubeconfig,
			"--spoke-kubeconfig", s.Kubeconfig, "--cluster-name", name, "--work-dir", filepath.Join(o.Dir, name), "-v", "2"); err != nil {
			return nil, err
		}
		e.stops = append(e.stops, s.OCM.Stop)
		e.Spokes[name] = s
	}
	for _, name := range o.Clusters {
		if err := e.waitJoined(ctx, name); err != nil {
			return nil, err
		}
		o.progress("cluster %s joined and accepted", name)
	}

	// The CA the principal trusts and the manager signs with, as `argocd-agentctl pki init` makes it.
	if e.CACertPEM, e.CAKeyPEM, err = testca.New("argocd-agent-ca", 365*24*time.Hour); err != nil {
		return nil, err
	}
	c := e.Hub.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ArgoCDNamespace}}); err != nil {
		return nil, err
	}
	if err := c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ArgoCDNamespace, Name: CASecretName}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: e.CACertPEM, corev1.TLSPrivateKeyKey: e.CAKeyPEM},
	}); err != nil {
		return nil, err
	}
	if err := e.StartPrincipal(ctx); err != nil {
		return nil, err
	}
	o.progress("Argo CD agent principal up on %s (mTLS, CA %s)", e.Principal.Addr(), "argocd/argocd-agent-ca")

	// The add-on as its chart installs it, with the manager as a local process.
	objs, err := chart.Render(helm, AddonNamespace, map[string]string{
		"agent.principal.address": e.Principal.Host(),
		"agent.principal.port":    strconv.Itoa(e.Principal.Port()),
		"certificate.subject":     o.CertificateSubject,
	})
	if err != nil {
		return nil, err
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: AddonNamespace}}); err != nil {
		return nil, err
	}
	for _, obj := range objs {
		if obj.GetKind() == "Deployment" {
			continue // no kubelet runs the chart's pod: the manager runs as a process below
		}
		if err := c.Create(ctx, obj); err != nil {
			return nil, fmt.Errorf("installing the chart's %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	if err := e.StartManager(ctx); err != nil {
		return nil, err
	}
	o.progress("add-on manager up (metrics on %s)", e.MetricsAddr)
	return e, nil
}

// startControllerManager runs kube-controller-manager's garbage collector and namespace
// controllers against one API server: OCM relies on them (a ManagedClusterAddOn's ManifestWork
// goes by owner reference; the work agent deletes with foreground propagation).
func (e *Env) startControllerManager(ctx context.Context, bin, name, kubeconfig string) error {
	p, err := proc.Start(ctx, "kube-controller-manager-"+name, e.opts.Dir, bin, "--kubeconfig", kubeconfig,
		"--controllers=garbagecollector,namespace", "--leader-elect=false", "--secure-port=0", "-v=1")
	if err != nil {
		return err
	}
	e.stops = append(e.stops, p.Stop)
	return nil
}

// Dir is where files and logs are.
func (e *Env) Dir() string { return e.opts.Dir }

// StartPrincipal (re)starts the principal with the hub CA, on the same port as before if it ran.
func (e *Env) StartPrincipal(ctx context.Context) error {
	redisAddr, stopRedis, err := argocd.StartRedis(ctx, e.opts.Dir)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.redises = append(e.redises, stopRedis)
	e.mu.Unlock()
	opts := argocd.PrincipalOptions{
		Dir: filepath.Join(e.opts.Dir, "principal"), Kubeconfig: e.HubKubeconfig, Namespace: ArgoCDNamespace,
		AllowedNamespaces: e.opts.Clusters, RedisAddr: redisAddr,
		// As upstream installs it: the principal trusts tls.crt and ca.crt of the hub CA secret,
		// read at start-up.
		ClientCASecret: CASecretName, ServerCACertPEM: e.CACertPEM, ServerCAKeyPEM: e.CAKeyPEM,
		MatchSubject: e.opts.CertificateSubject == string(identity.SubjectClusterName),
	}
	if e.opts.CertificateSubject == string(identity.SubjectOCM) {
		opts.AuthSubjectRegex = `CN=system:open-cluster-management:cluster:([^:]+):addon:argocd-agent:agent:argocd-agent-agent`
	}
	if len(e.ServerCACertPEM) > 0 {
		opts.ServerCACertPEM, opts.ServerCAKeyPEM = e.ServerCACertPEM, e.ServerCAKeyPEM
	}
	if e.Principal != nil {
		opts.ListenPort = e.Principal.Port()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return err
	}
	p, err := argocd.StartPrincipal(ctx, opts)
	if err != nil {
		return err
	}
	e.Principal = p
	return nil
}

// StartManager starts the add-on manager binary against the hub.
func (e *Env) StartManager(ctx context.Context) error {
	ports, err := proc.FreePorts(1)
	if err != nil {
		return err
	}
	e.MetricsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	e.Manager, err = proc.Start(ctx, "manager", e.opts.Dir, e.ManagerBin, "manager",
		"--kubeconfig", e.HubKubeconfig, "--ca-secret", ArgoCDNamespace+"/"+CASecretName,
		"--leader-election-namespace", AddonNamespace, "--namespace", AddonNamespace, "--metrics-bind-address", e.MetricsAddr,
		// The tests scrape plain HTTP; test/chartinstall proves the secure endpoint.
		"--metrics-secure=false",
		"--health-probe-bind-address", "0", "--cert-lifetime", e.opts.CertLifetime.String(),
		"--certificate-subject", e.opts.CertificateSubject, "-v", "2")
	if err != nil {
		return err
	}
	e.stops = append(e.stops, e.Manager.Stop)
	return e.Manager.WaitFor(ctx, 60*time.Second, "metrics endpoint", func() error {
		_, _, err := proc.HTTPGet(ctx, "http://"+e.MetricsAddr+"/metrics")
		return err
	})
}

func (e *Env) waitJoined(ctx context.Context, name string) error {
	return e.OCMHub.WaitFor(ctx, 120*time.Second, "cluster "+name+" joined", func() error {
		mc := &clusterv1.ManagedCluster{}
		if err := e.Hub.Client.Get(ctx, types.NamespacedName{Name: name}, mc); err != nil {
			return err
		}
		for _, t := range []string{clusterv1.ManagedClusterConditionHubAccepted, clusterv1.ManagedClusterConditionJoined, clusterv1.ManagedClusterConditionAvailable} {
			if !meta.IsStatusConditionTrue(mc.Status.Conditions, t) {
				return fmt.Errorf("ManagedCluster %s: %s not true yet", name, t)
			}
		}
		return nil
	})
}

// SetEnabled labels (or unlabels) a cluster for the chart's Placement.
func (e *Env) SetEnabled(ctx context.Context, name string, enabled bool) error {
	mc := &clusterv1.ManagedCluster{}
	if err := e.Hub.Client.Get(ctx, types.NamespacedName{Name: name}, mc); err != nil {
		return err
	}
	patch := client.MergeFrom(mc.DeepCopy())
	if mc.Labels == nil {
		mc.Labels = map[string]string{}
	}
	if enabled {
		mc.Labels[EnableLabel] = "enabled"
	} else {
		delete(mc.Labels, EnableLabel)
	}
	return e.Hub.Client.Patch(ctx, mc, patch)
}

// WaitDelivered waits until the add-on's objects and the signed certificate are on the spoke.
func (e *Env) WaitDelivered(ctx context.Context, name string, timeout time.Duration) (*Delivered, error) {
	s := e.Spokes[name]
	var d *Delivered
	var last error
	var held error // kubelet would not have started the pod yet: shown, since it is the race it closes
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		d, last = ReadDelivered(ctx, s.API.Client, identity.DefaultInstallNamespace)
		if errors.Is(last, ErrPodHeld) && held == nil {
			held = last
		}
		return last == nil, nil
	})
	if held != nil && err == nil {
		e.opts.progress("%s: %v; it started once the objects it requires were on the spoke", name, held)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: add-on objects and certificate not on the spoke within %s: %v", name, timeout, last)
	}
	return d, nil
}

// StartAgent runs cluster name's Argo CD agent from what the add-on delivered to its spoke, and
// plays the kubelet and deployment controller for its Deployment until the agent stops.
func (e *Env) StartAgent(ctx context.Context, name string) (*RunningAgent, error) {
	if _, err := e.WaitDelivered(ctx, name, 120*time.Second); err != nil {
		return nil, err
	}
	dir := filepath.Join(e.opts.Dir, "agent-"+name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	redisAddr, stopRedis, err := argocd.StartRedis(ctx, dir)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithCancel(ctx)
	ra := &RunningAgent{name: name, cancel: cancel, stopRedis: stopRedis}
	if err := e.rollAgent(actx, ra, dir, redisAddr); err != nil {
		ra.stop()
		return nil, err
	}
	deployment := types.NamespacedName{Namespace: ra.Delivered().Namespace, Name: identity.AgentName}
	go e.superviseAgent(actx, ra, deployment, dir, redisAddr)
	go PlayKubelet(actx, e.Spokes[name].API.Client, deployment,
		func() bool { code, err := ra.Agent().Healthz(); return err == nil && code == 200 }, time.Second)
	e.mu.Lock()
	e.agents[name] = ra
	e.mu.Unlock()
	return ra, nil
}

// rollAgent (re)starts the agent process from what is on the spoke now.
func (e *Env) rollAgent(ctx context.Context, ra *RunningAgent, dir, redisAddr string) error {
	d, err := e.WaitDelivered(ctx, ra.name, 120*time.Second)
	if err != nil {
		return err
	}
	ra.mu.Lock()
	old, generation := ra.agent, ra.restarts
	ra.mu.Unlock()
	if old != nil {
		old.Stop()
		generation++
	}
	a, err := argocd.StartAgent(ctx, argocd.AgentOptions{
		// One log per process: agent-<cluster>-<n>.log, n counting the rolls.
		Name: fmt.Sprintf("agent-%s-%d", ra.name, generation), Dir: dir, Kubeconfig: e.Spokes[ra.name].Kubeconfig,
		Namespace: d.Namespace, Mode: d.Mode, PrincipalAddr: net.JoinHostPort(d.Address, strconv.Itoa(d.Port)),
		RootCAPEM: d.CAPEM, ClientCertPEM: d.ClientCertPEM, ClientKeyPEM: d.ClientKey, RedisAddr: redisAddr,
	})
	if err != nil {
		return err
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if ra.agent != nil {
		ra.restarts++
	}
	ra.agent, ra.delivered = a, d
	return nil
}

// superviseAgent rolls the agent whenever the Deployment's pod template changes. It watches the
// Deployment, as the deployment controller does, so it reacts within milliseconds of the work
// agent's update, before the work agent has necessarily applied the objects that follow the
// Deployment in the ManifestWork: the pod must then wait for them as kubelet would. A slow poll
// would hide that race. A check every second backs the watch up whenever it is quiet, closed
// or cannot be opened.
func (e *Env) superviseAgent(ctx context.Context, ra *RunningAgent, deployment types.NamespacedName, dir, redisAddr string) {
	logger := klog.FromContext(ctx).WithValues("cluster", ra.name)
	api := e.Spokes[ra.name].API
	rollIfChanged := func() {
		d := &appsv1.Deployment{}
		err := api.Client.Get(ctx, deployment, d) // the newest, whatever event woke us
		ra.mu.Lock()
		changed := err == nil && podTemplate(d) != ra.delivered.Template
		ra.mu.Unlock()
		if !changed {
			return
		}
		e.opts.progress("%s: agent pod template changed: rolling the agent", ra.name)
		if err := e.rollAgent(ctx, ra, dir, redisAddr); err != nil && ctx.Err() == nil {
			logger.Error(err, "Rolling the agent")
		}
	}
	watcher, err := client.NewWithWatch(api.Config, client.Options{Scheme: api.Scheme})
	if err != nil {
		logger.Error(err, "Watching the agent Deployment: checking every second instead")
	}
	for ctx.Err() == nil {
		events := make(<-chan watch.Event) // never ready: no watch
		var w watch.Interface
		if watcher != nil {
			if w, err = watcher.Watch(ctx, &appsv1.DeploymentList{}, client.InNamespace(deployment.Namespace),
				client.MatchingFields{"metadata.name": deployment.Name}); err == nil {
				events = w.ResultChan()
			} else {
				logger.V(2).Info("Watching the agent Deployment", "err", err)
			}
		}
		rollIfChanged()
		for open := true; open && ctx.Err() == nil; {
			select {
			case <-ctx.Done():
			case _, open = <-events:
			case <-time.After(time.Second):
			}
			if ctx.Err() == nil {
				rollIfChanged()
			}
		}
		if w != nil {
			w.Stop()
		}
		select { // a watch the server closes at once is not re-opened in a tight loop
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RunAgents keeps one agent process per cluster whose add-on is delivered, as the Deployment
// would on a real cluster: started once the objects and certificate are on the spoke, stopped
// when they are gone. It returns when ctx ends.
func (e *Env) RunAgents(ctx context.Context, interval time.Duration, started func(name string, err error)) {
	for {
		for name, s := range e.Spokes {
			e.mu.Lock()
			_, running := e.agents[name]
			e.mu.Unlock()
			_, err := ReadDelivered(ctx, s.API.Client, identity.DefaultInstallNamespace)
			switch {
			case err == nil && !running:
				_, err := e.StartAgent(ctx, name)
				started(name, err)
			case apierrors.IsNotFound(err) && running:
				e.StopAgent(name)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// StopAgent stops cluster name's agent.
func (e *Env) StopAgent(name string) {
	e.mu.Lock()
	a := e.agents[name]
	delete(e.agents, name)
	e.mu.Unlock()
	if a != nil {
		a.stop()
	}
}

// Stop stops everything Start and StartAgent started, in reverse order.
func (e *Env) Stop() {
	e.mu.Lock()
	agents := e.agents
	e.agents = map[string]*RunningAgent{}
	redises := e.redises
	e.mu.Unlock()
	for _, a := range agents {
		a.stop()
	}
	if e.Principal != nil {
		e.Principal.Stop()
	}
	for _, stop := range redises {
		stop()
	}
	for i := len(e.stops) - 1; i >= 0; i-- {
		e.stops[i]()
	}
}

func binaryFromEnv(name string) (string, error) {
	bin := os.Getenv(name)
	if bin == "" {
		return "", fmt.Errorf("%s is not set: run `make test`, or `eval \"$(hack/test-tools.sh)\"` first", name)
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return bin, nil
}
