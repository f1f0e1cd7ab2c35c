package clustersecret

import (
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
)

// clusterLabels are what a compromised cluster may write on its own ManagedCluster: labels an
// ApplicationSet might select on, another cluster's name, and reserved keys.
var clusterLabels = map[string]string{
	"cluster.open-cluster-management.io/clusterset": "prod-set", // OCM's webhook guards it
	"name":             "cluster1",
	"env":              "prod", // forged
	"example.com/team": "payments",
	"example.org/team": "other",
	"team-a":           "yes",
	SecretTypeLabel:    "repository",
	AgentNameLabel:     "someone-else",
	ManagedLabel:       "false",
	"feature.open-cluster-management.io/addon-argocd-agent": "available",
}

func mustFilter(t *testing.T, patterns ...string) LabelFilter {
	t.Helper()
	f, err := ParseLabelFilter(patterns)
	if err != nil {
		t.Fatalf("ParseLabelFilter(%q): %v", patterns, err)
	}
	return f
}

// By default a cluster secret gets only the labels the cluster cannot forge: the ManagedClusterSet
// label, and name when it is the cluster's own. A label the cluster wrote, such as env=prod,
// is not copied.
func TestDefaultCopiesOnlyUnforgeableLabels(t *testing.T) {
	f := mustFilter(t, DefaultCopyLabels...)
	got := f.Select("cluster1", clusterLabels)
	want := map[string]string{"cluster.open-cluster-management.io/clusterset": "prod-set", "name": "cluster1"}
	if !maps.Equal(got, want) {
		t.Errorf("default copies %v, want %v", got, want)
	}
	if _, ok := got["env"]; ok {
		t.Error("the forged label env=prod was copied by default")
	}
	// Another cluster's name is a forgery: not copied.
	forged := maps.Clone(clusterLabels)
	forged["name"] = "cluster2"
	if got := f.Select("cluster1", forged); got["name"] != "" {
		t.Errorf("name=%q copied into cluster1's secret", got["name"])
	}
	// The zero filter copies nothing.
	if got := (LabelFilter{}).Select("cluster1", clusterLabels); len(got) != 0 {
		t.Errorf("the zero LabelFilter copies %v", got)
	}
	if got := mustFilter(t).Select("cluster1", clusterLabels); len(got) != 0 {
		t.Errorf("an empty list copies %v", got)
	}
}

// What the hub admin allows is copied: keys, prefixes, everything; never a reserved key, and
// never another cluster's name.
func TestAllowedLabelsAreCopied(t *testing.T) {
	for _, tc := range []struct {
		patterns []string
		want     []string
	}{
		{[]string{"env"}, []string{"env"}},
		{[]string{"env", "example.com/team"}, []string{"env", "example.com/team"}},
		{[]string{"example.com/*"}, []string{"example.com/team"}},
		{[]string{"example.*"}, []string{"example.com/team", "example.org/team"}},
		{[]string{"team-*", "env"}, []string{"env", "team-a"}},
		{[]string{"*"}, []string{"cluster.open-cluster-management.io/clusterset", "env", "example.com/team", "example.org/team", "name", "team-a"}},
		{[]string{"argocd*"}, nil}, // matches reserved keys only here: none copied
	} {
		got := mustFilter(t, tc.patterns...).Select("cluster1", clusterLabels)
		keys := slices.Sorted(maps.Keys(got))
		if !slices.Equal(keys, tc.want) {
			t.Errorf("%q copies %v, want %v", tc.patterns, keys, tc.want)
		}
		for _, k := range keys {
			if got[k] != clusterLabels[k] {
				t.Errorf("%q: %s=%q, want the cluster's %q", tc.patterns, k, got[k], clusterLabels[k])
			}
		}
	}
	forged := map[string]string{"name": "cluster2", "env": "prod"}
	if got := mustFilter(t, "*").Select("cluster1", forged); !maps.Equal(got, map[string]string{"env": "prod"}) {
		t.Errorf("* copies %v from %v: name must be the cluster's own", got, forged)
	}
}

func TestParseLabelFilter(t *testing.T) {
	for _, ok := range [][]string{
		nil, {}, {"env"}, {"example.com/team"}, {"example.com/*"}, {"team-*"}, {"*"}, {"name"}, {"example.*"},
		{"cluster.open-cluster-management.io/clusterset", "name"}, {"env", "env"}, {"argocd*"},
		{strings.Repeat("a", 63) + "*"},
	} {
		f, err := ParseLabelFilter(ok)
		if err != nil {
			t.Errorf("ParseLabelFilter(%q): %v", ok, err)
		} else if f.String() != strings.Join(ok, ",") {
			t.Errorf("String() = %q, want %q", f.String(), strings.Join(ok, ","))
		}
	}
	for _, bad := range []string{
		"", "a*b", "**", "*x", "example.com/*/team", "Bad Key", "under_score/x", "a/b/c", "-*", "-env",
		"env,team", strings.Repeat("a", 64),
		"argocd.argoproj.io/secret-type", "argocd.argoproj.io/*", "argocd-agent.argoproj-labs.io/agent-name",
		"argocd-agent-addon.open-cluster-management.io/*", "feature.open-cluster-management.io/addon-x",
	} {
		if _, err := ParseLabelFilter([]string{"env", bad}); err == nil {
			t.Errorf("ParseLabelFilter(%q) accepted it", bad)
		} else {
			t.Log(err)
		}
	}
}

// othersLabels finds the labels someone else set on a secret: by another field manager, alone
// or with the add-on, or owned by nobody; not the add-on's own.
func TestOthersLabels(t *testing.T) {
	labels := func(keys ...string) *metav1.FieldsV1 {
		raw := `{"f:metadata":{"f:labels":{`
		for i, k := range keys {
			if i > 0 {
				raw += ","
			}
			raw += `"f:` + k + `":{}`
		}
		return &metav1.FieldsV1{Raw: []byte(raw + `}},"f:data":{"f:name":{}}}`)}
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name: "cluster-cluster1", Namespace: "argocd",
		Labels: map[string]string{"ours": "1", "shared": "2", "admins": "3", "nobodys": "4", SecretTypeLabel: "cluster"},
		ManagedFields: []metav1.ManagedFieldsEntry{
			{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationApply, APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: labels("ours", "shared", SecretTypeLabel)},
			{Manager: "kubectl-label", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: labels("admins")},
			{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply, APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: labels("shared", "gone")},
		},
	}}
	owned, err := corev1ac.ExtractSecret(secret, FieldManager)
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(maps.Keys(othersLabels(secret, owned)))
	if want := []string{"admins", "nobodys", "shared"}; !slices.Equal(got, want) {
		t.Errorf("others' labels %v, want %v", got, want)
	}
	if got := othersLabels(nil, nil); len(got) != 0 {
		t.Errorf("others' labels of no secret: %v", got)
	}
}
