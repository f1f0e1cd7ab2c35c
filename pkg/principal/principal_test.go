package principal

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func TestDiscover(t *testing.T) {
	svc := func(typ corev1.ServiceType, ports []corev1.ServicePort, ingress ...corev1.LoadBalancerIngress) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: DefaultService.Namespace, Name: DefaultService.Name},
			Spec:       corev1.ServiceSpec{Type: typ, Ports: ports},
			Status:     corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: ingress}},
		}
	}
	upstream := []corev1.ServicePort{{Name: "https", Port: 443}}
	tests := []struct {
		name     string
		svc      *corev1.Service
		fallback string
		want     string
		source   string
		wantErr  string
	}{
		{"no Service", nil, "", "", "", "not found"},
		{"no Service, fallback", nil, "principal.example.com", "principal.example.com:443", SourceFallback, ""},
		{"load balancer IP", svc(corev1.ServiceTypeLoadBalancer, upstream, corev1.LoadBalancerIngress{IP: "203.0.113.7"}), "", "203.0.113.7:443", SourceService, ""},
		{"load balancer host name", svc(corev1.ServiceTypeLoadBalancer, upstream, corev1.LoadBalancerIngress{Hostname: "lb.example.com"}), "", "lb.example.com:443", SourceService, ""},
		{"https port wins over the first", svc(corev1.ServiceTypeLoadBalancer, []corev1.ServicePort{{Name: "metrics", Port: 8000}, {Name: "https", Port: 8443}},
			corev1.LoadBalancerIngress{IP: "203.0.113.7"}), "", "203.0.113.7:8443", SourceService, ""},
		{"an unusable ingress entry is skipped", svc(corev1.ServiceTypeLoadBalancer, upstream, corev1.LoadBalancerIngress{Hostname: "Not A Host"}, corev1.LoadBalancerIngress{IP: "203.0.113.8"}),
			"", "203.0.113.8:443", SourceService, ""},
		{"no address yet", svc(corev1.ServiceTypeLoadBalancer, upstream), "", "", "", "no load balancer address"},
		{"ClusterIP Service", svc(corev1.ServiceTypeClusterIP, upstream), "", "", "", "type ClusterIP"},
		{"no address, fallback takes the Service's port", svc(corev1.ServiceTypeClusterIP, []corev1.ServicePort{{Name: "https", Port: 8443}}), "principal.example.com", "principal.example.com:8443", SourceFallback, ""},
		{"fallback with its own port", svc(corev1.ServiceTypeClusterIP, upstream), "principal.example.com:30443", "principal.example.com:30443", SourceFallback, ""},
		{"UDP only", svc(corev1.ServiceTypeLoadBalancer, []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolUDP}}, corev1.LoadBalancerIngress{IP: "203.0.113.7"}), "", "", "", "no TCP port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := fake.NewClientBuilder()
			if tc.svc != nil {
				b = b.WithObjects(tc.svc)
			}
			d := &Discovery{Reader: b.Build(), Service: DefaultService, Fallback: tc.fallback}
			ep, err := d.Discover(context.Background())
			if tc.wantErr != "" {
				if !errors.Is(err, ErrNoAddress) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrNoAddress saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ep.Address() != tc.want || ep.Source != tc.source || ep.From == "" {
				t.Errorf("got %s from %s (%q), want %s from %s", ep.Address(), ep.Source, ep.From, tc.want, tc.source)
			}
		})
	}
}

func TestParseFallback(t *testing.T) {
	for _, ok := range []string{"principal.example.com", "10.0.0.1", "principal.example.com:8443", "[2001:db8::1]:443"} {
		if _, _, err := ParseFallback(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"https://principal", "principal:0", "principal:http", "bad host"} {
		if _, _, err := ParseFallback(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
