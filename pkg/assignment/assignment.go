// Package assignment works out, from objects only the hub writes, which configs OCM assigns to
// a cluster's add-on and through which Placement.
//
// addon-framework reads a cluster's configs from its ManagedClusterAddOn's
// status.configReferences, which OCM's addon-manager writes, but which the managed cluster's
// own agent identities may patch too (docs/design.md#trust-model). A cluster that pointed its
// status at another group's AddOnDeploymentConfig would move its agent to that group's
// principal, past the protected group label. The renderer checks the status against what this
// package resolves, with OCM's rules (ocm pkg/addon/controllers/addonconfiguration): the
// ClusterManagementAddOn's default configs; overridden per config type by the configs of the
// last Placement of its install strategy whose decisions hold the cluster; overridden per type
// by the ManagedClusterAddOn's spec.configs.
package assignment

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Configs are the configs assigned per config type.
type Configs map[addonv1beta1.ConfigGroupResource][]addonv1beta1.ConfigReferent

// Resolver reads the ClusterManagementAddOn's placements' decisions (from a cache).
type Resolver struct {
	Reader client.Reader
}

// Placement returns the last placement of cma's install strategy whose decisions hold cluster;
// ok is false if none does.
func (r Resolver) Placement(ctx context.Context, cma *addonv1beta1.ClusterManagementAddOn, cluster string) (addonv1beta1.PlacementStrategy, bool, error) {
	if cma.Spec.InstallStrategy.Type != addonv1beta1.AddonInstallStrategyPlacements {
		return addonv1beta1.PlacementStrategy{}, false, nil
	}
	placements := cma.Spec.InstallStrategy.Placements
	for i := len(placements) - 1; i >= 0; i-- {
		in, err := r.Decided(ctx, placements[i].PlacementRef, cluster)
		if err != nil {
			return addonv1beta1.PlacementStrategy{}, false, err
		}
		if in {
			return placements[i], true, nil
		}
	}
	return addonv1beta1.PlacementStrategy{}, false, nil
}

// Decided says whether placement's decisions hold cluster.
func (r Resolver) Decided(ctx context.Context, placement addonv1beta1.PlacementRef, cluster string) (bool, error) {
	decisions := &clusterv1beta1.PlacementDecisionList{}
	if err := r.Reader.List(ctx, decisions, client.InNamespace(placement.Namespace),
		client.MatchingLabels{clusterv1beta1.PlacementLabel: placement.Name}); err != nil {
		return false, fmt.Errorf("listing the decisions of Placement %s/%s: %w", placement.Namespace, placement.Name, err)
	}
	for _, d := range decisions.Items {
		if slices.ContainsFunc(d.Status.Decisions, func(c clusterv1beta1.ClusterDecision) bool { return c.ClusterName == cluster }) {
			return true, nil
		}
	}
	return false, nil
}

// Assigned returns the configs OCM assigns to mca, the add-on of cluster mca.Namespace.
func (r Resolver) Assigned(ctx context.Context, cma *addonv1beta1.ClusterManagementAddOn, mca *addonv1beta1.ManagedClusterAddOn) (Configs, error) {
	out := Configs{}
	for _, c := range cma.Spec.DefaultConfigs {
		if c.Name == addonv1beta1.ReservedNoDefaultConfigName {
			continue // v1alpha1's supportedConfig without a default, as v1beta1 serves it
		}
		out[c.ConfigGroupResource] = []addonv1beta1.ConfigReferent{c.ConfigReferent}
	}
	p, ok, err := r.Placement(ctx, cma, mca.Namespace)
	if err != nil {
		return nil, err
	}
	if ok {
		override(out, p.Configs)
	}
	override(out, mca.Spec.Configs)
	return out, nil
}

// override replaces, per config type, what out holds by configs of that type.
func override(out Configs, configs []addonv1beta1.AddOnConfig) {
	replaced := map[addonv1beta1.ConfigGroupResource]bool{}
	for _, c := range configs {
		if !replaced[c.ConfigGroupResource] {
			out[c.ConfigGroupResource] = nil
			replaced[c.ConfigGroupResource] = true
		}
		if !slices.Contains(out[c.ConfigGroupResource], c.ConfigReferent) {
			out[c.ConfigGroupResource] = append(out[c.ConfigGroupResource], c.ConfigReferent)
		}
	}
}

// Verify checks mca's status against the configs the hub assigns to it, reading the add-on's
// ClusterManagementAddOn.
func (r Resolver) Verify(ctx context.Context, mca *addonv1beta1.ManagedClusterAddOn) error {
	cma := &addonv1beta1.ClusterManagementAddOn{}
	if err := r.Reader.Get(ctx, client.ObjectKey{Name: mca.Name}, cma); err != nil {
		return fmt.Errorf("reading ClusterManagementAddOn %s: %w", mca.Name, err)
	}
	assigned, err := r.Assigned(ctx, cma, mca)
	if err != nil {
		return err
	}
	return Check(assigned, mca)
}

// ErrNotAssigned says a ManagedClusterAddOn's status names a config the hub does not assign to
// the cluster: OCM's addon-manager has not caught up yet, or the cluster wrote it.
var ErrNotAssigned = errors.New("config not assigned by the hub")

// Check returns an ErrNotAssigned error for the first config mca's status names as desired
// that assigned does not hold.
func Check(assigned Configs, mca *addonv1beta1.ManagedClusterAddOn) error {
	for _, ref := range mca.Status.ConfigReferences {
		if ref.DesiredConfig == nil {
			continue
		}
		want := assigned[ref.ConfigGroupResource]
		if !slices.Contains(want, ref.DesiredConfig.ConfigReferent) {
			return fmt.Errorf("%w: the status of ManagedClusterAddOn %s/%s names %s %s as desired, and the hub assigns it %s",
				ErrNotAssigned, mca.Namespace, mca.Name, ref.Resource, referent(ref.DesiredConfig.ConfigReferent), referents(want))
		}
	}
	return nil
}

func referent(r addonv1beta1.ConfigReferent) string {
	if r.Namespace == "" {
		return r.Name
	}
	return r.Namespace + "/" + r.Name
}

func referents(rs []addonv1beta1.ConfigReferent) string {
	if len(rs) == 0 {
		return "none of that type"
	}
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = referent(r)
	}
	return strings.Join(names, ", ")
}
