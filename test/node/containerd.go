package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
)

// PauseImage is the sandbox image every node uses; Start imports it from $PAUSE_IMAGE_ARCHIVE.
const PauseImage = "registry.test.local/pause:1"

// containerdConfig is one node's containerd: its own root, state, socket and CNI configuration,
// with what this machine needs (see ../shared/reference/real-pods.md): no AppArmor or hugetlb,
// and restrict_oom_score_adj because the VM lacks CAP_SYS_RESOURCE, so no sandbox could set the
// negative OOM score the CRI asks for.
const containerdConfig = `version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[8]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[6]q
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
      Root = %[7]q
`

// cniConfig gives the node's pods a bridge of their own with host-local addresses from the
// slot's subnet, masqueraded towards the host and beyond; portmap serves hostPorts.
func (s *slot) cniConfig(dir string) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       s.network(),
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": s.bridge(), "isGateway": true, "ipMasq": true, "hairpinMode": true,
				"ipam": map[string]any{
					"type": "host-local", "dataDir": filepath.Join(dir, "ipam"),
					"ranges": [][]map[string]string{{{"subnet": s.podCIDR(), "gateway": s.gateway()}}},
					"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}, "", "  ")
}

// startContainerd writes the node's containerd and CNI configuration under dir and starts it.
func (c *Cluster) startContainerd(ctx context.Context) error {
	dir := filepath.Join(c.dir, "containerd")
	cniDir := filepath.Join(dir, "cni")
	if err := os.MkdirAll(cniDir, 0o700); err != nil {
		return err
	}
	cni, err := c.slot.cniConfig(dir)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cniDir, "10-node.conflist"), cni, 0o600); err != nil {
		return err
	}
	c.containerdSocket = filepath.Join(dir, "containerd.sock")
	hostsDir := filepath.Join(dir, "certs.d")
	if err := writeRegistryHosts(hostsDir, c.opts.Registries); err != nil {
		return err
	}
	cfg := fmt.Sprintf(containerdConfig, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.containerdSocket,
		filepath.Join(dir, "opt"), PauseImage, cniDir, filepath.Join(dir, "runc"), hostsDir)
	cfgFile := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return err
	}
	p, err := proc.Start(ctx, "containerd", c.dir, "containerd", "--config", cfgFile)
	if err != nil {
		return err
	}
	c.containerd = p
	return p.WaitFor(ctx, 30*time.Second, "containerd socket", func() error {
		return exec.CommandContext(ctx, "ctr", "--address", c.containerdSocket, "version").Run()
	})
}

// writeRegistryHosts tells containerd (its hosts.toml, one directory per registry) to reach
// each registry over plain HTTP.
func writeRegistryHosts(dir string, registries []string) error {
	for _, r := range registries {
		d := filepath.Join(dir, r)
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		hosts := fmt.Sprintf("server = %[1]q\n\n[host.%[1]q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+r)
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(hosts), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// ImportImage makes a docker-archive (hack/image build --archive) visible to the node's CRI at
// once: pods use it with imagePullPolicy IfNotPresent or Never, and nothing is ever pulled.
func (c *Cluster) ImportImage(ctx context.Context, archive string) error {
	out, err := exec.CommandContext(ctx, "ctr", "--address", c.containerdSocket, "-n", "k8s.io", "images", "import", archive).CombinedOutput()
	if err != nil {
		return fmt.Errorf("importing %s into %s: %w: %s", archive, c.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
