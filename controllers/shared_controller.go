package controllers

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/kyverno"
)

// SharedPolicyReconciler keeps the shared policies (docs/architecture.md, "The shared
// layout", "Controllers"): it renders them from the recorded inputs of every TrustedRegistry and
// writes those that differ. It has one work-queue key and one worker, so its writes are
// serialised and a burst of triggers coalesces into one pass.
type SharedPolicyReconciler struct {
	// Client reads from the manager's cache and writes to the apiserver.
	Client client.Client
	// TrustNamespace holds the key rings whose recorded inputs are rendered.
	TrustNamespace string
	// Discovery tells which Kyverno kinds are served.
	Discovery *kyverno.Discovery
	// Recorder emits drift Events on the registries of a reverted policy; may be nil.
	Recorder recorder.EventRecorder

	writer  policyWriter
	watches *policyWatches
	// rendered and renders are read by the TrustedRegistry controller too (recover.go):
	// the inputs of the last pass, and the memo of which recorded inputs render.
	rendered renderedInputs
	renders  renderChecks

	// proposals are the records TrustedRegistry reconciles decided on (records.go);
	// PerRegistryRecords: the per-registry layout, whose registries keep a ConfigMap each.
	proposals          *recordProposals
	PerRegistryRecords bool

	errMu sync.Mutex
	err   string
	// registriesBusy tells whether TrustedRegistry reconciles are running; deferredSince is
	// when the pending pass started waiting for them (one worker: no lock).
	registriesBusy func() bool
	deferredSince  time.Time
	// lastCycle is the duration of the last pass, from its first deferral (cycle)
	lastCycle atomic.Int64
}

// sharedRequest is the one work-queue key of the shared-policy controller.
var sharedRequest = reconcile.Request{NamespacedName: types.NamespacedName{Name: "shared-policies"}}

func toShared(context.Context, client.Object) []reconcile.Request {
	return []reconcile.Request{sharedRequest}
}

// Reconcile runs one pass over the shared policies (shared.go). While TrustedRegistry
// reconciles are running (a burst of new inputs) it waits, up to maxSharedDefer: one pass
// then takes all their inputs and writes each shared policy once, instead of once per
// input.
func (r *SharedPolicyReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	if r.registriesBusy != nil && r.registriesBusy() {
		if r.deferredSince.IsZero() {
			r.deferredSince = time.Now()
		}
		if time.Since(r.deferredSince) < maxSharedDefer {
			return ctrl.Result{RequeueAfter: sharedDeferStep}, nil
		}
	}
	start := r.deferredSince
	if start.IsZero() {
		start = time.Now()
	}
	r.deferredSince = time.Time{}
	res, err := r.reconcileShared(ctx)
	r.lastCycle.Store(int64(time.Since(start)))
	return res, err
}

// cycle is how long the last pass took, with its wait for running reconciles: a burst of
// a thousand new registries makes each pass longer (pending.go).
func (r *SharedPolicyReconciler) cycle() time.Duration {
	if r == nil {
		return 0
	}
	return time.Duration(r.lastCycle.Load())
}

// How long a pass waits for running TrustedRegistry reconciles: in steps, and at most.
const (
	sharedDeferStep = 50 * time.Millisecond
	maxSharedDefer  = 2 * time.Second
)

// SetupWithManager registers the controller. It is triggered by a changed key ring (a
// recorded input), a TrustedRegistry going away, a change to a shared policy (drift,
// Kyverno's status) and Kyverno's CRDs; the policy kinds are watched once served
// (watches.go).
func (r *SharedPolicyReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) (controller.Controller, error) {
	r.writer.Client = r.Client
	opts.MaxConcurrentReconciles = 1
	if opts.RateLimiter == nil {
		opts.RateLimiter = retryRateLimiter()
	}
	// Only a registry going away, or getting its finalizer (a registry enters the shared
	// policies only with it: recover.go, branchInput), changes the shared policies
	// directly: every other change reaches them through its recorded input (the key-ring
	// ConfigMap).
	goingAway := predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !e.ObjectNew.GetDeletionTimestamp().IsZero() ||
				(!controllerutil.ContainsFinalizer(e.ObjectOld, Finalizer) && controllerutil.ContainsFinalizer(e.ObjectNew, Finalizer))
		},
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("sharedpolicies").
		WithOptions(opts).
		Watches(&trustv1alpha1.TrustedRegistry{}, handler.EnqueueRequestsFromMapFunc(toShared), builder.WithPredicates(goingAway)).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(toShared))
	if r.proposals != nil && r.proposals.trigger != nil {
		// a TrustedRegistry reconcile proposed a new record (records.go)
		b = b.WatchesRawSource(source.Channel(r.proposals.trigger, handler.EnqueueRequestsFromMapFunc(toShared)))
	}
	// While Kyverno was gone each pass failed and backed off, and no recorded input changes
	// on a reinstall: only this brings the policies back at once (faults_test.go,
	// TestKyvernoReinstall).
	return watchKyvernoCRDs(b, r.Discovery, toShared).Build(r)
}

// setErr remembers the outcome of the last pass over the shared policies that could not
// render, for the status of the registries waiting on it.
func (r *SharedPolicyReconciler) setErr(err error) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if err == nil {
		r.err = ""
		return
	}
	r.err = err.Error()
}

// lastErr is why the last pass failed ("" when it did not, or in the per-registry layout).
func (r *SharedPolicyReconciler) lastErr() string {
	if r == nil {
		return ""
	}
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.err
}
