package controllers

import (
	"context"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/signet-operator/signet/internal/kyverno"
)

// kyvernoCRDRechecks are the delays after a Kyverno CRD change at which the registries and
// the shared policies are reconciled again. The apiserver serves a new CRD's kind a little
// after the CRD's events, and a reinstalled Kyverno sends no event once it is: without
// these, a pass that ran too early would wait out its retry backoff before recreating the
// policies (faults_test.go, TestKyvernoReinstall).
var kyvernoCRDRechecks = []time.Duration{2 * time.Second, 5 * time.Second}

// kyvernoCRDHandler reacts to Kyverno being installed, upgraded or removed: the served
// kinds are discovered again, and what mapFn maps the change to is enqueued now and at each
// of kyvernoCRDRechecks.
type kyvernoCRDHandler struct {
	discovery *kyverno.Discovery
	mapFn     handler.MapFunc
}

var _ handler.EventHandler = kyvernoCRDHandler{}

func (h kyvernoCRDHandler) enqueue(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.discovery.Invalidate()
	for _, req := range h.mapFn(ctx, nil) {
		q.Add(req)
		for _, d := range kyvernoCRDRechecks {
			q.AddAfter(req, d)
		}
	}
}

func (h kyvernoCRDHandler) Create(ctx context.Context, _ event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.enqueue(ctx, q)
}

func (h kyvernoCRDHandler) Update(ctx context.Context, _ event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.enqueue(ctx, q)
}

func (h kyvernoCRDHandler) Delete(ctx context.Context, _ event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.enqueue(ctx, q)
}

func (h kyvernoCRDHandler) Generic(ctx context.Context, _ event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.enqueue(ctx, q)
}

// watchKyvernoCRDs adds to b a watch of Kyverno's CRDs (metadata only) that enqueues what
// mapFn maps a change to. CRD resyncs change nothing: only real changes count.
func watchKyvernoCRDs(b *builder.Builder, d *kyverno.Discovery, mapFn handler.MapFunc) *builder.Builder {
	relevant := predicate.NewPredicateFuncs(func(o client.Object) bool { return kyverno.IsRelevantCRD(o.GetName()) })
	return b.WatchesMetadata(&apiextensionsv1.CustomResourceDefinition{}, kyvernoCRDHandler{discovery: d, mapFn: mapFn},
		builder.WithPredicates(relevant, predicate.ResourceVersionChangedPredicate{}))
}
