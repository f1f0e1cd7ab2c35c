package status

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/issued"
)

// Output formats.
const (
	OutputTable = "table"
	OutputJSON  = "json"
	OutputYAML  = "yaml"
)

// The report's version and kind. Within a version, fields are only ever added; a field whose
// meaning changes gets a new version.
const (
	ReportAPIVersion = "status.argocd-agent-addon.open-cluster-management.io/v1"
	ReportKind       = "StatusReport"
)

// Report is what -o json and -o yaml print: the same facts as the tables, for scripts.
type Report struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Time is when the hub was read; every "expired" below is relative to it.
	Time     time.Time       `json:"time"`
	Clusters []ClusterReport `json:"clusters"`
	CAs      []CAReport      `json:"cas"`
	// BundlePending lists the clusters with the add-on whose spoke has not applied a trust
	// bundle holding the signing CA.
	BundlePending []string `json:"bundlePending"`
}

// ClusterReport is one cluster's row.
type ClusterReport struct {
	Name string `json:"name"`
	// Available is the add-on's Available condition (True, False, Unknown); "Removed" for a
	// revoked cluster whose add-on is gone.
	Available string `json:"available"`
	// Certificate is the newest certificate issued to the cluster's agent, if any.
	Certificate *CertificateReport `json:"certificate,omitempty"`
	// Running is what the hub can tell of the certificate the agent pod runs.
	Running RunningReport `json:"running"`
	// Principal, Mode, Image, Version and Config are what the cluster's ManifestWork delivers,
	// labelled with the add-on's conditions, as in the table.
	Principal string `json:"principal,omitempty"`
	Mode      string `json:"mode,omitempty"`
	Image     string `json:"image,omitempty"`
	Version   string `json:"version,omitempty"`
	Config    string `json:"config,omitempty"`
	// ArgoCD says whether the cluster's Argo CD can deploy, from the add-on's ArgoCDReady
	// condition: "ready", "NOT READY (<reason>)", "unknown"; absent before any report.
	ArgoCD string `json:"argoCD,omitempty"`
	// Revoked is the revocation, with its reason and time; absent if not revoked.
	Revoked string `json:"revoked,omitempty"`
	// BundleApplied says the spoke applied a trust bundle that holds the signing CA.
	BundleApplied bool `json:"bundleApplied"`
}

// CertificateReport is one certificate.
type CertificateReport struct {
	NotAfter time.Time `json:"notAfter"`
	Expired  bool      `json:"expired"`
	// CA is the ID of the CA that signed it.
	CA string `json:"ca,omitempty"`
}

// RunningReport is Running.
type RunningReport struct {
	// Known: the pod runs the certificate the spoke holds; NotAfter is its expiry. Otherwise
	// NotAfter, if set, is the expiry of the one it most likely still runs.
	Known          bool       `json:"known"`
	NotAfter       *time.Time `json:"notAfter,omitempty"`
	RenewalPending bool       `json:"renewalPending"`
}

// CAReport is one CA's row.
type CAReport struct {
	ID string `json:"id"`
	// Role is signing, trusted, or absent when the CA secret no longer holds it.
	Role       string     `json:"role,omitempty"`
	Valid      int        `json:"validCertificates"`
	LastExpiry *time.Time `json:"lastExpiry,omitempty"`
	Note       string     `json:"note,omitempty"`
}

// NewReport builds the report of rows and cas read at now.
func NewReport(rows []Row, cas []issued.CAUsage, now time.Time) Report {
	r := Report{APIVersion: ReportAPIVersion, Kind: ReportKind, Time: now.UTC(),
		Clusters: []ClusterReport{}, CAs: []CAReport{}, BundlePending: BundlePending(rows)}
	if r.BundlePending == nil {
		r.BundlePending = []string{}
	}
	for _, row := range rows {
		c := ClusterReport{Name: row.Cluster, Available: row.Available, Principal: row.Principal, Mode: row.Mode, Image: row.Image,
			Version: row.Version, Config: row.Config, ArgoCD: row.ArgoCD, Revoked: row.Revoked, BundleApplied: row.BundleApplied,
			Running: RunningReport{Known: row.Running.Known, RenewalPending: row.Running.RenewalPending, NotAfter: timeOrNil(row.Running.NotAfter)}}
		if c.Available == "-" {
			c.Available = "Removed"
		}
		if !row.CertNotAfter.IsZero() {
			c.Certificate = &CertificateReport{NotAfter: row.CertNotAfter.UTC(), Expired: !row.CertNotAfter.After(now), CA: row.CA}
		}
		r.Clusters = append(r.Clusters, c)
	}
	for _, ca := range cas {
		r.CAs = append(r.CAs, CAReport{ID: ca.ID, Role: ca.Role, Valid: ca.Valid, LastExpiry: timeOrNil(ca.LastExpiry), Note: caNote(ca, r.BundlePending)})
	}
	return r
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// PrintReport writes r as JSON or YAML.
func PrintReport(out io.Writer, format string, r Report) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	switch format {
	case OutputJSON:
		_, err = fmt.Fprintf(out, "%s\n", data)
	case OutputYAML:
		if data, err = yaml.JSONToYAML(data); err == nil {
			_, err = out.Write(data)
		}
	default:
		err = fmt.Errorf("output %q is not json or yaml", format)
	}
	return err
}
