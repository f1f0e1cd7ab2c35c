package main

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The image holds the binary, executable and owned by root, at the path its entrypoint names,
// runs it as the numeric user Kubernetes' runAsNonRoot can check, and has the same digest when
// built twice from the same binary.
func TestImageDefinitions(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(bin, []byte("\x7fELF not really"), 0o755); err != nil {
		t.Fatal(err)
	}
	platform := v1.Platform{OS: "linux", Architecture: "arm64"}
	for kind, def := range definitions {
		t.Run(kind, func(t *testing.T) {
			img, err := def.image(platform, bin, map[string]string{"k": "v"}, time.Unix(0, 0))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.OS != "linux" || cfg.Architecture != "arm64" {
				t.Errorf("platform %s/%s, want linux/arm64", cfg.OS, cfg.Architecture)
			}
			if len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != def.binaryPath {
				t.Errorf("entrypoint %v, want [%s]", cfg.Config.Entrypoint, def.binaryPath)
			}
			if cfg.Config.User == "" || cfg.Config.User[0] < '1' || cfg.Config.User[0] > '9' {
				t.Errorf("user %q is not a numeric non-root user", cfg.Config.User)
			}
			hdr := fileIn(t, img, def.binaryPath[1:])
			if hdr.Mode != 0o755 || hdr.Uid != 0 {
				t.Errorf("%s: mode %o uid %d, want 755 owned by root", def.binaryPath, hdr.Mode, hdr.Uid)
			}
			for _, link := range def.links {
				if hdr := fileIn(t, img, link[1:]); hdr.Typeflag != tar.TypeSymlink || hdr.Linkname != filepath.Base(def.binaryPath) {
					t.Errorf("%s: type %c to %q, want a link to %s", link, hdr.Typeflag, hdr.Linkname, filepath.Base(def.binaryPath))
				}
			}
			again, err := def.image(platform, bin, map[string]string{"k": "v"}, time.Unix(0, 0))
			if err != nil {
				t.Fatal(err)
			}
			d1, _ := img.Digest()
			d2, _ := again.Digest()
			if d1 != d2 {
				t.Errorf("two builds from one binary differ: %s, %s", d1, d2)
			}
		})
	}
	if got := definitions["argocd-agent"]; got.binaryPath != "/bin/argocd-agent" || got.user != "999" {
		t.Errorf("argocd-agent image %+v no longer matches upstream's layout (/bin/argocd-agent, USER 999)", got)
	}
}

func fileIn(t *testing.T, img v1.Image, name string) *tar.Header {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if hdr.Name == name {
				_ = rc.Close()
				return hdr
			}
		}
		_ = rc.Close()
	}
	t.Fatalf("%s not in the image", name)
	return nil
}
