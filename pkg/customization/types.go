// Package customization changes what the add-on delivers to a cluster without a new build: an
// AgentCustomization, an OCM config of the add-on like an AddOnDeploymentConfig, adds labels,
// annotations, agent env and args, pod settings, sidecars and extra objects to the rendered
// manifests. It can only add to them, and what it adds is checked against what the add-on
// guarantees (docs/design.md#customisation): a customisation that would break one is refused
// as a whole, with the field and the reason, and the cluster keeps its last good manifests.
package customization

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The AgentCustomization config type (charts/argocd-agent-addon/crds).
const (
	Group    = "argocd-agent-addon.open-cluster-management.io"
	Version  = "v1alpha1"
	Kind     = "AgentCustomization"
	Resource = "agentcustomizations"
)

// GVR is the config type as ClusterManagementAddOns and addon-framework name it.
var GVR = schema.GroupVersionResource{Group: Group, Version: Version, Resource: Resource}

// GVK is its kind.
var GVK = schema.GroupVersionKind{Group: Group, Version: Version, Kind: Kind}

// Spec is an AgentCustomization's spec. Every field adds to the rendered manifests; none
// replaces or removes what the add-on renders.
type Spec struct {
	// Labels and Annotations are added to every object the add-on delivers but its Namespace,
	// which Argo CD shares, and to the ones in ExtraObjects.
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Pod changes the agent Deployment's pod template.
	Pod Pod `json:"pod,omitempty"`
	// Agent changes the agent container.
	Agent Container `json:"agent,omitempty"`
	// ExtraObjects are delivered with the agent, in the same ManifestWork: a NetworkPolicy, a
	// PodDisruptionBudget, a Service of the agent's pod, a ConfigMap or an Opaque Secret for a
	// sidecar. Only the kinds of extraKinds are accepted, in the agent's namespace (not
	// defaulted), named with ExtraObjectPrefix; the add-on marks each with ExtraObjectLabel.
	ExtraObjects []runtime.RawExtension `json:"extraObjects,omitempty"`
}

// Pod is what may be added to the agent's pod.
type Pod struct {
	Labels            map[string]string             `json:"labels,omitempty"`
	Annotations       map[string]string             `json:"annotations,omitempty"`
	PriorityClassName string                        `json:"priorityClassName,omitempty"`
	ImagePullSecrets  []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
	// SecurityContext fields set here replace the add-on's; the pod must still meet the
	// restricted Pod Security Standard.
	SecurityContext *PodSecurityContext `json:"securityContext,omitempty"`
	// Containers are added next to the agent (sidecars); InitContainers run before it. They get
	// no credentials: they mount only Volumes, and read no Secret but ExtraObjects' own.
	Containers     []corev1.Container `json:"containers,omitempty"`
	InitContainers []corev1.Container `json:"initContainers,omitempty"`
	// Volumes are added for the extra containers, or for the agent's VolumeMounts: emptyDir,
	// configMap, downwardAPI, secret and projected ones (credentials.go).
	Volumes []corev1.Volume `json:"volumes,omitempty"`
}

// PodSecurityContext is the part of a pod's security context a customisation may set.
// runAsNonRoot and the seccomp profile stay the add-on's.
type PodSecurityContext struct {
	RunAsUser           *int64                         `json:"runAsUser,omitempty"`
	RunAsGroup          *int64                         `json:"runAsGroup,omitempty"`
	FSGroup             *int64                         `json:"fsGroup,omitempty"`
	FSGroupChangePolicy *corev1.PodFSGroupChangePolicy `json:"fsGroupChangePolicy,omitempty"`
	SupplementalGroups  []int64                        `json:"supplementalGroups,omitempty"`
	SELinuxOptions      *corev1.SELinuxOptions         `json:"seLinuxOptions,omitempty"`
	AppArmorProfile     *corev1.AppArmorProfile        `json:"appArmorProfile,omitempty"`
}

// Container is what may be added to the agent container.
type Container struct {
	// Env is added to the agent's environment. Variables the add-on sets, and the agent's
	// settings that would weaken its connection (see protected), are refused.
	Env []corev1.EnvVar `json:"env,omitempty"`
	// Args are added after the agent command's own. Flags the add-on sets through the
	// environment, or that would weaken the connection, are refused.
	Args []string `json:"args,omitempty"`
	// VolumeMounts mount Pod.Volumes into the agent.
	VolumeMounts []corev1.VolumeMount `json:"volumeMounts,omitempty"`
}
