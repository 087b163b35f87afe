package controllers

import (
	"context"
	"sort"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
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

func (policyFanout) add(ctx context.Context, reqs []reconcile.Request, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	for _, r := range reqs {
		q.Add(r)
	}
}

func (h policyFanout) Create(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(ctx, registriesForPolicy(ctx, e.Object), q)
}

func (h policyFanout) Delete(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(ctx, registriesForPolicy(ctx, e.Object), q)
}

func (h policyFanout) Generic(ctx context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(ctx, registriesForPolicy(ctx, e.Object), q)
}

func (h policyFanout) Update(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(ctx, registriesForPolicyUpdate(ctx, e.ObjectOld, e.ObjectNew), q)
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
