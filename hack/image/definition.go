package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// definition is what an image holds besides its binary. Each is one static binary on an empty
// base: no shell, no package manager, nothing to patch but the binary itself.
type definition struct {
	// binaryPath is where the binary lands in the image.
	binaryPath string
	// user is numeric so that Kubernetes' runAsNonRoot can check it without a passwd file.
	user string
	cmd  []string
	// links are symbolic links to the binary, for a binary that chooses what to run by the name
	// it is run as.
	links []string
}

var definitions = map[string]definition{
	// The add-on manager. The chart runs it as `manager`; the same image serves every subcommand.
	"manager": {binaryPath: "/usr/local/bin/argocd-agent-addon", user: "65532:65532", cmd: []string{"manager"}},
	// argocd-agent as upstream's image lays it out (its Dockerfile at v0.9.0: /bin/argocd-agent,
	// USER 999, that entrypoint), so the Deployment we deliver runs it unchanged. Upstream's base
	// is Alpine; the agent needs none of it.
	"argocd-agent": {binaryPath: "/bin/argocd-agent", user: "999"},
	// Argo CD's components for the test fleet (hack/tools/argocd-agent/argocd), as upstream's
	// image lays them out: one binary, a link per component at /usr/local/bin, USER 999.
	"argocd": {binaryPath: "/usr/local/bin/argocd", user: "999", links: []string{
		"/usr/local/bin/argocd-application-controller", "/usr/local/bin/argocd-repo-server",
		"/usr/local/bin/argocd-applicationset-controller",
	}},
	// Prometheus for the end-to-end tests (hack/tools/prometheus), as upstream's image lays it
	// out: /bin/prometheus, USER nobody; the pod names its config and storage in its args.
	"prometheus": {binaryPath: "/bin/prometheus", user: "65534:65534"},
	// The test nodes' sandbox image.
	"pause": {binaryPath: "/pause", user: "65535:65535"},
}

// image builds the image of kind for one platform from its static binary.
func (d definition) image(platform v1.Platform, binary string, labels map[string]string, created time.Time) (v1.Image, error) {
	data, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	layer, err := binaryLayer(d.binaryPath, d.links, data, created)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Variant = platform.OS, platform.Architecture, platform.Variant
	cfg.Created = v1.Time{Time: created}
	cfg.Config.Entrypoint = []string{d.binaryPath}
	cfg.Config.Cmd = d.cmd
	cfg.Config.User = d.user
	// The PATH Docker and buildah give an image built FROM scratch, so the Dockerfile at the top
	// builds the same config (test/dockerfile).
	cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cfg.Config.WorkingDir = "/"
	cfg.Config.Labels = labels
	return mutate.ConfigFile(img, cfg)
}

// binaryLayer is a one-file layer: the binary at p with its parent directories, mode 0755,
// owned by root so that the non-root user can run but not replace it, and links to it (in p's
// directory). (crane.Layer writes mode 0, not executable.) Fixed times and order make the
// layer, and the image digest, reproducible.
func binaryLayer(p string, links []string, data []byte, modTime time.Time) (v1.Layer, error) {
	var dirs []string
	for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
		dirs = append([]string{dir[1:] + "/"}, dirs...)
	}
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, dir := range dirs {
		if err := w.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: modTime, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	if err := w.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p[1:], Mode: 0o755, Size: int64(len(data)), ModTime: modTime, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	for _, link := range links {
		if path.Dir(link) != path.Dir(p) {
			return nil, fmt.Errorf("link %s: not in %s", link, path.Dir(p))
		}
		if err := w.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: link[1:], Linkname: path.Base(p), Mode: 0o777, ModTime: modTime, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("layer of %s: %w", p, err)
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
}
