package clustersecret

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
)

// Group is one part of a fleet split between principals (docs/operations.md#several-principals):
// the clusters whose add-on OCM installs through Placement get their cluster secret in the
// namespace of that group's Argo CD and principal, reaching it through that principal's
// resource proxy.
type Group struct {
	Placement            addonv1beta1.PlacementRef
	Namespace            string
	ResourceProxyAddress string
}

// ParseGroup reads a group as the --cluster-secret-group flag gives it:
// PLACEMENT_NAMESPACE/PLACEMENT=ARGOCD_NAMESPACE,RESOURCE_PROXY_HOST:PORT.
func ParseGroup(s string) (Group, error) {
	placement, target, ok := strings.Cut(s, "=")
	pns, pname, ok2 := strings.Cut(placement, "/")
	ns, address, ok3 := strings.Cut(target, ",")
	if !ok || !ok2 || !ok3 {
		return Group{}, fmt.Errorf("%q: want PLACEMENT_NAMESPACE/PLACEMENT=ARGOCD_NAMESPACE,RESOURCE_PROXY_HOST:PORT", s)
	}
	for what, name := range map[string]string{"Placement namespace": pns, "Argo CD namespace": ns} {
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			return Group{}, fmt.Errorf("%q: %s %q: %s", s, what, name, strings.Join(errs, "; "))
		}
	}
	if errs := validation.IsDNS1123Subdomain(pname); len(errs) > 0 {
		return Group{}, fmt.Errorf("%q: Placement name %q: %s", s, pname, strings.Join(errs, "; "))
	}
	if err := ValidateAddress(address); err != nil {
		return Group{}, fmt.Errorf("%q: resource proxy address: %w", s, err)
	}
	return Group{Placement: addonv1beta1.PlacementRef{Namespace: pns, Name: pname}, Namespace: ns, ResourceProxyAddress: address}, nil
}

// String is the flag form.
func (g Group) String() string {
	return g.Placement.Namespace + "/" + g.Placement.Name + "=" + g.Namespace + "," + g.ResourceProxyAddress
}

// Namespaces are the namespaces the cluster secrets of the default and the groups live in.
func (r *Reconciler) Namespaces() []string {
	out := []string{r.Namespace}
	for _, g := range r.Groups {
		if !slices.Contains(out, g.Namespace) {
			out = append(out, g.Namespace)
		}
	}
	return out
}

// target is where agent's cluster secret belongs: the group of the Placement OCM installs its
// add-on through (the last of the ClusterManagementAddOn's holding it, as for its configs),
// else the default. A cluster that no Placement holds (between two Placements' decisions while
// it moves, or an add-on made by hand) keeps the namespace its secret is in. Placement
// decisions follow labels only the hub may change (admissionPolicy.protectedLabels), never
// what the cluster writes.
func (r *Reconciler) target(ctx context.Context, cma *addonv1beta1.ClusterManagementAddOn, agent string, current string) (namespace, address string, err error) {
	if len(r.Groups) == 0 {
		return r.Namespace, r.ResourceProxyAddress, nil
	}
	p, ok, err := r.Placements.Placement(ctx, cma, agent)
	if err != nil {
		return "", "", err
	}
	if !ok && current != "" {
		return current, r.addressOf(current), nil
	}
	for i := len(r.Groups) - 1; i >= 0; i-- {
		if ok && r.Groups[i].Placement == p.PlacementRef {
			return r.Groups[i].Namespace, r.Groups[i].ResourceProxyAddress, nil
		}
	}
	return r.Namespace, r.ResourceProxyAddress, nil
}

// addressOf is the resource proxy address of the clusters whose secrets live in namespace.
func (r *Reconciler) addressOf(namespace string) string {
	for i := len(r.Groups) - 1; i >= 0; i-- {
		if r.Groups[i].Namespace == namespace {
			return r.Groups[i].ResourceProxyAddress
		}
	}
	return r.ResourceProxyAddress
}
