package certificates

import (
	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/fields"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	operatorv1 "open-cluster-management.io/api/operator/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// maxAnnotationBytes bounds the csr-user annotation kept in the cache: a username.
const maxAnnotationBytes = 1 << 10

// CSRCache is what the manager caches of CSRs: those of the add-on's signer only, selected by
// the API server, each cut to what the approver and the signer decide from (CacheTransform).
// Anyone who may create CSRs (every managed cluster, every bootstrap token) may file them in
// any number and up to the API server's size limit; a cache of them all, whatever their signer
// and size, let one cluster grow the manager until it was killed, for the whole fleet.
func CSRCache() cache.ByObject {
	return cache.ByObject{
		Field:     fields.OneTermEqualSelector("spec.signerName", identity.SignerName),
		Transform: CacheTransform,
	}
}

// CacheTransform cuts a CSR to what is decided from: the request to one byte past
// MaxRequestBytes (so it is still refused as too large), the labels that name the add-on
// and the cluster, the csr-user annotation of gRPC-filed requests; and no managedFields.
func CacheTransform(obj any) (any, error) {
	csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
	if !ok {
		return obj, nil
	}
	csr.ManagedFields = nil
	if len(csr.Spec.Request) > MaxRequestBytes {
		cut := make([]byte, MaxRequestBytes+1) // a copy: the decoded request is then garbage
		copy(cut, csr.Spec.Request)
		csr.Spec.Request = cut
	}
	csr.Labels = keep(csr.Labels, clusterv1.ClusterNameLabelKey, addonv1beta1.AddonLabelKey)
	csr.Annotations = keep(csr.Annotations, operatorv1.CSRUsernameAnnotation)
	if v := csr.Annotations[operatorv1.CSRUsernameAnnotation]; len(v) > maxAnnotationBytes {
		csr.Annotations[operatorv1.CSRUsernameAnnotation] = v[:maxAnnotationBytes]
	}
	return csr, nil
}

// keep returns m with only the keys given, nil if none is there.
func keep(m map[string]string, keys ...string) map[string]string {
	var out map[string]string
	for _, k := range keys {
		if v, ok := m[k]; ok {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}
