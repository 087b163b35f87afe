package controllers

import (
	"sync"
	"time"
)

// pendingGrace is how long a registry whose recorded input waits for the shared policies
// keeps its previous status before it reports SharedPolicyPending. The pass over the
// shared policies normally follows within this (it waits at most maxSharedDefer for a
// burst of reconciles, then writes), and its write of the shared policy triggers the
// reconcile that writes the final status: one status write per convergence instead of a
// pending one and a final one (docs/performance.md). Until then the status is the previous
// one, with its observedGeneration, so it never claims the new spec is in force.
const pendingGrace = maxSharedDefer + time.Second

// maxPendingGrace bounds the grace when passes are slow (a burst of a thousand new
// registries: each pass renders and writes more, and a registry can miss one): the grace
// is pendingGrace plus twice the last pass's duration, at most this. A pass that fails is
// told at once (deferPendingStatus), whatever the grace.
const maxPendingGrace = 30 * time.Second

// graceFor is the grace given the last pass's duration.
func graceFor(lastCycle time.Duration) time.Duration {
	return min(pendingGrace+2*lastCycle, maxPendingGrace)
}

// pendingWaits remembers, per registry, since when its current recorded input has been
// waiting for the shared policies without a status write.
type pendingWaits struct {
	mu sync.Mutex
	m  map[string]pendingWait // by registry name
	// grace overrides pendingGrace when positive (TrustedRegistryReconciler.PendingGrace)
	grace time.Duration
}

type pendingWait struct {
	inputHash string
	since     time.Time
}

// hold tells whether the pending status of the registry's input can still wait, and how
// long at most. The wait starts at the first call for this input.
func (w *pendingWaits) hold(registry string, inputHash string, now time.Time, lastCycle time.Duration) (bool, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string]pendingWait{}
	}
	p, ok := w.m[registry]
	if !ok || p.inputHash != inputHash {
		p = pendingWait{inputHash: inputHash, since: now}
		w.m[registry] = p
	}
	grace := graceFor(lastCycle)
	if w.grace > 0 {
		grace = w.grace
	}
	if left := grace - now.Sub(p.since); left > 0 {
		return true, left
	}
	return false, 0
}

// done forgets the registry's wait (its input is in force, its status was written, or it
// is gone).
func (w *pendingWaits) done(registry string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, registry)
}

// deferPendingStatus tells whether the status write of this reconcile can wait for the
// shared pass (pure apart from the waits): only a pure "waiting for the shared policy"
// step, with nothing else to report. Anything that went wrong (a failed write, a failed
// shared pass, an unrenderable spec) or was done (a rebuilt record, a deleted policy, a
// reverted drift: their Events are of this reconcile) is written at once.
func deferPendingStatus(obs *observed, p plan, outcome applyOutcome) bool {
	return p.input != nil && !p.inForce(obs) && outcome.err == nil && p.terminal == nil &&
		obs.sharedErr == "" && p.recovered == "" && outcome.deletedOld == "" && !outcome.applied &&
		len(outcome.drift) == 0 && p.blocked == ""
}
