// Package node turns a test API server into a cluster whose pods really run: one node of
// kubelet, containerd and runc with a CNI bridge, kube-scheduler, and kube-controller-manager
// with the controllers pods need. Pods run from images built here (hack/image) and imported,
// under the ServiceAccounts and RBAC the cluster holds.
//
// It needs root, the binaries `hack/test-tools.sh` builds (KUBELET_BIN, KUBE_SCHEDULER_BIN,
// KUBE_CONTROLLER_MANAGER_BIN, PAUSE_IMAGE_ARCHIVE) and Debian's containerd, runc and CNI
// plugins. The API server must be started with testenv.Options.Node.
//
// Not real: there is no kube-proxy, no cloud load balancer and no CoreDNS. The kubernetes
// Service's ClusterIP is routed to the API server by an iptables DNAT rule of the node's own
// (RouteService adds others), ExposeLoadBalancer stands in for a cloud load balancer (see
// loadbalancer.go), and a small DNS server (see clusterDNS) answers
// <service>.<namespace>.svc.cluster.local.
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testenv"
)

// Controllers of kube-controller-manager that pods need (../shared/reference/real-pods.md):
// Deployments and their ReplicaSets, StatefulSets (Argo CD's application-controller), garbage collection, service accounts and their tokens,
// kube-root-ca.crt in every namespace, the node lifecycle (it lifts the not-ready taint new
// nodes get), namespace deletion and pod garbage collection, EndpointSlices (the load-balancer
// stand-in of loadbalancer.go follows them). The CSR signer and cleaner sign
// and remove kube-apiserver-client and kubelet CSRs, as they do on a real control plane.
var controllers = []string{
	"deployment-controller", "replicaset-controller", "statefulset-controller", "garbage-collector-controller",
	"serviceaccount-controller", "serviceaccount-token-controller", "root-ca-certificate-publisher-controller",
	"node-lifecycle-controller", "namespace-controller", "pod-garbage-collector-controller",
	"certificatesigningrequest-signing-controller", "certificatesigningrequest-cleaner-controller",
	"endpointslice-controller",
}

// Options configure Start.
type Options struct {
	// Name of the cluster; its node is <Name>-node.
	Name string
	// Dir holds the node's files and logs. Keep it short: containerd's socket path must fit
	// the 108 bytes of a Unix socket address.
	Dir string
	// API is the cluster's API server, started with testenv.Options.Node.
	API *testenv.Env
	// Images are docker-archives to import before the node is ready (the pause image always is).
	Images []string
	// Registries are host:port of registries served over plain HTTP (test/registry) that the
	// node's containerd may pull from, as a node is set up for a registry of its own.
	Registries []string
	// Logf, if set, is told each step.
	Logf func(format string, args ...any)
}

// Cluster is a running node and the controllers that schedule and manage its pods.
type Cluster struct {
	Name     string
	NodeName string
	API      *testenv.Env

	opts             Options
	dir              string
	slot             *slot
	containerdSocket string
	containerd       *proc.Process
	kubelet          *proc.Process
	controllers      []*proc.Process
	dns              *clusterDNS

	lbMu        sync.Mutex
	lbAddresses map[types.NamespacedName]string
	lbDone      chan struct{}
	lbSync      sync.WaitGroup
}

// Start brings up the node and its controllers and waits until the node is Ready and schedulable.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	if o.Name == "" || o.Dir == "" || o.API == nil {
		return nil, errors.New("node: Name, Dir and API are required")
	}
	if o.API.Node == nil {
		return nil, fmt.Errorf("node: the API server of %s was not started with testenv.Options.Node", o.Name)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("node: containerd and kubelet need root")
	}
	bins := map[string]string{}
	for _, env := range []string{"KUBELET_BIN", "KUBE_SCHEDULER_BIN", "KUBE_CONTROLLER_MANAGER_BIN", "PAUSE_IMAGE_ARCHIVE"} {
		if bins[env] = os.Getenv(env); bins[env] == "" {
			return nil, fmt.Errorf("%s is not set: run `make test`, or `eval \"$(hack/test-tools.sh)\"` first", env)
		}
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: o.Name, NodeName: o.Name + "-node", API: o.API, opts: o, dir: dir, lbDone: make(chan struct{})}
	if c.slot, err = acquireSlot(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	// A holder that died without cleaning up left its directory in the lock file.
	if prev := c.slot.previousDir(); prev != "" && prev != dir {
		if err := c.slot.cleanUp(prev); err != nil {
			return nil, fmt.Errorf("removing what an earlier node of slot %d left: %w", c.slot.index, err)
		}
		if _, err := os.Stat(filepath.Join(prev, "containerd", "config.toml")); err == nil {
			_ = os.RemoveAll(prev) // only a directory a node wrote
		}
	} else if err := c.slot.cleanUp(""); err != nil {
		return nil, fmt.Errorf("removing what an earlier node of slot %d left: %w", c.slot.index, err)
	}
	if err := c.slot.claim(dir); err != nil {
		return nil, err
	}
	if err := c.slot.makeCgroups(); err != nil {
		return nil, err
	}
	files := o.API.Node
	// Pods reach the API server as in-cluster clients do, on the kubernetes Service.
	if err := c.slot.addNAT(files.KubernetesServiceIP.String(), 443, fmt.Sprintf("%s:%d", files.AdvertiseAddress, files.Port)); err != nil {
		return nil, err
	}
	// The bridge exists before its first pod (the CNI plugin takes it as it finds it) so that
	// the cluster DNS can listen on its gateway address.
	if err := c.slot.makeBridge(); err != nil {
		return nil, err
	}
	if c.dns, err = startClusterDNS(ctx, c.slot.gateway()+":53", o.API.Client); err != nil {
		return nil, fmt.Errorf("cluster DNS: %w", err)
	}
	if err := c.startControllers(ctx, bins["KUBE_CONTROLLER_MANAGER_BIN"], bins["KUBE_SCHEDULER_BIN"]); err != nil {
		return nil, err
	}
	if err := c.startContainerd(ctx); err != nil {
		return nil, err
	}
	for _, img := range append([]string{bins["PAUSE_IMAGE_ARCHIVE"]}, o.Images...) {
		if err := c.ImportImage(ctx, img); err != nil {
			return nil, err
		}
	}
	if err := c.startKubelet(ctx, bins["KUBELET_BIN"]); err != nil {
		return nil, err
	}
	if err := c.waitNodeReady(ctx, 3*time.Minute); err != nil {
		return nil, err
	}
	c.nodeLogf("node %s Ready (pods on %s, kubelet on port %d)", c.NodeName, c.slot.podCIDR(), c.slot.kubeletPort())
	return c, nil
}

// startControllers runs kube-controller-manager and kube-scheduler under their own identities
// (system:kube-controller-manager, system:kube-scheduler, bound by the API server's bootstrap
// RBAC); the controllers then act with a service account each.
func (c *Cluster) startControllers(ctx context.Context, kcmBin, schedulerBin string) error {
	dir := filepath.Join(c.dir, "controllers")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	files := c.API.Node
	kcmConfig := filepath.Join(dir, "kube-controller-manager.kubeconfig")
	if err := c.writeKubeconfig(kcmConfig, "system:kube-controller-manager"); err != nil {
		return err
	}
	kcm, err := proc.Start(ctx, "kube-controller-manager", c.dir, kcmBin, "--kubeconfig", kcmConfig,
		"--controllers", strings.Join(controllers, ","), "--use-service-account-credentials",
		"--service-account-private-key-file", files.ServiceAccountKey, "--root-ca-file", files.ServingCA,
		"--cluster-signing-cert-file", files.ClientCACert, "--cluster-signing-key-file", files.ClientCAKey,
		"--leader-elect=false", "--secure-port=0", "-v=1")
	if err != nil {
		return err
	}
	c.controllers = append(c.controllers, kcm)
	schedConfig := filepath.Join(dir, "kube-scheduler.kubeconfig")
	if err := c.writeKubeconfig(schedConfig, "system:kube-scheduler"); err != nil {
		return err
	}
	sched, err := proc.Start(ctx, "kube-scheduler", c.dir, schedulerBin, "--kubeconfig", schedConfig,
		"--leader-elect=false", "--secure-port=0", "-v=1")
	if err != nil {
		return err
	}
	c.controllers = append(c.controllers, sched)
	return nil
}

// writeKubeconfig writes a kubeconfig for user (and groups) with a client certificate of the
// cluster's client CA.
func (c *Cluster) writeKubeconfig(path, user string, groups ...string) error {
	files := c.API.Node
	caCert, err := os.ReadFile(files.ClientCACert)
	if err != nil {
		return err
	}
	caKey, err := os.ReadFile(files.ClientCAKey)
	if err != nil {
		return err
	}
	cert, key, err := testca.IssueCert(caCert, caKey, testca.CertRequest{CommonName: user, Organization: groups, Client: true, Lifetime: 7 * 24 * time.Hour})
	if err != nil {
		return err
	}
	servingCA, err := os.ReadFile(files.ServingCA)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cluster"] = &clientcmdapi.Cluster{Server: c.API.Config.Host, CertificateAuthorityData: servingCA}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts["default"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: "user"}
	cfg.CurrentContext = "default"
	return clientcmd.WriteToFile(*cfg, path)
}

func (c *Cluster) waitNodeReady(ctx context.Context, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if exited, err := c.kubelet.Exited(); exited {
			return false, fmt.Errorf("kubelet exited: %v; its log ends:\n%s", err, tail(c.kubelet.Log(), 20))
		}
		n := &corev1.Node{}
		if last = c.API.Client.Get(ctx, types.NamespacedName{Name: c.NodeName}, n); last != nil {
			return false, nil
		}
		ready := slices.ContainsFunc(n.Status.Conditions, func(cond corev1.NodeCondition) bool {
			return cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue
		})
		// The node lifecycle controller lifts the not-ready taint a node registers with.
		tainted := slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == corev1.TaintNodeNotReady })
		if !ready || tainted {
			last = fmt.Errorf("node %s: ready=%v, not-ready taint=%v", c.NodeName, ready, tainted)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("node %s not Ready within %s: %w (last: %v)", c.NodeName, timeout, err, last)
	}
	return nil
}

// RouteService routes the node's pods to a ClusterIP and port, as kube-proxy would, sending the
// connections to addr (host:port, an address the host reaches).
func (c *Cluster) RouteService(clusterIP string, port int, addr string) error {
	return c.slot.addNAT(clusterIP, port, addr)
}

// PodCIDR is the node's pod subnet.
func (c *Cluster) PodCIDR() string { return c.slot.podCIDR() }

// DNSAddr is the address of the cluster DNS the node's pods use.
func (c *Cluster) DNSAddr() string { return c.slot.gateway() + ":53" }

// Stop deletes every pod so that the kubelet stops its containers and releases their network
// (CNI DEL), then stops the node and its controllers and removes everything they left on the
// machine: processes, mounts, the bridge, iptables rules, cgroups.
func (c *Cluster) Stop() {
	if c.slot == nil {
		return
	}
	close(c.lbDone)
	c.lbSync.Wait() // no rule rewritten after the chain is removed
	// Controllers first, so that nothing replaces the pods deleted below.
	for i := len(c.controllers) - 1; i >= 0; i-- {
		c.controllers[i].Stop()
	}
	c.controllers = nil
	if c.kubelet != nil {
		if exited, _ := c.kubelet.Exited(); !exited {
			c.drain(30 * time.Second)
		}
		c.kubelet.Stop()
	}
	if c.containerd != nil {
		c.containerd.Stop()
	}
	if c.dns != nil {
		c.dns.stop()
	}
	if err := c.slot.cleanUp(c.dir); err != nil {
		c.nodeLogf("cleaning up: %v", err)
	}
	c.removeOutsidePaths()
	_ = c.slot.claim("") // cleaned: nothing for the next holder to remove
	c.slot.release()
	c.slot = nil
}

// drain deletes every pod of the node and waits for the kubelet to confirm each is gone.
func (c *Cluster) drain(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	pods := &corev1.PodList{}
	if err := c.API.Client.List(ctx, pods); err != nil {
		c.nodeLogf("listing pods to drain: %v", err)
		return
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Spec.NodeName == c.NodeName {
			_ = c.API.Client.Delete(ctx, p, client.GracePeriodSeconds(1))
		}
	}
	err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := c.API.Client.List(ctx, pods); err != nil {
			return false, nil
		}
		return !slices.ContainsFunc(pods.Items, func(p corev1.Pod) bool { return p.Spec.NodeName == c.NodeName }), nil
	})
	if err != nil {
		c.nodeLogf("pods still on %s after %s; removing them by force", c.NodeName, timeout)
	}
}

// removeOutsidePaths removes what the node wrote outside its directory: the kubelet's
// /var/log/containers links to this node's logs and its device-plugin socket, libcni's cached
// results of this node's network, and containerd's shim socket directory once empty.
func (c *Cluster) removeOutsidePaths() {
	podLogs := filepath.Join(c.dir, "kubelet", "pod-logs")
	entries, _ := os.ReadDir("/var/log/containers")
	for _, e := range entries {
		link := filepath.Join("/var/log/containers", e.Name())
		if target, err := os.Readlink(link); err == nil && strings.HasPrefix(target, podLogs+"/") {
			_ = os.Remove(link)
		}
	}
	// The socket path is fixed in the kubelet; nothing here uses device plugins.
	_ = os.Remove("/var/lib/kubelet/device-plugins/kubelet.sock")
	for _, d := range []string{"/var/lib/kubelet/device-plugins", "/var/lib/kubelet"} {
		_ = syscall.Rmdir(d) // only if empty: another node may be using it
	}
	const results = "/var/lib/cni/results"
	prefix := c.slot.network() + "-"
	entries, _ = os.ReadDir(results)
	for _, e := range entries {
		if id, ok := strings.CutPrefix(e.Name(), prefix); ok {
			id, _, _ = strings.Cut(id, "-")
			_ = os.Remove(filepath.Join(results, e.Name()))
			_ = os.Remove(filepath.Join(results, "cni-loopback-"+id+"-lo"))
		}
	}
	removeStaleSockets("/run/containerd/s")
	for _, d := range []string{results, "/var/lib/cni", "/run/containerd/s", "/run/containerd"} {
		_ = syscall.Rmdir(d)
	}
}

// removeStaleSockets removes the socket files in dir that no process listens on any more. Shim
// sockets are named by a hash, not by node, so liveness is what tells another node's apart.
func removeStaleSockets(dir string) {
	data, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return
	}
	live := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 8 {
			live[f[7]] = true
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if p := filepath.Join(dir, e.Name()); !live[p] {
			_ = os.Remove(p)
		}
	}
}

// PodReady reports whether a pod is Ready, and if not, why, from the kubelet's status.
func PodReady(p *corev1.Pod) (bool, string) {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			return false, fmt.Sprintf("container %s waiting: %s: %s", cs.Name, w.Reason, w.Message)
		}
		if t := cs.State.Terminated; t != nil {
			return false, fmt.Sprintf("container %s terminated: %s (exit %d): %s", cs.Name, t.Reason, t.ExitCode, t.Message)
		}
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue, fmt.Sprintf("phase %s, Ready=%s %s", p.Status.Phase, cond.Status, cond.Message)
		}
	}
	return false, fmt.Sprintf("phase %s", p.Status.Phase)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// HostIP is the machine's address on the interface of its default route: an address pods reach
// the host on (their 127.0.0.1 is their own).
func HostIP() (net.IP, error) {
	conn, err := net.Dial("udp4", "198.51.100.1:9") // no packet is sent: this only picks the route
	if err != nil {
		return nil, fmt.Errorf("finding the host's address: %w", err)
	}
	defer conn.Close()
	ip := conn.LocalAddr().(*net.UDPAddr).IP
	if ip.IsLoopback() {
		return nil, fmt.Errorf("the host's only route is through loopback (%s): pods could not reach it", ip)
	}
	return ip, nil
}
