package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/e2e/harness"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/ocmcsr"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/poll"
)

// attack is one thing a compromised cluster tries with its own OCM hub credentials.
type attack struct {
	name string
	do   func(ctx context.Context, c client.Client) error
}

// runAttacks runs each attack as cluster's registration identity, read from its spoke. Each
// must be refused by the hub (admission or RBAC); what happens afterwards (no add-on, no
// certificate) the caller checks.
func runAttacks(t *testing.T, ctx context.Context, e *harness.Env, cluster string, attacks []attack) {
	t.Helper()
	id, err := e.ClusterIdentity(ctx, cluster)
	must.Succeed(t, err)
	if !identity.IsClusterAgent(id.User, cluster) {
		t.Fatalf("%s's hub identity is %q, not an OCM agent of the cluster", cluster, id.User)
	}
	for _, a := range attacks {
		err := a.do(ctx, id.Client)
		switch {
		case err == nil:
			t.Errorf("%s (as %s): the hub let it through", a.name, id.User)
		case apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsNotFound(err):
			t.Logf("%s (as %s): refused: %v", a.name, id.User, err)
		default:
			t.Errorf("%s (as %s): unexpected error: %v", a.name, id.User, err)
		}
	}
}

// setOwnLabel changes one label of the cluster's own ManagedCluster, by update and by patch,
// as the OCM agent's RBAC allows.
func setOwnLabel(cluster, key, value string, usePatch bool) func(context.Context, client.Client) error {
	return func(ctx context.Context, c client.Client) error {
		mc := &clusterv1.ManagedCluster{}
		if err := c.Get(ctx, types.NamespacedName{Name: cluster}, mc); err != nil {
			return err
		}
		var v any = value
		if value == "" {
			v = nil
		}
		if usePatch {
			patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{key: v}}})
			return c.Patch(ctx, mc, client.RawPatch(types.MergePatchType, patch))
		}
		if mc.Labels == nil {
			mc.Labels = map[string]string{}
		}
		if value == "" {
			delete(mc.Labels, key)
		} else {
			mc.Labels[key] = value
		}
		return c.Update(ctx, mc)
	}
}

// addonAttacks try to give the cluster an add-on the hub did not: create, edit or delete its
// ManagedClusterAddOn, or lift the revocation on the ClusterManagementAddOn.
func addonAttacks(cluster string) []attack {
	mca := func() *addonv1beta1.ManagedClusterAddOn {
		return &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: cluster, Name: identity.AddonName}}
	}
	return []attack{
		{"create its own ManagedClusterAddOn", func(ctx context.Context, c client.Client) error { return c.Create(ctx, mca()) }},
		{"delete its ManagedClusterAddOn", func(ctx context.Context, c client.Client) error { return c.Delete(ctx, mca()) }},
		{"patch its ManagedClusterAddOn", func(ctx context.Context, c client.Client) error {
			return c.Patch(ctx, mca(), client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`)))
		}},
		{"patch the status of its ManagedClusterAddOn", func(ctx context.Context, c client.Client) error {
			return c.Status().Patch(ctx, mca(), client.RawPatch(types.MergePatchType,
				[]byte(`{"status":{"registrations":[{"type":"CustomSigner","customSigner":{"signerName":"`+identity.SignerName+`","subject":{"user":"`+cluster+`"}}}]}}`)))
		}},
		{"lift its revocation in its record", func(ctx context.Context, c client.Client) error {
			record := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: harness.AddonNamespace, Name: issued.RecordName(cluster)}}
			return c.Patch(ctx, record, client.RawPatch(types.MergePatchType, []byte(`{"data":{"revocation":null}}`)))
		}},
		{"delete its record", func(ctx context.Context, c client.Client) error {
			return c.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: harness.AddonNamespace, Name: issued.RecordName(cluster)}})
		}},
		{"delete its ManagedCluster, to join afresh", func(ctx context.Context, c client.Client) error {
			return c.Delete(ctx, &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: cluster}})
		}},
		{"approve a CSR it filed", func(ctx context.Context, c client.Client) error {
			csr, err := ownCSR(ctx, c, cluster)
			if err != nil {
				return err
			}
			csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
				Type: certificatesv1.CertificateApproved, Status: "True", Reason: "SelfApproved", LastUpdateTime: metav1.Now()})
			return c.SubResource("approval").Update(ctx, csr)
		}},
		{"put a certificate on a CSR it filed", func(ctx context.Context, c client.Client) error {
			csr, err := ownCSR(ctx, c, cluster)
			if err != nil {
				return err
			}
			csr.Status.Certificate = []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
			return c.Status().Update(ctx, csr)
		}},
	}
}

// ownCSR files a CSR for the add-on's signer as c, with a subject for no particular CA.
func ownCSR(ctx context.Context, c client.Client, cluster string) (*certificatesv1.CertificateSigningRequest, error) {
	csr, _, err := ocmcsr.New(ocmcsr.Request{Cluster: cluster, CAID: "0000000000000000"})
	if err != nil {
		return nil, err
	}
	return csr, c.Create(ctx, csr)
}

// fileOwnCSRs files, as the cluster's own identity, CSRs exactly as OCM's registration agent
// would for the add-on, and waits for each to be denied for want. It returns their names.
func fileOwnCSRs(t *testing.T, ctx context.Context, e *harness.Env, cluster string, n int, want policy.Reason) []string {
	t.Helper()
	id, err := e.ClusterIdentity(ctx, cluster)
	must.Succeed(t, err)
	caID := authority.ID(parseCert(t, e.CACertPEM))
	var names []string
	for range n {
		csr, _, err := ocmcsr.New(ocmcsr.Request{Cluster: cluster, CAID: caID})
		must.Succeed(t, err)
		must.Succeed(t, id.Client.Create(ctx, csr))
		names = append(names, csr.Name)
	}
	for _, name := range names {
		poll.Until(t, 60*time.Second, "CSR "+name+" denied "+string(want), func(ctx context.Context) (bool, error) {
			csr := &certificatesv1.CertificateSigningRequest{}
			if err := e.Hub.Client.Get(ctx, types.NamespacedName{Name: name}, csr); err != nil {
				return false, err
			}
			if len(csr.Status.Certificate) > 0 {
				t.Fatalf("CSR %s filed by %s was signed", name, id.User)
			}
			c := ocmcsr.Condition(csr, certificatesv1.CertificateDenied)
			if c != nil && c.Reason != string(want) {
				t.Fatalf("CSR %s denied %s (%s), want %s", name, c.Reason, c.Message, want)
			}
			return c != nil, nil
		})
	}
	t.Logf("%d CSRs filed by %s as OCM files them: all denied %s, none signed", n, id.User, want)
	return names
}

// signedSince counts the certificates of the add-on's signer issued to cluster since t0.
func signedSince(t *testing.T, ctx context.Context, e *harness.Env, cluster string, t0 time.Time) int {
	t.Helper()
	csrs := &certificatesv1.CertificateSigningRequestList{}
	must.Succeed(t, e.Hub.Client.List(ctx, csrs, client.MatchingLabels{clusterv1.ClusterNameLabelKey: cluster}))
	n := 0
	for _, csr := range csrs.Items {
		if csr.Spec.SignerName == identity.SignerName && len(csr.Status.Certificate) > 0 &&
			parseCert(t, csr.Status.Certificate).NotBefore.Add(authority.ClockSkew).After(t0) {
			n++
		}
	}
	return n
}

// enrolmentLabel is the label the chart's Placement selects on, as the harness sets it.
func enrolmentLabel() (string, string) { return harness.EnableLabel, "enabled" }

// stillRevoked checks that the revocation and the Placement's label are where the hub put them.
func stillRevoked(t *testing.T, ctx context.Context, e *harness.Env, cluster string) {
	t.Helper()
	r, err := issued.Records{Reader: e.Hub.Client, Namespace: harness.AddonNamespace}.Revocation(ctx, cluster)
	must.Succeed(t, err)
	mc := &clusterv1.ManagedCluster{}
	must.Succeed(t, e.Hub.Client.Get(ctx, types.NamespacedName{Name: cluster}, mc))
	if r == nil || mc.Labels[identity.RevokedLabel] != "true" {
		t.Fatalf("after the attacks: revocation %+v, labels %v", r, mc.Labels)
	}
	err = e.Hub.Client.Get(ctx, types.NamespacedName{Namespace: cluster, Name: identity.AddonName}, &addonv1beta1.ManagedClusterAddOn{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("the revoked cluster has a ManagedClusterAddOn again (%v)", err)
	}
}
