package chart_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/clustersecret"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/manager"
	"github.com/argocd-agent-addon/argocd-agent-addon/test/chart"
)

// TestClusterSecretLabels: clusterSecrets.copyLabels becomes --cluster-secret-labels, which the
// manager reads back as the same list; by default the labels a cluster cannot forge, none when
// emptied. A value that is no pattern fails the render; one the chart cannot tell apart (a * in
// the middle) makes the manager refuse to start, naming the flag.
func TestClusterSecretLabels(t *testing.T) {
	helm := helmBinary(t)
	for _, tc := range []struct {
		name    string
		values  map[string]string
		want    []string
		wantErr string
	}{
		{"default", nil, []string{"cluster.open-cluster-management.io/clusterset", "name"}, ""},
		{"widened", map[string]string{
			"clusterSecrets.copyLabels[0]": "cluster.open-cluster-management.io/clusterset",
			"clusterSecrets.copyLabels[1]": "env",
			"clusterSecrets.copyLabels[2]": "example.com/*",
		}, []string{"cluster.open-cluster-management.io/clusterset", "env", "example.com/*"}, ""},
		{"none", map[string]string{"clusterSecrets.copyLabels": "null"}, []string{}, ""},
		{"everything", map[string]string{"clusterSecrets.copyLabels[0]": "*"}, []string{"*"}, ""},
		{"a star inside", map[string]string{"clusterSecrets.copyLabels[0]": "example.*/team"}, nil, `--cluster-secret-labels: "example.*/team": * may only end a pattern`},
		{"a reserved key", map[string]string{"clusterSecrets.copyLabels[0]": "argocd.argoproj.io/secret-type"}, nil, `--cluster-secret-labels: "argocd.argoproj.io/secret-type" is reserved`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := chart.Render(helm, releaseNamespace, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			c := onlyContainer(t, convert[appsv1.Deployment](t, index(t, objs).get(t, "Deployment", releaseNamespace, managerName)))
			var flags []string
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--cluster-secret-labels") {
					flags = append(flags, a)
				}
			}
			if len(flags) != 1 {
				t.Fatalf("--cluster-secret-labels given %d times: %v", len(flags), c.Args)
			}
			o := manager.NewOptions()
			o.Namespace = releaseNamespace
			fs := pflag.NewFlagSet("manager", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(flags); err != nil {
				t.Fatalf("%s: %v", flags[0], err)
			}
			_, err = o.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("%s: manager validation %v, want an error containing %q", flags[0], err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s: %v", flags[0], err)
			}
			if !slices.Equal(o.ClusterSecretLabels, tc.want) {
				t.Errorf("%s: the manager reads %q, want %q", flags[0], o.ClusterSecretLabels, tc.want)
			}
			if tc.values == nil && !slices.Equal(o.ClusterSecretLabels, clustersecret.DefaultCopyLabels) {
				t.Errorf("the chart's default %q is not the manager's %q", o.ClusterSecretLabels, clustersecret.DefaultCopyLabels)
			}
		})
	}

	for _, bad := range []string{"bad key", "env,team", ""} {
		_, err := chart.Render(helm, releaseNamespace, map[string]string{"clusterSecrets.copyLabels[0]": strings.ReplaceAll(bad, ",", `\,`)})
		if want := "clusterSecrets.copyLabels[0]"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("copyLabels [%q] renders (%v), want an error naming %s", bad, err, want)
		}
	}
}
