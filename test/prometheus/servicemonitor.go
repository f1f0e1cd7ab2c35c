// Package prometheus runs a real Prometheus (built by hack/test-tools.sh from its module, as a
// pod from an image built here) that scrapes the manager as the chart's ServiceMonitor says and
// evaluates the chart's PrometheusRule, and queries it over its HTTP API.
//
// Stand-in: no Prometheus Operator runs. ScrapeConfig turns a ServiceMonitor into the scrape
// configuration the operator would generate for it (EndpointSlice discovery, the Service and
// port selection, scheme, bearer token and TLS settings, the operator's target labels), and
// Deploy copies the token Secret the ServiceMonitor names, as the operator does; what it hides
// is the operator's own reconciliation (selectors over ServiceMonitors, config reloads).
package prometheus

import (
	"fmt"
	"sort"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)

// secretFile is where Deploy mounts a Secret key the ServiceMonitor names.
func secretFile(name, key string) string {
	return "/etc/prometheus/secrets/" + name + "/" + key
}

// ScrapeConfig returns the scrape configuration of each endpoint of sm, as the Prometheus
// Operator (v0.89, serviceDiscoveryRole EndpointSlice) generates it: job serviceMonitor/<ns>/<name>/<i>,
// targets from the EndpointSlices of the Services sm selects in its namespaces, the endpoint's
// port by name, and the operator's target labels (job is the Service's name).
func ScrapeConfig(sm *monitoringv1.ServiceMonitor) ([]map[string]any, error) {
	namespaces := sm.Spec.NamespaceSelector.MatchNames
	if len(namespaces) == 0 {
		namespaces = []string{sm.Namespace}
	}
	if len(sm.Spec.Selector.MatchExpressions) > 0 {
		return nil, fmt.Errorf("ServiceMonitor %s/%s: matchExpressions are not translated here", sm.Namespace, sm.Name)
	}
	var keys []string
	for k := range sm.Spec.Selector.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []map[string]any
	for i, ep := range sm.Spec.Endpoints {
		if ep.Port == "" {
			return nil, fmt.Errorf("ServiceMonitor %s/%s endpoint %d: only named ports are translated here", sm.Namespace, sm.Name, i)
		}
		var relabel []map[string]any
		for _, k := range keys {
			l := sanitize(k)
			relabel = append(relabel, map[string]any{"action": "keep",
				"source_labels": []string{"__meta_kubernetes_service_label_" + l, "__meta_kubernetes_service_labelpresent_" + l},
				"regex":         "(" + sm.Spec.Selector.MatchLabels[k] + ");true"})
		}
		relabel = append(relabel,
			map[string]any{"action": "keep", "source_labels": []string{"__meta_kubernetes_endpointslice_port_name"}, "regex": ep.Port},
			map[string]any{"source_labels": []string{"__meta_kubernetes_namespace"}, "target_label": "namespace"},
			map[string]any{"source_labels": []string{"__meta_kubernetes_service_name"}, "target_label": "service"},
			map[string]any{"source_labels": []string{"__meta_kubernetes_pod_name"}, "target_label": "pod"},
			map[string]any{"source_labels": []string{"__meta_kubernetes_pod_container_name"}, "target_label": "container"},
			map[string]any{"source_labels": []string{"__meta_kubernetes_service_name"}, "target_label": "job"},
			map[string]any{"target_label": "endpoint", "replacement": ep.Port},
		)
		cfg := map[string]any{
			"job_name":              fmt.Sprintf("serviceMonitor/%s/%s/%d", sm.Namespace, sm.Name, i),
			"honor_labels":          ep.HonorLabels,
			"kubernetes_sd_configs": []map[string]any{{"role": "endpointslice", "namespaces": map[string]any{"names": namespaces}}},
			"relabel_configs":       relabel,
			"metrics_path":          "/metrics",
			"scheme":                "http",
		}
		if ep.Path != "" {
			cfg["metrics_path"] = ep.Path
		}
		if ep.Scheme != nil {
			cfg["scheme"] = strings.ToLower(string(*ep.Scheme))
		}
		if ep.Interval != "" {
			cfg["scrape_interval"] = string(ep.Interval)
		}
		if ep.ScrapeTimeout != "" {
			cfg["scrape_timeout"] = string(ep.ScrapeTimeout)
		}
		if a := ep.Authorization; a != nil && a.Credentials != nil {
			typ := a.Type
			if typ == "" {
				typ = "Bearer"
			}
			cfg["authorization"] = map[string]any{"type": typ, "credentials_file": secretFile(a.Credentials.Name, a.Credentials.Key)}
		}
		if t := ep.TLSConfig; t != nil {
			tls := map[string]any{}
			if t.InsecureSkipVerify != nil {
				tls["insecure_skip_verify"] = *t.InsecureSkipVerify
			}
			if t.ServerName != nil {
				tls["server_name"] = *t.ServerName
			}
			if t.CA.Secret != nil || t.CA.ConfigMap != nil || t.Cert.Secret != nil || t.KeySecret != nil {
				return nil, fmt.Errorf("ServiceMonitor %s/%s endpoint %d: TLS files from Secrets or ConfigMaps are not translated here", sm.Namespace, sm.Name, i)
			}
			cfg["tls_config"] = tls
		}
		out = append(out, cfg)
	}
	return out, nil
}

// Credentials are the Secret keys the ServiceMonitor's endpoints read, by Secret name.
func Credentials(sm *monitoringv1.ServiceMonitor) map[string][]string {
	out := map[string][]string{}
	for _, ep := range sm.Spec.Endpoints {
		if a := ep.Authorization; a != nil && a.Credentials != nil {
			out[a.Credentials.Name] = append(out[a.Credentials.Name], a.Credentials.Key)
		}
	}
	return out
}

// sanitize turns a label name into Prometheus' form of it in discovery labels.
func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, name)
}
