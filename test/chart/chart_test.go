package chart_test

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	addonv1alpha1 "open-cluster-management.io/api/addon/v1alpha1"
	clusterv1alpha1 "open-cluster-management.io/api/cluster/v1alpha1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"
	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentversion"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/customization"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/chart"
)

const (
	releaseNamespace = "ocm-addons"
	// managerName is what the chart names the manager's objects for release chart.ReleaseName.
	managerName = chart.ReleaseName
	signerName  = "open-cluster-management.io/argocd-agent-addon"
	addonName   = "argocd-agent"
)

// helmBinary returns the helm binary from $HELM.
func helmBinary(t *testing.T) string { return toolFromEnv(t, "HELM", "helm") }

// toolFromEnv returns the path in the environment variable env, which hack/test-tools.sh sets
// for the tool it builds. Developers without it skip these tests; CI must not silently skip
// them, so there a missing one fails.
func toolFromEnv(t *testing.T, env, tool string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set in CI: run `eval \"$(hack/test-tools.sh)\"` first", env)
		}
		t.Skipf("%s is not set: run `eval \"$(hack/test-tools.sh)\"` to build %s", env, tool)
	}
	return path
}

func TestLint(t *testing.T) {
	helm := helmBinary(t)
	dir, err := chart.Dir()
	if err != nil {
		t.Fatal(err)
	}
	// --strict turns lint warnings into failures.
	out, err := exec.Command(helm, "lint", "--strict", dir, "--set", "agent.principal.address=x").CombinedOutput()
	if err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
}

// defaultManagerArgs are the manager's arguments with the chart's defaults.
var defaultManagerArgs = []string{
	"manager",
	"--ca-secret=argocd/argocd-agent-ca",
	"--cert-lifetime=168h",
	"--certificate-subject=cluster-name",
	"--grpc-server-username=system:serviceaccount:open-cluster-management-hub:grpc-server-sa",
	"--namespace=" + releaseNamespace,
	"--leader-elect=true",
	"--leader-election-namespace=" + releaseNamespace,
	"--leader-election-lease-duration=15s",
	"--leader-election-renew-deadline=10s",
	"--leader-election-retry-period=2s",
	"--metrics-bind-address=:8080",
	"--metrics-secure=true",
	"--health-probe-bind-address=:8081",
	"--principal-service=argocd/argocd-agent-principal",
	"--cluster-secrets=true",
	"--cluster-secret-namespace=argocd",
	"--resource-proxy-address=argocd-agent-resource-proxy:9090",
	"--cluster-secret-cert-lifetime=720h",
	"--cluster-secret-labels=cluster.open-cluster-management.io/clusterset,name",
	"--create-ca=false",
	"--principal-pki=false",
	"--principal-deployment=argocd/argocd-agent-principal",
	"--kube-api-qps=50",
	"--kube-api-burst=100",
	"--v=2",
}

// TestPrincipalAddressIsDiscoveredByDefault: without agent.principal.address the chart renders,
// the AddOnDeploymentConfig names no principal (the manager discovers it from the principal's
// Service), and the manager may read that one Service only.
func TestPrincipalAddressIsDiscoveredByDefault(t *testing.T) {
	helm := helmBinary(t)
	objs, err := chart.Render(helm, releaseNamespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	rendered := index(t, objs)
	adc := convert[addonv1alpha1.AddOnDeploymentConfig](t, rendered.get(t, "AddOnDeploymentConfig", releaseNamespace, addonName))
	for _, v := range adc.Spec.CustomizedVariables {
		if v.Name == "principalAddress" || v.Name == "principalPort" {
			t.Errorf("AddOnDeploymentConfig sets %s=%q: it would win over discovery", v.Name, v.Value)
		}
	}
	expectArgs(t, onlyContainer(t, convert[appsv1.Deployment](t, rendered.get(t, "Deployment", releaseNamespace, managerName))), defaultManagerArgs)
	role := convert[rbacv1.Role](t, rendered.get(t, "Role", "argocd", managerName+"-principal-service"))
	expectPermissions(t, "principal Service Role", role.Rules, permissions(
		rule{"", "services", "argocd-agent-principal", []string{"get", "list", "watch"}},
		rule{"apps", "deployments", "argocd-agent-principal", []string{"get", "list", "watch"}},
	))
	checkBinding(t, rendered.get(t, "RoleBinding", "argocd", managerName+"-principal-service"), "Role", managerName+"-principal-service", releaseNamespace)
	checkRBACIsLeastPrivilege(t, rendered, "argocd-agent-ca")
}

func TestInvalidValuesAreRefused(t *testing.T) {
	helm := helmBinary(t)
	for _, tc := range []struct {
		name    string
		values  map[string]string
		wantErr string
	}{
		{"unknown certificate subject", map[string]string{"certificate.subject": "cn"}, `certificate.subject "cn"`},
		{"replicas without leader election", map[string]string{"replicas": "2", "leaderElection.enabled": "false"}, "replicas 2 needs leaderElection.enabled"},
		{"unknown agent mode", map[string]string{"agent.mode": "pull"}, `agent.mode "pull"`},
		{"image digest that is no digest", map[string]string{"image.digest": "v1"}, `image.digest "v1": want sha256:`},
		{"a name too long for the metrics Service", map[string]string{"metrics.serviceMonitor.enabled": "true", "fullnameOverride": strings.Repeat("a", 56)},
			"the Service <name>-metrics must fit in 63"},
		{"unknown agent log level", map[string]string{"agent.logLevel": "loud"}, `agent.logLevel "loud"`},
		{"empty CA secret name", map[string]string{"caSecret.name": ""}, "caSecret.name is required"},
		{"zero API QPS", map[string]string{"kubeAPI.qps": "0"}, "kubeAPI.qps 0"},
		{"API burst below QPS", map[string]string{"kubeAPI.qps": "50", "kubeAPI.burst": "10"}, "kubeAPI.burst 10"},
		{"the old key of the principal's Deployment", map[string]string{"pki.principal.deployment": "my-principal"}, "pki.principal.deployment has moved to principal.deployment"},
		{"resource proxy without a port", map[string]string{"clusterSecrets.resourceProxyAddress": "argocd-agent-resource-proxy"}, `clusterSecrets.resourceProxyAddress "argocd-agent-resource-proxy"`},
		{"placement generator without cluster secrets", map[string]string{"applicationSets.placementGenerator": "true", "clusterSecrets.enabled": "false"},
			"applicationSets.placementGenerator needs clusterSecrets.enabled"},
		{"destination-based mapping on autonomous agents", map[string]string{"agent.destinationBasedMapping": "true", "agent.mode": "autonomous"},
			"agent.destinationBasedMapping is for managed agents"},
		{"cluster secret group without a namespace", map[string]string{"clusterSecrets.groups[0].placement": "eu",
			"clusterSecrets.groups[0].resourceProxyAddress": "rp:9090"}, "clusterSecrets.groups[0]: placement and namespace are required"},
		{"cluster secret group without a resource proxy port", map[string]string{"clusterSecrets.groups[0].placement": "eu",
			"clusterSecrets.groups[0].namespace": "argocd-eu", "clusterSecrets.groups[0].resourceProxyAddress": "rp"}, `clusterSecrets.groups[0].resourceProxyAddress "rp"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.values["agent.principal.address"] = "principal.example.com"
			_, err := chart.Render(helm, releaseNamespace, tc.values)
			if err == nil {
				t.Fatalf("helm template with %v succeeded, want an error", tc.values)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error does not contain %q: %v", tc.wantErr, err)
			}
		})
	}
}

// TestClusterSecretsOff: without cluster secrets the manager is told so and gets no access to
// any secret but the CA.
func TestClusterSecretsOff(t *testing.T) {
	helm := helmBinary(t)
	objs, err := chart.Render(helm, releaseNamespace, map[string]string{"clusterSecrets.enabled": "false"})
	if err != nil {
		t.Fatal(err)
	}
	rendered := index(t, objs)
	var args []string
	for _, a := range defaultManagerArgs {
		if !strings.HasPrefix(a, "--cluster-secret") && !strings.HasPrefix(a, "--resource-proxy") {
			args = append(args, a)
		}
		if a == "--principal-service=argocd/argocd-agent-principal" {
			args = append(args, "--cluster-secrets=false")
		}
	}
	expectArgs(t, onlyContainer(t, convert[appsv1.Deployment](t, rendered.get(t, "Deployment", releaseNamespace, managerName))), args)
	for k := range rendered {
		if strings.HasSuffix(string(k), managerName+"-cluster-secrets") {
			t.Errorf("%s rendered with clusterSecrets.enabled=false", k)
		}
	}
	checkRBACIsLeastPrivilege(t, rendered, "argocd-agent-ca")
}

// TestClusterSecretGroups: each group becomes a --cluster-secret-group flag, and the manager
// gets the cluster-secret Role in each group's namespace, once per namespace, and no other.
func TestClusterSecretGroups(t *testing.T) {
	helm := helmBinary(t)
	objs, err := chart.Render(helm, releaseNamespace, map[string]string{
		"clusterSecrets.groups[0].placement":            "argocd-agent-eu",
		"clusterSecrets.groups[0].namespace":            "argocd-eu",
		"clusterSecrets.groups[0].resourceProxyAddress": "argocd-agent-resource-proxy.argocd-eu.svc:9090",
		"clusterSecrets.groups[1].placement":            "argocd-agent-eu-2",
		"clusterSecrets.groups[1].placementNamespace":   "placements",
		"clusterSecrets.groups[1].namespace":            "argocd-eu",
		"clusterSecrets.groups[1].resourceProxyAddress": "argocd-agent-resource-proxy.argocd-eu.svc:9090",
	})
	if err != nil {
		t.Fatal(err)
	}
	rendered := index(t, objs)
	args := slices.Clone(defaultManagerArgs)
	i := slices.Index(args, "--resource-proxy-address=argocd-agent-resource-proxy:9090")
	if i < 0 {
		t.Fatal("no --resource-proxy-address in the default arguments")
	}
	args = slices.Insert(args, i+1,
		"--cluster-secret-group="+releaseNamespace+"/argocd-agent-eu=argocd-eu,argocd-agent-resource-proxy.argocd-eu.svc:9090",
		"--cluster-secret-group=placements/argocd-agent-eu-2=argocd-eu,argocd-agent-resource-proxy.argocd-eu.svc:9090")
	expectArgs(t, onlyContainer(t, convert[appsv1.Deployment](t, rendered.get(t, "Deployment", releaseNamespace, managerName))), args)
	var namespaces []string
	for _, obj := range rendered {
		if obj.GetKind() == "Role" && obj.GetName() == managerName+"-cluster-secrets" {
			namespaces = append(namespaces, obj.GetNamespace())
			rendered.get(t, "RoleBinding", obj.GetNamespace(), managerName+"-cluster-secrets")
		}
	}
	slices.Sort(namespaces)
	expectEqual(t, "namespaces of the cluster-secret Roles", namespaces, []string{"argocd", "argocd-eu"})
	checkRBACIsLeastPrivilege(t, rendered, "argocd-agent-ca")
}

// TestApplicationSetWiring: the opt-in wiring for ApplicationSets over OCM Placements: the
// generator's ConfigMap and read access to PlacementDecisions for upstream's ApplicationSet
// controller, in Argo CD's namespace, and destination-based mapping for the agents. Off, none
// of it exists and the fleet's config does not change (a changed ADC would roll every agent).
func TestApplicationSetWiring(t *testing.T) {
	helm := helmBinary(t)
	off, err := chart.Render(helm, releaseNamespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k := range index(t, off) {
		if strings.Contains(string(k), "placement-generator") {
			t.Errorf("%s rendered by default", k)
		}
	}
	offADC := convert[addonv1alpha1.AddOnDeploymentConfig](t, index(t, off).get(t, "AddOnDeploymentConfig", releaseNamespace, addonName))
	for _, v := range offADC.Spec.CustomizedVariables {
		if v.Name == "destinationBasedMapping" {
			t.Errorf("default AddOnDeploymentConfig sets %s=%s", v.Name, v.Value)
		}
	}

	objs, err := chart.Render(helm, releaseNamespace, map[string]string{
		"applicationSets.placementGenerator": "true", "agent.destinationBasedMapping": "true",
	})
	if err != nil {
		t.Fatal(err)
	}
	rendered := index(t, objs)
	cm := convert[corev1.ConfigMap](t, rendered.get(t, "ConfigMap", "argocd", "ocm-placement-generator"))
	expectEqual(t, "generator ConfigMap", cm.Data, map[string]string{
		"apiVersion": "cluster.open-cluster-management.io/v1beta1", "kind": "placementdecisions",
		"statusListKey": "decisions", "matchKey": "clusterName",
	})
	role := convert[rbacv1.Role](t, rendered.get(t, "Role", "argocd", managerName+"-placement-generator"))
	expectEqual(t, "generator Role rules", role.Rules, []rbacv1.PolicyRule{
		{APIGroups: []string{"cluster.open-cluster-management.io"}, Resources: []string{"placementdecisions"}, Verbs: []string{"get", "list", "watch"}},
	})
	binding := convert[rbacv1.RoleBinding](t, rendered.get(t, "RoleBinding", "argocd", managerName+"-placement-generator"))
	expectEqual(t, "generator RoleBinding subjects", binding.Subjects, []rbacv1.Subject{
		{Kind: "ServiceAccount", Name: "argocd-applicationset-controller", Namespace: "argocd"},
	})
	adc := convert[addonv1alpha1.AddOnDeploymentConfig](t, rendered.get(t, "AddOnDeploymentConfig", releaseNamespace, addonName))
	if !slices.Contains(adc.Spec.CustomizedVariables, addonv1alpha1.CustomizedVariable{Name: "destinationBasedMapping", Value: "true"}) {
		t.Errorf("AddOnDeploymentConfig variables %v lack destinationBasedMapping=true", adc.Spec.CustomizedVariables)
	}
	checkRBACIsLeastPrivilege(t, rendered, "argocd-agent-ca")
}

// TestFleetCustomization: the customization value becomes the AgentCustomization the
// ClusterManagementAddOn names as the type's default, and it decodes as the manager reads it.
func TestFleetCustomization(t *testing.T) {
	helm := helmBinary(t)
	objs, err := chart.Render(helm, releaseNamespace, map[string]string{
		"customization.pod.priorityClassName":              "system-cluster-critical",
		"customization.pod.annotations.example\\.com/team": "platform",
	})
	if err != nil {
		t.Fatal(err)
	}
	rendered := index(t, objs)
	obj := rendered.get(t, customization.Kind, releaseNamespace, "argocd-agent")
	c, err := customization.FromUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.Pod.PriorityClassName != "system-cluster-critical" || c.Spec.Pod.Annotations["example.com/team"] != "platform" {
		t.Errorf("AgentCustomization spec %+v, want the values' priorityClassName and annotation", c.Spec.Pod)
	}
	cma := convert[addonv1alpha1.ClusterManagementAddOn](t, rendered.get(t, "ClusterManagementAddOn", "", addonName))
	want := deploymentConfigSupport(addonName, releaseNamespace)
	want[2].DefaultConfig = &addonv1alpha1.ConfigReferent{Namespace: releaseNamespace, Name: "argocd-agent"}
	//lint:ignore SA1019 the chart writes v1alpha1 supportedConfigs, served by every OCM hub.
	expectEqual(t, "supportedConfigs", cma.Spec.SupportedConfigs, want)
}

// TestPKI: with the hub PKI on, the manager is told so and gets exactly what it needs: create
// secrets, and get/update/patch on the principal's three secrets only; get/list/watch/patch on
// the principal's Deployment; get on the resource proxy's Service.
func TestPKI(t *testing.T) {
	helm := helmBinary(t)
	objs, err := chart.Render(helm, releaseNamespace, map[string]string{
		"pki.createCA": "true", "pki.principal.enabled": "true",
		"pki.principal.extraSANs[0]": "principal.example.com", "pki.resourceProxy.extraSANs[0]": "10.0.0.9",
		"caSecret.namespace": "hub-ca",
	})
	if err != nil {
		t.Fatal(err)
	}
	rendered := index(t, objs)
	var args []string
	for _, a := range defaultManagerArgs {
		switch a {
		case "--ca-secret=argocd/argocd-agent-ca":
			a = "--ca-secret=hub-ca/argocd-agent-ca"
		case "--cluster-secret-namespace=argocd":
			a = "--cluster-secret-namespace=hub-ca"
		case "--create-ca=false":
			a = "--create-ca=true"
		case "--principal-deployment=argocd/argocd-agent-principal":
			continue // comes with --principal-pki=true below
		case "--principal-pki=false":
			args = append(args, "--principal-pki=true",
				"--principal-deployment=argocd/argocd-agent-principal",
				"--resource-proxy-service=argocd/argocd-agent-resource-proxy",
				"--principal-extra-sans=principal.example.com",
				"--resource-proxy-extra-sans=10.0.0.9",
				"--server-cert-lifetime=2160h")
			continue
		}
		args = append(args, a)
	}
	expectArgs(t, onlyContainer(t, convert[appsv1.Deployment](t, rendered.get(t, "Deployment", releaseNamespace, managerName))), args)
	pkiRole := convert[rbacv1.Role](t, rendered.get(t, "Role", "argocd", managerName+"-principal-pki"))
	expectEqual(t, "principal PKI Role rules", pkiRole.Rules, []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"argocd-agent-principal-tls", "argocd-agent-resource-proxy-tls", "argocd-agent-jwt"}, Verbs: []string{"get", "update", "patch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, ResourceNames: []string{"argocd-agent-principal"}, Verbs: []string{"patch"}},
		{APIGroups: []string{""}, Resources: []string{"services"}, ResourceNames: []string{"argocd-agent-resource-proxy"}, Verbs: []string{"get"}},
	})
	checkBinding(t, rendered.get(t, "RoleBinding", "argocd", managerName+"-principal-pki"), "Role", managerName+"-principal-pki", releaseNamespace)
	caRole := convert[rbacv1.Role](t, rendered.get(t, "Role", "hub-ca", managerName+"-create-ca"))
	expectEqual(t, "create-CA Role rules", caRole.Rules, []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
	})
	checkBinding(t, rendered.get(t, "RoleBinding", "hub-ca", managerName+"-create-ca"), "Role", managerName+"-create-ca", releaseNamespace)
	checkRBACIsLeastPrivilege(t, rendered, "argocd-agent-ca")
}

func TestDefaults(t *testing.T) {
	helm := helmBinary(t)
	objs, err := chart.Render(helm, releaseNamespace, map[string]string{"agent.principal.address": "principal.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	rendered := index(t, objs)
	rendered.expectKeys(t, append(addonObjects(addonLayout{namespace: releaseNamespace, caSecretNamespace: "argocd",
		principalNamespace: "argocd", clusterSecretNamespace: "argocd", deploymentConfig: addonName}),
		key("Placement", releaseNamespace, addonName),
		key("ManagedClusterSetBinding", releaseNamespace, "global"),
	)...)
	checkRBACIsLeastPrivilege(t, rendered, "argocd-agent-ca")
	expectProtectedLabels(t, rendered, "'argocd-agent', 'argocd-agent-addon.open-cluster-management.io/revoked', 'cluster.open-cluster-management.io/clusterset'")
	// OCM's gRPC server and the bootstrap ServiceAccount, by name: no pattern catches them.
	expectMatchedUsernames(t, rendered, "'system:serviceaccount:open-cluster-management-hub:grpc-server-sa', 'system:serviceaccount:open-cluster-management:agent-registration-bootstrap'")
	for _, obj := range objs {
		if got := obj.GetLabels()["app.kubernetes.io/instance"]; got != chart.ReleaseName {
			t.Errorf("%s: app.kubernetes.io/instance label %q, want %q", keyOf(obj), got, chart.ReleaseName)
		}
	}

	t.Run("Deployment", func(t *testing.T) {
		deploy := convert[appsv1.Deployment](t, rendered.get(t, "Deployment", releaseNamespace, managerName))
		if deploy.Spec.Replicas == nil || *deploy.Spec.Replicas != 1 {
			t.Errorf("replicas %v, want 1", deploy.Spec.Replicas)
		}
		pod := deploy.Spec.Template
		for k, v := range deploy.Spec.Selector.MatchLabels {
			if pod.Labels[k] != v {
				t.Errorf("selector label %s=%s is not on the pod template (labels %v)", k, v, pod.Labels)
			}
		}
		if pod.Spec.ServiceAccountName != managerName {
			t.Errorf("serviceAccountName %q, want %q", pod.Spec.ServiceAccountName, managerName)
		}
		podSC := pod.Spec.SecurityContext
		if podSC == nil || !isTrue(podSC.RunAsNonRoot) || podSC.SeccompProfile == nil || podSC.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("pod securityContext %+v, want runAsNonRoot and the RuntimeDefault seccomp profile", podSC)
		}
		c := onlyContainer(t, deploy)
		if want := "quay.io/argocd-agent-addon/argocd-agent-addon:" + appVersion(t); c.Image != want {
			t.Errorf("image %q, want %q", c.Image, want)
		}
		if c.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("imagePullPolicy %q, want IfNotPresent", c.ImagePullPolicy)
		}
		expectArgs(t, c, defaultManagerArgs)
		checkRestricted(t, c)
		if len(c.Resources.Requests) == 0 || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("resources %+v, want requests and a memory limit", c.Resources)
		}
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		if !reflect.DeepEqual(ports, map[string]int32{"metrics": 8080, "health": 8081}) {
			t.Errorf("container ports %v, want metrics 8080 and health 8081", ports)
		}
		checkProbe(t, "liveness", c.LivenessProbe, "/healthz", ports)
		checkProbe(t, "readiness", c.ReadinessProbe, "/readyz", ports)
		var podNamespace *corev1.EnvVar
		for i := range c.Env {
			if c.Env[i].Name == "POD_NAMESPACE" {
				podNamespace = &c.Env[i]
			}
		}
		if podNamespace == nil || podNamespace.ValueFrom == nil || podNamespace.ValueFrom.FieldRef == nil ||
			podNamespace.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
			t.Errorf("env POD_NAMESPACE %+v, want a fieldRef to metadata.namespace", podNamespace)
		}
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" })
		if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.ResourceFieldRef == nil || c.Env[i].ValueFrom.ResourceFieldRef.Resource != "limits.memory" {
			t.Errorf("env %+v: want GOMEMLIMIT from the container's memory limit", c.Env)
		}
	})

	t.Run("RBAC", func(t *testing.T) {
		clusterRole := convert[rbacv1.ClusterRole](t, rendered.get(t, "ClusterRole", "", managerName))
		expectPermissions(t, "ClusterRole", clusterRole.Rules, managerClusterPermissions(true))
		versionRole := convert[rbacv1.Role](t, rendered.get(t, "Role", releaseNamespace, managerName+"-agent-version"))
		expectPermissions(t, "AgentVersion Role", versionRole.Rules, permissions(
			rule{agentversion.Group, agentversion.Resource, "", []string{"create"}},
			rule{agentversion.Group, agentversion.Resource, agentversion.DefaultName, []string{"update"}},
		))
		checkBinding(t, rendered.get(t, "RoleBinding", releaseNamespace, managerName+"-agent-version"), "Role", managerName+"-agent-version", releaseNamespace)
		caRole := convert[rbacv1.Role](t, rendered.get(t, "Role", "argocd", managerName+"-ca-secret"))
		expectPermissions(t, "CA secret Role", caRole.Rules, permissions(
			rule{"", "secrets", "argocd-agent-ca", []string{"get", "list", "watch"}},
		))
		leaderRole := convert[rbacv1.Role](t, rendered.get(t, "Role", releaseNamespace, managerName+"-leader-election"))
		expectPermissions(t, "leader election Role", leaderRole.Rules, permissions(
			rule{"coordination.k8s.io", "leases", "", []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
			rule{"", "events", "", []string{"create", "patch"}},
		))
		checkBinding(t, rendered.get(t, "ClusterRoleBinding", "", managerName), "ClusterRole", managerName, releaseNamespace)
		checkBinding(t, rendered.get(t, "RoleBinding", "argocd", managerName+"-ca-secret"), "Role", managerName+"-ca-secret", releaseNamespace)
		checkBinding(t, rendered.get(t, "RoleBinding", releaseNamespace, managerName+"-leader-election"), "Role", managerName+"-leader-election", releaseNamespace)
	})

	t.Run("ClusterManagementAddOn", func(t *testing.T) {
		cma := convert[addonv1alpha1.ClusterManagementAddOn](t, rendered.get(t, "ClusterManagementAddOn", "", addonName))
		if got := cma.Annotations["addon.open-cluster-management.io/lifecycle"]; got != "addon-manager" {
			t.Errorf("lifecycle annotation %q, want addon-manager", got)
		}
		if cma.Spec.AddOnMeta.DisplayName == "" || cma.Spec.AddOnMeta.Description == "" {
			t.Errorf("addOnMeta %+v, want a display name and a description", cma.Spec.AddOnMeta)
		}
		//lint:ignore SA1019 the chart writes v1alpha1, which every OCM hub serves; OCM converts it to v1beta1 defaultConfigs.
		expectEqual(t, "supportedConfigs", cma.Spec.SupportedConfigs, deploymentConfigSupport(addonName, releaseNamespace))
		expectEqual(t, "installStrategy", cma.Spec.InstallStrategy, addonv1alpha1.InstallStrategy{
			Type: addonv1alpha1.AddonInstallStrategyPlacements,
			Placements: []addonv1alpha1.PlacementStrategy{{
				PlacementRef:    addonv1alpha1.PlacementRef{Namespace: releaseNamespace, Name: addonName},
				RolloutStrategy: clusterv1alpha1.RolloutStrategy{Type: clusterv1alpha1.All},
			}},
		})
	})

	t.Run("AddOnDeploymentConfig", func(t *testing.T) {
		adc := convert[addonv1alpha1.AddOnDeploymentConfig](t, rendered.get(t, "AddOnDeploymentConfig", releaseNamespace, addonName))
		expectEqual(t, "spec", adc.Spec, addonv1alpha1.AddOnDeploymentConfigSpec{
			CustomizedVariables: []addonv1alpha1.CustomizedVariable{
				{Name: "principalAddress", Value: "principal.example.com"},
				{Name: "agentMode", Value: "managed"},
				{Name: "logLevel", Value: "info"},
			},
		})
	})

	t.Run("Placement", func(t *testing.T) {
		placement := convert[clusterv1beta1.Placement](t, rendered.get(t, "Placement", releaseNamespace, addonName))
		expectEqual(t, "clusterSets", placement.Spec.ClusterSets, []string{"global"})
		if len(placement.Spec.Predicates) != 1 {
			t.Fatalf("predicates %+v, want one", placement.Spec.Predicates)
		}
		expectEqual(t, "label selector", placement.Spec.Predicates[0].RequiredClusterSelector.LabelSelector.MatchLabels,
			map[string]string{"argocd-agent": "enabled"})
		binding := convert[clusterv1beta2.ManagedClusterSetBinding](t, rendered.get(t, "ManagedClusterSetBinding", releaseNamespace, "global"))
		if binding.Spec.ClusterSet != "global" {
			t.Errorf("ManagedClusterSetBinding clusterSet %q, want global", binding.Spec.ClusterSet)
		}
	})
}

func TestCustomValues(t *testing.T) {
	helm := helmBinary(t)
	const namespace = "fleet-system"
	objs, err := chart.Render(helm, namespace, map[string]string{
		"agent.principal.address": "10.0.0.5",
		"agent.principal.port":    "8443",
		"agent.mode":              "autonomous",
		"agent.logLevel":          "debug",
		"agent.image":             "registry.example.com/argocd-agent:v1",
		"agent.installNamespace":  "gitops",
		`agent.nodePlacement.nodeSelector.kubernetes\.io/os`:      "linux",
		"agent.nodePlacement.tolerations[0].key":                  "dedicated",
		"agent.nodePlacement.tolerations[0].operator":             "Exists",
		"agent.nodePlacement.tolerations[0].effect":               "NoSchedule",
		"agent.registries[0].source":                              "quay.io/argoprojlabs",
		"agent.registries[0].mirror":                              "registry.example.com/argoprojlabs",
		"agent.proxyConfig.httpsProxy":                            "http://proxy.example.com:3128",
		"agent.resourceRequirements[0].containerID":               "deployments:argocd-agent-agent:argocd-agent-agent",
		"agent.resourceRequirements[0].resources.requests.memory": "256Mi",
		"addon.deploymentConfigName":                              "agents",
		"caSecret.namespace":                                      "hub-ca",
		"caSecret.name":                                           "principal-ca",
		"certificate.subject":                                     "ocm",
		"certificate.lifetime":                                    "24h",
		"grpcServerUsername":                                      "",
		"replicas":                                                "2",
		"leaderElection.leaseDuration":                            "30s",
		"leaderElection.renewDeadline":                            "20s",
		"leaderElection.retryPeriod":                              "4s",
		"image.tag":                                               "v9.9.9",
		"image.digest":                                            "sha256:" + strings.Repeat("ab", 32),
		"logVerbosity":                                            "4",
		"kubeAPI.qps":                                             "200",
		"kubeAPI.burst":                                           "400",
		"placement.create":                                        "false",
		"placement.name":                                          "gitops-clusters",
		"placement.namespace":                                     "fleet",
		"placement.rolloutStrategy.type":                          "Progressive",
		"placement.rolloutStrategy.progressive.maxConcurrency":    "25%",
		"admissionPolicy.protectedLabels[0]":                      "gitops",
		"admissionPolicy.clusterUsernames[0]":                     "system:serviceaccount:ocm:o'brien",
		"metrics.secure":                                          "false",
		"principal.service.namespace":                             "gitops-hub",
		"principal.service.name":                                  "principal",
		"principal.fallbackAddress":                               "principal.example.com:30443",
		"clusterSecrets.namespace":                                "gitops",
		"clusterSecrets.resourceProxyAddress":                     "rp.gitops.svc:9443",
		"clusterSecrets.certLifetime":                             "48h",
		"clusterSecrets.copyLabels[0]":                            "example.com/team",
	})
	if err != nil {
		t.Fatal(err)
	}
	rendered := index(t, objs)
	// placement.create=false: no Placement and no ManagedClusterSetBinding.
	rendered.expectKeys(t, addonObjects(addonLayout{namespace: namespace, caSecretNamespace: "hub-ca",
		principalNamespace: "gitops-hub", clusterSecretNamespace: "gitops", deploymentConfig: "agents"})...)
	checkRBACIsLeastPrivilege(t, rendered, "principal-ca")
	// The existing Placement's keys, named by the user, are protected too.
	expectProtectedLabels(t, rendered, "'argocd-agent', 'argocd-agent-addon.open-cluster-management.io/revoked', 'cluster.open-cluster-management.io/clusterset', 'gitops'")
	// No gRPC server (grpcServerUsername empty); the user's bootstrap identity, its quote escaped.
	expectMatchedUsernames(t, rendered, `'system:serviceaccount:ocm:o\'brien'`)

	deploy := convert[appsv1.Deployment](t, rendered.get(t, "Deployment", namespace, managerName))
	if deploy.Spec.Replicas == nil || *deploy.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", deploy.Spec.Replicas)
	}
	c := onlyContainer(t, deploy)
	if want := "quay.io/argocd-agent-addon/argocd-agent-addon:v9.9.9@sha256:" + strings.Repeat("ab", 32); c.Image != want {
		t.Errorf("image %q, want %q", c.Image, want)
	}
	expectArgs(t, c, []string{
		"manager",
		"--ca-secret=hub-ca/principal-ca",
		"--cert-lifetime=24h",
		"--certificate-subject=ocm",
		"--grpc-server-username=",
		"--namespace=" + namespace,
		"--leader-elect=true",
		"--leader-election-namespace=" + namespace,
		"--leader-election-lease-duration=30s",
		"--leader-election-renew-deadline=20s",
		"--leader-election-retry-period=4s",
		"--metrics-bind-address=:8080",
		"--metrics-secure=false",
		"--health-probe-bind-address=:8081",
		"--principal-service=gitops-hub/principal",
		"--principal-fallback-address=principal.example.com:30443",
		"--cluster-secrets=true",
		"--cluster-secret-namespace=gitops",
		"--resource-proxy-address=rp.gitops.svc:9443",
		"--cluster-secret-cert-lifetime=48h",
		"--cluster-secret-labels=example.com/team",
		"--create-ca=false",
		"--principal-pki=false",
		"--principal-deployment=gitops-hub/argocd-agent-principal",
		"--kube-api-qps=200",
		"--kube-api-burst=400",
		"--v=4",
	})

	// Plain HTTP metrics: no TokenReviews or SubjectAccessReviews for the manager.
	clusterRole := convert[rbacv1.ClusterRole](t, rendered.get(t, "ClusterRole", "", managerName))
	expectPermissions(t, "ClusterRole", clusterRole.Rules, managerClusterPermissions(false))
	caRole := convert[rbacv1.Role](t, rendered.get(t, "Role", "hub-ca", managerName+"-ca-secret"))
	expectPermissions(t, "CA secret Role", caRole.Rules, permissions(
		rule{"", "secrets", "principal-ca", []string{"get", "list", "watch"}},
	))
	checkBinding(t, rendered.get(t, "RoleBinding", "hub-ca", managerName+"-ca-secret"), "Role", managerName+"-ca-secret", namespace)

	cma := convert[addonv1alpha1.ClusterManagementAddOn](t, rendered.get(t, "ClusterManagementAddOn", "", addonName))
	//lint:ignore SA1019 as above: the chart writes v1alpha1 supportedConfigs.
	expectEqual(t, "supportedConfigs", cma.Spec.SupportedConfigs, deploymentConfigSupport("agents", namespace))
	expectEqual(t, "installStrategy", cma.Spec.InstallStrategy, addonv1alpha1.InstallStrategy{
		Type: addonv1alpha1.AddonInstallStrategyPlacements,
		Placements: []addonv1alpha1.PlacementStrategy{{
			PlacementRef: addonv1alpha1.PlacementRef{Namespace: "fleet", Name: "gitops-clusters"},
			RolloutStrategy: clusterv1alpha1.RolloutStrategy{
				Type:        clusterv1alpha1.Progressive,
				Progressive: &clusterv1alpha1.RolloutProgressive{MaxConcurrency: intstr.FromString("25%")},
			},
		}},
	})

	adc := convert[addonv1alpha1.AddOnDeploymentConfig](t, rendered.get(t, "AddOnDeploymentConfig", namespace, "agents"))
	expectEqual(t, "customizedVariables", adc.Spec.CustomizedVariables, []addonv1alpha1.CustomizedVariable{
		{Name: "principalAddress", Value: "10.0.0.5"},
		{Name: "principalPort", Value: "8443"},
		{Name: "agentMode", Value: "autonomous"},
		{Name: "agentImage", Value: "registry.example.com/argocd-agent:v1"},
		{Name: "logLevel", Value: "debug"},
	})
	if adc.Spec.AgentInstallNamespace != "gitops" {
		t.Errorf("agentInstallNamespace %q, want gitops", adc.Spec.AgentInstallNamespace)
	}
	expectEqual(t, "nodePlacement", adc.Spec.NodePlacement, &addonv1alpha1.NodePlacement{
		NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
		Tolerations:  []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
	})
	expectEqual(t, "registries", adc.Spec.Registries, []addonv1alpha1.ImageMirror{
		{Source: "quay.io/argoprojlabs", Mirror: "registry.example.com/argoprojlabs"},
	})
	expectEqual(t, "proxyConfig", adc.Spec.ProxyConfig, addonv1alpha1.ProxyConfig{HTTPSProxy: "http://proxy.example.com:3128"})
	if len(adc.Spec.ResourceRequirements) != 1 {
		t.Fatalf("resourceRequirements %+v, want one entry", adc.Spec.ResourceRequirements)
	}
	requirement := adc.Spec.ResourceRequirements[0]
	if requirement.ContainerID != "deployments:argocd-agent-agent:argocd-agent-agent" || requirement.Resources.Requests.Memory().String() != "256Mi" {
		t.Errorf("resourceRequirements[0] %+v, want 256Mi of memory for the agent container", requirement)
	}
}

// objectKey names a rendered object: kind, namespace (empty if cluster-scoped) and name.
type objectKey string

func key(kind, namespace, name string) objectKey {
	return objectKey(kind + "/" + namespace + "/" + name)
}

func keyOf(obj *unstructured.Unstructured) objectKey {
	return key(obj.GetKind(), obj.GetNamespace(), obj.GetName())
}

// addonLayout is where a render puts the add-on's objects.
type addonLayout struct {
	namespace              string // the release's: the manager, its leader election, records and AgentVersion
	caSecretNamespace      string // caSecret.namespace
	principalNamespace     string // principal.service.namespace
	clusterSecretNamespace string // clusterSecrets.namespace
	deploymentConfig       string // addon.deploymentConfigName
}

// addonObjects are the objects the chart renders with cluster secrets on, as laid out by l, but
// the Placement and its ManagedClusterSetBinding (placement.create): the manager with its
// ServiceAccount and RBAC, the ClusterManagementAddOn and AddOnDeploymentConfig, and the
// admission policy with its binding. The metrics-reader ClusterRole is rendered without
// metrics.secure too: binding it ahead of turning that on is harmless.
func addonObjects(l addonLayout) []objectKey {
	keys := []objectKey{
		key("ServiceAccount", l.namespace, managerName),
		key("Deployment", l.namespace, managerName),
		key("ClusterRole", "", managerName),
		key("ClusterRoleBinding", "", managerName),
		key("ClusterRole", "", managerName+"-metrics-reader"),
		key("ClusterManagementAddOn", "", addonName),
		key("AddOnDeploymentConfig", l.namespace, l.deploymentConfig),
		key("ValidatingAdmissionPolicy", "", managerName+"-cluster-labels"),
		key("ValidatingAdmissionPolicyBinding", "", managerName+"-cluster-labels"),
	}
	for _, role := range []struct{ namespace, suffix string }{
		{l.caSecretNamespace, "-ca-secret"},
		{l.principalNamespace, "-principal-service"},
		{l.clusterSecretNamespace, "-cluster-secrets"},
		{l.namespace, "-leader-election"},
		{l.namespace, "-records"},
		{l.namespace, "-agent-version"},
	} {
		keys = append(keys, key("Role", role.namespace, managerName+role.suffix), key("RoleBinding", role.namespace, managerName+role.suffix))
	}
	return keys
}

// renderedObjects are a render's objects by key.
type renderedObjects map[objectKey]*unstructured.Unstructured

func index(t *testing.T, objs []*unstructured.Unstructured) renderedObjects {
	t.Helper()
	rendered := renderedObjects{}
	for _, obj := range objs {
		k := keyOf(obj)
		if _, dup := rendered[k]; dup {
			t.Fatalf("%s is rendered twice", k)
		}
		rendered[k] = obj
	}
	return rendered
}

func (r renderedObjects) get(t *testing.T, kind, namespace, name string) *unstructured.Unstructured {
	t.Helper()
	obj, ok := r[key(kind, namespace, name)]
	if !ok {
		t.Fatalf("%s is not rendered", key(kind, namespace, name))
	}
	return obj
}

// expectKeys checks the render holds exactly the objects named, no more.
func (r renderedObjects) expectKeys(t *testing.T, want ...objectKey) {
	t.Helper()
	var got []string
	for k := range r {
		got = append(got, string(k))
	}
	var wantStrings []string
	for _, k := range want {
		wantStrings = append(wantStrings, string(k))
	}
	sort.Strings(got)
	sort.Strings(wantStrings)
	if !slices.Equal(got, wantStrings) {
		t.Errorf("rendered objects:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(wantStrings, "\n  "))
	}
}

// convert turns a rendered object into its Go type, failing on any field the type does not
// know: a misspelt field would otherwise be dropped silently by the API server.
func convert[T any](t *testing.T, obj *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, out, true); err != nil {
		t.Fatalf("%s does not match its API type: %v", keyOf(obj), err)
	}
	return out
}

func expectEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n  got  %+v\n  want %+v", what, got, want)
	}
}

func appVersion(t *testing.T) string {
	t.Helper()
	dir, err := chart.Dir()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &meta); err != nil {
		t.Fatal(err)
	}
	return meta.AppVersion
}

func onlyContainer(t *testing.T, deploy *appsv1.Deployment) corev1.Container {
	t.Helper()
	containers := deploy.Spec.Template.Spec.Containers
	if len(containers) != 1 {
		t.Fatalf("%d containers, want 1", len(containers))
	}
	return containers[0]
}

func expectArgs(t *testing.T, c corev1.Container, want []string) {
	t.Helper()
	if !slices.Equal(c.Args, want) {
		t.Errorf("args:\n  %s\nwant:\n  %s", strings.Join(c.Args, "\n  "), strings.Join(want, "\n  "))
	}
}

// checkRestricted checks the container meets the "restricted" Pod Security Standard and has a
// read-only root filesystem.
func checkRestricted(t *testing.T, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("the manager container has no securityContext")
	}
	if !isTrue(sc.RunAsNonRoot) || !isTrue(sc.ReadOnlyRootFilesystem) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("securityContext %+v, want runAsNonRoot, readOnlyRootFilesystem and no privilege escalation", sc)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities %+v, want drop [ALL] and nothing added", sc.Capabilities)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile %+v, want RuntimeDefault", sc.SeccompProfile)
	}
}

func checkProbe(t *testing.T, what string, probe *corev1.Probe, path string, ports map[string]int32) {
	t.Helper()
	if probe == nil || probe.HTTPGet == nil {
		t.Fatalf("%s probe %+v, want an HTTP GET of %s", what, probe, path)
	}
	port := probe.HTTPGet.Port
	if port.Type == intstr.String {
		port = intstr.FromInt32(ports[port.StrVal])
	}
	if probe.HTTPGet.Path != path || port.IntVal != 8081 {
		t.Errorf("%s probe gets %s on port %s, want %s on 8081", what, probe.HTTPGet.Path, probe.HTTPGet.Port.String(), path)
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

// rule is a compact RBAC rule for expectations: one API group, resource and (optional)
// resource name.
type rule struct {
	group, resource, resourceName string
	verbs                         []string
}

// permissions flattens rules into "group resource name verb" entries, so rule sets compare
// regardless of how the chart groups them.
func permissions(rules ...rule) map[string]bool {
	perms := map[string]bool{}
	for _, r := range rules {
		for _, verb := range r.verbs {
			perms[r.group+" "+r.resource+" "+r.resourceName+" "+verb] = true
		}
	}
	return perms
}

func permissionsOf(policy []rbacv1.PolicyRule) map[string]bool {
	var rules []rule
	for _, p := range policy {
		names := p.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, group := range p.APIGroups {
			for _, resource := range p.Resources {
				for _, name := range names {
					rules = append(rules, rule{group, resource, name, p.Verbs})
				}
			}
		}
	}
	return permissions(rules...)
}

// managerClusterPermissions is everything the manager may do cluster-wide; with metricsSecure,
// also what controller-runtime's metrics filter needs to check a scraper's token and access.
func managerClusterPermissions(metricsSecure bool) map[string]bool {
	const addonGroup = "addon.open-cluster-management.io"
	read := []string{"get", "list", "watch"}
	perms := permissions(
		rule{"certificates.k8s.io", "certificatesigningrequests", "", read},
		rule{"certificates.k8s.io", "certificatesigningrequests/approval", "", []string{"patch"}},
		rule{"certificates.k8s.io", "certificatesigningrequests/status", "", []string{"patch"}},
		rule{"certificates.k8s.io", "signers", signerName, []string{"approve", "sign"}},
		rule{"cluster.open-cluster-management.io", "managedclusters", "", read},
		rule{"cluster.open-cluster-management.io", "placementdecisions", "", read},
		rule{addonGroup, "managedclusteraddons", "", []string{"get", "list", "watch", "update", "patch"}},
		rule{addonGroup, "managedclusteraddons/status", "", []string{"update", "patch"}},
		rule{addonGroup, "managedclusteraddons/finalizers", "", []string{"update"}},
		rule{addonGroup, "clustermanagementaddons", "", []string{"get", "list", "watch", "update", "patch"}},
		rule{addonGroup, "clustermanagementaddons/status", "", []string{"update", "patch"}},
		rule{addonGroup, "clustermanagementaddons/finalizers", "", []string{"update"}},
		rule{addonGroup, "addondeploymentconfigs", "", read},
		rule{agentversion.Group, agentversion.Resource, "", read},
		rule{customization.Group, customization.Resource, "", read},
		rule{"work.open-cluster-management.io", "manifestworks", "", []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		rule{"", "events", "", []string{"create", "patch", "update"}},
		rule{"events.k8s.io", "events", "", []string{"create", "patch", "update"}},
	)
	if metricsSecure {
		maps.Copy(perms, permissions(
			rule{"authentication.k8s.io", "tokenreviews", "", []string{"create"}},
			rule{"authorization.k8s.io", "subjectaccessreviews", "", []string{"create"}},
		))
	}
	return perms
}

func expectPermissions(t *testing.T, what string, policy []rbacv1.PolicyRule, want map[string]bool) {
	t.Helper()
	got := permissionsOf(policy)
	for p := range got {
		if !want[p] {
			t.Errorf("%s grants %q, which the manager must not have", what, p)
		}
	}
	for p := range want {
		if !got[p] {
			t.Errorf("%s lacks %q, which the manager needs", what, p)
		}
	}
}

// checkRBACIsLeastPrivilege checks every Role and ClusterRole of a render: no wildcard,
// non-resource URLs only in the metrics-reader ClusterRole, which grants get /metrics and nothing
// else and which the chart binds to no one, and secrets only in the one Role limited to the CA
// secret.
func checkRBACIsLeastPrivilege(t *testing.T, rendered renderedObjects, caSecretName string) {
	t.Helper()
	metricsReader := key("ClusterRole", "", managerName+"-metrics-reader")
	reader := convert[rbacv1.ClusterRole](t, rendered.get(t, "ClusterRole", "", managerName+"-metrics-reader"))
	expectEqual(t, string(metricsReader)+" rules", reader.Rules, []rbacv1.PolicyRule{
		{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}},
	})
	if reader.AggregationRule != nil {
		t.Errorf("%s aggregates other roles: %+v", metricsReader, reader.AggregationRule)
	}
	for k, obj := range rendered {
		var rules []rbacv1.PolicyRule
		switch obj.GetKind() {
		case "ClusterRole":
			rules = convert[rbacv1.ClusterRole](t, obj).Rules
		case "Role":
			rules = convert[rbacv1.Role](t, obj).Rules
		case "ClusterRoleBinding", "RoleBinding":
			if ref, _, _ := unstructured.NestedString(obj.Object, "roleRef", "name"); ref == managerName+"-metrics-reader" {
				t.Errorf("%s binds %s: the chart must leave that to the user", k, metricsReader)
			}
			continue
		default:
			continue
		}
		for _, r := range rules {
			for _, field := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames} {
				if slices.ContainsFunc(field, func(s string) bool { return strings.Contains(s, "*") }) {
					t.Errorf("%s: rule %+v has a wildcard", k, r)
				}
			}
			if len(r.NonResourceURLs) > 0 && k != metricsReader {
				t.Errorf("%s: rule %+v grants non-resource URLs", k, r)
			}
			if !slices.Contains(r.Resources, "secrets") {
				continue
			}
			switch {
			case obj.GetKind() == "Role" && (obj.GetName() == managerName+"-principal-pki" || obj.GetName() == managerName+"-create-ca"):
				// Checked exactly by TestPKI; create cannot be narrowed by name.
				if !slices.Equal(r.Verbs, []string{"create"}) && !slices.Equal(r.ResourceNames, []string{"argocd-agent-principal-tls", "argocd-agent-resource-proxy-tls", "argocd-agent-jwt"}) {
					t.Errorf("%s: rule %+v grants secrets beyond create and the principal's three", k, r)
				}
			case obj.GetKind() == "Role" && obj.GetName() == managerName+"-cluster-secrets":
				// The cluster secrets are named at run time (pkg/clustersecret): no update, no
				// other resource, one namespace.
				expectEqual(t, string(k)+" rule", r, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"},
					Verbs: []string{"get", "list", "watch", "create", "patch", "delete"}})
			case obj.GetKind() != "Role" || !slices.Equal(r.ResourceNames, []string{caSecretName}):
				t.Errorf("%s: rule %+v grants secrets beyond the CA secret %s", k, r, caSecretName)
			}
		}
	}
}

// checkBinding checks a binding grants the named role to the manager's ServiceAccount, in
// serviceAccountNamespace, and to no one else.
func checkBinding(t *testing.T, obj *unstructured.Unstructured, roleKind, roleName, serviceAccountNamespace string) {
	t.Helper()
	var roleRef rbacv1.RoleRef
	var subjects []rbacv1.Subject
	if obj.GetKind() == "ClusterRoleBinding" {
		b := convert[rbacv1.ClusterRoleBinding](t, obj)
		roleRef, subjects = b.RoleRef, b.Subjects
	} else {
		b := convert[rbacv1.RoleBinding](t, obj)
		roleRef, subjects = b.RoleRef, b.Subjects
	}
	expectEqual(t, string(keyOf(obj))+" roleRef", roleRef, rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: roleKind, Name: roleName})
	expectEqual(t, string(keyOf(obj))+" subjects", subjects, []rbacv1.Subject{
		{Kind: rbacv1.ServiceAccountKind, Name: managerName, Namespace: serviceAccountNamespace},
	})
}

// deploymentConfigSupport is the ClusterManagementAddOn's supportedConfigs for a default
// AddOnDeploymentConfig, the AgentVersion the manager keeps, and AgentCustomizations (no
// default unless the customization value is set).
func deploymentConfigSupport(name, namespace string) []addonv1alpha1.ConfigMeta {
	return []addonv1alpha1.ConfigMeta{{
		ConfigGroupResource: addonv1alpha1.ConfigGroupResource{Group: "addon.open-cluster-management.io", Resource: "addondeploymentconfigs"},
		DefaultConfig:       &addonv1alpha1.ConfigReferent{Namespace: namespace, Name: name},
	}, {
		ConfigGroupResource: addonv1alpha1.ConfigGroupResource{Group: agentversion.Group, Resource: agentversion.Resource},
		DefaultConfig:       &addonv1alpha1.ConfigReferent{Namespace: namespace, Name: agentversion.DefaultName},
	}, {
		ConfigGroupResource: addonv1alpha1.ConfigGroupResource{Group: customization.Group, Resource: customization.Resource},
	}}
}

// TestAdmissionPolicyWithoutUsernames: with neither a gRPC server nor bootstrap usernames the
// policy matches the cluster identities by pattern only.
func TestAdmissionPolicyWithoutUsernames(t *testing.T) {
	objs, err := chart.Render(helmBinary(t), releaseNamespace, map[string]string{
		"agent.principal.address":          "principal.example.com",
		"grpcServerUsername":               "",
		"admissionPolicy.clusterUsernames": "null",
	})
	if err != nil {
		t.Fatal(err)
	}
	expectMatchedUsernames(t, index(t, objs), "")
}

// expectMatchedUsernames checks the identities the admission policy matches: always the OCM
// agents' users and groups, IRSA clusters' groups, the bootstrap group and ServiceAccounts in the
// cluster's own namespace; by name, want (CEL string literals, comma-separated), if any.
func expectMatchedUsernames(t *testing.T, rendered renderedObjects, want string) {
	t.Helper()
	vap := rendered.get(t, "ValidatingAdmissionPolicy", "", managerName+"-cluster-labels")
	conds, _, _ := unstructured.NestedSlice(vap.Object, "spec", "matchConditions")
	if len(conds) != 1 {
		t.Fatalf("admission policy match conditions %v, want one", conds)
	}
	expr, _ := conds[0].(map[string]any)["expression"].(string)
	for _, part := range []string{
		"request.userInfo.username.startsWith('system:open-cluster-management:')",
		"g.startsWith('system:open-cluster-management:')",
		"g.startsWith('open-cluster-management:')",
		"g == 'system:bootstrappers:managedcluster'",
		"request.userInfo.username.startsWith('system:serviceaccount:' + object.metadata.name + ':')",
	} {
		if !strings.Contains(expr, part) {
			t.Errorf("admission policy matches %q, want it to contain %q", expr, part)
		}
	}
	byName := "request.userInfo.username in ["
	switch {
	case want == "" && strings.Contains(expr, byName):
		t.Errorf("admission policy matches %q, want no username by name", expr)
	case want != "" && !strings.HasSuffix(expr, ") || "+byName+want+"]"):
		t.Errorf("admission policy matches %q, want usernames [%s]", expr, want)
	}
}

// expectProtectedLabels checks the label keys the admission policy keeps to the hub, and that
// its binding denies.
func expectProtectedLabels(t *testing.T, rendered renderedObjects, want string) {
	t.Helper()
	vap := rendered.get(t, "ValidatingAdmissionPolicy", "", managerName+"-cluster-labels")
	vars, _, _ := unstructured.NestedSlice(vap.Object, "spec", "variables")
	found := false
	for _, v := range vars {
		if m, ok := v.(map[string]any); ok && m["name"] == "protected" {
			found = m["expression"] == "["+want+"]"
			if !found {
				t.Errorf("protected labels %v, want [%s]", m["expression"], want)
			}
		}
	}
	if !found {
		t.Errorf("admission policy has no protected variable: %v", vars)
	}
	binding := rendered.get(t, "ValidatingAdmissionPolicyBinding", "", managerName+"-cluster-labels")
	actions, _, _ := unstructured.NestedStringSlice(binding.Object, "spec", "validationActions")
	if len(actions) != 1 || actions[0] != "Deny" {
		t.Errorf("binding actions %v, want [Deny]", actions)
	}
}
