package clustersecret

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"
)

// NameLabel is the label many hubs (ACM among them) give a ManagedCluster with the cluster's
// name. It is copied only with that value: a cluster may write its own labels, and must not
// claim another cluster's name.
const NameLabel = "name"

// DefaultCopyLabels are the ManagedCluster labels a cluster secret gets unless the hub admin
// says otherwise (--cluster-secret-labels): only labels the cluster cannot forge. A managed
// cluster may update its own ManagedCluster, labels included, but OCM's webhook lets no one
// change the ManagedClusterSet label without create on managedclustersets/join for both the
// old and the new set (OCM v1.2.1 pkg/registration/webhook/v1/managedcluster_validating.go,
// allowSetClusterSetLabel), which no cluster identity has (on a hub with gRPC registration,
// whose server may join every set, the chart's admission policy keeps it to the hub); and
// NameLabel is copied only when it is the cluster's name.
var DefaultCopyLabels = []string{clusterv1beta2.ClusterSetLabel, NameLabel}

// LabelFilter says which of a ManagedCluster's labels its cluster secret gets, for ApplicationSet
// cluster generators to select on. Each pattern is a label key (env, example.com/team), a key
// prefix followed by * (example.com/*, team-*), or * alone for every label. Reserved keys
// (reservedPrefixes) are never copied, and NameLabel only when its value is the cluster's name.
// The zero LabelFilter copies nothing.
type LabelFilter struct {
	patterns []string
	keys     map[string]bool
	prefixes []string
}

// ParseLabelFilter reads the patterns of --cluster-secret-labels. An empty list copies nothing.
func ParseLabelFilter(patterns []string) (LabelFilter, error) {
	f := LabelFilter{keys: map[string]bool{}}
	var errs []error
	for _, p := range patterns {
		prefix, isPrefix := strings.CutSuffix(p, "*")
		switch {
		case p == "":
			errs = append(errs, errors.New("empty pattern"))
			continue
		case strings.Contains(prefix, "*"):
			errs = append(errs, fmt.Errorf("%q: * may only end a pattern (KEY, PREFIX* or *)", p))
			continue
		case !isPrefix:
			if msgs := validation.IsQualifiedName(p); len(msgs) > 0 {
				errs = append(errs, fmt.Errorf("%q is not a label key: %s", p, strings.Join(msgs, "; ")))
				continue
			}
			if reserved(p) {
				errs = append(errs, fmt.Errorf("%q is reserved: the add-on never copies keys under %s", p, strings.Join(reservedPrefixes, ", ")))
				continue
			}
			f.keys[p] = true
		default:
			// A prefix of some label key: itself one (team*), or one once a character follows
			// (example.com/*, team-*).
			if prefix != "" && len(validation.IsQualifiedName(prefix)) > 0 && len(validation.IsQualifiedName(prefix+"x")) > 0 {
				errs = append(errs, fmt.Errorf("%q: %q begins no valid label key", p, prefix))
				continue
			}
			if reserved(prefix) {
				errs = append(errs, fmt.Errorf("%q matches only reserved keys: the add-on never copies keys under %s", p, strings.Join(reservedPrefixes, ", ")))
				continue
			}
			f.prefixes = append(f.prefixes, prefix)
		}
		f.patterns = append(f.patterns, p)
	}
	if len(errs) > 0 {
		return LabelFilter{}, errors.Join(errs...)
	}
	return f, nil
}

// String is the flag form.
func (f LabelFilter) String() string { return strings.Join(f.patterns, ",") }

// Allows says whether a label of that key may be copied, whatever its value.
func (f LabelFilter) Allows(key string) bool {
	if reserved(key) {
		return false
	}
	if f.keys[key] {
		return true
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// Select returns the labels of cluster agent's ManagedCluster its cluster secret gets.
func (f LabelFilter) Select(agent string, clusterLabels map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range clusterLabels {
		if f.Allows(k) && (k != NameLabel || v == agent) {
			out[k] = v
		}
	}
	return out
}

// othersLabels are the labels of secret that someone other than the add-on set: keys another
// field manager owns (an admin's kubectl label, apply or edit, argocd-agentctl's -l), or that
// the add-on does not own (owned is what it does, ExtractSecret). The add-on copies no
// ManagedCluster label over them: a cluster's label must not overwrite, or take over, a label
// the admin put on the secret.
func othersLabels(secret *corev1.Secret, owned *corev1ac.SecretApplyConfiguration) map[string]bool {
	out := map[string]bool{}
	if secret == nil {
		return out
	}
	for k := range secret.Labels {
		if owned == nil || owned.ObjectMetaApplyConfiguration == nil {
			out[k] = true
		} else if _, ours := owned.Labels[k]; !ours {
			out[k] = true
		}
	}
	for _, e := range secret.ManagedFields {
		if e.Manager == FieldManager && e.Operation == metav1.ManagedFieldsOperationApply && e.Subresource == "" {
			continue
		}
		for k := range labelsIn(e.FieldsV1) {
			if _, on := secret.Labels[k]; on {
				out[k] = true
			}
		}
	}
	return out
}

// labelsIn are the label keys a managedFields entry lists.
func labelsIn(fields *metav1.FieldsV1) map[string]bool {
	if fields == nil || len(fields.Raw) == 0 {
		return nil
	}
	var set struct {
		Metadata struct {
			Labels map[string]json.RawMessage `json:"f:labels"`
		} `json:"f:metadata"`
	}
	if json.Unmarshal(fields.Raw, &set) != nil {
		return nil
	}
	out := map[string]bool{}
	for k := range set.Metadata.Labels {
		if key, ok := strings.CutPrefix(k, "f:"); ok {
			out[key] = true
		}
	}
	return out
}
