package argocd

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/spokeready"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/node"
)

// ImageEnv names the archive of the Argo CD image hack/test-tools.sh builds (hack/image, kind
// argocd): one binary from the argo-cd module argocd-agent v0.9.0 requires, with a link per
// component, tagged Image.
const ImageEnv = "ARGOCD_IMAGE_ARCHIVE"

// Image is the reference the Argo CD image archive carries: upstream's, at the version
// argocd-agent v0.9.0 requires.
const Image = "quay.io/argoproj/argocd:v3.4.3"

// Component is one of Argo CD's components, named as upstream names its workload, ServiceAccount
// and command.
type Component string

const (
	ApplicationController    Component = spokeready.ApplicationController
	RepoServer               Component = spokeready.RepoServer
	ApplicationSetController Component = "argocd-applicationset-controller"
)

// What the agent model runs where (argocd-agent's install/kubernetes/argo-cd at v0.9.0): a managed
// spoke runs the application-controller and repo-server; an autonomous one also the
// ApplicationSet controller; the hub only the ApplicationSet controller (the principal writes
// the hub Applications' status).
var (
	ManagedSpoke    = []Component{ApplicationController, RepoServer}
	AutonomousSpoke = []Component{ApplicationController, RepoServer, ApplicationSetController}
	Hub             = []Component{ApplicationSetController}
)

// Upstream's names that the components read.
const (
	// RedisService is Argo CD's redis, and RedisSecret its password (key RedisPasswordKey).
	RedisService     = spokeready.Redis
	RedisSecret      = "argocd-redis"
	RedisPasswordKey = "auth"
	settingsMap      = "argocd-cm"
	paramsMap        = "argocd-cmd-params-cm"
	settingsSecret   = "argocd-secret"
	repoServerPort   = 8081
	// Ports of /healthz (with the metrics): application-controller, repo-server.
	controllerMetricsPort = 8082
	repoServerMetricsPort = 8084
)

// ComponentsOptions configure InstallComponents.
type ComponentsOptions struct {
	// Client and Clientset reach the cluster as the administrator who installs Argo CD.
	Client    client.Client
	Clientset kubernetes.Interface
	// Namespace is Argo CD's namespace; default "argocd". It must hold the RedisService (with a
	// route from the node) and the RedisSecret.
	Namespace string
	// Dir receives each pod's log, <component>-<n>.log. Required.
	Dir string
	// Components to run.
	Components []Component
}

// Components are Argo CD's components running as pods of their workloads, under their own
// ServiceAccounts and RBAC, from Image. They are our manifests, not upstream's (whose install
// is a remote kustomize base): the same names, commands, ports, probes and identities, with
// these differences, each a stand-in: the repo-server's Service is headless (the test nodes
// route no ClusterIP to pods; see node's DNS), both without TLS between them
// (--disable-tls, --repo-server-plaintext), GPG off (its binary is not in the image), and no
// argocd-server, dex or notifications.
type Components struct {
	o ComponentsOptions

	mu   sync.Mutex
	logs []string
	seen map[types.UID]bool
}

// InstallComponents applies the components' objects and follows their pods' logs. Call
// WaitReady next.
func InstallComponents(ctx context.Context, o ComponentsOptions) (*Components, error) {
	if o.Client == nil || o.Clientset == nil || o.Dir == "" || len(o.Components) == 0 {
		return nil, errors.New("ComponentsOptions: Client, Clientset, Dir and Components are required")
	}
	if o.Namespace == "" {
		o.Namespace = "argocd"
	}
	objs := componentObjects(o)
	for _, obj := range objs {
		if err := o.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
	}
	c := &Components{o: o, seen: map[types.UID]bool{}}
	go c.followLogs(ctx)
	return c, nil
}

func componentObjects(o ComponentsOptions) []client.Object {
	ns := o.Namespace
	part := func(name string) map[string]string {
		return map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "argocd"}
	}
	// Settings as an install leaves them: the SettingsManager only sees objects labelled
	// part-of=argocd. Default (annotation) resource tracking.
	objs := []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: settingsMap, Labels: part(settingsMap)}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: paramsMap, Labels: part(paramsMap)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: settingsSecret, Labels: part(settingsSecret)}},
	}
	for _, comp := range o.Components {
		name := string(comp)
		objs = append(objs, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: part(name)}})
		var rules []rbacv1.PolicyRule
		switch comp {
		case ApplicationController:
			// Upstream's cluster install: the controller deploys whatever its Applications hold.
			rules = []rbacv1.PolicyRule{
				{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}},
				{NonResourceURLs: []string{"*"}, Verbs: []string{"*"}},
			}
		case ApplicationSetController:
			// PlacementDecisions are not here: the chart grants them (applicationSets).
			rules = []rbacv1.PolicyRule{
				{APIGroups: []string{"argoproj.io"}, Resources: []string{"applications", "applicationsets", "applicationsets/finalizers"},
					Verbs: []string{"create", "delete", "get", "list", "patch", "update", "watch"}},
				{APIGroups: []string{"argoproj.io"}, Resources: []string{"applicationsets/status"}, Verbs: []string{"get", "patch", "update"}},
				{APIGroups: []string{"argoproj.io"}, Resources: []string{"appprojects"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{""}, Resources: []string{"secrets", "configmaps"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "get", "list", "patch", "watch"}},
				{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create", "delete", "get", "list", "patch", "update", "watch"}},
			}
		}
		if rules != nil {
			objs = append(objs,
				&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name + "-" + ns, Labels: part(name)}, Rules: rules},
				&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name + "-" + ns, Labels: part(name)},
					RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name + "-" + ns},
					Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}}})
		}
		objs = append(objs, workload(o, comp)...)
	}
	return objs
}

// workload is the component's Deployment or StatefulSet and, for the repo-server, its Service.
func workload(o ComponentsOptions, comp Component) []client.Object {
	name := string(comp)
	labels := map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "argocd"}
	redisPassword := corev1.EnvVar{Name: "REDIS_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: RedisSecret}, Key: RedisPasswordKey}}}
	container := corev1.Container{
		Name: name, Image: Image, ImagePullPolicy: corev1.PullIfNotPresent,
		Command: []string{name},
		Env:     []corev1.EnvVar{redisPassword, {Name: "HOME", Value: "/home/argocd"}},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "tmp", MountPath: "/tmp"},
			{Name: "home", MountPath: "/home/argocd"},
		},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true), RunAsNonRoot: ptr.To(true),
			Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	probe := func(port int) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt(port)}},
			PeriodSeconds: 2, FailureThreshold: 3}
	}
	redis := RedisService + ":6379"
	var objs []client.Object
	switch comp {
	case ApplicationController:
		container.Args = []string{"--redis", redis, "--repo-server", string(RepoServer) + ":" + fmt.Sprint(repoServerPort),
			"--repo-server-plaintext", "--status-processors", "2", "--operation-processors", "2", "--loglevel", "info"}
		container.ReadinessProbe = probe(controllerMetricsPort)
	case RepoServer:
		container.Args = []string{"--redis", redis, "--disable-tls", "--loglevel", "info"}
		// GPG verification execs gpg, which the image does not have.
		container.Env = append(container.Env, corev1.EnvVar{Name: "ARGOCD_GPG_ENABLED", Value: "false"})
		container.Ports = []corev1.ContainerPort{{Name: "server", ContainerPort: repoServerPort}}
		container.ReadinessProbe = probe(repoServerMetricsPort)
		objs = append(objs, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: name, Labels: labels},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app.kubernetes.io/name": name},
				Ports: []corev1.ServicePort{{Name: "server", Port: repoServerPort, TargetPort: intstr.FromInt(repoServerPort)}}},
		})
	case ApplicationSetController:
		// No probe, as upstream: its probe endpoint registers no check and answers 404.
		container.Args = []string{"--loglevel", "info"}
	}
	pod := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{
			ServiceAccountName: name,
			Containers:         []corev1.Container{container},
			Volumes: []corev1.Volume{
				{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "home", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": name}}
	meta := metav1.ObjectMeta{Namespace: o.Namespace, Name: name, Labels: labels}
	if comp == ApplicationController {
		// A StatefulSet, as upstream runs it (each replica owns a shard of the clusters).
		return append(objs, &appsv1.StatefulSet{ObjectMeta: meta,
			Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1), ServiceName: name, Selector: selector, Template: pod}})
	}
	return append(objs, &appsv1.Deployment{ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: selector, Template: pod}})
}

// WaitReady waits until one pod of each component is Ready.
func (c *Components) WaitReady(ctx context.Context, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		last = c.ready(ctx)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("the Argo CD components in %s are not ready within %s: %v", c.o.Namespace, timeout, last)
	}
	return nil
}

func (c *Components) ready(ctx context.Context) error {
	for _, comp := range c.o.Components {
		pods := &corev1.PodList{}
		if err := c.o.Client.List(ctx, pods, client.InNamespace(c.o.Namespace), client.MatchingLabels{"app.kubernetes.io/name": string(comp)}); err != nil {
			return err
		}
		var why []string
		ready := slices.ContainsFunc(pods.Items, func(p corev1.Pod) bool {
			ok, reason := node.PodReady(&p)
			why = append(why, p.Name+": "+reason)
			return ok && p.DeletionTimestamp == nil
		})
		if !ready {
			return fmt.Errorf("%s: no Ready pod (%v)", comp, why)
		}
	}
	return nil
}

// followLogs streams each component pod's log to <Dir>/<component>-<n>.log.
func (c *Components) followLogs(ctx context.Context) {
	for ctx.Err() == nil {
		for _, comp := range c.o.Components {
			pods := &corev1.PodList{}
			if err := c.o.Client.List(ctx, pods, client.InNamespace(c.o.Namespace), client.MatchingLabels{"app.kubernetes.io/name": string(comp)}); err != nil {
				continue
			}
			for _, pod := range pods.Items {
				if !containerRunning(&pod, string(comp)) {
					continue
				}
				c.mu.Lock()
				seen := c.seen[pod.UID]
				file := filepath.Join(c.o.Dir, fmt.Sprintf("%s-%d.log", comp, len(c.logs)))
				if !seen {
					c.seen[pod.UID] = true
					c.logs = append(c.logs, file)
				}
				c.mu.Unlock()
				if !seen {
					go node.StreamLog(ctx, c.o.Clientset, pod.Namespace, pod.Name, string(comp), file)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// LogFiles are the files of every component pod's log so far.
func (c *Components) LogFiles() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.logs)
}

// AppProjectGVK and ApplicationGVK are Argo CD's kinds, read as unstructured objects (the test
// modules do not import argo-cd's API).
var (
	AppProjectGVK  = schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "AppProject"}
	ApplicationGVK = schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Application"}
)

// DefaultProject is the AppProject "default" as an Argo CD install makes it (any source, any
// destination, any kind), in the form argocd-agent's principal routes to managed agents: every
// agent name matches its destinations and source namespaces.
func DefaultProject(namespace string) *unstructured.Unstructured {
	p := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"namespace": namespace, "name": "default"},
		"spec": map[string]any{
			"sourceRepos":              []any{"*"},
			"sourceNamespaces":         []any{"*"},
			"destinations":             []any{map[string]any{"name": "*", "server": "*", "namespace": "*"}},
			"clusterResourceWhitelist": []any{map[string]any{"group": "*", "kind": "*"}},
		},
	}}
	p.SetGroupVersionKind(AppProjectGVK)
	return p
}
