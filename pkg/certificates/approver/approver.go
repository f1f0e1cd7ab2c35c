// Package approver approves or denies every pending CSR for the add-on's signer, by the checks
// of pkg/certificates/policy (policy.Decide), through the CSR's approval subresource. A denied
// CSR carries the reason as its condition reason; both outcomes are logged and counted, and a
// denial is recorded as an event. It decides nothing while no usable CA says which subject to
// expect, and never changes a decision once made.
package approver

import (
	"context"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/metrics"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
)

// ReasonApproved is the reason of the Approved condition the approver sets.
const ReasonApproved = "ArgoCDAgentAddonApproved"

// Reconciler approves or denies CSRs.
type Reconciler struct {
	Client client.Client
	// CA is the signing CA, whose ID the subject of a request must name.
	CA     authority.Source
	Policy policy.Policy
	// RecordNamespace is where the clusters' records live (pkg/certificates/issued).
	RecordNamespace string
	// Events records the decisions as events on the CSRs.
	Events events.EventRecorder
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// SetupWithManager watches CSRs for the add-on's signer (the manager caches no other,
// certificates.CSRCache), and the CA secret.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		Named("csr-approver").
		For(&certificatesv1.CertificateSigningRequest{}, builder.WithPredicates(predicate.NewPredicateFuncs(certificates.ForOurSigner))).
		WithOptions(certificates.ControllerOptions())
	// A CSR waits undecided while no usable CA says which subject to expect.
	return certificates.WatchCASecret(b, r.Client, r.CA.Key(), certificates.Pending).Complete(r)
}

// Reconcile decides one CSR.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	csr := &certificatesv1.CertificateSigningRequest{}
	if err := r.Client.Get(ctx, req.NamespacedName, csr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !certificates.ForOurSigner(csr) || !certificates.Pending(csr) {
		return ctrl.Result{}, nil
	}
	ca, err := r.CA.Get(ctx)
	if err != nil {
		return certificates.WaitForCA(ctx, r.Events, csr, "Approve", err), nil
	}
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	_, _, rej, err := r.Policy.Decide(ctx, r.Client, csr, ca.ID(), r.RecordNamespace, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	cluster := csr.Labels[clusterv1.ClusterNameLabelKey]
	decision, reason, msg := certificatesv1.CertificateApproved, ReasonApproved, fmt.Sprintf("request from cluster %q matches its agent's registration", cluster)
	if rej != nil {
		decision, reason, msg = certificatesv1.CertificateDenied, string(rej.Reason), rej.Message
	}
	if res, ok, err := certificates.SetCondition(ctx, r.Client.SubResource("approval"), csr, decision, reason, msg); !ok {
		return res, err
	}
	if rej != nil {
		metrics.CSRsDenied.WithLabelValues(reason).Inc()
		logger.Info("Denied CSR", "csr", csr.Name, "reason", reason, "message", msg, "requester", csr.Spec.Username)
		r.Events.Eventf(csr, nil, corev1.EventTypeWarning, reason, "Deny", "denied: %s", msg)
		return ctrl.Result{}, nil
	}
	metrics.CSRsApproved.Inc()
	logger.Info("Approved CSR", "csr", csr.Name, "cluster", cluster)
	// No event: the Approved condition says it, and the signer's Signed event follows. An event
	// per approval was a fifth of the requests a CSR cost the hub (test/bench).
	return ctrl.Result{}, nil
}
