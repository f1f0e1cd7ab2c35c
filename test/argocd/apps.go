package argocd

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/node"
)

// Guestbook is the app the tests and the demo deploy, as the files of a source: a ConfigMap
// saying which revision it is and a Deployment of the nodes' pause image, whose health Argo CD
// reads from its rollout on the cluster's node. Both are named guestbook.
func Guestbook(revision string) map[string]string {
	return map[string]string{
		"configmap.yaml": fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: guestbook
data:
  revision: %q
`, revision),
		"deployment.yaml": fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: guestbook
spec:
  replicas: 1
  selector:
    matchLabels: {app: guestbook}
  template:
    metadata:
      labels: {app: guestbook}
    spec:
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: guestbook
        image: %s
        imagePullPolicy: Never
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`, node.PauseImage),
	}
}

// GuestbookRepo is the repository the guestbook is pushed to in a SourceRegistry.
const GuestbookRepo = "apps/guestbook"

// HubApplication is an Application for the managed agent of cluster, in the cluster's namespace
// on the hub (argocd-agent's namespace-based mapping), synced automatically into the namespace
// guestbook, deleting what it deployed when it is deleted.
func HubApplication(cluster, name, repoURL, revision string) *unstructured.Unstructured {
	app := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"namespace": cluster, "name": name,
			"finalizers": []any{"resources-finalizer.argocd.argoproj.io"}},
		"spec": map[string]any{
			"project": "default",
			"source":  map[string]any{"repoURL": repoURL, "targetRevision": revision, "path": "."},
			"destination": map[string]any{
				"server": "https://kubernetes.default.svc", "namespace": "guestbook",
			},
			"syncPolicy": map[string]any{
				"automated":   map[string]any{"prune": true, "selfHeal": true},
				"syncOptions": []any{"CreateNamespace=true"},
			},
		},
	}}
	app.SetGroupVersionKind(ApplicationGVK)
	return app
}

// AppStatus is what the hub shows of an Application.
type AppStatus struct {
	Sync, Health, Revision string
	Conditions             []string
}

func (s AppStatus) String() string {
	return fmt.Sprintf("sync %q health %q revision %q conditions %v", s.Sync, s.Health, s.Revision, s.Conditions)
}

// ReadAppStatus reads the Application namespace/name's sync, health, revision and conditions.
func ReadAppStatus(ctx context.Context, c client.Client, namespace, name string) (AppStatus, error) {
	app := &unstructured.Unstructured{}
	app.SetGroupVersionKind(ApplicationGVK)
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, app); err != nil {
		return AppStatus{}, err
	}
	var s AppStatus
	s.Sync, _, _ = unstructured.NestedString(app.Object, "status", "sync", "status")
	s.Revision, _, _ = unstructured.NestedString(app.Object, "status", "sync", "revision")
	s.Health, _, _ = unstructured.NestedString(app.Object, "status", "health", "status")
	conds, _, _ := unstructured.NestedSlice(app.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok {
			s.Conditions = append(s.Conditions, fmt.Sprintf("%v: %v", m["type"], m["message"]))
		}
	}
	return s, nil
}
