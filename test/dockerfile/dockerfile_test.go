// Package dockerfile proves that the Dockerfile at the top of the repository, built by buildah
// (Debian's, no daemon), makes the same image as hack/image, which releases and the tests use:
// the same files with the same modes and owners, user, entrypoint, command, working directory,
// environment and labels.
package dockerfile

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/must"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
)

const (
	version  = "v9.9.9-dockerfile"
	revision = "0123abc"
)

func TestDockerfileMatchesHackImage(t *testing.T) {
	buildah, err := exec.LookPath("buildah")
	if err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("buildah (as root) is needed in CI: hack/test-tools.sh installs it (%v, uid %d)", err, os.Geteuid())
		}
		t.Skipf("buildah as root is needed (%v, uid %d): hack/test-tools.sh installs Debian's", err, os.Geteuid())
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	goarch, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		t.Fatal(err)
	}
	arch := strings.TrimSpace(string(goarch))
	dir := t.TempDir()

	// The build context a pipeline has after `make binaries`: the Dockerfile and bin/linux_<arch>.
	ctxDir := filepath.Join(dir, "context")
	binDir := filepath.Join(ctxDir, "bin", "linux_"+arch)
	must.Succeed(t, os.MkdirAll(binDir, 0o755))
	bin, err := proc.BuildAddon(binDir)
	must.Succeed(t, err)
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	must.Succeed(t, err)
	must.Succeed(t, os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), dockerfile, 0o644))

	store := []string{"--storage-driver", "vfs", "--root", filepath.Join(dir, "storage"), "--runroot", filepath.Join(dir, "run")}
	run(t, "", buildah, append(store, "build", "--platform", "linux/"+arch, "--build-arg", "VERSION="+version, "--build-arg", "REVISION="+revision,
		"--timestamp", "0", "--identity-label=false", "-t", "localhost/argocd-agent-addon:dockerfile", ctxDir)...)
	fromDockerfile := filepath.Join(dir, "dockerfile-oci")
	run(t, "", buildah, append(store, "push", "localhost/argocd-agent-addon:dockerfile", "oci:"+fromDockerfile)...)

	fromHackImage := filepath.Join(dir, "hack-image-oci")
	run(t, root, "go", "run", "./hack/image", "build", "--kind", "manager", "--binary", "linux/"+arch+"="+bin,
		"--tag", "localhost/argocd-agent-addon:hack-image", "--version", version, "--revision", revision, "--oci", fromHackImage)

	a, b := loadImage(t, fromDockerfile), loadImage(t, fromHackImage)
	ca, cb := configFile(t, a), configFile(t, b)
	for _, f := range []struct {
		name string
		a, b any
	}{
		{"OS", ca.OS, cb.OS}, {"Architecture", ca.Architecture, cb.Architecture},
		{"User", ca.Config.User, cb.Config.User}, {"Entrypoint", ca.Config.Entrypoint, cb.Config.Entrypoint},
		{"Cmd", ca.Config.Cmd, cb.Config.Cmd}, {"WorkingDir", ca.Config.WorkingDir, cb.Config.WorkingDir},
		{"Env", ca.Config.Env, cb.Config.Env}, {"Labels", ca.Config.Labels, cb.Config.Labels},
		{"ExposedPorts", ca.Config.ExposedPorts, cb.Config.ExposedPorts}, {"Volumes", ca.Config.Volumes, cb.Config.Volumes},
	} {
		if !reflect.DeepEqual(f.a, f.b) {
			t.Errorf("%s: the Dockerfile's %v, hack/image's %v", f.name, f.a, f.b)
		}
	}
	fa, fb := files(t, a), files(t, b)
	if !reflect.DeepEqual(fa, fb) {
		t.Errorf("files differ:\n  the Dockerfile's: %v\n  hack/image's:     %v", fa, fb)
	}
	t.Logf("the Dockerfile (buildah) and hack/image agree: user %s, entrypoint %v, cmd %v, labels %v, files %v",
		ca.Config.User, ca.Config.Entrypoint, ca.Config.Cmd, ca.Config.Labels, fa)
}

// repoRoot is the directory of go.mod, which holds the Dockerfile.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// loadImage reads the one image of an OCI layout (a multi-platform index holds one here).
func loadImage(t *testing.T, dir string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	must.Succeed(t, err)
	m, err := idx.IndexManifest()
	must.Succeed(t, err)
	if len(m.Manifests) != 1 {
		t.Fatalf("%s: %d manifests, want 1", dir, len(m.Manifests))
	}
	if m.Manifests[0].MediaType.IsIndex() {
		inner, err := idx.ImageIndex(m.Manifests[0].Digest)
		must.Succeed(t, err)
		im, err := inner.IndexManifest()
		must.Succeed(t, err)
		if len(im.Manifests) != 1 {
			t.Fatalf("%s: %d platforms, want 1", dir, len(im.Manifests))
		}
		img, err := inner.Image(im.Manifests[0].Digest)
		must.Succeed(t, err)
		return img
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	must.Succeed(t, err)
	return img
}

func configFile(t *testing.T, img v1.Image) *v1.ConfigFile {
	t.Helper()
	cfg, err := img.ConfigFile()
	must.Succeed(t, err)
	return cfg
}

// files describes each entry of the image's filesystem: type, mode, owner, and the digest of a
// file's content or a link's target. Names are normalised (no "./", no trailing "/").
func files(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	r := mutate.Extract(img)
	defer r.Close()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must.Succeed(t, err)
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		desc := fmt.Sprintf("type %c mode %o uid %d gid %d", h.Typeflag, h.Mode&0o7777, h.Uid, h.Gid)
		switch h.Typeflag {
		case tar.TypeReg:
			sum := sha256.New()
			_, err := io.Copy(sum, tr)
			must.Succeed(t, err)
			desc += " sha256 " + hex.EncodeToString(sum.Sum(nil))[:12]
		case tar.TypeSymlink, tar.TypeLink:
			desc += " -> " + h.Linkname
		}
		out[name] = desc
	}
	return out
}
