package harness

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/chart"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/node"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
)

// The manager image the tests build from this checkout, by the definition a release uses
// (hack/image), under a name no registry serves: the node never pulls it.
const (
	managerImageRepository = "registry.test.local/argocd-agent-addon"
	managerImageTag        = "e2e"
	// metricsScraper is the ServiceAccount the tests scrape the manager's metrics as, bound to
	// the chart's metrics-reader ClusterRole as a user binds Prometheus.
	metricsScraper = "metrics-scraper"
)

var managerImage struct {
	once    sync.Once
	dir     string
	archive string
	err     error
}

// RemoveManagerImage deletes the manager image built for this process; a TestMain calls it
// after the tests.
func RemoveManagerImage() {
	if managerImage.dir != "" {
		_ = os.RemoveAll(managerImage.dir)
	}
}

// buildManagerImage builds the manager binary and its image for this machine's platform as a
// docker-archive, once per test process: every Env of the process runs the same checkout.
func buildManagerImage() (string, error) {
	managerImage.once.Do(func() {
		managerImage.archive, managerImage.err = buildManagerImageOnce()
	})
	return managerImage.archive, managerImage.err
}

func buildManagerImageOnce() (string, error) {
	dir, err := os.MkdirTemp("", "argocd-agent-addon-image-")
	if err != nil {
		return "", err
	}
	managerImage.dir = dir
	bin, err := proc.BuildAddon(dir)
	if err != nil {
		return "", err
	}
	root, err := chart.Dir() // charts/argocd-agent-addon, in the checkout's root
	if err != nil {
		return "", err
	}
	root = filepath.Dir(filepath.Dir(root))
	archive := filepath.Join(dir, "manager-image.tar")
	goarch, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "run", "./hack/image", "build", "--kind", "manager",
		"--binary", "linux/"+strings.TrimSpace(string(goarch))+"="+bin,
		"--tag", managerImageRepository+":"+managerImageTag, "--archive", archive)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the manager image: %w: %s", err, out)
	}
	return archive, nil
}

// waitManager waits until the chart's manager pod is Ready and holds the leader Lease, and
// prepares scraping its metrics as a ServiceAccount bound to the chart's metrics-reader role.
func (e *Env) waitManager(ctx context.Context) error {
	c := e.Hub.Client
	var last error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if last = c.List(ctx, pods, client.InNamespace(AddonNamespace), client.MatchingLabels{"app.kubernetes.io/name": chart.ReleaseName}); last != nil {
			return false, nil
		}
		leases := &coordinationv1.LeaseList{}
		if last = c.List(ctx, leases, client.InNamespace(AddonNamespace)); last != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			ready, why := node.PodReady(&p)
			if !ready {
				last = fmt.Errorf("manager pod %s: %s", p.Name, why)
				continue
			}
			for _, l := range leases.Items {
				if l.Spec.HolderIdentity != nil && strings.HasPrefix(*l.Spec.HolderIdentity, p.Name+"_") {
					e.ManagerPod = p.Name
					e.MetricsURL = fmt.Sprintf("https://%s:8080/metrics", p.Status.PodIP)
					return true, nil
				}
			}
			last = fmt.Errorf("manager pod %s Ready but holds no Lease in %s yet", p.Name, AddonNamespace)
		}
		if len(pods.Items) == 0 {
			last = fmt.Errorf("no manager pod in %s yet", AddonNamespace)
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("manager pod not Ready and leading within 2 minutes: %v", last)
	}

	// Already there after an upgrade.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: AddonNamespace, Name: metricsScraper}}
	if err := c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := c.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: metricsScraper},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: chart.ReleaseName + "-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: AddonNamespace, Name: metricsScraper}},
	}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	cs, err := kubernetes.NewForConfig(e.Hub.Config)
	if err != nil {
		return err
	}
	tr, err := cs.CoreV1().ServiceAccounts(AddonNamespace).CreateToken(ctx, metricsScraper,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	e.token = tr.Status.Token
	// The manager serves metrics with a self-signed certificate, as the chart deploys it.
	e.metrics = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed test endpoint
	_, err = e.Metrics(ctx)
	return err
}

// UninstallChart runs `helm uninstall` of the add-on, as a user removes it. The tests' own
// metrics ServiceAccount and its binding go first, so that nothing the harness added stays.
func (e *Env) UninstallChart(ctx context.Context) error {
	if err := client.IgnoreNotFound(e.Hub.Client.Delete(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: metricsScraper}})); err != nil {
		return err
	}
	if err := client.IgnoreNotFound(e.Hub.Client.Delete(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: AddonNamespace, Name: metricsScraper}})); err != nil {
		return err
	}
	return chart.Uninstall(e.helm, e.HubKubeconfig, AddonNamespace)
}

// ReinstallChart installs the add-on again after UninstallChart, with the values it was first
// installed with, and waits for its manager to lead (and, without HarnessPKI, for the hub PKI).
func (e *Env) ReinstallChart(ctx context.Context) error {
	return e.installAddon(ctx)
}

// UpgradeChart runs `helm upgrade` of the add-on with values on top of the release's, and waits
// until a new manager pod leads.
func (e *Env) UpgradeChart(ctx context.Context, values map[string]string) error {
	old := e.ManagerPod
	if err := chart.Upgrade(e.helm, e.HubKubeconfig, AddonNamespace, values); err != nil {
		return err
	}
	return e.waitNewManager(ctx, old)
}

// waitNewManager waits after a helm upgrade until a manager pod other than old leads.
func (e *Env) waitNewManager(ctx context.Context, old string) error {
	// The old pod may lead for a while, and the new one's metrics endpoint comes up after it
	// is Ready: both are waited for, not errors.
	var last error
	err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		if last = e.waitManager(ctx); last != nil {
			return false, nil
		}
		return e.ManagerPod != old, nil
	})
	if err != nil {
		return fmt.Errorf("no new manager pod leading and serving metrics after helm upgrade (still %s): %v (%w)", e.ManagerPod, last, err)
	}
	return nil
}

// Metrics scrapes the leading manager's metrics endpoint as a Prometheus with the chart's
// metrics-reader role would.
func (e *Env) Metrics(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.MetricsURL, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := e.metrics.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", e.MetricsURL, resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}
