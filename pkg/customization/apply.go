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
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// Volumes the add-on mounts into the agent: its client certificate and key, the CA bundle and
// its ServiceAccount token (manifests/agent).
const (
	clientTLSVolume = "client-tls"
	caVolume        = "ca"
	tokenVolume     = "kube-api-access"
)

// reservedDomain is OCM's label and annotation domain, and this add-on's
// (argocd-agent-addon.open-cluster-management.io): the work agent, the registration agent and
// the add-on act on keys there (a pod roll, a deletion orphaned).
const reservedDomain = "open-cluster-management.io"

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
	e := &errs{config: Kind + " " + c.Name}
	spec := &c.Spec
	deployment := agentDeployment(objects)
	if deployment == nil {
		return nil, fmt.Errorf("the rendered manifests lack Deployment %s", identity.AgentName)
	}
	extras, err := e.extraObjects(spec.ExtraObjects, objects)
	if err != nil {
		return nil, err
	}
	if err := e.metadata(field.NewPath("spec"), spec.Labels, spec.Annotations, append(slices.Clone(objects), extras...)); err != nil {
		return nil, err
	}
	if err := e.pod(deployment, &spec.Pod); err != nil {
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
type errs struct{ config string }

func (e *errs) at(path *field.Path, value any, format string, args ...any) *agentconfig.FieldError {
	v := fmt.Sprint(value)
	if s, ok := value.(string); ok {
		v = s
	}
	return &agentconfig.FieldError{Config: e.config, Field: path.String(), Value: v, Reason: fmt.Sprintf(format, args...)}
}

func agentDeployment(objects []runtime.Object) *appsv1.Deployment {
	for _, o := range objects {
		if d, ok := o.(*appsv1.Deployment); ok && d.Name == identity.AgentName {
			return d
		}
	}
	return nil
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
		if found && (prefix == reservedDomain || strings.HasSuffix(prefix, "."+reservedDomain)) {
			return e.at(path.Key(k), kv[k], "keys in the %s domain are OCM's and the add-on's", reservedDomain)
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

// pod adds pod-level settings, sidecars and volumes to the agent's pod template.
func (e *errs) pod(d *appsv1.Deployment, p *Pod) error {
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
		key := clientTLSSecret(spec)
		if v.Secret != nil && v.Secret.SecretName == key {
			return e.at(vp.Child("secret", "secretName"), v.Secret.SecretName, "the agent's client key is mounted into the agent only")
		}
		if v.Projected != nil {
			for j, src := range v.Projected.Sources {
				if src.Secret != nil && src.Secret.Name == key {
					return e.at(vp.Child("projected", "sources").Index(j).Child("secret", "name"), src.Secret.Name, "the agent's client key is mounted into the agent only")
				}
				if src.ServiceAccountToken != nil {
					return e.at(vp.Child("projected", "sources").Index(j).Child("serviceAccountToken"), "", "a token of the agent's ServiceAccount is the agent's")
				}
			}
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
			for j, m := range c.VolumeMounts {
				switch m.Name {
				case clientTLSVolume:
					return e.at(cp.Child("volumeMounts").Index(j).Child("name"), m.Name, "the agent's client key is mounted into the agent only")
				case tokenVolume:
					return e.at(cp.Child("volumeMounts").Index(j).Child("name"), m.Name, "the agent's ServiceAccount token is mounted into the agent only")
				}
			}
			if err := e.keepsKey(cp, &c, clientTLSSecret(spec)); err != nil {
				return err
			}
			if err := e.keepsPorts(cp, &c, spec); err != nil {
				return err
			}
			*list.target = append(*list.target, c)
		}
	}
	return nil
}

// keepsKey refuses a container that reads the agent's client key Secret through its env.
func (e *errs) keepsKey(path *field.Path, c *corev1.Container, key string) error {
	for j, env := range c.Env {
		if env.ValueFrom != nil && env.ValueFrom.SecretKeyRef != nil && env.ValueFrom.SecretKeyRef.Name == key {
			return e.at(path.Child("env").Index(j).Child("valueFrom", "secretKeyRef", "name"), key, "the agent's client key is the agent's only")
		}
	}
	for j, from := range c.EnvFrom {
		if from.SecretRef != nil && from.SecretRef.Name == key {
			return e.at(path.Child("envFrom").Index(j).Child("secretRef", "name"), key, "the agent's client key is the agent's only")
		}
	}
	return nil
}

// keepsPorts refuses a container that declares a port of the agent's: containers of a pod share
// its network, and one listening on the health port would answer the readiness probe for an
// agent that is not connected.
func (e *errs) keepsPorts(path *field.Path, c *corev1.Container, spec *corev1.PodSpec) error {
	i := slices.IndexFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == identity.AgentName })
	if i < 0 {
		return nil
	}
	for j, p := range c.Ports {
		for _, agent := range spec.Containers[i].Ports {
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
	spec := &d.Spec.Template.Spec
	i := slices.IndexFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == identity.AgentName })
	if i < 0 {
		return fmt.Errorf("the Deployment %s has no container %s", identity.AgentName, identity.AgentName)
	}
	c := &spec.Containers[i]
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

// extraObjects decodes the extra objects and refuses ones that are no Kubernetes object or
// would replace one the add-on delivers.
func (e *errs) extraObjects(raw []runtime.RawExtension, rendered []runtime.Object) ([]runtime.Object, error) {
	path := field.NewPath("spec", "extraObjects")
	type key struct{ group, kind, namespace, name string }
	seen := map[key]bool{}
	for _, o := range rendered {
		m, err := meta.Accessor(o)
		if err != nil {
			return nil, err
		}
		gvk := o.GetObjectKind().GroupVersionKind()
		seen[key{gvk.Group, gvk.Kind, m.GetNamespace(), m.GetName()}] = true
	}
	var out []runtime.Object
	for i, r := range raw {
		p := path.Index(i)
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(r.Raw, &u.Object); err != nil || u.Object == nil {
			return nil, e.at(p, string(r.Raw), "not a Kubernetes object: %v", err)
		}
		gvk := u.GroupVersionKind()
		if gvk.Version == "" || gvk.Kind == "" {
			return nil, e.at(p.Child("kind"), gvk.Kind, "apiVersion and kind are required")
		}
		if msgs := validation.IsDNS1123Subdomain(u.GetName()); len(msgs) > 0 {
			return nil, e.at(p.Child("metadata", "name"), u.GetName(), "%s", strings.Join(msgs, "; "))
		}
		if ns := u.GetNamespace(); ns != "" {
			if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
				return nil, e.at(p.Child("metadata", "namespace"), ns, "%s", strings.Join(msgs, "; "))
			}
		}
		if why, ok := refusedKinds[schema.GroupKind{Group: gvk.Group, Kind: gvk.Kind}]; ok {
			return nil, e.at(p.Child("kind"), gvk.Kind, "%s", why)
		}
		if _, ok := u.Object["status"]; ok {
			return nil, e.at(p.Child("status"), "", "an extra object's status is its controller's to write")
		}
		k := key{gvk.Group, gvk.Kind, u.GetNamespace(), u.GetName()}
		if seen[k] {
			return nil, e.at(p.Child("metadata", "name"), u.GetName(), "%s is delivered already (by the add-on or an earlier extra object)", describe(u))
		}
		seen[k] = true
		out = append(out, u)
	}
	return out, nil
}

const (
	whyWorkload   = "run workloads with your own tooling: a pod here could run with the agent's identity, outside the restricted check"
	whyAutoscaler = "one agent per identity: the agent's replicas are the add-on's"
	whyRBAC       = "the agent's permissions are the ones the add-on delivers"
	whyAdmission  = "admission configuration could change the agent's pod after the add-on has checked it"
)

// refusedKinds are the extra objects a customisation may not deliver, and why.
var refusedKinds = map[schema.GroupKind]string{
	{Kind: "Pod"}:                                                                     whyWorkload,
	{Kind: "ReplicationController"}:                                                   whyWorkload,
	{Group: "apps", Kind: "Deployment"}:                                               whyWorkload,
	{Group: "apps", Kind: "ReplicaSet"}:                                               whyWorkload,
	{Group: "apps", Kind: "StatefulSet"}:                                              whyWorkload,
	{Group: "apps", Kind: "DaemonSet"}:                                                whyWorkload,
	{Group: "batch", Kind: "Job"}:                                                     whyWorkload,
	{Group: "batch", Kind: "CronJob"}:                                                 whyWorkload,
	{Group: "autoscaling", Kind: "HorizontalPodAutoscaler"}:                           whyAutoscaler,
	{Group: "autoscaling.k8s.io", Kind: "VerticalPodAutoscaler"}:                      whyAutoscaler,
	{Group: "rbac.authorization.k8s.io", Kind: "Role"}:                                whyRBAC,
	{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"}:                         whyRBAC,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"}:                         whyRBAC,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"}:                  whyRBAC,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}:     whyAdmission,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"}:   whyAdmission,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicy"}:        whyAdmission,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicyBinding"}: whyAdmission,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicy"}:          whyAdmission,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicyBinding"}:   whyAdmission,
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
