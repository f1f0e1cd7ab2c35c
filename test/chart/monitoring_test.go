package chart_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/chart"
)

// promtoolBinary returns promtool from $PROMTOOL.
func promtoolBinary(t *testing.T) string { return toolFromEnv(t, "PROMTOOL", "promtool") }

// TestAlertRules unit-tests every alert of the chart's PrometheusRule with promtool, on the
// rules as the chart renders them (testdata/alerts_test.yaml says what each case proves).
func TestAlertRules(t *testing.T) {
	helm, promtool := helmBinary(t), promtoolBinary(t)
	objs, err := chart.Render(helm, releaseNamespace, map[string]string{
		"metrics.serviceMonitor.enabled": "true", "metrics.prometheusRule.enabled": "true",
		"metrics.prometheusRule.alertLabels.team": "platform",
	})
	if err != nil {
		t.Fatal(err)
	}
	rule := index(t, objs).get(t, "PrometheusRule", releaseNamespace, managerName)
	spec, err := yaml.Marshal(rule.Object["spec"])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests, err := os.ReadFile(filepath.Join("testdata", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"rules.yaml": spec, "alerts_test.yaml": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(promtool, "check", "rules", "--lint-fatal", filepath.Join(dir, "rules.yaml")).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	out, err := exec.Command(promtool, "test", "rules", filepath.Join(dir, "alerts_test.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// TestMonitoringObjects: the Prometheus Operator's objects are off by default; on, the
// ServiceMonitor scrapes the Service over the manager pods with the scheme metrics.secure
// serves, as an identity that may get /metrics and nothing else.
func TestMonitoringObjects(t *testing.T) {
	helm := helmBinary(t)
	render := func(values map[string]string) renderedObjects {
		t.Helper()
		objs, err := chart.Render(helm, releaseNamespace, values)
		if err != nil {
			t.Fatal(err)
		}
		return index(t, objs)
	}
	monitoringKinds := []string{"ServiceMonitor", "PrometheusRule"}
	for k := range render(nil) {
		for _, kind := range monitoringKinds {
			if strings.HasPrefix(string(k), kind+"/") {
				t.Errorf("%s rendered by default", k)
			}
		}
	}

	scraper := managerName + "-metrics-scraper"
	secure := render(map[string]string{"metrics.serviceMonitor.enabled": "true", "metrics.serviceMonitor.labels.release": "prom"})
	svc := convert[corev1.Service](t, secure.get(t, "Service", releaseNamespace, managerName+"-metrics"))
	deploy := convert[appsv1.Deployment](t, secure.get(t, "Deployment", releaseNamespace, managerName))
	expectEqual(t, "metrics Service selector", svc.Spec.Selector, deploy.Spec.Selector.MatchLabels)
	expectEqual(t, "metrics Service ports", svc.Spec.Ports, []corev1.ServicePort{
		{Name: "metrics", Port: 8080, TargetPort: intstr.FromString("metrics"), Protocol: corev1.ProtocolTCP}})
	sm := convert[monitoringv1.ServiceMonitor](t, secure.get(t, "ServiceMonitor", releaseNamespace, managerName))
	if sm.Labels["release"] != "prom" {
		t.Errorf("ServiceMonitor labels %v, want release=prom from metrics.serviceMonitor.labels", sm.Labels)
	}
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(svc.Labels)) {
		t.Errorf("ServiceMonitor selector %v does not select the metrics Service (labels %v): %v", sm.Spec.Selector, svc.Labels, err)
	}
	expectEqual(t, "ServiceMonitor namespaces", sm.Spec.NamespaceSelector.MatchNames, []string{releaseNamespace})
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints %+v, want one", sm.Spec.Endpoints)
	}
	ep := sm.Spec.Endpoints[0]
	if ep.Port != "metrics" || ep.Scheme == nil || *ep.Scheme != "https" || ep.Authorization == nil ||
		ep.Authorization.Credentials == nil || ep.Authorization.Credentials.Name != scraper || ep.Authorization.Credentials.Key != "token" {
		t.Errorf("secure endpoint %+v: want port metrics, https, bearer token from %s/token", ep, scraper)
	}
	if ep.TLSConfig == nil || ep.TLSConfig.InsecureSkipVerify == nil || !*ep.TLSConfig.InsecureSkipVerify {
		t.Errorf("secure endpoint TLS %+v: want insecureSkipVerify for the self-signed certificate", ep.TLSConfig)
	}
	token := convert[corev1.Secret](t, secure.get(t, "Secret", releaseNamespace, scraper))
	if token.Type != corev1.SecretTypeServiceAccountToken || token.Annotations[corev1.ServiceAccountNameKey] != scraper {
		t.Errorf("token Secret %s: type %s, annotations %v: want a token of ServiceAccount %s", scraper, token.Type, token.Annotations, scraper)
	}
	sa := convert[corev1.ServiceAccount](t, secure.get(t, "ServiceAccount", releaseNamespace, scraper))
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %s mounts its token into pods; it runs none", scraper)
	}
	binding := convert[rbacv1.ClusterRoleBinding](t, secure.get(t, "ClusterRoleBinding", "", scraper))
	expectEqual(t, "scraper binding roleRef", binding.RoleRef, rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: managerName + "-metrics-reader"})
	expectEqual(t, "scraper binding subjects", binding.Subjects, []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: scraper, Namespace: releaseNamespace}})
	reader := convert[rbacv1.ClusterRole](t, secure.get(t, "ClusterRole", "", managerName+"-metrics-reader"))
	expectEqual(t, "metrics-reader rules", reader.Rules, []rbacv1.PolicyRule{{Verbs: []string{"get"}, NonResourceURLs: []string{"/metrics"}}})

	// A Secret of the user's: the chart makes no identity of its own.
	own := render(map[string]string{"metrics.serviceMonitor.enabled": "true", "metrics.serviceMonitor.bearerTokenSecret": "prometheus-token"})
	sm = convert[monitoringv1.ServiceMonitor](t, own.get(t, "ServiceMonitor", releaseNamespace, managerName))
	if c := sm.Spec.Endpoints[0].Authorization.Credentials; c.Name != "prometheus-token" {
		t.Errorf("credentials %+v, want the Secret prometheus-token", c)
	}
	for _, k := range []objectKey{key("ServiceAccount", releaseNamespace, scraper), key("Secret", releaseNamespace, scraper), key("ClusterRoleBinding", "", scraper)} {
		if _, ok := own[k]; ok {
			t.Errorf("%s rendered with metrics.serviceMonitor.bearerTokenSecret set", k)
		}
	}

	// A certificate to check: the manager serves the Secret's, the scrape checks it.
	checked := render(map[string]string{"metrics.serviceMonitor.enabled": "true", "metrics.certSecret": "metrics-tls",
		"metrics.serviceMonitor.insecureSkipVerify": "false", "metrics.serviceMonitor.tlsConfig.serverName": managerName + "-metrics." + releaseNamespace + ".svc"})
	deploy = convert[appsv1.Deployment](t, checked.get(t, "Deployment", releaseNamespace, managerName))
	c := onlyContainer(t, deploy)
	if !slices.Contains(c.Args, "--metrics-cert-dir=/var/run/argocd-agent-addon/metrics-cert") || len(c.VolumeMounts) != 1 ||
		c.VolumeMounts[0].MountPath != "/var/run/argocd-agent-addon/metrics-cert" || !c.VolumeMounts[0].ReadOnly ||
		len(deploy.Spec.Template.Spec.Volumes) != 1 || deploy.Spec.Template.Spec.Volumes[0].Secret == nil ||
		deploy.Spec.Template.Spec.Volumes[0].Secret.SecretName != "metrics-tls" {
		t.Errorf("metrics.certSecret: args %v, mounts %+v, volumes %+v: want metrics-tls mounted read-only at --metrics-cert-dir", c.Args, c.VolumeMounts, deploy.Spec.Template.Spec.Volumes)
	}
	sm = convert[monitoringv1.ServiceMonitor](t, checked.get(t, "ServiceMonitor", releaseNamespace, managerName))
	if tc := sm.Spec.Endpoints[0].TLSConfig; tc == nil || tc.InsecureSkipVerify == nil || *tc.InsecureSkipVerify || tc.ServerName == nil {
		t.Errorf("TLS with a certificate to check %+v: want insecureSkipVerify false and the serverName given", tc)
	}

	// Plain HTTP: no token, no TLS, no identity.
	plain := render(map[string]string{"metrics.serviceMonitor.enabled": "true", "metrics.secure": "false"})
	sm = convert[monitoringv1.ServiceMonitor](t, plain.get(t, "ServiceMonitor", releaseNamespace, managerName))
	if ep := sm.Spec.Endpoints[0]; ep.Scheme == nil || *ep.Scheme != "http" || ep.Authorization != nil || ep.TLSConfig != nil {
		t.Errorf("endpoint with metrics.secure=false %+v: want plain http, no token, no TLS", ep)
	}
	if _, ok := plain[key("ServiceAccount", releaseNamespace, scraper)]; ok {
		t.Errorf("scraper identity rendered with metrics.secure=false")
	}

	// The PrometheusRule and the dashboard: typed, labelled, the dashboard valid JSON.
	all := render(map[string]string{"metrics.prometheusRule.enabled": "true", "metrics.prometheusRule.labels.role": "alerts", "metrics.grafanaDashboard.enabled": "true"})
	rule := convert[monitoringv1.PrometheusRule](t, all.get(t, "PrometheusRule", releaseNamespace, managerName))
	if rule.Labels["role"] != "alerts" || len(rule.Spec.Groups) != 1 || len(rule.Spec.Groups[0].Rules) < 9 {
		t.Errorf("PrometheusRule labels %v, %d groups: want role=alerts and the add-on's alerts", rule.Labels, len(rule.Spec.Groups))
	}
	for _, r := range rule.Spec.Groups[0].Rules {
		if r.Alert == "ArgoCDAgentAddonManagerDown" {
			t.Errorf("ArgoCDAgentAddonManagerDown rendered without the ServiceMonitor, whose job it watches")
		}
	}
	cm := convert[corev1.ConfigMap](t, all.get(t, "ConfigMap", releaseNamespace, managerName+"-dashboard"))
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v, want grafana_dashboard=1 for Grafana's sidecar", cm.Labels)
	}
	var dashboard struct {
		UID    string `json:"uid"`
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(cm.Data["argocd-agent-addon.json"]), &dashboard); err != nil || dashboard.UID == "" || len(dashboard.Panels) == 0 {
		t.Errorf("dashboard: %v (uid %q, %d panels)", err, dashboard.UID, len(dashboard.Panels))
	}
}
