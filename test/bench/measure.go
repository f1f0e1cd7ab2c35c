package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/audit"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/ocmcsr"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
)

// workName is the ManifestWork addon-framework delivers an add-on's agent in, for both kinds.
const workName = "addon-" + identity.AddonName + "-deploy-0"

// pollEvery is how often the bench checks what it waits for: the resolution of what it times.
const pollEvery = 200 * time.Millisecond

// idleAfter is how long a restarted manager must make no request to count as idle again.
const idleAfter = 20 * time.Second

// result is one kind at one fleet size.
type result struct {
	kind     string
	clusters int
	// objects is the number of objects in the first cluster's ManifestWork: both kinds must
	// deliver the same.
	objects int
	rollout time.Duration
	sign    time.Duration
	// Requests per phase and client (component).
	rolloutReqs, signReqs, steadyReqs, restartReqs map[string]*audit.Counts
	steady                                         time.Duration
	restartIdle                                    time.Duration
	// managerRSS is the peak memory of the kind's manager process: ours, or OCM's
	// addon-manager for the template kind. addonManagerRSS is OCM's addon-manager's in both.
	managerRSS, addonManagerRSS int64
	err                         error
}

// managerSide are the components that do the add-on's work for a kind: OCM's addon-manager
// runs in both (it creates the ManagedClusterAddOns from the Placement and resolves configs).
func managerSide(kind string) []string {
	if kind == kindAddon {
		return []string{compManager, compAddonManager}
	}
	return []string{compAddonManager}
}

func measure(o options, dir, bin, kind string, n int) *result {
	res := &result{kind: kind, clusters: n}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := startHub(ctx, dir, o.ocmBin, o.helm)
	if err != nil {
		res.err = err
		return res
	}
	defer h.stop()
	clusters, err := h.join(ctx, n)
	if err != nil {
		res.err = fmt.Errorf("joining clusters: %w", err)
		return res
	}
	// OCM's registration controller sets up each new cluster (namespace, RBAC, status): let it
	// finish, so the rollout is timed on a settled hub, as when a Placement is made over a fleet.
	if err := waitIdle(ctx, h, []string{compOCM}, 0, 5*time.Second, o.timeout); err != nil {
		res.err = err
		return res
	}
	var mgr *proc.Process
	switch kind {
	case kindAddon:
		mgr, err = h.installAddon(ctx, bin, o.clusterSecrets, o.chartValues)
	case kindTemplate:
		err = h.installTemplate(ctx)
	}
	if err != nil {
		res.err = fmt.Errorf("installing the %s add-on: %w", kind, err)
		return res
	}
	// Let the managers finish their start-up reads and the hub settle before the timer starts.
	time.Sleep(2 * time.Second)

	from, err := h.audit.Offset()
	if err != nil {
		res.err = err
		return res
	}
	start := time.Now()
	if err := h.createPlacement(ctx); err != nil {
		res.err = err
		return res
	}
	if err := poll.Wait(ctx, pollEvery, o.timeout, func(ctx context.Context) (bool, error) {
		if err := h.exited(mgr); err != nil {
			return false, poll.Stop(err)
		}
		got, err := countWorks(ctx, h.c)
		return got >= n, err
	}); err != nil {
		res.err = fmt.Errorf("rollout: %w", err)
		return res
	}
	res.rollout = time.Since(start)
	w := &workv1.ManifestWork{}
	if err := h.c.Get(ctx, client.ObjectKey{Namespace: clusters[0], Name: workName}, w); err != nil {
		res.err = err
		return res
	}
	res.objects = len(w.Spec.Workload.Manifests)
	// Requests that the rollout set off may still come after the last ManifestWork (status
	// updates): the rollout's count runs until the signing starts, after the managers settle.
	if err := waitIdle(ctx, h, managerSide(kind), from, 5*time.Second, o.timeout); err != nil {
		res.err = err
		return res
	}
	mid, err := h.audit.Offset()
	if err != nil {
		res.err = err
		return res
	}
	if res.rolloutReqs, err = count(h, from, mid); err != nil {
		res.err = err
		return res
	}

	start = time.Now()
	if err := h.fileCSRs(ctx, clusters, o.timeout, func() error { return h.exited(mgr) }); err != nil {
		res.err = fmt.Errorf("signing: %w", err)
		return res
	}
	res.sign = time.Since(start)
	if err := waitIdle(ctx, h, managerSide(kind), mid, 5*time.Second, o.timeout); err != nil {
		res.err = err
		return res
	}
	end, err := h.audit.Offset()
	if err != nil {
		res.err = err
		return res
	}
	if res.signReqs, err = count(h, mid, end); err != nil {
		res.err = err
		return res
	}

	if o.steady > 0 {
		time.Sleep(o.steady)
		res.steady = o.steady
		next, err := h.audit.Offset()
		if err != nil {
			res.err = err
			return res
		}
		if res.steadyReqs, err = count(h, end, next); err != nil {
			res.err = err
			return res
		}
		end = next
	}
	res.managerRSS, res.addonManagerRSS = peakRSS(mgr), peakRSS(h.addons)
	if kind == kindAddon {
		// What the manager holds at its peak, for `go tool pprof` (kept with -logs).
		if err := saveHeapProfile(ctx, h.pprof, filepath.Join(dir, "manager-heap.pprof")); err != nil {
			res.err = err
			return res
		}
	}
	if kind == kindTemplate {
		res.managerRSS = res.addonManagerRSS
	}

	if o.restart {
		if err := restart(ctx, h, bin, kind, &mgr); err != nil {
			res.err = fmt.Errorf("restart: %w", err)
			return res
		}
		start := time.Now()
		if err := waitIdle(ctx, h, managerSide(kind)[:1], end, idleAfter, o.timeout); err != nil {
			res.err = err
			return res
		}
		res.restartIdle = time.Since(start) - idleAfter
		next, err := h.audit.Offset()
		if err != nil {
			res.err = err
			return res
		}
		if res.restartReqs, err = count(h, end, next); err != nil {
			res.err = err
			return res
		}
	}
	if err := h.exited(mgr); err != nil {
		res.err = err
	}
	return res
}

// restart stops the kind's manager and starts it again with the same arguments.
func restart(ctx context.Context, h *hub, bin, kind string, mgr **proc.Process) error {
	if kind == kindTemplate {
		h.addons.Stop()
		p, err := h.startAddonManager(ctx)
		h.addons = p
		return err
	}
	(*mgr).Stop()
	p, err := h.startManager(ctx, bin, (*mgr).Args())
	*mgr = p
	return err
}

// saveHeapProfile writes the Go heap profile served at addr (--pprof-bind-address) to path,
// after a garbage collection, so it shows what is live.
func saveHeapProfile(ctx context.Context, addr, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("manager heap profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("manager heap profile: %s", resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("manager heap profile: %w", err)
	}
	return os.WriteFile(path, data, 0o644)
}

// freeLocalAddress is a loopback address with a port nothing listens on now.
func freeLocalAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func peakRSS(p *proc.Process) int64 {
	if p == nil {
		return 0
	}
	b, err := p.PeakRSS()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: peak memory:", err)
	}
	return b
}

func count(h *hub, from, to int64) (map[string]*audit.Counts, error) {
	events, err := h.audit.Events(from, to)
	if err != nil {
		return nil, err
	}
	return audit.Count(events, component), nil
}

// waitIdle waits until none of comps has made a request for quiet, counting from offset from.
func waitIdle(ctx context.Context, h *hub, comps []string, from int64, quiet, timeout time.Duration) error {
	last, lastChange := -1, time.Now()
	var lastKeys string
	err := poll.Wait(ctx, time.Second, timeout, func(context.Context) (bool, error) {
		c, err := count(h, from, -1)
		if err != nil {
			return false, err
		}
		total := 0
		for _, comp := range comps {
			if c[comp] != nil {
				total += c[comp].Total
			}
		}
		if total != last {
			last, lastChange = total, time.Now()
			lastKeys = ""
			for _, comp := range comps {
				lastKeys += fmt.Sprintf(" %s: %v", comp, c[comp].Top(5, 1))
			}
		}
		return time.Since(lastChange) >= quiet, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %v to be idle for %s: %w (still making%s)", comps, quiet, err, lastKeys)
	}
	return nil
}

// countWorks counts the add-on's ManifestWorks, reading metadata only so polling stays cheap.
func countWorks(ctx context.Context, c client.Client) (int, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(schema.GroupVersionKind{Group: workv1.GroupName, Version: "v1", Kind: "ManifestWorkList"})
	if err := c.List(ctx, list); err != nil {
		return 0, err
	}
	n := 0
	for _, w := range list.Items {
		if w.Name == workName {
			n++
		}
	}
	return n, nil
}

// fileCSRs files one agent CSR per cluster, 8 at once as a fleet's agents would, each as that
// cluster's registration agent, and waits until every one carries a certificate.
func (h *hub) fileCSRs(ctx context.Context, clusters []string, timeout time.Duration, alive func() error) error {
	ca, err := authority.Parse(h.caCert, h.caKey, time.Now())
	if err != nil {
		return err
	}
	var (
		mu    sync.Mutex
		names = map[string]bool{}
	)
	if err := parallel(clusters, 8, func(cluster string) error {
		csr, _, err := ocmcsr.New(ocmcsr.Request{Cluster: cluster, CAID: ca.ID()})
		if err != nil {
			return err
		}
		user := ocmcsr.AgentUsername(cluster)
		cs, err := kubernetes.NewForConfig(h.agentConfig(user, append(ocmcsr.AgentGroupsOf(user), "system:authenticated")))
		if err != nil {
			return err
		}
		created, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		mu.Lock()
		names[created.Name] = true
		mu.Unlock()
		return nil
	}); err != nil {
		return err
	}
	return poll.Wait(ctx, pollEvery, timeout, func(ctx context.Context) (bool, error) {
		if err := alive(); err != nil {
			return false, poll.Stop(err)
		}
		list := &certificatesv1.CertificateSigningRequestList{}
		if err := h.c.List(ctx, list); err != nil {
			return false, err
		}
		signed := 0
		for _, csr := range list.Items {
			if names[csr.Name] && len(csr.Status.Certificate) > 0 {
				signed++
			}
		}
		if signed == len(names) {
			return true, nil
		}
		return false, fmt.Errorf("%d of %d CSRs signed", signed, len(names))
	})
}
