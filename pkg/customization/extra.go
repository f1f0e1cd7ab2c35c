package customization

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// ExtraObjectPrefix begins the name of every extra object. OCM's work agent takes over an
// existing object of a manifest's kind, namespace and name, whatever its update strategy:
// Update overwrites it, CreateOnly and ServerSideApply (without force) leave or merge its
// content but add the work's owner reference, so that removing the manifest deletes it. The
// agent's namespace is Argo CD's, where Argo CD, its users and the registration agent keep
// objects under names the hub cannot see. Names no one else gives keep an extra object from ever
// being one of theirs.
const ExtraObjectPrefix = "argocd-agent-addon-"

// ExtraObjectLabel (value "true") and CustomizationAnnotation (the AgentCustomization's
// namespace/name) mark every extra object the add-on delivers, so that they can be told from
// everything else on a cluster. Both are in the add-on's domain, which no customisation may set.
const (
	ExtraObjectLabel        = "argocd-agent-addon.open-cluster-management.io/extra-object"
	CustomizationAnnotation = "argocd-agent-addon.open-cluster-management.io/customization"
)

// agentPod is what an extra object is checked against: where the agent runs and how its pod is
// selected.
type agentPod struct {
	namespace string
	selector  map[string]string
}

// extraKind is a kind a customisation may add, at one version whose fields check knows.
type extraKind struct {
	apiVersion string
	// newObject is the typed object the extra object must decode into, strictly: a field the
	// check does not know (a newer API's) is refused rather than passed on unchecked.
	newObject func() runtime.Object
	check     func(e *errs, p *field.Path, obj runtime.Object, agent agentPod) error
}

// extraKinds is the allowlist of extra objects. Each one acts on the agent's pod or is data for
// the added containers; none grants, exposes or configures anything else on the cluster.
var extraKinds = map[schema.GroupKind]extraKind{
	{Kind: "ConfigMap"}: {"v1", func() runtime.Object { return &corev1.ConfigMap{} }, nil},
	{Kind: "Secret"}:    {"v1", func() runtime.Object { return &corev1.Secret{} }, checkSecret},
	{Kind: "Service"}:   {"v1", func() runtime.Object { return &corev1.Service{} }, checkService},
	{Group: "networking.k8s.io", Kind: "NetworkPolicy"}: {"networking.k8s.io/v1",
		func() runtime.Object { return &networkingv1.NetworkPolicy{} }, checkNetworkPolicy},
	{Group: "policy", Kind: "PodDisruptionBudget"}: {"policy/v1",
		func() runtime.Object { return &policyv1.PodDisruptionBudget{} }, checkPodDisruptionBudget},
}

// allowlist says what extraKinds accepts, for refusals.
const allowlist = "ConfigMap, Secret of type Opaque, Service of type ClusterIP selecting the agent's pod, " +
	"NetworkPolicy and PodDisruptionBudget selecting the agent's pod (v1, networking.k8s.io/v1, policy/v1), " +
	"in the agent's namespace"

const (
	whyWorkload   = "run workloads with your own tooling: a pod here could run with the agent's identity, outside the restricted check"
	whyAutoscaler = "one agent per identity: the agent's replicas are the add-on's"
	whyRBAC       = "the agent's permissions are the ones the add-on delivers"
	whyAdmission  = "admission configuration could change the agent's pod after the add-on has checked it"
	whyArgoCD     = "Argo CD's objects would deploy, or decide what is deployed, with Argo CD's permissions"
	whyAPI        = "it would change the cluster's API for everyone"
	whyToken      = "a ServiceAccount has tokens and credentials of its own"
	whyMonitor    = "a monitor's endpoints may make Prometheus send its token or the namespace's Secrets to the scraped port (bearerTokenFile, basicAuth, authorization); deliver it with your own tooling"
	whyExposed    = "it would expose the namespace's pods outside the cluster"
	whyNamespace  = "it would apply to every pod of the namespace, Argo CD's too"
)

// refusedWhy says, for some kinds outside the allowlist, why they are not in it.
var refusedWhy = map[schema.GroupKind]string{
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
	{Kind: "ServiceAccount"}:                                                          whyToken,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}:     whyAdmission,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"}:   whyAdmission,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicy"}:        whyAdmission,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicyBinding"}: whyAdmission,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicy"}:          whyAdmission,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicyBinding"}:   whyAdmission,
	{Group: "argoproj.io", Kind: "Application"}:                                       whyArgoCD,
	{Group: "argoproj.io", Kind: "ApplicationSet"}:                                    whyArgoCD,
	{Group: "argoproj.io", Kind: "AppProject"}:                                        whyArgoCD,
	{Group: "apiregistration.k8s.io", Kind: "APIService"}:                             whyAPI,
	{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}:                 whyAPI,
	{Group: "monitoring.coreos.com", Kind: "PodMonitor"}:                              whyMonitor,
	{Group: "monitoring.coreos.com", Kind: "ServiceMonitor"}:                          whyMonitor,
	{Group: "networking.k8s.io", Kind: "Ingress"}:                                     whyExposed,
	{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute"}:                           whyExposed,
	{Kind: "LimitRange"}:                                                              whyNamespace,
	{Kind: "ResourceQuota"}:                                                           whyNamespace,
}

// extraMetadata are the metadata fields an extra object may have; the API server and the work
// agent set the others (an owner reference or a finalizer would tie it to objects the add-on
// did not create).
var extraMetadata = []string{"name", "namespace", "labels", "annotations", "creationTimestamp"}

// extraObjects decodes and checks the extra objects, and marks them. It returns them and the
// names of the Secrets among them, which alone the added containers may read.
func (e *errs) extraObjects(raw []runtime.RawExtension, rendered []runtime.Object, agent agentPod) ([]runtime.Object, map[string]bool, error) {
	path := field.NewPath("spec", "extraObjects")
	type key struct{ group, kind, namespace, name string }
	seen := map[key]bool{}
	for _, o := range rendered {
		m, err := meta.Accessor(o)
		if err != nil {
			return nil, nil, err
		}
		gvk := o.GetObjectKind().GroupVersionKind()
		seen[key{gvk.Group, gvk.Kind, m.GetNamespace(), m.GetName()}] = true
	}
	var out []runtime.Object
	secrets := map[string]bool{}
	for i, r := range raw {
		p := path.Index(i)
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(r.Raw, &u.Object); err != nil || u.Object == nil {
			return nil, nil, e.at(p, string(r.Raw), "not a Kubernetes object: %v", err)
		}
		gvk := u.GroupVersionKind()
		if gvk.Version == "" || gvk.Kind == "" {
			return nil, nil, e.at(p.Child("kind"), gvk.Kind, "apiVersion and kind are required")
		}
		if msgs := validation.IsDNS1123Subdomain(u.GetName()); len(msgs) > 0 {
			return nil, nil, e.at(p.Child("metadata", "name"), u.GetName(), "%s", strings.Join(msgs, "; "))
		}
		if ns := u.GetNamespace(); ns != "" {
			if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
				return nil, nil, e.at(p.Child("metadata", "namespace"), ns, "%s", strings.Join(msgs, "; "))
			}
		}
		gk := gvk.GroupKind()
		kind, ok := extraKinds[gk]
		if !ok {
			why := refusedWhy[gk]
			if why == "" {
				why = "it is not on the allowlist"
			}
			return nil, nil, e.at(p.Child("kind"), gvk.Kind, "%s may not be added (%s); a customisation may add only: %s", gk, why, allowlist)
		}
		if av := u.GetAPIVersion(); av != kind.apiVersion {
			return nil, nil, e.at(p.Child("apiVersion"), av, "want %s for %s: the add-on checks the fields of that version", kind.apiVersion, gk)
		}
		if _, ok := u.Object["status"]; ok {
			return nil, nil, e.at(p.Child("status"), "", "an extra object's status is its controller's to write")
		}
		md, _ := u.Object["metadata"].(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(md)) {
			if !slices.Contains(extraMetadata, k) || (k == "creationTimestamp" && md[k] != nil) {
				return nil, nil, e.at(p.Child("metadata", k), fmt.Sprint(md[k]),
					"an extra object may set only metadata.name, namespace, labels and annotations; the API server and the work agent set the rest")
			}
		}
		typed := kind.newObject()
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, typed, true); err != nil {
			return nil, nil, e.at(p, gk.String(), "not a %s %s the add-on can check: %v", kind.apiVersion, gvk.Kind, err)
		}
		if kind.check != nil {
			if err := kind.check(e, p, typed, agent); err != nil {
				return nil, nil, err
			}
		}
		if ns := u.GetNamespace(); ns != agent.namespace {
			return nil, nil, e.at(p.Child("metadata", "namespace"), ns,
				"want the agent's namespace %s: extra objects go there only (the AddOnDeploymentConfig's installNamespace)", agent.namespace)
		}
		if err := e.keys(p.Child("metadata", "labels"), u.GetLabels(), true); err != nil {
			return nil, nil, err
		}
		if err := e.keys(p.Child("metadata", "annotations"), u.GetAnnotations(), false); err != nil {
			return nil, nil, err
		}
		k := key{gvk.Group, gvk.Kind, u.GetNamespace(), u.GetName()}
		if seen[k] {
			return nil, nil, e.at(p.Child("metadata", "name"), u.GetName(), "%s is delivered already (by the add-on or an earlier extra object)", describe(u))
		}
		seen[k] = true
		if !strings.HasPrefix(u.GetName(), ExtraObjectPrefix) {
			return nil, nil, e.at(p.Child("metadata", "name"), u.GetName(),
				"want a name beginning with %s: the work agent would take over an object of another name that exists on the cluster (Argo CD's, its users'), and delete it when the customisation drops it", ExtraObjectPrefix)
		}
		if gk.Kind == "Secret" {
			secrets[u.GetName()] = true
		}
		marked := u.GetLabels()
		if marked == nil {
			marked = map[string]string{}
		}
		marked[ExtraObjectLabel] = "true"
		u.SetLabels(marked)
		annotations := u.GetAnnotations()
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[CustomizationAnnotation] = e.name
		u.SetAnnotations(annotations)
		out = append(out, u)
	}
	return out, secrets, nil
}

// checkSecret admits Opaque Secrets only: Kubernetes fills a kubernetes.io/service-account-token
// Secret with a token of the ServiceAccount its annotation names, and the other types are
// credentials the add-on does not carry (registry, TLS, basic-auth, ssh, bootstrap tokens).
func checkSecret(e *errs, p *field.Path, obj runtime.Object, _ agentPod) error {
	s := obj.(*corev1.Secret)
	if s.Type != "" && s.Type != corev1.SecretTypeOpaque {
		return e.at(p.Child("type"), string(s.Type), "an extra Secret must be of type Opaque: the other types are credentials the add-on does not carry, and Kubernetes fills a %s one with a token of the ServiceAccount its annotation names", corev1.SecretTypeServiceAccountToken)
	}
	return nil
}

// checkService admits a ClusterIP (or headless) Service of the agent's pod: one that neither
// exposes it outside the cluster nor takes traffic meant for other addresses.
func checkService(e *errs, p *field.Path, obj runtime.Object, agent agentPod) error {
	s := &obj.(*corev1.Service).Spec
	sp := p.Child("spec")
	if s.Type != "" && s.Type != corev1.ServiceTypeClusterIP {
		return e.at(sp.Child("type"), string(s.Type),
			"only ClusterIP: a NodePort or LoadBalancer Service exposes the pod outside the cluster, an ExternalName one sends a name of the namespace elsewhere")
	}
	if len(s.ExternalIPs) > 0 {
		return e.at(sp.Child("externalIPs"), strings.Join(s.ExternalIPs, ","),
			"external IPs make every node take the traffic to those addresses, whoever it is meant for (CVE-2020-8554)")
	}
	for _, ip := range append([]string{s.ClusterIP}, s.ClusterIPs...) {
		if ip != "" && ip != corev1.ClusterIPNone {
			return e.at(sp.Child("clusterIP"), ip, "leave it to the cluster (or None): a chosen address could be the one another Service is about to get")
		}
	}
	for j, port := range s.Ports {
		if port.NodePort != 0 {
			return e.at(sp.Child("ports").Index(j).Child("nodePort"), port.NodePort, "only ClusterIP Services: a node port exposes the pod outside the cluster")
		}
	}
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"externalName", s.ExternalName != ""},
		{"loadBalancerIP", s.LoadBalancerIP != ""},
		{"loadBalancerSourceRanges", len(s.LoadBalancerSourceRanges) > 0},
		{"loadBalancerClass", s.LoadBalancerClass != nil},
		{"allocateLoadBalancerNodePorts", s.AllocateLoadBalancerNodePorts != nil},
		{"externalTrafficPolicy", s.ExternalTrafficPolicy != ""},
		{"healthCheckNodePort", s.HealthCheckNodePort != 0},
	} {
		if f.set {
			return e.at(sp.Child(f.name), "", "only ClusterIP Services: it is a field of the ExternalName, NodePort and LoadBalancer ones")
		}
	}
	if !selectsAgent(s.Selector, agent) {
		return e.at(sp.Child("selector"), labels.Set(s.Selector).String(), "must select the agent's pod only: want %s among its labels", labels.Set(agent.selector))
	}
	return nil
}

// checkNetworkPolicy admits a NetworkPolicy of the agent's pod: policies add up, so one that
// selected Argo CD's pods could open them (its redis, its repo server) to the cluster.
func checkNetworkPolicy(e *errs, p *field.Path, obj runtime.Object, agent agentPod) error {
	sel := obj.(*networkingv1.NetworkPolicy).Spec.PodSelector
	if !selectsAgent(sel.MatchLabels, agent) {
		return e.at(p.Child("spec", "podSelector", "matchLabels"), labels.Set(sel.MatchLabels).String(),
			"must select the agent's pod only: want %s among its labels (policies add up: one on Argo CD's pods could open them)", labels.Set(agent.selector))
	}
	return nil
}

// checkPodDisruptionBudget admits a PodDisruptionBudget of the agent's pod: one of other pods
// could hold every node drain of the cluster.
func checkPodDisruptionBudget(e *errs, p *field.Path, obj runtime.Object, agent agentPod) error {
	sel := obj.(*policyv1.PodDisruptionBudget).Spec.Selector
	var match map[string]string
	if sel != nil {
		match = sel.MatchLabels
	}
	if !selectsAgent(match, agent) {
		return e.at(p.Child("spec", "selector", "matchLabels"), labels.Set(match).String(),
			"must select the agent's pod only: want %s among its labels (one on other pods could hold their evictions)", labels.Set(agent.selector))
	}
	return nil
}

// selectsAgent says whether a selector's labels include every label of the agent Deployment's
// selector, so that it selects no pod but the agent's.
func selectsAgent(match map[string]string, agent agentPod) bool {
	if len(agent.selector) == 0 {
		return false
	}
	for k, v := range agent.selector {
		if have, ok := match[k]; !ok || have != v {
			return false
		}
	}
	return true
}
