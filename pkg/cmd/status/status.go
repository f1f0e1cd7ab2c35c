// Package status is the `argocd-agent-addon status` command: one line per cluster that has the
// add-on or is revoked, with its availability, the expiry and CA of the agent's newest
// certificate, the agent mode and image it was given, and whether it is revoked; then one line
// per CA, saying whether a CA kept in the trust bundle after a rollover may leave it.
package status

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/addon"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/agentversion"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/delivered"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/hubclient"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/plan"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/spokeready"
)

// Options are the status settings.
type Options struct {
	Kubeconfig string
	// CASecret is the hub CA secret, NAMESPACE/NAME.
	CASecret string
	// Output is OutputTable (default), OutputJSON or OutputYAML.
	Output string
	// RestConfig, if set, is used instead of Kubeconfig (tests).
	RestConfig *rest.Config
}

// NewCommand returns the status command.
func NewCommand() *cobra.Command {
	o := &Options{CASecret: hubclient.DefaultCASecret}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show, per cluster, the add-on's availability, certificate expiry and CA, agent mode and image; and per CA, its valid certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// Validate checks the options.
func (o *Options) Validate() error {
	switch o.Output {
	case "", OutputTable, OutputJSON, OutputYAML:
		return nil
	}
	return fmt.Errorf("-o %q: want %s, %s or %s", o.Output, OutputTable, OutputJSON, OutputYAML)
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	hubclient.AddKubeconfigFlag(fs, &o.Kubeconfig)
	fs.StringVar(&o.CASecret, "ca-secret", o.CASecret, "Hub CA secret (NAMESPACE/NAME), to tell the signing CA from those kept for trust.")
	fs.StringVarP(&o.Output, "output", "o", OutputTable,
		"Output format: table, or json or yaml for scripts (a "+ReportKind+" of apiVersion "+ReportAPIVersion+", see docs/operations.md#status).")
}

// Row is one cluster's status.
type Row struct {
	Cluster      string
	Available    string
	CertNotAfter time.Time
	// CA is the ID of the CA that signed the newest certificate.
	CA    string
	Mode  string
	Image string
	// Principal is the principal address the cluster's ManifestWork gives its agent and, from
	// the add-on's PrincipalAddress condition, where it came from ("host:port (PrincipalService)"),
	// or why there is none.
	Principal string
	// Version is the delivered image's version and how it compares with the principal's, from
	// the add-on's AgentVersion condition.
	Version string
	// Config is where the cluster is in the rollout of its AddOnDeploymentConfig.
	Config string
	// ArgoCD says whether the cluster's Argo CD can deploy (the add-on's ArgoCDReady condition):
	// "ready", "NOT READY (<reason>)", "unknown", or empty before any report.
	ArgoCD string
	// Revoked is the revocation reason, empty if not revoked.
	Revoked string
	// Running is what the hub can tell of the certificate the agent pod runs.
	Running Running
	// BundleApplied says the spoke applied a trust bundle that holds the signing CA.
	BundleApplied bool
}

// Running is the certificate the agent pod runs, as far as the hub can tell: the one the spoke
// holds (OCM's ClusterCertificateRotated condition) once the ManifestWork whose pod template
// names it is applied and the add-on is Available. Until then the agent still runs an older
// one, most likely the previous certificate issued to it.
type Running struct {
	// NotAfter is the expiry of the certificate it runs, or of the previous one while Known is
	// false; zero if unknown.
	NotAfter time.Time
	Known    bool
	// RenewalPending: the spoke holds a certificate the delivered pod template does not name yet.
	RenewalPending bool
}

// Run prints the table to out.
func (o *Options) Run(ctx context.Context, out io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	c, err := hubclient.New(o.Kubeconfig, o.RestConfig)
	if err != nil {
		return err
	}
	now := time.Now()
	signing, trusted, err := readCASecret(ctx, c, o.CASecret)
	if err != nil {
		return err
	}
	rows, certs, err := Collect(ctx, c, now, append([]*x509.Certificate{signing}, trusted...))
	if err != nil {
		return err
	}
	cas := issued.ByCA(signing, trusted, certs, now)
	switch o.Output {
	case OutputJSON, OutputYAML:
		return PrintReport(out, o.Output, NewReport(rows, cas, now))
	}
	if err := Print(out, rows, now); err != nil {
		return err
	}
	fmt.Fprintln(out)
	return PrintCAs(out, cas, BundlePending(rows))
}

// Collect reads each cluster's status from the hub: its ManagedClusterAddOn, with the record of
// the certificates issued to it, and its ManifestWork. It also returns every valid certificate
// issued: on record, or in a CSR the hub still has (the record is written seconds after
// issuing), attributed to whichever of cas signed it.
func Collect(ctx context.Context, c client.Client, now time.Time, cas []*x509.Certificate) ([]Row, []issued.Certificate, error) {
	addons := &addonv1beta1.ManagedClusterAddOnList{}
	if err := c.List(ctx, addons); err != nil {
		return nil, nil, fmt.Errorf("listing ManagedClusterAddOns: %w", err)
	}
	onHub, err := issued.OnHub(ctx, c, cas)
	if err != nil {
		return nil, nil, err
	}
	var all []issued.Certificate
	var rows []Row
	for _, a := range addons.Items {
		if a.Name != identity.AddonName {
			continue
		}
		row := Row{Cluster: a.Namespace, Available: "Unknown"}
		recorded := onHub[a.Namespace]
		valid := issued.Valid(recorded, now)
		all = append(all, valid...)
		if newest, ok := issued.Newest(recorded); ok {
			row.CertNotAfter, row.CA = newest.NotAfter, newest.CA
		}
		if cond := meta.FindStatusCondition(a.Status.Conditions, addonv1beta1.ManagedClusterAddOnConditionAvailable); cond != nil {
			row.Available = string(cond.Status)
		}
		ws, err := deliveredState(ctx, c, a.Namespace)
		if err != nil {
			return nil, nil, err
		}
		row.Mode, row.Image, row.Config = ws.mode, ws.image, configState(&a)
		row.Principal = principalState(&a, ws.principal)
		row.Version = versionState(&a, ws.image)
		row.ArgoCD = argoCDState(&a)
		row.Running = running(&a, ws, recorded, row.Available == string(metav1.ConditionTrue))
		if len(cas) > 0 {
			row.BundleApplied = ws.applied && bundleHolds(ws.bundle, cas[0])
		}
		rows = append(rows, row)
	}
	// Revoked clusters lose their add-on; list them all the same.
	records, err := issued.List(ctx, c, "")
	if err != nil {
		return nil, nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(records)) {
		r := records[name].Revocation
		if r == nil {
			continue
		}
		reason := fmt.Sprintf("%s (revoked %s)", r.Reason, r.RevokedAt.UTC().Format(time.RFC3339))
		found := false
		for i := range rows {
			if rows[i].Cluster == name {
				rows[i].Revoked, found = reason, true
			}
		}
		if !found {
			// Its add-on, and the record on it, are gone: revoke noted when its last
			// certificate lapses.
			row := Row{Cluster: name, Available: "-", Revoked: reason}
			if r.CertificatesLapse != nil {
				row.CertNotAfter = *r.CertificatesLapse
			}
			rows = append(rows, row)
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Cluster < rows[j].Cluster })
	return rows, all, nil
}

// versionState is the delivered image's version and, from the add-on's AgentVersion condition,
// whether the principal accepts it. Like PrincipalAddress, the condition only labels what the
// hub's ManifestWork delivers.
func versionState(a *addonv1beta1.ManagedClusterAddOn, image string) string {
	v := agentversion.Of(image)
	if image == "" {
		return ""
	}
	if v == "" {
		v = "no version"
	}
	c := meta.FindStatusCondition(a.Status.Conditions, addon.ConditionAgentVersion)
	switch {
	case c == nil:
		return v
	case c.Status == metav1.ConditionTrue:
		return v + " (= principal)"
	case c.Status == metav1.ConditionFalse:
		why := "following"
		switch {
		case strings.Contains(c.Message, "pins the image"):
			why = "pinned"
		case strings.Contains(c.Message, "rollout"):
			why = "rollout pending"
		}
		return v + " MISMATCH: principal refuses it (" + why + ")"
	}
	return v + " (principal's unknown)"
}

// argoCDState is the ArgoCDReady condition in a word, with its reason when False. The cluster
// may write its own add-on's status, so only the reason is printed (the API server holds it to
// a CamelCase word): a message could carry newlines or terminal escapes that fake rows.
// `kubectl get managedclusteraddon` shows the message naming what is missing.
func argoCDState(a *addonv1beta1.ManagedClusterAddOn) string {
	c := meta.FindStatusCondition(a.Status.Conditions, spokeready.ConditionArgoCDReady)
	switch {
	case c == nil:
		return ""
	case c.Status == metav1.ConditionTrue:
		return "ready"
	case c.Status == metav1.ConditionFalse:
		return "NOT READY (" + c.Reason + ")"
	}
	return "unknown"
}

// principalState is the delivered address with the source the add-on reports, or the reason
// there is none. The condition is the cluster's own status, which it could write: it only
// labels the address, which comes from the hub's ManifestWork.
func principalState(a *addonv1beta1.ManagedClusterAddOn, delivered string) string {
	c := meta.FindStatusCondition(a.Status.Conditions, addon.ConditionPrincipalAddress)
	switch {
	case c != nil && c.Status == metav1.ConditionFalse && delivered != "":
		return delivered + " (now none: " + c.Reason + ")"
	case c != nil && c.Status == metav1.ConditionFalse:
		return "none (" + c.Reason + ")"
	case delivered == "":
		return ""
	case c != nil:
		return delivered + " (" + c.Reason + ")"
	}
	return delivered
}

// configState says which spec of its AddOnDeploymentConfig the cluster runs (the first 8 hex
// digits of OCM's spec hash), the one OCM's rollout is moving it to if different, and OCM's
// Progressing reason: "1a2b3c4d (Completed)", "1a2b3c4d -> 5e6f7a8b (Progressing)". Clusters
// the rollout has not reached show the older hash.
func configState(a *addonv1beta1.ManagedClusterAddOn) string {
	found, ref := utils.GetAddOnConfigRef(a.Status.ConfigReferences, utils.AddOnDeploymentConfigGVR.Group, utils.AddOnDeploymentConfigGVR.Resource)
	if !found {
		return ""
	}
	short := func(h *addonv1beta1.ConfigSpecHash) string {
		if h == nil || h.SpecHash == "" {
			return "none"
		}
		return h.SpecHash[:min(8, len(h.SpecHash))]
	}
	state := short(ref.LastAppliedConfig)
	if desired := short(ref.DesiredConfig); desired != state {
		state += " -> " + desired
	}
	if c := meta.FindStatusCondition(a.Status.Conditions, addonv1beta1.ManagedClusterAddOnConditionProgressing); c != nil {
		state += " (" + c.Reason + ")"
	}
	return state
}

// readCASecret returns the signing CA (first certificate of tls.crt) and those of ca.crt.
func readCASecret(ctx context.Context, c client.Client, ref string) (*x509.Certificate, []*x509.Certificate, error) {
	key, err := hubclient.CASecretKey(ref)
	if err != nil {
		return nil, nil, err
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, key, secret); err != nil {
		return nil, nil, fmt.Errorf("reading the CA secret %s: %w", ref, err)
	}
	signing, err := authority.ParseCertificates(secret.Data[authority.CertKey])
	if err != nil || len(signing) == 0 {
		return nil, nil, fmt.Errorf("CA secret %s: %s holds no certificate (%v)", ref, authority.CertKey, err)
	}
	trusted, err := authority.ParseCertificates(secret.Data[authority.TrustKey])
	if err != nil {
		return nil, nil, fmt.Errorf("CA secret %s, %s: %w", ref, authority.TrustKey, err)
	}
	return signing[0], trusted, nil
}

// BundlePending lists the clusters with the add-on whose spoke has not applied a trust bundle
// holding the signing CA.
func BundlePending(rows []Row) []string {
	var out []string
	for _, r := range rows {
		if r.Available != "-" && !r.BundleApplied { // "-": revoked, no add-on
			out = append(out, r.Cluster)
		}
	}
	return out
}

// PrintCAs writes the CA table, with what an operator rolling a CA over may do next. A CA kept
// for trust may leave only once it signs no valid certificate and every cluster in
// bundlePending has applied a trust bundle with the signing CA: until then those agents could
// not verify a principal certificate from it.
func PrintCAs(out io.Writer, cas []issued.CAUsage, bundlePending []string) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CA\tROLE\tVALID CERTIFICATES\tLAST EXPIRES\tNOTE")
	for _, r := range cas {
		last := "-"
		if !r.LastExpiry.IsZero() {
			last = r.LastExpiry.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", r.ID, orDash(r.Role), r.Valid, last, caNote(r, bundlePending))
	}
	return w.Flush()
}

// caNote says what an operator rolling a CA over may do with r next.
func caNote(r issued.CAUsage, bundlePending []string) string {
	switch {
	case r.Role == issued.RoleTrusted && r.Valid == 0 && len(bundlePending) > 0:
		return fmt.Sprintf("signs no valid certificate, but keep in %s: %d cluster(s) have not applied a trust bundle with the signing CA (%s)",
			authority.TrustKey, len(bundlePending), strings.Join(bundlePending[:min(5, len(bundlePending))], ", "))
	case r.Role == issued.RoleTrusted && r.Valid == 0:
		return "signs no valid certificate: may leave " + authority.TrustKey
	case r.Role == issued.RoleTrusted:
		return "keep in " + authority.TrustKey + " until " + r.LastExpiry.UTC().Format(time.RFC3339)
	case r.Role == "" && r.Valid > 0:
		return "NOT TRUSTED any more, yet signed valid certificates: agents using them cannot connect"
	}
	return ""
}

// workState is what the cluster's ManifestWork delivers, and whether the spoke applied it.
type workState struct {
	mode, image string
	// principal is the address (host:port) of the agent's ConfigMap.
	principal string
	// certificate is the pod template's delivered.ClientCertificateAnnotation; bundle the CA Secret's trust bundle.
	certificate string
	bundle      []byte
	// applied: the work agent reports this generation of the work applied.
	applied bool
}

// deliveredState reads what the cluster's deploy ManifestWorks deliver.
func deliveredState(ctx context.Context, c client.Client, cluster string) (workState, error) {
	var ws workState
	works, err := delivered.ReadWorks(ctx, c, cluster)
	if err != nil || len(works) == 0 {
		return ws, err
	}
	ws.applied = works.Applied()
	objects, err := works.Objects()
	if err != nil {
		return ws, err
	}
	agent := delivered.Find(objects)
	if agent.Params != nil {
		ws.mode = agent.Params.Data[delivered.ParamsMode]
		if host := agent.Params.Data[delivered.ParamsServerAddress]; host != "" {
			ws.principal = net.JoinHostPort(host, agent.Params.Data[delivered.ParamsServerPort])
		}
	}
	if agent.CASecret != nil {
		ws.bundle = agent.CASecret.Data[delivered.CABundleKey]
	}
	ws.image, ws.certificate = agent.Image(), agent.Certificate()
	return ws, nil
}

// running works out the certificate the agent pod runs (see Running).
func running(a *addonv1beta1.ManagedClusterAddOn, ws workState, recorded []issued.Certificate, available bool) Running {
	onSpoke := plan.CertificateOnSpoke(a)
	if onSpoke == "" {
		return Running{}
	}
	notAfter := spokeNotAfter(onSpoke)
	r := Running{RenewalPending: ws.certificate != delivered.CertificateDigest(onSpoke)}
	if !r.RenewalPending && ws.applied && available {
		return Running{NotAfter: notAfter, Known: true}
	}
	// Not rolled yet: the agent still runs an earlier certificate, the last one issued before.
	for _, c := range recorded {
		if (notAfter.IsZero() || c.NotAfter.Before(notAfter)) && c.NotAfter.After(r.NotAfter) {
			r.NotAfter = c.NotAfter
		}
	}
	return r
}

// spokeNotAfter reads the expiry from OCM's "client certificate rotated starting from <t> to
// <t>" message; zero if it does not parse.
func spokeNotAfter(message string) time.Time {
	_, to, ok := strings.Cut(message, " to ")
	if !ok {
		return time.Time{}
	}
	t, err := time.Parse("2006-01-02 15:04:05 -0700 MST", strings.TrimSpace(to))
	if err != nil {
		return time.Time{}
	}
	return t
}

// bundleHolds reports whether the PEM bundle holds ca.
func bundleHolds(bundle []byte, ca *x509.Certificate) bool {
	certs, err := authority.ParseCertificates(bundle)
	if err != nil {
		return false
	}
	for _, c := range certs {
		if c.Equal(ca) {
			return true
		}
	}
	return false
}

// Print writes rows as a table; expiry is shown relative to now.
func Print(out io.Writer, rows []Row, now time.Time) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CLUSTER\tAVAILABLE\tARGO CD\tCERTIFICATE EXPIRES\tRUNNING CERTIFICATE\tCA\tPRINCIPAL\tMODE\tIMAGE\tVERSION\tCONFIG\tREVOKED")
	for _, r := range rows {
		expires := expiry(r.CertNotAfter, now)
		runs := "-"
		switch {
		case r.Running.Known:
			runs = expiry(r.Running.NotAfter, now)
		case r.Running.RenewalPending && !r.Running.NotAfter.IsZero() && r.Running.NotAfter.Before(now.Add(time.Hour)):
			runs = "RENEWAL NOT DELIVERED, running one expires " + expiry(r.Running.NotAfter, now)
		case r.Running.RenewalPending:
			runs = "unknown: renewal not delivered yet"
		case !r.Running.NotAfter.IsZero():
			runs = "unknown: rolling, previous expires " + expiry(r.Running.NotAfter, now)
		}
		revoked := "no"
		if r.Revoked != "" {
			revoked = "yes: " + r.Revoked
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Cluster, r.Available, orDash(r.ArgoCD), expires, runs, orDash(r.CA), orDash(r.Principal), orDash(r.Mode), orDash(r.Image), orDash(r.Version), orDash(r.Config), revoked)
	}
	return w.Flush()
}

// expiry prints t relative to now, "-" if zero.
func expiry(t, now time.Time) string {
	switch {
	case t.IsZero():
		return "-"
	case !now.Before(t):
		return t.UTC().Format(time.RFC3339) + " (EXPIRED)"
	}
	return fmt.Sprintf("%s (in %s)", t.UTC().Format(time.RFC3339), t.Sub(now).Round(time.Minute))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
