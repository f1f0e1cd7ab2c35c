package harness

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/node"
)

// Agent is one cluster's Argo CD agent as it really runs: the pods of the Deployment the OCM work
// agent applied, scheduled, started and probed by the spoke's node. Nothing here starts or
// restarts it. A watcher notes each pod once its container runs, with what the spoke held for it
// then, and streams its log through the API server to <Dir>/agent-<cluster>-<n>.log (n counting
// the pods): the kubelet deletes a pod's log with the pod.
type Agent struct {
	name  string
	spoke *Spoke
	dir   string
	logs  kubernetes.Interface

	progress func(format string, args ...any)

	mu       sync.Mutex
	pods     []AgentPod
	seen     map[types.UID]bool
	held     map[types.UID]string
	restarts map[types.UID]int32
}

// AgentPod is one pod the agent ran in.
type AgentPod struct {
	Name    string
	UID     types.UID
	Started time.Time
	// Delivered is what the spoke held when the pod's container started.
	Delivered *Delivered
	// Log is the file its log is streamed to.
	Log string
}

// Agent follows cluster name's agent, from its first pod on (it may not be delivered yet).
func (e *Env) Agent(ctx context.Context, name string) (*Agent, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if a := e.agents[name]; a != nil {
		return a, nil
	}
	s := e.Spokes[name]
	if s == nil {
		return nil, fmt.Errorf("no cluster %s", name)
	}
	cs, err := kubernetes.NewForConfig(s.API.Config)
	if err != nil {
		return nil, err
	}
	a := &Agent{name: name, spoke: s, dir: e.opts.Dir, logs: cs, progress: e.opts.progress,
		seen: map[types.UID]bool{}, held: map[types.UID]string{}, restarts: map[types.UID]int32{}}
	go a.watch(ctx)
	e.agents[name] = a
	return a, nil
}

// StartAgent waits until cluster name's agent runs: the add-on delivered its objects and
// certificate, and the kubelet started the agent's container.
func (e *Env) StartAgent(ctx context.Context, name string) (*Agent, error) {
	a, err := e.Agent(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
		return a.Delivered() != nil, nil
	}); err != nil {
		return nil, fmt.Errorf("%s: no agent pod running within 3 minutes: %w; its pods: %s", name, err, a.describePods(ctx))
	}
	return a, nil
}

// Delivered is what the newest pod started with, nil before the first.
func (a *Agent) Delivered() *Delivered {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pods) == 0 {
		return nil
	}
	return a.pods[len(a.pods)-1].Delivered
}

// Restarts counts the pods after the first: each roll of the Deployment is a new pod.
func (a *Agent) Restarts() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return max(len(a.pods)-1, 0)
}

// ContainerRestarts counts the kubelet's restarts of the agent's container, over every pod:
// a crash (an expired certificate, say) restarts it inside its pod, which Restarts does not see.
func (a *Agent) ContainerRestarts() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, r := range a.restarts {
		n += int(r)
	}
	return n
}

func (a *Agent) noteRestarts(p *corev1.Pod) {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == identity.AgentName {
			a.mu.Lock()
			a.restarts[p.UID] = max(a.restarts[p.UID], cs.RestartCount)
			a.mu.Unlock()
		}
	}
}

// Pods are the pods the agent ran in, oldest first.
func (a *Agent) Pods() []AgentPod {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]AgentPod(nil), a.pods...)
}

func (a *Agent) watch(ctx context.Context) {
	for ctx.Err() == nil {
		a.notePods(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// notePods records each agent pod whose container has started, in the order they started.
func (a *Agent) notePods(ctx context.Context) {
	pods := &corev1.PodList{}
	if err := a.spoke.API.Client.List(ctx, pods, client.InNamespace(identity.DefaultInstallNamespace),
		client.MatchingLabels{"app.kubernetes.io/name": identity.AgentName}); err != nil {
		return
	}
	// In the order their containers started: a roll may start one pod while another ends.
	slices.SortFunc(pods.Items, func(x, y corev1.Pod) int {
		tx, _ := containerStarted(&x)
		ty, _ := containerStarted(&y)
		return tx.Compare(ty)
	})
	for _, p := range pods.Items {
		a.noteRestarts(&p)
		a.mu.Lock()
		seen := a.seen[p.UID]
		a.mu.Unlock()
		if seen || p.DeletionTimestamp != nil {
			continue // a pod being deleted is not what the agent runs in next
		}
		started, ok := containerStarted(&p)
		if !ok {
			a.noteHeld(&p)
			continue
		}
		d, err := readDelivered(ctx, a.spoke.API.Client, p.Namespace)
		if err != nil {
			continue // a running pod's objects are there: a read error is transient
		}
		a.mu.Lock()
		n := len(a.pods)
		log := filepath.Join(a.dir, fmt.Sprintf("agent-%s-%d.log", a.name, n))
		a.pods = append(a.pods, AgentPod{Name: p.Name, UID: p.UID, Started: started, Delivered: d, Log: log})
		a.seen[p.UID] = true
		a.mu.Unlock()
		go node.StreamLog(ctx, a.logs, p.Namespace, p.Name, identity.AgentName, log)
	}
}

// noteHeld records a pod the kubelet holds because a ConfigMap key it requires is missing: the
// content-key hold of pkg/addon, seen whenever the work agent applied the Deployment before the
// ConfigMap rendered with it.
func (a *Agent) noteHeld(p *corev1.Pod) {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason == "CreateContainerConfigError" {
			a.mu.Lock()
			_, noted := a.held[p.UID]
			if !noted {
				a.held[p.UID] = w.Message
			}
			a.mu.Unlock()
			if !noted {
				a.progress("%s: the kubelet holds agent pod %s: %s: %s", a.name, p.Name, w.Reason, w.Message)
			}
		}
	}
}

// Held are the messages of the pods the kubelet held for a missing ConfigMap key, one per pod.
func (a *Agent) Held() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, m := range a.held {
		out = append(out, m)
	}
	return out
}

func containerStarted(p *corev1.Pod) (time.Time, bool) {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == identity.AgentName && cs.State.Running != nil {
			return cs.State.Running.StartedAt.Time, true
		}
	}
	return time.Time{}, false
}

// describePods says what the agent's pods wait for, for a timeout's message.
func (a *Agent) describePods(ctx context.Context) string {
	pods := &corev1.PodList{}
	if err := a.spoke.API.Client.List(ctx, pods, client.InNamespace(identity.DefaultInstallNamespace),
		client.MatchingLabels{"app.kubernetes.io/name": identity.AgentName}); err != nil {
		return err.Error()
	}
	if len(pods.Items) == 0 {
		return "none"
	}
	out := ""
	for _, p := range pods.Items {
		out += fmt.Sprintf("%s: phase %s", p.Name, p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				out += fmt.Sprintf(", %s waiting: %s %s", cs.Name, w.Reason, w.Message)
			}
		}
		out += "; "
	}
	return out
}
