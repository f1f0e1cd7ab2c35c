package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1alpha1 "open-cluster-management.io/api/cluster/v1alpha1"
	workv1 "open-cluster-management.io/api/work/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/status"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/e2e/harness"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// A fleet configuration change (here the agents' log level; an image upgrade goes the same way)
// follows the ClusterManagementAddOn's rollout strategy. With Progressive at one cluster at a
// time, real OCM moves to the next cluster only once the previous one reports the new
// configuration applied, which the add-on must report for the rollout to go on at all. A
// rollback is the same change back, and rolls the same way.
func TestProgressiveRolloutAndRollback(t *testing.T) {
	clusters := []string{"wave1", "wave2"}
	ctx, e := start(t, harness.Options{Clusters: clusters})
	setRollout(t, ctx, e, clusterv1alpha1.RolloutProgressive{MaxConcurrency: intstr.FromInt32(1)})
	agents := enrolAll(t, ctx, e, clusters)

	var lastConfig string
	for _, level := range []string{"debug", "info"} { // upgrade, then roll back
		t.Run("logLevel "+level, func(t *testing.T) {
			setFleetVariable(t, ctx, e, agentconfig.VarLogLevel, level)
			changed := time.Now()
			delivered, applied := map[string]time.Duration{}, map[string]time.Duration{}
			maxInFlight := 0
			poll.Until(t, 4*time.Minute, "every cluster on log level "+level, func(ctx context.Context) (bool, error) {
				// Works first, then add-on status: a cluster whose work was new at the first read
				// and is still not applied at the later one was in flight at the first read.
				onLevel := map[string]bool{}
				for _, cl := range clusters {
					got, err := workLogLevel(ctx, e, cl)
					if err != nil {
						return false, err
					}
					if onLevel[cl] = got == level; onLevel[cl] {
						if _, ok := delivered[cl]; !ok {
							delivered[cl] = time.Since(changed)
						}
					}
				}
				inFlight := 0
				for _, cl := range clusters {
					if !onLevel[cl] {
						continue
					}
					done, err := configApplied(ctx, e, cl)
					if err != nil {
						return false, err
					}
					if !done {
						inFlight++
					} else if _, ok := applied[cl]; !ok {
						applied[cl] = time.Since(changed)
					}
				}
				maxInFlight = max(maxInFlight, inFlight)
				return len(applied) == len(clusters), nil
			})
			order := append([]string(nil), clusters...)
			sort.Slice(order, func(i, j int) bool { return delivered[order[i]] < delivered[order[j]] })
			for _, cl := range order {
				t.Logf("%s: work on %s %s after the change, applied %s", cl, level, delivered[cl].Round(100*time.Millisecond), applied[cl].Round(100*time.Millisecond))
			}
			if maxInFlight > 1 {
				t.Errorf("%d clusters had the new configuration and had not applied it at the same time: not one at a time", maxInFlight)
			}
			// status shows every cluster done on one new spec.
			rows, _, err := status.Collect(ctx, e.Hub.Client, time.Now(), nil)
			must.Succeed(t, err)
			configs := map[string]bool{}
			for _, r := range rows {
				configs[r.Config] = true
			}
			if len(configs) != 1 || configs[lastConfig] || !strings.HasSuffix(rows[0].Config, " (Completed)") || strings.Contains(rows[0].Config, "->") {
				t.Errorf("status CONFIG column %v after the rollout, want one completed spec other than %q", configs, lastConfig)
			}
			lastConfig = rows[0].Config
			t.Logf("status: every cluster on %s", lastConfig)
			for _, cl := range clusters {
				waitAvailable(t, e, cl, metav1.ConditionTrue)
				poll.Until(t, time.Minute, cl+": agent rolled with the new log level", func(context.Context) (bool, error) {
					return agents[cl].Delivered().LogLevel == level, nil
				})
			}
		})
	}
}

// setRollout makes the add-on's Placement roll config changes out progressively.
func setRollout(t *testing.T, ctx context.Context, e *harness.Env, progressive clusterv1alpha1.RolloutProgressive) {
	t.Helper()
	must.Succeed(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cma := &addonv1beta1.ClusterManagementAddOn{}
		if err := e.Hub.Client.Get(ctx, types.NamespacedName{Name: identity.AddonName}, cma); err != nil {
			return err
		}
		cma.Spec.InstallStrategy.Placements[0].RolloutStrategy = clusterv1alpha1.RolloutStrategy{
			Type: clusterv1alpha1.Progressive, Progressive: &progressive}
		return e.Hub.Client.Update(ctx, cma)
	}))
}

// enrolAll labels clusters for the Placement, starts their agents and waits until each add-on
// is Available.
func enrolAll(t *testing.T, ctx context.Context, e *harness.Env, clusters []string) map[string]*harness.Agent {
	t.Helper()
	agents := map[string]*harness.Agent{}
	for _, cl := range clusters {
		must.Succeed(t, e.SetEnabled(ctx, cl, true))
		a, err := e.StartAgent(ctx, cl)
		must.Succeed(t, err)
		agents[cl] = a
	}
	for _, cl := range clusters {
		waitAvailable(t, e, cl, metav1.ConditionTrue)
	}
	return agents
}

// setFleetVariable sets one customized variable of the chart's fleet-wide AddOnDeploymentConfig.
func setFleetVariable(t *testing.T, ctx context.Context, e *harness.Env, name, value string) {
	t.Helper()
	must.Succeed(t, hubfixture.SetVariable(ctx, e.Hub.Client, types.NamespacedName{Namespace: harness.AddonNamespace, Name: harness.FleetConfigName}, name, value))
}

// workLogLevel is the agent log level in cluster's ManifestWork on the hub.
func workLogLevel(ctx context.Context, e *harness.Env, cluster string) (string, error) {
	mw := &workv1.ManifestWork{}
	if err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: cluster, Name: "addon-" + identity.AddonName + "-deploy-0"}, mw); err != nil {
		return "", err
	}
	for _, m := range mw.Spec.Workload.Manifests {
		var obj struct {
			Kind     string            `json:"kind"`
			Metadata metav1.ObjectMeta `json:"metadata"`
			Data     map[string]string `json:"data"`
		}
		if err := json.Unmarshal(m.Raw, &obj); err != nil {
			return "", err
		}
		if obj.Kind == "ConfigMap" && obj.Metadata.Name == "argocd-agent-params" {
			return obj.Data["agent.log.level"], nil
		}
	}
	return "", fmt.Errorf("%s: no argocd-agent-params in the ManifestWork", cluster)
}

// configApplied reports whether OCM sees cluster's add-on as done with its desired
// AddOnDeploymentConfig: applied and no longer progressing.
func configApplied(ctx context.Context, e *harness.Env, cluster string) (bool, error) {
	mca := &addonv1beta1.ManagedClusterAddOn{}
	if err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: cluster, Name: identity.AddonName}, mca); err != nil {
		return false, err
	}
	for _, ref := range mca.Status.ConfigReferences {
		if ref.Resource != "addondeploymentconfigs" || ref.DesiredConfig == nil || ref.LastAppliedConfig == nil {
			continue
		}
		if ref.DesiredConfig.SpecHash == "" || ref.DesiredConfig.SpecHash != ref.LastAppliedConfig.SpecHash {
			return false, nil
		}
		c := meta.FindStatusCondition(mca.Status.Conditions, addonv1beta1.ManagedClusterAddOnConditionProgressing)
		return c != nil && c.Status == metav1.ConditionFalse, nil
	}
	return false, nil
}

// A Progressive rollout that has not reached a cluster holds its configuration back, and must
// not hold back its certificate: with a one-hour soak after the first cluster, the second one
// stays on the old configuration while its agent rolls onto each renewed certificate before the
// previous one expires.
func TestRenewalsWhileTheRolloutIsPaused(t *testing.T) {
	const renewals = 2
	clusters := []string{"soak1", "soak2"}
	ctx, e := start(t, harness.Options{Clusters: clusters, CertLifetime: 2 * time.Minute})
	agents := enrolAll(t, ctx, e, clusters)
	// Only now: OCM paces a cluster's first install by the rollout strategy too.
	setRollout(t, ctx, e, clusterv1alpha1.RolloutProgressive{MaxConcurrency: intstr.FromInt32(1),
		RolloutConfig: clusterv1alpha1.RolloutConfig{MinSuccessTime: metav1.Duration{Duration: time.Hour}}})

	setFleetVariable(t, ctx, e, agentconfig.VarLogLevel, "debug")
	var paused string
	poll.Until(t, 2*time.Minute, "one cluster on the new log level, the other held by the soak", func(ctx context.Context) (bool, error) {
		var on []string
		for _, cl := range clusters {
			level, err := workLogLevel(ctx, e, cl)
			if err != nil {
				return false, err
			}
			if level == "debug" {
				on = append(on, cl)
			}
		}
		if len(on) == 2 {
			t.Fatal("both clusters got the new configuration: the rollout did not pause")
		}
		if len(on) == 1 {
			paused = clusters[0]
			if on[0] == clusters[0] {
				paused = clusters[1]
			}
		}
		return len(on) == 1, nil
	})
	t.Logf("rollout paused before %s", paused)

	a := agents[paused]
	var serials []string
	var lastNotAfter time.Time
	poll.Until(t, 6*time.Minute, fmt.Sprintf("%d renewals used by %s's agent during the pause", renewals, paused), func(ctx context.Context) (bool, error) {
		cert := parseCert(t, a.Delivered().ClientCertPEM)
		if serial := cert.SerialNumber.String(); len(serials) == 0 || serials[len(serials)-1] != serial {
			if len(serials) > 0 && !time.Now().Before(lastNotAfter) {
				t.Errorf("the agent switched to certificate %s only after the previous one expired at %s", serial, lastNotAfter)
			}
			serials, lastNotAfter = append(serials, serial), cert.NotAfter
			t.Logf("%s: agent runs with certificate %s (until %s), log level %s", paused, serial, cert.NotAfter.Format(time.TimeOnly), a.Delivered().LogLevel)
		}
		if level := a.Delivered().LogLevel; level != "info" {
			t.Fatalf("the paused cluster's agent runs log level %q: the rollout's new configuration reached it", level)
		}
		if level, err := workLogLevel(ctx, e, paused); err != nil || level != "info" {
			return false, fmt.Errorf("paused cluster's work on log level %q (%v)", level, err)
		}
		names, err := e.Principal.ConnectedAgents(ctx)
		return len(serials) > renewals && err == nil && slices.Contains(names, paused), err
	})
	for f, data := range podLogs(t, append(agentLogs(a), e.Principal.LogFiles()...)) {
		if n := strings.Count(string(data), "expired certificate"); n > 0 {
			t.Errorf("%s: %d connection failures on an expired certificate", f, n)
		}
	}
	t.Logf("%s: %d renewals delivered while the rollout held its configuration, 0 expired-certificate failures", paused, len(serials)-1)
}
