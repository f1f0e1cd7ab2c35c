// Package principal finds the address at which agents reach the Argo CD agent principal when
// no AddOnDeploymentConfig gives one: the load balancer address of the principal's Service on
// the hub (upstream installs it as the LoadBalancer Service argocd-agent-principal), or else a
// fallback the hub administrator configures.
//
// The Service is a hub object that only the hub's administrators write, so what it says may
// decide where agents connect. Nothing a managed cluster can write is read here.
package principal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// DefaultService is upstream's principal Service.
var DefaultService = types.NamespacedName{Namespace: "argocd", Name: "argocd-agent-principal"}

// Where an address came from: the reason of the add-on's PrincipalAddress condition.
const (
	SourceConfig   = "AddOnDeploymentConfig"
	SourceService  = "PrincipalService"
	SourceFallback = "Fallback"
)

// Endpoint is where agents dial the principal, and where that came from.
type Endpoint struct {
	Host string
	Port int
	// Source is one of the Source constants; From says it for people.
	Source string
	From   string
}

// Address is host:port.
func (e Endpoint) Address() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// String is "host:port (from ...)".
func (e Endpoint) String() string { return e.Address() + " (" + e.From + ")" }

// ErrNoAddress says discovery found no address; the error says why.
var ErrNoAddress = errors.New("no principal address to discover")

// Discovery reads the principal's Service.
type Discovery struct {
	// Reader reads Services; the manager's cache holds only the one Service.
	Reader  client.Reader
	Service types.NamespacedName
	// Fallback, if set, is used when the Service has no load balancer address (for example a
	// principal behind an Ingress or a NodePort): "host" or "host:port". Without a port, the
	// Service's port, or 443 without a Service.
	Fallback string
}

// ParseFallback checks a fallback address; it returns the host and the port (0: none given).
func ParseFallback(s string) (string, int, error) {
	host, port := s, 0
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("principal fallback address %q: port %q out of range 1-65535", s, p)
		}
		host, port = h, n
	}
	if err := ValidHost(host); err != nil {
		return "", 0, fmt.Errorf("principal fallback address %q: %w", s, err)
	}
	return host, port, nil
}

// ValidHost accepts an IP address or a DNS name, as agents dial them.
func ValidHost(host string) error {
	if net.ParseIP(host) != nil {
		return nil
	}
	if errs := validation.IsDNS1123Subdomain(host); len(errs) > 0 {
		return fmt.Errorf("not a DNS name or IP address: %v", errs)
	}
	return nil
}

// Discover returns the Service's first load balancer address (IP, else host name) with its
// https port (else its first TCP port), or the fallback. A wrapped ErrNoAddress says what is
// missing.
func (d *Discovery) Discover(ctx context.Context) (Endpoint, error) {
	svc := &corev1.Service{}
	err := d.Reader.Get(ctx, d.Service, svc)
	if err != nil && !apierrors.IsNotFound(err) {
		return Endpoint{}, fmt.Errorf("reading the principal's Service %s: %w", d.Service, err)
	}
	found := err == nil
	port := 0
	if found {
		port = servicePort(svc)
		for i, ing := range svc.Status.LoadBalancer.Ingress {
			host := ing.IP
			if host == "" {
				host = ing.Hostname
			}
			if host == "" || port == 0 || ValidHost(host) != nil {
				continue
			}
			return Endpoint{Host: host, Port: port, Source: SourceService,
				From: fmt.Sprintf("Service %s status.loadBalancer.ingress[%d]", d.Service, i)}, nil
		}
	}
	why := fmt.Sprintf("Service %s not found", d.Service)
	switch {
	case found && port == 0:
		why = fmt.Sprintf("Service %s has no TCP port", d.Service)
	case found:
		why = fmt.Sprintf("Service %s (type %s) has no load balancer address in status.loadBalancer.ingress", d.Service, svc.Spec.Type)
	}
	if d.Fallback != "" {
		host, fport, err := ParseFallback(d.Fallback)
		if err != nil {
			return Endpoint{}, err
		}
		if fport == 0 {
			fport = port
		}
		if fport == 0 {
			fport = 443
		}
		return Endpoint{Host: host, Port: fport, Source: SourceFallback, From: "the manager's --principal-fallback-address, as " + why}, nil
	}
	return Endpoint{}, fmt.Errorf("%w: %s", ErrNoAddress, why)
}

// servicePort is the port named https, as upstream names it, else the first TCP port.
func servicePort(svc *corev1.Service) int {
	first := 0
	for _, p := range svc.Spec.Ports {
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue
		}
		if p.Name == "https" {
			return int(p.Port)
		}
		if first == 0 {
			first = int(p.Port)
		}
	}
	return first
}
