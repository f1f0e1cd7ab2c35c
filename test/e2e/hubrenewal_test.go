package e2e

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/clustersecret"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/argocd"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/e2e/harness"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// The certificates the manager keeps on the hub are renewed before they expire, with short
// lifetimes here: the principal's and the resource proxy's server certificates (which roll the
// principal: v0.9.0 reads them at start-up only) and the Argo CD cluster secret's client
// certificate. Through it all the agent is never restarted and is disconnected only while the
// principal rolls and it reconnects once, and Argo CD's view through the resource proxy works
// with the renewed cluster secret.
func TestHubCertificatesRenewed(t *testing.T) {
	const cluster = "hubrenew"
	const lifetime = 2 * time.Minute // server certificates renewed at 80 %, cluster secrets at two thirds
	ctx, e := start(t, harness.Options{Clusters: []string{cluster}, ServerCertLifetime: lifetime, ClusterSecretCertLifetime: lifetime})
	a := enrolAll(t, ctx, e, []string{cluster})[cluster]
	tracked := trackedConfigMap(t, ctx, e, cluster)

	type watched struct {
		name    string
		read    func(context.Context) (*x509.Certificate, error)
		first   *x509.Certificate
		renewed time.Time
	}
	serverCert := func(name string) func(context.Context) (*x509.Certificate, error) {
		return func(ctx context.Context) (*x509.Certificate, error) {
			s := &corev1.Secret{}
			if err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: harness.ArgoCDNamespace, Name: name}, s); err != nil {
				return nil, err
			}
			return parseCert(t, s.Data[corev1.TLSCertKey]), nil
		}
	}
	certs := []*watched{
		{name: argocd.PrincipalTLSSecret, read: serverCert(argocd.PrincipalTLSSecret)},
		{name: argocd.ResourceProxyTLSSecret, read: serverCert(argocd.ResourceProxyTLSSecret)},
		{name: clustersecret.Name(cluster), read: func(ctx context.Context) (*x509.Certificate, error) {
			s := &corev1.Secret{}
			if err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: harness.ArgoCDNamespace, Name: clustersecret.Name(cluster)}, s); err != nil {
				return nil, err
			}
			creds, ok := clustersecret.CredentialsOf(s)
			if !ok {
				return nil, fmt.Errorf("cluster secret %s has no client certificate", s.Name)
			}
			return parseCert(t, creds.CertPEM), nil
		}},
	}
	principalPods := len(e.Principal.LogFiles())
	restarts := a.ContainerRestarts()
	for _, c := range certs {
		poll.Until(t, time.Minute, c.name+" issued", func(ctx context.Context) (bool, error) {
			var err error
			c.first, err = c.read(ctx)
			return err == nil, client.IgnoreNotFound(err)
		})
		t.Logf("%s: serial %s, valid %s to %s", c.name, c.first.SerialNumber, c.first.NotBefore.Format(time.TimeOnly), c.first.NotAfter.Format(time.TimeOnly))
	}
	resourceProxyGet(t, ctx, e, cluster, tracked)

	// Each certificate is replaced before it expires; meanwhile, how long at most is the agent
	// missing from the principal?
	var down, longest time.Duration
	var last time.Time
	connected := func(ctx context.Context) bool {
		now := time.Now()
		names, err := e.Principal.ConnectedAgents(ctx)
		ok := err == nil && slices.Contains(names, cluster)
		if !last.IsZero() && !ok {
			down += now.Sub(last)
			longest = max(longest, down)
		} else if ok {
			down = 0
		}
		last = now
		return ok
	}
	poll.Until(t, 2*lifetime, "every hub certificate renewed, and the principal rolled", func(ctx context.Context) (bool, error) {
		now := time.Now()
		done := connected(ctx) && len(e.Principal.LogFiles()) > principalPods
		for _, c := range certs {
			if !c.renewed.IsZero() {
				continue
			}
			cert, err := c.read(ctx)
			if err != nil {
				return false, client.IgnoreNotFound(err)
			}
			if cert.SerialNumber.Cmp(c.first.SerialNumber) == 0 {
				done = false
				continue
			}
			c.renewed = now
			t.Logf("%s renewed at %s, %s before the old one expired (new: valid to %s)", c.name, now.Format(time.TimeOnly),
				c.first.NotAfter.Sub(now).Round(time.Second), cert.NotAfter.Format(time.TimeOnly))
			if !now.Before(c.first.NotAfter) {
				t.Errorf("%s renewed only after the old certificate expired at %s", c.name, c.first.NotAfter)
			}
		}
		return done, nil
	})
	// The roll is over (one principal pod, Ready) and the agent connected to the new pod.
	must.Succeed(t, e.Principal.WaitReady(ctx, 2*time.Minute))
	poll.Until(t, 2*time.Minute, "the agent connected to the rolled principal", func(ctx context.Context) (bool, error) {
		return connected(ctx), nil
	})
	rolls := len(e.Principal.LogFiles()) - principalPods
	t.Logf("principal rolled %d times; the agent was missing from it for at most %s at a time", rolls, longest.Round(100*time.Millisecond))
	if rolls < 1 {
		t.Errorf("the principal was not rolled onto its renewed server certificates")
	}
	if n := a.ContainerRestarts() - restarts; n != 0 {
		t.Errorf("the agent's container restarted %d times: it should reconnect by itself", n)
	}
	// One reconnect: the new principal pod's start plus the agent's first retry, not a
	// backoff that grew over many failures (argocd-agent's grows to minutes).
	if limit := time.Minute; longest > limit {
		t.Errorf("the agent was missing from the principal for %s, more than one reconnect (%s)", longest, limit)
	}
	waitAvailable(t, e, cluster, metav1.ConditionTrue)
	// Argo CD's view works with the renewed cluster secret, through the restarted proxy.
	resourceProxyGet(t, ctx, e, cluster, tracked)
}

// trackedConfigMap creates, in the agent's namespace on the spoke, a ConfigMap with Argo CD's
// tracking annotation, as Argo CD's application controller deploys it: the agent's resource
// proxy serves only objects an Application manages.
func trackedConfigMap(t *testing.T, ctx context.Context, e *harness.Env, cluster string) *corev1.ConfigMap {
	t.Helper()
	return createTracked(t, ctx, e, cluster, identity.DefaultInstallNamespace)
}

func createTracked(t *testing.T, ctx context.Context, e *harness.Env, cluster, namespace string) *corev1.ConfigMap {
	t.Helper()
	spoke := e.Spokes[cluster].API.Client
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "guestbook-ui",
		Annotations: map[string]string{"argocd.argoproj.io/tracking-id": "guestbook:/ConfigMap:" + namespace + "/guestbook-ui"}},
		Data: map[string]string{"color": "blue"}}
	if err := spoke.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	must.Succeed(t, spoke.Create(ctx, cm))
	return cm
}

// resourceProxyClient is what Argo CD on the hub makes of cluster's Argo CD cluster secret:
// nothing but its server URL and tlsClientConfig.
func resourceProxyClient(t *testing.T, ctx context.Context, e *harness.Env, cluster string) kubernetes.Interface {
	t.Helper()
	return resourceProxyClientOf(t, ctx, e, cluster, harness.ArgoCDNamespace, e.ResourceProxyAddr())
}

// resourceProxyClientOf is that for the Argo CD of namespace, whose principal's resource proxy
// the host reaches at address.
func resourceProxyClientOf(t *testing.T, ctx context.Context, e *harness.Env, cluster, namespace, address string) kubernetes.Interface {
	t.Helper()
	secret := &corev1.Secret{}
	poll.Until(t, 60*time.Second, cluster+"'s Argo CD cluster secret in "+namespace, func(ctx context.Context) (bool, error) {
		err := e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: clustersecret.Name(cluster)}, secret)
		return err == nil, client.IgnoreNotFound(err)
	})
	cfg, err := argocd.ClusterRESTConfig(secret)
	must.Succeed(t, err)
	if want := "https://" + address + "?agentName=" + cluster; cfg.Host != want {
		t.Fatalf("server %q, want %q", cfg.Host, want)
	}
	live, err := kubernetes.NewForConfig(cfg)
	must.Succeed(t, err)
	return live
}

// resourceProxyGet reads want through the principal's resource proxy with cluster's secret as
// it is now, and checks it is the spoke's object.
func resourceProxyGet(t *testing.T, ctx context.Context, e *harness.Env, cluster string, want *corev1.ConfigMap) {
	t.Helper()
	resourceProxyGetVia(t, resourceProxyClient(t, ctx, e, cluster), cluster, want)
}

// resourceProxyGetVia reads want through live, a client of a resource proxy, and checks it is
// the spoke's object.
func resourceProxyGetVia(t *testing.T, live kubernetes.Interface, cluster string, want *corev1.ConfigMap) {
	t.Helper()
	var got *corev1.ConfigMap
	poll.Until(t, 60*time.Second, cluster+": "+want.Namespace+"/"+want.Name+" read through the resource proxy", func(ctx context.Context) (bool, error) {
		var err error
		got, err = live.CoreV1().ConfigMaps(want.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
		if err != nil {
			t.Logf("not yet: %v", err)
		}
		return err == nil, nil
	})
	if got.UID != want.UID || got.Data["color"] != want.Data["color"] {
		t.Errorf("read through the resource proxy: uid %s data %v; on the spoke: uid %s data %v", got.UID, got.Data, want.UID, want.Data)
	}
}
