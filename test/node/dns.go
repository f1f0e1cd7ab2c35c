package node

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// clusterDomain is the kubelet's default cluster domain, which pods' search paths end in.
const clusterDomain = "cluster.local."

// clusterDNS stands in for CoreDNS, which is not built here: it answers A queries for
// <service>.<namespace>.svc.cluster.local with the Service's ClusterIP, read from the API
// server, or for a headless Service (clusterIP None) its first ready endpoint's address (in a
// stable order; CoreDNS answers with all of them), and NXDOMAIN for anything else. What it
// hides: SRV and PTR records, per-pod names, names outside the cluster, TCP. Pods reach a
// headless Service's pod directly; a ClusterIP is routed only when the harness routes it
// (RouteService: no kube-proxy). The kubelet points every pod's resolv.conf at it, so
// a pod resolves `argocd-redis` through its search path as on a real cluster.
type clusterDNS struct {
	conn *net.UDPConn
	api  client.Client
}

func startClusterDNS(ctx context.Context, addr string, api client.Client) (*clusterDNS, error) {
	udpAddr, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp4", udpAddr)
	if err != nil {
		return nil, err
	}
	d := &clusterDNS{conn: conn, api: api}
	go d.serve(ctx)
	return d, nil
}

func (d *clusterDNS) stop() { _ = d.conn.Close() }

func (d *clusterDNS) serve(ctx context.Context) {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if reply, err := d.answer(ctx, buf[:n]); err == nil {
			_, _ = d.conn.WriteToUDP(reply, from)
		}
	}
}

func (d *clusterDNS) answer(ctx context.Context, query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	resp := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	ip, found := d.lookup(ctx, q.Name.String())
	if !found {
		resp.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, resp)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if found && q.Type == dnsmessage.TypeA && q.Class == dnsmessage.ClassINET {
		if err := b.StartAnswers(); err != nil {
			return nil, err
		}
		var a dnsmessage.AResource
		copy(a.A[:], ip.To4())
		if err := b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 5}, a); err != nil {
			return nil, err
		}
	}
	// Other types of a known name (AAAA): NOERROR with no answer, as CoreDNS gives.
	return b.Finish()
}

// lookup resolves <service>.<namespace>.svc.cluster.local. to the Service's ClusterIP, or a
// ready endpoint of a headless Service.
func (d *clusterDNS) lookup(ctx context.Context, name string) (net.IP, bool) {
	rest, ok := strings.CutSuffix(strings.ToLower(name), ".svc."+clusterDomain)
	if !ok {
		return nil, false
	}
	svc, ns, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(ns, ".") {
		return nil, false
	}
	s := &corev1.Service{}
	if err := d.api.Get(ctx, types.NamespacedName{Namespace: ns, Name: svc}, s); err != nil {
		return nil, false
	}
	if s.Spec.ClusterIP == corev1.ClusterIPNone {
		return d.readyEndpoint(ctx, ns, svc)
	}
	ip := net.ParseIP(s.Spec.ClusterIP)
	if ip == nil || ip.To4() == nil {
		return nil, false
	}
	return ip, true
}

// readyEndpoint is the first ready IPv4 address, in a stable order, of the Service's
// EndpointSlices (kept by kube-controller-manager's endpointslice controller).
func (d *clusterDNS) readyEndpoint(ctx context.Context, namespace, service string) (net.IP, bool) {
	list := &discoveryv1.EndpointSliceList{}
	if err := d.api.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{discoveryv1.LabelServiceName: service}); err != nil {
		return nil, false
	}
	var found []net.IP
	for _, es := range list.Items {
		if es.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				if ip := net.ParseIP(a); ip != nil && ip.To4() != nil {
					found = append(found, ip)
				}
			}
		}
	}
	if len(found) == 0 {
		return nil, false
	}
	slices.SortFunc(found, func(a, b net.IP) int { return bytes.Compare(a.To4(), b.To4()) })
	return found[0], true
}
