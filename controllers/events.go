package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
)

// emitEvents records the Events of one reconcile's transition (transitionEvents).
func (r *TrustedRegistryReconciler) emitEvents(registry *trustv1alpha1.TrustedRegistry,
	before, after *trustv1alpha1.TrustedRegistryStatus, p plan, outcome applyOutcome) {
	if r.Recorder == nil {
		return
	}
	for _, e := range transitionEvents(before, after, p, outcome) {
		if e.key != nil && r.onSharedSecret(registry, e) {
			continue
		}
		r.Recorder.Eventf(registry, e.related, e.eventType, e.reason, e.action, "%s", e.note)
	}
}

// onSharedSecret tells a key's rotation step once on its Secret, instead of on every
// registry, when other registries trust the same Secret: rotating a key that a thousand
// registries share then writes one Event, not a thousand (docs/performance.md). Each
// registry's status.keys still says when the key leaves it. False: the Event goes on the
// registry (its own Secret, or a key no longer in its spec).
func (r *TrustedRegistryReconciler) onSharedSecret(registry *trustv1alpha1.TrustedRegistry, e transitionEvent) bool {
	secretName := ""
	for _, k := range registry.Spec.Keys {
		if k.Name == e.key.Name {
			secretName = k.SecretRef.Name
		}
	}
	if secretName == "" {
		return false
	}
	ctx := context.Background()
	list := &trustv1alpha1.TrustedRegistryList{}
	// (from the cache, without copies: only the count is read)
	if err := r.Client.List(ctx, list, client.MatchingFields{secretNameIndex: secretName}, client.UnsafeDisableDeepCopy); err != nil || len(list.Items) < 2 {
		return false
	}
	secret := &corev1.Secret{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.TrustNamespace, Name: secretName}, secret); err != nil {
		return false
	}
	// (by Secret, step and key: registries that see the Secret at different versions, as
	// in a burst of rotations, tell one step once)
	if r.keyEvents.first(string(secret.UID) + "/" + e.reason + "/" + e.key.Fingerprint) {
		r.Recorder.Eventf(secret, nil, e.eventType, e.reason, e.action, "%s", secretKeyNote(e, secretName, len(list.Items)))
	}
	return true
}

// secretKeyNote is the message of a key's rotation step on its shared Secret.
func secretKeyNote(e transitionEvent, secret string, registries int) string {
	if e.reason == "KeyRetired" {
		return fmt.Sprintf("key %s (%s) from Secret %s retired: no longer accepted (%d TrustedRegistries use this Secret; each leaves it at the end of its own rotation overlap)",
			e.key.Name, e.key.Fingerprint, secret, registries)
	}
	return fmt.Sprintf("key %s (%s) is no longer in Secret %s and is retiring: the %d TrustedRegistries that use this Secret still accept it until their rotation overlap ends (status.keys of each says when; the first: %s)",
		e.key.Name, e.key.Fingerprint, secret, registries, e.key.RetiresAt.UTC().Format(time.RFC3339))
}

// onceSet remembers which shared-Secret Events were sent (bounded: emptied when full, so
// at worst an Event is sent again).
type onceSet struct {
	mu sync.Mutex
	m  map[string]bool
}

const maxOnceSet = 4096

func (o *onceSet) first(key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m[key] {
		return false
	}
	if o.m == nil || len(o.m) >= maxOnceSet {
		o.m = map[string]bool{}
	}
	o.m[key] = true
	return true
}

// transitionEvent is one Event on a TrustedRegistry.
type transitionEvent struct {
	eventType, reason, action, note string
	// related is the drifted policy as it was (nil for the others): each revert is then
	// an Event of its own rather than a repeat of the first one in a series.
	related runtime.Object
	// key is the key of a rotation step (KeyRetiring, KeyRetired; nil for the others).
	key *trustv1alpha1.KeyStatus
}

// transitionEvents is pure: the Events for transitions only (Ready flipping after a first
// convergence or to a failure, a policy written, a key starting to retire or retired)
// between the status before and after, given
// the plan and what its execution did. Messages name keys by name and fingerprint, never by
// material.
func transitionEvents(before, after *trustv1alpha1.TrustedRegistryStatus, p plan, outcome applyOutcome) []transitionEvent {
	var out []transitionEvent
	emit := func(eventType, reason, action, note string) {
		out = append(out, transitionEvent{eventType: eventType, reason: reason, action: action, note: note})
	}
	oldReady := meta.FindStatusCondition(before.Conditions, trustv1alpha1.ConditionReady)
	newReady := meta.FindStatusCondition(after.Conditions, trustv1alpha1.ConditionReady)
	readyChanged := newReady != nil && (oldReady == nil || oldReady.Status != newReady.Status || oldReady.Reason != newReady.Reason)
	// A policy written in the reconcile that makes the registry Ready is told by the Ready
	// event (its message names the policy): one event per transition.
	if outcome.applied && p.policy != nil && (!readyChanged || newReady.Status != "True") {
		emit(corev1.EventTypeNormal, "PolicyApplied", "Apply", fmt.Sprintf("applied %s %s", p.policy.GetKind(), p.policy.GetName()))
	}
	if p.recovered != "" && (p.persistRing != nil || p.propose != nil) {
		// (the action tells a rebuilt record from restored keys: Events of one action on
		// one object fold into a series that keeps the first message)
		action := "Rebuild"
		if p.restored {
			action = "RestoreKeys"
		}
		emit(corev1.EventTypeWarning, "KeyRingRecovered", action, p.recovered)
	}
	if len(outcome.drift) > 0 && p.policy != nil {
		out = append(out, transitionEvent{eventType: corev1.EventTypeWarning, reason: ReasonDriftReverted, action: "Revert",
			note: driftNote(p.policy, outcome.drift), related: outcome.drifted})
	}
	switch {
	case outcome.deletedOld != "" && p.policy != nil:
		emit(corev1.EventTypeNormal, "EngineSwitched", "Delete", fmt.Sprintf("deleted the previous %s after applying %s", outcome.deletedOld, p.policy.GetKind()))
	case outcome.deletedOld != "":
		emit(corev1.EventTypeNormal, "MovedToSharedPolicy", "Delete", fmt.Sprintf("deleted %s: the registry is enforced by a shared policy now", outcome.deletedOld))
	}
	// Waiting for the shared policy is a step of every change, over in well under a second:
	// no event for it (the Ready event that follows tells the outcome).
	if readyChanged && newReady.Reason == trustv1alpha1.ReasonSharedPolicyPending {
		readyChanged = false
	}
	// A registry's first convergence is told by its conditions (kubectl describe shows
	// them), not by an Event: creating many registries costs one write less each
	// (docs/performance.md). Failures are still Warning Events.
	if readyChanged && newReady.Status == "True" && firstConvergence(before) {
		readyChanged = false
	}
	if readyChanged {
		eventType := corev1.EventTypeNormal
		if newReady.Status != "True" {
			eventType = corev1.EventTypeWarning
		}
		emit(eventType, newReady.Reason, "Reconcile", newReady.Message)
	}

	if after.Reports != nil && after.Reports.Fail > 0 && (before.Reports == nil || before.Reports.Fail == 0) {
		emit(corev1.EventTypeWarning, trustv1alpha1.ReasonViolationsFound, "Report",
			fmt.Sprintf("Kyverno reports %d failing results for %s", after.Reports.Fail, p.policyName()))
	}

	type id struct{ name, fp string }
	was := map[id]trustv1alpha1.KeyStatus{}
	for _, k := range before.Keys {
		was[id{k.Name, k.Fingerprint}] = k
	}
	now := map[id]bool{}
	for _, k := range after.Keys {
		now[id{k.Name, k.Fingerprint}] = true
		prev, existed := was[id{k.Name, k.Fingerprint}]
		if k.State == trustv1alpha1.KeyRetiring && (!existed || prev.State != trustv1alpha1.KeyRetiring) && k.RetiresAt != nil {
			out = append(out, transitionEvent{eventType: corev1.EventTypeNormal, reason: "KeyRetiring", action: "Rotate", key: k.DeepCopy(),
				note: fmt.Sprintf("key %s (%s) is retiring: still accepted until %s", k.Name, k.Fingerprint, k.RetiresAt.UTC().Format(time.RFC3339))})
		}
	}
	// (in the order of before.Keys: the Events of one reconcile are deterministic)
	for _, k := range before.Keys {
		if !now[id{k.Name, k.Fingerprint}] && k.State == trustv1alpha1.KeyRetiring {
			out = append(out, transitionEvent{eventType: corev1.EventTypeNormal, reason: "KeyRetired", action: "Rotate", key: k.DeepCopy(),
				note: fmt.Sprintf("key %s (%s) retired: no longer accepted", k.Name, k.Fingerprint)})
		}
	}
	return out
}

// firstConvergence tells whether a status is of a registry that has not converged yet: no
// Ready condition, or only a pending one with nothing in force before it.
func firstConvergence(st *trustv1alpha1.TrustedRegistryStatus) bool {
	ready := meta.FindStatusCondition(st.Conditions, trustv1alpha1.ConditionReady)
	return ready == nil || (ready.Reason == trustv1alpha1.ReasonSharedPolicyPending && st.Policy == nil)
}

// ReasonDriftReverted is the reason of the Event telling that a generated policy had been
// changed by someone else and was put back.
const ReasonDriftReverted = "DriftReverted"

func driftNote(policy *unstructured.Unstructured, drift []string) string {
	return fmt.Sprintf("%s %s had been changed by someone else; reverted to what Signet renders, removing or restoring: %s",
		policy.GetKind(), policy.GetName(), strings.Join(drift, ", "))
}
