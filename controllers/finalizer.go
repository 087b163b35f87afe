package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
)

// Finalizer holds a deleted TrustedRegistry until Signet has taken it out of Kyverno: its
// branch has left every shared policy (emptied ones are deleted), its per-registry policy
// and its key ring are gone. The shared policies have no owner the garbage collector could
// follow, so without it a registry deleted while the operator is down, or just before the
// operator is uninstalled, would stay enforced by nobody. With it, `kubectl delete
// trustedregistries --all --wait` returns only once nothing of Signet is left in force
// (README.md, "Uninstall"). If the operator is gone, deletion waits (fail closed: the
// policies keep enforcing) until someone removes the finalizer by hand.
const Finalizer = "trust.signet.dev/policy-cleanup"

// Adding and removing the finalizer is a patch of the TrustedRegistry itself (Kubernetes has
// no finalizers subresource for it); Signet patches metadata.finalizers and nothing else.
// +kubebuilder:rbac:groups=trust.signet.dev,resources=trustedregistries,verbs=patch

// finalizeRecheck is how often a registry being deleted looks whether its branch has left
// the shared policies (the pass starts at once; this only bounds the wait).
const finalizeRecheck = 500 * time.Millisecond

// ensureFinalizer adds the Finalizer to a registry that lacks it (written before any policy
// holds the registry, so that no branch can outlive its registry unnoticed).
func (r *TrustedRegistryReconciler) ensureFinalizer(ctx context.Context, tr *trustv1alpha1.TrustedRegistry) error {
	if controllerutil.ContainsFinalizer(tr, Finalizer) {
		return nil
	}
	orig := tr.DeepCopy()
	controllerutil.AddFinalizer(tr, Finalizer)
	// The optimistic lock keeps finalizers others add at the same time.
	if err := r.Client.Patch(ctx, tr, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("adding the finalizer %s: %w", Finalizer, err)
	}
	return nil
}

// startFinalizer adds the Finalizer to a registry that lacks it (nil when it has it).
//
// In the shared layout the patch runs while the reconcile reads and writes the key ring:
// two round trips at once instead of one after the other, on the path of every new
// registry. The ring's recorded input alone puts no branch in force: the pass over the
// shared policies leaves out a registry whose cached object lacks the finalizer unless a
// policy already holds it (recover.go, branchInput), and the finalizer's watch event
// starts the pass again (shared_controller.go). So no policy starts holding a registry
// before its finalizer is stored. In the per-registry layout the reconcile writes the
// registry's own policy: the patch goes first (the caller waits for result at once).
func (r *TrustedRegistryReconciler) startFinalizer(ctx context.Context, tr *trustv1alpha1.TrustedRegistry) *finalizerWrite {
	if controllerutil.ContainsFinalizer(tr, Finalizer) {
		r.finalizerPatches.Delete(tr.UID)
		return nil
	}
	if v, ok := r.finalizerPatches.Load(tr.UID); ok {
		if p := v.(patchedFinalizer); p.on == tr.ResourceVersion {
			// The cache has not seen this process's own patch yet (the key ring's watch
			// event can come first). The patch applied on exactly this version and changed
			// nothing else: the stored object is this one with the finalizer.
			controllerutil.AddFinalizer(tr, Finalizer)
			tr.ResourceVersion = p.wrote
			return nil
		}
		r.finalizerPatches.Delete(tr.UID)
	}
	// a copy: the patch decodes its response into it while tr is being read
	w := &finalizerWrite{done: make(chan struct{}), obj: tr.DeepCopy()}
	uid, on := tr.UID, tr.ResourceVersion
	go func() {
		defer close(w.done)
		if w.err = r.ensureFinalizer(ctx, w.obj); w.err == nil {
			r.finalizerPatches.Store(uid, patchedFinalizer{on: on, wrote: w.obj.ResourceVersion})
		}
	}()
	return w
}

// patchedFinalizer is the last finalizer patch of a registry (by UID): the resourceVersion
// it applied on (optimistic lock) and the one it wrote. An entry goes once a reconcile sees
// a newer version (the next one of a converging registry does), once the cache shows the
// finalizer, and when the registry is deleted (finalizer_watch.go).
type patchedFinalizer struct{ on, wrote string }

// finalizerWrite is a finalizer patch in flight.
type finalizerWrite struct {
	done chan struct{}
	obj  *trustv1alpha1.TrustedRegistry
	err  error
}

// wait waits for the patch to end (nil: there is none).
func (w *finalizerWrite) wait() {
	if w != nil {
		<-w.done
	}
}

// result waits for the patch and, when it succeeded, gives tr the finalizer and the
// resourceVersion it wrote (the status write is an optimistic-concurrency update).
func (w *finalizerWrite) result(tr *trustv1alpha1.TrustedRegistry) error {
	if w == nil {
		return nil
	}
	w.wait()
	if w.err == nil {
		tr.Finalizers, tr.ResourceVersion = w.obj.Finalizers, w.obj.ResourceVersion
	}
	return w.err
}

// finalizerFailed ends a reconcile whose finalizer patch failed: a conflict is read again
// soon, quietly; anything else is retried with backoff.
func finalizerFailed(err error) (ctrl.Result, error) {
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	return ctrl.Result{}, err
}

// finalize cleans up after a deleted registry and then releases it. Each step is checked
// against what is live, so an interrupted finalize simply runs again.
func (r *TrustedRegistryReconciler) finalize(ctx context.Context, tr *trustv1alpha1.TrustedRegistry) (ctrl.Result, error) {
	if r.reports != nil {
		r.reports.forget(tr.Name)
	}
	// (the deletion timestamp itself triggers the shared-policy controller, which leaves
	// registries being deleted out: recover.go)
	if !controllerutil.ContainsFinalizer(tr, Finalizer) {
		return ctrl.Result{}, nil
	}
	holding, err := r.policiesHolding(ctx, tr.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(holding) > 0 {
		// The pass over the shared policies (triggered above) leaves the registry out.
		log.FromContext(ctx).V(1).Info("deleted registry still in force, waiting", "policies", holding)
		return ctrl.Result{RequeueAfter: finalizeRecheck}, nil
	}
	// Its recorded input goes last: until now it was the fallback for its branch. The pass
	// takes its entry out of its shard after the policies (records.go).
	r.shared.proposals.forget(tr.Name)
	if held, err := r.shardHolds(ctx, tr.Name); err != nil {
		return ctrl.Result{}, err
	} else if held {
		return ctrl.Result{RequeueAfter: finalizeRecheck}, nil
	}
	ring := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: r.TrustNamespace, Name: ringConfigMapName(tr.Name)}}
	if err := r.Client.Delete(ctx, ring); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("deleting the key ring %s/%s: %w", ring.Namespace, ring.Name, err)
	}
	orig := tr.DeepCopy()
	controllerutil.RemoveFinalizer(tr, Finalizer)
	if err := r.Client.Patch(ctx, tr, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		if apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: conflictRetry}, nil
		}
		return ctrl.Result{}, fmt.Errorf("removing the finalizer %s: %w", Finalizer, err)
	}
	return ctrl.Result{}, nil
}

// policiesHolding lists the live Signet policies (of the served engines) that still enforce
// the registry: shared policies with its branch, and its own per-registry policy, which is
// deleted here (in the shared layout such a leftover is owned by the registry and left to
// the garbage collector: the default RBAC cannot delete policies by arbitrary names).
func (r *TrustedRegistryReconciler) policiesHolding(ctx context.Context, registry string) ([]string, error) {
	served, err := r.Discovery.Served()
	if err != nil {
		return nil, fmt.Errorf("discovering Kyverno kinds: %w", err)
	}
	var holding []string
	for _, engine := range []trustv1alpha1.Engine{trustv1alpha1.EngineImageValidatingPolicy, trustv1alpha1.EngineClusterPolicy} {
		gvk := render.GVK(engine)
		if !served.Has(gvk) {
			continue
		}
		if r.sharedLayout() {
			items, err := listShared(ctx, r.Client, engine)
			if err != nil {
				return nil, err
			}
			for _, p := range items {
				if _, ok := registriesOf(p)[registry]; ok {
					holding = append(holding, p.GetKind()+" "+p.GetName())
				}
			}
			continue
		}
		own := &unstructured.Unstructured{}
		own.SetGroupVersionKind(gvk)
		switch err := r.Client.Get(ctx, types.NamespacedName{Name: render.PolicyName(registry)}, own); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("reading %s %s: %w", gvk.Kind, render.PolicyName(registry), err)
		case own.GetLabels()[render.LabelRegistry] == registry:
			if err := r.Client.Delete(ctx, own); client.IgnoreNotFound(err) != nil {
				return nil, fmt.Errorf("deleting %s %s: %w", gvk.Kind, own.GetName(), err)
			}
		}
	}
	return holding, nil
}

// shardHolds tells whether a record shard still holds the registry's entry.
func (r *TrustedRegistryReconciler) shardHolds(ctx context.Context, registry string) (bool, error) {
	shard := &corev1.ConfigMap{}
	switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.TrustNamespace, Name: recordShardName(registry)}, shard); {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading the key-ring records: %w", err)
	default:
		_, ok := shard.Data[registry]
		return ok && isRecordShard(shard), nil
	}
}
