package controllers

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/render"
)

// computeStatus is pure: it derives the whole status from what was observed, the plan and
// the outcome of the writes. Messages are deterministic (no timestamps, sorted lists), so an
// unchanged world produces an unchanged status and no write.
func computeStatus(obs *observed, p plan, applyErr error) trustv1alpha1.TrustedRegistryStatus {
	registry := obs.registry
	st := *registry.Status.DeepCopy()
	gen := registry.Generation
	st.ObservedGeneration = gen
	st.Keys = p.ring.Status()
	st.KeySummary = p.ring.Summary()

	var live *unstructured.Unstructured
	if p.engine != "" {
		live = obs.live[p.engine]
	}
	switch {
	case p.policy != nil:
		st.Policy = policyRef(p.policy)
	case live != nil:
		st.Policy = policyRef(live)
	default:
		st.Policy = nil
	}
	if sp := obs.shared[p.engine]; sp != nil && st.Policy != nil && st.Policy.Kind == sp.policy.GetKind() && st.Policy.Name == sp.policy.GetName() {
		st.Policy.Branch = sp.entry.branch
	}

	set := func(condType string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: condType, Status: status, Reason: reason, Message: truncate(msg, 1024), ObservedGeneration: gen,
		})
	}

	// KeysResolved
	if len(obs.keyErrs) > 0 {
		set(trustv1alpha1.ConditionKeysResolved, metav1.ConditionFalse, p.blocked, p.blockedMsg)
	} else {
		set(trustv1alpha1.ConditionKeysResolved, metav1.ConditionTrue, trustv1alpha1.ReasonKeysResolved, keysResolvedMessage(registry))
	}

	// PolicyApplied
	policyOK, pending := false, false
	switch {
	case applyErr != nil:
		set(trustv1alpha1.ConditionPolicyApplied, metav1.ConditionFalse, trustv1alpha1.ReasonApplyFailed, applyErr.Error())
	case p.inForce(obs):
		policyOK = true
		sp := obs.shared[p.engine]
		set(trustv1alpha1.ConditionPolicyApplied, metav1.ConditionTrue, trustv1alpha1.ReasonApplied,
			fmt.Sprintf("the shared %s %s holds the current spec and keys in %s", sp.policy.GetKind(), sp.policy.GetName(), sp.entry.branch))
	case p.input != nil:
		pending = true
		msg := "the current spec and keys are recorded and wait for the shared " + render.GVK(p.engine).Kind + " to take them"
		if live != nil {
			msg += fmt.Sprintf("; meanwhile %s %s enforces the previous ones", live.GetKind(), live.GetName())
		}
		if obs.sharedErr != "" {
			msg += "; the last pass over the shared policies failed: " + obs.sharedErr
		}
		set(trustv1alpha1.ConditionPolicyApplied, metav1.ConditionFalse, trustv1alpha1.ReasonSharedPolicyPending, msg)
	case p.policy != nil:
		policyOK = true
		set(trustv1alpha1.ConditionPolicyApplied, metav1.ConditionTrue, trustv1alpha1.ReasonApplied,
			fmt.Sprintf("%s %s is up to date", p.policy.GetKind(), p.policy.GetName()))
	case live != nil:
		set(trustv1alpha1.ConditionPolicyApplied, metav1.ConditionFalse, trustv1alpha1.ReasonKeptLastGoodPolicy,
			fmt.Sprintf("%s; the last applied %s %s stays in force unchanged", p.blockedMsg, live.GetKind(), live.GetName()))
	default:
		reason, msg := p.blocked, p.blockedMsg
		if len(obs.keyErrs) > 0 {
			reason = trustv1alpha1.ReasonNoUsableKeys
			msg = "no policy was created, nothing is enforced yet: " + p.blockedMsg
		}
		set(trustv1alpha1.ConditionPolicyApplied, metav1.ConditionFalse, reason, msg)
	}

	// PolicyReady mirrors Kyverno's view of the policy that is in force.
	readyStatus, readyReason, readyMsg := kyvernoReadiness(live)
	if p.policy != nil && live == nil {
		readyStatus, readyReason, readyMsg = metav1.ConditionUnknown, trustv1alpha1.ReasonPolicyStatusUnknown,
			"Kyverno has not reported the status of "+p.policy.GetKind()+" "+p.policy.GetName()+" yet"
	}
	set(trustv1alpha1.ConditionPolicyReady, readyStatus, readyReason, readyMsg)

	// Report summary, and whether Audit mode is letting violations through.
	st.Reports = obs.reports.DeepCopy()
	if obs.blocked != nil {
		if st.Reports == nil {
			st.Reports = &trustv1alpha1.ReportSummary{}
		}
		st.Reports.Blocked = obs.blocked
	}
	st.Coverage = obs.coverage
	st.RotationPreview = nil
	if obs.previewOn && hasRetiring(p.ring) {
		st.RotationPreview = obs.preview
		status, reason, msg := previewCondition(obs.preview, obs.previewPending, p.ring)
		set(trustv1alpha1.ConditionRotationSafe, status, reason, msg)
	} else {
		meta.RemoveStatusCondition(&st.Conditions, trustv1alpha1.ConditionRotationSafe)
	}
	action := registry.Spec.Action
	switch {
	case action != trustv1alpha1.ActionAudit:
		meta.RemoveStatusCondition(&st.Conditions, trustv1alpha1.ConditionAuditViolations)
	case obs.reports == nil:
		set(trustv1alpha1.ConditionAuditViolations, metav1.ConditionUnknown, trustv1alpha1.ReasonNoReportAPI,
			"no Kyverno report API (wgpolicyk8s.io/v1alpha2 or openreports.io/v1alpha1) is served, so violations cannot be counted")
	case obs.reports.Fail+obs.reports.Error > 0:
		set(trustv1alpha1.ConditionAuditViolations, metav1.ConditionTrue, trustv1alpha1.ReasonViolationsFound,
			fmt.Sprintf("%s fail the policy in Audit mode and would be blocked under Enforce", plural(int(obs.reports.Fail+obs.reports.Error), "result", "results")))
	default:
		set(trustv1alpha1.ConditionAuditViolations, metav1.ConditionFalse, trustv1alpha1.ReasonNoViolations,
			"Kyverno reports no failing resources for the policy")
	}

	// Ready, Reconciling and Stalled summarise the rest.
	switch {
	case applyErr != nil:
		set(trustv1alpha1.ConditionReady, metav1.ConditionFalse, trustv1alpha1.ReasonApplyFailed, applyErr.Error())
		set(trustv1alpha1.ConditionReconciling, metav1.ConditionTrue, trustv1alpha1.ReasonProgressing, "retrying after a failed write")
		set(trustv1alpha1.ConditionStalled, metav1.ConditionFalse, trustv1alpha1.ReasonProgressing, "")
	case pending:
		set(trustv1alpha1.ConditionReady, metav1.ConditionFalse, trustv1alpha1.ReasonSharedPolicyPending, "waiting for the shared "+render.GVK(p.engine).Kind+" to take the current spec and keys")
		set(trustv1alpha1.ConditionReconciling, metav1.ConditionTrue, trustv1alpha1.ReasonSharedPolicyPending, "")
		set(trustv1alpha1.ConditionStalled, metav1.ConditionFalse, trustv1alpha1.ReasonSharedPolicyPending, "")
	case !policyOK:
		msg := p.blockedMsg
		if live != nil {
			msg = fmt.Sprintf("%s; the last applied %s %s stays in force unchanged", p.blockedMsg, live.GetKind(), live.GetName())
		} else {
			msg += "; nothing is enforced for this TrustedRegistry"
		}
		set(trustv1alpha1.ConditionReady, metav1.ConditionFalse, p.blocked, msg)
		set(trustv1alpha1.ConditionReconciling, metav1.ConditionFalse, p.blocked, "")
		set(trustv1alpha1.ConditionStalled, metav1.ConditionTrue, p.blocked, p.blockedMsg)
	case readyStatus == metav1.ConditionFalse:
		set(trustv1alpha1.ConditionReady, metav1.ConditionFalse, trustv1alpha1.ReasonPolicyNotReady, readyMsg)
		set(trustv1alpha1.ConditionReconciling, metav1.ConditionFalse, trustv1alpha1.ReasonPolicyNotReady, "")
		set(trustv1alpha1.ConditionStalled, metav1.ConditionTrue, trustv1alpha1.ReasonPolicyNotReady, readyMsg)
	default:
		kind, name := "", ""
		if p.policy != nil {
			kind, name = p.policy.GetKind(), p.policy.GetName()
		} else if live != nil {
			kind, name = live.GetKind(), live.GetName()
		}
		set(trustv1alpha1.ConditionReady, metav1.ConditionTrue, trustv1alpha1.ReasonReady, readyMessage(registry, p, kind, name))
		set(trustv1alpha1.ConditionReconciling, metav1.ConditionFalse, trustv1alpha1.ReasonReady, "")
		set(trustv1alpha1.ConditionStalled, metav1.ConditionFalse, trustv1alpha1.ReasonReady, "")
	}
	return st
}

func policyRef(u *unstructured.Unstructured) *trustv1alpha1.PolicyReference {
	return &trustv1alpha1.PolicyReference{APIVersion: u.GetAPIVersion(), Kind: u.GetKind(), Name: u.GetName()}
}

// kyvernoReadiness reads Kyverno's own status of a policy: ImageValidatingPolicy has
// status.conditionStatus.{ready,message}; ClusterPolicy has status.ready and a Ready
// condition.
func kyvernoReadiness(live *unstructured.Unstructured) (metav1.ConditionStatus, string, string) {
	if live == nil {
		return metav1.ConditionUnknown, trustv1alpha1.ReasonPolicyStatusUnknown, "no policy is in force"
	}
	name := live.GetKind() + " " + live.GetName()
	var ready *bool
	var msg string
	if v, found, _ := unstructured.NestedBool(live.Object, "status", "conditionStatus", "ready"); found {
		ready = &v
		msg, _, _ = unstructured.NestedString(live.Object, "status", "conditionStatus", "message")
	} else if v, found, _ := unstructured.NestedBool(live.Object, "status", "ready"); found {
		ready = &v
	}
	for _, path := range [][]string{{"status", "conditionStatus", "conditions"}, {"status", "conditions"}} {
		conds, _, _ := unstructured.NestedSlice(live.Object, path...)
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["status"] == "False" {
				if s, _ := m["message"].(string); s != "" && msg == "" {
					msg = s
				}
			}
		}
	}
	switch {
	case ready == nil:
		return metav1.ConditionUnknown, trustv1alpha1.ReasonPolicyStatusUnknown, "Kyverno has not reported the status of " + name + " yet"
	case *ready:
		return metav1.ConditionTrue, trustv1alpha1.ReasonPolicyReady, "Kyverno reports " + name + " ready"
	default:
		if msg == "" {
			msg = "no detail given"
		}
		return metav1.ConditionFalse, trustv1alpha1.ReasonPolicyNotReady, "Kyverno reports " + name + " not ready: " + msg
	}
}

func keysResolvedMessage(registry *trustv1alpha1.TrustedRegistry) string {
	n, k := len(registry.Spec.Keys), len(registry.Spec.Keyless)
	parts := []string{}
	if n > 0 {
		parts = append(parts, plural(n, "key", "keys")+" read from the trust namespace")
	}
	if k > 0 {
		parts = append(parts, plural(k, "keyless identity", "keyless identities"))
	}
	return strings.Join(parts, " and ")
}

// readyMessage answers "is it enforced, with which keys, where" in one sentence.
func readyMessage(registry *trustv1alpha1.TrustedRegistry, p plan, kind, name string) string {
	action := registry.Spec.Action
	if action == "" {
		action = trustv1alpha1.ActionEnforce
	}
	verb := "enforces"
	if action == trustv1alpha1.ActionAudit {
		verb = "audits (does not block)"
	}
	images := make([]string, 0, len(registry.Spec.Images))
	for _, i := range registry.Spec.Images {
		images = append(images, string(i))
	}
	where := []string{}
	if ns := registry.Spec.Namespaces.Names; len(ns) > 0 {
		where = append(where, "namespaces "+strings.Join(ns, ", "))
	}
	if registry.Spec.Namespaces.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(registry.Spec.Namespaces.Selector)
		if err == nil {
			where = append(where, "namespaces labelled "+sel.String())
		}
	}
	signers := p.ring.Summary()
	if k := len(registry.Spec.Keyless); k > 0 {
		signers += ", " + plural(k, "keyless identity", "keyless identities")
	}
	required := registry.Spec.RequiredSignatures
	if required < 1 {
		required = 1
	}
	msg := fmt.Sprintf("%s %s %s signatures (%d required; %s) on %s in %s",
		kind, name, verb, required, signers, strings.Join(images, ", "), strings.Join(where, " and "))
	if registry.Spec.RestrictRegistries == nil || *registry.Spec.RestrictRegistries {
		msg += "; images that match no restricting TrustedRegistry there are " + map[bool]string{true: "reported", false: "denied"}[action == trustv1alpha1.ActionAudit]
	}
	// what happens to a tag depends on the action when spec.digest is unset: say it
	switch require, mutate := registry.Spec.Digest.Resolve(action); {
	case mutate:
		msg += "; tags are pinned to the verified digest"
	case require:
		msg += "; images not referenced by digest are " + map[bool]string{true: "reported", false: "denied"}[action == trustv1alpha1.ActionAudit]
	}
	return msg + attestationPhrase(registry) // attest_status.go
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// conditionsEqualIgnoring compares condition lists (type, status, reason, message,
// observedGeneration), leaving out one type.
func conditionsEqualIgnoring(a, b []metav1.Condition, ignore string) bool {
	strip := func(cs []metav1.Condition) map[string]metav1.Condition {
		m := map[string]metav1.Condition{}
		for _, c := range cs {
			if c.Type != ignore {
				c.LastTransitionTime = metav1.Time{}
				m[c.Type] = c
			}
		}
		return m
	}
	ma, mb := strip(a), strip(b)
	if len(ma) != len(mb) {
		return false
	}
	for k, v := range ma {
		if mb[k] != v {
			return false
		}
	}
	return true
}

func hasRetiring(ring keys.Ring) bool {
	for _, e := range ring.Entries {
		if e.State == trustv1alpha1.KeyRetiring {
			return true
		}
	}
	return false
}
