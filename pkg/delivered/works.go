package delivered

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// DeployWorkPrefix starts the names of the ManifestWorks addon-framework delivers the agent
// in: addon-<addon>-deploy-<n>, n from 0, split by size.
const DeployWorkPrefix = "addon-" + identity.AddonName + "-deploy-"

// Works is a cluster's deploy ManifestWorks, in order.
type Works []workv1.ManifestWork

// ReadWorks lists cluster's deploy ManifestWorks; none is an empty list.
func ReadWorks(ctx context.Context, reader client.Reader, cluster string) (Works, error) {
	list := &workv1.ManifestWorkList{}
	if err := reader.List(ctx, list, client.InNamespace(cluster), client.MatchingLabels{addonv1beta1.AddonLabelKey: identity.AddonName}); err != nil {
		return nil, fmt.Errorf("reading the ManifestWorks of cluster %s: %w", cluster, err)
	}
	items := slices.DeleteFunc(list.Items, func(w workv1.ManifestWork) bool { return !strings.HasPrefix(w.Name, DeployWorkPrefix) })
	slices.SortFunc(items, func(a, b workv1.ManifestWork) int { return strings.Compare(a.Name, b.Name) })
	return Works(items), nil
}

// Applied says whether the spoke's work agent reports every work applied at its current
// generation; false with no work.
func (ws Works) Applied() bool {
	for _, w := range ws {
		c := meta.FindStatusCondition(w.Status.Conditions, workv1.WorkApplied)
		if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != w.Generation {
			return false
		}
	}
	return len(ws) > 0
}

// Objects decodes the objects the works deliver, in order.
func (ws Works) Objects() ([]runtime.Object, error) {
	decoder := clientgoscheme.Codecs.UniversalDeserializer()
	var objects []runtime.Object
	for _, w := range ws {
		for i, m := range w.Spec.Workload.Manifests {
			obj, _, err := decoder.Decode(m.Raw, nil, nil)
			if runtime.IsNotRegisteredError(err) {
				// A kind of no built-in API, an AgentCustomization's extra object (a PodMonitor):
				// kept as it is.
				u := &unstructured.Unstructured{}
				if err = u.UnmarshalJSON(m.Raw); err == nil {
					obj = u
				}
			}
			if err != nil {
				return nil, fmt.Errorf("ManifestWork %s/%s manifest %d: %w", w.Namespace, w.Name, i, err)
			}
			objects = append(objects, obj)
		}
	}
	return objects, nil
}
