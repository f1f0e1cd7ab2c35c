package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	clusterclient "open-cluster-management.io/api/client/cluster/clientset/versioned"
	ocmfeature "open-cluster-management.io/api/feature"
	operatorv1 "open-cluster-management.io/api/operator/v1"

	"open-cluster-management.io/ocm/pkg/addon"
	"open-cluster-management.io/ocm/pkg/features"
	placementcontrollers "open-cluster-management.io/ocm/pkg/placement/controllers"
	registrationhub "open-cluster-management.io/ocm/pkg/registration/hub"
	workhub "open-cluster-management.io/ocm/pkg/work/hub"
)

type hubOptions struct {
	kubeconfig       string
	webhookPort      int
	webhookCertDir   string
	clientCACert     string
	clientCAKey      string
	signingDuration  time.Duration
	csrMaxAge        time.Duration
	csrDoneMaxAge    time.Duration
	autoAccept       bool
	autoApproveUsers stringList
	featureGates     string
	readyFile        string
	controllers      string
	webhook          bool
}

// hubControllers are the parts --controllers selects from. "registration" brings the two pieces
// of kube-controller-manager OCM relies on (CSR signer and cleaner) with it.
var hubControllers = []string{"registration", "placement", "work", "addon-manager"}

// runHub runs the OCM hub: registration hub, placement, work hub, OCM's addon-manager, the add-on
// conversion webhook, and the two pieces of kube-controller-manager OCM relies on (the
// kube-apiserver-client CSR signer and the CSR cleaner), which a bare API server lacks.
func runHub(ctx context.Context, args []string) error {
	o := hubOptions{}
	fs := newFlagSet("hub")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "admin kubeconfig of the hub API server (required)")
	fs.IntVar(&o.webhookPort, "webhook-port", 0, "port of the add-on conversion webhook on 127.0.0.1 (0: a free port)")
	fs.StringVar(&o.webhookCertDir, "webhook-cert-dir", "", "where the generated webhook serving cert is written (default: a temporary directory)")
	fs.StringVar(&o.clientCACert, "client-ca-cert", "", "PEM CA the API server trusts for client certs (its --client-ca-file); with --client-ca-key enables the CSR signer")
	fs.StringVar(&o.clientCAKey, "client-ca-key", "", "PEM private key of --client-ca-cert (PKCS#1, PKCS#8 or EC)")
	fs.DurationVar(&o.signingDuration, "signing-duration", 24*time.Hour, "maximum lifetime of signed kube-apiserver-client certificates")
	fs.DurationVar(&o.csrMaxAge, "csr-max-age", time.Hour, "delete any CSR older than this")
	fs.DurationVar(&o.csrDoneMaxAge, "csr-done-max-age", 10*time.Minute, "delete approved, denied or failed CSRs older than this")
	fs.BoolVar(&o.autoAccept, "auto-accept", true, "enable ManagedClusterAutoApproval: accept new clusters and approve bootstrap CSRs filed by the --kubeconfig user and --auto-approve-user users")
	fs.Var(&o.autoApproveUsers, "auto-approve-user", "extra bootstrap user whose cluster CSRs are approved (repeatable)")
	fs.StringVar(&o.featureGates, "feature-gates", "", "OCM hub feature gates, e.g. ClusterProfile=true")
	fs.StringVar(&o.controllers, "controllers", strings.Join(hubControllers, ","), "comma-separated hub controllers to run, of "+strings.Join(hubControllers, ",")+"; a benchmark runs the addon-manager in a process of its own to measure it alone")
	fs.BoolVar(&o.webhook, "conversion-webhook", true, "serve the add-on conversion webhook and wire the CRDs to it (exactly one process on a hub must)")
	fs.StringVar(&o.readyFile, "ready-file", "", "write a JSON file (webhook URL, CA file, pid) here once the conversion webhook is wired; the controllers start right after")
	_ = fs.Parse(args)
	setupLogging()
	run := map[string]bool{}
	for _, c := range strings.Split(o.controllers, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		if !slices.Contains(hubControllers, c) {
			return fmt.Errorf("--controllers: unknown controller %q (known: %s)", c, strings.Join(hubControllers, ","))
		}
		run[c] = true
	}

	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	kubeClient, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}

	// Gates as OCM's hub commands register them (pkg/cmd/hub). DefaultClusterSet (default on)
	// makes registration create the "default" and "global" ManagedClusterSets.
	if err := addFeatureGates(features.HubMutableFeatureGate,
		ocmfeature.DefaultHubRegistrationFeatureGates, ocmfeature.DefaultHubWorkFeatureGates,
		ocmfeature.DefaultHubAddonManagerFeatureGates); err != nil {
		return err
	}
	hubOpts := registrationhub.NewHubManagerOptions()
	hubOpts.EnabledRegistrationDrivers = []string{operatorv1.CSRAuthType}
	if o.autoAccept {
		// The klusterlets bootstrap with the admin kubeconfig (as OCM's integration tests do), so the
		// bootstrap user is whoever --kubeconfig authenticates as.
		self, err := kubeClient.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("finding the --kubeconfig user for auto approval: %w", err)
		}
		hubOpts.AutoApprovedCSRUsers = append([]string{self.Status.UserInfo.Username}, o.autoApproveUsers...)
		if err := features.HubMutableFeatureGate.Set("ManagedClusterAutoApproval=true"); err != nil {
			return err
		}
		klog.InfoS("Auto-accepting clusters", "bootstrapUsers", hubOpts.AutoApprovedCSRUsers)
	}
	if o.featureGates != "" {
		if err := features.HubMutableFeatureGate.Set(o.featureGates); err != nil {
			return err
		}
	}

	var comps []component
	ready := map[string]any{"pid": os.Getpid()}
	if o.webhook {
		if o.webhookCertDir == "" {
			if o.webhookCertDir, err = os.MkdirTemp("", "ocm-local-webhook-"); err != nil {
				return err
			}
			defer os.RemoveAll(o.webhookCertDir)
		}
		// The conversion webhook must serve before anything reads add-ons: the CRDs store one version
		// and OCM v1.2.1 reads v1alpha1 while addon-framework v1.3 reads v1beta1.
		wh, err := startConversionWebhook(ctx, cfg, o.webhookPort, o.webhookCertDir)
		if err != nil {
			return err
		}
		comps = append(comps, component{"conversion webhook", wh.wait})
		ready["webhookURL"], ready["webhookCABundleFile"] = wh.url, wh.caFile
		klog.InfoS("Conversion webhook wired", "url", wh.url, "caBundle", wh.caFile)
	}
	if run["registration"] {
		comps = append(comps,
			component{"registration hub", func(ctx context.Context) error {
				return hubOpts.RunControllerManager(ctx, controllerContext(cfg, "registration-hub"))
			}},
			component{"csr cleaner", func(ctx context.Context) error {
				return runCSRCleaner(ctx, kubeClient, o.csrMaxAge, o.csrDoneMaxAge)
			}})
		if o.clientCACert != "" || o.clientCAKey != "" {
			signer, err := newCSRSigner(kubeClient, clusterclient.NewForConfigOrDie(cfg), o.clientCACert, o.clientCAKey, o.signingDuration)
			if err != nil {
				return err
			}
			comps = append(comps, component{"csr signer", signer.run})
		} else {
			klog.Warning("No --client-ca-cert/--client-ca-key: kube-apiserver-client CSRs will not be signed, klusterlets cannot finish joining")
		}
	}
	if run["placement"] {
		comps = append(comps, component{"placement", func(ctx context.Context) error {
			return placementcontrollers.RunControllerManager(ctx, controllerContext(cfg, "placement"))
		}})
	}
	if run["work"] {
		comps = append(comps, component{"work hub", func(ctx context.Context) error {
			// The "kube" driver with no config file uses the controller context's config.
			return workhub.NewWorkHubManagerConfig(workhub.NewWorkHubManagerOptions()).
				RunWorkHubManager(ctx, controllerContext(cfg, "work-hub"))
		}})
	}
	if run["addon-manager"] {
		comps = append(comps, component{"addon-manager", func(ctx context.Context) error {
			return addon.RunManager(ctx, controllerContext(cfg, "addon-manager"))
		}})
	}
	if len(comps) == 0 {
		return errors.New("nothing to run: --controllers is empty and --conversion-webhook=false")
	}

	if o.readyFile != "" {
		// Written before the controllers run: they start within milliseconds and each retries on
		// its own, so callers may go ahead and create objects.
		data, _ := json.Marshal(ready)
		if err := os.WriteFile(o.readyFile, data, 0o600); err != nil {
			return err
		}
	}
	klog.InfoS("OCM hub started", "controllers", o.controllers)
	return runAll(ctx, comps...)
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return fmt.Sprint([]string(*s)) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
