package authority

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Source is where the CA comes from: Get returns the CA to sign with now, or an error that says
// why there is no usable one; Key is the hub secret it is read from, which controllers watch so
// that they go on as soon as it changes. SecretSource is the manager's Source.
type Source interface {
	Get(ctx context.Context) (*CA, error)
	Key() types.NamespacedName
}

var _ Source = (*SecretSource)(nil)

// SecretSource reads the CA from a hub secret through a (cached) reader. It parses a secret
// version once and serves that result until the secret changes, so a fixed secret makes signing
// resume at once and a broken one keeps failing with the same clear error.
type SecretSource struct {
	reader client.Reader
	key    types.NamespacedName
	now    func() time.Time

	mu      sync.Mutex
	version string
	ca      *CA
	err     error
}

// NewSecretSource reads the CA from the secret key through reader.
func NewSecretSource(reader client.Reader, key types.NamespacedName) *SecretSource {
	return &SecretSource{reader: reader, key: key, now: time.Now}
}

// Key is the secret the CA is read from.
func (s *SecretSource) Key() types.NamespacedName { return s.key }

// Get returns the current CA, or an error that says what is wrong with the secret.
func (s *SecretSource) Get(ctx context.Context) (*CA, error) {
	secret := &corev1.Secret{}
	if err := s.reader.Get(ctx, s.key, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("CA secret %s not found: create it (e.g. with `argocd-agentctl pki init`) to let the add-on sign agent certificates", s.key)
		}
		return nil, fmt.Errorf("reading CA secret %s: %w", s.key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// A CA that was valid, signing or trusted, may expire without its secret changing.
	if secret.ResourceVersion != s.version || (s.ca != nil && !s.now().Before(s.ca.firstExpiry())) {
		s.version = secret.ResourceVersion
		s.ca, s.err = parseSecret(secret.Data, s.now())
		if s.err != nil {
			s.ca, s.err = nil, fmt.Errorf("CA secret %s: %w", s.key, s.err)
		}
	}
	return s.ca, s.err
}

func parseSecret(data map[string][]byte, now time.Time) (*CA, error) {
	ca, err := Parse(data[CertKey], data[KeyKey], now)
	if err != nil {
		return nil, err
	}
	expired, err := ca.Trust(data[TrustKey], now)
	if err != nil {
		return nil, err
	}
	for _, cert := range expired {
		klog.InfoS("Leaving an expired CA out of the agents' trust bundle: remove it from the CA secret",
			"key", TrustKey, "subject", cert.Subject.String(), "notAfter", cert.NotAfter, "id", ID(cert))
	}
	return ca, nil
}

// Bundle returns the PEM trust bundle agents verify the principal with.
func (s *SecretSource) Bundle(ctx context.Context) ([]byte, error) {
	ca, err := s.Get(ctx)
	if err != nil {
		return nil, err
	}
	return ca.BundlePEM(), nil
}

// ID returns the ID of the signing CA.
func (s *SecretSource) ID(ctx context.Context) (string, error) {
	ca, err := s.Get(ctx)
	if err != nil {
		return "", err
	}
	return ca.ID(), nil
}
