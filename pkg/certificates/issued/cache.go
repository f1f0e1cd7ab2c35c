package issued

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// RecordsCache is what the manager caches of ConfigMaps for the records: the labelled ones of
// namespace, no other.
func RecordsCache(namespace string) (client.Object, cache.ByObject) {
	req, err := labels.NewRequirement(RecordLabel, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant label key
	}
	return &corev1.ConfigMap{}, cache.ByObject{
		Namespaces: map[string]cache.Config{namespace: {}},
		Label:      labels.NewSelector().Add(*req),
	}
}
