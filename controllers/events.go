package controllers

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
)

// emitEvents records Events for transitions only: Ready flipping, a policy written, a key
// starting to retire or retired. Messages name keys by name and fingerprint, never by
// material.
func (r *TrustedRegistryReconciler) emitEvents(registry *trustv1alpha1.TrustedRegistry,
	before, after *trustv1alpha1.TrustedRegistryStatus, p plan, outcome applyOutcome) {
	if r.Recorder == nil {
		return
	}
	emit := func(eventType, reason, action, note string) {
		r.Recorder.Eventf(registry, nil, eventType, reason, action, "%s", note)
	}
	oldReady := meta.FindStatusCondition(before.Conditions, trustv1alpha1.ConditionReady)
	newReady := meta.FindStatusCondition(after.Conditions, trustv1alpha1.ConditionReady)
	readyChanged := newReady != nil && (oldReady == nil || oldReady.Status != newReady.Status || oldReady.Reason != newReady.Reason)
	// A policy written in the reconcile that makes the registry Ready is told by the Ready
	// event (its message names the policy): one event per transition.
	if outcome.applied && p.policy != nil && (!readyChanged || newReady.Status != "True") {
		emit(corev1.EventTypeNormal, "PolicyApplied", "Apply", fmt.Sprintf("applied %s %s", p.policy.GetKind(), p.policy.GetName()))
	}
	if p.recovered != "" && p.persistRing != nil {
		// (the action tells a rebuilt record from restored keys: Events of one action on
		// one object fold into a series that keeps the first message)
		action := "Rebuild"
		if p.restored {
			action = "RestoreKeys"
		}
		emit(corev1.EventTypeWarning, "KeyRingRecovered", action, p.recovered)
	}
	if len(outcome.drift) > 0 && p.policy != nil {
		// related: the edited policy (its resourceVersion), so that each revert is an
		// Event of its own rather than a repeat of the first one in a series
		r.Recorder.Eventf(registry, outcome.drifted, corev1.EventTypeWarning, ReasonDriftReverted, "Revert", "%s", driftNote(p.policy, outcome.drift))
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
	if readyChanged {
		eventType := corev1.EventTypeNormal
		// waiting for the shared policy to take a new spec is a normal step, not a problem
		if newReady.Status != "True" && newReady.Reason != trustv1alpha1.ReasonSharedPolicyPending {
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
			emit(corev1.EventTypeNormal, "KeyRetiring", "Rotate", fmt.Sprintf("key %s (%s) is retiring: still accepted until %s",
				k.Name, k.Fingerprint, k.RetiresAt.UTC().Format(time.RFC3339)))
		}
	}
	for key, k := range was {
		if !now[key] && k.State == trustv1alpha1.KeyRetiring {
			emit(corev1.EventTypeNormal, "KeyRetired", "Rotate", fmt.Sprintf("key %s (%s) retired: no longer accepted", k.Name, k.Fingerprint))
		}
	}
}

// ReasonDriftReverted is the reason of the Event telling that a generated policy had been
// changed by someone else and was put back.
const ReasonDriftReverted = "DriftReverted"

func driftNote(policy *unstructured.Unstructured, drift []string) string {
	return fmt.Sprintf("%s %s had been changed by someone else; reverted to what Signet renders, removing or restoring: %s",
		policy.GetKind(), policy.GetName(), strings.Join(drift, ", "))
}
