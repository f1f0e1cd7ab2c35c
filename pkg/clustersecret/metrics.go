package clustersecret

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// writes counts the controller's writes to cluster secrets, by event reason (or Deleted): in
// steady state it does not move.
var writes = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "argocd_agent_addon", Name: "cluster_secret_writes_total",
	Help: "Writes to Argo CD cluster secrets: ClusterSecretIssued (created or renewed certificate), ClusterSecretUpdated (labels, server, CA bundle or adoption), ClusterSecretMoved (to another namespace), Deleted.",
}, []string{"reason"})

func init() {
	ctrlmetrics.Registry.MustRegister(writes)
}
