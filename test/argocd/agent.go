package argocd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
)

// AgentOptions configures StartAgent.
type AgentOptions struct {
	// Name only names the agent's files (<Name>.log, <Name>-tls.crt, ...); default "agent". The
	// agent's identity on the principal comes from its client certificate.
	Name string
	// Binary is the argocd-agent binary; default $ARGOCD_AGENT_BIN.
	Binary string
	// Dir holds the certificate files and <Name>.log. Required.
	Dir string
	// Kubeconfig is a kubeconfig file for the spoke API server. Required.
	Kubeconfig string
	// Namespace is the agent's namespace on the spoke (--namespace), where Applications land.
	// Required.
	Namespace string
	// Mode is "managed" (default) or "autonomous" (--agent-mode).
	Mode string
	// PrincipalAddr is the principal's gRPC address host:port (Principal.Addr()). Required.
	PrincipalAddr string
	// RootCAPEM is the CA of the principal's server certificate (--root-ca-path). Required.
	RootCAPEM []byte
	// ClientCertPEM and ClientKeyPEM are the agent's client certificate and key
	// (--tls-client-cert, --tls-client-key). Required.
	ClientCertPEM, ClientKeyPEM []byte
	// RedisAddr is the spoke redis (--redis-addr). Required.
	RedisAddr string
	// LogLevel defaults to "info". ExtraArgs are appended to the command line.
	LogLevel  string
	ExtraArgs []string
	// StartTimeout bounds the wait for the healthz server (it starts after the informers
	// synced, before or without a connection); default 60 s.
	StartTimeout time.Duration
}

// Agent is a running `argocd-agent agent`.
type Agent struct {
	proc        *proc.Process
	healthzPort int
	metricsPort int
	args        []string
}

// StartAgent runs `argocd-agent agent` with mTLS credentials from files and returns once its
// healthz server answers (any status: 200 only while connected to the principal). The process ends
// on Stop or when ctx ends.
func StartAgent(ctx context.Context, opts AgentOptions) (*Agent, error) {
	if opts.Dir == "" || opts.Kubeconfig == "" || opts.Namespace == "" || opts.PrincipalAddr == "" || opts.RedisAddr == "" ||
		len(opts.RootCAPEM) == 0 || len(opts.ClientCertPEM) == 0 || len(opts.ClientKeyPEM) == 0 {
		return nil, errors.New("AgentOptions: Dir, Kubeconfig, Namespace, PrincipalAddr, RedisAddr, RootCAPEM, ClientCertPEM and ClientKeyPEM are required")
	}
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = Binary(); err != nil {
			return nil, err
		}
	}
	if opts.Name == "" {
		opts.Name = "agent"
	}
	if opts.Mode == "" {
		opts.Mode = "managed"
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	host, port, err := net.SplitHostPort(opts.PrincipalAddr)
	if err != nil {
		return nil, fmt.Errorf("PrincipalAddr: %w", err)
	}
	paths := map[string]string{}
	for suffix, data := range map[string][]byte{"-tls.crt": opts.ClientCertPEM, "-tls.key": opts.ClientKeyPEM, "-root-ca.crt": opts.RootCAPEM} {
		if paths[suffix], err = writeFile(opts.Dir, opts.Name+suffix, data); err != nil {
			return nil, err
		}
	}
	ports, err := proc.FreePorts(2)
	if err != nil {
		return nil, err
	}
	a := &Agent{healthzPort: ports[0], metricsPort: ports[1]}
	a.args = []string{"agent",
		"--kubeconfig", opts.Kubeconfig,
		"--namespace", opts.Namespace,
		"--agent-mode", opts.Mode,
		"--creds", "mtls:",
		"--server-address", host,
		"--server-port", port,
		"--root-ca-path", paths["-root-ca.crt"],
		"--tls-client-cert", paths["-tls.crt"],
		"--tls-client-key", paths["-tls.key"],
		"--redis-addr", opts.RedisAddr,
		"--healthz-port", strconv.Itoa(a.healthzPort),
		"--metrics-port", strconv.Itoa(a.metricsPort),
		"--log-level", opts.LogLevel,
		"--log-format", "text",
	}
	a.args = append(a.args, opts.ExtraArgs...)
	a.proc, err = proc.Start(ctx, opts.Name, opts.Dir, bin, a.args...)
	if err != nil {
		return nil, err
	}
	err = a.proc.WaitFor(ctx, opts.StartTimeout, "serving /healthz", func() error {
		_, err := a.Healthz()
		return err
	})
	if err != nil {
		a.Stop()
		return nil, err
	}
	return a, nil
}

// Healthz returns the status code of the agent's /healthz: 200 while it is connected to the
// principal, 503 otherwise. It can flap while the principal rejects the agent's streams, so
// confirm a connection on the principal side too (Principal.ConnectedAgents).
func (a *Agent) Healthz() (int, error) {
	code, _, err := proc.HTTPGet(context.Background(), a.HealthzURL())
	return code, err
}

// WaitConnected polls /healthz until it answers 200.
func (a *Agent) WaitConnected(ctx context.Context, timeout time.Duration) error {
	return a.proc.WaitFor(ctx, timeout, "/healthz 200 (connected)", func() error {
		code, err := a.Healthz()
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("/healthz: %d", code)
		}
		return nil
	})
}

// HealthzURL is the agent's health endpoint.
func (a *Agent) HealthzURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/healthz", a.healthzPort)
}

// MetricsURL is the agent's Prometheus endpoint.
func (a *Agent) MetricsURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/metrics", a.metricsPort)
}

// Args is the command line the agent runs with (without the binary).
func (a *Agent) Args() []string { return append([]string(nil), a.args...) }

// Log returns the agent's output so far.
func (a *Agent) Log() string { return a.proc.Log() }

// Exited reports whether the process has ended, and its exit error.
func (a *Agent) Exited() (bool, error) { return a.proc.Exited() }

// Stop ends the agent (SIGTERM, SIGKILL after 10 s) and waits for it.
func (a *Agent) Stop() { a.proc.Stop() }
