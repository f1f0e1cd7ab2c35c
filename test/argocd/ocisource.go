package argocd

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/registry"
)

// SourceRegistry is an OCI registry (test/registry) that serves Argo CD sources: the manifests
// of an app as an OCI artifact, which repo-server pulls with oras-go and no git binary.
type SourceRegistry struct {
	*registry.Registry
}

// StartSourceRegistry serves a registry on host (an address the nodes' pods reach, such as the
// machine's) until ctx ends or Stop.
func StartSourceRegistry(ctx context.Context, host string) (*SourceRegistry, error) {
	r, err := registry.Start(ctx, host)
	if err != nil {
		return nil, err
	}
	return &SourceRegistry{r}, nil
}

// RepoURL is the Argo CD repoURL of repository repo: oci://host:port/repo.
func (r *SourceRegistry) RepoURL(repo string) string { return "oci://" + r.Addr + "/" + repo }

// Push publishes files (name -> content, at the artifact's root) as repo:tag, in the layout
// Argo CD reads an OCI source from: an OCI manifest with one tar+gzip layer and a non-Helm
// config. Argo CD's Application then uses path ".".
func (r *SourceRegistry) Push(ctx context.Context, repo, tag string, files map[string]string) error {
	tgz, err := tarGzip(files)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), static.NewLayer(tgz, types.OCILayer))
	if err != nil {
		return err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	ref, err := name.NewTag(r.Addr+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}

func tarGzip(files map[string]string) ([]byte, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, n := range names {
		data := []byte(files[n])
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(data))}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := errors.Join(tw.Close(), gz.Close()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// RepositorySecret is the Argo CD repository secret for the registry's repo: type oci, over
// plain HTTP (insecureOCIForceHttp), anonymous. With project set, argocd-agent's principal
// distributes it to the managed agents that project reaches.
func (r *SourceRegistry) RepositorySecret(namespace, secretName, repo, project string) *corev1.Secret {
	data := map[string]string{
		"type": "oci", "name": repo, "url": r.RepoURL(repo), "insecureOCIForceHttp": "true",
	}
	if project != "" {
		data["project"] = project
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: secretName,
			Labels: map[string]string{"argocd.argoproj.io/secret-type": "repository"}},
		StringData: data,
	}
}
