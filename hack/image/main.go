// Command image builds the project's container images without a Docker daemon, from static
// binaries built beforehand, and pushes them to a registry for a release.
//
//	go run ./hack/image build --kind manager --binary linux/amd64=bin/linux_amd64/argocd-agent-addon \
//	    --binary linux/arm64=bin/linux_arm64/argocd-agent-addon --tag quay.io/x/argocd-agent-addon:v1 --oci _output/image
//	go run ./hack/image build --kind argocd-agent --binary linux/amd64=argocd-agent --tag quay.io/argoprojlabs/argocd-agent:v0.9.0 --archive agent.tar
//	go run ./hack/image push --oci _output/image --tag quay.io/x/argocd-agent-addon:v1
//	go run ./hack/image digest --oci _output/image
//
// --oci writes an OCI image layout holding one multi-platform index; --archive writes a
// docker-archive of one platform, which `ctr images import` (the test nodes) and `docker load` read.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: image build|push|digest [flags] (-h for each)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = build(os.Args[2:])
	case "push":
		err = push(os.Args[2:])
	case "digest":
		err = digest(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want build, push or digest", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// binaries collects --binary os/arch=path flags.
type binaries map[string]string

func (b binaries) String() string { return fmt.Sprint(map[string]string(b)) }

func (b binaries) Set(v string) error {
	platform, file, ok := strings.Cut(v, "=")
	if !ok || file == "" {
		return fmt.Errorf("%q: want os/arch=path", v)
	}
	if _, err := v1.ParsePlatform(platform); err != nil {
		return err
	}
	b[platform] = file
	return nil
}

func build(args []string) error {
	fs := flag.NewFlagSet("build", flag.ExitOnError)
	bins := binaries{}
	kind := fs.String("kind", "", "image to build: manager, argocd-agent, argocd, prometheus or pause")
	fs.Var(bins, "binary", "os/arch=path of the static binary for that platform (repeat for each platform)")
	tag := fs.String("tag", "", "image reference, e.g. quay.io/argocd-agent-addon/argocd-agent-addon:v0.1.0")
	version := fs.String("version", "", "org.opencontainers.image.version label")
	revision := fs.String("revision", "", "org.opencontainers.image.revision label")
	ociDir := fs.String("oci", "", "write an OCI image layout (every platform) to this directory")
	archive := fs.String("archive", "", "write a docker-archive (one platform) to this file")
	_ = fs.Parse(args)

	def, ok := definitions[*kind]
	if !ok {
		return fmt.Errorf("--kind %q: want one of manager, argocd-agent, argocd, prometheus, pause", *kind)
	}
	ref, err := name.ParseReference(*tag, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("--tag: %w", err)
	}
	if len(bins) == 0 {
		return errors.New("--binary is required")
	}
	if (*ociDir == "") == (*archive == "") {
		return errors.New("give one of --oci and --archive")
	}
	if *archive != "" && len(bins) != 1 {
		return errors.New("--archive holds one platform: give one --binary")
	}
	created, err := createdTime()
	if err != nil {
		return err
	}
	labels := map[string]string{
		"org.opencontainers.image.source":   "https://github.com/argocd-agent-addon/argocd-agent-addon",
		"org.opencontainers.image.licenses": "Apache-2.0",
	}
	if *version != "" {
		labels["org.opencontainers.image.version"] = *version
	}
	if *revision != "" {
		labels["org.opencontainers.image.revision"] = *revision
	}

	platforms := make([]string, 0, len(bins))
	for p := range bins {
		platforms = append(platforms, p)
	}
	sort.Strings(platforms) // a fixed order keeps the index digest reproducible
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var last v1.Image
	for _, p := range platforms {
		platform, _ := v1.ParsePlatform(p)
		img, err := def.image(*platform, bins[p], labels, created)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: platform}})
		last = img
	}
	if *archive != "" {
		return tarball.WriteToFile(*archive, ref, last)
	}
	if err := os.RemoveAll(*ociDir); err != nil {
		return err
	}
	l, err := layout.Write(*ociDir, empty.Index)
	if err != nil {
		return err
	}
	return l.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref.String()}))
}

// createdTime is SOURCE_DATE_EPOCH if set (reproducible builds' convention), else the Unix epoch,
// so the same binaries always make the same image digest.
func createdTime() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	var sec int64
	if _, err := fmt.Sscan(v, &sec); err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", v, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// ociIndex returns the one index of an OCI layout that build wrote, and its digest.
func ociIndex(dir string) (v1.ImageIndex, v1.Hash, error) {
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	m, err := root.IndexManifest()
	if err != nil {
		return nil, v1.Hash{}, err
	}
	if len(m.Manifests) != 1 {
		return nil, v1.Hash{}, fmt.Errorf("%s holds %d entries, want the one index build writes", dir, len(m.Manifests))
	}
	idx, err := root.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	d, err := idx.Digest()
	return idx, d, err
}

// digest prints the digest of the index build --oci wrote: what a registry serves it under, and
// what a release pins the chart to.
func digest(args []string) error {
	fs := flag.NewFlagSet("digest", flag.ExitOnError)
	ociDir := fs.String("oci", "", "OCI image layout written by build --oci")
	_ = fs.Parse(args)
	_, d, err := ociIndex(*ociDir)
	if err != nil {
		return err
	}
	fmt.Println(d)
	return nil
}

// push uploads the index of an OCI layout that build wrote, with credentials from the Docker
// config (`docker login`, or $DOCKER_CONFIG), as a release does, and prints its digest.
// --plain-http is for a registry without TLS (a local or test one).
func push(args []string) error {
	fs := flag.NewFlagSet("push", flag.ExitOnError)
	ociDir := fs.String("oci", "", "OCI image layout written by build --oci")
	tag := fs.String("tag", "", "where to push, e.g. quay.io/argocd-agent-addon/argocd-agent-addon:v0.1.0")
	plainHTTP := fs.Bool("plain-http", false, "talk to the registry over HTTP, not HTTPS")
	immutable := fs.Bool("immutable", false, "refuse to move a tag the registry already has at another digest")
	_ = fs.Parse(args)
	opts := []name.Option{name.StrictValidation}
	if *plainHTTP {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(*tag, opts...)
	if err != nil {
		return fmt.Errorf("--tag: %w", err)
	}
	idx, d, err := ociIndex(*ociDir)
	if err != nil {
		return err
	}
	auth := remote.WithAuthFromKeychain(authn.DefaultKeychain)
	if *immutable {
		existing, err := remote.Head(ref, auth)
		var terr *transport.Error
		switch {
		case err == nil && existing.Digest != d:
			return fmt.Errorf("%s is already %s, not %s: a released tag is never moved", ref, existing.Digest, d)
		case err == nil:
			fmt.Println(d) // already there: a rerun of the same release
			return nil
		case !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound:
			return fmt.Errorf("checking whether %s exists: %w", ref, err)
		}
	}
	if err := remote.WriteIndex(ref, idx, auth); err != nil {
		return err
	}
	fmt.Println(d)
	return nil
}
