// Package controllers holds Signet's controllers (docs/architecture.md, "Controllers"): the
// TrustedRegistry controller, the shared-policy controller and kyvernokinds, which starts
// their watches of Kyverno's kinds once served.
//
// A TrustedRegistry reconcile follows one shape: get → observe (every read, from the cache,
// into one struct) → compute (pure: key ring, desired policy, the plan of every write and
// delete) → execute (server-side apply under one field owner, only when the desired object
// differs from what is there) → one status write (controllers/status), skipped when nothing
// changed. Security policy fails closed: on any error the last applied policy stays as it is.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/kyverno"
	"github.com/signet-operator/signet/internal/render"
	"github.com/signet-operator/signet/internal/reports"
)

// conflictRetry is how soon a reconcile that lost an optimistic-concurrency race reads again.
const conflictRetry = 250 * time.Millisecond

// DefaultTrustNamespace is where key Secrets live when neither --trust-namespace nor the
// operator's own namespace is known.
const DefaultTrustNamespace = "signet-system"

// TrustedRegistryReconciler keeps the Kyverno policy, the key ring and the status of each
// TrustedRegistry in sync.
type TrustedRegistryReconciler struct {
	// Client reads from the manager's cache and writes to the apiserver.
	Client client.Client
	// TrustNamespace holds the key Secrets and the persisted key rings.
	TrustNamespace string
	// Clock is the time source of key rotation (a fake clock in tests).
	Clock clock.PassiveClock
	// Discovery tells which Kyverno kinds are served.
	Discovery *kyverno.Discovery
	// Recorder emits Events on state transitions; may be nil.
	Recorder recorder.EventRecorder
	// CountBlocked counts Kyverno's denials of the generated policy (PolicyViolation events
	// in namespace default) into status.reports.blocked.
	CountBlocked bool
	// PodInsights watches Pods (images only) to report, in status.coverage, running images
	// that no pattern matches.
	PodInsights bool
	// Preview, when set, verifies running images against the keys that remain while keys
	// are retiring (status.rotationPreview, condition RotationSafe). Needs PodInsights.
	Preview *RotationPreview
	// Layout is LayoutShared (the default when empty) or LayoutPerRegistry.
	Layout Layout
	// PendingGrace, when positive, replaces the 3 s a registry waiting for the shared pass
	// keeps its previous status (pending.go). Tests that count writes on a loaded machine
	// lengthen it, so a slow pass does not add a pending status write.
	PendingGrace time.Duration

	controller controller.Controller
	reports    *reportWatcher
	insights   *podInsights // the podinsights controller (podinsights.go; nil: Pod insights off)
	writer     policyWriter
	watches    *policyWatches
	placements placementCache
	pending    pendingWaits
	// shared is the shared-policy controller: observe reads its state (the last pass's
	// error, its rendered inputs and render checks).
	shared *SharedPolicyReconciler
	// running counts the reconciles in progress
	running atomic.Int32
	// finalizerPatches: the finalizer patches the cache may not show yet (finalizer.go)
	finalizerPatches sync.Map
	// keyEvents: the rotation steps told on a shared Secret (events.go)
	keyEvents onceSet
}

func (r *TrustedRegistryReconciler) sharedLayout() bool { return r.Layout != LayoutPerRegistry }

// +kubebuilder:rbac:groups=trust.signet.dev,resources=trustedregistries,verbs=get;list;watch
// +kubebuilder:rbac:groups=trust.signet.dev,resources=trustedregistries/status,verbs=get;update;patch
// Policies are read everywhere (the informer lists and watches all of them), but written
// only under the shared policies' names (render.SharedPolicyNames; test/packaging checks
// the list). Signet creates policies only with server-side apply, a PATCH naming the
// object, which the apiserver authorizes as "create" of that name, so create is limited
// too. The per-registry layout's policies (signet-<registry>) have unbounded names: that
// layout needs config/rbac/per-registry-layout (README.md).
// +kubebuilder:rbac:groups=policies.kyverno.io,resources=imagevalidatingpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=policies.kyverno.io,resources=imagevalidatingpolicies,verbs=create;update;patch;delete,resourceNames=signet.ivp.audit;signet.ivp.audit.2;signet.ivp.audit.3;signet.ivp.audit.4;signet.ivp.audit.5;signet.ivp.audit.6;signet.ivp.audit.7;signet.ivp.audit.8;signet.ivp.enforce;signet.ivp.enforce.2;signet.ivp.enforce.3;signet.ivp.enforce.4;signet.ivp.enforce.5;signet.ivp.enforce.6;signet.ivp.enforce.7;signet.ivp.enforce.8;signet.ivp.enforce-pin;signet.ivp.enforce-pin.2;signet.ivp.enforce-pin.3;signet.ivp.enforce-pin.4;signet.ivp.enforce-pin.5;signet.ivp.enforce-pin.6;signet.ivp.enforce-pin.7;signet.ivp.enforce-pin.8
// +kubebuilder:rbac:groups=kyverno.io,resources=clusterpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=kyverno.io,resources=clusterpolicies,verbs=create;update;patch;delete,resourceNames=signet.cpol.all;signet.cpol.all.2;signet.cpol.all.3;signet.cpol.all.4;signet.cpol.all.5;signet.cpol.all.6;signet.cpol.all.7;signet.cpol.all.8
// +kubebuilder:rbac:groups=wgpolicyk8s.io,resources=policyreports,verbs=get;list;watch
// +kubebuilder:rbac:groups=openreports.io,resources=reports,verbs=get;list;watch
// +kubebuilder:rbac:groups=core,resources=pods;namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=core,resources=events,verbs=get;list;watch
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch
// +kubebuilder:rbac:groups=core,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=core,namespace=signet-system,resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=core,namespace=signet-system,resources=configmaps,verbs=get;list;watch;create;update;patch;delete

// observed is everything one reconcile reads, gathered before anything is computed.
type observed struct {
	registry *trustv1alpha1.TrustedRegistry
	// now is the time of this reconcile (key rotation, windows of the blocked counts)
	now    time.Time
	served kyverno.Served
	// resolved keys in spec order; keyErrs holds the failures, by key name.
	resolved []keys.Desired
	keyErrs  []keyError
	// trustRoots is the spec.sigstore trust material (trustroots.go; nil without it)
	trustRoots *render.TrustRoots
	// ring is the persisted key ring (empty when none was stored yet); ringStored tells
	// whether a record was read, recordedInput is its input as stored.
	ring          keys.Ring
	ringStored    bool
	recordedInput string
	// live holds, per served engine kind, the policy that enforces the registry now: its own
	// policy (per-registry layout) or the shared policy holding its branch (shared layout).
	live map[trustv1alpha1.Engine]*unstructured.Unstructured
	// shared is where the registry's branch is in the shared policies, by engine kind;
	// legacy holds policies of its own left from the per-registry layout.
	shared map[trustv1alpha1.Engine]*sharedPlacement
	legacy []*unstructured.Unstructured
	// storedInput is the recorded last good input of the shared layout ("" when none);
	// sharedErr is why the last pass over the shared policies failed ("" when it did not).
	storedInput string
	sharedErr   string
	// peers are the other TrustedRegistries (per-registry layout only): the registry
	// restriction of its policy is the union with theirs (README.md, "Composition").
	peers []*trustv1alpha1.TrustedRegistry
	// recordRepair says why the key-ring record must be written again ("" when it is
	// fine); ring and storedInput then hold what was rebuilt from status and the policy.
	recordRepair string
	// storedRing is the ring as stored; restoredKeys names the keys in force that the
	// stored ring lacked and ring has again (from status.keys and the policy).
	storedRing   keys.Ring
	restoredKeys []string
	// reports summarises Kyverno's report results for the policy (nil: no report API).
	reports *trustv1alpha1.ReportSummary
	// blocked counts recent denials (nil: not counted); blockedRequeue is when the oldest
	// counted denial leaves the window.
	blocked        *trustv1alpha1.BlockedSummary
	blockedRequeue time.Duration
	// pods are the Pods in the guarded namespaces (images only; nil: Pod insights off).
	pods []*corev1.Pod
	// coverage lists running images outside the patterns (nil: Pod insights off).
	coverage *trustv1alpha1.CoverageSummary
	// preview is the newest rotation preview (previewOn: the feature is enabled).
	preview        *trustv1alpha1.RotationPreview
	previewPending bool
	previewOn      bool
}

type keyError struct {
	name string
	err  error
}

// Reconcile brings one TrustedRegistry to its desired state: get, observe (reads only),
// compute (pure: the plan of every write and delete), execute, one status write
// (docs/architecture.md, "Controllers").
func (r *TrustedRegistryReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	r.running.Add(1) // the shared-policy pass waits for running reconciles (shared_controller.go)
	defer r.running.Add(-1)
	registry := &trustv1alpha1.TrustedRegistry{}
	if err := r.Client.Get(ctx, req.NamespacedName, registry); err != nil {
		// Deleted: owner references let the garbage collector remove the policy and ring;
		// the shared-policy controller takes its branch out of the shared policies.
		if apierrors.IsNotFound(err) && r.reports != nil {
			r.reports.forget(req.Name)
		}
		r.pending.done(req.Name)
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !registry.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, registry) // finalizer.go
	}
	// (shared layout: the patch runs alongside the key-ring write; finalizer.go)
	fin := r.startFinalizer(ctx, registry)
	defer fin.wait()
	if !r.sharedLayout() {
		if err := fin.result(registry); err != nil {
			return finalizerFailed(err)
		}
	}
	obs, err := r.observe(ctx, registry)
	if errors.Is(err, errKindNotWatched) {
		return ctrl.Result{RequeueAfter: conflictRetry}, nil // kyvernokinds is starting the watch
	} else if err != nil {
		return ctrl.Result{}, err
	}
	plan := compute(obs, r.TrustNamespace, r.sharedLayout())
	outcome := r.execute(ctx, plan)
	if err := fin.result(registry); err != nil {
		return finalizerFailed(err)
	}
	if apierrors.IsConflict(outcome.err) {
		// Someone wrote the object between our read and write: read again, quietly.
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	return r.finish(ctx, obs, plan, outcome, computeStatus(obs, plan, outcome.err))
}

// execute performs the plan's writes in order (key ring, policy, deletions); each step runs
// only when those before it succeeded, so enforcement never has a gap.
func (r *TrustedRegistryReconciler) execute(ctx context.Context, p plan) applyOutcome {
	var out applyOutcome
	if p.propose != nil {
		// the pass over the shared policies writes it, before any policy holds its input
		r.shared.proposals.propose(p.propose.registry, p.propose.entry)
	}
	if p.persistRing != nil {
		if err := r.writer.apply(ctx, p.persistRing); err != nil {
			out.err = fmt.Errorf("persisting key ring: %w", err)
			return out
		}
	}
	if p.policy != nil {
		changed, drift, err := r.writer.applyPolicy(ctx, p.policy, p.live)
		if err != nil {
			out.err = err
			return out
		}
		if changed {
			out.applied = true
			out.drift, out.drifted = drift, p.live
		}
	}
	for _, d := range p.deletes {
		if err := r.Client.Delete(ctx, d.obj); client.IgnoreNotFound(err) != nil {
			out.err = fmt.Errorf("deleting %s: %w", d.what, err)
		} else {
			out.deletedOld = d.name
		}
	}
	return out
}

// finish emits the Events of the transition, writes the status once (when it changed) and
// says when to come back.
func (r *TrustedRegistryReconciler) finish(ctx context.Context, obs *observed, plan plan, outcome applyOutcome, status trustv1alpha1.TrustedRegistryStatus) (ctrl.Result, error) {
	registry := obs.registry
	requeue := minPositive(plan.requeueAfter, obs.blockedRequeue)
	changed := !equality.Semantic.DeepEqual(registry.Status, status)
	if plan.input == nil || plan.inForce(obs) {
		r.pending.done(registry.Name)
	} else if changed && deferPendingStatus(obs, plan, outcome) {
		// The shared pass usually places the branch within pendingGrace: write the status
		// (and its Events) once, then (pending.go).
		if ok, wait := r.pending.hold(registry.Name, plan.inputHash, time.Now(), r.shared.cycle()); ok {
			return ctrl.Result{RequeueAfter: minPositive(requeue, wait)}, nil
		}
	}
	if changed && r.reports != nil && onlyReportsChanged(registry.Status, status) {
		// Report results churn with every Pod; coalesce such writes per registry.
		if ok, wait := r.reports.coalesce(registry.Name, time.Now()); !ok {
			return ctrl.Result{RequeueAfter: minPositive(requeue, wait)}, nil
		}
	}
	r.emitEvents(registry, &registry.Status, &status, plan, outcome)
	if changed {
		if r.reports != nil {
			r.reports.wrote(registry.Name, time.Now())
		}
		updated := registry.DeepCopy()
		updated.Status = status
		if err := r.Client.Status().Update(ctx, updated); err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{RequeueAfter: conflictRetry}, nil
			}
			return ctrl.Result{}, fmt.Errorf("updating status: %w", err)
		}
	}

	switch {
	case outcome.err != nil:
		return ctrl.Result{}, outcome.err
	case plan.terminal != nil:
		log.FromContext(ctx).V(1).Info("spec cannot be rendered", "reason", plan.terminal.Error())
		return ctrl.Result{}, reconcile.TerminalError(plan.terminal)
	}
	if plan.input != nil && !plan.inForce(obs) {
		// the shared policy's watch event normally comes first; this is for a pass over
		// the shared policies that fails (its error shows in the status)
		requeue = minPositive(requeue, sharedPendingRecheck)
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// sharedPendingRecheck is how often a registry waiting for the shared policies looks again.
const sharedPendingRecheck = 10 * time.Second

// observe performs every read of one reconcile.
func (r *TrustedRegistryReconciler) observe(ctx context.Context, registry *trustv1alpha1.TrustedRegistry) (*observed, error) {
	obs := &observed{registry: registry, now: r.Clock.Now(), live: map[trustv1alpha1.Engine]*unstructured.Unstructured{},
		shared: map[trustv1alpha1.Engine]*sharedPlacement{}}

	served, err := r.Discovery.Served()
	if err != nil {
		return nil, fmt.Errorf("discovering Kyverno kinds: %w", err)
	}
	obs.served = served

	if !r.sharedLayout() {
		list := &trustv1alpha1.TrustedRegistryList{}
		if err := r.Client.List(ctx, list); err != nil {
			return nil, fmt.Errorf("listing the other TrustedRegistries: %w", err)
		}
		for i := range list.Items {
			// one being deleted is left out: its images stop being allowed first
			if p := &list.Items[i]; p.Name != registry.Name && p.DeletionTimestamp.IsZero() {
				obs.peers = append(obs.peers, p)
			}
		}
	}

	for _, k := range registry.Spec.Keys {
		secret := &corev1.Secret{}
		key := types.NamespacedName{Namespace: r.TrustNamespace, Name: k.SecretRef.Name}
		switch err := r.Client.Get(ctx, key, secret); {
		case apierrors.IsNotFound(err):
			obs.keyErrs = append(obs.keyErrs, keyError{name: k.Name, err: &keys.Error{
				Reason: trustv1alpha1.ReasonSecretNotFound,
				Msg:    fmt.Sprintf("Secret %s/%s not found", r.TrustNamespace, k.SecretRef.Name),
			}})
			continue
		case err != nil:
			return nil, fmt.Errorf("reading Secret %s: %w", key, err)
		}
		pk, err := keys.PublicKeyFromSecretData(secret.Data, k.SecretRef.Key)
		if err != nil {
			obs.keyErrs = append(obs.keyErrs, keyError{name: k.Name, err: fmt.Errorf("key Secret %s/%s: %w", r.TrustNamespace, k.SecretRef.Name, err)})
			continue
		}
		obs.resolved = append(obs.resolved, keys.Desired{Name: k.Name, Key: pk})
	}
	if err := r.observeTrustRoots(ctx, registry, obs); err != nil {
		return nil, err
	}

	// A missing or damaged record is rebuilt from status.keys and the policy in force once
	// those are read (recoverRecord): it never drops a key or a branch (recover.go).
	data, recordWhy, err := r.readRecord(ctx, registry)
	if err != nil {
		return nil, err
	}
	if data != nil {
		ring, err := keys.UnmarshalRing([]byte(data[ringDataKey]))
		if err != nil {
			recordWhy = "its key ring was unreadable (" + err.Error() + ")"
		} else {
			obs.ring, obs.storedRing, obs.ringStored = ring, ring, true
			obs.storedInput = data[inputDataKey]
			obs.recordedInput = obs.storedInput
			if r.sharedLayout() && obs.storedInput != "" {
				in, err := decodeInput(obs.storedInput)
				if err == nil && (in.Registry.Name != registry.Name || in.Registry.UID != registry.UID) {
					err = fmt.Errorf("it is another registry's")
				}
				if err == nil {
					err = r.shared.renders.check(obs.storedInput, in)
				}
				if err != nil {
					recordWhy = "its recorded input was unusable (" + err.Error() + ")"
				}
			}
		}
	}

	for _, engine := range []trustv1alpha1.Engine{trustv1alpha1.EngineImageValidatingPolicy, trustv1alpha1.EngineClusterPolicy} {
		gvk := render.GVK(engine)
		if !served.Has(gvk) {
			continue
		}
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(gvk)
		switch err := r.Client.Get(ctx, types.NamespacedName{Name: render.PolicyName(registry.Name)}, live); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("reading %s %s: %w", gvk.Kind, render.PolicyName(registry.Name), err)
		default:
			if live.GetLabels()[render.LabelRegistry] == registry.Name {
				if r.sharedLayout() {
					obs.legacy = append(obs.legacy, live)
				} else {
					obs.live[engine] = live
				}
			}
		}
	}
	if r.sharedLayout() {
		obs.sharedErr = r.shared.lastErr()
		if err := r.observePlacement(ctx, obs); err != nil {
			return nil, err
		}
		for engine, p := range obs.shared {
			obs.live[engine] = p.policy
		}
		// Until its branch is in a shared policy, a policy of its own still enforces it.
		for _, l := range obs.legacy {
			for engine := range map[trustv1alpha1.Engine]bool{trustv1alpha1.EngineImageValidatingPolicy: true, trustv1alpha1.EngineClusterPolicy: true} {
				if render.GVK(engine).Kind == l.GetKind() && obs.live[engine] == nil {
					obs.live[engine] = l
				}
			}
		}
	}

	r.recoverRecord(obs, recordWhy, obs.now)

	var guarded []string
	if r.PodInsights || len(obs.shared) > 0 {
		if guarded, err = r.guardedNamespaces(ctx, registry); err != nil {
			return nil, err
		}
	}
	var lookup podLookup
	if r.PodInsights {
		// coverage from the per-namespace aggregates the registries share (podinsights.go)
		aggs, err := r.podAggregates(ctx, guarded)
		if err != nil {
			return nil, err
		}
		lookup = namespacesLookup(aggs)
		obs.coverage = coverageOf(r.registryMatcher(registry), orderedAggregates(aggs, guarded))
		if r.Preview != nil {
			pods, err := r.guardedPods(ctx, guarded)
			if err != nil {
				return nil, err
			}
			obs.pods = pods
			// the preview is of the ring this reconcile decides on (nextRing is pure)
			ring, _ := nextRing(obs)
			obs.previewOn = true
			if obs.preview, obs.previewPending, err = r.observePreview(ctx, registry, ring, pods); err != nil {
				return nil, err
			}
		}
	}
	// Which policies enforce the registry, and how to tell its results and denials from
	// those of other registries sharing them.
	policies := []string{render.PolicyName(registry.Name)}
	var match reports.ResultMatcher
	sharedNames := map[string]bool{}
	for _, sp := range obs.shared {
		sharedNames[sp.policy.GetName()] = true
	}
	if len(sharedNames) > 0 {
		gset := map[string]bool{}
		for _, n := range guarded {
			gset[n] = true
		}
		for n := range sharedNames {
			policies = append(policies, n)
		}
		sort.Strings(policies[1:])
		shared := sharedResultMatcher(registry, sharedNames, gset, lookup)
		own := policies[0]
		match = func(res *reports.Result) bool { return res.Policy == own || shared(res) }
	}
	if r.reports != nil {
		summary, err := r.reports.observeReports(ctx, served, policies, match)
		if err != nil {
			return nil, err
		}
		obs.reports = summary
	}
	if r.CountBlocked {
		var total *trustv1alpha1.BlockedSummary
		var requeue time.Duration
		// its own policy's denials, and those of any shared policy (of either engine: an
		// engine switch keeps the count) that name it
		sources := [][2]string{{policies[0], ""}}
		if r.sharedLayout() {
			sources = append(sources, [2]string{sharedEventsKey, registry.Name})
		}
		for _, src := range sources {
			blocked, rq, err := r.observeBlocked(ctx, src[0], src[1], obs.now)
			if err != nil {
				return nil, err
			}
			total = mergeBlocked(total, blocked)
			requeue = minPositive(requeue, rq)
		}
		obs.blocked, obs.blockedRequeue = total, requeue
	}
	return obs, nil
}

// plan is the pure outcome of compute: what to write and what to report.
type plan struct {
	ring        keys.Ring
	persistRing *corev1ac.ConfigMapApplyConfiguration // nil: stored ring is up to date (per-registry layout)
	// propose is the new record of the shared layout (nil: the stored one is up to date),
	// for the pass over the shared policies to write (records.go).
	propose *proposal
	engine  trustv1alpha1.Engine       // "" when no engine is usable
	policy  *unstructured.Unstructured // nil: apply nothing (keep what is there)
	live    *unstructured.Unstructured // the policy of engine in force (compared with policy)
	// deletes run after the writes above succeeded: policies of the registry's own that
	// the shared policy replaced, or that the previous engine left.
	deletes []deletion
	// input is, in the shared layout, the input recorded for the shared policies (nil:
	// keep the recorded one); inputHash is render.InputHash of it.
	input        *render.Input
	inputHash    string
	requeueAfter time.Duration
	// recovered says what was rebuilt of a lost or damaged key-ring record (for an Event);
	// restored: keys the record lacked were put back.
	recovered string
	restored  bool

	// Why no policy is applied, for status.
	blocked      string // condition reason
	blockedMsg   string
	terminal     error // spec can't be rendered: do not retry until it changes
	kyvernoReady bool
}

// deletion is one delete of a plan.
type deletion struct {
	obj  *unstructured.Unstructured
	what string // for the error
	name string // for the Event
}

type applyOutcome struct {
	err        error // the first write that failed (the later ones did not run)
	applied    bool
	deletedOld string
	// drift lists what others changed in the policy and the write removed; drifted is the
	// policy as it was.
	drift   []string
	drifted *unstructured.Unstructured
}

// resolveEngine picks the policy kind from spec.policy.engine and what is served.
func resolveEngine(want trustv1alpha1.Engine, served kyverno.Served) (trustv1alpha1.Engine, string, string) {
	ivp := served.Has(kyverno.ImageValidatingPolicy)
	cp := served.Has(kyverno.ClusterPolicy)
	if !ivp && !cp {
		return "", trustv1alpha1.ReasonKyvernoNotInstalled,
			"Kyverno is not installed: neither ImageValidatingPolicy (policies.kyverno.io/v1) nor ClusterPolicy (kyverno.io/v1) is served; the policy is applied as soon as Kyverno's CRDs appear"
	}
	switch want {
	case trustv1alpha1.EngineImageValidatingPolicy:
		if !ivp {
			return "", trustv1alpha1.ReasonEngineNotServed,
				"spec.policy.engine is ImageValidatingPolicy but policies.kyverno.io/v1 is not served (Kyverno >= 1.18 is needed); set engine Auto or ClusterPolicy, or upgrade Kyverno"
		}
		return want, "", ""
	case trustv1alpha1.EngineClusterPolicy:
		if !cp {
			return "", trustv1alpha1.ReasonEngineNotServed,
				"spec.policy.engine is ClusterPolicy but kyverno.io/v1 ClusterPolicy is not served"
		}
		return want, "", ""
	}
	if ivp {
		return trustv1alpha1.EngineImageValidatingPolicy, "", ""
	}
	return trustv1alpha1.EngineClusterPolicy, "", ""
}

// compute is pure: from what was observed (and its time), it decides the key ring, the
// policy to apply (if any) and when to come back.
func compute(obs *observed, trustNamespace string, shared bool) plan {
	p := plan{ring: obs.ring}
	registry := obs.registry

	switch {
	case obs.recordRepair != "" && len(obs.ring.Entries) > 0:
		p.recovered = fmt.Sprintf("%s: %s; rebuilt from status.keys and the policy in force (%s)",
			recordLocation(registry.Name, trustNamespace, shared), obs.recordRepair, obs.ring.Summary())
	case len(obs.restoredKeys) > 0:
		p.recovered = fmt.Sprintf("%s lacked keys still in force: %s; put back from status.keys and the policy in force",
			recordLocation(registry.Name, trustNamespace, shared), strings.Join(obs.restoredKeys, ", "))
		p.restored = true
	}
	if len(obs.keyErrs) > 0 {
		// Fail closed: the ring stays as stored (no key starts retiring because its Secret
		// is unreadable) and the last applied policy stays in force; a lost record is
		// written again as rebuilt.
		p.blocked, p.blockedMsg = keyErrorsSummary(obs.keyErrs)
		if engine, live := anyLive(obs); live != nil {
			p.engine = engine
		}
		if p.recovered != "" {
			input := ""
			if shared {
				input = obs.storedInput
			}
			p.persist(registry, trustNamespace, input, shared)
		}
		return p
	}

	p.ring, p.requeueAfter = nextRing(obs)
	// The recorded input stays as it is until a new one renders; in the per-registry
	// layout there is none (a recorded one is removed, so its branch leaves the shared
	// policies once the registry's own policy is in place).
	input := ""
	if shared {
		input = obs.storedInput
	}
	if !obs.ringStored || obs.recordRepair != "" || !ringEqual(obs.storedRing, p.ring) {
		p.persist(registry, trustNamespace, input, shared)
	}

	engine, reason, msg := resolveEngine(registry.Spec.Policy.Engine, obs.served)
	if engine == "" {
		p.blocked, p.blockedMsg = reason, msg
		if e, live := anyLive(obs); live != nil {
			p.engine = e // keep the last good policy, whatever its kind
		}
		return p
	}
	p.engine = engine
	p.kyvernoReady = true

	in := render.Input{Registry: registry, Keys: renderKeys(p.ring), Engine: engine, Peers: obs.peers, TrustRoots: obs.trustRoots}
	var policy *unstructured.Unstructured
	var err error
	if shared {
		err = render.CheckShared(in)
	} else {
		policy, err = render.Render(in)
	}
	if err != nil {
		// Either an InvalidError (the spec asks for something no policy can enforce) or a
		// bug; both are terminal until the spec changes, and both keep the last policy.
		p.blocked, p.blockedMsg = trustv1alpha1.ReasonInvalidSpec, err.Error()
		p.terminal = err
		if live := obs.live[engine]; live == nil {
			if e, l := anyLive(obs); l != nil {
				p.engine = e
			}
		}
		return p
	}
	if shared {
		stored := obs.recordedInput
		enc, err := encodeInput(in)
		if err == nil {
			p.inputHash, err = render.InputHash(in)
		}
		if err != nil {
			p.blocked, p.blockedMsg, p.terminal = trustv1alpha1.ReasonInvalidSpec, err.Error(), err
			return p
		}
		p.input = &in
		if enc != stored {
			p.persist(registry, trustNamespace, enc, shared)
		}
		if p.inForce(obs) {
			// The branch is in force in a shared policy: a policy of its own from the
			// per-registry layout is redundant now.
			for _, l := range obs.legacy {
				what := l.GetKind() + " " + l.GetName()
				p.deletes = append(p.deletes, deletion{obj: l, what: what + " (replaced by the shared policy)", name: what})
			}
		}
		return p
	}
	p.policy, p.live = policy, obs.live[engine]
	for _, e := range []trustv1alpha1.Engine{trustv1alpha1.EngineImageValidatingPolicy, trustv1alpha1.EngineClusterPolicy} {
		// Engine switched: once the new policy is in place, the old one can go.
		if old := obs.live[e]; e != engine && old != nil {
			p.deletes = append(p.deletes, deletion{obj: old, what: "the " + old.GetKind() + " left over from the previous engine", name: old.GetKind()})
		}
	}
	if obs.storedInput != "" && obs.live[engine] != nil && obs.live[engine].GetAnnotations()[render.AnnotationHash] == policy.GetAnnotations()[render.AnnotationHash] {
		p.persistRing = ringConfigMap(registry, trustNamespace, p.ring, "")
	}
	return p
}

// nextRing is the key ring a reconcile decides on (pure): the stored one moved on by
// keys.Next, or kept as stored while a key cannot be read (fail closed: no key starts
// retiring because its Secret is unreadable); and when to look again.
func nextRing(obs *observed) (keys.Ring, time.Duration) {
	if len(obs.keyErrs) > 0 {
		return obs.ring, 0
	}
	overlap := 168 * time.Hour
	if o := obs.registry.Spec.Rotation.Overlap; o != nil {
		overlap = o.Duration
	}
	return keys.Next(obs.ring, obs.resolved, overlap, obs.now)
}

// inForce tells whether the shared policy of the resolved engine holds the registry's
// current input.
func (p plan) inForce(obs *observed) bool {
	sp := obs.shared[p.engine]
	return p.input != nil && sp != nil && sp.entry.hash == p.inputHash
}

func anyLive(obs *observed) (trustv1alpha1.Engine, *unstructured.Unstructured) {
	for _, engine := range []trustv1alpha1.Engine{trustv1alpha1.EngineImageValidatingPolicy, trustv1alpha1.EngineClusterPolicy} {
		if live := obs.live[engine]; live != nil {
			return engine, live
		}
	}
	return "", nil
}

func renderKeys(ring keys.Ring) []render.Key {
	out := make([]render.Key, 0, len(ring.Entries))
	for _, e := range ring.Entries {
		out = append(out, render.Key{Name: e.Name, Fingerprint: e.Fingerprint, PEM: e.PEM, State: e.State})
	}
	return out
}

// keyErrorsSummary turns key failures into one condition reason and a deterministic
// message naming every failing key.
func keyErrorsSummary(errs []keyError) (string, string) {
	sorted := append([]keyError(nil), errs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	reason := keys.ReasonOf(sorted[0].err)
	if reason == "" {
		reason = trustv1alpha1.ReasonInvalidPublicKey
	}
	parts := make([]string, 0, len(sorted))
	for _, e := range sorted {
		parts = append(parts, fmt.Sprintf("key %q: %s", e.name, e.err.Error()))
	}
	return reason, strings.Join(parts, "; ")
}

// onlyReportsChanged tells whether two statuses differ only in their report summary.
func onlyReportsChanged(before, after trustv1alpha1.TrustedRegistryStatus) bool {
	a := after.DeepCopy()
	a.Reports = before.Reports
	a.Coverage = before.Coverage
	a.Conditions = before.Conditions
	return equality.Semantic.DeepEqual(before, *a) && conditionsEqualIgnoring(before.Conditions, after.Conditions, trustv1alpha1.ConditionAuditViolations)
}

func minPositive(a, b time.Duration) time.Duration {
	if a <= 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

// policyName names the policy the plan applies or keeps, for messages.
func (p plan) policyName() string {
	if p.policy != nil {
		return p.policy.GetKind() + " " + p.policy.GetName()
	}
	return "the policy"
}
