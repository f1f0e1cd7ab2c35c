package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/argocd"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/chart"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/node"
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
	HubNode       *node.Cluster
	OCMHub        *proc.Process
	// ManagerPod is the manager's pod that holds the leader Lease; MetricsURL its metrics.
	ManagerPod string
	MetricsURL string
	Principal  *argocd.Principal
	CACertPEM  []byte
	CAKeyPEM   []byte
	// ServerCACertPEM and ServerCAKeyPEM, if set, issue the principal's server certificate
	// when it (re)starts, instead of the hub CA: a CA rollover reissues it from the new CA.
	ServerCACertPEM, ServerCAKeyPEM []byte

	ctx     context.Context
	mu      sync.Mutex
	stops   []func()
	agents  map[string]*Agent
	redises []func()
	hostIP  net.IP
	helm    string
	metrics *http.Client
	token   string
}

// Spoke is one managed cluster: its own API server, a real node that runs its pods, and its OCM
// klusterlet agents.
type Spoke struct {
	Name       string
	API        *testenv.Env
	Node       *node.Cluster
	Kubeconfig string
	OCM        *proc.Process
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
	e := &Env{opts: o, ctx: ctx, Spokes: map[string]*Spoke{}, agents: map[string]*Agent{}}
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
	if e.hostIP, err = node.HostIP(); err != nil {
		return nil, err
	}
	managerImage, err := e.buildManagerImage()
	if err != nil {
		return nil, err
	}

	// Hub, with a real node for the manager's pod.
	hubCRDs, err := HubCRDs(ctx)
	if err != nil {
		return nil, err
	}
	if e.Hub, err = testenv.StartWith(testenv.Options{CRDs: hubCRDs, ClientCADir: filepath.Join(o.Dir, "hub", "pki"),
		Node: &testenv.NodeNetwork{AdvertiseAddress: e.hostIP, ServiceCIDR: "10.96.0.0/24"}}); err != nil {
		return nil, fmt.Errorf("hub API server: %w", err)
	}
	e.stops = append(e.stops, func() { _ = e.Hub.Stop() })
	e.HubKubeconfig = filepath.Join(o.Dir, "hub.kubeconfig")
	if err := e.Hub.KubeconfigFor("hub-admin", []string{"system:masters"}, e.HubKubeconfig); err != nil {
		return nil, err
	}
	// kube-controller-manager on the node signs the klusterlets' kube-apiserver-client CSRs, as
	// on a real hub, and runs the garbage collector and namespace controllers OCM relies on.
	if e.HubNode, err = node.Start(ctx, node.Options{Name: "hub", Dir: filepath.Join(o.Dir, "hub"), API: e.Hub,
		Images: []string{managerImage}, Logf: o.progress}); err != nil {
		return nil, fmt.Errorf("hub node: %w", err)
	}
	e.stops = append(e.stops, e.HubNode.Stop)
	o.progress("hub API server up (%s) with a node", e.Hub.Config.Host)
	ready := filepath.Join(o.Dir, "ocm-hub-ready.json")
	if e.OCMHub, err = proc.Start(ctx, "ocm-hub", o.Dir, ocmLocal, "hub", "--kubeconfig", e.HubKubeconfig,
		"--ready-file", ready, "-v", "2"); err != nil {
		return nil, err
	}
	e.stops = append(e.stops, e.OCMHub.Stop)
	if err := e.OCMHub.WaitFor(ctx, 90*time.Second, "OCM hub ready", func() error { _, err := os.Stat(ready); return err }); err != nil {
		return nil, err
	}
	o.progress("OCM hub controllers up (registration, placement, work, addon-manager, conversion webhook)")

	// Managed clusters, each with its own API server and a real node.
	spokeCRDs, err := SpokeCRDs(ctx)
	if err != nil {
		return nil, err
	}
	agentImage, err := binaryFromEnv("ARGOCD_AGENT_IMAGE_ARCHIVE")
	if err != nil {
		return nil, err
	}
	for _, name := range o.Clusters {
		s := &Spoke{Name: name}
		// Clusters may share a service range: each node routes only its own pods' ClusterIPs.
		if s.API, err = testenv.StartWith(testenv.Options{CRDs: spokeCRDs, ClientCADir: filepath.Join(o.Dir, name, "pki"),
			Node: &testenv.NodeNetwork{AdvertiseAddress: e.hostIP, ServiceCIDR: "10.96.0.0/24"}}); err != nil {
			return nil, fmt.Errorf("API server of %s: %w", name, err)
		}
		e.stops = append(e.stops, func() { _ = s.API.Stop() })
		s.Kubeconfig = filepath.Join(o.Dir, name+".kubeconfig")
		if err := s.API.KubeconfigFor(name+"-admin", []string{"system:masters"}, s.Kubeconfig); err != nil {
			return nil, err
		}
		if s.Node, err = node.Start(ctx, node.Options{Name: name, Dir: filepath.Join(o.Dir, name), API: s.API,
			Images: []string{agentImage}, Logf: o.progress}); err != nil {
			return nil, fmt.Errorf("node of %s: %w", name, err)
		}
		e.stops = append(e.stops, s.Node.Stop)
		if err := e.startSpokeRedis(ctx, s); err != nil {
			return nil, err
		}
		if s.OCM, err = proc.Start(ctx, "ocm-"+name, o.Dir, ocmLocal, "spoke", "--hub-kubeconfig", e.HubKubeconfig,
			"--spoke-kubeconfig", s.Kubeconfig, "--cluster-name", name, "--work-dir", filepath.Join(o.Dir, name, "ocm"), "-v", "2"); err != nil {
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

	// The add-on as a user installs it: helm install of the chart, the manager's pod from our
	// image on the hub's node.
	values := map[string]string{
		"image.repository":        managerImageRepository,
		"image.tag":               managerImageTag,
		"image.pullPolicy":        "Never",
		"agent.principal.address": e.Principal.Host(), // the host's address: agents run in pods
		"agent.principal.port":    strconv.Itoa(e.Principal.Port()),
		"certificate.subject":     o.CertificateSubject,
		"certificate.lifetime":    o.CertLifetime.String(),
		"logVerbosity":            "2",
	}
	if err := chart.Install(helm, e.HubKubeconfig, AddonNamespace, values); err != nil {
		return nil, err
	}
	e.helm = helm
	if err := e.waitManager(ctx); err != nil {
		return nil, err
	}
	o.progress("add-on manager pod %s Ready, leading (metrics on %s)", e.ManagerPod, e.MetricsURL)
	return e, nil
}

// startSpokeRedis gives the spoke's Argo CD its redis, as `argocd-redis` in the agent's
// namespace where the agent's default address (argocd-redis:6379) finds it: a Service whose
// ClusterIP the node routes to a redis-server on the host. (A user's Argo CD runs redis as a
// pod; the agent only needs the Service to answer.)
func (e *Env) startSpokeRedis(ctx context.Context, s *Spoke) error {
	dir := filepath.Join(e.opts.Dir, s.Name)
	addr, stop, err := argocd.StartRedis(ctx, dir, e.hostIP.String())
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.redises = append(e.redises, stop)
	e.mu.Unlock()
	c := s.API.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: identity.DefaultInstallNamespace}}); err != nil {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: identity.DefaultInstallNamespace, Name: "argocd-redis",
			Labels: map[string]string{"app.kubernetes.io/name": "argocd-redis", "app.kubernetes.io/part-of": "argocd"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "tcp-redis", Port: 6379}}},
	}
	if err := c.Create(ctx, svc); err != nil {
		return err
	}
	return s.Node.RouteService(svc.Spec.ClusterIP, 6379, addr)
}

// Dir is where files and logs are.
func (e *Env) Dir() string { return e.opts.Dir }

// StartPrincipal (re)starts the principal with the hub CA, on the same port as before if it ran.
func (e *Env) StartPrincipal(ctx context.Context) error {
	redisAddr, stopRedis, err := argocd.StartRedis(ctx, e.opts.Dir, "")
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.redises = append(e.redises, stopRedis)
	e.mu.Unlock()
	opts := argocd.PrincipalOptions{
		Dir: filepath.Join(e.opts.Dir, "principal"), Kubeconfig: e.HubKubeconfig, Namespace: ArgoCDNamespace,
		ListenHost:        e.hostIP.String(),
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

// Stop stops everything Start started, in reverse order: each node drains its pods first.
func (e *Env) Stop() {
	e.mu.Lock()
	redises := e.redises
	e.mu.Unlock()
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
