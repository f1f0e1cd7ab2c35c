// Package spokeready tells, per managed cluster, whether the cluster's Argo CD can deploy what
// its agent receives: the agent connects to the principal without it (Available), but deploys
// nothing without Argo CD's CRDs, application-controller, repo-server and redis.
//
// The signal comes from OCM's work agent on the cluster: a ManifestWork in the cluster's
// namespace whose manifests are all read-only (the work agent never creates, changes or, with
// orphaning, deletes them) and report whether each exists and how many replicas are ready. The
// cluster writes that report itself, so a compromised cluster can misreport only about itself,
// and nothing decides on it: it is a condition for people and `status`.
package spokeready

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"
)

// Condition on the ManagedClusterAddOn: True when everything the agent's Argo CD needs is on the
// cluster and ready; False with ReasonMissing or ReasonNotReady, the message naming what; Unknown
// with ReasonUnknown until the cluster's work agent reports.
const (
	ConditionArgoCDReady = "ArgoCDReady"
	ReasonReady          = "ArgoCDReady"
	ReasonMissing        = "ArgoCDMissing"
	ReasonNotReady       = "ArgoCDNotReady"
	ReasonUnknown        = "ArgoCDStatusUnknown"
)

// WorkName is the read-only ManifestWork in each cluster's namespace, and WorkLabel marks it (not
// addon-framework's add-on label: its deploy controller removes works it did not render).
const (
	WorkName  = "argocd-agent-spoke-readiness"
	WorkLabel = "argocd-agent-addon.open-cluster-management.io/spoke-readiness"
)

// SpecHashAnnotation holds the hash of the spec Work made: what the controller compares.
const SpecHashAnnotation = "argocd-agent-addon.open-cluster-management.io/spec-hash"

// Upstream's names of what the agent's Argo CD runs, in the agent's namespace.
const (
	ApplicationCRD        = "applications.argoproj.io"
	ApplicationController = "argocd-application-controller"
	RepoServer            = "argocd-repo-server"
	Redis                 = "argocd-redis"
)

// readyFeedback is the status feedback value that counts a workload's ready replicas.
const readyFeedback = "ready"

// part is one thing the cluster's Argo CD needs.
type part struct {
	// what names it for people.
	what             string
	apiVersion, kind string
	group, resource  string
	namespaced       bool
	name             string
	// readyPath, if set, is the JSONPath of the replicas that must be at least one.
	readyPath string
}

// parts are what the agent's Argo CD needs, the namespaced ones in the agent's namespace.
var parts = []part{
	{what: "Argo CD's Application CRD", apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition",
		group: "apiextensions.k8s.io", resource: "customresourcedefinitions", name: ApplicationCRD},
	{what: "the application-controller", apiVersion: "apps/v1", kind: "StatefulSet", group: "apps", resource: "statefulsets",
		namespaced: true, name: ApplicationController, readyPath: ".status.readyReplicas"},
	{what: "the repo-server", apiVersion: "apps/v1", kind: "Deployment", group: "apps", resource: "deployments",
		namespaced: true, name: RepoServer, readyPath: ".status.readyReplicas"},
	{what: "redis", apiVersion: "v1", kind: "Service", resource: "services", namespaced: true, name: Redis},
}

func (p part) id(namespace string) workv1.ResourceIdentifier {
	id := workv1.ResourceIdentifier{Group: p.group, Resource: p.resource, Name: p.name}
	if p.namespaced {
		id.Namespace = namespace
	}
	return id
}

func (p part) describe(namespace string) string {
	if p.namespaced {
		return fmt.Sprintf("%s (%s %s/%s)", p.what, p.kind, namespace, p.name)
	}
	return fmt.Sprintf("%s (%s %s)", p.what, p.kind, p.name)
}

// Work is the read-only ManifestWork that has the work agent of addon's cluster report on
// Argo CD in namespace, the agent's. It is owned by the ManagedClusterAddOn: gone with it.
func Work(addon *addonv1beta1.ManagedClusterAddOn, namespace string) (*workv1.ManifestWork, error) {
	w := &workv1.ManifestWork{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: addon.Namespace, Name: WorkName,
			Labels: map[string]string{WorkLabel: "true"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: addonv1beta1.GroupVersion.String(), Kind: "ManagedClusterAddOn",
				Name: addon.Name, UID: addon.UID, BlockOwnerDeletion: ptr.To(false),
			}},
		},
		Spec: workv1.ManifestWorkSpec{
			// Read-only manifests are listed among the work's applied resources; the work agent
			// deletes only what it owns, which they are not, and Orphan says so explicitly:
			// nothing of the cluster's Argo CD may go with this work.
			DeleteOption: &workv1.DeleteOption{PropagationPolicy: workv1.DeletePropagationPolicyTypeOrphan},
		},
	}
	for _, p := range parts {
		meta := map[string]any{"name": p.name}
		if p.namespaced {
			meta["namespace"] = namespace
		}
		raw, err := json.Marshal(map[string]any{"apiVersion": p.apiVersion, "kind": p.kind, "metadata": meta})
		if err != nil {
			return nil, err
		}
		w.Spec.Workload.Manifests = append(w.Spec.Workload.Manifests, workv1.Manifest{RawExtension: runtime.RawExtension{Raw: raw}})
		cfg := workv1.ManifestConfigOption{
			ResourceIdentifier: p.id(namespace),
			UpdateStrategy:     &workv1.UpdateStrategy{Type: workv1.UpdateStrategyTypeReadOnly},
		}
		if p.readyPath != "" {
			cfg.FeedbackRules = []workv1.FeedbackRule{{Type: workv1.JSONPathsType,
				JsonPaths: []workv1.JsonPath{{Name: readyFeedback, Path: p.readyPath}}}}
		}
		w.Spec.ManifestConfigs = append(w.Spec.ManifestConfigs, cfg)
	}
	spec, err := json.Marshal(w.Spec)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spec)
	w.Annotations = map[string]string{SpecHashAnnotation: hex.EncodeToString(sum[:])}
	return w, nil
}

// Evaluate reads the work agent's report in work (nil: not created yet) into the condition. It
// is the last report: a cluster that stops reporting (unreachable; its add-on's Available then
// turns Unknown) keeps its last ArgoCDReady.
func Evaluate(work *workv1.ManifestWork, namespace string) metav1.Condition {
	cond := metav1.Condition{Type: ConditionArgoCDReady, Status: metav1.ConditionUnknown, Reason: ReasonUnknown}
	if work == nil {
		cond.Message = "the cluster's report on Argo CD has not been asked for yet"
		return cond
	}
	// A report is of the work's current spec once the work agent has applied that generation.
	if applied := meta.FindStatusCondition(work.Status.Conditions, workv1.WorkApplied); applied == nil || applied.ObservedGeneration != work.Generation {
		cond.Message = "the cluster's work agent has not reported on the current check yet"
		return cond
	}
	var missing, notReady, unreported []string
	for _, p := range parts {
		m, ok := manifestStatus(work, p.id(namespace))
		if !ok {
			unreported = append(unreported, p.describe(namespace))
			continue
		}
		available := meta.FindStatusCondition(m.Conditions, workv1.ManifestAvailable)
		switch {
		case available == nil || available.Status == metav1.ConditionUnknown:
			unreported = append(unreported, p.describe(namespace))
		case available.Status == metav1.ConditionFalse:
			missing = append(missing, p.describe(namespace))
		case p.readyPath != "" && readyReplicas(m) < 1:
			notReady = append(notReady, p.describe(namespace)+" has no ready replica")
		}
	}
	switch {
	case len(missing) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonMissing
		cond.Message = "not on the cluster: " + strings.Join(missing, ", ") + "; the agent connects but deploys nothing"
	case len(notReady) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonNotReady
		cond.Message = strings.Join(notReady, ", ")
	case len(unreported) > 0:
		cond.Message = "the cluster's work agent has not reported on " + strings.Join(unreported, ", ")
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonReady
		cond.Message = "Argo CD's Application CRD, application-controller, repo-server and redis are on the cluster and ready"
	}
	return cond
}

func manifestStatus(work *workv1.ManifestWork, id workv1.ResourceIdentifier) (workv1.ManifestCondition, bool) {
	for _, m := range work.Status.ResourceStatus.Manifests {
		r := m.ResourceMeta
		if r.Group == id.Group && r.Resource == id.Resource && r.Namespace == id.Namespace && r.Name == id.Name {
			return m, true
		}
	}
	return workv1.ManifestCondition{}, false
}

// readyReplicas is the reported count; a workload with none ready has no such field.
func readyReplicas(m workv1.ManifestCondition) int64 {
	for _, v := range m.StatusFeedbacks.Values {
		if v.Name == readyFeedback && v.Value.Integer != nil {
			return *v.Value.Integer
		}
	}
	return 0
}
