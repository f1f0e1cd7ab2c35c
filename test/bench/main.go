// Command bench measures the add-on manager against a real kube-apiserver and etcd and prints
// every figure next to a baseline measured in the same run, with their ratio, so results can be
// compared across machines. For each fleet size it starts a fresh API server, joins the
// clusters, and for each client rate limit:
//
//   - delivery: from manager start to every cluster's ManifestWork written. Baseline: one
//     unthrottled client writing the same ManifestWorks one after another (the API floor).
//   - signing: from the first agent CSR filed to the last one signed, with the fleet filing
//     concurrently. Baseline: an in-process approve-and-sign loop over the same kind of CSRs,
//     one at a time, unthrottled (what the API server costs, with no checks).
//
// Run it with `make bench` (sizes and rates are flags; see -h).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/metrictext"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/ocmcsr"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testenv"
)

// rate is a manager client rate limit.
type rate struct {
	qps   float32
	burst int
}

func (r rate) String() string { return fmt.Sprintf("%g/%d", r.qps, r.burst) }

type options struct {
	sizes   []int
	rates   []rate
	csrs    int
	timeout time.Duration
	// logs, if set, keeps each run's manager log there.
	logs string
}

func main() {
	o := options{}
	var sizes, rates string
	flag.StringVar(&sizes, "clusters", "50,250", "comma-separated fleet sizes; each runs on a fresh API server")
	flag.StringVar(&rates, "rates", "5/10,50/100", "comma-separated manager client rate limits QPS/BURST (5/10 is client-go's default, 50/100 the manager's)")
	flag.IntVar(&o.csrs, "csrs", 50, "agent CSRs filed at once in each run (at most the fleet size)")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "give up on one measurement after this long")
	flag.StringVar(&o.logs, "logs", "", "directory to keep each run's manager log in (manager-CLUSTERS-QPS.log)")
	flag.Parse()
	ctrllog.SetLogger(klog.NewKlogr()) // envtest logs through controller-runtime
	var err error
	if o.sizes, err = parseSizes(sizes); err == nil {
		o.rates, err = parseRates(rates)
	}
	if err == nil && o.csrs < 1 {
		err = errors.New("-csrs must be at least 1")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if _, err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-clusters: %q is not a fleet size", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseRates(s string) ([]rate, error) {
	var out []rate
	for _, f := range strings.Split(s, ",") {
		q, b, ok := strings.Cut(strings.TrimSpace(f), "/")
		qps, err1 := strconv.ParseFloat(q, 32)
		burst, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || qps <= 0 || float64(burst) < qps {
			return nil, fmt.Errorf("-rates: %q is not QPS/BURST with BURST >= QPS > 0", f)
		}
		out = append(out, rate{float32(qps), burst})
	}
	return out, nil
}

// result is one manager run and the baselines measured on the same API server.
type result struct {
	clusters, csrs               int
	rate                         rate
	deliver, deliverFloor        time.Duration
	sign, signFloor              time.Duration
	deliverErr, signErr, setupEr error
	// requests the API server served during delivery, lists and watches aside.
	requests float64
	// peakRSS is the manager's peak resident memory over the run, in bytes.
	peakRSS int64
}

// run measures every size at every rate and writes the report to out.
func run(o options, out io.Writer) ([]result, error) {
	dir, err := os.MkdirTemp("", "argocd-agent-addon-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// The manager runs as its own process, as in production, from this checkout.
	bin, err := proc.BuildAddon(dir)
	if err != nil {
		return nil, err
	}
	var results []result
	for _, n := range o.sizes {
		for _, r := range o.rates {
			res := measure(dir, bin, n, min(o.csrs, n), r, o.timeout)
			if o.logs != "" {
				if err := keepLog(dir, o.logs, fmt.Sprintf("manager-%d-%g.log", n, r.qps)); err != nil {
					return results, err
				}
			}
			results = append(results, res)
			if res.setupEr != nil {
				return results, res.setupEr
			}
			fmt.Fprintf(os.Stderr, "bench: %d clusters at %s done\n", n, r)
		}
	}
	report(out, results)
	for _, r := range results {
		if r.deliverErr != nil || r.signErr != nil {
			return results, errors.New("a measurement did not complete")
		}
	}
	return results, nil
}

func report(out io.Writer, results []result) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CLUSTERS\tMANAGER QPS/BURST\tDELIVERY\tPER CLUSTER\tFLOOR PER CLUSTER\tRATIO\tREQUESTS PER CLUSTER\tPEAK RSS\tCSRS\tSIGNING\tPER CSR\tFLOOR PER CSR\tRATIO")
	for _, r := range results {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%.1f\t%s\t%d\t%s\t%s\t%s\t%s\n", r.clusters, r.rate,
			show(r.deliver, r.deliverErr), per(r.deliver, r.clusters), per(r.deliverFloor, r.clusters), ratio(r.deliver, r.deliverFloor, r.deliverErr),
			r.requests/float64(r.clusters), mib(r.peakRSS), r.csrs, show(r.sign, r.signErr), per(r.sign, r.csrs), per(r.signFloor, r.csrs), ratio(r.sign, r.signFloor, r.signErr))
	}
	_ = w.Flush()
	// Scaling: per-cluster delivery time at the largest size over the smallest, per rate.
	for _, rt := range unique(results, func(r result) rate { return r.rate }) {
		var first, last *result
		for i := range results {
			if results[i].rate == rt && results[i].deliverErr == nil {
				if first == nil {
					first = &results[i]
				}
				last = &results[i]
			}
		}
		if first != nil && last != first {
			fmt.Fprintf(out, "scaling at %s: per-cluster delivery at %d clusters is %.2fx that at %d (floor: %.2fx)\n", rt,
				last.clusters, perRatio(last.deliver, last.clusters, first.deliver, first.clusters),
				first.clusters, perRatio(last.deliverFloor, last.clusters, first.deliverFloor, first.clusters))
		}
	}
	for _, n := range unique(results, func(r result) int { return r.clusters }) {
		var rs []result
		for _, r := range results {
			if r.clusters == n && r.deliverErr == nil {
				rs = append(rs, r)
			}
		}
		for i := 1; i < len(rs); i++ {
			fmt.Fprintf(out, "%d clusters: delivery at %s takes %.2fx the time at %s\n", n, rs[i].rate,
				float64(rs[i].deliver)/float64(rs[0].deliver), rs[0].rate)
		}
	}
}

func show(d time.Duration, err error) string {
	if err != nil {
		return "FAILED: " + err.Error()
	}
	return d.Round(10 * time.Millisecond).String()
}

func per(d time.Duration, n int) string {
	return (d / time.Duration(n)).Round(100 * time.Microsecond).String()
}

func mib(b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fMiB", float64(b)/(1<<20))
}

func ratio(d, floor time.Duration, err error) string {
	if err != nil || floor == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fx", float64(d)/float64(floor))
}

func perRatio(a time.Duration, an int, b time.Duration, bn int) float64 {
	return (float64(a) / float64(an)) / (float64(b) / float64(bn))
}

// keepLog copies the manager log of the last run into logs/name.
func keepLog(dir, logs, name string) error {
	data, err := os.ReadFile(filepath.Join(dir, "manager.log"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(logs, name), data, 0o644)
}

// unique is key of each result, first seen first, without repeats.
func unique[T comparable](rs []result, key func(result) T) []T {
	var out []T
	seen := map[T]bool{}
	for _, r := range rs {
		if k := key(r); !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// measure runs one manager with rate r against a fresh API server with n clusters.
func measure(dir, bin string, n, csrs int, r rate, timeout time.Duration) result {
	res := result{clusters: n, csrs: csrs, rate: r}
	env, err := testenv.Start()
	if err != nil {
		res.setupEr = err
		return res
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: stopping the API server:", err)
		}
	}()
	ctx := context.Background()
	c, err := unthrottled(env, env.Config)
	if err != nil {
		res.setupEr = err
		return res
	}
	hub, err := hubfixture.Prepare(ctx, c)
	if err != nil {
		res.setupEr = err
		return res
	}
	adc := hubfixture.NewADC("fleet", "principalAddress", "principal.example.com")
	if err := c.Create(ctx, adc); err != nil {
		res.setupEr = err
		return res
	}
	clusters := make([]string, n)
	for i := range clusters {
		clusters[i] = fmt.Sprintf("cluster-%05d", i)
	}
	if err := parallel(clusters, 8, func(name string) error { return hub.JoinCluster(ctx, name, adc) }); err != nil {
		res.setupEr = fmt.Errorf("joining clusters: %w", err)
		return res
	}

	kubeconfig := filepath.Join(dir, "manager.kubeconfig")
	if err := env.KubeconfigFor("argocd-agent-addon-manager", []string{"system:masters"}, kubeconfig); err != nil {
		res.setupEr = err
		return res
	}
	before, err := apiRequests(ctx, env)
	if err != nil {
		res.setupEr = err
		return res
	}
	start := time.Now()
	mgr, err := proc.Start(ctx, "manager", dir, bin, "manager", "--kubeconfig="+kubeconfig,
		"--ca-secret="+hubfixture.CANamespace+"/"+hubfixture.CAName, "--leader-election-namespace="+hubfixture.LeaderNamespace,
		"--namespace="+hubfixture.LeaderNamespace,
		"--metrics-bind-address=0", "--health-probe-bind-address=0",
		fmt.Sprintf("--kube-api-qps=%g", r.qps), fmt.Sprintf("--kube-api-burst=%d", r.burst))
	if err != nil {
		res.setupEr = err
		return res
	}
	res.deliverErr = poll.Wait(context.Background(), pollEvery, timeout, func(ctx context.Context) (bool, error) {
		if exited, err := mgr.Exited(); exited {
			return false, poll.Stop(fmt.Errorf("manager exited (%v):\n%s", err, mgr.Log()))
		}
		n, err := countWorks(ctx, c)
		return n >= len(clusters), err
	})
	res.deliver = time.Since(start)

	if res.deliverErr == nil {
		after, err := apiRequests(ctx, env)
		if err != nil {
			res.setupEr = err
			return res
		}
		res.requests = after - before
	}
	if res.deliverErr == nil {
		res.sign, res.signErr = fileAndWait(ctx, env, hub, clusters[:csrs], timeout, nil)
	}
	if res.peakRSS, err = mgr.PeakRSS(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: manager memory:", err)
	}
	mgr.Stop()
	if exited, err := mgr.Exited(); exited && err != nil {
		res.setupEr = fmt.Errorf("manager: %w\n%s", err, mgr.Log())
		return res
	}
	if res.deliverErr != nil {
		return res
	}
	// Baselines, with the manager stopped so nothing else writes.
	if res.deliverFloor, err = writeWorks(ctx, c, clusters); err != nil {
		res.setupEr = fmt.Errorf("baseline delivery: %w", err)
		return res
	}
	ca, err := authority.Parse(hub.CACertPEM, hub.CAKeyPEM, time.Now())
	if err != nil {
		res.setupEr = err
		return res
	}
	floor := make([]string, csrs)
	for i := range floor {
		floor[i] = fmt.Sprintf("floor-%05d", i)
	}
	if res.signFloor, err = fileAndWait(ctx, env, hub, floor, timeout, func(ctx context.Context, names <-chan string) error {
		return approveAndSign(ctx, c, ca, names)
	}); err != nil {
		res.setupEr = fmt.Errorf("baseline signing: %w", err)
	}
	return res
}

// unthrottled is a client with no client-side rate limit, so the bench measures the manager
// and the API server, not itself.
func unthrottled(env *testenv.Env, cfg *rest.Config) (client.Client, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, 0
	return client.New(cfg, client.Options{Scheme: env.Scheme})
}

// parallel runs f on every item with at most workers at once and returns the first error.
func parallel(items []string, workers int, f func(string) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	work := make(chan string)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				if err := f(it); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("%s: %w", it, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, it := range items {
		work <- it
	}
	close(work)
	wg.Wait()
	return first
}

// pollEvery is how often the bench checks what it waits for: the resolution of what it times.
const pollEvery = 100 * time.Millisecond

// apiRequests is the number of requests the API server has served, lists and watches aside
// (the bench's own polling lists), from its apiserver_request_total metric.
func apiRequests(ctx context.Context, env *testenv.Env) (float64, error) {
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return 0, err
	}
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	samples, err := metrictext.Samples(string(raw), "apiserver_request_total")
	if err != nil {
		return 0, err
	}
	total := 0.0
	for _, m := range samples {
		if v := m.Labels["verb"]; v != "LIST" && v != "WATCH" {
			total += m.Value
		}
	}
	return total, nil
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
		if w.Name == hubfixture.WorkName {
			n++
		}
	}
	return n, nil
}

// writeWorks writes a copy of the first cluster's delivered ManifestWork once per cluster into
// a namespace of its own, one after another, and returns how long that took.
func writeWorks(ctx context.Context, c client.Client, clusters []string) (time.Duration, error) {
	delivered := &workv1.ManifestWork{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: clusters[0], Name: hubfixture.WorkName}, delivered); err != nil {
		return 0, err
	}
	const ns = "bench-floor"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return 0, err
	}
	start := time.Now()
	for i := range clusters {
		w := &workv1.ManifestWork{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("floor-%05d", i), Labels: delivered.Labels},
			Spec:       delivered.Spec,
		}
		if err := c.Create(ctx, w); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// fileAndWait files one agent CSR per cluster name, 8 at once as a fleet would, and waits until
// all are signed. With process set, process handles the names as they are filed (the
// baseline); otherwise the running manager must. Names need not be joined clusters for the
// baseline, which checks nothing.
func fileAndWait(ctx context.Context, env *testenv.Env, hub *hubfixture.Hub, names []string, timeout time.Duration,
	process func(context.Context, <-chan string) error) (time.Duration, error) {
	ca, err := authority.Parse(hub.CACertPEM, hub.CAKeyPEM, time.Now())
	if err != nil {
		return 0, err
	}
	// Each agent authenticates as itself, so the API server sets the requester as for OCM.
	agents := make(map[string]client.Client, len(names))
	for _, name := range names {
		cfg, err := env.AddUser(ocmcsr.AgentUsername(name), append(ocmcsr.AgentGroupsOf(ocmcsr.AgentUsername(name)), "system:masters")...)
		if err != nil {
			return 0, err
		}
		if agents[name], err = unthrottled(env, cfg); err != nil {
			return 0, err
		}
	}
	reqs := make(map[string]*certificatesv1.CertificateSigningRequest, len(names))
	for _, name := range names {
		if reqs[name], _, err = ocmcsr.New(ocmcsr.Request{Cluster: name, CAID: ca.ID()}); err != nil {
			return 0, err
		}
	}
	c := hub.Client
	filed := make(chan string, len(names))
	processed := make(chan error, 1)
	if process != nil {
		go func() { processed <- process(ctx, filed) }()
	}
	var mu sync.Mutex
	var created []string
	start := time.Now()
	if err := parallel(names, 8, func(name string) error {
		csr := reqs[name]
		if err := agents[name].Create(ctx, csr); err != nil {
			return err
		}
		mu.Lock()
		created = append(created, csr.Name)
		mu.Unlock()
		filed <- csr.Name
		return nil
	}); err != nil {
		close(filed)
		return 0, err
	}
	close(filed)
	if process != nil {
		if err := <-processed; err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	err = poll.Wait(context.Background(), pollEvery, timeout, func(ctx context.Context) (bool, error) {
		list := &certificatesv1.CertificateSigningRequestList{}
		if err := c.List(ctx, list); err != nil {
			return false, err
		}
		signed := map[string]bool{}
		for _, csr := range list.Items {
			signed[csr.Name] = len(csr.Status.Certificate) > 0
		}
		for _, name := range created {
			if !signed[name] {
				return false, nil
			}
		}
		return true, nil
	})
	return time.Since(start), err
}

// approveAndSign approves and signs each named CSR in turn, checking nothing: the floor of what
// an approver and signer cost the API server.
func approveAndSign(ctx context.Context, c client.Client, ca *authority.CA, names <-chan string) error {
	for name := range names {
		csr := &certificatesv1.CertificateSigningRequest{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, csr); err != nil {
			return err
		}
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "BenchFloor",
		})
		if err := c.SubResource("approval").Update(ctx, csr); err != nil {
			return err
		}
		req, rej := policy.ParseRequest(csr.Spec.Request)
		if rej != nil {
			return rej
		}
		cert, err := ca.Sign(req, time.Hour, time.Now())
		if err != nil {
			return err
		}
		csr.Status.Certificate = cert
		if err := c.Status().Update(ctx, csr); err != nil {
			return err
		}
	}
	return nil
}
