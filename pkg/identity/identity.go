// Package identity names the add-on, its signer and the objects it owns, and defines the
// certificate subject an agent is given. The registration (what the spoke asks for) and the
// CSR policy (what the hub accepts) both derive the subject from here, so they cannot drift.
package identity

import (
	"crypto/x509/pkix"
	"fmt"
	"strings"

	"open-cluster-management.io/addon-framework/pkg/agent"
)

const (
	// AddonName is the name of the ClusterManagementAddOn and of every ManagedClusterAddOn.
	AddonName = "argocd-agent"
	// SignerName is the CSR signer. It is what the existing OCM argocd-agent add-ons use, so
	// principals configured for them keep working.
	SignerName = "open-cluster-management.io/argocd-agent-addon"
	// AgentName names the agent's Deployment, ServiceAccount and RBAC, as upstream does.
	AgentName = "argocd-agent-agent"
	// DefaultInstallNamespace is where the agent runs unless an AddOnDeploymentConfig says
	// otherwise: next to Argo CD.
	DefaultInstallNamespace = "argocd"
	// CASecretName is the spoke secret holding the CA bundle the agent trusts.
	CASecretName = "argocd-agent-ca"
	// ParamsConfigMapName is the spoke ConfigMap of the agent's settings, as upstream names it.
	ParamsConfigMapName = "argocd-agent-params"
	// CSRDNSName is the only SAN the OCM registration agent puts in an add-on CSR.
	CSRDNSName = AddonName + ".addon.open-cluster-management.io"

	// RevokedLabel on a ManagedCluster makes the chart's Placement drop it, so OCM removes its
	// add-on. `argocd-agent-addon revoke` sets it next to the revocation itself, which lives
	// where no cluster may write (the cluster's record, pkg/certificates/issued) and is what
	// the signer, approver and renderer decide from; the chart's admission policy refuses
	// cluster identities any change to it.
	RevokedLabel = "argocd-agent-addon.open-cluster-management.io/revoked"
	// TLSBlocklistConfigMap is where principals that support it (newer than argocd-agent v0.9.0)
	// read the SHA-256 fingerprints of certificates they must refuse.
	TLSBlocklistConfigMap = "argocd-agent-tls-blocklist"
	// ManagerLease is the manager's leader-election Lease, in its namespace by default.
	ManagerLease = "argocd-agent-addon-manager"
)

// ClientCertSecretName is the spoke secret the OCM registration agent writes the signed
// certificate to: "<addon>-<signer with / replaced by ->-client-cert".
var ClientCertSecretName = fmt.Sprintf("%s-%s-client-cert", AddonName, strings.ReplaceAll(SignerName, "/", "-"))

// SubjectStyle selects the certificate subject given to agents.
type SubjectStyle string

const (
	// SubjectClusterName sets CN to the cluster name, which the principal's default
	// "mtls:CN=([^,]+)" regex with match-subject maps to the agent named after the cluster.
	SubjectClusterName SubjectStyle = "cluster-name"
	// SubjectOCM uses OCM's default add-on subject
	// (CN system:open-cluster-management:cluster:<c>:addon:argocd-agent:agent:argocd-agent-agent),
	// for principals configured for the existing OCM add-ons.
	SubjectOCM SubjectStyle = "ocm"
)

// SubjectStyles lists the valid styles, for flag help and validation.
var SubjectStyles = []SubjectStyle{SubjectClusterName, SubjectOCM}

// ParseSubjectStyle returns the style named s, or an error listing the valid ones.
func ParseSubjectStyle(s string) (SubjectStyle, error) {
	for _, style := range SubjectStyles {
		if string(style) == s {
			return style, nil
		}
	}
	return "", fmt.Errorf("unknown certificate subject style %q (want %q or %q)", s, SubjectClusterName, SubjectOCM)
}

// CAUnitPrefix starts the OU that names the CA an agent's certificate is requested from.
const CAUnitPrefix = "ca-"

// CAUnit is the OU naming the signing CA with ID caID. It is part of the subject the spoke
// registers with, so a new signing CA changes every registration and OCM's registration agent
// requests a new certificate at once, instead of keeping the old CA's until its renewal time.
func CAUnit(caID string) string { return CAUnitPrefix + caID }

// Subject is the certificate subject of one cluster's agent.
type Subject struct {
	User              string
	Groups            []string
	OrganizationUnits []string
}

// For returns the subject of the agent on cluster whose certificate the CA with ID caID signs
// (OU CAUnit(caID)); an empty caID leaves the OU out.
func (s SubjectStyle) For(cluster, caID string) Subject {
	var subject Subject
	if s == SubjectOCM {
		subject = Subject{
			User:   agent.DefaultUser(cluster, AddonName, AgentName),
			Groups: agent.DefaultGroups(cluster, AddonName),
		}
	} else {
		subject = Subject{User: cluster}
	}
	if caID != "" {
		subject.OrganizationUnits = []string{CAUnit(caID)}
	}
	return subject
}

// Name is the X.509 name the spoke puts in its CSR for this subject: CN=User, O=Groups,
// OU=OrganizationUnits.
func (s Subject) Name() pkix.Name {
	return pkix.Name{CommonName: s.User, Organization: s.Groups, OrganizationalUnit: s.OrganizationUnits}
}

// Registration is the add-on registration that makes the spoke ask for this subject.
func (s Subject) Registration() *agent.CustomSignerRegistration {
	return &agent.CustomSignerRegistration{
		SignerName:        SignerName,
		User:              s.User,
		Groups:            s.Groups,
		OrganizationUnits: s.OrganizationUnits,
	}
}

// OCMPrefix starts the user and group names of every OCM agent identity on the hub.
const OCMPrefix = "system:open-cluster-management:"

// RequesterPrefix is the prefix of the username of cluster's OCM registration and work agents.
// The trailing colon matters: without it cluster "a" would match the agents of cluster "ab".
func RequesterPrefix(cluster string) string {
	return OCMPrefix + cluster + ":"
}

// ClusterGroup is the group of cluster's OCM registration and work agents.
func ClusterGroup(cluster string) string { return OCMPrefix + cluster }

// IsClusterAgent reports whether user is an OCM registration or work agent of cluster:
// exactly "system:open-cluster-management:<cluster>:<agent id>", with an id that holds no ':'.
// A prefix match alone is ambiguous: for a cluster named "cluster", the add-on identities
// "system:open-cluster-management:cluster:<x>:addon:..." of cluster <x> would match.
func IsClusterAgent(user, cluster string) bool {
	id, ok := strings.CutPrefix(user, RequesterPrefix(cluster))
	return ok && id != "" && !strings.Contains(id, ":")
}
