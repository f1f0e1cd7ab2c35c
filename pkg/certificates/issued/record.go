package issued

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/revocation"
)

// RecordLabel marks the record ConfigMaps; its value is the cluster's name.
const RecordLabel = "argocd-agent-addon.open-cluster-management.io/issued-certificates-of"

// The record ConfigMap's keys, each a JSON value.
const (
	certificatesKey = "certificates" // []Certificate, oldest first
	keysKey         = "keys"         // []string, KeyOf each public key certified, oldest first
	revocationKey   = "revocation"   // revocation.Revocation; absent when not revoked
)

// MaxKeys bounds the public keys remembered per cluster. With MaxUnexpired certificates at a
// time, a cluster cannot get through them faster than MaxKeys/MaxUnexpired certificate
// lifetimes (about half a year at the default 168 h).
const MaxKeys = 256

// RecordName is the name of cluster's record ConfigMap.
func RecordName(cluster string) string { return "argocd-agent-issued-" + cluster }

// KeyOf identifies a public key: the SHA-256 of its DER SubjectPublicKeyInfo, lower-case hex.
func KeyOf(spki []byte) string {
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:])
}

// Record is the hub's record of one cluster's agent, as read at one resourceVersion: Save
// writes over exactly that version or fails with a conflict.
type Record struct {
	Cluster string
	// Certificates are those issued and not expired when last written, oldest first.
	Certificates []Certificate
	// Keys are the public keys certified for the cluster (KeyOf), oldest first, at most MaxKeys.
	Keys []string
	// Revocation, if set, revokes the cluster's agent: nothing is signed or delivered for it.
	Revocation *revocation.Revocation

	// object is the ConfigMap read; nil when the cluster had none.
	object *corev1.ConfigMap
}

// Load reads cluster's record in namespace; an empty one if it has none. A record that cannot be
// read is an error, never an empty record: it may hold a revocation or certificates that
// `revoke` must find, so nothing is decided for the cluster until it is repaired.
func Load(ctx context.Context, reader client.Reader, namespace, cluster string) (*Record, error) {
	cm := &corev1.ConfigMap{}
	if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: RecordName(cluster)}, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return &Record{Cluster: cluster}, nil
		}
		return nil, fmt.Errorf("reading the record of cluster %s: %w", cluster, err)
	}
	return FromConfigMap(cm)
}

// FromConfigMap decodes a record ConfigMap. A revocation that cannot be decoded still revokes
// (a damaged record fails closed); damaged certificates or keys are an error.
func FromConfigMap(cm *corev1.ConfigMap) (*Record, error) {
	r := &Record{Cluster: cm.Labels[RecordLabel], object: cm}
	if r.Cluster == "" || cm.Name != RecordName(r.Cluster) {
		return nil, fmt.Errorf("ConfigMap %s/%s is no record: its label %s does not name the cluster it is for", cm.Namespace, cm.Name, RecordLabel)
	}
	for key, into := range map[string]any{certificatesKey: &r.Certificates, keysKey: &r.Keys} {
		if raw, ok := cm.Data[key]; ok {
			if err := json.Unmarshal([]byte(raw), into); err != nil {
				return nil, fmt.Errorf("record %s/%s, key %s: %w", cm.Namespace, cm.Name, key, err)
			}
		}
	}
	if raw, ok := cm.Data[revocationKey]; ok {
		rev := &revocation.Revocation{}
		if err := json.Unmarshal([]byte(raw), rev); err != nil {
			rev = &revocation.Revocation{Reason: fmt.Sprintf("revoked (unreadable entry: %v)", err)}
		}
		r.Revocation = rev
	}
	return r, nil
}

// List returns every record in namespace ("" for all that reader sees), by cluster.
func List(ctx context.Context, reader client.Reader, namespace string) (map[string]*Record, error) {
	list := &corev1.ConfigMapList{}
	opts := []client.ListOption{client.HasLabels{RecordLabel}}
	if namespace != "" {
		opts = append(opts, client.InNamespace(namespace))
	}
	if err := reader.List(ctx, list, opts...); err != nil {
		return nil, fmt.Errorf("listing the records of the clusters' agents: %w", err)
	}
	out := map[string]*Record{}
	for i := range list.Items {
		r, err := FromConfigMap(&list.Items[i])
		if err != nil {
			return nil, err
		}
		if prev, ok := out[r.Cluster]; ok && prev.Revocation != nil {
			continue // two managers' namespaces: a revocation in either counts
		}
		out[r.Cluster] = r
	}
	return out, nil
}

// Unexpired returns the certificates that have not expired at now.
func (r *Record) Unexpired(now time.Time) []Certificate { return Valid(r.Certificates, now) }

// KeyUsed reports whether key (KeyOf) was certified for the cluster before.
func (r *Record) KeyUsed(key string) bool { return slices.Contains(r.Keys, key) }

// ForCSR returns the certificate recorded for the CSR with UID uid, signed by the CA with ID
// caID and still valid at now, and false if there is none.
func (r *Record) ForCSR(uid types.UID, caID string, now time.Time) ([]byte, bool) {
	return ForCSR(r.Certificates, uid, caID, now)
}

// Issue adds cert, certified for the public key key, and drops what expired at now.
func (r *Record) Issue(cert Certificate, key string, now time.Time) {
	if !slices.ContainsFunc(r.Certificates, func(c Certificate) bool { return c.Fingerprint == cert.Fingerprint }) {
		r.Certificates = Add(r.Certificates, cert, now)
	}
	if key != "" && !r.KeyUsed(key) {
		r.Keys = append(r.Keys, key)
		if len(r.Keys) > MaxKeys {
			r.Keys = r.Keys[len(r.Keys)-MaxKeys:]
		}
	}
}

// Save writes the record over the version it was read at (creating it if there was none): a
// conflict or an AlreadyExists error means another writer came first, and the caller reads
// and decides again. Records have no owner, and one an earlier version made owned by the
// ClusterManagementAddOn loses that owner, so that uninstalling the add-on keeps it.
func (r *Record) Save(ctx context.Context, c client.Client, namespace string) error {
	data := map[string]string{}
	for key, value := range map[string]any{certificatesKey: r.Certificates, keysKey: r.Keys} {
		raw, err := json.Marshal(value)
		if err != nil {
			return err
		}
		data[key] = string(raw)
	}
	if r.Revocation != nil {
		raw, err := json.Marshal(r.Revocation)
		if err != nil {
			return err
		}
		data[revocationKey] = string(raw)
	}
	if r.object == nil {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: RecordName(r.Cluster), Labels: map[string]string{
				RecordLabel: r.Cluster, addonv1beta1.AddonLabelKey: identity.AddonName}},
			Data: data,
		}
		if err := c.Create(ctx, cm); err != nil {
			return fmt.Errorf("creating the record of cluster %s: %w", r.Cluster, err)
		}
		r.object = cm
		return nil
	}
	cm := r.object.DeepCopy()
	cm.OwnerReferences = slices.DeleteFunc(cm.OwnerReferences, func(o metav1.OwnerReference) bool {
		return o.Kind == "ClusterManagementAddOn"
	})
	cm.Data = data
	if err := c.Update(ctx, cm); err != nil {
		return fmt.Errorf("writing the record of cluster %s: %w", r.Cluster, err)
	}
	r.object = cm
	return nil
}

// Update applies change to cluster's record, read from reader (which should not be a lagging
// cache), and saves it, again from a fresh read whenever another writer came first.
func Update(ctx context.Context, c client.Client, reader client.Reader, namespace, cluster string, change func(*Record) error) (*Record, error) {
	var rec *Record
	err := retry.OnError(retry.DefaultRetry, func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
	}, func() error {
		var err error
		if rec, err = Load(ctx, reader, namespace, cluster); err != nil {
			return err
		}
		if err := change(rec); err != nil {
			return err
		}
		return rec.Save(ctx, c, namespace)
	})
	return rec, err
}

// Object returns the ConfigMap the record was read from, nil if there was none.
func (r *Record) Object() *corev1.ConfigMap { return r.object }

// RevocationOrNil returns the record's revocation; nil for a nil record or one not revoked.
func (r *Record) RevocationOrNil() *revocation.Revocation {
	if r == nil {
		return nil
	}
	return r.Revocation
}

// Records reads the clusters' records in one namespace: the manager's.
type Records struct {
	Reader    client.Reader
	Namespace string
}

// Revocation returns cluster's revocation, nil if it is not revoked. An unreadable record is an
// error: nothing may be decided without it.
func (r Records) Revocation(ctx context.Context, cluster string) (*revocation.Revocation, error) {
	rec, err := Load(ctx, r.Reader, r.Namespace, cluster)
	if err != nil {
		return nil, err
	}
	return rec.Revocation, nil
}

// ClusterOfRecord returns the cluster whose record ConfigMap has the given name.
func ClusterOfRecord(name string) (string, bool) {
	cluster, ok := strings.CutPrefix(name, RecordName(""))
	return cluster, ok && cluster != ""
}

// Revoked reports whether a record ConfigMap holds a revocation, for watches that act only on
// a change of it.
func Revoked(cm client.Object) bool {
	c, ok := cm.(*corev1.ConfigMap)
	if !ok {
		return false
	}
	_, revoked := c.Data[revocationKey]
	return revoked
}
