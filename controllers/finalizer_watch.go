package controllers

import (
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
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
