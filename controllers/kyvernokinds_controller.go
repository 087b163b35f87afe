package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/signet-operator/signet/internal/kyverno"
)

// kyvernoKindsReconciler starts the watches of Kyverno's policy and report kinds once they
// are served: at start, and after every change to Kyverno's CRDs (Kyverno may be installed
// after Signet starts, and a watch on a kind that is not served cannot start). The other
// controllers only read; a reconcile that finds a report API served but not watched yet
// comes back shortly (errKindNotWatched).
type kyvernoKindsReconciler struct {
	discovery *kyverno.Discovery
	policies  *policyWatches
	reports   *reportWatcher // nil: reports are not read
}

var kindsRequest = reconcile.Request{NamespacedName: types.NamespacedName{Name: "kyverno-kinds"}}

// errKindNotWatched says that a served kind's watch is being started.
var errKindNotWatched = errors.New("served but not watched yet")

func (k *kyvernoKindsReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	served, err := k.discovery.Served()
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("discovering Kyverno kinds: %w", err)
	}
	for _, gvk := range []schema.GroupVersionKind{kyverno.ImageValidatingPolicy, kyverno.ClusterPolicy} {
		if !served.Has(gvk) {
			continue
		}
		if err := k.policies.ensure(gvk); err != nil {
			return ctrl.Result{}, err
		}
	}
	if k.reports != nil {
		if err := k.reports.ensure(ctx, served); err != nil {
			return ctrl.Result{}, err
		}
	}
	// Looked at again now and then: a kind the apiserver served only after the CRD
	// rechecks (kyvernocrd.go) is watched within kindsRecheck (the answer is cached, so
	// this costs no request while it is fresh).
	return ctrl.Result{RequeueAfter: kindsRecheck}, nil
}

const kindsRecheck = 30 * time.Second

func (k *kyvernoKindsReconciler) setupWithManager(mgr ctrl.Manager) error {
	toKinds := func(context.Context, client.Object) []reconcile.Request { return []reconcile.Request{kindsRequest} }
	atStart := source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		q.Add(kindsRequest)
		return nil
	})
	b := ctrl.NewControllerManagedBy(mgr).
		Named("kyvernokinds").
		WithOptions(controller.Options{MaxConcurrentReconciles: 1, RateLimiter: retryRateLimiter()}).
		WatchesRawSource(atStart)
	return watchKyvernoCRDs(b, k.discovery, toKinds).Complete(k)
}
