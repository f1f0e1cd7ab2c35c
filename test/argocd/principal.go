package argocd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubpki"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/metrictext"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
)

// PrincipalOptions configures StartPrincipal.
type PrincipalOptions struct {
	// Binary is the argocd-agent binary; default $ARGOCD_AGENT_BIN.
	Binary string
	// Dir holds the generated files (certificates, JWT key) and principal.log. Required.
	Dir string
	// Kubeconfig is a kubeconfig file for the hub API server. Required.
	Kubeconfig string
	// Namespace is the principal's own namespace on the hub (--namespace); default "argocd".
	Namespace string
	// AllowedNamespaces are the hub namespaces of the agents (--allowed-namespaces), one per agent
	// named after it in managed mode.
	AllowedNamespaces []string
	// RedisAddr is the hub redis (--redis-server-address). Required.
	RedisAddr string

	// ClientCAPEM holds the CA certificate(s) that sign agent client certificates
	// (--root-ca-path). ClientCASecret instead names a secret in Namespace that the principal
	// reads them from at start-up, keys tls.crt and ca.crt, as an upstream install does
	// (--tls-ca-secret-name). One of the two is required.
	ClientCAPEM    []byte
	ClientCASecret string
	// ServerCertPEM and ServerKeyPEM are the principal's server certificate and key. When empty,
	// one is issued for 127.0.0.1, localhost and ListenHost by ServerCACertPEM/ServerCAKeyPEM, or by a new CA
	// when those are empty too (see Principal.ServerCAPEM).
	ServerCertPEM, ServerKeyPEM     []byte
	ServerCACertPEM, ServerCAKeyPEM []byte

	// AuthSubjectRegex runs on the client certificate's subject (RFC 2253 form, e.g.
	// "CN=cluster1,O=x"); capture group 1 is the agent name. Default `CN=([^,]+)`.
	// Passed as --auth mtls:subject:<regex>.
	AuthSubjectRegex string
	// MatchSubject sets --client-cert-subject-match (the CN must equal the agent name).
	MatchSubject bool

	// ListenHost is the address the gRPC port is bound to and agents dial; default 127.0.0.1.
	// Agents in pods need a host address they can route to (their 127.0.0.1 is their own).
	ListenHost string
	// ListenPort is the gRPC port; 0 picks a free one. A restarted principal keeps its port so
	// agents reconnect to the address they were given.
	ListenPort int

	// LogLevel defaults to "info". ExtraArgs are appended to the command line.
	LogLevel  string
	ExtraArgs []string
	// StartTimeout bounds the wait for the gRPC, healthz and metrics ports; default 60 s.
	StartTimeout time.Duration
}

// Principal is a running `argocd-agent principal`.
type Principal struct {
	proc         *proc.Process
	host         string
	port         int
	metricsPort  int
	healthzPort  int
	serverCA     []byte
	serverCAFile string
	args         []string
}

// StartPrincipal runs `argocd-agent principal` on 127.0.0.1 with file-based TLS and mTLS agent
// authentication, and returns once its gRPC, healthz and metrics ports answer. The process ends
// on Stop or when ctx ends.
func StartPrincipal(ctx context.Context, opts PrincipalOptions) (*Principal, error) {
	if opts.Dir == "" || opts.Kubeconfig == "" || opts.RedisAddr == "" || (len(opts.ClientCAPEM) == 0) == (opts.ClientCASecret == "") {
		return nil, errors.New("PrincipalOptions: Dir, Kubeconfig, RedisAddr and one of ClientCAPEM and ClientCASecret are required")
	}
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = Binary(); err != nil {
			return nil, err
		}
	}
	if opts.Namespace == "" {
		opts.Namespace = "argocd"
	}
	if opts.AuthSubjectRegex == "" {
		opts.AuthSubjectRegex = `CN=([^,]+)`
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	p := &Principal{host: opts.ListenHost}
	if p.host == "" {
		p.host = "127.0.0.1"
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	if ip := net.ParseIP(p.host); ip != nil && !ip.IsLoopback() {
		ips = append(ips, ip)
	}

	// Server certificate.
	certPEM, keyPEM, caPEM := opts.ServerCertPEM, opts.ServerKeyPEM, opts.ServerCACertPEM
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		caKey := opts.ServerCAKeyPEM
		if len(caPEM) == 0 || len(caKey) == 0 {
			var err error
			if caPEM, caKey, err = testca.New("argocd-agent-principal-test-ca", 24*time.Hour); err != nil {
				return nil, err
			}
		}
		var err error
		certPEM, keyPEM, err = testca.IssueCert(caPEM, caKey, testca.CertRequest{
			CommonName: "argocd-agent-principal", DNSNames: []string{"localhost"},
			IPAddresses: ips, Server: true,
		})
		if err != nil {
			return nil, fmt.Errorf("issuing the principal server certificate: %w", err)
		}
	}
	p.serverCA = caPEM
	jwtKey, err := hubpki.NewJWTKey()
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{"principal-tls.crt": certPEM, "principal-tls.key": keyPEM, "principal-jwt.key": jwtKey}
	if len(opts.ClientCAPEM) > 0 {
		files["principal-client-ca.crt"] = opts.ClientCAPEM
	}
	if len(caPEM) > 0 {
		files["principal-server-ca.crt"] = caPEM
	}
	paths := map[string]string{}
	for name, data := range files {
		if paths[name], err = writeFile(opts.Dir, name, data); err != nil {
			return nil, err
		}
	}
	p.serverCAFile = paths["principal-server-ca.crt"]

	ports, err := proc.FreePorts(3)
	if err != nil {
		return nil, err
	}
	p.port, p.metricsPort, p.healthzPort = ports[0], ports[1], ports[2]
	if opts.ListenPort != 0 {
		p.port = opts.ListenPort
	}
	p.args = []string{"principal",
		"--kubeconfig", opts.Kubeconfig,
		"--namespace", opts.Namespace,
		"--listen-host", p.host,
		"--listen-port", strconv.Itoa(p.port),
		"--metrics-port", strconv.Itoa(p.metricsPort),
		"--healthz-port", strconv.Itoa(p.healthzPort),
		"--tls-cert", paths["principal-tls.crt"],
		"--tls-key", paths["principal-tls.key"],
		"--auth", "mtls:subject:" + opts.AuthSubjectRegex,
		"--client-cert-subject-match=" + strconv.FormatBool(opts.MatchSubject),
		"--jwt-key", paths["principal-jwt.key"],
		"--enable-resource-proxy=false",
		"--disable-redis-proxy",
		"--redis-server-address", opts.RedisAddr,
		"--log-level", opts.LogLevel,
		"--log-format", "text",
	}
	if opts.ClientCASecret != "" {
		p.args = append(p.args, "--tls-ca-secret-name", opts.ClientCASecret)
	} else {
		p.args = append(p.args, "--root-ca-path", paths["principal-client-ca.crt"])
	}
	if len(opts.AllowedNamespaces) > 0 {
		p.args = append(p.args, "--allowed-namespaces", strings.Join(opts.AllowedNamespaces, ","))
	}
	p.args = append(p.args, opts.ExtraArgs...)
	p.proc, err = proc.Start(ctx, "principal", opts.Dir, bin, p.args...)
	if err != nil {
		return nil, err
	}
	err = p.proc.WaitFor(ctx, opts.StartTimeout, "serving gRPC, healthz and metrics", func() error {
		if err := proc.Dialable(p.Addr()); err != nil {
			return err
		}
		if code, _, err := proc.HTTPGet(ctx, p.HealthzURL()); err != nil || code != http.StatusOK {
			return fmt.Errorf("healthz: %d %v", code, err)
		}
		_, err := p.ConnectedAgentCount(ctx)
		return err
	})
	if err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// Addr is the gRPC address agents dial (ListenHost:port).
func (p *Principal) Addr() string { return net.JoinHostPort(p.host, strconv.Itoa(p.port)) }

// Host and Port are the parts of Addr.
func (p *Principal) Host() string { return p.host }
func (p *Principal) Port() int    { return p.port }

// MetricsURL is the Prometheus endpoint.
func (p *Principal) MetricsURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/metrics", p.metricsPort)
}

// HealthzURL is the health endpoint (200 once the server runs).
func (p *Principal) HealthzURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/healthz", p.healthzPort)
}

// ServerCAPEM is the CA of the principal's server certificate (what agents pass as
// --root-ca-path); nil when the caller supplied the certificate without its CA.
func (p *Principal) ServerCAPEM() []byte { return p.serverCA }

// Args is the command line the principal runs with (without the binary).
func (p *Principal) Args() []string { return append([]string(nil), p.args...) }

// Log returns the principal's output so far.
func (p *Principal) Log() string { return p.proc.Log() }

// Exited reports whether the process has ended, and its exit error.
func (p *Principal) Exited() (bool, error) { return p.proc.Exited() }

// Stop ends the principal (SIGTERM, SIGKILL after 10 s) and waits for it.
func (p *Principal) Stop() { p.proc.Stop() }

// ConnectedAgentCount returns the gauge agent_connected_with_principal: the number of agents
// with an open subscription stream. In v0.9.0 the gauge has no per-agent label.
func (p *Principal) ConnectedAgentCount(ctx context.Context) (int, error) {
	samples, err := scrape(ctx, p.MetricsURL(), "agent_connected_with_principal")
	if err != nil {
		return 0, err
	}
	return connectedCount(samples), nil
}

// ConnectedAgents returns the names of the agents connected now, sorted. It uses the
// agent_connected_with_principal metric's per-agent label when the principal has one; v0.9.0's
// gauge is a bare total, so then the names come from the principal's log ("An agent connected to
// the subscription stream" / "Closing EventStream", field client=<agent>), and the metric only
// confirms that some agent is connected.
func (p *Principal) ConnectedAgents(ctx context.Context) ([]string, error) {
	samples, err := scrape(ctx, p.MetricsURL(), "agent_connected_with_principal")
	if err != nil {
		return nil, err
	}
	return connectedAgents(samples, func() (string, error) { return p.Log(), nil })
}

func connectedCount(samples []metrictext.Sample) int {
	total := 0.0
	for _, s := range samples {
		total += s.Value
	}
	return int(total)
}

// connectedAgents reads the agents' names from the gauge's labels, or from the log when the
// gauge has none (v0.9.0).
func connectedAgents(samples []metrictext.Sample, log func() (string, error)) ([]string, error) {
	names := map[string]bool{}
	labelled := false
	for _, s := range samples {
		for _, l := range []string{"agent", "agent_name", "client"} {
			if name, ok := s.Labels[l]; ok {
				labelled = true
				if s.Value > 0 {
					names[name] = true
				}
			}
		}
	}
	if !labelled {
		if connectedCount(samples) <= 0 {
			return nil, nil
		}
		text, err := log()
		if err != nil {
			return nil, err
		}
		names = connectedFromLog(text)
	}
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

var (
	logClientRe  = regexp.MustCompile(`\bclient=("(?:[^"\\]|\\.)*"|\S+)`)
	logConnected = `msg="An agent connected to the subscription stream"`
	logClosed    = []string{`msg="Closing EventStream"`, `msg="Rejecting agent connection"`}
)

// connectedFromLog replays the principal's subscription stream log lines (text format).
func connectedFromLog(log string) map[string]bool {
	open := map[string]int{}
	for _, line := range strings.Split(log, "\n") {
		m := logClientRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := m[1]
		if unq, err := strconv.Unquote(name); err == nil {
			name = unq
		}
		switch {
		case strings.Contains(line, logConnected):
			open[name]++
		case strings.Contains(line, logClosed[0]) || strings.Contains(line, logClosed[1]):
			if open[name] > 0 {
				open[name]--
			}
		}
	}
	names := map[string]bool{}
	for n, c := range open {
		if c > 0 {
			names[n] = true
		}
	}
	return names
}

// scrape fetches a Prometheus endpoint and returns the samples of one metric.
func scrape(ctx context.Context, url, name string) ([]metrictext.Sample, error) {
	code, body, err := proc.HTTPGet(ctx, url)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d", url, code)
	}
	return metrictext.Samples(body, name)
}

// ServerCAFile is the file holding ServerCAPEM ("" when unknown).
func (p *Principal) ServerCAFile() string { return p.serverCAFile }

// ProbeMTLS makes one TLS 1.3 handshake with the principal at addr, always presenting the client
// certificate (unlike Go's and so argocd-agent's client, which sends none when the certificate's
// issuer is not among the CAs the server names). It returns nil when the principal accepted the
// certificate, or the handshake or alert error (e.g. "tls: unknown certificate authority").
func ProbeMTLS(ctx context.Context, addr string, rootCAPEM, certPEM, keyPEM []byte) error {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootCAPEM) {
		return errors.New("no CA certificate in rootCAPEM")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	d := tls.Dialer{Config: &tls.Config{
		RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil },
	}}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	// In TLS 1.3 the server checks the client certificate after the client's handshake is done;
	// a rejection arrives as an alert on the first read. An accepted connection gets the
	// server's HTTP/2 SETTINGS frame instead.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1)
	if _, err := conn.Read(buf); err != nil {
		return err
	}
	return nil
}
