// Package csrtest is the hub the unit tests of the approver and the signer run on:
// controller-runtime's fake client holding cluster Cluster, accepted and enrolled, a CA made in
// memory, and CSRs filed as OCM's registration agent of that cluster files them (test/ocmcsr).
//
// The fake client is no API server, and where that matters the tests say so. It has no approval
// subresource (Hub routes it to the status one, see there), no cache (a test that needs a stale
// copy makes one with an interceptor), no admission (a CSR's spec.username and groups are what
// the test sets, its request need not be PEM) and no garbage collection. It does check
// resourceVersions: an update, or a merge patch that carries one (as UpdateStatus's optimistic
// lock does), over a version replaced since fails with a conflict, as on the API server.
// test/integration runs the same controllers on a real API server.
package csrtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/ocmcsr"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
)

const (
	// Cluster is the managed cluster Hub holds, accepted and with the add-on installed.
	Cluster = "c1"
	// RecordNamespace is where the clusters' records (pkg/certificates/issued) are kept.
	RecordNamespace = "addon-ns"
)

// CASecret is the CA secret a StaticCA names.
var CASecret = types.NamespacedName{Namespace: "argocd", Name: "argocd-agent-ca"}

// StaticCA is an authority.Source that always returns CA, or Err if set.
type StaticCA struct {
	CA  *authority.CA
	Err error
}

// Get returns s.CA, or s.Err if set.
func (s StaticCA) Get(context.Context) (*authority.CA, error) {
	if s.Err != nil {
		return nil, s.Err
	}
	return s.CA, nil
}

// Key returns CASecret.
func (s StaticCA) Key() types.NamespacedName { return CASecret }

// NewCA returns a CA valid from an hour ago until a day from now.
func NewCA(t testing.TB) *authority.CA {
	t.Helper()
	certPEM, keyPEM, err := testca.New("test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := authority.Parse(certPEM, keyPEM, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// Hub returns a fake hub holding Cluster, accepted, and its ManagedClusterAddOn, with the
// status subresource on for CSRs. funcs, if not zero, intercept its calls; they get the
// subresource names the controllers use.
//
// The fake client has no approval subresource: a patch through it would be a patch of the main
// resource, whose status the fake client keeps as it was. Hub writes it through the status
// subresource instead, which, like the API server's approval subresource, writes the
// conditions under the same resourceVersion check. What the API server adds (only the
// conditions change through it, Approved and Denied exclude each other, the approve permission
// on the signer) is test/integration's.
func Hub(t testing.TB, funcs interceptor.Funcs) client.WithWatch {
	t.Helper()
	scheme, err := hubclient.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	cluster := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: Cluster}, Spec: clusterv1.ManagedClusterSpec{HubAcceptsClient: true},
		Status: clusterv1.ManagedClusterStatus{Conditions: []metav1.Condition{{Type: clusterv1.ManagedClusterConditionHubAccepted, Status: metav1.ConditionTrue}}}}
	mca := &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: Cluster, Name: identity.AddonName}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(cluster, mca).
		WithStatusSubresource(&certificatesv1.CertificateSigningRequest{}).Build()
	approvalAsStatus := interceptor.NewClient(c, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if sub == "approval" {
				sub = "status"
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	})
	return interceptor.NewClient(approvalAsStatus, funcs)
}

var filed atomic.Int64

// File creates a CSR of r, with a True condition of each type of decided, and returns its name.
// Zero fields of r are those of Cluster's OCM agent asking for a certificate from ca: r.Cluster
// is Cluster, r.CAID ca's ID, r.Username Cluster's agent. Each CSR gets a name and a UID of its
// own, which the fake client does not give.
func File(t testing.TB, c client.Client, ca *authority.CA, r ocmcsr.Request, decided ...certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	if r.Cluster == "" {
		r.Cluster = Cluster
	}
	if r.CAID == "" {
		r.CAID = ca.ID()
	}
	if r.Username == "" {
		r.Username = ocmcsr.AgentUsername(r.Cluster)
	}
	csr, _, err := ocmcsr.New(r)
	if err != nil {
		t.Fatal(err)
	}
	return Create(t, c, csr, decided...)
}

// Create creates csr, which may be malformed, named and with a UID of its own and a True
// condition of each type of decided, and returns it as created.
func Create(t testing.TB, c client.Client, csr *certificatesv1.CertificateSigningRequest, decided ...certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	n := filed.Add(1)
	csr.GenerateName = ""
	csr.Name, csr.UID = fmt.Sprintf("csr-%d", n), types.UID(fmt.Sprintf("uid-%d", n))
	for _, d := range decided {
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: d, Status: corev1.ConditionTrue, Reason: "SetByTheTest", LastUpdateTime: metav1.Now()})
	}
	if err := c.Create(context.Background(), csr); err != nil {
		t.Fatal(err)
	}
	return csr
}

// Get returns the CSR name as the hub holds it.
func Get(t testing.TB, c client.Client, name string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	csr := &certificatesv1.CertificateSigningRequest{}
	if err := c.Get(context.Background(), types.NamespacedName{Name: name}, csr); err != nil {
		t.Fatal(err)
	}
	return csr
}

// Reconcile reconciles the CSR name with r.
func Reconcile(r reconcile.Reconciler, name string) (reconcile.Result, error) {
	return r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Name: name}})
}

// Record returns Cluster's record as the hub holds it, and the resourceVersion of its
// ConfigMap, "" if there is none.
func Record(t testing.TB, c client.Client) (*issued.Record, string) {
	t.Helper()
	rec, err := issued.Load(context.Background(), c, RecordNamespace, Cluster)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Object() == nil {
		return rec, ""
	}
	return rec, rec.Object().ResourceVersion
}

// Events returns the events recorded so far that were not returned before, as the fake
// recorder writes them: "<type> <reason> <note>".
func Events(r *events.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-r.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// Writes are the writes a hub was asked for, failed ones too, in order.
type Writes struct {
	mu      sync.Mutex
	records []string
	csrs    []string
}

// Records returns the writes of records (their ConfigMaps): "create", or "update@<v>" for an
// update over resourceVersion v.
func (w *Writes) Records() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.records...)
}

// CSRs returns the writes of CSRs: "patch <subresource>" ("patch approval", "patch status"),
// "update <subresource>", "patch" or "update" of the CSR itself.
func (w *Writes) CSRs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.csrs...)
}

func (w *Writes) add(to *[]string, s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	*to = append(*to, s)
}

// Counting returns funcs that count the writes of records and CSRs in the returned Writes, then
// call those of funcs, or the client's when funcs has none.
func Counting(funcs interceptor.Funcs) (interceptor.Funcs, *Writes) {
	w := &Writes{}
	next := funcs
	funcs.Create = func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if _, ok := obj.(*corev1.ConfigMap); ok {
			w.add(&w.records, "create")
		}
		if next.Create != nil {
			return next.Create(ctx, c, obj, opts...)
		}
		return c.Create(ctx, obj, opts...)
	}
	funcs.Update = func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
		switch obj.(type) {
		case *corev1.ConfigMap:
			w.add(&w.records, "update@"+obj.GetResourceVersion())
		case *certificatesv1.CertificateSigningRequest:
			w.add(&w.csrs, "update")
		}
		if next.Update != nil {
			return next.Update(ctx, c, obj, opts...)
		}
		return c.Update(ctx, obj, opts...)
	}
	funcs.Patch = func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
		if _, ok := obj.(*certificatesv1.CertificateSigningRequest); ok {
			w.add(&w.csrs, "patch")
		}
		if next.Patch != nil {
			return next.Patch(ctx, c, obj, patch, opts...)
		}
		return c.Patch(ctx, obj, patch, opts...)
	}
	funcs.SubResourcePatch = func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
		if _, ok := obj.(*certificatesv1.CertificateSigningRequest); ok {
			w.add(&w.csrs, "patch "+sub)
		}
		if next.SubResourcePatch != nil {
			return next.SubResourcePatch(ctx, c, sub, obj, patch, opts...)
		}
		return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
	}
	funcs.SubResourceUpdate = func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
		if _, ok := obj.(*certificatesv1.CertificateSigningRequest); ok {
			w.add(&w.csrs, "update "+sub)
		}
		if next.SubResourceUpdate != nil {
			return next.SubResourceUpdate(ctx, c, sub, obj, opts...)
		}
		return c.SubResource(sub).Update(ctx, obj, opts...)
	}
	return funcs, w
}
