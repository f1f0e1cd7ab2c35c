package argocd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/metrictext"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/node"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
)

// InstallEnv names the environment variable holding upstream's install/kubernetes directory of
// the pinned argocd-agent version (hack/test-tools.sh copies it from the module).
const InstallEnv = "ARGOCD_AGENT_INSTALL_DIR"

// Upstream's names, from install/kubernetes/principal at the pinned version.
const (
	PrincipalName      = "argocd-agent-principal"
	PrincipalContainer = "argocd-agent-principal"
	PrincipalParams    = "argocd-agent-params"
	PrincipalTLSSecret = "argocd-agent-principal-tls"
	JWTSecret          = "argocd-agent-jwt"
	// The resource proxy's ClusterIP Service and server certificate secret.
	ResourceProxyService   = "argocd-agent-resource-proxy"
	ResourceProxyTLSSecret = "argocd-agent-resource-proxy-tls"
	// Principal ports in upstream's ConfigMap: gRPC, metrics, healthz.
	principalMetricsPort = 8000
	principalHealthzPort = 8003
)

// PrincipalInstallOptions configure InstallPrincipal.
type PrincipalInstallOptions struct {
	// Client and Clientset reach the hub as the user who installs Argo CD (an administrator).
	Client    client.Client
	Clientset kubernetes.Interface
	// Namespace is Argo CD's namespace on the hub; default "argocd".
	Namespace string
	// Dir receives the principal pods' logs, principal-<n>.log. Required.
	Dir string
	// Params override keys of upstream's argocd-agent-params ConfigMap (principal.auth, ...).
	Params map[string]string
	// BeforeDeployment, if set, runs after every other object exists and before the Deployment
	// is created: the principal reads its certificates and keys only at start-up.
	BeforeDeployment func(ctx context.Context) error
	// NameSuffix is added to the names of the cluster-scoped objects (ClusterRole and
	// ClusterRoleBinding), as kustomize's nameSuffix would: a second principal on one hub needs
	// its own, or it takes the first one's binding.
	NameSuffix string
}

// PrincipalPod is the principal as upstream installs it: the objects of install/kubernetes/principal
// (ServiceAccount, Role, ClusterRole, bindings, ConfigMap, Services, Deployment), applied as
// kustomize would (namespace, image), running as pods of its Deployment under its own
// ServiceAccount. The one change to upstream's objects: imagePullPolicy IfNotPresent instead of
// Always, because the image is imported into the node, not pulled (no registry here).
type PrincipalPod struct {
	o PrincipalInstallOptions

	mu   sync.Mutex
	host string
	port int
	pods []principalPodLog
	seen map[types.UID]bool
}

type principalPodLog struct {
	uid  types.UID
	name string
	file string
}

// InstallPrincipal applies upstream's principal manifests to the hub and follows its pods' logs.
// Call WaitReady next, once the Service has an address (see node.Cluster.ExposeLoadBalancer).
func InstallPrincipal(ctx context.Context, o PrincipalInstallOptions) (*PrincipalPod, error) {
	if o.Client == nil || o.Clientset == nil || o.Dir == "" {
		return nil, errors.New("PrincipalInstallOptions: Client, Clientset and Dir are required")
	}
	if o.Namespace == "" {
		o.Namespace = "argocd"
	}
	objs, err := PrincipalManifests(o.Namespace, o.Params)
	if err != nil {
		return nil, err
	}
	if o.NameSuffix != "" {
		for _, obj := range objs {
			switch obj.GetKind() {
			case "ClusterRole":
				obj.SetName(obj.GetName() + o.NameSuffix)
			case "ClusterRoleBinding":
				obj.SetName(obj.GetName() + o.NameSuffix)
				name, _, _ := unstructured.NestedString(obj.Object, "roleRef", "name")
				if err := unstructured.SetNestedField(obj.Object, name+o.NameSuffix, "roleRef", "name"); err != nil {
					return nil, err
				}
			}
		}
	}
	var deployments []*unstructured.Unstructured
	for _, obj := range objs {
		if obj.GetKind() == "Deployment" {
			deployments = append(deployments, obj)
			continue
		}
		if err := apply(ctx, o.Client, obj); err != nil {
			return nil, err
		}
	}
	if o.BeforeDeployment != nil {
		if err := o.BeforeDeployment(ctx); err != nil {
			return nil, err
		}
	}
	for _, obj := range deployments {
		if err := apply(ctx, o.Client, obj); err != nil {
			return nil, err
		}
	}
	p := &PrincipalPod{o: o, seen: map[types.UID]bool{}}
	go p.followLogs(ctx)
	return p, nil
}

func apply(ctx context.Context, c client.Client, obj *unstructured.Unstructured) error {
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner("argocd-agent-install"), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	return nil
}

// kustomization is the part of upstream's kustomization.yaml the install uses.
type kustomization struct {
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// PrincipalManifests reads install/kubernetes/principal and renders it as `kustomize build` with
// a namespace would: every namespaced object and ServiceAccount subject in namespace, the image
// from the kustomization's images. params override the ConfigMap's keys.
func PrincipalManifests(namespace string, params map[string]string) ([]*unstructured.Unstructured, error) {
	root := os.Getenv(InstallEnv)
	if root == "" {
		return nil, fmt.Errorf("%s is not set: run `make test`, or `eval \"$(hack/test-tools.sh print-env)\"` first", InstallEnv)
	}
	dir := filepath.Join(root, "principal")
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k kustomization
	if err := yaml.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("kustomization.yaml: %w", err)
	}
	images := map[string]string{}
	for _, img := range k.Images {
		images[img.Name] = img.NewName + ":" + img.NewTag
	}
	var out []*unstructured.Unstructured
	for _, res := range k.Resources {
		data, err := os.ReadFile(filepath.Join(dir, res))
		if err != nil {
			return nil, err
		}
		dec := yamlutil.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			obj := &unstructured.Unstructured{}
			if err := dec.Decode(&obj.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("%s: %w", res, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			if err := kustomize(obj, namespace, images, params); err != nil {
				return nil, fmt.Errorf("%s: %w", res, err)
			}
			out = append(out, obj)
		}
	}
	return out, nil
}

func kustomize(obj *unstructured.Unstructured, namespace string, images, params map[string]string) error {
	switch obj.GetKind() {
	case "ClusterRole", "ClusterRoleBinding":
	default:
		obj.SetNamespace(namespace)
	}
	switch obj.GetKind() {
	case "ClusterRoleBinding", "RoleBinding":
		subjects, _, _ := unstructured.NestedSlice(obj.Object, "subjects")
		for _, s := range subjects {
			if m, ok := s.(map[string]any); ok && m["kind"] == "ServiceAccount" {
				m["namespace"] = namespace
			}
		}
		if err := unstructured.SetNestedSlice(obj.Object, subjects, "subjects"); err != nil {
			return err
		}
	case "ConfigMap":
		if obj.GetName() != PrincipalParams {
			break
		}
		for key, value := range params {
			if err := unstructured.SetNestedField(obj.Object, value, "data", key); err != nil {
				return err
			}
		}
	case "Deployment":
		containers, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
		for _, c := range containers {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			if img, ok := images[fmt.Sprint(m["image"])]; ok {
				m["image"] = img
			}
			m["imagePullPolicy"] = string(corev1.PullIfNotPresent)
		}
		return unstructured.SetNestedSlice(obj.Object, containers, "spec", "template", "spec", "containers")
	}
	return nil
}

// WaitReady waits until exactly one principal pod exists (none terminating), of the
// Deployment's current ReplicaSet, its healthz answers 200 and its metrics answer, and the
// Service's external address accepts connections; Addr is that address from then on.
func (p *PrincipalPod) WaitReady(ctx context.Context, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		last = p.ready(ctx)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("principal not ready within %s: %v; pods: %s", timeout, last, p.describe(ctx))
	}
	return nil
}

func (p *PrincipalPod) ready(ctx context.Context) error {
	d := &appsv1.Deployment{}
	if err := p.o.Client.Get(ctx, types.NamespacedName{Namespace: p.o.Namespace, Name: PrincipalName}, d); err != nil {
		return err
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != want || st.Replicas != want || st.AvailableReplicas != want {
		return fmt.Errorf("deployment: %d replicas, %d updated, %d available; want %d", st.Replicas, st.UpdatedReplicas, st.AvailableReplicas, want)
	}
	if want == 0 {
		return nil
	}
	pods := &corev1.PodList{}
	if err := p.o.Client.List(ctx, pods, client.InNamespace(p.o.Namespace),
		client.MatchingLabels{"app.kubernetes.io/name": PrincipalName}); err != nil {
		return err
	}
	if len(pods.Items) != 1 {
		return fmt.Errorf("%d principal pods (a replaced one may still be terminating), want 1", len(pods.Items))
	}
	pod, err := p.pod(ctx)
	if err != nil {
		return err
	}
	if code, _, err := proc.HTTPGet(ctx, fmt.Sprintf("http://%s/healthz", net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(principalHealthzPort)))); err != nil || code != http.StatusOK {
		return fmt.Errorf("healthz of %s: %d %v", pod.Name, code, err)
	}
	if _, err := p.ConnectedAgentCount(ctx); err != nil {
		return err
	}
	svc := &corev1.Service{}
	if err := p.o.Client.Get(ctx, types.NamespacedName{Namespace: p.o.Namespace, Name: PrincipalName}, svc); err != nil {
		return err
	}
	if len(svc.Status.LoadBalancer.Ingress) == 0 || len(svc.Spec.Ports) == 0 {
		return errors.New("service " + PrincipalName + " has no load balancer address yet")
	}
	ing := svc.Status.LoadBalancer.Ingress[0]
	host := ing.IP
	if host == "" {
		host = ing.Hostname
	}
	p.mu.Lock()
	p.host, p.port = host, int(svc.Spec.Ports[0].Port)
	p.mu.Unlock()
	// What agents dial: the load balancer address reaches the pod.
	return proc.Dialable(p.Addr())
}

// pod is the one running principal pod that is not being deleted.
func (p *PrincipalPod) pod(ctx context.Context) (*corev1.Pod, error) {
	pods := &corev1.PodList{}
	if err := p.o.Client.List(ctx, pods, client.InNamespace(p.o.Namespace),
		client.MatchingLabels{"app.kubernetes.io/name": PrincipalName}); err != nil {
		return nil, err
	}
	var live []corev1.Pod
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp == nil && pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "" {
			live = append(live, pod)
		}
	}
	if len(live) != 1 {
		return nil, fmt.Errorf("%d running principal pods, want 1", len(live))
	}
	return &live[0], nil
}

func (p *PrincipalPod) describe(ctx context.Context) string {
	pods := &corev1.PodList{}
	if err := p.o.Client.List(ctx, pods, client.InNamespace(p.o.Namespace),
		client.MatchingLabels{"app.kubernetes.io/name": PrincipalName}); err != nil {
		return err.Error()
	}
	out := fmt.Sprintf("%d", len(pods.Items))
	for _, pod := range pods.Items {
		ready, why := node.PodReady(&pod)
		out += fmt.Sprintf("; %s %s ready=%v %s", pod.Name, pod.Status.Phase, ready, why)
	}
	return out
}

// Addr is the address agents dial: the Service's load balancer address and port.
func (p *PrincipalPod) Addr() string { return net.JoinHostPort(p.Host(), strconv.Itoa(p.Port())) }

// Host and Port are the parts of Addr, known after WaitReady.
func (p *PrincipalPod) Host() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.host
}

func (p *PrincipalPod) Port() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.port
}

// Scale sets the Deployment's replicas (0 takes the principal down, as an operator would) and
// waits for the result.
func (p *PrincipalPod) Scale(ctx context.Context, replicas int32) error {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: p.o.Namespace, Name: PrincipalName}}
	patch := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)))
	if err := p.o.Client.Patch(ctx, d, patch); err != nil {
		return err
	}
	if err := p.WaitReady(ctx, 2*time.Minute); err != nil {
		return err
	}
	if replicas > 0 {
		return nil
	}
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		err := p.o.Client.List(ctx, pods, client.InNamespace(p.o.Namespace), client.MatchingLabels{"app.kubernetes.io/name": PrincipalName})
		return err == nil && len(pods.Items) == 0, nil
	})
}

// Restart rolls the principal's pods as `kubectl rollout restart` does (a pod template
// annotation), which is how a principal picks up new certificates: it reads them only at
// start-up. It returns once the new pod is ready and the old one gone.
func (p *PrincipalPod) Restart(ctx context.Context) error {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: p.o.Namespace, Name: PrincipalName}}
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
	if err := p.o.Client.Patch(ctx, d, client.RawPatch(types.StrategicMergePatchType, []byte(patch))); err != nil {
		return err
	}
	return p.WaitReady(ctx, 2*time.Minute)
}

// SetImage changes the image of the principal's container, as an upgrade of the principal does,
// and returns once the new pod is ready and the old one gone.
func (p *PrincipalPod) SetImage(ctx context.Context, image string) error {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: p.o.Namespace, Name: PrincipalName}}
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":%q,"image":%q}]}}}}`, PrincipalName, image)
	if err := p.o.Client.Patch(ctx, d, client.RawPatch(types.StrategicMergePatchType, []byte(patch))); err != nil {
		return err
	}
	return p.WaitReady(ctx, 2*time.Minute)
}

// followLogs streams each principal pod's log, in start order, to <Dir>/principal-<n>.log.
func (p *PrincipalPod) followLogs(ctx context.Context) {
	for ctx.Err() == nil {
		pods := &corev1.PodList{}
		if err := p.o.Client.List(ctx, pods, client.InNamespace(p.o.Namespace),
			client.MatchingLabels{"app.kubernetes.io/name": PrincipalName}); err == nil {
			sort.Slice(pods.Items, func(i, j int) bool {
				return pods.Items[i].CreationTimestamp.Before(&pods.Items[j].CreationTimestamp)
			})
			for _, pod := range pods.Items {
				if !containerRunning(&pod, PrincipalContainer) {
					continue
				}
				p.mu.Lock()
				seen := p.seen[pod.UID]
				var file string
				if !seen {
					p.seen[pod.UID] = true
					file = filepath.Join(p.o.Dir, fmt.Sprintf("principal-%d.log", len(p.pods)))
					p.pods = append(p.pods, principalPodLog{uid: pod.UID, name: pod.Name, file: file})
				}
				p.mu.Unlock()
				if !seen {
					go node.StreamLog(ctx, p.o.Clientset, pod.Namespace, pod.Name, PrincipalContainer, file)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func containerRunning(pod *corev1.Pod, name string) bool {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == name && cs.State.Running != nil {
			return true
		}
	}
	return false
}

// LogFiles are the files of every principal pod's log, oldest pod first.
func (p *PrincipalPod) LogFiles() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, l := range p.pods {
		out = append(out, l.file)
	}
	return out
}

// Log is the log of the running pod so far.
func (p *PrincipalPod) Log(ctx context.Context) (string, error) {
	pod, err := p.pod(ctx)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	var file string
	for _, l := range p.pods {
		if l.uid == pod.UID {
			file = l.file
		}
	}
	p.mu.Unlock()
	if file == "" {
		return "", fmt.Errorf("no log of pod %s yet", pod.Name)
	}
	data, err := os.ReadFile(file)
	return string(data), err
}

// MetricsURL is the running pod's Prometheus endpoint.
func (p *PrincipalPod) MetricsURL(ctx context.Context) (string, error) {
	pod, err := p.pod(ctx)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("http://%s/metrics", net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(principalMetricsPort))), nil
}

// ConnectedAgentCount is the running pod's agent_connected_with_principal gauge.
func (p *PrincipalPod) ConnectedAgentCount(ctx context.Context) (int, error) {
	samples, err := p.samples(ctx)
	if err != nil {
		return 0, err
	}
	return connectedCount(samples), nil
}

// ConnectedAgents are the agents connected to the running pod now, sorted (see
// Principal.ConnectedAgents for how v0.9.0 tells them).
func (p *PrincipalPod) ConnectedAgents(ctx context.Context) ([]string, error) {
	samples, err := p.samples(ctx)
	if err != nil {
		return nil, err
	}
	return connectedAgents(samples, func() (string, error) { return p.Log(ctx) })
}

func (p *PrincipalPod) samples(ctx context.Context) ([]metrictext.Sample, error) {
	url, err := p.MetricsURL(ctx)
	if err != nil {
		return nil, err
	}
	return scrape(ctx, url, "agent_connected_with_principal")
}

// ApplySecret creates or replaces a secret in the principal's namespace (its certificates and
// keys), as `kubectl apply` would.
func (p *PrincipalPod) ApplySecret(ctx context.Context, name string, typ corev1.SecretType, data map[string][]byte) error {
	return ApplySecret(ctx, p.o.Client, p.o.Namespace, name, typ, data)
}

// ApplySecret creates the secret, or replaces its data if it exists.
func ApplySecret(ctx context.Context, c client.Client, namespace, name string, typ corev1.SecretType, data map[string][]byte) error {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Type: typ, Data: data}
	err := c.Create(ctx, s)
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	cur := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(s), cur); err != nil {
		return err
	}
	cur.Data = data
	return c.Update(ctx, cur)
}
