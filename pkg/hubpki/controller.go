package hubpki

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/events"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/certificates/authority"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/identity"
)

// resync bounds how long a change the controller does not watch (the resource proxy's Service,
// a deleted secret) goes unnoticed. It costs a few reads, never a write.
const resync = 10 * time.Minute

// ReasonRolled is the event reason on the principal Deployment when the add-on rolls it.
const ReasonRolled = "PrincipalPKIChanged"

var changes = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "argocd_agent_addon", Name: "hub_pki_writes_total",
	Help: "Writes of the hub PKI: CA and JWT key created, server certificates issued or renewed (by certrotation), principal Deployment rolled; in steady state it does not move.",
}, []string{"object"})

func init() { ctrlmetrics.Registry.MustRegister(changes) }

// Reconciler keeps the hub PKI. It has a single key: everything it keeps belongs to the one
// principal.
type Reconciler struct {
	// Client reads the principal's Service and Deployment, the CA secret and the
	// ClusterManagementAddOn from the manager's cache, and patches the principal Deployment.
	Client client.Client
	// APIReader reads what the cache does not hold: the principal's secrets and the resource
	// proxy's Service.
	APIReader client.Reader
	// Secrets writes the secrets (certrotation writes through client-go).
	Secrets corev1client.SecretsGetter
	CA      authority.Source
	// CreateCA creates the CA secret when it is absent.
	CreateCA bool
	// ServerCerts keeps the server certificates and the JWT key, and rolls the principal.
	ServerCerts          bool
	PrincipalService     types.NamespacedName
	ResourceProxyService types.NamespacedName
	PrincipalDeployment  types.NamespacedName
	// Extra SANs, from the user, on top of what the Services say.
	PrincipalSANs, ResourceProxySANs []string
	// Lifetime of the server certificates; certrotation renews them at 80 %.
	Lifetime time.Duration
	Events   events.EventRecorder
	Now      func() time.Time
}

var hubKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "principal"}}

// SetupWithManager watches the CA secret, the principal's Service and Deployment and the
// ClusterManagementAddOn, and resyncs every few minutes.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	one := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request { return []reconcile.Request{hubKey} })
	caKey := r.CA.Key()
	is := func(key types.NamespacedName) predicate.Predicate {
		return predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() == key.Namespace && o.GetName() == key.Name })
	}
	// The ClusterManagementAddOn exists from the start: its watch reconciles first, when the CA
	// secret may not exist yet. The Deployment (cached by name only with --principal-pki) and
	// the Service matter only for the server certificates.
	b := ctrl.NewControllerManagedBy(mgr).
		Named("hub-pki").
		Watches(&addonv1beta1.ClusterManagementAddOn{}, one, builder.WithPredicates(is(types.NamespacedName{Name: identity.AddonName}))).
		Watches(&corev1.Secret{}, one, builder.WithPredicates(is(caKey)))
	if r.ServerCerts {
		b = b.Watches(&corev1.Service{}, one, builder.WithPredicates(is(r.PrincipalService))).
			Watches(&appsv1.Deployment{}, one, builder.WithPredicates(is(r.PrincipalDeployment),
				predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{})))
	}
	return b.Complete(r)
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Reconcile brings the hub PKI to what the options ask for.
func (r *Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	if r.CreateCA {
		if err := r.ensureCA(ctx); err != nil {
			return ctrl.Result{}, err
		}
	}
	if !r.ServerCerts {
		return ctrl.Result{}, nil
	}
	ca, err := r.CA.Get(ctx)
	if err != nil {
		logger.Info("No usable CA for the principal's certificates yet", "err", err.Error())
		return ctrl.Result{RequeueAfter: 5 * time.Second}, nil
	}
	cma := &addonv1beta1.ClusterManagementAddOn{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: identity.AddonName}, cma); err != nil {
		return ctrl.Result{}, fmt.Errorf("reading the ClusterManagementAddOn, owner of the principal's certificates: %w", err)
	}
	if cma.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	owner := metav1.OwnerReference{APIVersion: addonv1beta1.GroupVersion.String(), Kind: "ClusterManagementAddOn", Name: cma.Name, UID: cma.UID}

	principalSvc := &corev1.Service{}
	if err := r.Client.Get(ctx, r.PrincipalService, principalSvc); apierrors.IsNotFound(err) {
		principalSvc = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: r.PrincipalService.Namespace, Name: r.PrincipalService.Name}}
	} else if err != nil {
		return ctrl.Result{}, err
	}
	proxySvc := &corev1.Service{}
	if err := r.APIReader.Get(ctx, r.ResourceProxyService, proxySvc); apierrors.IsNotFound(err) {
		proxySvc = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: r.ResourceProxyService.Namespace, Name: r.ResourceProxyService.Name}}
	} else if err != nil {
		return ctrl.Result{}, err
	}

	ns := r.PrincipalDeployment.Namespace
	before, err := r.principalSecrets(ctx, ns, owner.UID)
	if err != nil {
		return ctrl.Result{}, err
	}
	for _, t := range []struct {
		name  string
		hosts []string
	}{
		{PrincipalTLSSecret, ServiceHostNames(principalSvc, r.PrincipalSANs)},
		{ResourceProxyTLSSecret, ServiceHostNames(proxySvc, r.ResourceProxySANs)},
	} {
		kept, err := ensureServerCert(ctx, r.APIReader, r.Secrets, ca, owner, types.NamespacedName{Namespace: ns, Name: t.name}, t.hosts, r.Lifetime)
		if err != nil {
			return ctrl.Result{}, err
		}
		if !kept {
			logger.V(1).Info("Leaving a server certificate the add-on did not create", "secret", ns+"/"+t.name)
		}
	}
	if err := r.ensureJWTKey(ctx, ns, owner); err != nil {
		return ctrl.Result{}, err
	}
	after, err := r.principalSecrets(ctx, ns, owner.UID)
	if err != nil {
		return ctrl.Result{}, err
	}
	for name, s := range after {
		if b := before[name]; b == nil || b.ResourceVersion != s.ResourceVersion {
			changes.WithLabelValues(name).Inc()
			logger.Info("Principal secret issued", "secret", ns+"/"+name, "renewAt", RenewalTime(s))
		}
	}
	if err := r.rollPrincipal(ctx, after); err != nil {
		return ctrl.Result{}, err
	}
	next := resync
	for _, name := range []string{PrincipalTLSSecret, ResourceProxyTLSSecret} {
		if at := RenewalTime(after[name]); !at.IsZero() && at.Sub(r.now()) < next {
			next = max(at.Sub(r.now()), time.Second)
		}
	}
	return ctrl.Result{RequeueAfter: next}, nil
}

// principalSecrets are the principal's secrets the add-on keeps (owned by the
// ClusterManagementAddOn), by name.
func (r *Reconciler) principalSecrets(ctx context.Context, namespace string, owner types.UID) (map[string]*corev1.Secret, error) {
	out := map[string]*corev1.Secret{}
	for _, name := range []string{PrincipalTLSSecret, ResourceProxyTLSSecret, JWTSecret} {
		s := &corev1.Secret{}
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, s)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if ownedBy(s, owner) {
			out[name] = s
		}
	}
	return out, nil
}

// ensureCA creates the CA secret if there is none. An existing one is never changed: a CA is
// rolled over by the operator (docs/operations.md).
func (r *Reconciler) ensureCA(ctx context.Context) error {
	key := r.CA.Key()
	err := r.APIReader.Get(ctx, key, &corev1.Secret{})
	if err == nil || !apierrors.IsNotFound(err) {
		return err
	}
	certPEM, keyPEM, err := NewCA(key.Name, r.now())
	if err != nil {
		return fmt.Errorf("making a CA: %w", err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "argocd-agent-addon"}},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
	}
	if _, err := r.Secrets.Secrets(key.Namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the CA secret %s: %w", key, err)
	}
	changes.WithLabelValues(key.Name).Inc()
	log.FromContext(ctx).Info("Created the CA", "secret", key.String())
	return nil
}

// ensureJWTKey creates the principal's JWT signing key once, if there is none.
func (r *Reconciler) ensureJWTKey(ctx context.Context, namespace string, owner metav1.OwnerReference) error {
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: JWTSecret}, &corev1.Secret{})
	if err == nil || !apierrors.IsNotFound(err) {
		return err
	}
	key, err := NewJWTKey()
	if err != nil {
		return fmt.Errorf("making the JWT signing key: %w", err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: JWTSecret, OwnerReferences: []metav1.OwnerReference{owner}},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{JWTKey: key},
	}
	if _, err := r.Secrets.Secrets(namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %s/%s: %w", namespace, JWTSecret, err)
	}
	return nil
}

// rollPrincipal rolls the principal Deployment when the secrets the add-on keeps differ from
// those its pods started with: v0.9.0 reads them only at start-up. The Deployment's own
// RollAnnotation records what its pods hold; a Deployment made after the secrets were last
// written holds them already and is only annotated, not rolled.
func (r *Reconciler) rollPrincipal(ctx context.Context, kept map[string]*corev1.Secret) error {
	if len(kept) == 0 {
		return nil
	}
	digest := Digest(kept[PrincipalTLSSecret], kept[ResourceProxyTLSSecret], kept[JWTSecret])
	deploy := &appsv1.Deployment{}
	if err := r.Client.Get(ctx, r.PrincipalDeployment, deploy); apierrors.IsNotFound(err) {
		return nil // not installed yet: it will start with the current secrets
	} else if err != nil {
		return err
	}
	loaded := deploy.Annotations[RollAnnotation]
	if loaded == digest {
		return nil
	}
	roll := loaded != "" || !deploy.CreationTimestamp.After(lastWrite(kept))
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, RollAnnotation, digest)
	if roll {
		patch = fmt.Sprintf(`{"metadata":{"annotations":{%[1]q:%[2]q}},"spec":{"template":{"metadata":{"annotations":{%[1]q:%[2]q}}}}}`, RollAnnotation, digest)
	}
	if err := r.Client.Patch(ctx, deploy, client.RawPatch(types.StrategicMergePatchType, []byte(patch))); err != nil {
		return fmt.Errorf("recording the principal's certificates on %s: %w", r.PrincipalDeployment, err)
	}
	if !roll {
		log.FromContext(ctx).Info("The principal started after its certificates were written: not rolled", "deployment", r.PrincipalDeployment.String(), "digest", digest)
		return nil
	}
	changes.WithLabelValues("deployment/" + deploy.Name).Inc()
	r.Events.Eventf(deploy, nil, corev1.EventTypeNormal, ReasonRolled, "Roll",
		"rolled the principal to load the certificates and JWT key the add-on keeps (digest %s)", digest)
	log.FromContext(ctx).Info("Rolled the principal to load its new certificates", "deployment", r.PrincipalDeployment.String(), "digest", digest)
	return nil
}

// lastWrite is the latest time any of secrets was written, from their managed fields.
func lastWrite(secrets map[string]*corev1.Secret) time.Time {
	var last time.Time
	for _, s := range secrets {
		if t := s.CreationTimestamp.Time; t.After(last) {
			last = t
		}
		for _, f := range s.ManagedFields {
			if f.Time != nil && f.Time.After(last) {
				last = f.Time.Time
			}
		}
	}
	return last
}
