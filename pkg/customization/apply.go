package customization

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/delivered"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// Volumes the add-on mounts into the agent: its client certificate and key, the CA bundle and
// its ServiceAccount token (manifests/agent).
const (
	clientTLSVolume = "client-tls"
	caVolume        = "ca"
	tokenVolume     = "kube-api-access"
)

// reservedDomains are label and annotation domains whose keys others act on, and why.
var reservedDomains = []struct{ domain, why string }{
	// OCM's, and this add-on's (argocd-agent-addon.open-cluster-management.io): the work agent,
	// the registration agent and the add-on act on keys there (a pod roll, a deletion orphaned,
	// a manifest sent to another cluster).
	{"open-cluster-management.io", "keys in the open-cluster-management.io domain are OCM's and the add-on's"},
	// Argo CD's: it reads Secrets by their argocd.argoproj.io/secret-type label (a cluster to
	// deploy to, a repository's credentials) and tracks and prunes objects by its labels.
	{"argoproj.io", "keys in the argoproj.io domain are Argo CD's: it reads Secrets by them (clusters, repositories) and tracks and prunes objects by them"},
}

// tokenAnnotationPrefix begins the annotations that tie a Secret to a ServiceAccount whose
// token Kubernetes then puts in it.
const tokenAnnotationPrefix = "kubernetes.io/service-account."

// Customization is one AgentCustomization, as a render uses it.
type Customization struct {
	// Name is "namespace/name", for errors.
	Name string
	Spec Spec
}

// Apply adds c to the rendered objects, in place, and appends its extra objects. It returns a
// *agentconfig.FieldError naming the first field it refuses, and then objects are not to be
// delivered.
func (c *Customization) Apply(objects []runtime.Object) ([]runtime.Object, error) {
	e := &errs{config: Kind + " " + c.Name, name: c.Name}
	spec := &c.Spec
	deployment := delivered.Find(objects).Deployment
	if deployment == nil {
		return nil, fmt.Errorf("the rendered manifests lack Deployment %s", identity.AgentName)
	}
	agent := agentPod{namespace: deployment.Namespace}
	if deployment.Spec.Selector != nil {
		agent.selector = deployment.Spec.Selector.MatchLabels
	}
	extras, secrets, err := e.extraObjects(spec.ExtraObjects, objects, agent)
	if err != nil {
		return nil, err
	}
	if err := e.metadata(field.NewPath("spec"), spec.Labels, spec.Annotations, append(slices.Clone(objects), extras...)); err != nil {
		return nil, err
	}
	if err := e.pod(deployment, &spec.Pod, secrets); err != nil {
		return nil, err
	}
	if err := e.agent(deployment, &spec.Agent, spec.Pod.Volumes); err != nil {
		return nil, err
	}
	if err := e.restricted(deployment); err != nil {
		return nil, err
	}
	return append(objects, extras...), nil
}

// errs builds the FieldErrors of one customisation.
type errs struct {
	// config is "AgentCustomization namespace/name", name "namespace/name".
	config, name string
}

func (e *errs) at(path *field.Path, value any, format string, args ...any) *agentconfig.FieldError {
	v := fmt.Sprint(value)
	if s, ok := value.(string); ok {
		v = s
	}
	return &agentconfig.FieldError{Config: e.config, Field: path.String(), Value: v, Reason: fmt.Sprintf(format, args...)}
}

// metadata adds labels and annotations to every object. A key the object already has, or one
// in OCM's domain, is refused: the add-on's own labels select the agent's pods and its
// annotations roll them.
func (e *errs) metadata(path *field.Path, labels, annotations map[string]string, objects []runtime.Object) error {
	if err := e.keys(path.Child("labels"), labels, true); err != nil {
		return err
	}
	if err := e.keys(path.Child("annotations"), annotations, false); err != nil {
		return err
	}
	for _, o := range objects {
		if _, ok := o.(*corev1.Namespace); ok {
			continue // Argo CD's too: its labels (Pod Security, mesh injection) are not ours to add
		}
		m, err := meta.Accessor(o)
		if err != nil {
			return err
		}
		l, err := e.merge(path.Child("labels"), m.GetLabels(), labels, describe(o))
		if err != nil {
			return err
		}
		a, err := e.merge(path.Child("annotations"), m.GetAnnotations(), annotations, describe(o))
		if err != nil {
			return err
		}
		m.SetLabels(l)
		m.SetAnnotations(a)
	}
	return nil
}

// keys validates label (or annotation) keys and values, and refuses OCM's domain.
func (e *errs) keys(path *field.Path, kv map[string]string, labels bool) error {
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		var problems field.ErrorList
		if labels {
			problems = metav1validation.ValidateLabels(map[string]string{k: kv[k]}, path)
		} else if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			problems = field.ErrorList{field.Invalid(path.Key(k), k, strings.Join(msgs, "; "))}
		}
		if len(problems) > 0 {
			return e.at(path.Key(k), kv[k], "%s", problems.ToAggregate().Error())
		}
		prefix, _, found := strings.Cut(k, "/")
		for _, r := range reservedDomains {
			if found && (prefix == r.domain || strings.HasSuffix(prefix, "."+r.domain)) {
				return e.at(path.Key(k), kv[k], "%s", r.why)
			}
		}
		if strings.HasPrefix(k, tokenAnnotationPrefix) {
			return e.at(path.Key(k), kv[k], "it ties a Secret to a ServiceAccount, whose token Kubernetes then puts in it")
		}
	}
	return nil
}

// merge adds add to have; a key have holds already is refused.
func (e *errs) merge(path *field.Path, have, add map[string]string, what string) (map[string]string, error) {
	if len(add) == 0 {
		return have, nil
	}
	out := maps.Clone(have)
	if out == nil {
		out = make(map[string]string, len(add))
	}
	for _, k := range slices.Sorted(maps.Keys(add)) {
		if old, ok := have[k]; ok {
			return nil, e.at(path.Key(k), add[k], "%s already has it (%q), set by the add-on", what, old)
		}
		out[k] = add[k]
	}
	return out, nil
}

// pod adds pod-level settings, sidecars and volumes to the agent's pod template. secrets are the
// customisation's extra Secrets, the only ones its volumes and containers may read.
func (e *errs) pod(d *appsv1.Deployment, p *Pod, secrets map[string]bool) error {
	path := field.NewPath("spec", "pod")
	tmpl := &d.Spec.Template
	if err := e.keys(path.Child("labels"), p.Labels, true); err != nil {
		return err
	}
	if err := e.keys(path.Child("annotations"), p.Annotations, false); err != nil {
		return err
	}
	var err error
	if tmpl.Labels, err = e.merge(path.Child("labels"), tmpl.Labels, p.Labels, "the agent's pod"); err != nil {
		return err
	}
	if tmpl.Annotations, err = e.merge(path.Child("annotations"), tmpl.Annotations, p.Annotations, "the agent's pod"); err != nil {
		return err
	}
	spec := &tmpl.Spec
	if p.PriorityClassName != "" {
		if msgs := validation.IsDNS1123Subdomain(p.PriorityClassName); len(msgs) > 0 {
			return e.at(path.Child("priorityClassName"), p.PriorityClassName, "%s", strings.Join(msgs, "; "))
		}
		spec.PriorityClassName = p.PriorityClassName
	}
	for i, s := range p.ImagePullSecrets {
		if msgs := validation.IsDNS1123Subdomain(s.Name); len(msgs) > 0 {
			return e.at(path.Child("imagePullSecrets").Index(i).Child("name"), s.Name, "%s", strings.Join(msgs, "; "))
		}
		if !slices.Contains(spec.ImagePullSecrets, s) {
			spec.ImagePullSecrets = append(spec.ImagePullSecrets, s)
		}
	}
	if sc := p.SecurityContext; sc != nil {
		if spec.SecurityContext == nil {
			spec.SecurityContext = &corev1.PodSecurityContext{}
		}
		psc := spec.SecurityContext
		set(&psc.RunAsUser, sc.RunAsUser)
		set(&psc.RunAsGroup, sc.RunAsGroup)
		set(&psc.FSGroup, sc.FSGroup)
		set(&psc.FSGroupChangePolicy, sc.FSGroupChangePolicy)
		set(&psc.SELinuxOptions, sc.SELinuxOptions)
		set(&psc.AppArmorProfile, sc.AppArmorProfile)
		psc.SupplementalGroups = append(psc.SupplementalGroups, sc.SupplementalGroups...)
	}
	for i, v := range p.Volumes {
		vp := path.Child("volumes").Index(i)
		if msgs := validation.IsDNS1123Label(v.Name); len(msgs) > 0 {
			return e.at(vp.Child("name"), v.Name, "%s", strings.Join(msgs, "; "))
		}
		if slices.ContainsFunc(spec.Volumes, func(have corev1.Volume) bool { return have.Name == v.Name }) {
			return e.at(vp.Child("name"), v.Name, "the agent's pod has a volume of that name already")
		}
		if err := e.volumeSource(vp, &v.VolumeSource, clientTLSSecret(spec), secrets); err != nil {
			return err
		}
		spec.Volumes = append(spec.Volumes, v)
	}
	for _, list := range []struct {
		name   string
		add    []corev1.Container
		target *[]corev1.Container
	}{{"containers", p.Containers, &spec.Containers}, {"initContainers", p.InitContainers, &spec.InitContainers}} {
		for i, c := range list.add {
			cp := path.Child(list.name).Index(i)
			if msgs := validation.IsDNS1123Label(c.Name); len(msgs) > 0 {
				return e.at(cp.Child("name"), c.Name, "%s", strings.Join(msgs, "; "))
			}
			if c.Image == "" {
				return e.at(cp.Child("image"), "", "required")
			}
			taken := func(have corev1.Container) bool { return have.Name == c.Name }
			if slices.ContainsFunc(spec.Containers, taken) || slices.ContainsFunc(spec.InitContainers, taken) {
				return e.at(cp.Child("name"), c.Name, "the agent's pod has a container of that name already")
			}
			if err := e.noCredentials(cp, &c, p.Volumes, clientTLSSecret(spec), secrets); err != nil {
				return err
			}
			if err := e.keepsPorts(cp, &c, delivered.Agent{Deployment: d}.Container()); err != nil {
				return err
			}
			*list.target = append(*list.target, c)
		}
	}
	return nil
}

// keepsPorts refuses a container that declares a port of the agent's: containers of a pod share
// its network, and one listening on the health port would answer the readiness probe for an
// agent that is not connected.
func (e *errs) keepsPorts(path *field.Path, c *corev1.Container, agentContainer *corev1.Container) error {
	if agentContainer == nil {
		return nil
	}
	for j, p := range c.Ports {
		for _, agent := range agentContainer.Ports {
			if p.ContainerPort == agent.ContainerPort {
				return e.at(path.Child("ports").Index(j).Child("containerPort"), p.ContainerPort,
					"the agent listens on it (%s); the readiness probe on the health port is what makes Available mean connected", agent.Name)
			}
		}
	}
	return nil
}

// systemPaths are where the agent's image keeps its binary, its libraries and certificates, and
// where Kubernetes mounts the ServiceAccount token: nothing is mounted over, under or above them.
var systemPaths = []string{"/bin", "/sbin", "/usr", "/lib", "/lib64", "/etc", "/app", "/var/run", "/run", "/proc", "/dev", "/sys"}

// clientTLSSecret is the Secret the agent's client certificate is mounted from.
func clientTLSSecret(spec *corev1.PodSpec) string {
	for _, v := range spec.Volumes {
		if v.Name == clientTLSVolume && v.Secret != nil {
			return v.Secret.SecretName
		}
	}
	return ""
}

// agent adds env, args and volume mounts to the agent container.
func (e *errs) agent(d *appsv1.Deployment, a *Container, volumes []corev1.Volume) error {
	fp := field.NewPath("spec", "agent")
	c := delivered.Agent{Deployment: d}.Container()
	if c == nil {
		return fmt.Errorf("the Deployment %s has no container %s", identity.AgentName, identity.AgentName)
	}
	for j, env := range a.Env {
		ep := fp.Child("env").Index(j).Child("name")
		if msgs := validation.IsEnvVarName(env.Name); len(msgs) > 0 {
			return e.at(ep, env.Name, "%s", strings.Join(msgs, "; "))
		}
		if why := protectedEnv(env.Name); why != "" {
			return e.at(ep, env.Name, "the agent's setting may not be changed: %s", why)
		}
		if slices.ContainsFunc(c.Env, func(have corev1.EnvVar) bool { return have.Name == env.Name }) {
			return e.at(ep, env.Name, "the add-on sets this variable")
		}
		c.Env = append(c.Env, env)
	}
	for j, arg := range a.Args {
		if flag, why := protectedFlag(arg); why != "" {
			return e.at(fp.Child("args").Index(j), arg, "flag %s may not be given: %s", flag, why)
		}
	}
	c.Args = append(c.Args, a.Args...)
	for j, m := range a.VolumeMounts {
		mp := fp.Child("volumeMounts").Index(j)
		if !slices.ContainsFunc(volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) {
			return e.at(mp.Child("name"), m.Name, "not a volume of spec.pod.volumes")
		}
		if !strings.HasPrefix(m.MountPath, "/") || path.Clean(m.MountPath) != m.MountPath || m.MountPath == "/" {
			return e.at(mp.Child("mountPath"), m.MountPath, "want a clean absolute path other than /")
		}
		overlaps := func(p string) bool {
			return p == m.MountPath || strings.HasPrefix(m.MountPath, p+"/") || strings.HasPrefix(p, m.MountPath+"/")
		}
		if slices.ContainsFunc(c.VolumeMounts, func(have corev1.VolumeMount) bool { return overlaps(path.Clean(have.MountPath)) }) {
			return e.at(mp.Child("mountPath"), m.MountPath, "the add-on mounts the agent's certificates or its ServiceAccount token there")
		}
		if i := slices.IndexFunc(systemPaths, overlaps); i >= 0 {
			return e.at(mp.Child("mountPath"), m.MountPath, "it would cover %s of the agent's image or its ServiceAccount token", systemPaths[i])
		}
		c.VolumeMounts = append(c.VolumeMounts, m)
	}
	return nil
}

// restricted checks the customised pod against the restricted Pod Security Standard, as
// Kubernetes' own admission does, so that a customisation cannot make the agent's pod a
// privileged one, nor one a namespace enforcing the standard would refuse.
func (e *errs) restricted(d *appsv1.Deployment) error {
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		return err
	}
	tmpl := &d.Spec.Template
	results := evaluator.EvaluatePod(api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}, &tmpl.ObjectMeta, &tmpl.Spec)
	for _, r := range results {
		if !r.Allowed {
			return e.at(field.NewPath("spec", "pod"), r.ForbiddenDetail,
				"the agent's pod would not meet the restricted Pod Security Standard: %s", r.ForbiddenReason)
		}
	}
	return nil
}

// describe names an object for people: Kind namespace/name.
func describe(o runtime.Object) string {
	m, err := meta.Accessor(o)
	if err != nil {
		return fmt.Sprintf("%T", o)
	}
	kind := o.GetObjectKind().GroupVersionKind().Kind
	if kind == "" {
		kind = strings.TrimPrefix(fmt.Sprintf("%T", o), "*v1.")
	}
	if m.GetNamespace() == "" {
		return kind + " " + m.GetName()
	}
	return kind + " " + m.GetNamespace() + "/" + m.GetName()
}

func set[T any](dst **T, v *T) {
	if v != nil {
		*dst = v
	}
}
