package argocd

import (
	"os"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestPrincipalManifests renders upstream's principal manifests as the e2e hub installs them:
// every object upstream lists, in the namespace, its ServiceAccount subjects too, upstream's
// image reference, and the params given, with upstream's secret names kept.
func TestPrincipalManifests(t *testing.T) {
	if os.Getenv(InstallEnv) == "" && os.Getenv("CI") == "" {
		t.Skipf("%s is not set (hack/test-tools.sh copies it); set CI to make this a failure", InstallEnv)
	}
	objs, err := PrincipalManifests("hub-argocd", map[string]string{"principal.listen.host": "", "principal.allowed-namespaces": "a,b"})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		kinds[o.GetKind()+"/"+o.GetName()] = o
		switch o.GetKind() {
		case "ClusterRole", "ClusterRoleBinding":
			if o.GetNamespace() != "" {
				t.Errorf("%s/%s: namespace %q on a cluster-scoped object", o.GetKind(), o.GetName(), o.GetNamespace())
			}
		default:
			if o.GetNamespace() != "hub-argocd" {
				t.Errorf("%s/%s: namespace %q, want hub-argocd", o.GetKind(), o.GetName(), o.GetNamespace())
			}
		}
	}
	for _, want := range []string{"ServiceAccount/" + PrincipalName, "Role/" + PrincipalName, "ClusterRole/" + PrincipalName,
		"RoleBinding/" + PrincipalName, "ClusterRoleBinding/" + PrincipalName, "Deployment/" + PrincipalName,
		"Service/" + PrincipalName, "ConfigMap/" + PrincipalParams} {
		if kinds[want] == nil {
			t.Errorf("no %s among upstream's objects", want)
		}
	}
	if crb := kinds["ClusterRoleBinding/"+PrincipalName]; crb != nil {
		subjects, _, _ := unstructured.NestedSlice(crb.Object, "subjects")
		if len(subjects) != 1 || subjects[0].(map[string]any)["namespace"] != "hub-argocd" {
			t.Errorf("ClusterRoleBinding subjects %v, want the ServiceAccount in hub-argocd", subjects)
		}
	}
	if d := kinds["Deployment/"+PrincipalName]; d != nil {
		containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
		c := containers[0].(map[string]any)
		if c["image"] != "quay.io/argoprojlabs/argocd-agent:v0.9.0" || c["imagePullPolicy"] != "IfNotPresent" {
			t.Errorf("principal container image %v, pull policy %v", c["image"], c["imagePullPolicy"])
		}
		if sa, _, _ := unstructured.NestedString(d.Object, "spec", "template", "spec", "serviceAccountName"); sa != PrincipalName {
			t.Errorf("principal runs as %q, want its own ServiceAccount", sa)
		}
	}
	if cm := kinds["ConfigMap/"+PrincipalParams]; cm != nil {
		data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
		if data["principal.listen.host"] != "" || data["principal.allowed-namespaces"] != "a,b" {
			t.Errorf("params not applied: listen.host %q, allowed-namespaces %q", data["principal.listen.host"], data["principal.allowed-namespaces"])
		}
		if data["principal.tls.secret-name"] != PrincipalTLSSecret || data["principal.jwt.secret-name"] != JWTSecret {
			t.Errorf("upstream's secret names changed: %q, %q", data["principal.tls.secret-name"], data["principal.jwt.secret-name"])
		}
	}
}
