package metrics_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/metrics"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/testca"
)

// The fleet gauges come from the hub alone: a collector that has run no controller (a standby
// replica, or one just restarted) reports the CA's expiry and each cluster's newest certificate.
func TestCollectorReportsTheFleetFromTheHub(t *testing.T) {
	scheme, err := hubclient.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	caCert, caKey, err := testca.New("argocd-agent-ca", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cas, err := authority.ParseCertificates(caCert)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	newest := now.Add(7 * 24 * time.Hour).UTC().Truncate(time.Second)
	newestStart := now.Add(-time.Hour).UTC().Truncate(time.Second)
	record, _ := json.Marshal([]issued.Certificate{
		{Fingerprint: "AA", CA: authority.ID(cas[0]), NotAfter: now.Add(time.Hour).UTC()},
		{Fingerprint: "BB", CA: authority.ID(cas[0]), NotAfter: newest, NotBefore: newestStart},
	})
	key := types.NamespacedName{Namespace: "argocd", Name: "argocd-agent-ca"}
	hub := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: caCert, corev1.TLSPrivateKeyKey: caKey}},
		&addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: "c1", Name: identity.AddonName,
			Annotations: map[string]string{issued.Annotation: string(record)}}},
	).Build()
	c := &metrics.Collector{Reader: hub, CA: authority.NewSecretSource(hub, key)}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
		metrics:
			for _, m := range f.Metric {
				for _, l := range m.Label {
					if labels[l.GetName()] != l.GetValue() {
						continue metrics
					}
				}
				return m.GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s%v", name, labels)
		return 0
	}
	if got := value("argocd_agent_addon_ca_not_after_seconds", nil); got != float64(cas[0].NotAfter.Unix()) {
		t.Errorf("ca_not_after_seconds %v, want %d", got, cas[0].NotAfter.Unix())
	}
	if got := value("argocd_agent_addon_agent_certificate_not_after_seconds", map[string]string{"cluster": "c1"}); got != float64(newest.Unix()) {
		t.Errorf("agent_certificate_not_after_seconds %v, want the newest %d", got, newest.Unix())
	}
	if got := value("argocd_agent_addon_agent_certificate_not_before_seconds", map[string]string{"cluster": "c1"}); got != float64(newestStart.Unix()) {
		t.Errorf("agent_certificate_not_before_seconds %v, want the newest's start %d", got, newestStart.Unix())
	}
	if got := value("argocd_agent_addon_ca_valid_certificates", map[string]string{"ca": authority.ID(cas[0]), "role": "signing"}); got != 2 {
		t.Errorf("ca_valid_certificates %v, want 2", got)
	}
	// No usable CA: 0, which the documented alert fires on, and no per-CA counts.
	broken := &metrics.Collector{Reader: hub, CA: authority.NewSecretSource(hub, types.NamespacedName{Namespace: "argocd", Name: "missing"})}
	if n := testutil.CollectAndCount(broken); n != 1 {
		t.Errorf("without a CA: %d metrics, want only ca_not_after_seconds", n)
	}
}
