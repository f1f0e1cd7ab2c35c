package manager

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestOptions(t *testing.T) {
	o := NewOptions()
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	fs := pflag.NewFlagSet("manager", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--ca-secret=gitops/ca", "--cert-lifetime=24h", "--certificate-subject=ocm", "--leader-elect=false", "--kube-api-qps=20", "--kube-api-burst=40"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil || o.CASecret != "gitops/ca" || o.CertLifetime != 24*time.Hour || o.LeaderElect || o.KubeAPIQPS != 20 || o.KubeAPIBurst != 40 {
		t.Fatalf("flags not applied: %+v (%v)", o, err)
	}

	for name, tc := range map[string]struct {
		mutate func(*Options)
		want   string
	}{
		"CA secret without namespace": {func(o *Options) { o.CASecret = "argocd-agent-ca" }, "--ca-secret"},
		"CA secret bad name":          {func(o *Options) { o.CASecret = "argocd/Bad_Name" }, "--ca-secret"},
		"lifetime too short":          {func(o *Options) { o.CertLifetime = 30 * time.Second }, "--cert-lifetime"},
		"lifetime too long":           {func(o *Options) { o.CertLifetime = 10 * 365 * 24 * time.Hour }, "--cert-lifetime"},
		"unknown subject":             {func(o *Options) { o.CertificateSubject = "cn" }, "--certificate-subject"},
		"zero QPS":                    {func(o *Options) { o.KubeAPIQPS = 0 }, "--kube-api-qps"},
		"NaN QPS":                     {func(o *Options) { o.KubeAPIQPS = float32(math.NaN()) }, "--kube-api-qps"},
		"burst below QPS":             {func(o *Options) { o.KubeAPIBurst = 10 }, "--kube-api-burst"},
	} {
		t.Run(name, func(t *testing.T) {
			o := NewOptions()
			tc.mutate(o)
			if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error naming %s, got %v", tc.want, err)
			}
		})
	}
}
