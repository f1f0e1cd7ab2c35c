package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

var (
	caValidDesc = prometheus.NewDesc(namespace+"_ca_valid_certificates",
		"Unexpired agent certificates signed by each CA (on record or in a CSR still on the hub), by its role in the CA secret (signing, trusted, or empty when it holds it no more). A trusted CA at 0 may leave ca.crt.",
		[]string{"ca", "role"}, nil)
	agentNotAfterDesc = prometheus.NewDesc(namespace+"_agent_certificate_not_after_seconds",
		"Expiry (Unix seconds) of the newest agent client certificate issued for each cluster (on record or in a CSR still on the hub).",
		[]string{"cluster"}, nil)
	caNotAfterDesc = prometheus.NewDesc(namespace+"_ca_not_after_seconds",
		"Expiry (Unix seconds) of the CA that signs agent certificates; 0 while the CA secret holds no usable CA.",
		nil, nil)
	agentNotBeforeDesc = prometheus.NewDesc(namespace+"_agent_certificate_not_before_seconds",
		"Start (Unix seconds) of the newest agent client certificate issued for each cluster, with not_after its lifetime; left out for certificates recorded without it.",
		[]string{"cluster"}, nil)
)

// Collector exports, at each scrape, the gauges that describe the fleet's certificates,
// computed from the hub as the manager's cache holds it: the signing CA's expiry, each cluster's
// newest certificate, and issued.ByCA over the certificates on the hub (issued.OnHub), what
// `status` prints. Computed rather than set by a controller, they are the same on every
// replica, the standby ones included, and right from the first scrape after a restart.
type Collector struct {
	// Reader is the manager's cached client: a scrape costs no API call.
	Reader client.Reader
	CA     authority.Source
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- caValidDesc
	ch <- agentNotAfterDesc
	ch <- caNotAfterDesc
	ch <- agentNotBeforeDesc
}

// Collect implements prometheus.Collector. Without a usable CA, ca_not_after_seconds is 0 (the
// alert on it should fire) and the per-CA counts are left out rather than ones that would say a
// CA may go; with no readable add-ons the per-cluster and per-CA gauges are left out.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	ca, err := c.CA.Get(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(caNotAfterDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(caNotAfterDesc, prometheus.GaugeValue, float64(ca.Cert.NotAfter.Unix()))
	byCluster, err := issued.OnHub(ctx, c.Reader, ca.Trusted)
	if err != nil {
		return
	}
	// Per cluster only where the add-on is: a revoked or removed cluster's record outlives it.
	addons := &addonv1beta1.ManagedClusterAddOnList{}
	if err := c.Reader.List(ctx, addons); err != nil {
		return
	}
	installed := map[string]bool{}
	for _, a := range addons.Items {
		installed[a.Namespace] = a.Name == identity.AddonName || installed[a.Namespace]
	}
	var certs []issued.Certificate
	for cluster, cs := range byCluster {
		certs = append(certs, cs...)
		if newest, ok := issued.Newest(cs); ok && installed[cluster] {
			ch <- prometheus.MustNewConstMetric(agentNotAfterDesc, prometheus.GaugeValue, float64(newest.NotAfter.Unix()), cluster)
			if !newest.NotBefore.IsZero() {
				ch <- prometheus.MustNewConstMetric(agentNotBeforeDesc, prometheus.GaugeValue, float64(newest.NotBefore.Unix()), cluster)
			}
		}
	}
	for _, u := range issued.ByCA(ca.Cert, ca.Trusted[1:], certs, now) {
		ch <- prometheus.MustNewConstMetric(caValidDesc, prometheus.GaugeValue, float64(u.Valid), u.ID, u.Role)
	}
}
