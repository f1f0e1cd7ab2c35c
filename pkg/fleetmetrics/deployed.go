package fleetmetrics

import (
	"context"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/delivered"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// What reduce keeps of a deploy ManifestWork, in the cached copy's annotations only: the agent
// image and mode it delivers. The keys never reach the API server.
const (
	imageKey = "fleetmetrics/agent-image"
	modeKey  = "fleetmetrics/agent-mode"
)

// NewDeployedCache is a cache of the add-on's deploy ManifestWorks, each reduced as it arrives
// to the agent image and mode it delivers (reduce): what a cluster's agent is given, from what
// the hub wrote (the cluster writes only a work's status), at the cost of a few strings per
// cluster rather than the works' manifests. Its own cache, since the manager's holds only the
// readiness works of the type; it runs on every replica (RunOnEveryReplica), as the gauges do.
func NewDeployedCache(cfg *rest.Config, scheme *runtime.Scheme) (cache.Cache, error) {
	return cache.New(cfg, cache.Options{Scheme: scheme, ByObject: map[client.Object]cache.ByObject{
		&workv1.ManifestWork{}: {
			Label:     labels.SelectorFromSet(labels.Set{addonv1beta1.AddonLabelKey: identity.AddonName}),
			Transform: reduce,
		},
	}})
}

// reduce turns a deploy ManifestWork into its name and the agent image and mode it delivers (a
// work without the agent's Deployment or params keeps none), and any other work of the add-on
// into its name alone.
func reduce(obj any) (any, error) {
	w, ok := obj.(*workv1.ManifestWork)
	if !ok {
		return obj, nil
	}
	out := &workv1.ManifestWork{ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: w.Name,
		ResourceVersion: w.ResourceVersion, UID: w.UID, Labels: w.Labels}}
	if !strings.HasPrefix(w.Name, delivered.DeployWorkPrefix) {
		return out, nil
	}
	objects, err := delivered.Works{*w}.Objects()
	if err != nil {
		return out, nil // nothing to tell: counted as none
	}
	agent := delivered.Find(objects)
	out.Annotations = map[string]string{}
	if image := agent.Image(); image != "" {
		out.Annotations[imageKey] = image
	}
	if agent.Params != nil && agent.Params.Data[delivered.ParamsMode] != "" {
		out.Annotations[modeKey] = agent.Params.Data[delivered.ParamsMode]
	}
	return out, nil
}

// deployedAgent is what a cluster's deploy works give its agent.
type deployedAgent struct{ image, mode string }

// deployedAgents reads, from reduced works, each cluster's agent image and mode (a cluster's
// works may split the agent's objects between them).
func deployedAgents(ctx context.Context, reader client.Reader) (map[string]deployedAgent, error) {
	works := &workv1.ManifestWorkList{}
	if err := reader.List(ctx, works); err != nil {
		return nil, err
	}
	out := map[string]deployedAgent{}
	for _, w := range works.Items {
		a := out[w.Namespace]
		if v := w.Annotations[imageKey]; v != "" {
			a.image = v
		}
		if v := w.Annotations[modeKey]; v != "" {
			a.mode = v
		}
		out[w.Namespace] = a
	}
	return out, nil
}

// RunOnEveryReplica runs a cache on the standby replicas too: a manager runs what does not say
// otherwise only while it leads.
type RunOnEveryReplica struct{ cache.Cache }

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (RunOnEveryReplica) NeedLeaderElection() bool { return false }
