package issued

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates"
)

var caValidDesc = prometheus.NewDesc("argocd_agent_addon_ca_valid_certificates",
	"Unexpired agent certificates signed by each CA (on record or in a CSR still on the hub), by its role in the CA secret (signing, trusted, or empty when it holds it no more). A trusted CA at 0 may leave ca.crt.",
	[]string{"ca", "role"}, nil)

// Collector exports, at each scrape, ByCA over the certificates on the hub (OnHub): what
// `status` prints, for alerting during a CA rollover.
type Collector struct {
	// Reader is the manager's cached client: a scrape costs no API call.
	Reader client.Reader
	CA     certificates.CASource
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) { ch <- caValidDesc }

// Collect implements prometheus.Collector. With no usable CA or no readable add-ons it exports
// nothing, rather than numbers that would say a CA may go.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	ca, err := c.CA.Get(ctx)
	if err != nil {
		return
	}
	byCluster, err := OnHub(ctx, c.Reader, ca.Trusted)
	if err != nil {
		return
	}
	var certs []Certificate
	for _, cs := range byCluster {
		certs = append(certs, cs...)
	}
	for _, u := range ByCA(ca.Cert, ca.Trusted[1:], certs, now) {
		ch <- prometheus.MustNewConstMetric(caValidDesc, prometheus.GaugeValue, float64(u.Valid), u.ID, u.Role)
	}
}
