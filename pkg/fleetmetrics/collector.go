// Package fleetmetrics exports the state of the fleet's agents as Prometheus gauges, computed
// at each scrape from the manager's cache: how many clusters have the add-on, how many of them
// each of the add-on's conditions holds True, False or Unknown for (connected, config valid,
// principal's version, Argo CD ready, ...), by the agent version and mode their deploy works
// deliver, and how many clusters are revoked. Every series is bounded by the conditions and
// statuses, or by the versions and modes the fleet's configs name, not by the fleet: no label
// names a cluster. Every replica reports the same values (aggregate replicas with max, not sum).
package fleetmetrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/addon"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentversion"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/spokeready"
)

// Conditions are the ManagedClusterAddOn conditions the gauges count: addon-framework's
// Available (the agent connected to the principal) and the add-on's own.
var Conditions = []string{
	addonv1beta1.ManagedClusterAddOnConditionAvailable,
	addon.ConditionAgentConfigValid,
	addon.ConditionPrincipalAddress,
	addon.ConditionAgentVersion,
	spokeready.ConditionArgoCDReady,
}

var statuses = []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown}

var (
	agentsDesc = prometheus.NewDesc("argocd_agent_addon_agents",
		"Clusters with the add-on (a ManagedClusterAddOn argocd-agent).", nil, nil)
	conditionDesc = prometheus.NewDesc("argocd_agent_addon_agents_condition",
		"Clusters with the add-on whose condition (Available: connected to the principal; AgentConfigValid; PrincipalAddress; AgentVersion: the principal's version; ArgoCDReady: the cluster's Argo CD can deploy) has the status; a cluster without the condition yet counts as Unknown.",
		[]string{"condition", "status"}, nil)
	versionDesc = prometheus.NewDesc("argocd_agent_addon_agents_version",
		"Clusters with the add-on by the agent version (image tag, or digest) their deploy ManifestWorks deliver; none before the first.",
		[]string{"version"}, nil)
	modeDesc = prometheus.NewDesc("argocd_agent_addon_agents_mode",
		"Clusters with the add-on by the agent mode (managed, autonomous) their deploy ManifestWorks deliver; none before the first.",
		[]string{"mode"}, nil)
	revokedDesc = prometheus.NewDesc("argocd_agent_addon_clusters_revoked",
		"Clusters revoked on the hub (their record holds a revocation), with the add-on or not.", nil, nil)
)

// Collector computes the gauges from the cache.
type Collector struct {
	// Reader is the manager's cached client: a scrape costs no API call.
	Reader client.Reader
	// RecordNamespace holds the records (the manager's namespace).
	RecordNamespace string
	// Deployed reads the deploy ManifestWorks as NewDeployedCache reduces them; nil leaves the
	// version and mode gauges out.
	Deployed client.Reader
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- agentsDesc
	ch <- conditionDesc
	ch <- versionDesc
	ch <- modeDesc
	ch <- revokedDesc
}

// Collect implements prometheus.Collector. What cannot be read is left out rather than
// reported as zero, which an alert would take for a fleet.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addons := &addonv1beta1.ManagedClusterAddOnList{}
	if err := c.Reader.List(ctx, addons); err == nil {
		agents := 0
		counts := map[string]map[metav1.ConditionStatus]int{}
		for _, cond := range Conditions {
			counts[cond] = map[metav1.ConditionStatus]int{}
		}
		for _, a := range addons.Items {
			if a.Name != identity.AddonName || a.DeletionTimestamp != nil {
				continue
			}
			agents++
			for _, cond := range Conditions {
				status := metav1.ConditionUnknown
				if found := meta.FindStatusCondition(a.Status.Conditions, cond); found != nil {
					status = found.Status
				}
				counts[cond][status]++
			}
		}
		ch <- prometheus.MustNewConstMetric(agentsDesc, prometheus.GaugeValue, float64(agents))
		for _, cond := range Conditions {
			for _, st := range statuses {
				ch <- prometheus.MustNewConstMetric(conditionDesc, prometheus.GaugeValue, float64(counts[cond][st]), cond, string(st))
			}
		}
		c.collectDeployed(ctx, ch, addons.Items)
	}
	c.collectRevoked(ctx, ch)
}

// collectDeployed counts the clusters with the add-on by the version and mode their deploy works
// deliver.
func (c *Collector) collectDeployed(ctx context.Context, ch chan<- prometheus.Metric, addons []addonv1beta1.ManagedClusterAddOn) {
	if c.Deployed == nil {
		return
	}
	agents, err := deployedAgents(ctx, c.Deployed)
	if err != nil {
		return
	}
	versions, modes := map[string]int{}, map[string]int{}
	for _, a := range addons {
		if a.Name != identity.AddonName || a.DeletionTimestamp != nil {
			continue
		}
		d := agents[a.Namespace]
		version, mode := agentversion.Of(d.image), d.mode
		if version == "" {
			version = none
		}
		if mode == "" {
			mode = none
		}
		versions[version]++
		modes[mode]++
	}
	for v, n := range versions {
		ch <- prometheus.MustNewConstMetric(versionDesc, prometheus.GaugeValue, float64(n), v)
	}
	for m, n := range modes {
		ch <- prometheus.MustNewConstMetric(modeDesc, prometheus.GaugeValue, float64(n), m)
	}
}

// none is the version and mode of a cluster whose deploy works deliver no agent (yet).
const none = "none"

// collectRevoked counts the revoked clusters.
func (c *Collector) collectRevoked(ctx context.Context, ch chan<- prometheus.Metric) {
	records, err := issued.List(ctx, c.Reader, c.RecordNamespace)
	if err != nil {
		return
	}
	revoked := 0
	for _, r := range records {
		if r.Revocation != nil {
			revoked++
		}
	}
	ch <- prometheus.MustNewConstMetric(revokedDesc, prometheus.GaugeValue, float64(revoked))
}
