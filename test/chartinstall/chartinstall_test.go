// Package chartinstall installs the rendered Helm chart into a real API server and runs the
// manager with the chart's ServiceAccount identity (impersonation), with the arguments the
// chart's Deployment gives it: the RBAC the chart grants must be enough to deliver manifests,
// approve and sign, and must refuse everything the manager has no business doing.
package chartinstall

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentversion"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/clustersecret"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/manager"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/chart"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/hubfixture"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/ocmcsr"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testenv"
)

const releaseNamespace = "open-cluster-management-addon"

func TestChartRBACRunsTheManager(t *testing.T) {
	env, c, inst := installChart(t, map[string]string{"agent.principal.address": "principal.example.com"})
	ctx := context.Background()
	podSpec, saUser, asSA, metricsReader := inst.podSpec, inst.saUser, inst.asSA, inst.metricsReader

	caCert, caKey, err := testca.New("argocd-agent-ca", 365*24*time.Hour)
	must.Succeed(t, err)
	must.Succeed(t, c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "argocd", Name: "argocd-agent-ca"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: caCert, corev1.TLSPrivateKeyKey: caKey},
	}))
	// A secret the manager must not be able to read, next to the CA.
	must.Succeed(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "argocd", Name: "argocd-secret"}}))
	metricsAddr := runManager(t, inst)

	// The rendered CMA is v1alpha1 (what OCM >= 1.0 hubs serve); without OCM's conversion
	// webhook here its default config does not reach v1beta1, so the add-on is pointed at the
	// chart's AddOnDeploymentConfig directly, as OCM's addon-manager would.
	joinCluster(t, c, "c1")

	poll.Until(t, 60*time.Second, "leader lease held by the manager", func(ctx context.Context) (bool, error) {
		leases := &coordinationv1.LeaseList{}
		err := c.List(ctx, leases, client.InNamespace(releaseNamespace))
		return err == nil && len(leases.Items) == 1 && leases.Items[0].Spec.HolderIdentity != nil, err
	})
	poll.Until(t, 60*time.Second, "ManifestWork delivered with the chart's config", func(ctx context.Context) (bool, error) {
		mw := &workv1.ManifestWork{}
		err := c.Get(ctx, types.NamespacedName{Namespace: "c1", Name: "addon-argocd-agent-deploy-0"}, mw)
		if err != nil {
			return false, nil
		}
		for _, m := range mw.Spec.Workload.Manifests {
			if strings.Contains(string(m.Raw), `"agent.server.address":"principal.example.com"`) {
				return true, nil
			}
		}
		return false, nil
	})

	caCerts, err := authority.ParseCertificates(caCert)
	must.Succeed(t, err)
	csr, _, err := ocmcsr.New(ocmcsr.Request{Cluster: "c1", CAID: authority.ID(caCerts[0])})
	must.Succeed(t, err)
	agentCfg, err := env.AddUser(ocmcsr.AgentUsername("c1"), append(ocmcsr.AgentGroupsOf(ocmcsr.AgentUsername("c1")), "system:masters")...)
	must.Succeed(t, err)
	agent, err := client.New(agentCfg, client.Options{Scheme: env.Scheme})
	must.Succeed(t, err)
	must.Succeed(t, agent.Create(ctx, csr))
	poll.Until(t, 60*time.Second, "CSR approved and signed by the chart's identity", func(ctx context.Context) (bool, error) {
		got := &certificatesv1.CertificateSigningRequest{}
		err := c.Get(ctx, types.NamespacedName{Name: csr.Name}, got)
		return err == nil && len(got.Status.Certificate) > 0, err
	})
	poll.Until(t, 60*time.Second, "Argo CD cluster secret of c1 kept by the chart's identity", func(ctx context.Context) (bool, error) {
		s := &corev1.Secret{}
		err := c.Get(ctx, types.NamespacedName{Namespace: "argocd", Name: clustersecret.Name("c1")}, s)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil && s.Labels[clustersecret.ManagedLabel] == "true", err
	})
	// The AgentVersion the agents follow, created by the chart's identity (no principal
	// Deployment here: the default image) and owned by the chart's ClusterManagementAddOn.
	poll.Until(t, 60*time.Second, "AgentVersion argocd-agent created by the chart's identity", func(ctx context.Context) (bool, error) {
		av := &unstructured.Unstructured{}
		av.SetGroupVersionKind(agentversion.GVK)
		err := c.Get(ctx, types.NamespacedName{Namespace: releaseNamespace, Name: agentversion.DefaultName}, av)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		image, _, _ := unstructured.NestedString(av.Object, "spec", "image")
		return err == nil && image != "" && len(av.GetOwnerReferences()) == 1, err
	})
	// The chart's identity keeps the record of what it issued, in the release namespace, and it
	// was there before the certificate reached the CSR.
	record := &corev1.ConfigMap{}
	must.Succeed(t, c.Get(ctx, types.NamespacedName{Namespace: releaseNamespace, Name: issued.RecordName("c1")}, record))
	if rec, err := issued.FromConfigMap(record); err != nil || len(rec.Certificates) != 1 || rec.Certificates[0].CA != authority.ID(caCerts[0]) {
		t.Fatalf("record of c1: %+v, %v; want the one certificate issued", rec, err)
	}
	bad, _, err := ocmcsr.New(ocmcsr.Request{Cluster: "c1", Username: "", Signer: ""})
	must.Succeed(t, err)
	bad.Labels[clusterv1.ClusterNameLabelKey] = "c1"
	mallory, err := env.AddUser("mallory", "system:masters")
	must.Succeed(t, err)
	malloryClient, err := client.New(mallory, client.Options{Scheme: env.Scheme})
	must.Succeed(t, err)
	must.Succeed(t, malloryClient.Create(ctx, bad))
	poll.Until(t, 60*time.Second, "CSR from a non-agent denied by the chart's identity", func(ctx context.Context) (bool, error) {
		got := &certificatesv1.CertificateSigningRequest{}
		err := c.Get(ctx, types.NamespacedName{Name: bad.Name}, got)
		return ocmcsr.Condition(got, certificatesv1.CertificateDenied) != nil, err
	})

	t.Run("admission policy keeps enrolment and revocation labels to the hub", func(t *testing.T) {
		testAdmissionPolicy(t, env, c)
	})

	kube, err := kubernetes.NewForConfig(env.Config)
	must.Succeed(t, err)
	// After the CSRs above, so the add-on's counters have samples to show.
	t.Run("metrics served only to tokens allowed to get /metrics", func(t *testing.T) {
		testSecureMetrics(t, kube, metricsAddr, metricsReader)
	})

	// No broader than needed: what the manager's identity must not do.
	forbidden := []authorizationv1.ResourceAttributes{
		// Secrets: the CA, and (clusterSecrets.enabled) the Argo CD namespace's, which RBAC
		// cannot narrow to the cluster secrets; nothing in any other namespace.
		{Verb: "list", Resource: "secrets"},
		{Verb: "get", Resource: "secrets", Namespace: "kube-system", Name: "argocd-agent-ca"},
		{Verb: "create", Resource: "secrets", Namespace: "kube-system"},
		{Verb: "delete", Resource: "secrets", Namespace: releaseNamespace, Name: "x"},
		{Verb: "update", Resource: "secrets", Namespace: "argocd", Name: "argocd-agent-ca"},
		{Verb: "sign", Group: "certificates.k8s.io", Resource: "signers", Name: "kubernetes.io/kube-apiserver-client"},
		{Verb: "approve", Group: "certificates.k8s.io", Resource: "signers", Name: "kubernetes.io/kube-apiserver-client"},
		{Verb: "approve", Group: "certificates.k8s.io", Resource: "signers", Name: "open-cluster-management.io/other"},
		{Verb: "create", Group: "certificates.k8s.io", Resource: "certificatesigningrequests"},
		{Verb: "delete", Group: "certificates.k8s.io", Resource: "certificatesigningrequests"},
		{Verb: "update", Group: "cluster.open-cluster-management.io", Resource: "managedclusters", Name: "c1"},
		{Verb: "delete", Group: "cluster.open-cluster-management.io", Resource: "managedclusters", Name: "c1"},
		{Verb: "create", Group: "addon.open-cluster-management.io", Resource: "managedclusteraddons", Namespace: "c1"},
		{Verb: "delete", Group: "addon.open-cluster-management.io", Resource: "managedclusteraddons", Namespace: "c1"},
		{Verb: "update", Group: "addon.open-cluster-management.io", Resource: "addondeploymentconfigs", Namespace: releaseNamespace},
		{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"},
		{Verb: "escalate", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"},
		{Verb: "create", Resource: "pods", Namespace: releaseNamespace},
		{Verb: "create", Resource: "serviceaccounts/token", Namespace: releaseNamespace, Name: podSpec.ServiceAccountName},
		{Verb: "impersonate", Resource: "users"},
		{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system"},
		// Its own AgentVersion only; the principal's Deployment is read, never written here.
		{Verb: "update", Group: agentversion.Group, Resource: agentversion.Resource, Namespace: releaseNamespace, Name: "another"},
		{Verb: "create", Group: agentversion.Group, Resource: agentversion.Resource, Namespace: "c1"},
		{Verb: "delete", Group: agentversion.Group, Resource: agentversion.Resource, Namespace: releaseNamespace, Name: agentversion.DefaultName},
		{Verb: "update", Group: "apps", Resource: "deployments", Namespace: "argocd", Name: "argocd-agent-principal"},
		{Verb: "get", Group: "apps", Resource: "deployments", Namespace: "argocd", Name: "argocd-server"},
	}
	for _, attrs := range forbidden {
		sar, err := kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: saUser, Groups: asSA.Impersonate.Groups, ResourceAttributes: &attrs,
		}}, metav1.CreateOptions{})
		must.Succeed(t, err)
		if sar.Status.Allowed {
			t.Errorf("the chart lets the manager %s %s/%s %q in %q", attrs.Verb, attrs.Group, attrs.Resource, attrs.Name, attrs.Namespace)
		}
	}
}

// testSecureMetrics proves the chart's secure metrics endpoint on the real API server: the
// manager, with the chart's identity, has each scraper's bearer token reviewed (TokenReview) and
// its access to get /metrics checked (SubjectAccessReview), and the chart's metrics-reader
// ClusterRole is what a scraper needs.
func testSecureMetrics(t *testing.T, kube kubernetes.Interface, addr, readerRole string) {
	ctx := context.Background()
	url := "https://" + addr + "/metrics"
	// The manager serves a self-signed certificate (no --metrics-cert-dir): this test proves the
	// authentication and authorization, not the certificate, so it does not verify it.
	httpClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer httpClient.CloseIdleConnections()
	get := func(token string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, "", err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	token := func(name string) string {
		t.Helper()
		_, err := kube.CoreV1().ServiceAccounts(releaseNamespace).Create(ctx,
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		must.Succeed(t, err)
		tr, err := kube.CoreV1().ServiceAccounts(releaseNamespace).CreateToken(ctx, name,
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
		must.Succeed(t, err)
		return tr.Status.Token
	}
	stranger, prometheus := token("stranger"), token("prometheus")
	_, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-metrics-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: readerRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "prometheus", Namespace: releaseNamespace}},
	}, metav1.CreateOptions{})
	must.Succeed(t, err)
	// The filter caches a denial for 30 s: ask only once the API server's RBAC has the binding.
	poll.Until(t, 30*time.Second, "the metrics-reader binding in effect", func(ctx context.Context) (bool, error) {
		sar, err := kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:                  "system:serviceaccount:" + releaseNamespace + ":prometheus",
			Groups:                []string{"system:serviceaccounts", "system:serviceaccounts:" + releaseNamespace, "system:authenticated"},
			NonResourceAttributes: &authorizationv1.NonResourceAttributes{Verb: "get", Path: "/metrics"},
		}}, metav1.CreateOptions{})
		return err == nil && sar.Status.Allowed, err
	})

	poll.Until(t, 30*time.Second, "metrics endpoint up, refusing a request without a token (401)", func(context.Context) (bool, error) {
		code, body, err := get("")
		if err == nil && code != http.StatusUnauthorized {
			return false, fmt.Errorf("status %d: %s", code, body)
		}
		return err == nil, err
	})
	// controller-runtime's filter answers 500 ("Authentication failed") when the TokenReview
	// reports an error, as it does for a malformed token: refused all the same.
	if code, body, err := get("not-a-token"); err != nil || (code != http.StatusUnauthorized && code != http.StatusInternalServerError) || strings.Contains(body, "argocd_agent_addon_") {
		t.Errorf("a token the API server did not issue: status %d (%v), want 401 or 500 without metrics: %.300s", code, err, body)
	}
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"a ServiceAccount without the metrics-reader role", stranger, http.StatusForbidden},
		{"a ServiceAccount bound to the metrics-reader role", prometheus, http.StatusOK},
	} {
		code, body, err := get(tc.token)
		if err != nil || code != tc.want {
			t.Errorf("%s: status %d (%v), want %d: %.300s", tc.name, code, err, tc.want, body)
			continue
		}
		if code == http.StatusOK && !strings.Contains(body, "argocd_agent_addon_") {
			t.Errorf("%s: the metrics have no argocd_agent_addon_ series: %.1000s", tc.name, body)
		}
	}
	// No plain HTTP on the port either: Go's TLS server answers it with 400.
	if resp, err := httpClient.Get("http://" + addr + "/metrics"); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP to the secure metrics port: status %d", resp.StatusCode)
		}
	}
}

// testAdmissionPolicy proves the chart's ValidatingAdmissionPolicy on the real API server, as
// each identity that carries a managed cluster's writes (impersonated) and as the hub. Every
// identity also holds system:masters, so RBAC lets everything through and only the policy
// stands in the way (test/e2e runs the same attacks with OCM's real credentials and RBAC).
func testAdmissionPolicy(t *testing.T, env *testenv.Env, admin client.Client) {
	ctx := context.Background()
	as := func(user string, groups ...string) client.Client {
		cfg := rest.CopyConfig(env.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append(groups, "system:masters")}
		cl, err := client.New(cfg, client.Options{Scheme: env.Scheme})
		must.Succeed(t, err)
		return cl
	}
	serviceAccount := func(namespace, name string) client.Client {
		return as("system:serviceaccount:"+namespace+":"+name, "system:serviceaccounts", "system:serviceaccounts:"+namespace)
	}
	registration := as(ocmcsr.AgentUsername("c1"), ocmcsr.AgentGroupsOf(ocmcsr.AgentUsername("c1"))...)
	// Identities of the chart's default values; the test installs the chart with them.
	grpcServer := serviceAccount("open-cluster-management-hub", "grpc-server-sa")
	bootstrapSA := serviceAccount("open-cluster-management", "agent-registration-bootstrap")
	bootstrapGroup := as("system:bootstrap:abcdef", "system:bootstrappers", "system:bootstrappers:managedcluster")
	clusterAgents := []struct {
		name string
		as   client.Client
	}{
		{"the cluster's registration agent", registration},
		{"an add-on agent of the cluster", as("system:open-cluster-management:cluster:c1:addon:other:agent:other",
			"system:open-cluster-management:cluster:c1:addon:other", "system:open-cluster-management:addon:other")},
		// OCM >= 1.2: what a gRPC-registered cluster sends, written by the gRPC server as itself.
		{"OCM's gRPC server", grpcServer},
		// An EKS access entry of OCM's AWS IRSA driver: user <cluster>, group open-cluster-management:<cluster>.
		{"an AWS IRSA cluster", as("c1", "open-cluster-management:c1")},
		// OCM's token driver: the add-on agent's ServiceAccount in the cluster's namespace.
		{"a token add-on agent of the cluster", serviceAccount("c1", "other-agent")},
		{"the bootstrap group", bootstrapGroup},
		{"the bootstrap ServiceAccount", bootstrapSA},
	}
	hub := []struct {
		name string
		as   client.Client
	}{
		{"the hub admin", admin},
		// OCM's hub controllers run as ServiceAccounts of the hub's namespace, in no matched group.
		{"OCM's registration controller", serviceAccount("open-cluster-management-hub", "registration-controller-sa")},
	}
	setLabel := func(cl client.Client, key, value string) error {
		mc := &clusterv1.ManagedCluster{}
		if err := admin.Get(ctx, types.NamespacedName{Name: "c1"}, mc); err != nil {
			return err
		}
		if mc.Labels == nil {
			mc.Labels = map[string]string{}
		}
		if value == "" {
			delete(mc.Labels, key)
		} else {
			mc.Labels[key] = value
		}
		return cl.Update(ctx, mc)
	}
	// A new policy takes a moment to be enforced.
	poll.Until(t, 30*time.Second, "a cluster enrolling itself refused", func(context.Context) (bool, error) {
		err := setLabel(registration, "argocd-agent", "enabled")
		if err == nil {
			must.Succeed(t, setLabel(admin, "argocd-agent", ""))
		}
		return err != nil && strings.Contains(err.Error(), "only the hub may change them"), nil
	})
	const clusterSet = "cluster.open-cluster-management.io/clusterset"
	for i, id := range clusterAgents {
		for _, tc := range []struct {
			name       string
			as         client.Client
			key, value string
			allowed    bool
		}{
			{"enrols the cluster", id.as, "argocd-agent", "enabled", false},
			{"moves it to another cluster set", id.as, clusterSet, "enrolled", false},
			{"(the hub admin enrols it)", admin, "argocd-agent", "enabled", true},
			{"changes the enrolment label's value", id.as, "argocd-agent", "yes", false},
			{"un-enrols it", id.as, "argocd-agent", "", false},
			{"(the hub admin revokes it)", admin, identity.RevokedLabel, "true", true},
			{"lifts its revocation", id.as, identity.RevokedLabel, "", false},
			{"sets any other label", id.as, "team", fmt.Sprintf("team%d", i), true},
			{"(the hub admin lifts the revocation)", admin, identity.RevokedLabel, "", true},
			{"(the hub admin un-enrols it)", admin, "argocd-agent", "", true},
		} {
			err := setLabel(tc.as, tc.key, tc.value)
			if tc.allowed && err != nil {
				t.Errorf("%s %s: refused: %v", id.name, tc.name, err)
			}
			if !tc.allowed && (err == nil || !strings.Contains(err.Error(), tc.key)) {
				t.Errorf("%s %s: want refused naming %s, got %v", id.name, tc.name, tc.key, err)
			}
		}
	}
	for _, id := range hub {
		for _, tc := range []struct{ name, key, value string }{
			{"enrols the cluster", "argocd-agent", "enabled"},
			{"moves it to another cluster set", clusterSet, "enrolled"},
			{"changes the enrolment label's value", "argocd-agent", "yes"},
			{"revokes it", identity.RevokedLabel, "true"},
			{"lifts the revocation", identity.RevokedLabel, ""},
			{"un-enrols it", "argocd-agent", ""},
			{"moves it back", clusterSet, ""},
		} {
			if err := setLabel(id.as, tc.key, tc.value); err != nil {
				t.Errorf("%s %s: refused: %v", id.name, tc.name, err)
			}
		}
	}
	// Identities that may create ManagedClusters (the bootstrap ones, the gRPC server for a
	// cluster joining over gRPC) cannot create one enrolled at birth.
	for i, id := range []struct {
		name string
		as   client.Client
	}{
		{"the bootstrap group", bootstrapGroup},
		{"the bootstrap ServiceAccount", bootstrapSA},
		{"OCM's gRPC server", grpcServer},
	} {
		name := fmt.Sprintf("sneaky%d", i)
		sneaky := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"argocd-agent": "enabled"}}}
		if err := id.as.Create(ctx, sneaky); err == nil || !strings.Contains(err.Error(), "argocd-agent") {
			t.Errorf("%s created a ManagedCluster enrolled at birth: %v", id.name, err)
			continue
		}
		sneaky.Labels = nil
		must.Succeed(t, id.as.Create(ctx, sneaky)) // joining, unenrolled, stays as OCM has it
	}
}

// installed is the chart as installChart installed it.
type installed struct {
	podSpec       corev1.PodSpec
	saUser        string
	asSA          *rest.Config
	metricsReader string
}

// installChart renders the chart with values and creates every object it renders in a fresh API
// server, with the release namespace and argocd.
func installChart(t *testing.T, values map[string]string) (*testenv.Env, client.Client, installed) {
	t.Helper()
	helm := os.Getenv("HELM")
	if helm == "" {
		t.Fatal("HELM is not set: run `make test`, or `eval \"$(hack/test-tools.sh)\"` first")
	}
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	ctx := context.Background()
	c := env.Client
	objs, err := chart.Render(helm, releaseNamespace, values)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{releaseNamespace, "argocd"} {
		must.Succeed(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	var deployment *appsv1.Deployment
	var inst installed
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			deployment = &appsv1.Deployment{}
			must.Succeed(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, deployment))
		}
		if o.GetKind() == "ClusterRole" && strings.HasSuffix(o.GetName(), "-metrics-reader") {
			inst.metricsReader = o.GetName()
		}
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("installing %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	if deployment == nil {
		t.Fatal("chart has no Deployment")
	}
	if inst.metricsReader == "" {
		t.Fatal("chart has no metrics-reader ClusterRole")
	}
	inst.podSpec = deployment.Spec.Template.Spec
	inst.saUser = fmt.Sprintf("system:serviceaccount:%s:%s", releaseNamespace, inst.podSpec.ServiceAccountName)
	inst.asSA = rest.CopyConfig(env.Config)
	inst.asSA.Impersonate = rest.ImpersonationConfig{UserName: inst.saUser,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + releaseNamespace, "system:authenticated"}}
	return env, c, inst
}

// runManager runs the manager as the chart's ServiceAccount with the chart's arguments until
// the test ends, and returns its metrics address.
func runManager(t *testing.T, inst installed) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	o := optionsFromArgs(t, inst.podSpec.Containers[0].Args)
	o.RestConfig = inst.asSA
	o.SkipControllerNameValidation = true // each test of the package runs a manager
	// Metrics as the chart serves them (secure), on a free loopback port instead of :8080.
	if !o.MetricsSecure {
		t.Fatal("the chart serves metrics without --metrics-secure")
	}
	ports, err := proc.FreePorts(1)
	must.Succeed(t, err)
	metricsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	o.MetricsBindAddress, o.HealthProbeBindAddress = metricsAddr, "0"
	// POD_NAMESPACE is what the chart sets; the leader lease lives in the release namespace.
	if o.LeaderElectionNamespace != releaseNamespace || !o.LeaderElect {
		t.Fatalf("chart runs leader election in %q (enabled=%v), want %q", o.LeaderElectionNamespace, o.LeaderElect, releaseNamespace)
	}
	cfg, err := o.Validate()
	must.Succeed(t, err)
	done := make(chan error, 1)
	go func() { done <- cfg.Run(klog.NewContext(ctx, klog.Background())) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("manager: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("manager did not stop")
		}
	})
	return metricsAddr
}

// With pki.createCA alone (no principal PKI), the manager under the chart's identity creates the
// CA and delivers agents signed by it: the chart grants what that takes, and the manager asks
// for nothing more (it once watched every Deployment, which the chart does not allow).
func TestChartCreateCAOnly(t *testing.T) {
	_, c, inst := installChart(t, map[string]string{"agent.principal.address": "principal.example.com", "pki.createCA": "true"})
	runManager(t, inst)
	ctx := context.Background()
	ca := &corev1.Secret{}
	poll.Until(t, 60*time.Second, "CA secret created by the chart's identity", func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, types.NamespacedName{Namespace: "argocd", Name: "argocd-agent-ca"}, ca)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil && ca.Type == corev1.SecretTypeTLS && len(ca.Data[corev1.TLSPrivateKeyKey]) > 0, err
	})
	joinCluster(t, c, "c1")
	poll.Until(t, 60*time.Second, "ManifestWork delivered with the created CA", func(ctx context.Context) (bool, error) {
		mw := &workv1.ManifestWork{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "c1", Name: "addon-argocd-agent-deploy-0"}, mw); err != nil {
			return false, nil
		}
		want, err := authority.ParseCertificates(ca.Data[corev1.TLSCertKey])
		if err != nil {
			return false, err
		}
		for _, m := range mw.Spec.Workload.Manifests {
			bundle := &corev1.Secret{}
			if json.Unmarshal(m.Raw, bundle) != nil || bundle.Kind != "Secret" || bundle.Name != identity.CASecretName {
				continue
			}
			got, err := authority.ParseCertificates(bundle.Data["ca.crt"])
			return err == nil && len(got) == 1 && got[0].Equal(want[0]), err
		}
		return false, nil
	})
	for _, name := range []string{"argocd-agent-principal-tls", "argocd-agent-jwt"} {
		if err := c.Get(ctx, types.NamespacedName{Namespace: "argocd", Name: name}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			t.Errorf("secret %s without pki.principal.enabled: %v", name, err)
		}
	}
}

// optionsFromArgs parses the chart's container args with the manager's own flags.
func optionsFromArgs(t *testing.T, args []string) *manager.Options {
	t.Helper()
	if len(args) == 0 || args[0] != "manager" {
		t.Fatalf("container args %v do not start with the manager subcommand", args)
	}
	o := manager.NewOptions()
	fs := pflag.NewFlagSet("manager", pflag.ContinueOnError)
	o.AddFlags(fs)
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	if err := fs.Parse(args[1:]); err != nil {
		t.Fatalf("the chart passes flags the manager does not accept: %v", err)
	}
	if _, err := o.Validate(); err != nil {
		t.Fatalf("the chart's flags do not validate: %v", err)
	}
	return o
}

// joinCluster joins an accepted cluster as OCM would (hubfixture), on the hub the chart
// prepared, its add-on pointed at the chart's AddOnDeploymentConfig (see
// TestChartRBACRunsTheManager).
func joinCluster(t *testing.T, c client.Client, name string) {
	t.Helper()
	chartADC := &addonv1beta1.AddOnDeploymentConfig{ObjectMeta: metav1.ObjectMeta{Namespace: releaseNamespace, Name: "argocd-agent"}}
	must.Succeed(t, (&hubfixture.Hub{Client: c}).JoinCluster(context.Background(), name, chartADC))
}
