package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/chart"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/prometheus"
)

// MonitoringNamespace is where Options.Monitoring runs Prometheus.
const MonitoringNamespace = "monitoring"

// monitoringValues turn on the chart's monitoring objects. The scrape interval is shortened so
// that a test sees a change within seconds; everything else is the chart's default.
var monitoringValues = map[string]string{
	"metrics.serviceMonitor.enabled":       "true",
	"metrics.serviceMonitor.interval":      "5s",
	"metrics.serviceMonitor.scrapeTimeout": "4s",
	"metrics.prometheusRule.enabled":       "true",
	"metrics.grafanaDashboard.enabled":     "true",
}

// monitoringCRDs are the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, so that
// the hub accepts the chart's objects, validated against their schemas.
func monitoringCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	dir, err := binaryFromEnv(prometheus.OperatorCRDsEnv)
	if err != nil {
		return nil, err
	}
	return readCRDs([]string{filepath.Join(dir, "monitoring.coreos.com_servicemonitors.yaml"),
		filepath.Join(dir, "monitoring.coreos.com_prometheusrules.yaml")})
}

// startPrometheus runs Prometheus on the hub's node, scraping the manager as the chart's
// ServiceMonitor says and evaluating the chart's PrometheusRule, read back from the hub.
func (e *Env) startPrometheus(ctx context.Context) error {
	image := os.Getenv(prometheus.ImageEnv)
	if image == "" {
		return fmt.Errorf("%s is not set: run `make test`, or `eval \"$(hack/test-tools.sh)\"` first", prometheus.ImageEnv)
	}
	sm := &monitoringv1.ServiceMonitor{}
	if err := e.getTyped(ctx, "ServiceMonitor", chart.ReleaseName, sm); err != nil {
		return err
	}
	rule := &monitoringv1.PrometheusRule{}
	if err := e.getTyped(ctx, "PrometheusRule", chart.ReleaseName, rule); err != nil {
		return err
	}
	var err error
	e.Prometheus, err = prometheus.Deploy(ctx, e.Hub.Client, prometheus.Options{
		Namespace: MonitoringNamespace, Image: image, ServiceMonitor: sm, Rules: rule, EvaluationInterval: "5s"})
	if err != nil {
		return fmt.Errorf("prometheus: %w", err)
	}
	e.opts.progress("Prometheus up on %s, scraping the manager as ServiceMonitor %s/%s says", e.Prometheus.URL, sm.Namespace, sm.Name)
	return nil
}

// getTyped reads a monitoring.coreos.com/v1 object of the add-on's namespace into out.
func (e *Env) getTyped(ctx context.Context, kind, name string, out any) error {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(monitoringv1.SchemeGroupVersion.String())
	u.SetKind(kind)
	if err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: AddonNamespace, Name: name}, u); err != nil {
		return fmt.Errorf("the chart's %s: %w", kind, err)
	}
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out)
}
