package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
)

// TestBenchRuns runs the bench at its smallest, both kinds, so it cannot rot: each completes on
// a real API server with the real OCM hub controllers, the audit log attributes requests to
// each manager, and the report carries the ratio of ours to the template manager's.
func TestBenchRuns(t *testing.T) {
	ocmBin, helm, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.CreateTemp(t.TempDir(), "report")
	if err != nil {
		t.Fatal(err)
	}
	results, err := run(options{sizes: []int{3}, kinds: []string{kindAddon, kindTemplate}, restart: true,
		timeout: 3 * time.Minute, ocmBin: ocmBin, helm: helm}, out)
	report, _ := os.ReadFile(out.Name())
	if err != nil {
		t.Fatalf("%v\n%s", err, report)
	}
	t.Logf("\n%s", report)
	if len(results) != 2 {
		t.Fatalf("%d results, want 2", len(results))
	}
	ours, tmpl := results[0], results[1]
	if ours.objects == 0 || ours.objects != tmpl.objects {
		t.Errorf("ManifestWorks hold %d objects (ours) and %d (template): the kinds must deliver the same", ours.objects, tmpl.objects)
	}
	for _, r := range results {
		if r.rollout <= 0 || r.sign <= 0 {
			t.Errorf("%s: a time is missing: %+v", r.kind, r)
		}
		if runtime.GOOS == "linux" && r.managerRSS <= 0 {
			t.Errorf("%s: manager peak RSS not measured", r.kind)
		}
		// Each cluster costs the kind's manager at least its ManifestWork create, and OCM's
		// addon-manager the ManagedClusterAddOn create: the audit log must see both.
		if m := r.rolloutReqs[managerSide(r.kind)[0]]; m == nil || m.Writes < r.clusters {
			t.Errorf("%s: the rollout's requests miss the manager's: %+v", r.kind, m)
		}
		if m := r.rolloutReqs[compAddonManager]; m == nil || m.Writes < r.clusters {
			t.Errorf("%s: the rollout's requests miss OCM's addon-manager's: %+v", r.kind, m)
		}
		if a := r.signReqs[compAgents]; a == nil || a.Writes != r.clusters {
			t.Errorf("%s: %+v agent requests while signing, want %d CSR creates", r.kind, a, r.clusters)
		}
		if r.restartReqs == nil || r.restartReqs[managerSide(r.kind)[0]] == nil {
			t.Errorf("%s: the restarted manager made no request", r.kind)
		}
	}
	for _, want := range []string{"CLUSTERS", "ours / template", "requests per cluster by client"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	if s, err := parseSizes("-clusters", "5, 50"); err != nil || len(s) != 2 || s[1] != 50 {
		t.Fatalf("parseSizes: %v %v", s, err)
	}
	if k, err := parseKinds("template, addon,template"); err != nil || len(k) != 2 || k[0] != kindTemplate {
		t.Fatalf("parseKinds: %v %v", k, err)
	}
	for _, bad := range []string{"0", "x", "-3", ""} {
		if _, err := parseSizes("-clusters", bad); err == nil {
			t.Errorf("parseSizes(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"", "ours", "addon,"} {
		if _, err := parseKinds(bad); err == nil {
			t.Errorf("parseKinds(%q) accepted", bad)
		}
	}
}

// TestFaultsConverge kills the leading manager (SIGKILL) a few times during a small rollout
// while the fleet files CSRs, hostile ones among them, once with one replica (a new one started
// after each kill) and once with two (the standby takes over), and restarts kube-apiserver a
// few times during another. chaos fails unless everything converges as it must: one
// ManifestWork per cluster, every legitimate CSR signed once and recorded, every hostile one
// denied; and, over the API server restarts, the manager never exits. `make chaos` runs it at
// size.
func TestFaultsConverge(t *testing.T) {
	ocmBin, helm, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := proc.BuildAddon(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []fault{{faultKill, 2, 1}, {faultKill, 2, 2}, {faultAPIServer, 2, 1}} {
		t.Run(fmt.Sprintf("%s-replicas=%d", f.kind, f.replicas), func(t *testing.T) {
			seed := uint64(time.Now().UnixNano())
			const clusters = 20
			// Alone, each case converges in under a minute; make test runs the packages side by
			// side on 2 cores, where a kube-apiserver restart has taken over 3 minutes to settle.
			o := options{timeout: 6 * time.Minute, ocmBin: ocmBin, helm: helm}
			if f.kind == faultAPIServer {
				// A restart must stay within the manager's renew deadline (10 s by default), past
				// which it stops leading and exits by design. Alone it takes about 5 s; under make
				// test's parallel packages on 2 cores, restart and RBAC warm-up once took longer
				// (every request forbidden until the authorizer had synced). make chaos keeps the
				// defaults.
				o.chartValues = map[string]string{"leaderElection.leaseDuration": "45s", "leaderElection.renewDeadline": "30s", "leaderElection.retryPeriod": "2s"}
				// And the rollout under that load has taken over 6 minutes to settle, e2e's nodes
				// beside it (2026-12-07): a liveness bound, not a measure.
				o.timeout = 10 * time.Minute
			}
			c, err := chaos(o, t.TempDir(), bin, clusters, f, seed)
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if c.signed != clusters || c.denied != clusters/hostileEvery || len(c.recoveries) != f.count {
				t.Fatalf("%d CSRs signed and %d denied, %d recoveries; want %d, %d and %d", c.signed, c.denied, len(c.recoveries), clusters, clusters/hostileEvery, f.count)
			}
			t.Logf("seed %d: converged in %s, recoveries %v", seed, c.converged, c.recoveries)
		})
	}
}
