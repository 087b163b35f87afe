package controllers

import (
	"context"
	"time"

	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Delays for the triggers that only feed informational status (coverage, blocked counts).
// A burst of Namespace or event changes then costs one reconcile per TrustedRegistry per
// window (Pods go through the per-namespace batches of podinsights.go),
// instead of one per change for every registry guarding the namespace: the work queue keeps
// a single pending entry per registry.
const (
	podTriggerDelay   = 5 * time.Second
	eventTriggerDelay = 2 * time.Second
)

// coalescing enqueues the requests mapped from an object after delay.
type coalescing struct {
	mapFn  handler.MapFunc
	delay  time.Duration
	filter func(e event.UpdateEvent) bool // nil: every update counts
}

var _ handler.EventHandler = coalescing{}

func (c coalescing) add(ctx context.Context, o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	for _, req := range c.mapFn(ctx, o) {
		q.AddAfter(req, c.delay)
	}
}

func (c coalescing) Create(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	c.add(ctx, e.Object, q)
}

func (c coalescing) Update(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if c.filter != nil && !c.filter(e) {
		return
	}
	c.add(ctx, e.ObjectNew, q)
}

func (c coalescing) Delete(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	c.add(ctx, e.Object, q)
}

func (c coalescing) Generic(ctx context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	c.add(ctx, e.Object, q)
}
