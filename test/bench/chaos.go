package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/spokeready"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/ocmcsr"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
)

// Faults chaos injects.
const (
	// faultKill kills the leading manager (SIGKILL).
	faultKill = "kill"
	// faultAPIServer restarts kube-apiserver (SIGTERM, etcd keeps its data); the managers run on.
	faultAPIServer = "apiserver"
)

// apiServerGrace is how long a restarted kube-apiserver gets to exit before it is killed: the
// restart must stay well within the manager's lease renew deadline (10 s), past which it stops
// leading and exits by design.
const apiServerGrace = 3 * time.Second

// fault is what chaos does to the hub, how often, with how many manager replicas.
type fault struct {
	kind     string
	count    int
	replicas int
}

// chaosResult is one run of a rollout under faults.
type chaosResult struct {
	clusters int
	fault    fault
	// converged is from the Placement to every check below holding, faults included.
	converged time.Duration
	// recoveries are, for each fault, how long until the hub worked again: for a kill, until
	// another manager led (a replica started in the dead one's place, or the standby; either
	// waits for the dead leader's Lease to expire); for an API server restart, how long it was
	// down.
	recoveries []time.Duration
	// signed and denied count the fleet's CSRs: legitimate ones signed, hostile ones denied.
	signed, denied int
}

// hostileEvery makes every hostileEvery-th cluster also file a hostile CSR: its agent asks for
// the next cluster's identity.
const hostileEvery = 5

// chaos rolls our manager out to n clusters while their agents file CSRs, and injects f.count
// faults at random moments while it works:
//   - kill: the leading manager is killed (SIGKILL). With one replica a new one is started in its
//     place, as the Deployment's ReplicaSet does; with two the standby must take over (and a new
//     standby is started).
//   - apiserver: kube-apiserver is restarted; the manager must recover by itself, without
//     exiting, and lead throughout (it takes the lease once).
//
// It then checks that the fleet converged: every cluster has one ManifestWork with the objects
// the first cluster has, every legitimate CSR has one certificate and every certificate is in
// its cluster's record, with nothing else recorded (no CSR signed twice), and every hostile CSR
// is denied, unsigned.
func chaos(o options, dir, bin string, n int, f fault, seed uint64) (*chaosResult, error) {
	if f.replicas != 1 && f.replicas != 2 {
		return nil, fmt.Errorf("%d replicas: want 1 or 2", f.replicas)
	}
	if f.kind != faultKill && f.kind != faultAPIServer {
		return nil, fmt.Errorf("fault %q: want %s or %s", f.kind, faultKill, faultAPIServer)
	}
	res := &chaosResult{clusters: n, fault: f}
	rnd := rand.New(rand.NewPCG(seed, seed))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := startHub(ctx, dir, o.ocmBin, o.helm)
	if err != nil {
		return nil, err
	}
	defer h.stop()
	clusters, err := h.join(ctx, n)
	if err != nil {
		return nil, err
	}
	mgr, err := h.installAddon(ctx, bin, false, o.chartValues)
	if err != nil {
		return nil, err
	}
	args := mgr.Args()
	managers := []*proc.Process{mgr}
	if f.replicas == 2 {
		standby, err := h.spawnManager(ctx, bin, args)
		if err != nil {
			return nil, err
		}
		managers = append(managers, standby)
	}
	ca, err := authority.Parse(h.caCert, h.caKey, time.Now())
	if err != nil {
		return nil, err
	}

	start := time.Now()
	if err := h.createPlacement(ctx); err != nil {
		return nil, err
	}
	// The fleet files its CSRs over the rollout, a few at a time, through the faults.
	var (
		filed      sync.WaitGroup
		mu         sync.Mutex
		legitimate = map[string]string{} // CSR name -> cluster
		hostile    = map[string]bool{}
		fileErr    error
	)
	fileRnd := rand.New(rand.NewPCG(seed+1, seed+1))
	filed.Add(1)
	go func() {
		defer filed.Done()
		for i, cluster := range clusters {
			// OCM's registration agent files the add-on's CSR once its cluster is accepted (it
			// has no hub credentials before) and the add-on exists on it, and retries while the
			// hub is unreachable.
			if err := poll.Wait(ctx, 100*time.Millisecond, o.timeout, func(ctx context.Context) (bool, error) {
				mc := &clusterv1.ManagedCluster{}
				if err := h.c.Get(ctx, client.ObjectKey{Name: cluster}, mc); err != nil || !meta.IsStatusConditionTrue(mc.Status.Conditions, clusterv1.ManagedClusterConditionHubAccepted) {
					return false, err
				}
				err := h.c.Get(ctx, client.ObjectKey{Namespace: cluster, Name: identity.AddonName}, &addonv1beta1.ManagedClusterAddOn{})
				return err == nil, err
			}); err != nil {
				mu.Lock()
				fileErr = errors.Join(fileErr, fmt.Errorf("the add-on of %s: %w", cluster, err))
				mu.Unlock()
				return
			}
			reqs := []ocmcsr.Request{{Cluster: cluster, CAID: ca.ID()}}
			if i%hostileEvery == 0 {
				// cluster's agent, with its own credentials, asks for the next cluster's identity.
				reqs = append(reqs, ocmcsr.Request{Cluster: clusters[(i+1)%n], CAID: ca.ID()})
			}
			for j, r := range reqs {
				var name string
				err := poll.Wait(ctx, 200*time.Millisecond, o.timeout, func(ctx context.Context) (bool, error) {
					var err error
					name, err = h.fileCSR(ctx, cluster, r)
					return err == nil, err
				})
				mu.Lock()
				switch {
				case err != nil:
					fileErr = errors.Join(fileErr, err)
				case j == 0:
					legitimate[name] = cluster
				default:
					hostile[name] = true
				}
				mu.Unlock()
			}
			time.Sleep(time.Duration(fileRnd.IntN(40)) * time.Millisecond)
		}
	}()
	for i := range f.count {
		time.Sleep(time.Duration(200+rnd.IntN(2800)) * time.Millisecond)
		var took time.Duration
		if f.kind == faultAPIServer {
			took, err = h.env.RestartAPIServer(apiServerGrace)
		} else {
			took, managers, err = h.killLeader(ctx, bin, args, managers)
		}
		if err != nil {
			return nil, fmt.Errorf("fault %d (%s): %w", i+1, f.kind, err)
		}
		res.recoveries = append(res.recoveries, took)
	}
	filed.Wait()
	if fileErr != nil {
		return nil, fmt.Errorf("filing CSRs: %w", fileErr)
	}
	var last error
	if err := poll.Wait(ctx, time.Second, o.timeout, func(ctx context.Context) (bool, error) {
		if err := h.exited(managers...); err != nil {
			return false, poll.Stop(err)
		}
		err := h.converged(ctx, clusters, legitimate, hostile, res)
		if err == nil || ctx.Err() == nil {
			last = err // not the deadline's cut of the last check: what was still unconverged
		}
		return err == nil, nil
	}); err != nil {
		return nil, fmt.Errorf("not converged after %d faults (%s): %v (%w)", f.count, f.kind, last, err)
	}
	res.converged = time.Since(start)
	if f.kind == faultAPIServer {
		// Recovered by itself: the first manager still leads, having taken the lease once.
		if n := strings.Count(managers[0].Log(), leaseAcquired); n != 1 {
			return nil, fmt.Errorf("the manager took the lease %d times over the API server restarts, want once", n)
		}
	}
	return res, nil
}

// killLeader kills the leading manager of managers and waits until another leads: with one
// manager, a new one started in its place; with more, a standby, a new standby started after.
// It returns how long it took and the managers now running.
func (h *hub) killLeader(ctx context.Context, bin string, args []string, managers []*proc.Process) (time.Duration, []*proc.Process, error) {
	replicas := len(managers)
	leader := slices.IndexFunc(managers, leads)
	if leader < 0 {
		return 0, nil, errors.New("no manager leads")
	}
	managers[leader].Kill()
	killed := time.Now()
	managers = slices.Delete(managers, leader, leader+1)
	if replicas == 1 {
		// The Deployment's ReplicaSet starts a pod in the killed one's place.
		p, err := h.spawnManager(ctx, bin, args)
		if err != nil {
			return 0, nil, err
		}
		managers = append(managers, p)
	}
	if err := waitLeads(ctx, managers[0]); err != nil {
		return 0, nil, err
	}
	took := time.Since(killed)
	if replicas > 1 {
		p, err := h.spawnManager(ctx, bin, args)
		if err != nil {
			return 0, nil, err
		}
		managers = append(managers, p)
	}
	return took, managers, nil
}

// fileCSR files r as the registration agent of cluster and returns the CSR's name.
func (h *hub) fileCSR(ctx context.Context, cluster string, r ocmcsr.Request) (string, error) {
	csr, _, err := ocmcsr.New(r)
	if err != nil {
		return "", err
	}
	user := ocmcsr.AgentUsername(cluster)
	cs, err := kubernetes.NewForConfig(h.agentConfig(user, append(ocmcsr.AgentGroupsOf(user), "system:authenticated")))
	if err != nil {
		return "", err
	}
	created, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return created.Name, nil
}

// converged says what is not yet as it must end, or nil.
func (h *hub) converged(ctx context.Context, clusters []string, legitimate map[string]string, hostile map[string]bool, res *chaosResult) error {
	var first *workv1.ManifestWork
	for _, c := range clusters {
		works := &workv1.ManifestWorkList{}
		if err := h.c.List(ctx, works, client.InNamespace(c)); err != nil {
			return err
		}
		// The deploy work and the read-only readiness work (pkg/spokeready), nothing else.
		var w *workv1.ManifestWork
		var names []string
		for i := range works.Items {
			names = append(names, works.Items[i].Name)
			if works.Items[i].Name == workName {
				w = &works.Items[i]
			}
		}
		if w == nil || len(works.Items) > 2 || len(works.Items) == 2 && !slices.Contains(names, spokeready.WorkName) {
			return fmt.Errorf("cluster %s has ManifestWorks %v, want %s and %s", c, names, workName, spokeready.WorkName)
		}
		if first == nil {
			first = w
		} else if len(w.Spec.Workload.Manifests) != len(first.Spec.Workload.Manifests) {
			return fmt.Errorf("cluster %s's ManifestWork has %d objects, %s's %d", c, len(w.Spec.Workload.Manifests), clusters[0], len(first.Spec.Workload.Manifests))
		}
	}
	csrs := &certificatesv1.CertificateSigningRequestList{}
	if err := h.c.List(ctx, csrs); err != nil {
		return err
	}
	certs := map[string][]string{} // cluster -> fingerprints of its CSRs' certificates
	signed, denied := 0, 0
	for _, csr := range csrs.Items {
		switch {
		case hostile[csr.Name]:
			if len(csr.Status.Certificate) > 0 {
				return fmt.Errorf("hostile CSR %s was signed", csr.Name)
			}
			if ocmcsr.Condition(&csr, certificatesv1.CertificateDenied) == nil {
				return fmt.Errorf("hostile CSR %s is not denied yet", csr.Name)
			}
			denied++
		case legitimate[csr.Name] != "":
			if len(csr.Status.Certificate) == 0 {
				return fmt.Errorf("CSR %s of %s is not signed yet", csr.Name, legitimate[csr.Name])
			}
			cert, err := issued.ParseCertificate(csr.Status.Certificate)
			if err != nil {
				return fmt.Errorf("CSR %s: %w", csr.Name, err)
			}
			c := legitimate[csr.Name]
			certs[c] = append(certs[c], issued.BlocklistKey(cert.Raw))
			signed++
		case len(csr.Status.Certificate) > 0:
			// Filed by a request whose answer the API server restart lost: still the cluster's.
			if cert, err := issued.ParseCertificate(csr.Status.Certificate); err == nil {
				c := csr.Labels[clusterv1.ClusterNameLabelKey]
				certs[c] = append(certs[c], issued.BlocklistKey(cert.Raw))
			}
		}
	}
	if signed+denied != len(legitimate)+len(hostile) {
		return fmt.Errorf("%d of %d CSRs found", signed+denied, len(legitimate)+len(hostile))
	}
	for c, want := range certs {
		cm := &corev1.ConfigMap{}
		if err := h.c.Get(ctx, client.ObjectKey{Namespace: addonNamespace, Name: issued.RecordName(c)}, cm); err != nil {
			return fmt.Errorf("the record of %s: %w", c, err)
		}
		rec, err := issued.FromConfigMap(cm)
		if err != nil {
			return err
		}
		var got []string
		for _, r := range rec.Certificates {
			got = append(got, r.Fingerprint)
		}
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("cluster %s: record %v, certificates of its CSRs %v: each issued certificate must be recorded, and nothing else", c, got, want)
		}
	}
	res.signed, res.denied = signed, denied
	return nil
}
