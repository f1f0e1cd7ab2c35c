// Package testenv starts a real kube-apiserver and etcd (built by hack/test-tools.sh) with the
// OCM CRDs the add-on uses, for tests that must run against a real API server.
package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
)

// CRD directories of the open-cluster-management.io/api module the add-on needs.
var crdDirs = []string{"cluster/v1", "cluster/v1beta1", "cluster/v1beta2", "work/v1", "addon/v1beta1"}

// Env is a running API server.
type Env struct {
	env    *envtest.Environment
	Config *rest.Config
	Client client.Client
	Scheme *runtime.Scheme
	// Node holds what nodes need, if Options.Node was set.
	Node *NodeFiles
	// certDir holds the API server's serving certificates and flags' files; ours rather than
	// envtest's, which removes its own when the API server stops, so RestartAPIServer can
	// start it again with the same certificates on the same port.
	certDir string
	// ownCertDir is certDir if StartWith made it (and Stop removes it).
	ownCertDir string
}

// Options select what StartWith installs and how clients authenticate.
type Options struct {
	// CRDs to install.
	CRDs []*apiextensionsv1.CustomResourceDefinition
	// ClientCADir, if set, holds the API server's client CA (client-ca.crt, client-ca.key), so a
	// process can sign client certificates the server trusts, as kube-controller-manager does
	// for kube-apiserver-client CSRs. envtest's own CA key stays in memory.
	ClientCADir string
	// Node, if set, lets real nodes join (see NodeNetwork); it needs ClientCADir.
	Node *NodeNetwork
	// AuditLog, if set, is where the API server writes an audit event (JSON, metadata level)
	// for every request it completes, synchronously, so a reader can tell which client made
	// which requests (test/audit reads it).
	AuditLog string
}

// auditPolicy records every request's metadata once, when it completes.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
- level: Metadata
`

// Start starts kube-apiserver and etcd with the OCM CRDs the add-on uses. KUBEBUILDER_ASSETS
// must name the folder with both binaries (`eval "$(hack/test-tools.sh print-env)"`, which
// `make test` does).
func Start() (*Env, error) {
	crds, err := OCMCRDs()
	if err != nil {
		return nil, err
	}
	return StartWith(Options{CRDs: crds})
}

// StartWith starts kube-apiserver and etcd as o says.
func StartWith(o Options) (*Env, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run `make test`, or `eval \"$(hack/test-tools.sh)\"` first")
	}
	scheme, err := hubclient.Scheme()
	if err != nil {
		return nil, err
	}
	for _, add := range []func(*runtime.Scheme) error{clusterv1beta1.Install, clusterv1beta2.Install, apiextensionsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		// envtest waits 10 s for CRDs to be served by default; an API server starting next to
		// others on 2 busy cores (e2e starts a hub and its spokes at once) can take longer.
		CRDInstallOptions:       envtest.CRDInstallOptions{CRDs: o.CRDs, Scheme: scheme, MaxTime: 2 * time.Minute},
		ControlPlaneStopTimeout: 30 * time.Second,
	}
	var nodeFiles *NodeFiles
	if o.ClientCADir != "" {
		api := &envtest.APIServer{}
		authn := &fileCAAuthn{dir: o.ClientCADir}
		api.SecureServing.Authn = authn
		env.ControlPlane.APIServer = api
		if o.Node != nil {
			if nodeFiles, err = configureForNodes(api, o.ClientCADir, o.Node); err != nil {
				return nil, err
			}
			if err := authn.Start(); err != nil {
				return nil, err
			}
			if err := issueKubeletClient(o.ClientCADir); err != nil {
				return nil, err
			}
		}
	} else if o.Node != nil {
		return nil, errors.New("testenv: Options.Node needs ClientCADir")
	}
	if env.ControlPlane.APIServer == nil {
		env.ControlPlane.APIServer = &envtest.APIServer{}
	}
	// configureForNodes chose one already (the nodes' files live there); else make ours.
	certDir, ownDir := env.ControlPlane.APIServer.CertDir, ""
	if certDir == "" {
		if certDir, err = os.MkdirTemp("", "testenv-apiserver-"); err != nil {
			return nil, err
		}
		ownDir = certDir
		env.ControlPlane.APIServer.CertDir = certDir
	}
	if o.AuditLog != "" {
		policy := o.AuditLog + ".policy.yaml"
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
			return nil, err
		}
		env.ControlPlane.APIServer.Configure().
			Set("audit-policy-file", policy).
			Set("audit-log-path", o.AuditLog).
			Set("audit-log-format", "json").
			Set("audit-log-mode", "blocking").
			// Megabytes before it rotates; 0 means lumberjack's default of 100, and a reader
			// following the file by offset must not see it rotate.
			Set("audit-log-maxsize", "1000000")
	}
	cfg, err := env.Start()
	if err != nil {
		_ = os.RemoveAll(ownDir)
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	if nodeFiles != nil {
		u, err := url.Parse(cfg.Host)
		if err != nil {
			_ = env.Stop()
			return nil, err
		}
		if nodeFiles.Port, err = strconv.Atoi(u.Port()); err != nil {
			_ = env.Stop()
			return nil, fmt.Errorf("API server port of %s: %w", cfg.Host, err)
		}
	}
	e := &Env{env: env, Config: cfg, Scheme: scheme, Node: nodeFiles, certDir: certDir, ownCertDir: ownDir}
	if e.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		_ = e.Stop()
		return nil, err
	}
	return e, nil
}

// Stop stops the API server and etcd.
func (e *Env) Stop() error {
	if e.ownCertDir != "" {
		defer os.RemoveAll(e.ownCertDir)
	}
	return e.env.Stop()
}

// RestartAPIServer stops kube-apiserver, SIGTERM and after grace SIGKILL, and starts it again on
// the same port with the same certificates, etcd keeping its data; clients and users made
// before go on working. It returns how long the API server was down. (envtest's own stop waits
// 20 s for a graceful exit, which kube-apiserver with open watches does not make in time.)
func (e *Env) RestartAPIServer(grace time.Duration) (time.Duration, error) {
	api := e.env.ControlPlane.APIServer
	start := time.Now()
	pid, err := pidWithArg("kube-apiserver", e.certDir)
	if err != nil {
		return 0, err
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return 0, err
	}
	_ = p.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for p.Signal(syscall.Signal(0)) == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	_ = p.Kill()
	// envtest reaps it, and then stops only its authenticator.
	if err := api.Stop(); err != nil {
		return 0, fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	// envtest's 20 s is short for a restart under `make test`, where another package's tests
	// share the 2 cores and the clients of the old one reconnect at once (CI saw it time out).
	api.StartTimeout = max(api.StartTimeout, time.Minute)
	if err := api.Start(); err != nil {
		return time.Since(start), fmt.Errorf("starting kube-apiserver again: %w", err)
	}
	return time.Since(start), nil
}

// pidWithArg finds the process named name with an argument containing arg.
func pidWithArg(name, arg string) (int, error) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if filepath.Base(args[0]) == name && strings.Contains(string(cmdline), arg) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no %s process with %s in its arguments", name, arg)
}

// AddUser adds a user to the API server (e.g. one in system:masters) and returns its config.
func (e *Env) AddUser(name string, groups ...string) (*rest.Config, error) {
	u, err := e.env.ControlPlane.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, err
	}
	return u.Config(), nil
}

// KubeconfigFor writes a kubeconfig for cfg to path (for helm and other CLIs).
func (e *Env) KubeconfigFor(name string, groups []string, path string) error {
	u, err := e.env.ControlPlane.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return err
	}
	kc, err := u.KubeConfig()
	if err != nil {
		return err
	}
	return os.WriteFile(path, kc, 0o600)
}

// OCMCRDs reads the OCM CRDs from the api module in the Go module cache. The add-on CRDs
// store v1alpha1 and carry no conversion settings, so their storage version is switched to
// v1beta1, the version the add-on and addon-framework use (addon-framework's own tests do this).
func OCMCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "open-cluster-management.io/api").Output()
	if err != nil {
		return nil, fmt.Errorf("locating the open-cluster-management.io/api module: %w", err)
	}
	root := strings.TrimSpace(string(out))
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, dir := range crdDirs {
		files, err := filepath.Glob(filepath.Join(root, dir, "*.crd.yaml"))
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("no CRDs in %s/%s", root, dir)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			for _, doc := range bytes.Split(data, []byte("\n---")) {
				if len(bytes.TrimSpace(doc)) == 0 {
					continue
				}
				crd := &apiextensionsv1.CustomResourceDefinition{}
				if err := yaml.Unmarshal(doc, crd); err != nil {
					return nil, fmt.Errorf("%s: %w", f, err)
				}
				if crd.Name == "" {
					continue
				}
				if crd.Spec.Group == addonv1beta1.GroupName {
					for i := range crd.Spec.Versions {
						crd.Spec.Versions[i].Storage = crd.Spec.Versions[i].Name == "v1beta1"
					}
				}
				crds = append(crds, crd)
			}
		}
	}
	own, err := AddonCRDs()
	if err != nil {
		return nil, err
	}
	return append(crds, own...), nil
}

// AddonCRDs are the add-on's own CRDs, from the chart's crds folder, as helm installs them.
func AddonCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/argocd-agent-addon/argocd-agent-addon").Output()
	if err != nil {
		return nil, fmt.Errorf("locating this module: %w", err)
	}
	files, err := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "charts", "argocd-agent-addon", "crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no CRDs in the chart's crds folder (%v)", err)
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(data, crd); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		crds = append(crds, crd)
	}
	return crds, nil
}
