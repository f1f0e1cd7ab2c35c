// Package registry serves an OCI registry (go-containerregistry's, in the test process) where the
// tests' nodes and tools reach it: plain HTTP, anonymous, in memory. Argo CD sources
// (test/argocd) and released charts and images (test/e2e) are pushed to it.
package registry

import (
	"context"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Registry is a running registry.
type Registry struct {
	// Addr is host:port, where pods and the test process reach it.
	Addr string
	srv  *http.Server
}

// Start serves a registry on host (an address the nodes' pods reach, such as the machine's)
// until ctx ends or Stop.
func Start(ctx context.Context, host string) (*Registry, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, err
	}
	r := &Registry{Addr: l.Addr().String(), srv: &http.Server{
		Handler:           registry.New(registry.Logger(log.New(nopWriter{}, "", 0))),
		ReadHeaderTimeout: 10 * time.Second,
	}}
	go func() { _ = r.srv.Serve(l) }()
	go func() {
		<-ctx.Done()
		r.Stop()
	}()
	return r, nil
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// Stop closes the registry.
func (r *Registry) Stop() { _ = r.srv.Close() }
