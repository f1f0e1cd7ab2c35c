package customization

import (
	"context"
	"encoding/json"
	"errors"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"open-cluster-management.io/addon-framework/pkg/utils"
	"sigs.k8s.io/controller-runtime/pkg/client"
	sigsjson "sigs.k8s.io/json"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentconfig"
)

// Getter reads a cluster's AgentCustomization, unstructured as the API server serves it, so that
// its spec hash is the one addon-framework gives OCM.
type Getter struct {
	Reader client.Reader
}

// GetWithSpecHash reads one AgentCustomization and its spec hash. A spec that does not decode
// (a field the type does not have, a value of the wrong type) is a *agentconfig.FieldError.
func (g Getter) GetWithSpecHash(ctx context.Context, namespace, name string) (*Customization, string, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(GVK)
	if err := g.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, u); err != nil {
		return nil, "", err
	}
	hash, err := utils.GetSpecHash(u)
	if err != nil {
		return nil, "", err
	}
	c, err := FromUnstructured(u)
	return c, hash, err
}

// FromUnstructured decodes an AgentCustomization, refusing fields its type does not have.
func FromUnstructured(u *unstructured.Unstructured) (*Customization, error) {
	c := &Customization{Name: u.GetNamespace() + "/" + u.GetName()}
	spec, ok := u.Object["spec"].(map[string]any)
	if !ok {
		if _, has := u.Object["spec"]; has {
			return nil, &agentconfig.FieldError{Config: Kind + " " + c.Name, Field: "spec", Reason: "not an object"}
		}
		return c, nil // an empty customisation changes nothing
	}
	// Through JSON, strictly, so that an unknown field or a value of the wrong type is named
	// with its path (unstructured conversion names neither).
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	strict, err := sigsjson.UnmarshalStrict(data, &c.Spec)
	if err == nil && len(strict) > 0 {
		err = errors.Join(strict...)
	}
	if err != nil {
		return nil, &agentconfig.FieldError{Config: Kind + " " + c.Name, Field: "spec", Reason: err.Error()}
	}
	return c, nil
}
