// Package signer issues agent client certificates for approved CSRs of the add-on's signer,
// from the CA in the hub secret (pkg/certificates/authority). It checks each CSR again before
// signing (policy.Decide), because approval may come from anyone allowed to approve for the
// signer; a CSR that fails is marked Failed with the reason, as Kubernetes' own signers do. Each
// CSR gets exactly one certificate, written into the cluster's record (pkg/certificates/issued)
// before it is put on the CSR.
package signer

import (
	"context"
	"fmt"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/metrics"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/policy"
)

// Event reasons; a CSR waiting for a usable CA gets certificates.ReasonCAUnavailable.
const (
	ReasonSigned      = "Signed"
	ReasonNotRecorded = "CertificateNotRecorded"
)

// Reconciler signs approved CSRs.
type Reconciler struct {
	Client   client.Client
	CA       authority.Source
	Policy   policy.Policy
	Lifetime time.Duration
	// RecordNamespace is where the record of issued certificates lives (pkg/certificates/issued).
	RecordNamespace string
	// Events records what is signed or refused as events on the CSRs.
	Events events.EventRecorder
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// unsent holds, by CSR UID, the certificates recorded whose CSR status write failed (a
	// conflict, an API error), so that the retry puts the same one on the CSR.
	unsent sync.Map
}

// certificateFor returns the certificate for csr: the one already issued for it and recorded
// but never put on it (this process's write failed, or the manager died in between, the
// record says so), else a new one from sign, written into rec, the record the CSR was decided
// from, before it leaves the hub. The write is made over the version decided from: if a
// revocation, another certificate or a key was recorded since, it fails with a conflict and
// the CSR is decided again. Each CSR thus gets exactly one certificate, the record holds every
// certificate handed out, and none is signed after the revocation it would have to be
// blocklisted by.
func (r *Reconciler) certificateFor(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, rec *issued.Record, key string,
	now time.Time, sign func() ([]byte, error), caID string) ([]byte, error) {
	if pem, ok := r.unsent.Load(csr.UID); ok {
		return pem.([]byte), nil
	}
	if pem, ok := rec.ForCSR(csr.UID, caID, now); ok {
		log.FromContext(ctx).Info("Putting the certificate recorded for the CSR on it", "csr", csr.Name, "cluster", rec.Cluster)
		r.unsent.Store(csr.UID, pem)
		return pem, nil
	}
	certPEM, err := sign()
	if err != nil {
		return nil, err
	}
	cert, err := issued.ParseCertificate(certPEM)
	if err != nil {
		return nil, err
	}
	entry := issued.Of(cert, caID)
	entry.CSR, entry.PEM = csr.UID, string(certPEM)
	rec.Issue(entry, key, now)
	if err := rec.Save(ctx, r.Client, r.RecordNamespace); err != nil {
		if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			r.Events.Eventf(csr, nil, corev1.EventTypeWarning, ReasonNotRecorded, "Sign", "not signed until the certificate can be recorded: %v", err)
		}
		return nil, fmt.Errorf("recording the certificate for CSR %s: %w", csr.Name, err)
	}
	r.unsent.Store(csr.UID, certPEM)
	return certPEM, nil
}

// SetupWithManager watches CSRs for the add-on's signer, and the CA secret so that CSRs waiting
// for a usable CA are signed as soon as one appears.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		Named("csr-signer").
		For(&certificatesv1.CertificateSigningRequest{}, builder.WithPredicates(predicate.NewPredicateFuncs(certificates.ForOurSigner))).
		WithOptions(certificates.ControllerOptions())
	return certificates.WatchCASecret(b, r.Client, r.CA.Key(), waiting).Complete(r)
}

// waiting: approved, not failed, no certificate yet.
func waiting(csr *certificatesv1.CertificateSigningRequest) bool {
	return certificates.HasCondition(csr, certificatesv1.CertificateApproved) &&
		!certificates.HasCondition(csr, certificatesv1.CertificateFailed) &&
		len(csr.Status.Certificate) == 0
}

// Reconcile signs one CSR.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	csr := &certificatesv1.CertificateSigningRequest{}
	if err := r.Client.Get(ctx, req.NamespacedName, csr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !certificates.ForOurSigner(csr) || !waiting(csr) {
		return ctrl.Result{}, nil
	}
	ca, err := r.CA.Get(ctx)
	if err != nil {
		return certificates.WaitForCA(ctx, r.Events, csr, "Sign", err), nil
	}
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	x509req, hub, rej, err := r.Policy.Decide(ctx, r.Client, csr, ca.ID(), r.RecordNamespace, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	if rej != nil {
		return r.fail(ctx, csr, rej)
	}
	cluster := hub.Cluster.Name // Decide checked the CSR names an existing cluster
	lifetime := r.Lifetime
	if csr.Spec.ExpirationSeconds != nil {
		// As Kubernetes' signers do: honour a shorter requested lifetime, cap a longer one.
		if requested := time.Duration(*csr.Spec.ExpirationSeconds) * time.Second; requested < lifetime {
			lifetime = requested
		}
	}
	certPEM, err := r.certificateFor(ctx, csr, hub.Record, issued.KeyOf(x509req.RawSubjectPublicKeyInfo), now,
		func() ([]byte, error) { return ca.Sign(x509req, lifetime, now) }, ca.ID())
	if err != nil {
		return ctrl.Result{}, err
	}
	cert, err := issued.ParseCertificate(certPEM)
	if err != nil {
		return ctrl.Result{}, err
	}
	if res, ok, err := certificates.UpdateStatus(ctx, r.Client.Status(), csr, func(csr *certificatesv1.CertificateSigningRequest) {
		csr.Status.Certificate = certPEM
	}); !ok {
		return res, err
	}
	r.unsent.Delete(csr.UID)
	notAfter := cert.NotAfter
	metrics.CSRsSigned.Inc()
	logger.Info("Signed agent certificate", "csr", csr.Name, "cluster", cluster, "notAfter", notAfter.UTC().Format(time.RFC3339))
	r.Events.Eventf(csr, nil, corev1.EventTypeNormal, ReasonSigned, "Sign", "issued a client certificate for cluster %q valid until %s",
		cluster, notAfter.UTC().Format(time.RFC3339))
	return ctrl.Result{}, nil
}

func (r *Reconciler) fail(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, rej *policy.Rejection) (ctrl.Result, error) {
	if res, ok, err := certificates.SetCondition(ctx, r.Client.Status(), csr, certificatesv1.CertificateFailed, string(rej.Reason), rej.Message); !ok {
		return res, err
	}
	metrics.CSRsFailed.WithLabelValues(string(rej.Reason)).Inc()
	log.FromContext(ctx).Info("Refused to sign approved CSR", "csr", csr.Name, "reason", rej.Reason, "message", rej.Message)
	r.Events.Eventf(csr, nil, corev1.EventTypeWarning, string(rej.Reason), "Sign", "not signed: %s", rej.Message)
	return ctrl.Result{}, nil
}
