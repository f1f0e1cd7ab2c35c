package spokeready

import (
	"encoding/json"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"
)

func addonIn(cluster string) *addonv1beta1.ManagedClusterAddOn {
	a := &addonv1beta1.ManagedClusterAddOn{}
	a.Namespace, a.Name, a.UID = cluster, "argocd-agent", "uid-1"
	return a
}

// Every manifest is read-only and the work orphans them: the work agent must never create,
// change or delete the cluster's Argo CD.
func TestWorkOnlyReads(t *testing.T) {
	w, err := Work(addonIn("c1"), "gitops")
	if err != nil {
		t.Fatal(err)
	}
	if w.Namespace != "c1" || w.Name != WorkName || w.Labels[WorkLabel] != "true" {
		t.Errorf("work %s/%s labels %v", w.Namespace, w.Name, w.Labels)
	}
	if w.Spec.DeleteOption == nil || w.Spec.DeleteOption.PropagationPolicy != workv1.DeletePropagationPolicyTypeOrphan {
		t.Errorf("delete option %+v, want Orphan", w.Spec.DeleteOption)
	}
	if len(w.OwnerReferences) != 1 || w.OwnerReferences[0].UID != "uid-1" || w.OwnerReferences[0].Kind != "ManagedClusterAddOn" {
		t.Errorf("owner references %+v, want the add-on", w.OwnerReferences)
	}
	if len(w.Spec.Workload.Manifests) != len(parts) || len(w.Spec.ManifestConfigs) != len(parts) {
		t.Fatalf("%d manifests and %d configs, want %d each", len(w.Spec.Workload.Manifests), len(w.Spec.ManifestConfigs), len(parts))
	}
	for i, m := range w.Spec.Workload.Manifests {
		var obj struct {
			Kind     string
			Metadata struct{ Name, Namespace string }
			Spec     any
		}
		if err := json.Unmarshal(m.Raw, &obj); err != nil {
			t.Fatal(err)
		}
		cfg := w.Spec.ManifestConfigs[i]
		if cfg.UpdateStrategy == nil || cfg.UpdateStrategy.Type != workv1.UpdateStrategyTypeReadOnly {
			t.Errorf("%s %s: update strategy %+v, want ReadOnly", obj.Kind, obj.Metadata.Name, cfg.UpdateStrategy)
		}
		// A config that names no manifest leaves that manifest to the work agent's default
		// strategy, Update: group, resource, namespace and name must all be the manifest's.
		gr := map[string][2]string{"CustomResourceDefinition": {"apiextensions.k8s.io", "customresourcedefinitions"},
			"StatefulSet": {"apps", "statefulsets"}, "Deployment": {"apps", "deployments"}, "Service": {"", "services"}}[obj.Kind]
		id := cfg.ResourceIdentifier
		if id.Group != gr[0] || id.Resource != gr[1] || id.Name != obj.Metadata.Name || id.Namespace != obj.Metadata.Namespace {
			t.Errorf("config %+v does not name manifest %s %s/%s", id, obj.Kind, obj.Metadata.Namespace, obj.Metadata.Name)
		}
		if obj.Spec != nil {
			t.Errorf("%s %s carries a spec", obj.Kind, obj.Metadata.Name)
		}
		if obj.Kind != "CustomResourceDefinition" && obj.Metadata.Namespace != "gitops" {
			t.Errorf("%s %s in namespace %q, want the agent's, gitops", obj.Kind, obj.Metadata.Name, obj.Metadata.Namespace)
		}
	}
}

// report is what the work agent writes: every part existing, workloads with ready replicas.
func report(t *testing.T, namespace string, ready int64, absent ...string) *workv1.ManifestWork {
	t.Helper()
	w, err := Work(addonIn("c1"), namespace)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		id := p.id(namespace)
		status := metav1.ConditionTrue
		for _, a := range absent {
			if a == p.name {
				status = metav1.ConditionFalse
			}
		}
		m := workv1.ManifestCondition{
			ResourceMeta: workv1.ManifestResourceMeta{Group: id.Group, Resource: id.Resource, Namespace: id.Namespace, Name: id.Name},
			Conditions:   []metav1.Condition{{Type: workv1.ManifestAvailable, Status: status, Reason: "r"}},
		}
		if p.readyPath != "" && status == metav1.ConditionTrue && ready > 0 {
			m.StatusFeedbacks.Values = []workv1.FeedbackValue{{Name: readyFeedback, Value: workv1.FieldValue{Type: workv1.Integer, Integer: &ready}}}
		}
		w.Status.ResourceStatus.Manifests = append(w.Status.ResourceStatus.Manifests, m)
	}
	w.Generation = 2
	w.Status.Conditions = []metav1.Condition{{Type: workv1.WorkApplied, Status: metav1.ConditionTrue, Reason: "r", ObservedGeneration: 2}}
	return w
}

func TestEvaluate(t *testing.T) {
	notReported, _ := Work(addonIn("c1"), "argocd")
	for _, tc := range []struct {
		name    string
		work    *workv1.ManifestWork
		status  metav1.ConditionStatus
		reason  string
		mention []string
	}{
		{"not created", nil, metav1.ConditionUnknown, ReasonUnknown, nil},
		{"not reported", notReported, metav1.ConditionUnknown, ReasonUnknown, []string{"has not reported"}},
		{"all there", report(t, "argocd", 1), metav1.ConditionTrue, ReasonReady, nil},
		{"no application-controller", report(t, "argocd", 1, ApplicationController), metav1.ConditionFalse, ReasonMissing,
			[]string{"the application-controller (StatefulSet argocd/argocd-application-controller)"}},
		{"no CRD, no redis", report(t, "argocd", 1, ApplicationCRD, Redis), metav1.ConditionFalse, ReasonMissing,
			[]string{"CustomResourceDefinition applications.argoproj.io", "Service argocd/argocd-redis"}},
		{"nothing ready", report(t, "argocd", 0), metav1.ConditionFalse, ReasonNotReady,
			[]string{"argocd-application-controller) has no ready replica", "argocd-repo-server) has no ready replica"}},
		{"report of an older generation", func() *workv1.ManifestWork {
			w := report(t, "argocd", 1)
			w.Generation = 3
			return w
		}(), metav1.ConditionUnknown, ReasonUnknown, []string{"current check"}},
		// A report about another namespace is not one about this one.
		{"report of another namespace", report(t, "old", 1), metav1.ConditionUnknown, ReasonUnknown, []string{"argocd/argocd-repo-server"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Evaluate(tc.work, "argocd")
			if c.Type != ConditionArgoCDReady || c.Status != tc.status || c.Reason != tc.reason {
				t.Errorf("%s %s %s (%s), want %s %s", c.Type, c.Status, c.Reason, c.Message, tc.status, tc.reason)
			}
			for _, m := range tc.mention {
				if !strings.Contains(c.Message, m) {
					t.Errorf("message %q does not say %q", c.Message, m)
				}
			}
		})
	}
}
