package controllers

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
)

func finalizerTestRegistry(mutate ...func(*trustv1alpha1.TrustedRegistry)) *trustv1alpha1.TrustedRegistry {
	tr := &trustv1alpha1.TrustedRegistry{ObjectMeta: metav1.ObjectMeta{
		Name: "team-a", UID: "uid-a", Generation: 3, ResourceVersion: "100",
		Finalizers: []string{Finalizer},
	}}
	for _, m := range mutate {
		m(tr)
	}
	return tr
}

func withoutFinalizers(tr *trustv1alpha1.TrustedRegistry) { tr.Finalizers = nil }

// TestRegistryChangedPredicate: the registry watch reconciles on a spec change and when
// Signet's finalizer is missing from a registry not being deleted, and on nothing else of
// metadata or status (finalizer_watch.go).
func TestRegistryChangedPredicate(t *testing.T) {
	deleting := func(tr *trustv1alpha1.TrustedRegistry) {
		now := metav1.Now()
		tr.DeletionTimestamp = &now
	}
	cases := []struct {
		name     string
		old, new *trustv1alpha1.TrustedRegistry
		want     bool
	}{
		{"finalizer removed by hand", finalizerTestRegistry(), finalizerTestRegistry(withoutFinalizers), true},
		{"finalizer removed, another kept", finalizerTestRegistry(func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Finalizers = append(tr.Finalizers, "example.com/other")
		}), finalizerTestRegistry(func(tr *trustv1alpha1.TrustedRegistry) { tr.Finalizers = []string{"example.com/other"} }), true},
		{"finalizer missing in both (a relist skipped the removal)", finalizerTestRegistry(withoutFinalizers), finalizerTestRegistry(withoutFinalizers, func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Labels = map[string]string{"team": "a"}
		}), true},
		{"Signet's own finalizer patch of a new registry", finalizerTestRegistry(withoutFinalizers), finalizerTestRegistry(), false},
		{"another finalizer added", finalizerTestRegistry(), finalizerTestRegistry(func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Finalizers = append(tr.Finalizers, "example.com/other")
		}), false},
		{"another finalizer removed", finalizerTestRegistry(func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Finalizers = append(tr.Finalizers, "example.com/other")
		}), finalizerTestRegistry(), false},
		{"label churn", finalizerTestRegistry(), finalizerTestRegistry(func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Labels = map[string]string{"team": "a"}
		}), false},
		{"annotation churn", finalizerTestRegistry(), finalizerTestRegistry(func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Annotations = map[string]string{"note": "x"}
		}), false},
		{"status write", finalizerTestRegistry(), finalizerTestRegistry(func(tr *trustv1alpha1.TrustedRegistry) {
			tr.ResourceVersion = "101"
			tr.Status.ObservedGeneration = 3
		}), false},
		{"resync (same object)", finalizerTestRegistry(), finalizerTestRegistry(), false},
		{"deletion starts", finalizerTestRegistry(), finalizerTestRegistry(deleting), false},
		{"finalize releases a registry with another finalizer", finalizerTestRegistry(deleting, func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Finalizers = append(tr.Finalizers, "example.com/other")
		}), finalizerTestRegistry(deleting, func(tr *trustv1alpha1.TrustedRegistry) { tr.Finalizers = []string{"example.com/other"} }), false},
		{"spec change", finalizerTestRegistry(), finalizerTestRegistry(func(tr *trustv1alpha1.TrustedRegistry) { tr.Generation = 4 }), true},
	}
	p := registryChanged()
	for _, c := range cases {
		if got := p.Update(event.UpdateEvent{ObjectOld: c.old, ObjectNew: c.new}); got != c.want {
			t.Errorf("%s: reconcile %v, want %v", c.name, got, c.want)
		}
	}
	// creations and deletions pass as before (the generation predicate lets them through)
	if !p.Create(event.CreateEvent{Object: finalizerTestRegistry(withoutFinalizers)}) || !p.Delete(event.DeleteEvent{Object: finalizerTestRegistry()}) {
		t.Error("a creation or deletion does not pass")
	}
	// the finalizer predicate alone adds nothing but updates
	m := finalizerMissing()
	if m.Create(event.CreateEvent{Object: finalizerTestRegistry(withoutFinalizers)}) || m.Delete(event.DeleteEvent{Object: finalizerTestRegistry(withoutFinalizers)}) ||
		m.Generic(event.GenericEvent{Object: finalizerTestRegistry(withoutFinalizers)}) {
		t.Error("finalizerMissing passes an event other than an update")
	}
}

// TestForgetFinalizerPatches: an entry of finalizerPatches goes once the cache shows the
// registry's finalizer, and when the registry is deleted, without any reconcile; it stays
// while the cache still shows the registry without it (finalizer.go, startFinalizer).
func TestForgetFinalizerPatches(t *testing.T) {
	r := &TrustedRegistryReconciler{}
	h := r.forgetFinalizerPatches()
	ctx := context.Background()
	has := func(uid types.UID) bool { _, ok := r.finalizerPatches.Load(uid); return ok }
	for _, uid := range []types.UID{"uid-a", "uid-b", "uid-c"} {
		r.finalizerPatches.Store(uid, patchedFinalizer{on: "100", wrote: "101"})
	}
	reg := func(uid types.UID, mutate ...func(*trustv1alpha1.TrustedRegistry)) *trustv1alpha1.TrustedRegistry {
		return finalizerTestRegistry(append([]func(*trustv1alpha1.TrustedRegistry){func(tr *trustv1alpha1.TrustedRegistry) { tr.UID = uid }}, mutate...)...)
	}

	// an update the cache sees before the patch (a label): the entry is still needed
	h.Update(ctx, event.UpdateEvent{ObjectOld: reg("uid-a", withoutFinalizers), ObjectNew: reg("uid-a", withoutFinalizers)}, nil)
	if !has("uid-a") {
		t.Error("uid-a's entry went while the cache shows no finalizer")
	}
	// the cache shows the patch
	h.Update(ctx, event.UpdateEvent{ObjectOld: reg("uid-a", withoutFinalizers), ObjectNew: reg("uid-a")}, nil)
	if has("uid-a") {
		t.Error("uid-a's entry stayed after the cache showed its finalizer")
	}
	// deleted (never reconciled again)
	h.Delete(ctx, event.DeleteEvent{Object: reg("uid-b", withoutFinalizers)}, nil)
	if has("uid-b") {
		t.Error("uid-b's entry stayed after the registry was deleted")
	}
	if !has("uid-c") {
		t.Error("uid-c's entry went with events of other registries")
	}
}
