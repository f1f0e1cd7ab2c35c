package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentversion"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/chart"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/e2e/harness"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/ocmcsr"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// scrapeJob is the job label the chart's ServiceMonitor gives the manager's series: its
// Service's name, as the Prometheus Operator labels targets.
const scrapeJob = chart.ReleaseName + "-metrics"

// TestFleetMonitoring: a real Prometheus scrapes the manager pod as the chart's ServiceMonitor
// says (HTTPS, the chart's metrics-scraper token) and evaluates the chart's PrometheusRule. The
// fleet gauges follow the agents down and back up, the alerts follow them, and every query of the
// chart's dashboard returns data from what the manager exports.
func TestFleetMonitoring(t *testing.T) {
	ctx, e := start(t, harness.Options{Monitoring: true})
	clusters := []string{"cluster1", "cluster2"}
	for _, c := range clusters {
		must.Succeed(t, e.SetEnabled(ctx, c, true))
	}
	for _, c := range clusters {
		_, err := e.StartAgent(ctx, c)
		must.Succeed(t, err)
		waitAvailable(t, e, c, metav1.ConditionTrue)
	}
	p := e.Prometheus
	sel := fmt.Sprintf(`job=%q, namespace=%q`, scrapeJob, harness.AddonNamespace)

	t.Run("the scrape is up and the fleet gauges count every agent connected", func(t *testing.T) {
		waitValues(t, ctx, e, map[string]float64{
			"up{" + sel + "}":                                  1,
			"argocd_agent_addon_agents{" + sel + "}":           2,
			available(sel, "True"):                             2,
			available(sel, "False"):                            0,
			"argocd_agent_addon_clusters_revoked{" + sel + "}": 0,
			// What the deploy works deliver: the principal's version, the default mode.
			"argocd_agent_addon_agents_version{" + sel + fmt.Sprintf(`, version=%q}`, agentversion.Of(agentconfig.DefaultImage)): 2,
			"argocd_agent_addon_agents_mode{" + sel + `, mode="managed"}`:                                                        2,
		})
		rules, err := p.API.Rules(ctx)
		must.Succeed(t, err)
		var names []string
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				if r, ok := r.(promv1.AlertingRule); ok {
					if r.Health != promv1.RuleHealthGood {
						t.Errorf("alert %s: health %s (%s)", r.Name, r.Health, r.LastError)
					}
					names = append(names, r.Name)
				}
			}
		}
		sort.Strings(names)
		rule := &unstructured.Unstructured{}
		rule.SetGroupVersionKind(schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"})
		must.Succeed(t, e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: harness.AddonNamespace, Name: chart.ReleaseName}, rule))
		groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
		want := 0
		for _, g := range groups {
			rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
			want += len(rules)
		}
		if len(names) != want || want == 0 {
			t.Errorf("Prometheus loaded alerts %v, want the %d of the chart's PrometheusRule", names, want)
		}
		t.Logf("Prometheus evaluates the chart's %d alerts: %s", len(names), strings.Join(names, ", "))
	})

	t.Run("the agents go down: the gauges and the alert follow, and come back with them", func(t *testing.T) {
		must.Succeed(t, e.StopPrincipal(ctx))
		for _, c := range clusters {
			waitAvailable(t, e, c, metav1.ConditionFalse)
		}
		waitValues(t, ctx, e, map[string]float64{available(sel, "True"): 0, available(sel, "False"): 2})
		// for: 15m keeps it pending here; pending proves the rule matched the real series.
		waitAlert(t, ctx, e, "ArgoCDAgentAddonAgentsUnavailable", "pending", true)
		must.Succeed(t, e.StartPrincipal(ctx))
		for _, c := range clusters {
			waitAvailable(t, e, c, metav1.ConditionTrue)
		}
		waitValues(t, ctx, e, map[string]float64{available(sel, "True"): 2, available(sel, "False"): 0})
		waitAlert(t, ctx, e, "ArgoCDAgentAddonAgentsUnavailable", "pending", false)
	})

	t.Run("a CSR the approver denies fires the denial alert", func(t *testing.T) {
		// cluster1's own hub credentials file a CSR in cluster2's name.
		id, err := e.ClusterIdentity(ctx, "cluster1")
		must.Succeed(t, err)
		csr, _, err := ocmcsr.New(ocmcsr.Request{Cluster: "cluster2", CAID: "0000000000000000"})
		must.Succeed(t, err)
		must.Succeed(t, id.Client.Create(ctx, csr))
		alert := waitAlert(t, ctx, e, "ArgoCDAgentAddonCSRsDenied", "firing", true)
		if reason := string(alert.Metric["reason"]); !slices.Contains(policy.Reasons, policy.Reason(reason)) {
			t.Errorf("denial alert reason %q is no policy reason", reason)
		}
		t.Logf("denial alert firing: %v", alert.Metric)
	})

	t.Run("every query of the chart's dashboard returns the manager's data", func(t *testing.T) {
		cm := &corev1.ConfigMap{}
		must.Succeed(t, e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: harness.AddonNamespace, Name: chart.ReleaseName + "-dashboard"}, cm))
		checkDashboard(t, ctx, e, cm.Data["argocd-agent-addon.json"])
	})
}

func available(sel, status string) string {
	return fmt.Sprintf(`sum(argocd_agent_addon_agents_condition{%s, condition="Available", status=%q})`, sel, status)
}

// waitValues waits until each query returns one sample of the value given, and logs them.
func waitValues(t *testing.T, ctx context.Context, e *harness.Env, want map[string]float64) {
	t.Helper()
	queries := slices.Sorted(maps.Keys(want))
	var seen []string
	poll.Until(t, 90*time.Second, "Prometheus sees "+strings.Join(queries, ", "), func(ctx context.Context) (bool, error) {
		seen = seen[:0]
		for _, q := range queries {
			v, err := e.Prometheus.Query(ctx, q)
			if err != nil {
				return false, err
			}
			if len(v) != 1 || float64(v[0].Value) != want[q] {
				return false, fmt.Errorf("%s = %v, want %v", q, v, want[q])
			}
			seen = append(seen, fmt.Sprintf("%s = %v", q, v[0].Value))
		}
		return true, nil
	})
	t.Logf("Prometheus: %s", strings.Join(seen, "; "))
}

// waitAlert waits until the alert is (or, with present false, is no longer) in the state, and
// returns its ALERTS sample.
func waitAlert(t *testing.T, ctx context.Context, e *harness.Env, name, state string, present bool) *model.Sample {
	t.Helper()
	var got *model.Sample
	q := fmt.Sprintf(`ALERTS{alertname=%q, alertstate=%q}`, name, state)
	poll.Until(t, 90*time.Second, fmt.Sprintf("%s present=%v", q, present), func(ctx context.Context) (bool, error) {
		v, err := e.Prometheus.Query(ctx, q)
		if err != nil {
			return false, err
		}
		if len(v) > 0 {
			got = v[0]
		}
		return (len(v) > 0) == present, nil
	})
	return got
}

var metricName = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{`)

// checkDashboard runs every query of the dashboard as Grafana would for the manager's job (its
// variables filled in), and requires each to be valid and to return data, and every metric it
// names to have series from the manager. A query that filters with "> 0" (rates of events that
// may not have happened) may return nothing, but its metrics must still be there.
func checkDashboard(t *testing.T, ctx context.Context, e *harness.Env, data string) {
	t.Helper()
	var dashboard struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	must.Succeed(t, json.Unmarshal([]byte(data), &dashboard))
	vars := strings.NewReplacer(`$job`, scrapeJob, `$__rate_interval`, "2m")
	queries := 0
	for _, panel := range dashboard.Panels {
		for _, target := range panel.Targets {
			expr := vars.Replace(target.Expr)
			queries++
			names := metricName.FindAllStringSubmatch(expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: %s names no metric", panel.Title, expr)
			}
			for _, n := range names {
				v, err := e.Prometheus.Query(ctx, fmt.Sprintf(`count({__name__=%q, job=%q})`, n[1], scrapeJob))
				if err != nil || len(v) == 0 {
					t.Errorf("panel %q: the manager exports no %s (%v)", panel.Title, n[1], err)
				}
			}
			v, err := e.Prometheus.Query(ctx, expr)
			switch {
			case err != nil:
				t.Errorf("panel %q: %v", panel.Title, err)
			case len(v) == 0 && !strings.HasSuffix(strings.TrimSpace(expr), "> 0"):
				t.Errorf("panel %q: %s returns nothing", panel.Title, expr)
			default:
				t.Logf("panel %q: %s: %d series", panel.Title, expr, len(v))
			}
		}
	}
	if queries < 15 {
		t.Errorf("the dashboard has %d queries; its panels were not read", queries)
	}
}
