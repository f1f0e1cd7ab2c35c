package main

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestBenchRuns runs the bench at its smallest, so it cannot rot: every measurement completes
// against the real API server and manager, and the report shows each figure with its baseline.
func TestBenchRuns(t *testing.T) {
	out, err := os.CreateTemp(t.TempDir(), "report")
	if err != nil {
		t.Fatal(err)
	}
	results, err := run(options{sizes: []int{3}, rates: []rate{{50, 100}}, csrs: 2, timeout: 2 * time.Minute}, out)
	if err != nil {
		t.Fatal(err)
	}
	r := results[0]
	if r.deliver <= 0 || r.deliverFloor <= 0 || r.sign <= 0 || r.signFloor <= 0 {
		t.Fatalf("a figure is missing: %+v", r)
	}
	if runtime.GOOS == "linux" && r.peakRSS <= 0 {
		t.Errorf("manager peak RSS not measured")
	}
	// Each cluster costs the manager at least its ManifestWork create.
	if r.requests < float64(r.clusters) {
		t.Fatalf("%.0f API requests for %d clusters: the count misses the manager's", r.requests, r.clusters)
	}
	report, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CLUSTERS", "RATIO", "50/100"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	t.Logf("\n%s", report)
}

func TestParseFlags(t *testing.T) {
	if s, err := parseSizes("5, 50"); err != nil || len(s) != 2 || s[1] != 50 {
		t.Fatalf("parseSizes: %v %v", s, err)
	}
	if r, err := parseRates("5/10,50/100"); err != nil || r[1] != (rate{50, 100}) {
		t.Fatalf("parseRates: %v %v", r, err)
	}
	for _, bad := range []string{"0", "x", "-3", ""} {
		if _, err := parseSizes(bad); err == nil {
			t.Errorf("parseSizes(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"5", "10/5", "0/0", "a/b", "-1/10"} {
		if _, err := parseRates(bad); err == nil {
			t.Errorf("parseRates(%q) accepted", bad)
		}
	}
}
