package controllers

import (
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// policyWatches starts watching a Kyverno policy kind, for every controller that looks at
// policies, the first time the kind is found served: Kyverno may be installed after Signet
// starts, and a watch on a kind that is not served cannot start.
type policyWatches struct {
	mu      sync.Mutex
	done    map[schema.GroupVersionKind]int // how many targets watch the kind
	targets []func(schema.GroupVersionKind) error
}

// add registers a controller's way of watching a policy kind.
func (w *policyWatches) add(watch func(schema.GroupVersionKind) error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.targets = append(w.targets, watch)
}

// ensure watches gvk in every registered controller, once. A nil receiver watches nothing
// (a reconciler set up without a manager).
func (w *policyWatches) ensure(gvk schema.GroupVersionKind) error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done == nil {
		w.done = map[schema.GroupVersionKind]int{}
	}
	// targets in order; after a failure the next call goes on from the one that failed
	for i := w.done[gvk]; i < len(w.targets); i++ {
		if err := w.targets[i](gvk); err != nil {
			return fmt.Errorf("watching %s: %w", gvk.Kind, err)
		}
		w.done[gvk] = i + 1
	}
	return nil
}
