package issued

import (
	"crypto/x509"
	"sort"
	"time"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
)

// Roles of a CA in the hub CA secret.
const (
	RoleSigning = "signing" // tls.crt
	RoleTrusted = "trusted" // ca.crt
)

// CAUsage is one CA: the signing one, one kept for trust, or one that signed certificates still
// valid but is in neither.
type CAUsage struct {
	ID string
	// Role is RoleSigning, RoleTrusted, or "" when the CA secret no longer holds it.
	Role string
	// Valid counts the unexpired certificates it signed; LastExpiry is when the last expires.
	Valid      int
	LastExpiry time.Time
}

// ByCA lists the signing CA, those kept for trust, and any other that signed a certificate of
// certs valid at now, with the valid certificates each signed: signing first, then trusted,
// then the rest. A trusted CA with none may leave the trust bundles.
func ByCA(signing *x509.Certificate, trusted []*x509.Certificate, certs []Certificate, now time.Time) []CAUsage {
	byID := map[string]*CAUsage{}
	usage := func(id string) *CAUsage {
		if byID[id] == nil {
			byID[id] = &CAUsage{ID: id}
		}
		return byID[id]
	}
	for _, cert := range trusted {
		usage(authority.ID(cert)).Role = RoleTrusted
	}
	if signing != nil {
		usage(authority.ID(signing)).Role = RoleSigning
	}
	for _, cert := range Valid(certs, now) {
		if cert.CA == "" {
			continue
		}
		u := usage(cert.CA)
		u.Valid++
		if cert.NotAfter.After(u.LastExpiry) {
			u.LastExpiry = cert.NotAfter
		}
	}
	out := make([]CAUsage, 0, len(byID))
	for _, u := range byID {
		out = append(out, *u)
	}
	order := map[string]int{RoleSigning: 0, RoleTrusted: 1, "": 2}
	sort.Slice(out, func(i, j int) bool {
		if order[out[i].Role] != order[out[j].Role] {
			return order[out[i].Role] < order[out[j].Role]
		}
		return out[i].ID < out[j].ID
	})
	return out
}
