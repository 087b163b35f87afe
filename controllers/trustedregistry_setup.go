package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
)

// secretNameIndex indexes TrustedRegistries by the names of the key Secrets they reference.
const secretNameIndex = "spec.keys.secretRef.name"

// CacheOptions restricts what the manager caches to what Signet needs:
//   - Secrets and ConfigMaps only in the trust namespace (no cluster-wide Secret
//     list/watch), ConfigMaps only Signet's own key rings;
//   - Kyverno policies only those labelled as Signet's (by the default label selector, since
//     their kinds may not be served yet when the manager starts);
//   - CustomResourceDefinitions as metadata only, to notice Kyverno being installed.
//
// Private key material and cosign passwords are dropped from cached Secrets.
func CacheOptions(trustNamespace string) cache.Options {
	managed := labels.SelectorFromSet(labels.Set{render.LabelManagedBy: managedByValue})
	crdMeta := &metav1.PartialObjectMetadata{}
	crdMeta.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
	nsMeta := &metav1.PartialObjectMetadata{}
	nsMeta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return cache.Options{
		DefaultLabelSelector: managed,
		DefaultTransform:     cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&trustv1alpha1.TrustedRegistry{}: {Label: labels.Everything()},
			&corev1.Secret{}: {
				Namespaces: map[string]cache.Config{trustNamespace: {}},
				Label:      labels.Everything(),
				Transform:  stripPrivateSecretData,
			},
			// all of the trust namespace: key rings, and trust roots (trustroots.go)
			&corev1.ConfigMap{}: {
				Namespaces: map[string]cache.Config{trustNamespace: {}},
				Label:      labels.Everything(),
			},
			crdMeta: {Label: labels.Everything()},
			// Pod insights (coverage guard): only images and pull secrets are kept.
			&corev1.Pod{}: {Label: labels.Everything(), Transform: shrinkPod},
			nsMeta:        {Label: labels.Everything()},
			// Blocked counts: only Kyverno's PolicyViolation events, where Kyverno writes them.
			&corev1.Event{}: {
				Namespaces: map[string]cache.Config{kyvernoEventNamespace: {
					FieldSelector: fields.OneTermEqualSelector("reason", kyvernoViolation),
				}},
				Label:     labels.Everything(),
				Transform: shrinkEvent,
			},
		},
	}
}

// redactedPrivateKey replaces private key material in cached Secrets: an empty PEM block
// whose type still says "PRIVATE KEY", so a Secret that holds only a private key is still
// reported as PrivateKeyOnly, and the data key names stay visible for messages.
const redactedPrivateKey = "-----BEGIN REDACTED PRIVATE KEY-----\n-----END REDACTED PRIVATE KEY-----\n"

// stripPrivateSecretData keeps cosign private keys and passwords out of the cache: Signet
// never needs them, so it never holds them longer than the decode of a watch event.
func stripPrivateSecretData(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	s.ManagedFields = nil
	s.StringData = nil
	for k, v := range s.Data {
		switch {
		case k == "cosign.password":
			s.Data[k] = nil
		case k == "cosign.key" || strings.Contains(string(v), "PRIVATE KEY"):
			s.Data[k] = []byte(redactedPrivateKey)
		}
	}
	return s, nil
}

// SetupWithManager registers the controller, its index and its watches.
// It also registers the shared-policy controller (shared_controller.go), whose state the
// registries' status reads.
func (r *TrustedRegistryReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	r.writer.Client = r.Client
	r.watches = &policyWatches{}
	r.pending.grace = r.PendingGrace
	// (in the per-registry layout too: it empties the shared policies of a cluster that
	// switched layout, as the registries drop their recorded inputs)
	r.shared = &SharedPolicyReconciler{Client: r.Client, TrustNamespace: r.TrustNamespace,
		Discovery: r.Discovery, Recorder: r.Recorder, watches: r.watches,
		registriesBusy:     func() bool { return r.running.Load() > 0 },
		proposals:          &recordProposals{trigger: make(chan event.GenericEvent, 1)},
		PerRegistryRecords: !r.sharedLayout()}
	sc, err := r.shared.SetupWithManager(mgr, controller.Options{})
	if err != nil {
		return err
	}
	r.watches.add(func(gvk schema.GroupVersionKind) error {
		return sc.Watch(source.Kind[client.Object](mgr.GetCache(), newPolicyObject(gvk), handler.EnqueueRequestsFromMapFunc(sharedPolicyChanged)))
	})
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &trustv1alpha1.TrustedRegistry{}, secretNameIndex,
		func(o client.Object) []string {
			tr := o.(*trustv1alpha1.TrustedRegistry)
			names := make([]string, 0, len(tr.Spec.Keys))
			for _, k := range tr.Spec.Keys {
				names = append(names, k.SecretRef.Name)
			}
			return append(names, trustSecretNames(tr)...)
		}); err != nil {
		return fmt.Errorf("indexing TrustedRegistries by Secret: %w", err)
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &trustv1alpha1.TrustedRegistry{}, configMapNameIndex,
		func(o client.Object) []string { return trustConfigMapNames(o.(*trustv1alpha1.TrustedRegistry)) }); err != nil {
		return fmt.Errorf("indexing TrustedRegistries by ConfigMap: %w", err)
	}

	if r.CountBlocked {
		if err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Event{}, eventPolicyIndex,
			func(o client.Object) []string {
				name := o.(*corev1.Event).InvolvedObject.Name
				if render.IsSharedPolicyName(name) {
					// every shared policy's denials, whichever engine and group
					return []string{name, sharedEventsKey}
				}
				return []string{name}
			}); err != nil {
			return fmt.Errorf("indexing events: %w", err)
		}
	}

	if opts.RateLimiter == nil {
		opts.RateLimiter = retryRateLimiter()
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("trustedregistry").
		WithOptions(opts).
		// a spec change, or Signet's finalizer missing (removed by hand: finalizer_watch.go)
		For(&trustv1alpha1.TrustedRegistry{}, builder.WithPredicates(registryChanged())).
		// (bookkeeping only: enqueues nothing)
		Watches(&trustv1alpha1.TrustedRegistry{}, r.forgetFinalizerPatches()).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.registriesForSecret)).
		// a key ring changed: its registry; a trust root changed: the registries naming it
		// (a record shard: the registries whose entry changed; records.go)
		Watches(&corev1.ConfigMap{}, shardEventHandler{next: handler.EnqueueRequestsFromMapFunc(r.registriesForConfigMap)})
	b = watchKyvernoCRDs(b, r.Discovery, r.allRegistries)
	if !r.sharedLayout() {
		// per-registry layout: each policy's registry restriction holds the other
		// registries' patterns and namespaces
		b = b.Watches(&trustv1alpha1.TrustedRegistry{}, handler.EnqueueRequestsFromMapFunc(r.peersOf),
			builder.WithPredicates(predicate.GenerationChangedPredicate{}))
	}
	if r.CountBlocked {
		b = b.Watches(&corev1.Event{}, coalescing{mapFn: registryForEvent, delay: eventTriggerDelay})
	}
	if r.PodInsights {
		// Only what changes the images in use matters: creation, deletion, and updates that
		// change an image (an ephemeral container added); not status or label churn.
		imagesChanged := func(e event.UpdateEvent) bool {
			oldPod, ok1 := e.ObjectOld.(*corev1.Pod)
			newPod, ok2 := e.ObjectNew.(*corev1.Pod)
			return !ok1 || !ok2 || !slices.Equal(podImages(oldPod), podImages(newPod))
		}
		// Pods go to the podinsights controller, which aggregates each namespace once for
		// every registry guarding it and hands on the registries whose coverage changed.
		r.insights = newPodInsights(r.Client)
		r.insights.guarding, r.insights.guarded = r.guardingRegistries, r.guardedNamespaces
		r.insights.mayWrite = func(name string) (bool, time.Duration) { return r.reports.coalesce(name, time.Now()) }
		r.insights.wrote = func(name string) { r.reports.wrote(name, time.Now()) }
		r.insights.preview = r.Preview != nil
		if err := r.insights.setupWithManager(mgr, imagesChanged); err != nil {
			return err
		}
		b = b.WatchesRawSource(source.Channel(r.insights.registry, &handler.EnqueueRequestForObject{})).
			WatchesMetadata(&corev1.Namespace{}, coalescing{mapFn: r.registriesForNamespaceObject, delay: podTriggerDelay})
	}
	if r.Preview != nil {
		r.Preview.init()
		if err := mgr.Add(r.Preview); err != nil {
			return err
		}
		b = b.WatchesRawSource(source.Channel(r.Preview.events, &handler.EnqueueRequestForObject{}))
	}
	c, err := b.Build(r)
	if err != nil {
		return err
	}
	r.controller = c
	r.reports = newReportWatcher(mgr, c.Watch, r.registriesInReport)
	r.watches.add(func(gvk schema.GroupVersionKind) error {
		return c.Watch(source.Kind[client.Object](mgr.GetCache(), newPolicyObject(gvk), policyFanout{}))
	})
	kinds := &kyvernoKindsReconciler{discovery: r.Discovery, policies: r.watches, reports: r.reports}
	return kinds.setupWithManager(mgr)
}

func newPolicyObject(gvk schema.GroupVersionKind) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u
}

// sharedPolicyChanged maps a change to one of Signet's shared policies (drift, Kyverno's
// status, deletion) to the pass over the shared policies.
func sharedPolicyChanged(_ context.Context, o client.Object) []reconcile.Request {
	if o.GetLabels()[render.LabelManagedBy] != managedByValue {
		return nil
	}
	if _, shared := o.GetLabels()[render.LabelShard]; !shared {
		return nil
	}
	return []reconcile.Request{sharedRequest}
}

// registriesForSecret maps a key Secret to the TrustedRegistries that reference it.
func (r *TrustedRegistryReconciler) registriesForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	if o.GetNamespace() != r.TrustNamespace {
		return nil
	}
	list := &trustv1alpha1.TrustedRegistryList{}
	if err := r.Client.List(ctx, list, client.MatchingFields{secretNameIndex: o.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "listing TrustedRegistries for a Secret", "secret", o.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, tr := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: tr.Name}})
	}
	return reqs
}

// registryFromLabel maps a generated object (policy or key ring) to its TrustedRegistry.
func registryFromLabel(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[render.LabelRegistry]
	if name == "" || o.GetLabels()[render.LabelManagedBy] != managedByValue {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: name}}}
}

// allRegistries maps a change that concerns every TrustedRegistry (Kyverno's CRDs) to all.
func (r *TrustedRegistryReconciler) allRegistries(ctx context.Context, _ client.Object) []reconcile.Request {
	list := &trustv1alpha1.TrustedRegistryList{}
	if err := r.Client.List(ctx, list); err != nil {
		log.FromContext(ctx).Error(err, "listing TrustedRegistries after a Kyverno CRD change")
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, tr := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: tr.Name}})
	}
	return reqs
}

// peersOf maps a TrustedRegistry to every other one (per-registry layout: their policies'
// registry restrictions include it).
func (r *TrustedRegistryReconciler) peersOf(ctx context.Context, o client.Object) []reconcile.Request {
	list := &trustv1alpha1.TrustedRegistryList{}
	if err := r.Client.List(ctx, list); err != nil {
		log.FromContext(ctx).Error(err, "listing TrustedRegistries for a changed one")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, tr := range list.Items {
		if tr.Name != o.GetName() {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: tr.Name}})
		}
	}
	return reqs
}
