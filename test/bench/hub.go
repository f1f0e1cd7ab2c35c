package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	addonv1alpha1 "open-cluster-management.io/api/addon/v1alpha1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/audit"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/e2e/harness"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testenv"
)

// Who is who on the bench's API server. Every client has a user of its own, so the audit log
// attributes each request; the manager's is the ServiceAccount the chart installs, so it runs
// under the chart's RBAC as in production.
const (
	addonNamespace  = "argocd-agent-addon"
	argocdNamespace = "argocd"
	caSecretName    = "argocd-agent-ca"
	principalName   = "argocd-agent-principal"
	managerUser     = "system:serviceaccount:" + addonNamespace + ":argocd-agent-addon"
	ocmHubUser      = "ocm-hub"
	ocmAddonUser    = "ocm-addon-manager"
	adminUser       = "bench-admin"
	agentUserAgent  = "bench-agent"
	clusterLabel    = "argocd-agent"
)

// Components of the report: who made a request.
const (
	compManager      = "manager"       // our manager
	compAddonManager = "addon-manager" // OCM's addon-manager (both kinds run it)
	compOCM          = "ocm"           // OCM's registration, placement and work hub controllers
	compAgents       = "agents"        // the fleet's agents filing CSRs
)

// component names the client of e, or "" for requests not counted: the bench's own, and
// leader election's Lease renewals, a constant beat (one update every few seconds per manager)
// that says nothing about the fleet.
func component(e audit.Event) string {
	if e.ObjectRef != nil && e.ObjectRef.Resource == "leases" {
		return ""
	}
	switch {
	case e.User.Username == managerUser:
		return compManager
	case e.User.Username == ocmAddonUser:
		return compAddonManager
	case e.User.Username == ocmHubUser:
		return compOCM
	case strings.HasPrefix(e.UserAgent, agentUserAgent):
		return compAgents
	}
	return ""
}

// hub is one fresh API server and etcd with OCM's hub controllers: registration, placement and
// work in one process, OCM's addon-manager alone in another so that its memory is its own.
type hub struct {
	dir    string
	env    *testenv.Env
	c      client.Client // the bench's, unthrottled
	kube   kubernetes.Interface
	audit  audit.Log
	admin  string // admin kubeconfig, for helm
	ocmBin string
	helm   string
	ocm    *proc.Process
	addons *proc.Process // OCM's addon-manager
	pprof  string        // our manager's --pprof-bind-address
	caCert []byte
	caKey  []byte
	stops  []func()
}

func startHub(ctx context.Context, dir, ocmBin, helm string) (_ *hub, err error) {
	h := &hub{dir: dir, ocmBin: ocmBin, helm: helm, audit: audit.Log{Path: filepath.Join(dir, "audit.log")}}
	defer func() {
		if err != nil {
			h.stop()
		}
	}()
	crds, err := harness.HubCRDs(ctx)
	if err != nil {
		return nil, err
	}
	if h.env, err = testenv.StartWith(testenv.Options{CRDs: crds, ClientCADir: filepath.Join(dir, "pki"), AuditLog: h.audit.Path}); err != nil {
		return nil, err
	}
	h.stops = append(h.stops, func() {
		if err := h.env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: stopping the API server:", err)
		}
	})
	// The template kind writes AddOnTemplates, in the v1alpha1 API OCM's addon-manager reads.
	if err := addonv1alpha1.Install(h.env.Scheme); err != nil {
		return nil, err
	}
	admin, err := h.env.AddUser(adminUser, "system:masters")
	if err != nil {
		return nil, err
	}
	admin.QPS, admin.Burst = -1, 0
	admin.UserAgent = "bench"
	if h.c, err = client.New(admin, client.Options{Scheme: h.env.Scheme}); err != nil {
		return nil, err
	}
	if h.kube, err = kubernetes.NewForConfig(admin); err != nil {
		return nil, err
	}
	h.admin = filepath.Join(dir, "admin.kubeconfig")
	if err := h.env.KubeconfigFor(adminUser, []string{"system:masters"}, h.admin); err != nil {
		return nil, err
	}

	// Registration, placement, work and the conversion webhook first: the webhook must serve
	// before anything reads add-ons.
	ready := filepath.Join(dir, "ocm-ready.json")
	// CSRs stay as long as kube-controller-manager keeps signed ones (1 h), not ocm-local's
	// 10 min default: a chaos run checks every CSR of the fleet at its end.
	if h.ocm, err = h.startOCM(ctx, "ocm-hub", ocmHubUser, "--controllers=registration,placement,work", "--csr-done-max-age=1h", "--ready-file="+ready); err != nil {
		return nil, err
	}
	if err := h.ocm.WaitFor(ctx, 90*time.Second, "OCM hub ready", func() error { _, err := os.Stat(ready); return err }); err != nil {
		return nil, err
	}
	if h.addons, err = h.startAddonManager(ctx); err != nil {
		return nil, err
	}

	for _, ns := range []string{argocdNamespace, addonNamespace} {
		if err := h.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return nil, err
		}
	}
	// RSA, as `argocd-agentctl pki init` makes it: OCM's template signer takes no other key.
	if h.caCert, h.caKey, err = testca.NewRSA(caSecretName, 4096, 365*24*time.Hour); err != nil {
		return nil, err
	}
	if err := h.c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: argocdNamespace, Name: caSecretName}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: h.caCert, corev1.TLSPrivateKeyKey: h.caKey},
	}); err != nil {
		return nil, err
	}
	// The principal's Deployment, whose image the manager gives the agents. No pod runs it: the
	// bench measures the hub side only.
	labels := map[string]string{"app.kubernetes.io/name": principalName}
	return h, h.c.Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: argocdNamespace, Name: principalName},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "principal", Image: "quay.io/argoprojlabs/argocd-agent:v0.5.0",
				}}},
			},
		},
	})
}

// startOCM starts ocm-local hub as user with args.
func (h *hub) startOCM(ctx context.Context, name, user string, args ...string) (*proc.Process, error) {
	kubeconfig := filepath.Join(h.dir, user+".kubeconfig")
	if err := h.env.KubeconfigFor(user, []string{"system:masters"}, kubeconfig); err != nil {
		return nil, err
	}
	p, err := proc.Start(ctx, name, h.dir, h.ocmBin, append([]string{"hub", "--kubeconfig=" + kubeconfig, "-v=1"}, args...)...)
	if err != nil {
		return nil, err
	}
	h.stops = append(h.stops, p.Stop)
	return p, nil
}

// startAddonManager starts OCM's addon-manager alone. It is ready when it runs: it retries
// every request on its own.
func (h *hub) startAddonManager(ctx context.Context) (*proc.Process, error) {
	return h.startOCM(ctx, "ocm-addon-manager", ocmAddonUser, "--controllers=addon-manager", "--conversion-webhook=false")
}

func (h *hub) stop() {
	for i := len(h.stops) - 1; i >= 0; i-- {
		h.stops[i]()
	}
}

// exited says which of the hub's processes has ended, with its log, or nil.
func (h *hub) exited(extra ...*proc.Process) error {
	for _, p := range append([]*proc.Process{h.ocm, h.addons}, extra...) {
		if p == nil {
			continue
		}
		if done, err := p.Exited(); done {
			return fmt.Errorf("a hub process exited (%v):\n%s", err, tail(p.Log(), 4000))
		}
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// join creates n accepted ManagedClusters labelled to be selected, each with its namespace.
// No klusterlet runs: the Placement tolerates the taints OCM puts on clusters without a lease.
func (h *hub) join(ctx context.Context, n int) ([]string, error) {
	clusters := make([]string, n)
	for i := range clusters {
		clusters[i] = fmt.Sprintf("cluster-%05d", i)
	}
	return clusters, parallel(clusters, 8, func(name string) error {
		if err := h.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			return err
		}
		return h.c.Create(ctx, &clusterv1.ManagedCluster{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{clusterLabel: "enabled"}},
			Spec:       clusterv1.ManagedClusterSpec{HubAcceptsClient: true},
		})
	})
}

// agentConfig is the admin's config impersonating cluster's registration agent: the API server
// sets a CSR's requester and groups from it, as for a real agent.
func (h *hub) agentConfig(user string, groups []string) *rest.Config {
	cfg := rest.CopyConfig(h.env.Config)
	cfg.QPS, cfg.Burst = -1, 0
	cfg.UserAgent = agentUserAgent
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return cfg
}

// leaseAcquired is what client-go's leader election (v0.35) logs when a process takes the lease.
// A Lease's holder alone cannot tell: a killed leader stays its holder until the lease
// expires, and every replica's identity is the host name plus a random suffix.
const leaseAcquired = `"Successfully acquired lease"`

// leads says whether p took the leader lease (and has not exited since).
func leads(p *proc.Process) bool {
	done, _ := p.Exited()
	return !done && strings.Contains(p.Log(), leaseAcquired)
}

// waitLeads waits until p takes the leader lease.
func waitLeads(ctx context.Context, p *proc.Process) error {
	return p.WaitFor(ctx, 2*time.Minute, "leader election", func() error {
		if !leads(p) {
			return errors.New("not leading")
		}
		return nil
	})
}
