// Package metrics holds every Prometheus metric of the add-on's certificate handling: the
// counters the approver and the signer increment, registered with controller-runtime's registry,
// which the manager serves on its metrics address, and the gauges that describe the fleet,
// computed at scrape time from the hub (Collector), so that every replica reports them right.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
)

const namespace = "argocd_agent_addon"

var (
	// CSRsApproved counts CSRs the approver approved.
	CSRsApproved = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "csr_approved_total",
		Help: "CertificateSigningRequests for the add-on's signer that passed every check and were approved.",
	})
	// CSRsDenied counts CSRs the approver refused, by reason.
	CSRsDenied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "csr_denied_total",
		Help: "CertificateSigningRequests refused by the approver, by reason.",
	}, []string{"reason"})
	// CSRsSigned counts certificates issued.
	CSRsSigned = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "csr_signed_total",
		Help: "Agent client certificates issued.",
	})
	// CSRsFailed counts approved CSRs the signer refused to sign, by reason.
	CSRsFailed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "csr_sign_failed_total",
		Help: "Approved CertificateSigningRequests the signer refused to sign (marked Failed), by reason.",
	}, []string{"reason"})
)

func init() {
	// Every reason from 0: a series that appears at 1 is no increase to an alert's increase().
	for _, r := range policy.Reasons {
		CSRsDenied.WithLabelValues(string(r))
		CSRsFailed.WithLabelValues(string(r))
	}
	ctrlmetrics.Registry.MustRegister(CSRsApproved, CSRsDenied, CSRsSigned, CSRsFailed)
}
