package prometheus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/node"
)

// ImageEnv names the Prometheus image hack/test-tools.sh builds (hack/image, kind prometheus),
// ImageArchiveEnv its archive, which a node imports.
const (
	ImageEnv        = "PROMETHEUS_IMAGE"
	ImageArchiveEnv = "PROMETHEUS_IMAGE_ARCHIVE"
	// OperatorCRDsEnv names the directory of the Prometheus Operator's CRDs (ServiceMonitor,
	// PrometheusRule) hack/test-tools.sh copies from the operator's module.
	OperatorCRDsEnv = "PROMETHEUS_OPERATOR_CRDS"
)

const (
	name = "prometheus"
	port = 9090
)

// Options configure Deploy.
type Options struct {
	// Namespace Prometheus runs in; created if missing.
	Namespace string
	// Image is the Prometheus image on the node.
	Image string
	// ServiceMonitor is what Prometheus scrapes, as the operator would configure it.
	ServiceMonitor *monitoringv1.ServiceMonitor
	// Rules, if set, are evaluated (the operator loads a selected PrometheusRule's spec as is).
	Rules *monitoringv1.PrometheusRule
	// EvaluationInterval of the rules; the operator's default is 30s, tests shorten it.
	EvaluationInterval string
}

// Server is a running Prometheus.
type Server struct {
	// URL of its HTTP API, on its pod's address.
	URL string
	API promv1.API
}

// Deploy runs Prometheus as a Deployment with its own ServiceAccount, which may discover the
// ServiceMonitor's targets (services, pods and EndpointSlices of its namespaces, as the
// operator's Prometheus role allows), with the ServiceMonitor's credentials copied from their
// Secrets, and waits until it is ready.
func Deploy(ctx context.Context, c client.Client, o Options) (*Server, error) {
	sm := o.ServiceMonitor
	scrape, err := ScrapeConfig(sm)
	if err != nil {
		return nil, err
	}
	cfg := map[string]any{
		"global":         map[string]any{"evaluation_interval": o.EvaluationInterval},
		"scrape_configs": scrape,
	}
	files := map[string]string{}
	if o.Rules != nil {
		rules, err := yaml.Marshal(o.Rules.Spec)
		if err != nil {
			return nil, err
		}
		files["rules.yaml"] = string(rules)
		cfg["rule_files"] = []string{"/etc/prometheus/config/rules.yaml"}
	}
	config, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	files["prometheus.yml"] = string(config)

	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.Namespace}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: name}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: name}, Data: files},
	}
	namespaces := sm.Spec.NamespaceSelector.MatchNames
	if len(namespaces) == 0 {
		namespaces = []string{sm.Namespace}
	}
	for _, ns := range namespaces {
		objs = append(objs,
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-" + o.Namespace}, Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"services", "pods"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
			}},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-" + o.Namespace},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name + "-" + o.Namespace},
				Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: o.Namespace, Name: name}}})
	}
	volumes := []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}},
		{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	mounts := []corev1.VolumeMount{{Name: "config", MountPath: "/etc/prometheus/config"}, {Name: "data", MountPath: "/prometheus"}}
	creds := Credentials(sm)
	for i, secret := range slices.Sorted(maps.Keys(creds)) {
		// The operator reads the Secrets its ServiceMonitors name and hands their keys to
		// Prometheus; so does this, once the token controller has filled the token.
		data, err := secretData(ctx, c, types.NamespacedName{Namespace: sm.Namespace, Name: secret}, creds[secret])
		if err != nil {
			return nil, err
		}
		copyName := fmt.Sprintf("%s-credentials-%d", name, i)
		objs = append(objs, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: copyName}, Data: data})
		volumes = append(volumes, corev1.Volume{Name: copyName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: copyName}}})
		mounts = append(mounts, corev1.VolumeMount{Name: copyName, MountPath: "/etc/prometheus/secrets/" + secret, ReadOnly: true})
	}
	labels := map[string]string{"app.kubernetes.io/name": name}
	objs = append(objs, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: name,
					Containers: []corev1.Container{{
						Name: name, Image: o.Image, ImagePullPolicy: corev1.PullIfNotPresent,
						Args: []string{"--config.file=/etc/prometheus/config/prometheus.yml", "--storage.tsdb.path=/prometheus",
							fmt.Sprintf("--web.listen-address=:%d", port)},
						Ports:        []corev1.ContainerPort{{Name: "web", ContainerPort: port}},
						VolumeMounts: mounts,
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/-/ready", Port: intstr.FromInt(port)}},
							PeriodSeconds: 2},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true), RunAsNonRoot: ptr.To(true),
							Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
					}},
					Volumes: volumes,
				},
			},
		},
	})
	for _, obj := range objs {
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
	}
	ip, err := waitReady(ctx, c, o.Namespace, labels)
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("http://%s:%d", ip, port)
	cl, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return nil, err
	}
	return &Server{URL: url, API: promv1.NewAPI(cl)}, nil
}

// secretData waits until the Secret holds every key (a token Secret is filled by
// kube-controller-manager after it is created) and returns them.
func secretData(ctx context.Context, c client.Client, key types.NamespacedName, keys []string) (map[string][]byte, error) {
	var data map[string][]byte
	var last error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		s := &corev1.Secret{}
		if last = c.Get(ctx, key, s); last != nil {
			return false, nil
		}
		data = map[string][]byte{}
		for _, k := range keys {
			if len(s.Data[k]) == 0 {
				last = fmt.Errorf("secret %s has no %q yet", key, k)
				return false, nil
			}
			data[k] = s.Data[k]
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the ServiceMonitor's credentials: %v (%w)", last, err)
	}
	return data, nil
}

func waitReady(ctx context.Context, c client.Client, namespace string, labels map[string]string) (string, error) {
	var ip string
	last := errors.New("no pod yet")
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := c.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabels(labels)); err != nil {
			last = err
			return false, nil
		}
		for _, p := range pods.Items {
			ready, why := node.PodReady(&p)
			if ready {
				ip = p.Status.PodIP
				return true, nil
			}
			last = fmt.Errorf("pod %s: %s", p.Name, why)
		}
		return false, nil
	})
	if err != nil {
		return "", fmt.Errorf("prometheus not ready within 2 minutes: %v", last)
	}
	return ip, nil
}

// Query evaluates expr now and returns its samples; a result that is not an instant vector is
// an error.
func (s *Server) Query(ctx context.Context, expr string) (model.Vector, error) {
	v, warnings, err := s.API.Query(ctx, expr, time.Now())
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	if len(warnings) > 0 {
		return nil, fmt.Errorf("query %s: warnings %v", expr, warnings)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		if sc, ok := v.(*model.Scalar); ok {
			return model.Vector{&model.Sample{Value: sc.Value, Timestamp: sc.Timestamp}}, nil
		}
		return nil, fmt.Errorf("query %s: a %s, want a vector", expr, v.Type())
	}
	return vec, nil
}
