package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/audit"
)

// sum adds the counts of comps.
func sum(c map[string]*audit.Counts, comps ...string) *audit.Counts {
	out := &audit.Counts{ByKey: map[audit.Key]int{}, Conflicts: map[audit.Key]int{}}
	for name, n := range c {
		if len(comps) > 0 && !slices.Contains(comps, name) {
			continue
		}
		for k, v := range n.ByKey {
			out.ByKey[k] += v
		}
		for k, v := range n.Conflicts {
			out.Conflicts[k] += v
		}
		out.Total += n.Total
		out.Writes += n.Writes
	}
	return out
}

func report(out io.Writer, results []*result) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KIND\tCLUSTERS\tOBJECTS\tROLLOUT\tMANAGER REQ/CLUSTER\tALL REQ/CLUSTER\t409 (ALL)\tSIGNING\tMANAGER REQ/CSR\tMANAGER PEAK RSS\tADDON-MANAGER PEAK RSS")
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(w, "%s\t%d\tFAILED: %s\n", r.kind, r.clusters, strings.ReplaceAll(r.err.Error(), "\n", " "))
			continue
		}
		n := float64(r.clusters)
		roll, sign := sum(r.rolloutReqs, managerSide(r.kind)...), sum(r.signReqs, managerSide(r.kind)...)
		all := sum(r.rolloutReqs)
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%.2f\t%.2f\t%d\t%s\t%.2f\t%s\t%s\n", r.kind, r.clusters, r.objects,
			r.rollout.Round(10*time.Millisecond), float64(roll.Total)/n, float64(all.Total)/n,
			all.ConflictTotal()+sum(r.signReqs).ConflictTotal(), r.sign.Round(10*time.Millisecond),
			float64(sign.Total)/n, mib(r.managerRSS), mib(r.addonManagerRSS))
	}
	_ = w.Flush()

	// Ours over the template manager's, per size.
	for _, a := range results {
		if a.kind != kindAddon || a.err != nil {
			continue
		}
		for _, t := range results {
			if t.kind != kindTemplate || t.clusters != a.clusters || t.err != nil {
				continue
			}
			fmt.Fprintf(out, "%d clusters, ours / template: rollout %s, signing %s, manager requests %s, all requests %s, manager peak RSS %s\n",
				a.clusters, ratio(a.rollout.Seconds(), t.rollout.Seconds()), ratio(a.sign.Seconds(), t.sign.Seconds()),
				ratio(float64(sum(a.rolloutReqs, managerSide(a.kind)...).Total), float64(sum(t.rolloutReqs, managerSide(t.kind)...).Total)),
				ratio(float64(sum(a.rolloutReqs).Total), float64(sum(t.rolloutReqs).Total)),
				ratio(float64(a.managerRSS), float64(t.managerRSS)))
		}
	}

	// Where the requests went.
	for _, r := range results {
		if r.err != nil {
			continue
		}
		n := float64(r.clusters)
		fmt.Fprintf(out, "\n%s, %d clusters: requests per cluster by client\n", r.kind, r.clusters)
		phases := []struct {
			name string
			c    map[string]*audit.Counts
		}{{"rollout", r.rolloutReqs}, {"signing", r.signReqs}}
		if r.steadyReqs != nil {
			phases = append(phases, struct {
				name string
				c    map[string]*audit.Counts
			}{fmt.Sprintf("steady %s", r.steady), r.steadyReqs})
		}
		if r.restartReqs != nil {
			phases = append(phases, struct {
				name string
				c    map[string]*audit.Counts
			}{fmt.Sprintf("restart (idle after %s)", r.restartIdle.Round(time.Second)), r.restartReqs})
		}
		for _, p := range phases {
			for _, comp := range []string{compManager, compAddonManager, compOCM, compAgents} {
				c := p.c[comp]
				if c == nil {
					continue
				}
				fmt.Fprintf(out, "  %-30s %-14s %6.2f (writes %d, 409 %d): %s\n", p.name, comp, float64(c.Total)/n, c.Writes, c.ConflictTotal(), c.Verbs(n))
				for _, top := range c.Top(6, n) {
					fmt.Fprintf(out, "  %-30s %-14s          %s\n", "", "", top)
				}
			}
		}
	}
}

func mib(b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fMiB", float64(b)/(1<<20))
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func reportChaos(out io.Writer, c *chaosResult, seed uint64) {
	var longest, sum time.Duration
	for _, t := range c.recoveries {
		longest = max(longest, t)
		sum += t
	}
	mean := time.Duration(0)
	if len(c.recoveries) > 0 {
		mean = sum / time.Duration(len(c.recoveries))
	}
	var what, recovered string
	switch {
	case c.fault.kind == faultAPIServer:
		what = fmt.Sprintf("kube-apiserver restarted %d times", c.fault.count)
		recovered = "it was down for"
	case c.fault.replicas == 2:
		what = fmt.Sprintf("leading manager of 2 killed %d times", c.fault.count)
		recovered = "the standby led after"
	default:
		what = fmt.Sprintf("manager killed %d times", c.fault.count)
		recovered = "a manager started in its place led after"
	}
	fmt.Fprintf(out, "\nchaos (seed %d): %s during a rollout to %d clusters; converged %s after the Placement: "+
		"every cluster one ManifestWork, %d CSRs signed once each and recorded, %d hostile CSRs denied; each time %s %s on average, %s at most\n",
		seed, what, c.clusters, c.converged.Round(100*time.Millisecond), c.signed, c.denied, recovered,
		mean.Round(100*time.Millisecond), longest.Round(100*time.Millisecond))
}
