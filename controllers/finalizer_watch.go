package controllers

import (
	"context"

	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// registryChanged chooses the registry updates that need a reconcile: a spec change (new
// generation) or Signet's finalizer missing.
func registryChanged() predicate.Predicate {
	return predicate.Or(predicate.GenerationChangedPredicate{}, finalizerMissing())
}

// finalizerMissing passes the updates of a registry that is not being deleted and lacks
// Signet's Finalizer: typically someone removed it by hand, a metadata-only edit that the
// generation predicate drops. Without a reconcile it would come back only at the next
// resync, and a deletion in between would skip the cleanup (finalizer.go). It does not look
// at the old object, so a removal the informer saw only as part of a later state (after a
// relist) is caught too. Nothing else passes: not the finalizer appearing (Signet's own
// patch of a new registry), not label, annotation or status churn of a registry that has
// it, not a registry being deleted (finalize removes the finalizer itself).
func finalizerMissing() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectNew != nil && e.ObjectNew.GetDeletionTimestamp().IsZero() &&
				!controllerutil.ContainsFinalizer(e.ObjectNew, Finalizer)
		},
	}
}

// forgetFinalizerPatches drops a registry's entry in finalizerPatches (finalizer.go) once
// the cache shows its finalizer, and when the registry is gone. A reconcile drops the entry
// too when it sees a newer version, but a registry may never be reconciled again: then the
// entry stayed for the life of the process, one per registry ever created. It enqueues
// nothing.
func (r *TrustedRegistryReconciler) forgetFinalizerPatches() handler.Funcs {
	return handler.Funcs{
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, _ workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if e.ObjectNew != nil && controllerutil.ContainsFinalizer(e.ObjectNew, Finalizer) {
				r.finalizerPatches.Delete(e.ObjectNew.GetUID())
			}
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, _ workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if e.Object != nil {
				r.finalizerPatches.Delete(e.Object.GetUID())
			}
		},
	}
}
