package node

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// A stand-in for a cloud load balancer and kube-proxy, for Services of type LoadBalancer that
// clients outside the cluster dial (the Argo CD agent principal, which agents of other clusters
// reach): each exposed Service gets an address of the slot's load-balancer range, written into
// its status.loadBalancer.ingress as a cloud controller would, and the host DNATs that address
// and the Service's ports to a ready endpoint from the Service's EndpointSlices (kept by
// kube-controller-manager's endpointslice controller), for pods of other nodes and for the
// host itself. What it hides: no health checks of its own, one endpoint per port (the first
// ready one, no balancing), TCP only, no answer without a ready endpoint (connections time
// out), and no hairpin: pods of the endpoint's own node cannot use the address (no test needs
// it; the principal's clients are agents on other clusters).

// lbSubnet is the load-balancer range of the slot: 10.243.<slot>.0/24, .1 upwards.
func (s *slot) lbSubnet() string       { return fmt.Sprintf("10.243.%d.0/24", s.index) }
func (s *slot) lbAddress(n int) string { return fmt.Sprintf("10.243.%d.%d", s.index, n) }
func (s *slot) lbChain() string        { return fmt.Sprintf("AAO-LB-%d", s.index) }

// lbRule is one DNAT: the Service's address and port to a pod's address and port.
type lbRule struct {
	ip   string
	port int32
	to   string
}

// ExposeLoadBalancer gives the Service an external address, reachable from every node's pods and
// from the host, and keeps it pointed at a ready endpoint until the node stops (a restarted pod
// has a new address). It returns once the address is in the Service's status; the address
// answers once an endpoint is ready.
func (c *Cluster) ExposeLoadBalancer(ctx context.Context, namespace, name string) (string, error) {
	c.lbMu.Lock()
	defer c.lbMu.Unlock()
	key := types.NamespacedName{Namespace: namespace, Name: name}
	if ip, ok := c.lbAddresses[key]; ok {
		return ip, nil
	}
	svc := &corev1.Service{}
	if err := c.API.Client.Get(ctx, key, svc); err != nil {
		return "", err
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return "", fmt.Errorf("service %s is of type %q, not LoadBalancer", key, svc.Spec.Type)
	}
	if c.lbAddresses == nil {
		c.lbAddresses = map[types.NamespacedName]string{}
	}
	ip := c.slot.lbAddress(len(c.lbAddresses) + 1)
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
	if err := c.API.Client.Status().Update(ctx, svc); err != nil {
		return "", fmt.Errorf("setting the load balancer address of %s: %w", key, err)
	}
	if err := c.slot.addLBJumps(); err != nil {
		return "", err
	}
	c.lbAddresses[key] = ip
	if len(c.lbAddresses) == 1 {
		// Until Stop, which waits for it before removing the chain: not the caller's ctx.
		c.lbSync.Add(1)
		go func() {
			defer c.lbSync.Done()
			c.syncLoadBalancers()
		}()
	}
	c.nodeLogf("service %s: load balancer address %s", key, ip)
	return ip, nil
}

// syncLoadBalancers rewrites the slot's DNAT rules whenever the endpoints behind them change.
func (c *Cluster) syncLoadBalancers() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-c.lbDone
		cancel()
	}()
	var applied string
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rules, err := c.lbRules(ctx)
		if err != nil {
			continue // the API server may be restarting; keep the rules that work
		}
		text := c.slot.lbRestoreInput(rules)
		if text == applied {
			continue
		}
		if err := c.slot.applyLB(text); err != nil {
			c.nodeLogf("load balancer rules: %v", err)
			continue
		}
		applied = text
	}
}

// lbRules computes the DNAT of every exposed Service port to its first ready endpoint. A port
// with no ready endpoint keeps no rule: its traffic then follows the host's routes (here, out of
// the machine) and times out, where a real load balancer would refuse it.
func (c *Cluster) lbRules(ctx context.Context) ([]lbRule, error) {
	c.lbMu.Lock()
	exposed := make(map[types.NamespacedName]string, len(c.lbAddresses))
	for k, v := range c.lbAddresses {
		exposed[k] = v
	}
	c.lbMu.Unlock()
	var rules []lbRule
	for key, ip := range exposed {
		svc := &corev1.Service{}
		if err := c.API.Client.Get(ctx, key, svc); err != nil {
			return nil, err
		}
		slices := &discoveryv1.EndpointSliceList{}
		if err := c.API.Client.List(ctx, slices, client.InNamespace(key.Namespace),
			client.MatchingLabels{discoveryv1.LabelServiceName: key.Name}); err != nil {
			return nil, err
		}
		for _, sp := range svc.Spec.Ports {
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
				continue
			}
			if to, ok := readyEndpoint(slices.Items, sp.Name); ok {
				rules = append(rules, lbRule{ip: ip, port: sp.Port, to: to})
			}
		}
	}
	sort.Slice(rules, func(i, j int) bool {
		if rules[i].ip != rules[j].ip {
			return rules[i].ip < rules[j].ip
		}
		return rules[i].port < rules[j].port
	})
	return rules, nil
}

// readyEndpoint is the first ready address (in a stable order) serving the named Service port.
func readyEndpoint(slices []discoveryv1.EndpointSlice, portName string) (string, bool) {
	var found []string
	for _, es := range slices {
		var port int32
		for _, p := range es.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			if p.Port != nil && name == portName {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				found = append(found, net.JoinHostPort(a, fmt.Sprint(port)))
			}
		}
	}
	if len(found) == 0 {
		return "", false
	}
	sort.Strings(found)
	return found[0], true
}

// lbRestoreInput is the iptables-restore input that replaces the slot's load-balancer chain.
func (s *slot) lbRestoreInput(rules []lbRule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*nat\n:%s - [0:0]\n", s.lbChain())
	for _, r := range rules {
		fmt.Fprintf(&b, "-A %s -d %s/32 -p tcp -m tcp --dport %d -j DNAT --to-destination %s\n", s.lbChain(), r.ip, r.port, r.to)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// applyLB replaces the chain's rules in one step: a chain named in iptables-restore's input is
// flushed even with --noflush, and nothing else is touched.
func (s *slot) applyLB(input string) error {
	cmd := exec.Command("iptables-restore", "--noflush", "-w")
	cmd.Stdin = strings.NewReader(input)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// lbJumps send traffic for the slot's load-balancer range to its chain: PREROUTING for pods of
// every node, OUTPUT for the host's own clients.
func (s *slot) lbJumps() [][]string {
	jump := []string{"-d", s.lbSubnet(), "-j", s.lbChain()}
	return [][]string{append([]string{"PREROUTING"}, jump...), append([]string{"OUTPUT"}, jump...)}
}

func (s *slot) addLBJumps() error {
	// -N, not an iptables-restore declaration, which would flush the rules of Services exposed
	// before.
	if err := run("iptables", "-w", "-t", "nat", "-N", s.lbChain()); err != nil && !strings.Contains(err.Error(), "exists") {
		return err
	}
	for _, j := range s.lbJumps() {
		check := append([]string{"-w", "-t", "nat", "-C"}, j...)
		if run("iptables", check...) == nil {
			continue
		}
		if err := run("iptables", append([]string{"-w", "-t", "nat", "-I", j[0], "1"}, j[1:]...)...); err != nil {
			return err
		}
	}
	return nil
}

func (s *slot) removeLB() error {
	if run("iptables", "-w", "-t", "nat", "-L", s.lbChain(), "-n") != nil {
		return nil // no chain: nothing to remove
	}
	for _, j := range s.lbJumps() {
		for run("iptables", append([]string{"-w", "-t", "nat", "-D"}, j...)...) == nil {
		}
	}
	if err := run("iptables", "-w", "-t", "nat", "-F", s.lbChain()); err != nil {
		return err
	}
	return run("iptables", "-w", "-t", "nat", "-X", s.lbChain())
}
