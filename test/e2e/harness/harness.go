package harness

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubpki"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/argocd"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/chart"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/node"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/prometheus"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/registry"
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
	// HarnessPKI makes the harness create the CA, the principal's server certificates and its
	// JWT key before the add-on is installed, as a user who ran `argocd-agentctl pki init` has:
	// the add-on adopts the CA and touches none of them. Default: the add-on creates them all
	// (chart pki.createCA and pki.principal.enabled) and the principal starts with those.
	HarnessPKI bool
	// ServerCertLifetime and ClusterSecretCertLifetime, if set, are the lifetimes of the
	// principal's server certificates and of the Argo CD cluster secrets' client certificates
	// the manager issues (chart pki.principal.certLifetime, clusterSecrets.certLifetime).
	ServerCertLifetime, ClusterSecretCertLifetime time.Duration
	// UpgradeImage puts UpgradeAgentImage on every node besides the agent image, for a
	// principal upgrade.
	UpgradeImage bool
	// ChartValues are more chart values (--set), over the harness's own.
	ChartValues map[string]string
	// SecondPrincipal installs another principal, in SecondArgoCDNamespace, for a fleet split
	// between two (Env.SecondPrincipal).
	SecondPrincipal bool
	// ArgoCD runs Argo CD on every managed cluster (argocd.ManagedSpoke: application-controller
	// and repo-server, as pods) and the ApplicationSet controller on the hub (argocd.Hub), serves
	// sources from a registry (Env.Sources), and gives the hub the AppProject "default" that
	// reaches every agent. Without it a spoke's Argo CD is only its settings ConfigMap, which is
	// all an agent needs to connect.
	ArgoCD bool
	// Autonomous are the clusters whose Argo CD is an autonomous agent's (argocd.AutonomousSpoke,
	// with ArgoCD): the ApplicationSet controller too. The test gives their add-on the
	// autonomous mode.
	Autonomous []string
	// PrincipalParams are more keys of the principal's argocd-agent-params ConfigMap, over the
	// harness's own (destination-based mapping, allowed namespaces).
	PrincipalParams map[string]string
	// Release, a version (vX.Y.Z), installs the add-on as a user installs a release: make
	// release (hack/release.sh) pushes the manager image and the chart pinned to its digest to a
	// registry the test serves (Env.Registry), `helm install` takes the chart from there, and the
	// hub's node pulls the manager image from it (UpgradeRelease goes on to another version).
	// Empty: the chart of this checkout, its image imported into the node.
	Release string
	// Monitoring installs the chart with its ServiceMonitor, PrometheusRule and dashboard (the
	// Prometheus Operator's CRDs on the hub) and runs a real Prometheus on the hub's node that
	// scrapes the manager as the ServiceMonitor says (Env.Prometheus).
	Monitoring bool
}

// SecondArgoCDNamespace is where Options.SecondPrincipal installs the second principal.
const SecondArgoCDNamespace = "argocd-b"

// SecondPlacement is the Placement whose clusters' cluster secrets the chart is told to keep in
// SecondArgoCDNamespace, reaching the second principal's resource proxy
// (clusterSecrets.groups); the test that splits the fleet creates it.
const SecondPlacement = "argocd-agent-b"

// UpgradeAgentImage is argocd-agent built from the same code as the agent image but stamped with
// another version (hack/test-tools.sh, ARGOCD_AGENT_UPGRADE_IMAGE_ARCHIVE): to the principal and
// the agents it is another release, which is all a version-lock test needs of an upgrade.
const UpgradeAgentImage = "quay.io/argoprojlabs/argocd-agent:v0.9.0-upgrade"

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
	// Principal is the principal's Deployment on the hub, installed from upstream's manifests.
	Principal *argocd.PrincipalPod
	// SecondPrincipal is the one Options.SecondPrincipal installs, nil without.
	SecondPrincipal *argocd.PrincipalPod
	CACertPEM       []byte
	CAKeyPEM        []byte
	// HubArgoCD is the hub's ApplicationSet controller (Options.ArgoCD), nil without.
	HubArgoCD *argocd.Components
	// Sources serves Argo CD sources (Options.ArgoCD), nil without.
	Sources *argocd.SourceRegistry
	// Prometheus scrapes the manager (Options.Monitoring), nil without.
	Prometheus *prometheus.Server
	// Registry holds the releases (Options.Release), nil without; Released is the one installed.
	Registry *registry.Registry
	Released Release
	// ServerCACertPEM and ServerCAKeyPEM, if set, issue the principal's server certificate
	// when it (re)starts, instead of the hub CA: a CA rollover reissues it from the new CA.
	ServerCACertPEM, ServerCAKeyPEM []byte

	ctx     context.Context
	mu      sync.Mutex
	stops   []func()
	agents  map[string]*Agent
	redises []func()
	hostIP  net.IP
	// principalIP is the principal Service's load balancer address.
	principalIP net.IP
	// secondResourceProxyIP is that of the second principal's (Options.SecondPrincipal).
	secondResourceProxyIP net.IP
	// resourceProxyIP is the load balancer address of ResourceProxyExternalService.
	resourceProxyIP net.IP
	helm            string
	metrics         *http.Client
	token           string
}

// Spoke is one managed cluster: its own API server, a real node that runs its pods, and its OCM
// klusterlet agents.
type Spoke struct {
	Name       string
	API        *testenv.Env
	Node       *node.Cluster
	Kubeconfig string
	OCM        *proc.Process
	// ArgoCD is the cluster's Argo CD (Options.ArgoCD), nil without.
	ArgoCD *argocd.Components
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
	e.helm = helm
	var hubImages, registries []string
	if o.Release == "" {
		managerImage, err := buildManagerImage()
		if err != nil {
			return nil, err
		}
		hubImages = append(hubImages, managerImage)
	} else {
		if e.Registry, err = registry.Start(ctx, e.hostIP.String()); err != nil {
			return nil, err
		}
		e.onStop(e.Registry.Stop)
		registries = append(registries, e.Registry.Addr)
		if e.Released, err = e.Release(ctx, o.Release); err != nil {
			return nil, err
		}
		o.progress("released %s: image %s@%s and chart %s %s in the test's registry", o.Release, e.Released.Image, e.Released.Digest, e.Released.Chart.Ref, e.Released.Chart.Version)
	}
	agentImage, err := binaryFromEnv("ARGOCD_AGENT_IMAGE_ARCHIVE")
	if err != nil {
		return nil, err
	}
	agentImages := []string{agentImage}
	if o.UpgradeImage {
		upgrade, err := binaryFromEnv("ARGOCD_AGENT_UPGRADE_IMAGE_ARCHIVE")
		if err != nil {
			return nil, err
		}
		agentImages = append(agentImages, upgrade)
	}
	spokeImages := agentImages
	if o.ArgoCD {
		argoImage, err := binaryFromEnv(argocd.ImageEnv)
		if err != nil {
			return nil, err
		}
		spokeImages = append(slices.Clone(agentImages), argoImage)
		if e.Sources, err = argocd.StartSourceRegistry(ctx, e.hostIP.String()); err != nil {
			return nil, err
		}
		e.onStop(e.Sources.Stop)
	}

	// Hub, with a real node for the manager's and the principal's pods.
	hubCRDs, err := HubCRDs(ctx)
	if err != nil {
		return nil, err
	}
	hubImages = append(hubImages, spokeImages...)
	if o.Monitoring {
		crds, err := monitoringCRDs()
		if err != nil {
			return nil, err
		}
		hubCRDs = append(hubCRDs, crds...)
		promImage, err := binaryFromEnv(prometheus.ImageArchiveEnv)
		if err != nil {
			return nil, err
		}
		hubImages = append(hubImages, promImage)
	}
	if e.Hub, err = testenv.StartWith(testenv.Options{CRDs: hubCRDs, ClientCADir: filepath.Join(o.Dir, "hub", "pki"),
		Node: &testenv.NodeNetwork{AdvertiseAddress: e.hostIP, ServiceCIDR: "10.96.0.0/24"}}); err != nil {
		return nil, fmt.Errorf("hub API server: %w", err)
	}
	e.onStop(func() { _ = e.Hub.Stop() })
	e.HubKubeconfig = filepath.Join(o.Dir, "hub.kubeconfig")
	if err := e.Hub.KubeconfigFor("hub-admin", []string{"system:masters"}, e.HubKubeconfig); err != nil {
		return nil, err
	}
	spokeCRDs, err := SpokeCRDs(ctx)
	if err != nil {
		return nil, err
	}
	// The hub's node and OCM controllers and every managed cluster start at the same time: each
	// node takes about 10 s to become Ready, and none needs another to start.
	var (
		wg   sync.WaitGroup
		errs = make([]error, len(o.Clusters)+2)
	)
	wg.Add(len(errs))
	go func() {
		defer wg.Done()
		// kube-controller-manager on the node signs the klusterlets' kube-apiserver-client CSRs,
		// as on a real hub, and runs the garbage collector and namespace controllers OCM relies on.
		n, err := node.Start(ctx, node.Options{Name: "hub", Dir: filepath.Join(o.Dir, "hub"), API: e.Hub,
			Images: hubImages, Registries: registries, Logf: o.progress})
		if err != nil {
			errs[0] = fmt.Errorf("hub node: %w", err)
			return
		}
		e.HubNode = n
		e.onStop(n.Stop)
		o.progress("hub API server up (%s) with a node", e.Hub.Config.Host)
	}()
	go func() {
		defer wg.Done()
		errs[1] = e.startOCMHub(ctx, ocmLocal)
	}()
	spokes := make([]*Spoke, len(o.Clusters))
	for i, name := range o.Clusters {
		go func() {
			defer wg.Done()
			spokes[i], errs[i+2] = e.startSpoke(ctx, name, spokeCRDs, spokeImages, ocmLocal)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, s := range spokes {
		e.Spokes[s.Name] = s
	}
	for _, name := range o.Clusters {
		if err := e.waitJoined(ctx, name); err != nil {
			return nil, err
		}
		o.progress("cluster %s joined and accepted", name)
	}

	c := e.Hub.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ArgoCDNamespace}}); err != nil {
		return nil, err
	}
	if o.HarnessPKI {
		// The CA the principal trusts and the manager signs with, as `argocd-agentctl pki init` makes it.
		if e.CACertPEM, e.CAKeyPEM, err = testca.New("argocd-agent-ca", 365*24*time.Hour); err != nil {
			return nil, err
		}
		if err := c.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ArgoCDNamespace, Name: CASecretName}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: e.CACertPEM, corev1.TLSPrivateKeyKey: e.CAKeyPEM},
		}); err != nil {
			return nil, err
		}
	}
	if err := e.installPrincipal(ctx); err != nil {
		return nil, err
	}
	o.progress("Argo CD agent principal pod up, Service %s on %s (mTLS, CA %s)", argocd.PrincipalName, e.Principal.Addr(), "argocd/argocd-agent-ca")
	if o.HarnessPKI {
		if err := e.installAddon(ctx); err != nil {
			return nil, err
		}
	}
	if o.ArgoCD {
		if err := e.startHubArgoCD(ctx); err != nil {
			return nil, err
		}
	}
	if o.SecondPrincipal {
		if err := e.installSecondPrincipal(ctx); err != nil {
			return nil, fmt.Errorf("second principal: %w", err)
		}
		o.progress("second principal pod up, Service %s/%s on %s", SecondArgoCDNamespace, argocd.PrincipalName, e.SecondPrincipal.Addr())
	}
	if o.Monitoring {
		if err := e.startPrometheus(ctx); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// startHubArgoCD gives the hub what of Argo CD the agent model runs there besides the principal:
// the AppProject "default" and the ApplicationSet controller, under its own ServiceAccount, its
// read access to PlacementDecisions being the chart's (applicationSets.placementGenerator).
func (e *Env) startHubArgoCD(ctx context.Context) error {
	if err := e.Hub.Client.Create(ctx, argocd.DefaultProject(ArgoCDNamespace)); err != nil {
		return fmt.Errorf("the hub's default AppProject: %w", err)
	}
	cs, err := kubernetes.NewForConfig(e.Hub.Config)
	if err != nil {
		return err
	}
	dir := filepath.Join(e.opts.Dir, "hub-argocd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	hub, err := argocd.InstallComponents(ctx, argocd.ComponentsOptions{Client: e.Hub.Client, Clientset: cs,
		Namespace: ArgoCDNamespace, Dir: dir, Components: argocd.Hub})
	if err != nil {
		return fmt.Errorf("installing Argo CD on the hub: %w", err)
	}
	if err := hub.WaitReady(ctx, 3*time.Minute); err != nil {
		return err
	}
	e.HubArgoCD = hub
	e.opts.progress("Argo CD on the hub: %v Ready", argocd.Hub)
	return nil
}

// installSecondPrincipal installs another principal from upstream's manifests, in
// SecondArgoCDNamespace, as a platform team adds one for another group of clusters: it trusts
// the add-on's CA (the certificate alone, as ca.crt: the key stays in the add-on's secret) and
// has its own server certificate from that CA, JWT key and redis, and its resource proxy, which
// the cluster secrets of SecondPlacement's clusters point at (clusterSecrets.groups).
func (e *Env) installSecondPrincipal(ctx context.Context) error {
	ns := SecondArgoCDNamespace
	dir := filepath.Join(e.opts.Dir, "principal-b")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := e.startRedis(ctx, e.Hub, e.HubNode, ns, dir); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(e.Hub.Config)
	if err != nil {
		return err
	}
	p, err := argocd.InstallPrincipal(ctx, argocd.PrincipalInstallOptions{
		Client: e.Hub.Client, Clientset: cs, Namespace: ns, Dir: dir, NameSuffix: "-b",
		Params: map[string]string{
			"principal.namespace":                     ns, // upstream's ConfigMap says argocd
			"principal.listen.host":                   "",
			"principal.auth":                          "mtls:subject:CN=([^,]+)",
			"principal.tls.client-cert.match-subject": "true",
			"principal.allowed-namespaces":            strings.Join(e.opts.Clusters, ","),
			"principal.resource-proxy.enable":         "true",
		},
		BeforeDeployment: func(ctx context.Context) error {
			ip, err := e.HubNode.ExposeLoadBalancer(ctx, ns, argocd.PrincipalName)
			if err != nil {
				return err
			}
			if err := argocd.ApplySecret(ctx, e.Hub.Client, ns, CASecretName, corev1.SecretTypeOpaque, map[string][]byte{"ca.crt": e.CACertPEM}); err != nil {
				return err
			}
			if err := e.writeJWTKey(ctx, ns); err != nil {
				return err
			}
			if err := e.writeResourceProxyServerCertIn(ctx, ns, e.secondResourceProxyIP); err != nil {
				return err
			}
			return e.writeServerCert(ctx, ns, net.ParseIP(ip), e.CACertPEM, e.CAKeyPEM)
		},
	})
	if err != nil {
		return err
	}
	e.SecondPrincipal = p
	return p.WaitReady(ctx, 3*time.Minute)
}

// installAddon installs the add-on as a user does: helm install of the chart, the manager's pod
// from our image on the hub's node. Without HarnessPKI it also makes the hub PKI and waits for
// it, and the harness reads the CA the manager created.
func (e *Env) installAddon(ctx context.Context) error {
	o := e.opts
	values := map[string]string{
		// No principal address: the manager discovers it from the principal's LoadBalancer
		// Service, as by default for a user.
		"certificate.subject":  o.CertificateSubject,
		"certificate.lifetime": o.CertLifetime.String(),
		"logVerbosity":         "2",
		// Where the test process, standing in for Argo CD, reaches the resource proxy.
		"clusterSecrets.resourceProxyAddress": e.ResourceProxyAddr(),
	}
	if o.SecondPrincipal {
		values["clusterSecrets.groups[0].placement"] = SecondPlacement
		values["clusterSecrets.groups[0].namespace"] = SecondArgoCDNamespace
		values["clusterSecrets.groups[0].resourceProxyAddress"] = e.SecondResourceProxyAddr()
	}
	if o.ServerCertLifetime > 0 {
		values["pki.principal.certLifetime"] = o.ServerCertLifetime.String()
	}
	if o.ClusterSecretCertLifetime > 0 {
		values["clusterSecrets.certLifetime"] = o.ClusterSecretCertLifetime.String()
	}
	if !o.HarnessPKI {
		values["pki.createCA"] = "true"
		values["pki.principal.enabled"] = "true"
		values["pki.resourceProxy.extraSANs[0]"] = e.resourceProxyIP.String()
	}
	if o.Release == "" {
		// The image of this checkout, imported into the node; a release's chart names its own.
		maps.Copy(values, map[string]string{"image.repository": managerImageRepository, "image.tag": managerImageTag, "image.pullPolicy": "Never"})
	}
	if o.Monitoring {
		maps.Copy(values, monitoringValues)
	}
	for k, v := range o.ChartValues {
		values[k] = v
	}
	install := func() error { return chart.Install(e.helm, e.HubKubeconfig, AddonNamespace, values) }
	if o.Release != "" {
		install = func() error {
			return chart.InstallReleased(e.helm, e.HubKubeconfig, AddonNamespace, e.Released.Chart, values)
		}
	}
	if err := install(); err != nil {
		return err
	}
	if err := e.waitManager(ctx); err != nil {
		return err
	}
	o.progress("add-on manager pod %s Ready, leading (metrics on %s)", e.ManagerPod, e.MetricsURL)
	if o.HarnessPKI {
		return nil
	}
	return e.waitAddonPKI(ctx)
}

// waitAddonPKI waits until the manager has made the CA, the principal's server certificate (for
// its load balancer address), the resource proxy's and the JWT key, and reads the CA.
func (e *Env) waitAddonPKI(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	get := func(name string) (*corev1.Secret, error) {
		s := &corev1.Secret{}
		err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: ArgoCDNamespace, Name: name}, s)
		return s, err
	}
	for {
		var missing []string
		for _, name := range []string{CASecretName, argocd.PrincipalTLSSecret, argocd.ResourceProxyTLSSecret, argocd.JWTSecret} {
			if _, err := get(name); err != nil {
				missing = append(missing, name+": "+err.Error())
			}
		}
		if len(missing) == 0 {
			tlsSecret, err := get(argocd.PrincipalTLSSecret)
			if err != nil {
				return err
			}
			certs, err := authority.ParseCertificates(tlsSecret.Data[corev1.TLSCertKey])
			if err != nil {
				return err
			}
			if slices.ContainsFunc(certs[0].IPAddresses, func(ip net.IP) bool { return ip.Equal(e.principalIP) }) {
				ca, err := get(CASecretName)
				if err != nil {
					return err
				}
				e.CACertPEM, e.CAKeyPEM = ca.Data[corev1.TLSCertKey], ca.Data[corev1.TLSPrivateKeyKey]
				e.opts.progress("hub PKI made by the add-on: CA, principal and resource proxy certificates, JWT key")
				return nil
			}
			missing = append(missing, "principal certificate for "+e.principalIP.String())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the add-on's hub PKI: %v", missing)
		case <-time.After(time.Second):
		}
	}
}

// onStop registers what Stop undoes, in reverse order.
func (e *Env) onStop(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stops = append(e.stops, f)
}

// startOCMHub runs OCM's hub controllers and waits until they are ready.
func (e *Env) startOCMHub(ctx context.Context, ocmLocal string) error {
	ready := filepath.Join(e.opts.Dir, "ocm-hub-ready.json")
	p, err := proc.Start(ctx, "ocm-hub", e.opts.Dir, ocmLocal, "hub", "--kubeconfig", e.HubKubeconfig,
		"--ready-file", ready, "-v", "2")
	if err != nil {
		return err
	}
	e.OCMHub = p
	e.onStop(p.Stop)
	if err := p.WaitFor(ctx, 90*time.Second, "OCM hub ready", func() error { _, err := os.Stat(ready); return err }); err != nil {
		return err
	}
	e.opts.progress("OCM hub controllers up (registration, placement, work, addon-manager, conversion webhook)")
	return nil
}

// startSpoke starts one managed cluster: its API server, a real node, Argo CD's redis and the
// OCM klusterlet agents, which join the hub.
func (e *Env) startSpoke(ctx context.Context, name string, crds []*apiextensionsv1.CustomResourceDefinition, images []string, ocmLocal string) (*Spoke, error) {
	s := &Spoke{Name: name}
	var err error
	// Clusters may share a service range: each node routes only its own pods' ClusterIPs.
	if s.API, err = testenv.StartWith(testenv.Options{CRDs: crds, ClientCADir: filepath.Join(e.opts.Dir, name, "pki"),
		Node: &testenv.NodeNetwork{AdvertiseAddress: e.hostIP, ServiceCIDR: "10.96.0.0/24"}}); err != nil {
		return nil, fmt.Errorf("API server of %s: %w", name, err)
	}
	e.onStop(func() { _ = s.API.Stop() })
	s.Kubeconfig = filepath.Join(e.opts.Dir, name+".kubeconfig")
	if err := s.API.KubeconfigFor(name+"-admin", []string{"system:masters"}, s.Kubeconfig); err != nil {
		return nil, err
	}
	if s.Node, err = node.Start(ctx, node.Options{Name: name, Dir: filepath.Join(e.opts.Dir, name), API: s.API,
		Images: images, Logf: e.opts.progress}); err != nil {
		return nil, fmt.Errorf("node of %s: %w", name, err)
	}
	e.onStop(s.Node.Stop)
	if err := e.startRedis(ctx, s.API, s.Node, identity.DefaultInstallNamespace, filepath.Join(e.opts.Dir, name)); err != nil {
		return nil, err
	}
	// Argo CD's settings ConfigMap as its install makes it, with the default (annotation)
	// resource tracking: the agent reads it to tell which objects an Application manages, the
	// only ones its resource proxy serves.
	if err := s.API.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: identity.DefaultInstallNamespace, Name: "argocd-cm",
		Labels: map[string]string{"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"}}}); err != nil {
		return nil, err
	}
	if e.opts.ArgoCD {
		cs, err := kubernetes.NewForConfig(s.API.Config)
		if err != nil {
			return nil, err
		}
		components := argocd.ManagedSpoke
		if slices.Contains(e.opts.Autonomous, name) {
			components = argocd.AutonomousSpoke
		}
		if s.ArgoCD, err = argocd.InstallComponents(ctx, argocd.ComponentsOptions{Client: s.API.Client, Clientset: cs,
			Namespace: identity.DefaultInstallNamespace, Dir: filepath.Join(e.opts.Dir, name), Components: components}); err != nil {
			return nil, fmt.Errorf("installing Argo CD on %s: %w", name, err)
		}
		if err := s.ArgoCD.WaitReady(ctx, 3*time.Minute); err != nil {
			return nil, err
		}
		e.opts.progress("Argo CD on %s: %v Ready", name, components)
	}
	if s.OCM, err = proc.Start(ctx, "ocm-"+name, e.opts.Dir, ocmLocal, "spoke", "--hub-kubeconfig", e.HubKubeconfig,
		"--spoke-kubeconfig", s.Kubeconfig, "--cluster-name", name, "--work-dir", filepath.Join(e.opts.Dir, name, "ocm"), "-v", "2"); err != nil {
		return nil, err
	}
	e.onStop(s.OCM.Stop)
	return s, nil
}

// startRedis gives a cluster's Argo CD its redis, as `argocd-redis` in Argo CD's namespace where
// the agent's and the principal's default address (argocd-redis:6379) finds it: a Service whose
// ClusterIP the node routes to a redis-server on the host, requiring the password of the
// `argocd-redis` secret (key auth), which upstream's principal Deployment, our agent's and Argo
// CD's components read. A user's Argo CD runs redis as a pod; its clients only need the Service
// to answer.
func (e *Env) startRedis(ctx context.Context, api *testenv.Env, n *node.Cluster, namespace, dir string) error {
	password := rand.Text()
	addr, stop, err := argocd.StartRedis(ctx, dir, e.hostIP.String(), password)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.redises = append(e.redises, stop)
	e.mu.Unlock()
	c := api.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: argocd.RedisService,
			Labels: map[string]string{"app.kubernetes.io/name": argocd.RedisService, "app.kubernetes.io/part-of": "argocd"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "tcp-redis", Port: 6379}}},
	}
	if err := c.Create(ctx, svc); err != nil {
		return err
	}
	if err := argocd.ApplySecret(ctx, c, namespace, argocd.RedisSecret, corev1.SecretTypeOpaque, map[string][]byte{argocd.RedisPasswordKey: []byte(password)}); err != nil {
		return err
	}
	return n.RouteService(svc.Spec.ClusterIP, 6379, addr)
}

// Dir is where files and logs are.
func (e *Env) Dir() string { return e.opts.Dir }

// installPrincipal installs the principal on the hub from upstream's manifests, as its own
// ServiceAccount with upstream's RBAC, behind its LoadBalancer Service, with the secrets an
// upstream install needs: the CA (already there), the server certificate for the Service's
// address and names, and the JWT signing key.
func (e *Env) installPrincipal(ctx context.Context) error {
	if err := e.startRedis(ctx, e.Hub, e.HubNode, ArgoCDNamespace, e.opts.Dir); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(e.Hub.Config)
	if err != nil {
		return err
	}
	auth := `CN=([^,]+)`
	if e.opts.CertificateSubject == string(identity.SubjectOCM) {
		auth = `CN=system:open-cluster-management:cluster:([^:]+):addon:argocd-agent:agent:argocd-agent-agent`
	}
	dir := filepath.Join(e.opts.Dir, "principal")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	p, err := argocd.InstallPrincipal(ctx, argocd.PrincipalInstallOptions{
		Client: e.Hub.Client, Clientset: cs, Namespace: ArgoCDNamespace, Dir: dir,
		Params: withParams(map[string]string{
			// Agents reach it through its Service: every interface (upstream's note on mTLS).
			"principal.listen.host":                   "",
			"principal.auth":                          "mtls:subject:" + auth,
			"principal.tls.client-cert.match-subject": strconv.FormatBool(e.opts.CertificateSubject == string(identity.SubjectClusterName)),
			"principal.allowed-namespaces":            strings.Join(e.opts.Clusters, ","),
			"principal.resource-proxy.enable":         "true",
		}, e.opts.PrincipalParams),
		BeforeDeployment: func(ctx context.Context) error {
			ip, err := e.HubNode.ExposeLoadBalancer(ctx, ArgoCDNamespace, argocd.PrincipalName)
			if err != nil {
				return err
			}
			e.principalIP = net.ParseIP(ip)
			if e.resourceProxyIP, err = e.exposeResourceProxy(ctx, ArgoCDNamespace); err != nil {
				return err
			}
			if e.opts.SecondPrincipal {
				// Its address goes into the chart's values (clusterSecrets.groups) before the
				// second principal is up.
				if err := e.Hub.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: SecondArgoCDNamespace}}); err != nil {
					return err
				}
				if e.secondResourceProxyIP, err = e.exposeResourceProxy(ctx, SecondArgoCDNamespace); err != nil {
					return err
				}
			}
			if !e.opts.HarnessPKI {
				// The principal starts with what the add-on made.
				return e.installAddon(ctx)
			}
			if err := e.writeResourceProxyServerCert(ctx); err != nil {
				return err
			}
			if err := e.writeJWTKey(ctx, ArgoCDNamespace); err != nil {
				return err
			}
			return e.writePrincipalServerCert(ctx)
		},
	})
	if err != nil {
		return err
	}
	e.Principal = p
	return p.WaitReady(ctx, 3*time.Minute)
}

// writePrincipalServerCert issues the principal's server certificate (argocd-agent-principal-tls)
// for its load balancer address and Service names, from ServerCACertPEM if set, else the hub CA.
func (e *Env) writePrincipalServerCert(ctx context.Context) error {
	caCert, caKey := e.CACertPEM, e.CAKeyPEM
	if len(e.ServerCACertPEM) > 0 {
		caCert, caKey = e.ServerCACertPEM, e.ServerCAKeyPEM
	}
	return e.writeServerCert(ctx, ArgoCDNamespace, e.principalIP, caCert, caKey)
}

// writeServerCert issues the server certificate of the principal in namespace, for ip and its
// Service names, from the CA caCert and caKey.
func (e *Env) writeServerCert(ctx context.Context, namespace string, ip net.IP, caCert, caKey []byte) error {
	svc := argocd.PrincipalName + "." + namespace + ".svc"
	cert, key, err := testca.IssueCert(caCert, caKey, testca.CertRequest{
		CommonName: argocd.PrincipalName, DNSNames: []string{argocd.PrincipalName, svc, svc + ".cluster.local"},
		IPAddresses: []net.IP{ip}, Server: true,
	})
	if err != nil {
		return fmt.Errorf("issuing the principal's server certificate: %w", err)
	}
	return argocd.ApplySecret(ctx, e.Hub.Client, namespace, argocd.PrincipalTLSSecret, corev1.SecretTypeTLS,
		map[string][]byte{corev1.TLSCertKey: cert, corev1.TLSPrivateKeyKey: key})
}

// writeJWTKey gives the principal in namespace a JWT signing key, as `argocd-agentctl jwt
// create-key` does.
func (e *Env) writeJWTKey(ctx context.Context, namespace string) error {
	jwtKey, err := hubpki.NewJWTKey()
	if err != nil {
		return err
	}
	return argocd.ApplySecret(ctx, e.Hub.Client, namespace, argocd.JWTSecret, corev1.SecretTypeOpaque, map[string][]byte{"jwt.key": jwtKey})
}

// ResourceProxyExternalService is a LoadBalancer Service the harness adds in front of the
// principal's resource proxy port. Argo CD, next to the principal, would dial upstream's
// ClusterIP Service argocd-agent-resource-proxy; the test process on the host, standing in for
// Argo CD, reaches no ClusterIP (no kube-proxy), so it dials this address instead.
const ResourceProxyExternalService = "argocd-agent-resource-proxy-external"

// ResourceProxyPort is upstream's resource proxy port.
const ResourceProxyPort = 9090

// ResourceProxyAddr is where the host reaches the principal's resource proxy (HOST:PORT).
func (e *Env) ResourceProxyAddr() string {
	return net.JoinHostPort(e.resourceProxyIP.String(), strconv.Itoa(ResourceProxyPort))
}

// SecondResourceProxyAddr is where the host reaches the second principal's resource proxy.
func (e *Env) SecondResourceProxyAddr() string {
	return net.JoinHostPort(e.secondResourceProxyIP.String(), strconv.Itoa(ResourceProxyPort))
}

func (e *Env) exposeResourceProxy(ctx context.Context, namespace string) (net.IP, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: ResourceProxyExternalService},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app.kubernetes.io/name": argocd.PrincipalName},
			Ports:    []corev1.ServicePort{{Name: "resource-proxy", Port: ResourceProxyPort, TargetPort: intstr.FromInt32(ResourceProxyPort)}},
		},
	}
	if err := e.Hub.Client.Create(ctx, svc); err != nil {
		return nil, err
	}
	ip, err := e.HubNode.ExposeLoadBalancer(ctx, namespace, ResourceProxyExternalService)
	if err != nil {
		return nil, err
	}
	return net.ParseIP(ip), nil
}

// writeResourceProxyServerCert issues the resource proxy's server certificate
// (argocd-agent-resource-proxy-tls) for upstream's Service names and the external address.
func (e *Env) writeResourceProxyServerCert(ctx context.Context) error {
	return e.writeResourceProxyServerCertIn(ctx, ArgoCDNamespace, e.resourceProxyIP)
}

// writeResourceProxyServerCertIn issues it for the principal in namespace, reached at ip.
func (e *Env) writeResourceProxyServerCertIn(ctx context.Context, namespace string, ip net.IP) error {
	svc := argocd.ResourceProxyService + "." + namespace + ".svc"
	cert, key, err := testca.IssueCert(e.CACertPEM, e.CAKeyPEM, testca.CertRequest{
		CommonName: argocd.ResourceProxyService, DNSNames: []string{argocd.ResourceProxyService, svc, svc + ".cluster.local"},
		IPAddresses: []net.IP{ip}, Server: true,
	})
	if err != nil {
		return fmt.Errorf("issuing the resource proxy's server certificate: %w", err)
	}
	return argocd.ApplySecret(ctx, e.Hub.Client, namespace, argocd.ResourceProxyTLSSecret, corev1.SecretTypeTLS,
		map[string][]byte{corev1.TLSCertKey: cert, corev1.TLSPrivateKeyKey: key})
}

// StopPrincipal takes the principal down (its Deployment scaled to 0) and waits until its pod is gone.
func (e *Env) StopPrincipal(ctx context.Context) error { return e.Principal.Scale(ctx, 0) }

// StartPrincipal brings a stopped principal back (1 replica) and waits until it serves.
func (e *Env) StartPrincipal(ctx context.Context) error { return e.Principal.Scale(ctx, 1) }

// RestartPrincipal reissues its server certificate (from ServerCACertPEM if set) and rolls its
// pod, as an operator does after changing its certificates: it reads them only at start-up.
func (e *Env) RestartPrincipal(ctx context.Context) error {
	if err := e.writePrincipalServerCert(ctx); err != nil {
		return err
	}
	return e.Principal.Restart(ctx)
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
	value := ""
	if enabled {
		value = "enabled"
	}
	return e.SetClusterLabel(ctx, name, EnableLabel, value)
}

// SetClusterLabel sets (or, with value "", removes) a label of a ManagedCluster, as the hub's
// administrator does.
func (e *Env) SetClusterLabel(ctx context.Context, name, key, value string) error {
	mc := &clusterv1.ManagedCluster{}
	if err := e.Hub.Client.Get(ctx, types.NamespacedName{Name: name}, mc); err != nil {
		return err
	}
	patch := client.MergeFrom(mc.DeepCopy())
	if mc.Labels == nil {
		mc.Labels = map[string]string{}
	}
	if value == "" {
		delete(mc.Labels, key)
	} else {
		mc.Labels[key] = value
	}
	return e.Hub.Client.Patch(ctx, mc, patch)
}

// Stop stops everything Start started, in reverse order: each node drains its pods first.
func (e *Env) Stop() {
	e.mu.Lock()
	redises := e.redises
	e.mu.Unlock()
	for _, stop := range redises {
		stop()
	}
	for i := len(e.stops) - 1; i >= 0; i-- {
		e.stops[i]()
	}
}

// withParams is params with more's keys over them.
func withParams(params, more map[string]string) map[string]string {
	maps.Copy(params, more)
	return params
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
