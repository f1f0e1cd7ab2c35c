package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/clustersecret"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/revoke"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/metrictext"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// clusterSetLabel is OCM's ManagedClusterSet label, which a cluster secret gets by default.
const clusterSetLabel = clusterv1beta2.ClusterSetLabel

// clusterSecret reads cluster's Argo CD cluster secret; nil if there is none.
func clusterSecret(ctx context.Context, cluster string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := env.Client.Get(ctx, types.NamespacedName{Namespace: caNamespace, Name: clustersecret.Name(cluster)}, s)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return s, err
}

// tlsConfigOf decodes the secret's config the way Argo CD does (its JSON names).
func tlsConfigOf(t *testing.T, s *corev1.Secret) (cert, key, ca []byte) {
	t.Helper()
	var cfg struct {
		TLSClientConfig struct {
			Insecure *bool  `json:"insecure"`
			CertData []byte `json:"certData"`
			KeyData  []byte `json:"keyData"`
			CAData   []byte `json:"caData"`
		} `json:"tlsClientConfig"`
	}
	must.Succeed(t, json.Unmarshal(s.Data["config"], &cfg))
	if c := cfg.TLSClientConfig; c.Insecure == nil || *c.Insecure {
		t.Fatalf("tlsClientConfig.insecure = %v, want false written out, as upstream does", c.Insecure)
	}
	return cfg.TLSClientConfig.CertData, cfg.TLSClientConfig.KeyData, cfg.TLSClientConfig.CAData
}

func waitForClusterSecret(t *testing.T, cluster, what string, ok func(*corev1.Secret) bool) *corev1.Secret {
	t.Helper()
	var s *corev1.Secret
	poll.Until(t, 30*time.Second, what, func(ctx context.Context) (bool, error) {
		var err error
		s, err = clusterSecret(ctx, cluster)
		// Not on an error: the secret is then empty, not read.
		return err == nil && s != nil && ok(s), err
	})
	return s
}

func waitForNoClusterSecret(t *testing.T, cluster, what string) {
	t.Helper()
	poll.Until(t, 30*time.Second, what, func(ctx context.Context) (bool, error) {
		s, err := clusterSecret(ctx, cluster)
		return s == nil, err
	})
}

// clusterSecretReconciles is how often the cluster secret controller has reconciled.
func clusterSecretReconciles(t *testing.T) float64 {
	t.Helper()
	body := scrapeMetrics(t)
	var n float64
	for _, result := range []string{"success", "requeue", "requeue_after"} {
		v, _, err := metrictext.Value(body, "controller_runtime_reconcile_total", map[string]string{"controller": "cluster-secret", "result": result})
		must.Succeed(t, err)
		n += v
	}
	return n
}

// secretWriteRequests is the number of requests other than reads the API server has served on
// secrets, from its apiserver_request_total metric.
func secretWriteRequests(t *testing.T) float64 {
	t.Helper()
	cs, err := kubernetes.NewForConfig(env.Config)
	must.Succeed(t, err)
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	must.Succeed(t, err)
	samples, err := metrictext.Samples(string(raw), "apiserver_request_total")
	must.Succeed(t, err)
	var n float64
	for _, m := range samples {
		if v := m.Labels["verb"]; m.Labels["resource"] == "secrets" && v != "GET" && v != "LIST" && v != "WATCH" {
			n += m.Value
		}
	}
	return n
}

func clusterSecretWrites(t *testing.T) float64 {
	t.Helper()
	body := scrapeMetrics(t)
	var n float64
	for _, reason := range []string{clustersecret.ReasonIssued, clustersecret.ReasonUpdated, "Deleted"} {
		v, _, err := metrictext.Value(body, "argocd_agent_addon_cluster_secret_writes_total", map[string]string{"reason": reason})
		must.Succeed(t, err)
		n += v
	}
	return n
}

// TestClusterSecret: a cluster with the add-on gets an Argo CD cluster secret in upstream's
// format whose certificate the resource proxy accepts (signed by the CA, CN = the cluster); the
// secret follows the ManagedCluster's labels the hub allows (by default the ManagedClusterSet
// label and name) without ever taking reserved ones or a label the cluster made up, is not
// written when nothing changed, and goes when the add-on leaves the cluster.
func TestClusterSecret(t *testing.T) {
	ctx := context.Background()
	const cluster = "argo-live"
	joinCluster(t, cluster, hubfixture.NewADC(cluster, "principalAddress", "principal.example.com"))
	setClusterLabels(t, cluster, map[string]string{clusterSetLabel: "set-a", "name": cluster, "env": "dev",
		clustersecret.SecretTypeLabel: "repository", clustersecret.AgentNameLabel: "other"})

	s := waitForClusterSecret(t, cluster, "cluster secret with the cluster set label", func(s *corev1.Secret) bool { return s.Labels[clusterSetLabel] == "set-a" })
	if s.Labels["name"] != cluster {
		t.Errorf("label name=%q, want the cluster's name %q (labels %v)", s.Labels["name"], cluster, s.Labels)
	}
	if v, ok := s.Labels["env"]; ok {
		t.Errorf("the cluster's own label env=%q was copied: only the labels the hub allows (--cluster-secret-labels) may be", v)
	}
	for k, v := range map[string]string{clustersecret.SecretTypeLabel: "cluster", clustersecret.AgentNameLabel: cluster, clustersecret.ManagedLabel: "true"} {
		if s.Labels[k] != v {
			t.Errorf("label %s=%q, want %q (labels %v)", k, s.Labels[k], v, s.Labels)
		}
	}
	for k, v := range map[string]string{"argocd.argoproj.io/skip-reconcile": "true", "managed-by": "argocd-agent"} {
		if s.Annotations[k] != v {
			t.Errorf("annotation %s=%q, want %q", k, s.Annotations[k], v)
		}
	}
	if got, want := string(s.Data["server"]), "https://argocd-agent-resource-proxy:9090?agentName="+cluster; got != want {
		t.Errorf("server %q, want %q", got, want)
	}
	if string(s.Data["name"]) != cluster {
		t.Errorf("name %q, want %q", s.Data["name"], cluster)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "ClusterManagementAddOn" || s.OwnerReferences[0].Name != identity.AddonName {
		t.Errorf("owner references %+v, want the ClusterManagementAddOn, so that uninstalling removes the secret", s.OwnerReferences)
	}
	certPEM, keyPEM, caData := tlsConfigOf(t, s)
	ca := currentCA(t)
	if !bytes.Equal(caData, ca.BundlePEM()) {
		t.Errorf("caData is not the CA bundle")
	}
	cert, err := ca.Verify(certPEM, time.Now())
	if err != nil {
		t.Fatalf("certData is not a client certificate of the CA: %v", err)
	}
	if cert.Subject.CommonName != cluster {
		t.Errorf("certificate CN %q, want %q: the resource proxy names the agent by it", cert.Subject.CommonName, cluster)
	}
	if _, err := clustersecret.Check(ca, cluster, clustersecret.Credentials{CertPEM: certPEM, KeyPEM: keyPEM}, time.Now()); err != nil {
		t.Errorf("credentials: %v", err)
	}

	// Steady state: reconciles for every cluster (the CA secret and the ClusterManagementAddOn
	// changing in ways that do not matter) write nothing.
	writes, reconciles, apiWrites := clusterSecretWrites(t), clusterSecretReconciles(t), secretWriteRequests(t)
	touch(t, caSecret(), "steady-state-check") // the one secret write of this window
	touch(t, &addonv1beta1.ClusterManagementAddOn{ObjectMeta: metav1.ObjectMeta{Name: identity.AddonName}}, "steady-state-check")
	poll.Until(t, 30*time.Second, "the controller reconciled again", func(context.Context) (bool, error) {
		return clusterSecretReconciles(t) >= reconciles+2, nil
	})
	time.Sleep(time.Second) // let any write the reconciles made reach the cache
	after, err := clusterSecret(ctx, cluster)
	must.Succeed(t, err)
	if after.ResourceVersion != s.ResourceVersion {
		t.Errorf("the cluster secret was written in steady state: resourceVersion %s -> %s", s.ResourceVersion, after.ResourceVersion)
	}
	if w := clusterSecretWrites(t); w != writes {
		t.Errorf("%v cluster secret writes in steady state, want 0", w-writes)
	}
	// What the API server saw, no-op applies included (they change no resourceVersion).
	steadyWrites := secretWriteRequests(t) - apiWrites - 1
	if steadyWrites != 0 {
		t.Errorf("the API server served %v secret write requests in steady state besides the test's own, want 0", steadyWrites)
	}
	t.Logf("steady state: %v reconciles, %v secret writes", clusterSecretReconciles(t)-reconciles, steadyWrites)

	// Labels follow the ManagedCluster; the certificate stays.
	setClusterLabels(t, cluster, map[string]string{clusterSetLabel: "set-b"})
	s = waitForClusterSecret(t, cluster, "cluster set label set-b", func(s *corev1.Secret) bool { return s.Labels[clusterSetLabel] == "set-b" })
	if newCert, _, _ := tlsConfigOf(t, s); !bytes.Equal(newCert, certPEM) {
		t.Errorf("a label change re-issued the certificate")
	}
	if s.Labels[clustersecret.SecretTypeLabel] != "cluster" || s.Labels[clustersecret.AgentNameLabel] != cluster {
		t.Errorf("reserved labels taken from the ManagedCluster: %v", s.Labels)
	}

	// The attack: the cluster (which may update its own ManagedCluster) labels itself env=prod
	// for an ApplicationSet that selects production clusters, and claims another cluster's name.
	// Neither reaches its secret; the name it gave up goes (which shows the controller saw it).
	setClusterLabels(t, cluster, map[string]string{"env": "prod", "name": "argo-other"})
	s = waitForClusterSecret(t, cluster, "name label gone after the cluster claimed another's name", func(s *corev1.Secret) bool {
		_, ok := s.Labels["name"]
		return !ok
	})
	if v, ok := s.Labels["env"]; ok {
		t.Errorf("the cluster's label env=%q reached its cluster secret: a cluster would choose what ApplicationSets give it", v)
	}
	setClusterLabels(t, cluster, map[string]string{"name": cluster})
	waitForClusterSecret(t, cluster, "name label back", func(s *corev1.Secret) bool { return s.Labels["name"] == cluster })

	// The add-on leaves the cluster: the secret goes.
	must.Succeed(t, env.Client.Delete(ctx, &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: cluster, Name: identity.AddonName}}))
	waitForNoClusterSecret(t, cluster, "cluster secret deleted after the add-on left")
}

// TestClusterSecretLeavesAdminLabels: labels and annotations a hub admin put on a cluster secret
// by hand, with kubectl label/annotate (update) or kubectl apply --server-side (another field
// manager), stay as the admin set them when the controller reconciles, also a label of the same
// key as a copied ManagedCluster label: the controller's forced apply takes none of them over.
// When the admin removes that label, the cluster's comes back.
func TestClusterSecretLeavesAdminLabels(t *testing.T) {
	ctx := context.Background()
	const cluster = "argo-admin"
	joinCluster(t, cluster, hubfixture.NewADC(cluster, "principalAddress", "principal.example.com"))
	setClusterLabels(t, cluster, map[string]string{clusterSetLabel: "set-a", "name": cluster})
	s := waitForClusterSecret(t, cluster, "cluster secret with the cluster set label", func(s *corev1.Secret) bool {
		return s.Labels[clusterSetLabel] == "set-a" && s.Labels["name"] == cluster
	})

	// kubectl label --overwrite / kubectl annotate: a patch, field manager kubectl-label. The
	// admin pins the cluster set label the add-on copies.
	patch := fmt.Sprintf(`{"metadata":{"labels":{"team":"platform",%q:"pinned"},"annotations":{"example.com/note":"hands off"}}}`, clusterSetLabel)
	must.Succeed(t, env.Client.Patch(ctx, s, client.RawPatch(types.MergePatchType, []byte(patch)), client.FieldOwner("kubectl-label")))
	// kubectl apply --server-side: field manager kubectl.
	must.Succeed(t, env.Client.Apply(ctx, corev1ac.Secret(s.Name, s.Namespace).
		WithLabels(map[string]string{"example.com/tier": "gold"}).
		WithAnnotations(map[string]string{"example.com/owner": "team-a"}), client.FieldOwner("kubectl")))
	wantLabels := map[string]string{"team": "platform", clusterSetLabel: "pinned", "example.com/tier": "gold"}
	wantAnnotations := map[string]string{"example.com/note": "hands off", "example.com/owner": "team-a"}
	check := func(when string, s *corev1.Secret) {
		t.Helper()
		for k, v := range wantLabels {
			if s.Labels[k] != v {
				t.Errorf("%s: the admin's label %s=%q is now %q (labels %v)", when, k, v, s.Labels[k], s.Labels)
			}
		}
		for k, v := range wantAnnotations {
			if s.Annotations[k] != v {
				t.Errorf("%s: the admin's annotation %s=%q is now %q", when, k, v, s.Annotations[k])
			}
		}
		owned, err := corev1ac.ExtractSecret(s, clustersecret.FieldManager)
		must.Succeed(t, err)
		for k := range wantLabels {
			if _, ok := owned.Labels[k]; ok {
				t.Errorf("%s: the add-on took over the admin's label %s", when, k)
			}
		}
		for k := range wantAnnotations {
			if _, ok := owned.Annotations[k]; ok {
				t.Errorf("%s: the add-on took over the admin's annotation %s", when, k)
			}
		}
	}

	// The cluster's labels change: the cluster set label (which the admin's pin must win over)
	// and name, whose removal from the secret shows the controller reconciled.
	setClusterLabels(t, cluster, map[string]string{clusterSetLabel: "set-b", "name": "not-" + cluster})
	s = waitForClusterSecret(t, cluster, "name label gone", func(s *corev1.Secret) bool {
		_, ok := s.Labels["name"]
		return !ok
	})
	check("after the cluster's label change", s)
	setClusterLabels(t, cluster, map[string]string{"name": cluster})
	s = waitForClusterSecret(t, cluster, "name label back", func(s *corev1.Secret) bool { return s.Labels["name"] == cluster })
	check("after a second reconcile", s)
	for k, v := range map[string]string{clustersecret.SecretTypeLabel: "cluster", clustersecret.AgentNameLabel: cluster, clustersecret.ManagedLabel: "true"} {
		if s.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, s.Labels[k], v)
		}
	}

	// No write loop over the admin's labels: reconciles of every cluster write nothing.
	reconciles := clusterSecretReconciles(t)
	touch(t, &addonv1beta1.ClusterManagementAddOn{ObjectMeta: metav1.ObjectMeta{Name: identity.AddonName}}, "admin-labels-check")
	poll.Until(t, 30*time.Second, "the controller reconciled again", func(context.Context) (bool, error) {
		return clusterSecretReconciles(t) >= reconciles+1, nil
	})
	time.Sleep(time.Second)
	after, err := clusterSecret(ctx, cluster)
	must.Succeed(t, err)
	if after.ResourceVersion != s.ResourceVersion {
		t.Errorf("the cluster secret was written with nothing changed: resourceVersion %s -> %s", s.ResourceVersion, after.ResourceVersion)
	}

	// The admin removes the pin: the cluster's label is copied again.
	unpin := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, clusterSetLabel)
	must.Succeed(t, env.Client.Patch(ctx, after, client.RawPatch(types.MergePatchType, []byte(unpin)), client.FieldOwner("kubectl-label")))
	delete(wantLabels, clusterSetLabel)
	s = waitForClusterSecret(t, cluster, "the cluster's set label back after the admin removed the pin", func(s *corev1.Secret) bool {
		return s.Labels[clusterSetLabel] == "set-b"
	})
	check("after the admin removed the pin", s)
}

// TestClusterSecretAdoptRenewRevoke: a secret argocd-agentctl made is adopted without replacing
// its valid certificate or dropping its own labels; the certificate is renewed before it
// expires; revoke deletes the secret; a secret of that name that is no agent's is left alone.
func TestClusterSecretAdoptRenewRevoke(t *testing.T) {
	ctx := context.Background()
	const cluster = "argo-adopt"
	ca := currentCA(t)
	// As `argocd-agentctl agent create -l team=a` writes it: RSA PKCS#1 key. Issued so that
	// two thirds of its life from issue (renewal) are reached in 30 s, expiry 15 s later.
	now := time.Now()
	lifetime := 45 * time.Second
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	must.Succeed(t, err)
	certPEM, err := ca.Sign(&x509.CertificateRequest{Subject: pkix.Name{CommonName: cluster, Organization: []string{"DO NOT USE IN PRODUCTION"}}, PublicKey: key.Public()}, lifetime, now)
	must.Succeed(t, err)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	renewAt, err := clustersecret.Check(ca, cluster, clustersecret.Credentials{CertPEM: certPEM, KeyPEM: keyPEM}, now)
	must.Succeed(t, err)
	cert, err := ca.Verify(certPEM, now)
	must.Succeed(t, err)
	t.Logf("agentctl certificate renewal due at +%s, expires at +%s", renewAt.Sub(now).Round(time.Second), cert.NotAfter.Sub(now).Round(time.Second))
	config, err := json.Marshal(map[string]any{"tlsClientConfig": map[string]any{"insecure": false, "certData": certPEM, "keyData": keyPEM, "caData": ca.BundlePEM()}})
	must.Succeed(t, err)
	made := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: caNamespace, Name: clustersecret.Name(cluster),
			Labels:      map[string]string{"team": "a", clustersecret.AgentNameLabel: cluster, clustersecret.SecretTypeLabel: "cluster"},
			Annotations: map[string]string{"argocd.argoproj.io/skip-reconcile": "true", "managed-by": "argocd-agent"}},
		Data: map[string][]byte{"name": []byte(cluster), "server": []byte("https://argocd-agent-resource-proxy:9090?agentName=" + cluster), "config": config},
	}
	must.Succeed(t, env.Client.Create(ctx, made, client.FieldOwner("argocd-agentctl")))

	// A secret named like the cluster secret of another cluster, but no agent's.
	const foreignCluster = "argo-foreign"
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: caNamespace, Name: clustersecret.Name(foreignCluster)}, Data: map[string][]byte{"x": []byte("y")}}
	must.Succeed(t, env.Client.Create(ctx, foreign))

	joinCluster(t, cluster, hubfixture.NewADC(cluster, "principalAddress", "principal.example.com"))
	joinCluster(t, foreignCluster, hubfixture.NewADC(foreignCluster, "principalAddress", "principal.example.com"))
	s := waitForClusterSecret(t, cluster, "adopted", func(s *corev1.Secret) bool { return s.Labels[clustersecret.ManagedLabel] == "true" })
	if got, _, _ := tlsConfigOf(t, s); !bytes.Equal(got, certPEM) {
		t.Fatalf("adoption replaced a valid certificate")
	}
	if s.Labels["team"] != "a" {
		t.Errorf("adoption dropped argocd-agentctl's label team=a: %v", s.Labels)
	}
	if time.Now().After(renewAt) {
		t.Fatalf("adopted only after the renewal was due; the test's timing does not hold")
	}

	s = waitForClusterSecret(t, cluster, "renewed certificate", func(s *corev1.Secret) bool {
		got, _, _ := tlsConfigOf(t, s)
		return !bytes.Equal(got, certPEM)
	})
	renewedAt := time.Now()
	if renewedAt.Before(renewAt) || !renewedAt.Before(cert.NotAfter) {
		t.Errorf("renewed at %s, want between the renewal time %s and expiry %s", renewedAt, renewAt, cert.NotAfter)
	}
	newCert, newKey, _ := tlsConfigOf(t, s)
	if _, err := clustersecret.Check(ca, cluster, clustersecret.Credentials{CertPEM: newCert, KeyPEM: newKey}, time.Now()); err != nil {
		t.Errorf("renewed credentials: %v", err)
	}
	t.Logf("renewed %s after the renewal time, %s before expiry", renewedAt.Sub(renewAt).Round(time.Millisecond), cert.NotAfter.Sub(renewedAt).Round(time.Second))

	// The foreign secret is untouched.
	got := &corev1.Secret{}
	must.Succeed(t, env.Client.Get(ctx, client.ObjectKeyFromObject(foreign), got))
	if got.ResourceVersion != foreign.ResourceVersion || len(got.Labels) > 0 {
		t.Errorf("a secret that is no agent's was changed: labels %v", got.Labels)
	}

	// revoke: the secret goes and does not come back.
	o := &revoke.Options{RestConfig: env.Config, Reason: "test", PrincipalNamespace: caNamespace, Namespace: hubfixture.LeaderNamespace}
	must.Succeed(t, o.Revoke(ctx, cluster, &bytes.Buffer{}))
	waitForNoClusterSecret(t, cluster, "cluster secret deleted on revoke")
	time.Sleep(2 * time.Second)
	if s, err := clusterSecret(ctx, cluster); err != nil || s != nil {
		t.Errorf("the cluster secret came back after revoke (%v)", err)
	}
	must.Succeed(t, o.Unrevoke(ctx, cluster, &bytes.Buffer{}))
	waitForClusterSecret(t, cluster, "cluster secret back after unrevoke", func(*corev1.Secret) bool { return true })
}

func setClusterLabels(t *testing.T, cluster string, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	mc := &clusterv1.ManagedCluster{}
	must.Succeed(t, env.Client.Get(ctx, types.NamespacedName{Name: cluster}, mc))
	patch := client.MergeFrom(mc.DeepCopy())
	if mc.Labels == nil {
		mc.Labels = map[string]string{}
	}
	for k, v := range labels {
		mc.Labels[k] = v
	}
	must.Succeed(t, env.Client.Patch(ctx, mc, patch))
}

// touch sets an annotation on obj that nothing reads, to make its watchers reconcile.
func touch(t *testing.T, obj client.Object, key string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{"test.argocd-agent-addon/%s":%q}}}`, strings.ToLower(key), time.Now().Format(time.RFC3339Nano))
	must.Succeed(t, env.Client.Patch(context.Background(), obj, client.RawPatch(types.MergePatchType, []byte(patch))))
}
