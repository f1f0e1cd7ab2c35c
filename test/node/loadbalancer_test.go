package node

import (
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

func TestReadyEndpoint(t *testing.T) {
	slice := func(port int32, name string, eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
		p := discoveryv1.EndpointPort{Port: ptr.To(port)}
		if name != "" {
			p.Name = ptr.To(name)
		}
		return discoveryv1.EndpointSlice{Ports: []discoveryv1.EndpointPort{p}, Endpoints: eps}
	}
	ep := func(addr string, ready *bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
	}
	cases := []struct {
		name   string
		slices []discoveryv1.EndpointSlice
		port   string
		want   string
	}{
		{"none", nil, "https", ""},
		{"not ready only", []discoveryv1.EndpointSlice{slice(8443, "https", ep("10.244.0.5", ptr.To(false)))}, "https", ""},
		{"ready one of two", []discoveryv1.EndpointSlice{slice(8443, "https", ep("10.244.0.5", ptr.To(false)), ep("10.244.0.9", ptr.To(true)))}, "https", "10.244.0.9:8443"},
		{"unknown readiness counts as ready", []discoveryv1.EndpointSlice{slice(8443, "https", ep("10.244.0.7", nil))}, "https", "10.244.0.7:8443"},
		{"other port name", []discoveryv1.EndpointSlice{slice(8000, "metrics", ep("10.244.0.7", nil))}, "https", ""},
		{"unnamed port", []discoveryv1.EndpointSlice{slice(6379, "", ep("10.244.0.7", nil))}, "", "10.244.0.7:6379"},
		{"stable order", []discoveryv1.EndpointSlice{slice(1, "a", ep("10.244.0.9", nil)), slice(1, "a", ep("10.244.0.10", nil))}, "a", "10.244.0.10:1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := readyEndpoint(c.slices, c.port)
			if got != c.want || ok != (c.want != "") {
				t.Errorf("readyEndpoint = %q, %v; want %q", got, ok, c.want)
			}
		})
	}
}

func TestLBRestoreInput(t *testing.T) {
	s := &slot{index: 3}
	got := s.lbRestoreInput([]lbRule{{ip: "10.243.3.1", port: 443, to: "10.244.3.5:8443"}})
	want := "*nat\n:AAO-LB-3 - [0:0]\n-A AAO-LB-3 -d 10.243.3.1/32 -p tcp -m tcp --dport 443 -j DNAT --to-destination 10.244.3.5:8443\nCOMMIT\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if empty := s.lbRestoreInput(nil); !strings.Contains(empty, ":AAO-LB-3 - [0:0]") || strings.Contains(empty, "-A ") {
		t.Errorf("no rules must still declare (and so flush) the chain:\n%s", empty)
	}
}
