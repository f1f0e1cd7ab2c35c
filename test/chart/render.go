// Package chart renders the argocd-agent-addon Helm chart with a real helm binary and parses the
// result, so tests can check the rendered objects or install them into a real API server.
package chart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// ReleaseName is the release name Render uses. It contains the chart name, so the manager's
// Deployment, ServiceAccount and RBAC are all named "argocd-agent-addon".
const ReleaseName = "argocd-agent-addon"

// chartPath is the chart's directory relative to the repository root.
var chartPath = filepath.Join("charts", "argocd-agent-addon")

// Dir returns the chart's directory. It is searched for upwards from the working directory
// rather than derived from this file's path, which -trimpath builds do not keep; `go test` runs
// in the package's directory, inside the repository.
func Dir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		candidate := filepath.Join(dir, chartPath)
		if _, err := os.Stat(filepath.Join(candidate, "Chart.yaml")); err == nil {
			return candidate, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no %s/Chart.yaml in the working directory or any parent", chartPath)
		}
		dir = parent
	}
}

// Render runs `helm template` on the chart as release ReleaseName in releaseNamespace, with each
// entry of values passed as `--set key=value` (so a comma in a value must be escaped as `\,`, as
// on helm's command line), and returns the rendered objects in helm's install order. helm is the
// path of the helm binary. A failed render returns an error carrying helm's message.
func Render(helm string, releaseNamespace string, values map[string]string) ([]*unstructured.Unstructured, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	stdout, err := runHelm(helm, append([]string{"template", ReleaseName, dir, "--namespace", releaseNamespace}, setFlags(values)...)...)
	if err != nil {
		return nil, err
	}
	objs, err := parse(stdout)
	if err != nil {
		return nil, fmt.Errorf("parsing the output of helm template: %w", err)
	}
	return objs, nil
}

// Install runs `helm install` of the chart as ReleaseName into namespace (created if missing) on
// the cluster of kubeconfig, as a user installs it.
func Install(helm, kubeconfig, namespace string, values map[string]string) error {
	dir, err := Dir()
	if err != nil {
		return err
	}
	_, err = runHelm(helm, append([]string{"install", ReleaseName, dir, "--namespace", namespace, "--create-namespace",
		"--kubeconfig", kubeconfig}, setFlags(values)...)...)
	return err
}

// Upgrade runs `helm upgrade` of ReleaseName in namespace with the values of the release and
// values on top, as a user changes a setting.
func Upgrade(helm, kubeconfig, namespace string, values map[string]string) error {
	dir, err := Dir()
	if err != nil {
		return err
	}
	_, err = runHelm(helm, append([]string{"upgrade", ReleaseName, dir, "--namespace", namespace, "--reuse-values",
		"--kubeconfig", kubeconfig}, setFlags(values)...)...)
	return err
}

// Released is a chart a release pushed to an OCI registry (hack/release.sh).
type Released struct {
	// Ref is the chart's oci:// reference, Version its version.
	Ref, Version string
	// PlainHTTP: the registry serves HTTP, not HTTPS.
	PlainHTTP bool
}

func (r Released) args() []string {
	args := []string{r.Ref, "--version", r.Version}
	if r.PlainHTTP {
		args = append(args, "--plain-http")
	}
	return args
}

// InstallReleased runs `helm install` of a released chart from its registry as ReleaseName, as
// a user installs a release.
func InstallReleased(helm, kubeconfig, namespace string, r Released, values map[string]string) error {
	args := append([]string{"install", ReleaseName}, r.args()...)
	_, err := runHelm(helm, append(append(args, "--namespace", namespace, "--create-namespace", "--kubeconfig", kubeconfig), setFlags(values)...)...)
	return err
}

// UpgradeReleased runs `helm upgrade` of ReleaseName to another released chart, as the README
// tells users to: --reset-then-reuse-values keeps the values they set and takes the new chart's
// defaults (--reuse-values would keep the old chart's, its image among them).
func UpgradeReleased(helm, kubeconfig, namespace string, r Released) error {
	args := append([]string{"upgrade", ReleaseName}, r.args()...)
	_, err := runHelm(helm, append(args, "--reset-then-reuse-values", "--namespace", namespace, "--kubeconfig", kubeconfig)...)
	return err
}

// Uninstall runs `helm uninstall` of ReleaseName, waiting until its objects are deleted.
func Uninstall(helm, kubeconfig, namespace string) error {
	_, err := runHelm(helm, "uninstall", ReleaseName, "--namespace", namespace, "--kubeconfig", kubeconfig, "--wait", "--timeout", "2m")
	return err
}

// setFlags are --set flags for values, sorted so that a failing command is reproducible from
// the command in its error.
func setFlags(values map[string]string) []string {
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var args []string
	for _, k := range keys {
		args = append(args, "--set", k+"="+values[k])
	}
	return args
}

func runHelm(helm string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helm, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", helm, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// parse splits a multi-document YAML stream into objects, skipping documents that hold only
// comments (helm emits one for a template that renders nothing).
func parse(manifests []byte) ([]*unstructured.Unstructured, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifests)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		data, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("%w in document:\n%s", err, doc)
		}
		if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
			continue
		}
		// Through JSON rather than straight into a map, so integers decode as int64, which
		// unstructured objects (and their deep copies) require.
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("%w in document:\n%s", err, doc)
		}
		objs = append(objs, obj)
	}
}
