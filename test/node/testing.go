package node

import (
	"context"
	"os"
	"testing"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/testenv"
)

// StartForTest starts an API server for nodes (without the OCM CRDs) and one node named name,
// both stopped when t ends. It skips t unless it runs as root. serviceCIDR keeps the ClusterIPs
// of tests running at the same time apart in their logs; routing is per node either way.
func StartForTest(t testing.TB, name, serviceCIDR string) *Cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("real nodes need root (containerd, kubelet)")
	}
	ip, err := HostIP()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", name) // short: containerd's socket path must fit 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	api, err := testenv.StartWith(testenv.Options{ClientCADir: dir + "/pki", Node: &testenv.NodeNetwork{AdvertiseAddress: ip, ServiceCIDR: serviceCIDR}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Stop() })
	// The processes outlive the test function; the cleanup stops them.
	c, err := Start(context.Background(), Options{Name: name, Dir: dir, API: api, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}
