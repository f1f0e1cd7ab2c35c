package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
)

// kubeletConfig is what made the kubelet run pods on this machine (../shared/reference/
// real-pods.md): cgroup v1 with cgroupfs, no swap check, an OOM score it may set, images never
// garbage-collected (imported images cannot be pulled again), eviction thresholds a busy test
// machine does not reach, and every path and port its own. The API server reaches it with a
// client certificate of the cluster's client CA; it asks the API server to authorize each call.
func (c *Cluster) kubeletConfig(dir, clientCA string) map[string]any {
	return map[string]any{
		"apiVersion":               "kubelet.config.k8s.io/v1beta1",
		"kind":                     "KubeletConfiguration",
		"cgroupDriver":             "cgroupfs",
		"cgroupRoot":               c.slot.cgroupRoot(),
		"failCgroupV1":             false,
		"failSwapOn":               false,
		"containerRuntimeEndpoint": "unix://" + c.containerdSocket,
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]any{"clientCAFile": clientCA},
		},
		"authorization":               map[string]any{"mode": "Webhook"},
		"port":                        c.slot.kubeletPort(),
		"readOnlyPort":                0,
		"healthzPort":                 0,
		"registerNode":                true,
		"clusterDNS":                  []string{c.slot.gateway()},
		"clusterDomain":               strings.TrimSuffix(clusterDomain, "."),
		"podCIDR":                     c.slot.podCIDR(),
		"podLogsDir":                  filepath.Join(dir, "pod-logs"),
		"volumePluginDir":             filepath.Join(dir, "volume-plugins"),
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"evictionHard":                map[string]string{"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
		"oomScoreAdj":                 0,
		// The kubelet's own iptables rules (KUBE-FIREWALL drops non-local traffic to 127/8) are
		// kube-proxy's business and would be shared by every node on the machine.
		"makeIPTablesUtilChains": false,
		"serializeImagePulls":    false,
		// Pods read secrets and ConfigMaps as soon as they change, as on a real cluster.
		"configMapAndSecretChangeDetectionStrategy": "Watch",
	}
}

// startKubelet registers the node and runs its pods through the node's containerd. It runs as
// system:node:<node>, so the Node authorizer and NodeRestriction limit it as on a real cluster.
func (c *Cluster) startKubelet(ctx context.Context, bin string) error {
	dir := filepath.Join(c.dir, "kubelet")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	files := c.API.Node
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := c.writeKubeconfig(kubeconfig, "system:node:"+c.NodeName, "system:nodes"); err != nil {
		return err
	}
	cfg, err := yaml.Marshal(c.kubeletConfig(dir, files.ClientCACert))
	if err != nil {
		return err
	}
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		return err
	}
	p, err := proc.Start(ctx, "kubelet", c.dir, bin, "--config", cfgFile, "--kubeconfig", kubeconfig,
		"--root-dir", filepath.Join(dir, "root"), "--cert-dir", filepath.Join(dir, "pki"),
		"--hostname-override", c.NodeName, "--node-ip", files.AdvertiseAddress.String(), "-v", "1")
	if err != nil {
		return err
	}
	c.kubelet = p
	return nil
}

func (c *Cluster) nodeLogf(format string, args ...any) {
	if c.opts.Logf != nil {
		c.opts.Logf("%s: %s", c.Name, fmt.Sprintf(format, args...))
	}
}
