// Package hubfixture puts on a bare API server what the add-on's chart and the OCM hub
// controllers would, so the real manager can run against it without OCM: the CA secret, the
// ClusterManagementAddOn, and accepted clusters with their ManagedClusterAddOn. test/e2e runs
// the real OCM controllers instead.
package hubfixture

import (
	"context"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentversion"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/manager"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
)

const (
	CANamespace     = "argocd"
	CAName          = "argocd-agent-ca"
	LeaderNamespace = "argocd-agent-addon"
	ConfigNamespace = "open-cluster-management"
	// WorkName is the ManifestWork addon-framework delivers the agent in.
	WorkName = "addon-" + identity.AddonName + "-deploy-0"
)

// Hub is a prepared hub. JoinCluster uses only Client: a hub the chart itself prepared
// (test/chartinstall) is a Hub of its client.
type Hub struct {
	Client    client.Client
	CACertPEM []byte
	CAKeyPEM  []byte
}

// Prepare creates the namespaces, a fresh CA secret and the ClusterManagementAddOn the chart
// installs, with the manager's AgentVersion as its default (the manager checks each add-on's
// status against the configs the ClusterManagementAddOn assigns: pkg/assignment).
func Prepare(ctx context.Context, c client.Client) (*Hub, error) {
	for _, ns := range []string{CANamespace, LeaderNamespace, ConfigNamespace} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return nil, err
		}
	}
	h := &Hub{Client: c}
	var err error
	if h.CACertPEM, h.CAKeyPEM, err = testca.New("argocd-agent-ca", 365*24*time.Hour); err != nil {
		return nil, err
	}
	if err := c.Create(ctx, h.CASecret()); err != nil {
		return nil, err
	}
	return h, c.Create(ctx, &addonv1beta1.ClusterManagementAddOn{
		ObjectMeta: metav1.ObjectMeta{Name: identity.AddonName},
		Spec: addonv1beta1.ClusterManagementAddOnSpec{
			DefaultConfigs: []addonv1beta1.AddOnConfig{{
				ConfigGroupResource: addonv1beta1.ConfigGroupResource{Group: agentversion.Group, Resource: agentversion.Resource},
				ConfigReferent:      addonv1beta1.ConfigReferent{Namespace: LeaderNamespace, Name: agentversion.DefaultName},
			}},
			InstallStrategy: addonv1beta1.InstallStrategy{Type: addonv1beta1.AddonInstallStrategyManual},
		},
	})
}

// CASecret is the CA secret as Prepare created it.
func (h *Hub) CASecret() *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: CANamespace, Name: CAName},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: h.CACertPEM, corev1.TLSPrivateKeyKey: h.CAKeyPEM},
	}
}

// ManagerOptions are the manager's options for this hub; the caller sets the addresses.
func ManagerOptions(cfg *rest.Config) *manager.Options {
	o := manager.NewOptions()
	o.RestConfig = cfg
	o.CASecret = CANamespace + "/" + CAName
	o.LeaderElectionNamespace = LeaderNamespace
	o.Namespace = LeaderNamespace
	o.MetricsBindAddress = "0"
	o.HealthProbeBindAddress = "0"
	return o
}

// JoinCluster does what the OCM registration hub and addon-manager do for an accepted cluster
// whose add-on uses the existing AddOnDeploymentConfig adc (nil for none): cluster namespace,
// accepted ManagedCluster, and a ManagedClusterAddOn owned by the ClusterManagementAddOn and
// pointing at adc.
func (h *Hub) JoinCluster(ctx context.Context, name string, adc *addonv1beta1.AddOnDeploymentConfig) error {
	c := h.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		return err
	}
	mc := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: clusterv1.ManagedClusterSpec{HubAcceptsClient: true}}
	if err := c.Create(ctx, mc); err != nil {
		return err
	}
	meta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{Type: clusterv1.ManagedClusterConditionHubAccepted, Status: metav1.ConditionTrue, Reason: "HubClusterAdminAccepted"})
	meta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{Type: clusterv1.ManagedClusterConditionAvailable, Status: metav1.ConditionTrue, Reason: "ManagedClusterAvailable"})
	if err := c.Status().Update(ctx, mc); err != nil {
		return err
	}
	cma := &addonv1beta1.ClusterManagementAddOn{}
	if err := c.Get(ctx, client.ObjectKey{Name: identity.AddonName}, cma); err != nil {
		return err
	}
	mca := &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{
		Name: identity.AddonName, Namespace: name,
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: addonv1beta1.GroupVersion.String(), Kind: "ClusterManagementAddOn", Name: cma.Name, UID: cma.UID,
		}},
	}}
	gr := addonv1beta1.ConfigGroupResource{Group: addonv1beta1.GroupName, Resource: "addondeploymentconfigs"}
	if adc != nil {
		mca.Spec.Configs = []addonv1beta1.AddOnConfig{{ConfigGroupResource: gr, ConfigReferent: addonv1beta1.ConfigReferent{Namespace: adc.Namespace, Name: adc.Name}}}
	}
	if err := c.Create(ctx, mca); err != nil {
		return err
	}
	// As OCM's addon-manager does: resolve the config into the status and say so with the
	// Configured condition, before which the manager renders nothing. The add-on manager writes
	// the same status concurrently: retry on conflicts.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(mca), mca); err != nil {
			return err
		}
		if adc != nil {
			mca.Status.ConfigReferences = []addonv1beta1.ConfigReference{{
				ConfigGroupResource: gr,
				DesiredConfig:       &addonv1beta1.ConfigSpecHash{ConfigReferent: addonv1beta1.ConfigReferent{Namespace: adc.Namespace, Name: adc.Name}},
			}}
		}
		meta.SetStatusCondition(&mca.Status.Conditions, metav1.Condition{Type: addonv1beta1.ManagedClusterAddOnConditionConfigured,
			Status: metav1.ConditionTrue, Reason: "ConfigurationsConfigured", Message: "Configurations configured"})
		return c.Status().Update(ctx, mca)
	})
}

// NewADC is an AddOnDeploymentConfig in ConfigNamespace with the given name/value pairs.
func NewADC(name string, vars ...string) *addonv1beta1.AddOnDeploymentConfig {
	a := &addonv1beta1.AddOnDeploymentConfig{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ConfigNamespace}}
	for i := 0; i+1 < len(vars); i += 2 {
		a.Spec.CustomizedVariables = append(a.Spec.CustomizedVariables, addonv1beta1.CustomizedVariable{Name: vars[i], Value: vars[i+1]})
	}
	return a
}

// SetVariable sets one customized variable of the AddOnDeploymentConfig key, adding it if
// missing, and retries on conflicts with the controllers that write the config too.
func SetVariable(ctx context.Context, c client.Client, key client.ObjectKey, name, value string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		adc := &addonv1beta1.AddOnDeploymentConfig{}
		if err := c.Get(ctx, key, adc); err != nil {
			return err
		}
		found := false
		for i := range adc.Spec.CustomizedVariables {
			if adc.Spec.CustomizedVariables[i].Name == name {
				adc.Spec.CustomizedVariables[i].Value, found = value, true
			}
		}
		if !found {
			adc.Spec.CustomizedVariables = append(adc.Spec.CustomizedVariables, addonv1beta1.CustomizedVariable{Name: name, Value: value})
		}
		return c.Update(ctx, adc)
	})
}

// UseConfig makes cluster's add-on use the config namespace/name of group/resource, in its
// spec.configs and, as OCM's addon-manager resolves it, in its status (the spec hash is
// addon-framework's to fill in, as for a config a ManagedClusterAddOn names itself).
func UseConfig(ctx context.Context, c client.Client, cluster, group, resource, namespace, name string) error {
	gr := addonv1beta1.ConfigGroupResource{Group: group, Resource: resource}
	ref := addonv1beta1.ConfigReferent{Namespace: namespace, Name: name}
	key := client.ObjectKey{Namespace: cluster, Name: identity.AddonName}
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mca := &addonv1beta1.ManagedClusterAddOn{}
		if err := c.Get(ctx, key, mca); err != nil {
			return err
		}
		mca.Spec.Configs = slices.DeleteFunc(mca.Spec.Configs, func(a addonv1beta1.AddOnConfig) bool { return a.ConfigGroupResource == gr })
		mca.Spec.Configs = append(mca.Spec.Configs, addonv1beta1.AddOnConfig{ConfigGroupResource: gr, ConfigReferent: ref})
		return c.Update(ctx, mca)
	}); err != nil {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mca := &addonv1beta1.ManagedClusterAddOn{}
		if err := c.Get(ctx, key, mca); err != nil {
			return err
		}
		mca.Status.ConfigReferences = slices.DeleteFunc(mca.Status.ConfigReferences, func(r addonv1beta1.ConfigReference) bool { return r.ConfigGroupResource == gr })
		mca.Status.ConfigReferences = append(mca.Status.ConfigReferences, addonv1beta1.ConfigReference{
			ConfigGroupResource: gr, DesiredConfig: &addonv1beta1.ConfigSpecHash{ConfigReferent: ref}})
		return c.Status().Update(ctx, mca)
	})
}
