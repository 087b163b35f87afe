package controllers

import (
	"time"

	"golang.org/x/time/rate"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// maxRetryDelay caps the per-item retry backoff. controller-runtime's default doubles up
// to 1000 s: after an apiserver outage of a minute or two, a registry (or the pass over
// the shared policies) would wait a quarter of an hour before its next try, and a key
// revocation with it. Fail-closed enforcement must come back within seconds once the API
// does (faults_test.go checks convergence after injected faults stop).
const maxRetryDelay = 10 * time.Second

// retryRateLimiter is controller-runtime's default rate limiter with the backoff capped at
// maxRetryDelay: per-item exponential from 5 ms, and 10 retries/s overall (burst 100).
func retryRateLimiter() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](5*time.Millisecond, maxRetryDelay),
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)
}
