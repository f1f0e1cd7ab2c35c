package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/argocd"
)

// ocmModuleDir returns the directory of module mod as test/ocm (OCM v1.2.1's dependency set)
// resolves it, so the CRDs match the OCM controllers that run.
func ocmModuleDir(ctx context.Context, mod string) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", mod)
	cmd.Dir = filepath.Join(filepath.Dir(strings.TrimSpace(string(gomod))), "test", "ocm")
	cmd.Env = append(os.Environ(), "GONOSUMDB=sigs.k8s.io/about-api", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating %s from test/ocm: %w", mod, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// HubCRDs are what OCM's hub controllers, the add-on and the principal need on the hub. The
// add-on CRDs store v1beta1; OCM's conversion webhook (started by ocm-local hub) serves v1alpha1.
func HubCRDs(ctx context.Context) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	return crdsWithArgoCD(ctx,
		[]string{"cluster/v1", "cluster/v1alpha1", "cluster/v1beta1", "cluster/v1beta2", "work/v1", "work/v1alpha1", "addon/v1beta1"},
		[]string{"addon/v1alpha1/0000_03_addon.open-cluster-management.io_addontemplates.crd.yaml"},
		[]string{"manifests/cluster-manager/hub/crds/0000_00_multicluster.x-k8s.io_clusterprofiles.crd.yaml",
			"test/integration/testdeps/capi/cluster.x-k8s.io_clusters.yaml"})
}

// SpokeCRDs are what the klusterlet agents and the Argo CD agent need on a managed cluster.
func SpokeCRDs(ctx context.Context) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	return crdsWithArgoCD(ctx, []string{"cluster/v1alpha1", "work/v1"}, nil,
		[]string{"manifests/klusterlet/managed/clusterproperties.crd.yaml"})
}

// crdsWithArgoCD reads every CRD in apiDirs and the apiFiles of the api module, the ocmFiles of
// the ocm module, and Argo CD's CRDs.
func crdsWithArgoCD(ctx context.Context, apiDirs, apiFiles, ocmFiles []string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	api, err := ocmModuleDir(ctx, "open-cluster-management.io/api")
	if err != nil {
		return nil, err
	}
	ocm, err := ocmModuleDir(ctx, "open-cluster-management.io/ocm")
	if err != nil {
		return nil, err
	}
	var files []string
	for _, d := range apiDirs {
		m, err := filepath.Glob(filepath.Join(api, d, "*.crd.yaml"))
		if err != nil {
			return nil, err
		}
		files = append(files, m...)
	}
	for _, f := range apiFiles {
		files = append(files, filepath.Join(api, f))
	}
	for _, f := range ocmFiles {
		files = append(files, filepath.Join(ocm, f))
	}
	crds, err := readCRDs(files)
	if err != nil {
		return nil, err
	}
	argo, err := argocd.ArgoCDCRDs(ctx)
	if err != nil {
		return nil, err
	}
	return append(crds, argo...), nil
}

func readCRDs(files []string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, doc := range bytes.Split(data, []byte("\n---")) {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := yaml.Unmarshal(doc, crd); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				continue
			}
			if crd.Spec.Group == "addon.open-cluster-management.io" && len(crd.Spec.Versions) > 1 {
				for i := range crd.Spec.Versions {
					crd.Spec.Versions[i].Storage = crd.Spec.Versions[i].Name == "v1beta1"
				}
			}
			crds = append(crds, crd)
		}
	}
	return crds, nil
}
