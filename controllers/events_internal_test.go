package controllers

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
)

// TestTransitionEvents checks which Events a reconcile's transition records (pure: no
// control plane is involved, although the package's TestMain starts one).
func TestTransitionEvents(t *testing.T) {
	policy := &unstructured.Unstructured{Object: map[string]any{"kind": "ImageValidatingPolicy", "metadata": map[string]any{"name": "signet-app"}}}
	ready := func(status metav1.ConditionStatus, reason string) trustv1alpha1.TrustedRegistryStatus {
		return trustv1alpha1.TrustedRegistryStatus{Conditions: []metav1.Condition{{Type: trustv1alpha1.ConditionReady, Status: status, Reason: reason, Message: "m"}}}
	}
	at := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	withKeys := func(st trustv1alpha1.TrustedRegistryStatus, keys ...trustv1alpha1.KeyStatus) trustv1alpha1.TrustedRegistryStatus {
		st.Keys = keys
		return st
	}
	withPolicy := func(st trustv1alpha1.TrustedRegistryStatus) trustv1alpha1.TrustedRegistryStatus {
		st.Policy = &trustv1alpha1.PolicyReference{Kind: "ImageValidatingPolicy", Name: "signet.ivp.enforce"}
		return st
	}
	active := trustv1alpha1.KeyStatus{Name: "k1", Fingerprint: "sha256:aa", State: trustv1alpha1.KeyActive}
	retiring := trustv1alpha1.KeyStatus{Name: "k1", Fingerprint: "sha256:aa", State: trustv1alpha1.KeyRetiring, RetiresAt: &at}
	for name, tc := range map[string]struct {
		before, after trustv1alpha1.TrustedRegistryStatus
		plan          plan
		outcome       applyOutcome
		want          []string // "type reason action: note prefix"
	}{
		"nothing changed": {before: ready("True", "Ready"), after: ready("True", "Ready"), plan: plan{policy: policy}},
		// A registry's first convergence is told by its conditions, not by an Event.
		"first convergence":                        {after: ready("True", "Ready"), plan: plan{policy: policy}, outcome: applyOutcome{applied: true}},
		"first convergence, shared layout":         {after: ready("True", "Ready")},
		"first convergence after a pending status": {before: ready("False", trustv1alpha1.ReasonSharedPolicyPending), after: ready("True", "Ready")},
		"Ready again after a pending status": {before: withPolicy(ready("False", trustv1alpha1.ReasonSharedPolicyPending)), after: ready("True", "Ready"),
			want: []string{"Normal Ready Reconcile: m"}},
		"first reconcile fails": {after: ready("False", trustv1alpha1.ReasonInvalidSpec), want: []string{"Warning InvalidSpec Reconcile: m"}},
		"first reconcile written, not ready": {after: ready("False", trustv1alpha1.ReasonPolicyNotReady), plan: plan{policy: policy},
			outcome: applyOutcome{applied: true}, want: []string{"Normal PolicyApplied Apply: applied", "Warning PolicyNotReady Reconcile: m"}},
		"Ready after a failure": {before: ready("False", trustv1alpha1.ReasonInvalidSpec), after: ready("True", "Ready"), plan: plan{policy: policy},
			outcome: applyOutcome{applied: true}, want: []string{"Normal Ready Reconcile: m"}},
		"Ready again": {before: ready("False", trustv1alpha1.ReasonPolicyNotReady), after: ready("True", "Ready"), want: []string{"Normal Ready Reconcile: m"}},
		"written while Ready": {before: ready("True", "Ready"), after: ready("True", "Ready"), plan: plan{policy: policy},
			outcome: applyOutcome{applied: true}, want: []string{"Normal PolicyApplied Apply: applied ImageValidatingPolicy signet-app"}},
		"drift reverted": {before: ready("True", "Ready"), after: ready("True", "Ready"), plan: plan{policy: policy},
			outcome: applyOutcome{applied: true, drift: []string{"spec.validationActions (changed)"}, drifted: policy},
			want:    []string{"Normal PolicyApplied Apply: applied", "Warning DriftReverted Revert: ImageValidatingPolicy signet-app had been changed by someone else"}},
		"waiting for the shared policy": {before: ready("True", "Ready"), after: ready("False", trustv1alpha1.ReasonSharedPolicyPending)},
		"stalled": {before: ready("True", "Ready"), after: ready("False", trustv1alpha1.ReasonInvalidSpec),
			want: []string{"Warning InvalidSpec Reconcile: m"}},
		"engine switched": {before: ready("True", "Ready"), after: ready("True", "Ready"), plan: plan{policy: policy},
			outcome: applyOutcome{deletedOld: "ClusterPolicy"}, want: []string{"Normal EngineSwitched Delete: deleted the previous ClusterPolicy after applying ImageValidatingPolicy"}},
		"moved to the shared policy": {before: ready("True", "Ready"), after: ready("True", "Ready"),
			outcome: applyOutcome{deletedOld: "ClusterPolicy signet-app"}, want: []string{"Normal MovedToSharedPolicy Delete: deleted ClusterPolicy signet-app"}},
		"key retiring, then retired": {before: withKeys(ready("True", "Ready"), active), after: withKeys(ready("True", "Ready"), retiring),
			want: []string{"Normal KeyRetiring Rotate: key k1 (sha256:aa) is retiring: still accepted until 2026-01-02T03:04:05Z"}},
		"key retired": {before: withKeys(ready("True", "Ready"), retiring), after: ready("True", "Ready"),
			want: []string{"Normal KeyRetired Rotate: key k1 (sha256:aa) retired"}},
		"first violations": {before: ready("True", "Ready"), after: func() trustv1alpha1.TrustedRegistryStatus {
			st := ready("True", "Ready")
			st.Reports = &trustv1alpha1.ReportSummary{Fail: 2}
			return st
		}(), plan: plan{policy: policy}, want: []string{"Warning ViolationsFound Report: Kyverno reports 2 failing results for ImageValidatingPolicy signet-app"}},
	} {
		t.Run(name, func(t *testing.T) {
			got := transitionEvents(&tc.before, &tc.after, tc.plan, tc.outcome)
			if len(got) != len(tc.want) {
				t.Fatalf("%d events %+v, want %d: %v", len(got), got, len(tc.want), tc.want)
			}
			for i, e := range got {
				if s := e.eventType + " " + e.reason + " " + e.action + ": " + e.note; !strings.HasPrefix(s, tc.want[i]) {
					t.Errorf("event %d = %q, want %q...", i, s, tc.want[i])
				}
				if (e.reason == ReasonDriftReverted) != (e.related != nil) {
					t.Errorf("event %d %s: related %v", i, e.reason, e.related)
				}
			}
		})
	}
}
