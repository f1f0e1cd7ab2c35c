// Command bench measures this repository's add-on manager side by side with the alternative
// users have today, an AddOnTemplate run by OCM's own addon-manager, doing the same job on the
// same kind of hub. For each fleet size and each kind it starts a fresh kube-apiserver and etcd
// with an audit log, the real OCM hub controllers (registration, placement and work in one
// process, OCM's addon-manager in another), joins the clusters, installs the add-on as a user
// does, and measures:
//
//   - rollout: from the Placement's creation to every cluster's ManifestWork;
//   - signing: from the fleet's agents filing their CSRs (as OCM's registration agent does) to
//     every one carrying a certificate;
//   - the API requests of each client, by verb and resource, and its 409 conflicts, from the
//     audit log; and each manager's peak resident memory;
//   - with -steady, the requests made while nothing changes; with -restart, those made by the
//     manager restarted over the settled fleet until it is idle again.
//
// It prints one table, the ratio of ours to the template manager's for each size, and where
// the requests went. Run it with `make bench` (BENCH_ARGS="-clusters 100,1000"; see -h).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
)

type options struct {
	sizes   []int
	kinds   []string
	steady  time.Duration
	restart bool
	// clusterSecrets runs our manager with the Argo CD cluster secrets on, as the chart's
	// default; the template add-on makes none.
	clusterSecrets bool
	// chaosClusters, if set, runs chaos with that many clusters and kills kills.
	chaosClusters, kills, apiRestarts int
	// replicas are the manager replica counts chaos runs with, each on a fresh hub.
	replicas []int
	seed     uint64
	timeout  time.Duration
	// logs, if set, keeps each run's process logs and audit log there.
	logs   string
	ocmBin string
	helm   string
	// chartValues are set on top of the bench's own (tests).
	chartValues map[string]string
}

func main() {
	o := options{}
	var sizes, kinds, replicas string
	flag.StringVar(&sizes, "clusters", "100", "comma-separated fleet sizes; each kind at each size runs on a fresh API server (none: only -chaos-clusters)")
	flag.StringVar(&kinds, "kinds", kindAddon+","+kindTemplate, "which managers to measure: "+kindAddon+" (ours), "+kindTemplate+" (an AddOnTemplate run by OCM's addon-manager)")
	flag.DurationVar(&o.steady, "steady", 0, "after the rollout and signing, count every request the managers make for this long with nothing changing")
	flag.BoolVar(&o.restart, "restart", false, "then restart the manager over the settled fleet and count its requests until it is idle")
	flag.BoolVar(&o.clusterSecrets, "cluster-secrets", false, "run our manager with its Argo CD cluster secrets on (the chart's default); the template add-on has none")
	flag.IntVar(&o.chaosClusters, "chaos-clusters", 0, "then roll our manager out to this many clusters while their agents file CSRs (some hostile), killing it (SIGKILL) -kills times, and check that the fleet converges")
	flag.IntVar(&o.kills, "kills", 20, "how many times -chaos-clusters kills the leading manager")
	flag.IntVar(&o.apiRestarts, "apiserver-restarts", 5, "then, with -chaos-clusters, restart kube-apiserver this many times during a rollout (0: not)")
	flag.StringVar(&replicas, "replicas", "1,2", "comma-separated manager replica counts for -chaos-clusters: 1 starts a new manager after each kill, 2 kills the leader and times the standby's takeover")
	flag.Uint64Var(&o.seed, "seed", uint64(time.Now().UnixNano()), "seed of the kill times (printed, to repeat a run)")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up on one measurement after this long")
	flag.StringVar(&o.logs, "logs", "", "directory to keep each run's logs in (KIND-CLUSTERS/)")
	flag.Parse()
	ctrllog.SetLogger(klog.NewKlogr()) // envtest logs through controller-runtime
	var err error
	if o.sizes, err = parseSizes("-clusters", sizes); err == nil {
		o.kinds, err = parseKinds(kinds)
	}
	if err == nil {
		o.replicas, err = parseSizes("-replicas", replicas)
	}
	if err == nil {
		o.ocmBin, o.helm, err = binaries()
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

// binaries are ocm-local and helm, which hack/test-tools.sh builds and names in its print-env.
func binaries() (ocmBin, helm string, err error) {
	for _, b := range []struct {
		env string
		to  *string
	}{{"OCM_LOCAL_BIN", &ocmBin}, {"HELM", &helm}} {
		*b.to = os.Getenv(b.env)
		if *b.to == "" {
			return "", "", fmt.Errorf("%s is not set: run `make bench`, or `eval \"$(hack/test-tools.sh print-env)\"` first", b.env)
		}
		if _, err := os.Stat(*b.to); err != nil {
			return "", "", fmt.Errorf("%s: %w", b.env, err)
		}
	}
	return ocmBin, helm, nil
}

// parseSizes parses the comma-separated positive numbers of flag; "none" is no number.
func parseSizes(flag, s string) ([]int, error) {
	if strings.TrimSpace(s) == "none" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive number", flag, f)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseKinds(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		k := strings.TrimSpace(f)
		if k != kindAddon && k != kindTemplate {
			return nil, fmt.Errorf("-kinds: %q is neither %s nor %s", f, kindAddon, kindTemplate)
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out, nil
}

// run measures every kind at every size and writes the report to out.
func run(o options, out io.Writer) ([]*result, error) {
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
	var results []*result
	for _, n := range o.sizes {
		for _, kind := range o.kinds {
			caseDir := filepath.Join(dir, fmt.Sprintf("%s-%d", kind, n))
			if err := os.MkdirAll(caseDir, 0o755); err != nil {
				return results, err
			}
			res := measure(o, caseDir, bin, kind, n)
			if o.logs != "" {
				if err := keepLogs(caseDir, filepath.Join(o.logs, filepath.Base(caseDir))); err != nil {
					fmt.Fprintln(os.Stderr, "bench: keeping logs:", err)
				}
			}
			results = append(results, res)
			if res.err != nil {
				report(out, results)
				return results, fmt.Errorf("%s at %d clusters: %w", kind, n, res.err)
			}
			fmt.Fprintf(os.Stderr, "bench: %s at %d clusters done: rollout %s, signing %s\n", kind, n, res.rollout.Round(time.Millisecond), res.sign.Round(time.Millisecond))
		}
	}
	if len(results) > 0 {
		report(out, results)
	}
	if o.chaosClusters == 0 {
		return results, nil
	}
	var faults []fault
	for _, r := range o.replicas {
		faults = append(faults, fault{kind: faultKill, count: o.kills, replicas: r})
	}
	if o.apiRestarts > 0 {
		faults = append(faults, fault{kind: faultAPIServer, count: o.apiRestarts, replicas: 1})
	}
	for _, f := range faults {
		caseDir := filepath.Join(dir, fmt.Sprintf("chaos-%d-%s-replicas-%d", o.chaosClusters, f.kind, f.replicas))
		if err := os.MkdirAll(caseDir, 0o755); err != nil {
			return results, err
		}
		c, err := chaos(o, caseDir, bin, o.chaosClusters, f, o.seed)
		if o.logs != "" {
			if err := keepLogs(caseDir, filepath.Join(o.logs, filepath.Base(caseDir))); err != nil {
				fmt.Fprintln(os.Stderr, "bench: keeping logs:", err)
			}
		}
		if err != nil {
			return results, fmt.Errorf("chaos, %s with %d replica(s) (seed %d): %w", f.kind, f.replicas, o.seed, err)
		}
		reportChaos(out, c, o.seed)
	}
	return results, nil
}

// keepLogs copies the logs of a case's directory (process logs, the audit log, the manager's
// heap profile) to dst.
func keepLogs(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() || (!strings.HasSuffix(e.Name(), ".log") && !strings.HasSuffix(e.Name(), ".pprof")) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			return err
		}
	}
	return nil
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
