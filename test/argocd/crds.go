package argocd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// CRDDirEnv may name a folder holding the Argo CD CRD files; by default they are read from the
// github.com/argoproj/argo-cd/v3 module that argocd-agent's wrapper module requires.
const CRDDirEnv = "ARGOCD_CRD_DIR"

// CRDFiles are the Argo CD CRDs argocd-agent needs, in argo-cd's manifests/crds/.
var CRDFiles = []string{"application-crd.yaml", "appproject-crd.yaml", "applicationset-crd.yaml"}

// wrapperModule is the folder (relative to the main module root) of the module that builds
// argocd-agent; its go.mod pins the argo-cd version argocd-agent was built with.
const wrapperModule = "hack/tools/argocd-agent"

// CRDDir returns the folder holding the Argo CD CRDs: $ARGOCD_CRD_DIR, or manifests/crds of the
// github.com/argoproj/argo-cd/v3 version in hack/tools/argocd-agent's module graph (downloaded into
// the Go module cache if needed; argo-cd itself is not a dependency of the main module).
func CRDDir(ctx context.Context) (string, error) {
	if dir := os.Getenv(CRDDirEnv); dir != "" {
		return dir, nil
	}
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	wrapper := filepath.Join(root, wrapperModule)
	if _, err := os.Stat(filepath.Join(wrapper, "go.mod")); err != nil {
		return "", fmt.Errorf("locating the argocd-agent wrapper module (run from inside the main module, or set %s): %w", CRDDirEnv, err)
	}
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", "github.com/argoproj/argo-cd/v3")
	cmd.Dir = wrapper
	// Same checksum setting hack/test-tools.sh builds argocd-agent with; no GOFLAGS (e.g. a
	// -mod=vendor meant for the main module) or workspace from the environment.
	cmd.Env = append(os.Environ(), "GONOSUMDB=github.com/stackrox/go-grpc-http1", "GOFLAGS=", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download github.com/argoproj/argo-cd/v3 in %s: %w: %s", wrapper, err, stderr.String())
	}
	var mod struct{ Dir, Version, Error string }
	if err := json.Unmarshal(out, &mod); err != nil {
		return "", fmt.Errorf("go mod download -json: %w", err)
	}
	if mod.Error != "" || mod.Dir == "" {
		return "", fmt.Errorf("go mod download github.com/argoproj/argo-cd/v3: %s", mod.Error)
	}
	return filepath.Join(mod.Dir, "manifests", "crds"), nil
}

// ArgoCDCRDs reads the Application, AppProject and ApplicationSet CRDs.
func ArgoCDCRDs(ctx context.Context) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	dir, err := CRDDir(ctx)
	if err != nil {
		return nil, err
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, name := range CRDFiles {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(data, crd); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if crd.Kind != "CustomResourceDefinition" || crd.Name == "" {
			return nil, fmt.Errorf("%s: not a CustomResourceDefinition", name)
		}
		crds = append(crds, crd)
	}
	return crds, nil
}

// InstallArgoCDCRDs installs the Argo CD CRDs into the API server of cfg and waits until they are
// served.
func InstallArgoCDCRDs(ctx context.Context, cfg *rest.Config) error {
	crds, err := ArgoCDCRDs(ctx)
	if err != nil {
		return err
	}
	_, err = envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		CRDs:         crds,
		MaxTime:      time.Minute,
		PollInterval: 100 * time.Millisecond,
	})
	if err != nil {
		return fmt.Errorf("installing the Argo CD CRDs: %w", err)
	}
	return nil
}
