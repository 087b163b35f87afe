package controllers

import (
	"context"
	"sort"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/signet-operator/signet/internal/render"
)

// policyFanout maps a change to a generated policy to the TrustedRegistries that must look
// at it again. A registry's status reads, of a shared policy, only its existence, Kyverno's
// status of it and the registry's own entry (input hash and branch): an update that changes
// neither the status nor a registry's entry concerns no registry. Without this, each write
// of a shared policy (one registry's rotation) reconciled every registry in it, and the
// rotated registry's reconcile queued behind them (docs/performance.md).
type policyFanout struct{}

var _ handler.EventHandler = policyFanout{}

// fanoutPriority puts the registries whose input a shared policy has just taken ahead of
// the others in the work queue (controller-runtime's priority queue; new items have
// priority 0): each is one status write away from converged. Without it, while many
// registries were created at once, those status writes waited behind every new
// registry's finalizer and key-ring writes instead of running alongside them. A registry
// whose branch only moved (another one was inserted before it) keeps priority 0: its
// status can wait, and several moves then cost one write (docs/performance.md).
const fanoutPriority = 1

// add queues reqs; those for which urgent says so with fanoutPriority.
func (policyFanout) add(ctx context.Context, reqs []reconcile.Request, q workqueue.TypedRateLimitingInterface[reconcile.Request], urgent func(name string) bool) {
	pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request])
	for _, r := range reqs {
		if ok && urgent(r.Name) {
			pq.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(fanoutPriority)}, r)
			continue
		}
		q.Add(r)
	}
}

func everyRegistry(string) bool { return true }
func noRegistry(string) bool    { return false }

func (h policyFanout) Create(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	// (a new shared policy: registries placed in it, or moved from another one)
	h.add(ctx, registriesForPolicy(ctx, e.Object), q, everyRegistry)
}

func (h policyFanout) Delete(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(ctx, registriesForPolicy(ctx, e.Object), q, noRegistry)
}

func (h policyFanout) Generic(ctx context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(ctx, registriesForPolicy(ctx, e.Object), q, noRegistry)
}

func (h policyFanout) Update(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(ctx, registriesForPolicyUpdate(ctx, e.ObjectOld, e.ObjectNew), q, newInputs(e.ObjectOld, e.ObjectNew))
}

// newInputs tells, of a shared policy's update, which registries it took a new input of
// (an entry added or its input hash changed).
func newInputs(oldObj, newObj any) func(name string) bool {
	o, ok1 := oldObj.(*unstructured.Unstructured)
	n, ok2 := newObj.(*unstructured.Unstructured)
	if !ok1 || !ok2 || o == nil || n == nil {
		return noRegistry
	}
	before, after := registriesOf(o), registriesOf(n)
	return func(name string) bool {
		a, ok := after[name]
		if !ok {
			return false
		}
		b, ok := before[name]
		return !ok || b.hash != a.hash
	}
}

// registriesForPolicyUpdate is registriesForPolicy for an update: of a shared policy whose
// labels and Kyverno status are unchanged, only the registries whose entry was added,
// removed or changed; otherwise those of the old and the new object.
func registriesForPolicyUpdate(ctx context.Context, oldObj, newObj any) []reconcile.Request {
	o, ok1 := oldObj.(*unstructured.Unstructured)
	n, ok2 := newObj.(*unstructured.Unstructured)
	if !ok1 || !ok2 || o == nil || n == nil || !isShared(o) || !isShared(n) ||
		!equality.Semantic.DeepEqual(o.GetLabels(), n.GetLabels()) ||
		!equality.Semantic.DeepEqual(o.Object["status"], n.Object["status"]) {
		seen := map[types.NamespacedName]bool{}
		var out []reconcile.Request
		for _, obj := range []any{oldObj, newObj} {
			u, ok := obj.(*unstructured.Unstructured)
			if !ok || u == nil {
				continue
			}
			for _, r := range registriesForPolicy(ctx, u) {
				if !seen[r.NamespacedName] {
					seen[r.NamespacedName] = true
					out = append(out, r)
				}
			}
		}
		return out
	}
	if n.GetLabels()[render.LabelManagedBy] != managedByValue {
		return nil
	}
	before, after := registriesOf(o), registriesOf(n)
	var names []string
	for name, e := range after {
		if b, ok := before[name]; !ok || b != e {
			names = append(names, name)
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	out := make([]reconcile.Request, 0, len(names))
	for _, name := range names {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: name}})
	}
	return out
}

func isShared(u *unstructured.Unstructured) bool {
	_, ok := u.GetLabels()[render.LabelShard]
	return ok
}
