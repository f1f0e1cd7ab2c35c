package node_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/node"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// TestPodsRun proves the node runs what the add-on delivers the way a cluster does: a pod with
// the restricted securityContext, a projected service account token and a Secret volume, from an
// image built here, and a pod whose env requires a ConfigMap key that is not there yet, held in
// CreateContainerConfigError by the kubelet and started once the key appears.
func TestPodsRun(t *testing.T) {
	ctx := context.Background() // the processes outlive the test function: its Cleanup stops them
	c := node.StartForTest(t, "nodetest", "10.96.200.0/24")

	ns := "work"
	cl := c.API.Client
	must.Succeed(t, cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	must.Succeed(t, cl.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"}, Data: map[string][]byte{"tls.crt": []byte("x")}}))
	// The serviceaccount controller makes the namespace's default ServiceAccount, which pod
	// admission requires.
	poll.Until(t, 2*time.Minute, "default ServiceAccount", func(ctx context.Context) (bool, error) {
		return cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: "default"}, &corev1.ServiceAccount{}) == nil, nil
	})

	must.Succeed(t, cl.Create(ctx, restrictedPod(ns, "restricted", nil)))
	waitReady(t, c, ns, "restricted", 3*time.Minute)
	p := &corev1.Pod{}
	if err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: "restricted"}, p); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.Status.PodIP, "10.244.") {
		t.Errorf("pod IP %q is not from the node's pod subnet %s", p.Status.PodIP, c.PodCIDR())
	}

	held := restrictedPod(ns, "held", []corev1.EnvVar{{Name: "MODE", ValueFrom: &corev1.EnvVarSource{
		ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "params"}, Key: "mode"}}}})
	must.Succeed(t, cl.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "params"}, Data: map[string]string{"other": "x"}}))
	must.Succeed(t, cl.Create(ctx, held))
	poll.Until(t, 3*time.Minute, "held pod in CreateContainerConfigError", func(ctx context.Context) (bool, error) {
		p := &corev1.Pod{}
		if err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: "held"}, p); err != nil {
			return false, err
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Waiting != nil && cs.State.Waiting.Reason == "CreateContainerConfigError" {
				t.Logf("held as expected: %s", cs.State.Waiting.Message)
				return true, nil
			}
		}
		_, why := node.PodReady(p)
		return false, fmt.Errorf("%s", why)
	})
	cm := &corev1.ConfigMap{}
	if err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: "params"}, cm); err != nil {
		t.Fatal(err)
	}
	cm.Data["mode"] = "managed"
	if err := cl.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, ns, "held", 3*time.Minute)

	// Pods resolve Services by name through the node's cluster DNS, as their resolv.conf says.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	must.Succeed(t, cl.Create(ctx, svc))
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", c.DNSAddr())
	}}
	addrs, err := r.LookupHost(ctx, "web.work.svc.cluster.local")
	if err != nil || len(addrs) != 1 || addrs[0] != svc.Spec.ClusterIP {
		t.Errorf("web.work.svc.cluster.local = %v (%v), want the ClusterIP %s", addrs, err, svc.Spec.ClusterIP)
	}
	if addrs, err := r.LookupHost(ctx, "absent.work.svc.cluster.local"); err == nil {
		t.Errorf("absent.work.svc.cluster.local = %v, want not found", addrs)
	}
}

func restrictedPod(ns, name string, env []corev1.EnvVar) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), FSGroup: ptr.To[int64](999),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name: "pause", Image: node.PauseImage, ImagePullPolicy: corev1.PullNever, Env: env,
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					RunAsNonRoot: ptr.To(true), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "creds", MountPath: "/creds", ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: "creds", DefaultMode: ptr.To[int32](0o440), Items: []corev1.KeyToPath{{Key: "tls.crt", Path: "tls.crt"}}}}}},
		},
	}
}

func waitReady(t *testing.T, c *node.Cluster, ns, name string, timeout time.Duration) {
	t.Helper()
	poll.Until(t, timeout, "pod "+ns+"/"+name+" Ready", func(ctx context.Context) (bool, error) {
		p := &corev1.Pod{}
		if err := c.API.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, p); err != nil {
			return false, err
		}
		ready, why := node.PodReady(p)
		if !ready {
			return false, fmt.Errorf("%s", why)
		}
		return true, nil
	})
}
