package certificates

import (
	"context"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// ReasonCAUnavailable is the event reason of a CSR that waits for a usable CA.
const ReasonCAUnavailable = "CAUnavailable"

// CARetry is how often a CSR waiting for a usable CA is retried; the CA secret watch
// (WatchCASecret) usually goes on sooner.
const CARetry = time.Minute

// conflictRetry is how soon a CSR whose status write lost to another writer is tried again,
// from the newer copy. The watch event of that newer copy usually comes first.
const conflictRetry = time.Second

// WaitForCA reports that csr waits for a usable CA (err says why) in the log and as a
// CAUnavailable event of action, and returns the result that retries it after CARetry.
func WaitForCA(ctx context.Context, recorder events.EventRecorder, csr *certificatesv1.CertificateSigningRequest, action string, err error) reconcile.Result {
	log.FromContext(ctx).Error(err, "Waiting for a usable CA", "csr", csr.Name, "action", action)
	recorder.Eventf(csr, nil, corev1.EventTypeWarning, ReasonCAUnavailable, action, "waiting for a usable CA: %v", err)
	return reconcile.Result{RequeueAfter: CARetry}
}

// SetCondition appends a True condition of type t to csr and writes its status through w:
// the approval subresource for Approved and Denied, the status subresource for Failed. See
// UpdateStatus for what it returns.
func SetCondition(ctx context.Context, w client.SubResourceWriter, csr *certificatesv1.CertificateSigningRequest,
	t certificatesv1.RequestConditionType, reason, message string) (reconcile.Result, bool, error) {
	return UpdateStatus(ctx, w, csr, func(csr *certificatesv1.CertificateSigningRequest) {
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: t, Status: corev1.ConditionTrue, Reason: reason, Message: message, LastUpdateTime: metav1.Now(),
		})
	})
}

// UpdateStatus applies change to csr's status and writes it through w, as a merge patch of
// what changed with csr's resourceVersion: the status only, never the metadata of the cached
// copy, which the cache cuts (CacheTransform) and the API server would keep as written. It
// reports whether it was written; if not, the reconciler returns the result and error. A
// conflict (the CSR changed since it was read) is no error: the CSR is decided again from its
// newer copy.
func UpdateStatus(ctx context.Context, w client.SubResourceWriter, csr *certificatesv1.CertificateSigningRequest,
	change func(*certificatesv1.CertificateSigningRequest)) (reconcile.Result, bool, error) {
	orig := csr.DeepCopy()
	change(csr)
	switch err := w.Patch(ctx, csr, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); {
	case err == nil:
		return reconcile.Result{}, true, nil
	case apierrors.IsConflict(err):
		return reconcile.Result{RequeueAfter: conflictRetry}, false, nil
	default:
		return reconcile.Result{}, false, fmt.Errorf("writing the status of CSR %s: %w", csr.Name, err)
	}
}
