// Package proc runs the child processes of end-to-end tests (API servers aside): each with its
// output captured, stopped on Stop or when its context ends, and killed with the test process.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// logBuffer collects a process's output in memory (and optionally in a file) for Log().
type logBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	file io.Writer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file != nil {
		_, _ = b.file.Write(p)
	}
	return b.buf.Write(p)
}

// Log is everything the process printed so far.
func (p *Process) Log() string { return p.out.String() }

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Process is a child process that is stopped by Stop() or when its context ends.
type Process struct {
	name    string
	cmd     *exec.Cmd
	out     *logBuffer
	logFile *os.File
	done    chan struct{}
	waitErr error
	once    sync.Once
}

// Variables inherited from the test environment that the binaries would read as flag defaults.
var scrubbedEnvPrefixes = []string{"ARGOCD_PRINCIPAL_", "ARGOCD_AGENT_", "REDIS_", "KUBECONFIG="}

func cleanEnv() []string {
	var env []string
next:
	for _, kv := range os.Environ() {
		for _, p := range scrubbedEnvPrefixes {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		env = append(env, kv)
	}
	return env
}

// Start starts bin with args. Output goes to memory and, when dir is set, to dir/name.log.
func Start(ctx context.Context, name, dir, bin string, args ...string) (*Process, error) {
	p := &Process{name: name, out: &logBuffer{}, done: make(chan struct{})}
	if dir != "" {
		f, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			return nil, err
		}
		p.logFile, p.out.file = f, f
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	setParentDeathSignal(p.cmd)
	fmt.Fprintf(p.out, "+ %s %s\n", bin, strings.Join(args, " "))
	if err := p.cmd.Start(); err != nil {
		if p.logFile != nil {
			_ = p.logFile.Close()
		}
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		if p.logFile != nil {
			_ = p.logFile.Close()
		}
		close(p.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			p.Stop()
		case <-p.done:
		}
	}()
	return p, nil
}

// Args are the arguments the process was started with, to start it again.
func (p *Process) Args() []string { return slices.Clone(p.cmd.Args[1:]) }

// Kill sends SIGKILL, as a node losing power or the OOM killer would, and waits for the
// process to end: nothing of it runs on, no lease is released.
func (p *Process) Kill() {
	p.once.Do(func() {
		if done, _ := p.Exited(); !done {
			_ = p.cmd.Process.Kill()
		}
	})
	<-p.done
}

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Stop sends SIGTERM, then SIGKILL after 10 s, and waits for the process to end.
func (p *Process) Stop() {
	p.once.Do(func() {
		if done, _ := p.Exited(); done {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	<-p.done
}

// WaitFor polls check every 100 ms until it returns nil, the process exits, ctx ends or timeout
// passes; the error then carries the last check error and the process output.
func (p *Process) WaitFor(ctx context.Context, timeout time.Duration, what string, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		if done, err := p.Exited(); done {
			return fmt.Errorf("%s exited (%v) before %s; output:\n%s", p.name, err, what, p.out.String())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %s not reached within %s: %v; output:\n%s", p.name, what, timeout, last, p.out.String())
		case <-tick.C:
		}
	}
}

// FreePorts returns n distinct TCP ports from 20000-32767 that are free on all interfaces.
// argocd-agent v0.9.0 rejects metrics and healthz ports of 32768 and above ("invalid port"), which
// rules out kernel-assigned ports (Linux hands out 32768-60999), and binds those servers to every
// interface, not only loopback. Ports below 32768 are never used as ephemeral source ports, so only
// another listener can take one between this check and the process binding it.
func FreePorts(n int) ([]int, error) {
	const lo, hi = 20000, 32768
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, errors.New("no free TCP port in 20000-32767")
		}
		port := lo + rand.IntN(hi-lo)
		l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		ports = append(ports, port)
	}
	return ports, nil
}

func Dialable(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// HTTPGet returns the status code and body of a GET on url.
func HTTPGet(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// BuildAddon builds the add-on binary from this checkout into dir and returns its path.
func BuildAddon(dir string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bin := filepath.Join(dir, "argocd-agent-addon")
	// Static, as `make build` and the image build it: the same binary runs as a process and in
	// the image.
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/argocd-agent-addon")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the manager: %v\n%s", err, out)
	}
	return bin, nil
}
