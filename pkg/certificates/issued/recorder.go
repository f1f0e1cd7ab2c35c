package issued

import (
	"context"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
)

// ReasonNotRecorded is the event reason when an issued certificate cannot be recorded.
const ReasonNotRecorded = "CertificateNotRecorded"

// Settle is how long after issuing a certificate the recorder waits before writing the record.
// OCM's registration agent stores the certificate on the spoke and then patches the
// ManagedClusterAddOn's status with optimistic locking; a write to the add-on in between makes
// that patch fail, and the agent then files a new request instead. Seconds later the agent is
// done, and the record can be written without getting in its way.
const Settle = 15 * time.Second

// Recorder records, on the cluster's ManagedClusterAddOn, each certificate the signer issued,
// from the CSR, which the hub keeps for an hour: long enough to record it, too short to be
// the record.
type Recorder struct {
	Client client.Client
	// CA tells which CA signed a certificate: the signing one or one kept for trust.
	CA       certificates.CASource
	Recorder events.EventRecorder
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// SetupWithManager watches the CSRs of the add-on's signer.
func (r *Recorder) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("certificate-recorder").
		For(&certificatesv1.CertificateSigningRequest{}, builder.WithPredicates(predicate.NewPredicateFuncs(certificates.ForOurSigner))).
		Complete(r)
}

// Reconcile records one CSR's certificate once it has settled.
func (r *Recorder) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	csr := &certificatesv1.CertificateSigningRequest{}
	if err := r.Client.Get(ctx, req.NamespacedName, csr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	cluster := csr.Labels[clusterv1.ClusterNameLabelKey]
	if !certificates.ForOurSigner(csr) || len(csr.Status.Certificate) == 0 || cluster == "" {
		return ctrl.Result{}, nil
	}
	cert, err := ParseCertificate(csr.Status.Certificate)
	if err != nil {
		return ctrl.Result{}, nil // not one the signer wrote
	}
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	if !now.Before(cert.NotAfter) {
		return ctrl.Result{}, nil
	}
	// The signer backdates NotBefore by the clock skew it allows: issued at NotBefore+skew.
	if wait := cert.NotBefore.Add(authority.ClockSkew + Settle).Sub(now); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	caID := ""
	if ca, err := r.CA.Get(ctx); err == nil {
		caID = Issuer(cert, ca.Trusted)
	}
	if err := Record(ctx, r.Client, cluster, Of(cert, caID), now); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil // the add-on is gone: nothing to record it on
		}
		log.FromContext(ctx).Error(err, "Recording an issued certificate", "csr", csr.Name, "cluster", cluster)
		r.Recorder.Eventf(csr, nil, corev1.EventTypeWarning, ReasonNotRecorded, "Record", "certificate issued but not recorded yet: %v", err)
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, nil
}
