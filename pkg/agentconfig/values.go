package agentconfig

import (
	"open-cluster-management.io/addon-framework/pkg/addonfactory"
	"open-cluster-management.io/addon-framework/pkg/utils"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
)

// MirroredImage applies image mirrors to image: the AddOnDeploymentConfig's registries first
// and, if they do not change the image, the cluster's image-registries annotation
// (addon-framework's rule).
func (c Config) MirroredImage(cluster *clusterv1.ManagedCluster, image string) (string, error) {
	if mirrored := addonfactory.OverrideImage(c.Registries, image); mirrored != image {
		return mirrored, validateImage("registries", mirrored)
	}
	mirrored, err := utils.OverrideImageByAnnotation(cluster.GetAnnotations(), image)
	if err != nil {
		return "", fieldErr("ManagedCluster annotation "+clusterv1.ClusterImageRegistriesAnnotationKey,
			cluster.GetAnnotations()[clusterv1.ClusterImageRegistriesAnnotationKey], "%v", err)
	}
	return mirrored, validateImage("ManagedCluster annotation "+clusterv1.ClusterImageRegistriesAnnotationKey, mirrored)
}

// InClusterNoProxy is what NO_PROXY always holds when the agent has a proxy: the cluster's own
// API server, which client-go reaches in-cluster at the kubernetes Service's IP. kubelet expands
// $(KUBERNETES_SERVICE_HOST) from the service variables it gives every container. Without it a
// proxy meant for the principal would carry, or refuse, the agent's Kubernetes traffic.
const InClusterNoProxy = "$(KUBERNETES_SERVICE_HOST),kubernetes.default.svc,kubernetes.default.svc.cluster.local"

// NoProxy is the user's noProxy plus InClusterNoProxy whenever a proxy is set.
func (c Config) NoProxy() string {
	if c.Proxy.HTTPProxy == "" && c.Proxy.HTTPSProxy == "" {
		return c.Proxy.NoProxy
	}
	if c.Proxy.NoProxy == "" {
		return InClusterNoProxy
	}
	return c.Proxy.NoProxy + "," + InClusterNoProxy
}
