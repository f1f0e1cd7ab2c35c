package addon

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"open-cluster-management.io/addon-framework/pkg/addonmanager"
	"open-cluster-management.io/addon-framework/pkg/index"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"
	addoninformers "open-cluster-management.io/api/client/addon/informers/externalversions"
	clusterclient "open-cluster-management.io/api/client/cluster/clientset/versioned"
	clusterinformers "open-cluster-management.io/api/client/cluster/informers/externalversions"
	workclient "open-cluster-management.io/api/client/work/clientset/versioned"
	workinformers "open-cluster-management.io/api/client/work/informers/externalversions"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// informerResync is addon-framework's own.
const informerResync = 10 * time.Minute

// noCSRs is a label selector no CertificateSigningRequest carries (see StartManager).
const noCSRs = "argocd-agent-addon.open-cluster-management.io/not-for-addon-framework"

// StartManager starts addon-framework's controllers for mgr, as its Start does, on informers
// that hold less: memory grows with the fleet, and at a few thousand clusters these caches are
// most of the manager's.
//   - No managedFields in any cache: addon-framework never reads them, and on a
//     ManagedClusterAddOn that five controllers write they are larger than the rest of it.
//   - ManagedClusterAddOns and ClusterManagementAddOns of this add-on only, not of every
//     add-on on the hub (addon-framework's filters drop the others after caching them).
//   - No CertificateSigningRequests: addon-framework's CSR controllers act only through
//     CSRApproveCheck and CSRSign, which this add-on leaves nil (its approver and signer work
//     on controller-runtime's cache), so their informer is given a selector nothing matches
//     instead of a second copy of every agent CSR.
func StartManager(ctx context.Context, cfg *rest.Config, mgr addonmanager.AddonManager) error {
	kubeClient, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	workClient, err := workclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	addonClient, err := addonclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	clusterClient, err := clusterclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dynamicClient, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	strip := cache.TransformStripManagedFields()

	kubeInformers := kubeinformers.NewSharedInformerFactoryWithOptions(kubeClient, informerResync,
		kubeinformers.WithTransform(strip),
		kubeinformers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = noCSRs }))
	workInformers := workinformers.NewSharedInformerFactoryWithOptions(workClient, informerResync,
		workinformers.WithTransform(strip),
		workinformers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = addonv1beta1.AddonLabelKey + "=" + identity.AddonName
		}))
	addonInformers := addoninformers.NewSharedInformerFactoryWithOptions(addonClient, informerResync,
		addoninformers.WithTransform(strip),
		addoninformers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", identity.AddonName).String()
		}))
	clusterInformers := clusterinformers.NewSharedInformerFactoryWithOptions(clusterClient, informerResync,
		clusterinformers.WithTransform(strip))
	dynamicInformers := dynamicinformer.NewDynamicSharedInformerFactory(dynamicClient, informerResync)

	// The indexes addon-framework's controllers look up.
	works := workInformers.Work().V1().ManifestWorks()
	if err := works.Informer().AddIndexers(toolscache.Indexers{
		index.ManifestWorkByAddon:           index.IndexManifestWorkByAddon,
		index.ManifestWorkByHostedAddon:     index.IndexManifestWorkByHostedAddon,
		index.ManifestWorkHookByHostedAddon: index.IndexManifestWorkHookByHostedAddon,
	}); err != nil {
		return fmt.Errorf("indexing ManifestWorks: %w", err)
	}
	if err := addonInformers.Addon().V1beta1().ManagedClusterAddOns().Informer().AddIndexers(toolscache.Indexers{
		index.ManagedClusterAddonByNamespace: index.IndexManagedClusterAddonByNamespace,
		index.AddonByConfig:                  index.IndexAddonByConfig,
	}); err != nil {
		return fmt.Errorf("indexing ManagedClusterAddOns: %w", err)
	}
	if err := addonInformers.Addon().V1beta1().ClusterManagementAddOns().Informer().AddIndexers(toolscache.Indexers{
		index.ClusterManagementAddonByConfig: index.IndexClusterManagementAddonByConfig,
	}); err != nil {
		return fmt.Errorf("indexing ClusterManagementAddOns: %w", err)
	}

	if err := mgr.StartWithInformers(ctx, workClient, works, kubeInformers, addonInformers, clusterInformers, dynamicInformers); err != nil {
		return err
	}
	kubeInformers.Start(ctx.Done())
	workInformers.Start(ctx.Done())
	addonInformers.Start(ctx.Done())
	clusterInformers.Start(ctx.Done())
	dynamicInformers.Start(ctx.Done())
	return nil
}
