package harness

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/chart"
)

// Release is what hack/release.sh released into Env.Registry.
type Release struct {
	Version string
	// Image is the manager image by tag, Digest its index digest, which the chart pins.
	Image, Digest string
	Chart         chart.Released
}

// Release runs hack/release.sh (make release) for version into Env.Registry, for this machine's
// platform only, and returns what it pushed.
func (e *Env) Release(ctx context.Context, version string) (Release, error) {
	dir, err := chart.Dir() // charts/argocd-agent-addon, in the checkout's root
	if err != nil {
		return Release{}, err
	}
	root := filepath.Dir(filepath.Dir(dir))
	goarch, err := exec.CommandContext(ctx, "go", "env", "GOARCH").Output()
	if err != nil {
		return Release{}, err
	}
	out := filepath.Join(e.opts.Dir, "release")
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "release.sh"))
	cmd.Dir = root
	// ALLOW_UNTAGGED: the checkout under test is no tagged release.
	cmd.Env = append(os.Environ(), "VERSION="+version, "REGISTRY="+e.Registry.Addr+"/argocd-agent-addon", "PLAIN_HTTP=1", "ALLOW_UNTAGGED=1",
		"IMAGE_PLATFORMS=linux/"+strings.TrimSpace(string(goarch)), "OUTPUT="+out, "HELM="+e.helm)
	if log, err := cmd.CombinedOutput(); err != nil {
		return Release{}, fmt.Errorf("hack/release.sh %s: %w: %s", version, err, log)
	}
	f, err := os.Open(filepath.Join(out, version, "release.env"))
	if err != nil {
		return Release{}, err
	}
	defer f.Close()
	env := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), "="); ok {
			env[k] = v
		}
	}
	if err := s.Err(); err != nil {
		return Release{}, err
	}
	if env["PUSHED"] != "true" {
		return Release{}, fmt.Errorf("hack/release.sh %s pushed nothing: %v", version, env)
	}
	return Release{Version: env["VERSION"], Image: env["IMAGE"], Digest: env["IMAGE_DIGEST"],
		Chart: chart.Released{Ref: env["CHART"], Version: env["CHART_VERSION"], PlainHTTP: true}}, nil
}

// UpgradeRelease releases version into the registry and upgrades the add-on to it with `helm
// upgrade` from the registry, as the README says, and waits until a new manager pod leads.
func (e *Env) UpgradeRelease(ctx context.Context, version string) error {
	r, err := e.Release(ctx, version)
	if err != nil {
		return err
	}
	old := e.ManagerPod
	if err := chart.UpgradeReleased(e.helm, e.HubKubeconfig, AddonNamespace, r.Chart); err != nil {
		return err
	}
	e.Released = r
	return e.waitNewManager(ctx, old)
}
