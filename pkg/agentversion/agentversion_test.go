package agentversion

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestPrincipalImage(t *testing.T) {
	deploy := func(cs ...corev1.Container) *appsv1.Deployment {
		d := &appsv1.Deployment{}
		d.Spec.Template.Spec.Containers = cs
		return d
	}
	for name, tc := range map[string]struct {
		d    *appsv1.Deployment
		want string
	}{
		"upstream's container name": {deploy(corev1.Container{Name: "sidecar", Image: "envoy:1"}, corev1.Container{Name: PrincipalContainer, Image: "agent:v1"}), "agent:v1"},
		"the principal command":     {deploy(corev1.Container{Name: "proxy", Image: "envoy:1"}, corev1.Container{Name: "main", Image: "agent:v2", Args: []string{"principal"}}), "agent:v2"},
		"the only container":        {deploy(corev1.Container{Name: "main", Image: "agent:v3"}), "agent:v3"},
		"none to tell":              {deploy(corev1.Container{Name: "a", Image: "x:1"}, corev1.Container{Name: "b", Image: "y:1"}), ""},
		"no container":              {deploy(), ""},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := PrincipalImage(tc.d)
			if got != tc.want || (err == nil) != (tc.want != "") {
				t.Fatalf("PrincipalImage = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	const digest = "sha256:4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
	for _, tc := range []struct {
		agent, principal string
		match, known     bool
	}{
		{"quay.io/argoprojlabs/argocd-agent:v0.9.0", "quay.io/argoprojlabs/argocd-agent:v0.9.0", true, true},
		// A registry mirror changes the repository, not the version.
		{"mirror.example.com/argocd-agent:v0.9.0", "quay.io/argoprojlabs/argocd-agent:v0.9.0", true, true},
		{"quay.io/argoprojlabs/argocd-agent:v0.8.0", "quay.io/argoprojlabs/argocd-agent:v0.9.0", false, true},
		{"quay.io/argoprojlabs/argocd-agent@" + digest, "quay.io/argoprojlabs/argocd-agent@" + digest, true, true},
		{"quay.io/argoprojlabs/argocd-agent:v0.9.0@" + digest, "quay.io/argoprojlabs/argocd-agent:v0.9.0", true, true},
		// A digest against a tag, or no version at all, says nothing.
		{"quay.io/argoprojlabs/argocd-agent@" + digest, "quay.io/argoprojlabs/argocd-agent:v0.9.0", false, false},
		{"quay.io/argoprojlabs/argocd-agent", "quay.io/argoprojlabs/argocd-agent:v0.9.0", false, false},
		{"not a reference", "quay.io/argoprojlabs/argocd-agent:v0.9.0", false, false},
	} {
		match, known := Match(tc.agent, tc.principal)
		if match != tc.match || known != tc.known {
			t.Errorf("Match(%q, %q) = %v, %v; want %v, %v", tc.agent, tc.principal, match, known, tc.match, tc.known)
		}
	}
}
