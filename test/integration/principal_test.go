package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/addon"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/principal"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// TestPrincipalDiscovery: a cluster whose config names no principal gets nothing and a
// condition saying why until the principal's Service has a load balancer address; then it gets
// that address and port, follows the Service when its address changes, and an address in the
// config wins over it.
func TestPrincipalDiscovery(t *testing.T) {
	const cluster = "discover"
	joinCluster(t, cluster, hubfixture.NewADC(cluster))
	principalCondition := func(ctx context.Context) (*metav1.Condition, error) {
		return addonCondition(ctx, cluster, addon.ConditionPrincipalAddress)
	}
	poll.Until(t, 30*time.Second, "PrincipalAddress=False: no Service yet", func(ctx context.Context) (bool, error) {
		c, err := principalCondition(ctx)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == addon.ReasonNoPrincipalAddress &&
			strings.Contains(c.Message, "argocd/argocd-agent-principal not found"), err
	})
	if c, err := addonCondition(context.Background(), cluster, addon.ConditionAgentConfigValid); err != nil || c == nil ||
		c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "customizedVariables[principalAddress]") {
		t.Fatalf("AgentConfigValid %+v (%v), want False naming customizedVariables[principalAddress]", c, err)
	}
	if mw, _, err := workObjects(context.Background(), cluster); err != nil || mw != nil {
		t.Fatalf("a ManifestWork (%v) without a principal address: %v", mw != nil, err)
	}

	ctx := context.Background()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: principal.DefaultService.Namespace, Name: principal.DefaultService.Name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app.kubernetes.io/name": "argocd-agent-principal"},
			Ports: []corev1.ServicePort{{Name: "metrics", Port: 8000}, {Name: "https", Port: 8443, TargetPort: intstr.FromInt32(8443)}}},
	}
	must.Succeed(t, env.Client.Create(ctx, svc))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), svc) })
	poll.Until(t, 30*time.Second, "still no address: the Service has no load balancer address yet", func(ctx context.Context) (bool, error) {
		c, err := principalCondition(ctx)
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "no load balancer address"), err
	})
	setIngress := func(ing corev1.LoadBalancerIngress) {
		t.Helper()
		must.Succeed(t, env.Client.Get(ctx, client.ObjectKeyFromObject(svc), svc))
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{ing}
		must.Succeed(t, env.Client.Status().Update(ctx, svc))
	}
	delivers := func(what, address, port, reason string) {
		t.Helper()
		poll.Until(t, 30*time.Second, what, func(ctx context.Context) (bool, error) {
			_, objs, err := workObjects(ctx, cluster)
			if err != nil || objs == nil {
				return false, err
			}
			p := paramsOf(objs)
			c, err := principalCondition(ctx)
			return p["agent.server.address"] == address && p["agent.server.port"] == port &&
				c != nil && c.Status == metav1.ConditionTrue && c.Reason == reason && strings.HasPrefix(c.Message, address), err
		})
	}
	setIngress(corev1.LoadBalancerIngress{IP: "203.0.113.10"})
	delivers("the Service's address and https port delivered", "203.0.113.10", "8443", principal.SourceService)
	if c, _ := principalCondition(ctx); !strings.Contains(c.Message, "Service argocd/argocd-agent-principal status.loadBalancer.ingress[0]") {
		t.Errorf("PrincipalAddress message %q does not say where the address came from", c.Message)
	}
	setIngress(corev1.LoadBalancerIngress{Hostname: "lb.example.com"})
	delivers("the Service's new address delivered", "lb.example.com", "8443", principal.SourceService)
	setVariable(t, cluster, "principalPort", "9443")
	delivers("an explicit port wins over the Service's", "lb.example.com", "9443", principal.SourceService)
	setVariable(t, cluster, "principalAddress", "principal.example.com")
	delivers("an explicit address wins over the Service", "principal.example.com", "9443", principal.SourceConfig)
}
