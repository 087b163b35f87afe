package status

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/render"
)

// SetKeysResolved: were all keys read from the trust namespace.
func SetKeysResolved(st *trustv1alpha1.TrustedRegistryStatus, in Input) {
	if in.KeyErrors {
		set(st, in, trustv1alpha1.ConditionKeysResolved, metav1.ConditionFalse, in.Blocked, in.BlockedMsg)
		return
	}
	set(st, in, trustv1alpha1.ConditionKeysResolved, metav1.ConditionTrue, trustv1alpha1.ReasonKeysResolved, keysResolvedMessage(in.Registry))
}

// applied tells whether the current spec and keys are in force (ok), or recorded and
// waiting for the shared policy (pending).
func applied(in Input) (ok, pending bool) {
	switch {
	case in.ApplyErr != nil:
		return false, false
	case in.InForce:
		return true, false
	case in.Recorded:
		return false, true
	}
	return in.Desired != nil, false
}

// SetPolicyApplied: is the current spec and key ring in the policy that enforces it.
func SetPolicyApplied(st *trustv1alpha1.TrustedRegistryStatus, in Input) {
	const c = trustv1alpha1.ConditionPolicyApplied
	live := in.Live
	switch ok, pending := applied(in); {
	case in.ApplyErr != nil:
		set(st, in, c, metav1.ConditionFalse, trustv1alpha1.ReasonApplyFailed, in.ApplyErr.Error())
	case ok && in.InForce && in.Shared != nil:
		set(st, in, c, metav1.ConditionTrue, trustv1alpha1.ReasonApplied,
			fmt.Sprintf("the shared %s %s holds the current spec and keys in %s", in.Shared.Kind, in.Shared.Name, in.Shared.Branch))
	case pending:
		msg := "the current spec and keys are recorded and wait for the shared " + render.GVK(in.Engine).Kind + " to take them"
		if live != nil {
			msg += fmt.Sprintf("; meanwhile %s %s enforces the previous ones", live.GetKind(), live.GetName())
		}
		if in.SharedErr != "" {
			msg += "; the last pass over the shared policies failed: " + in.SharedErr
		}
		set(st, in, c, metav1.ConditionFalse, trustv1alpha1.ReasonSharedPolicyPending, msg)
	case ok:
		set(st, in, c, metav1.ConditionTrue, trustv1alpha1.ReasonApplied,
			fmt.Sprintf("%s %s is up to date", in.Desired.GetKind(), in.Desired.GetName()))
	case live != nil:
		set(st, in, c, metav1.ConditionFalse, trustv1alpha1.ReasonKeptLastGoodPolicy,
			fmt.Sprintf("%s; the last applied %s %s stays in force unchanged", in.BlockedMsg, live.GetKind(), live.GetName()))
	default:
		reason, msg := in.Blocked, in.BlockedMsg
		if in.KeyErrors {
			reason = trustv1alpha1.ReasonNoUsableKeys
			msg = "no policy was created, nothing is enforced yet: " + in.BlockedMsg
		}
		set(st, in, c, metav1.ConditionFalse, reason, msg)
	}
}

// readiness is Kyverno's view of the policy in force, or Unknown for one just created.
func readiness(in Input) (metav1.ConditionStatus, string, string) {
	if in.Desired != nil && in.Live == nil {
		return metav1.ConditionUnknown, trustv1alpha1.ReasonPolicyStatusUnknown,
			"Kyverno has not reported the status of " + in.Desired.GetKind() + " " + in.Desired.GetName() + " yet"
	}
	return kyvernoReadiness(in.Live)
}

// SetPolicyReady mirrors Kyverno's view of the policy that is in force.
func SetPolicyReady(st *trustv1alpha1.TrustedRegistryStatus, in Input) {
	status, reason, msg := readiness(in)
	set(st, in, trustv1alpha1.ConditionPolicyReady, status, reason, msg)
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

// previewShown: a key is retiring and the rotation preview is on.
func previewShown(in Input) bool {
	if !in.PreviewOn {
		return false
	}
	for _, e := range in.Ring.Entries {
		if e.State == trustv1alpha1.KeyRetiring {
			return true
		}
	}
	return false
}

// SetRotationSafe: while keys retire, do the keys that remain cover the running images.
func SetRotationSafe(st *trustv1alpha1.TrustedRegistryStatus, in Input) {
	if !previewShown(in) {
		meta.RemoveStatusCondition(&st.Conditions, trustv1alpha1.ConditionRotationSafe)
		return
	}
	status, reason, msg := previewCondition(in.Preview, in.PreviewPending, in.Ring)
	set(st, in, trustv1alpha1.ConditionRotationSafe, status, reason, msg)
}

// previewCondition summarises a preview as the RotationSafe condition.
func previewCondition(preview *trustv1alpha1.RotationPreview, pending bool, ring keys.Ring) (metav1.ConditionStatus, string, string) {
	retiresAt := ""
	for _, e := range ring.Entries {
		if e.State == trustv1alpha1.KeyRetiring && e.RetiresAt != nil {
			if retiresAt == "" || e.RetiresAt.UTC().Format(time.RFC3339) < retiresAt {
				retiresAt = e.RetiresAt.UTC().Format(time.RFC3339)
			}
		}
	}
	switch {
	case preview == nil:
		return metav1.ConditionUnknown, trustv1alpha1.ReasonPreviewPending,
			"checking the running images against the keys that remain after the retiring keys are gone"
	case preview.AtRisk > 0:
		names := make([]string, 0, len(preview.AtRiskImages))
		for _, a := range preview.AtRiskImages {
			if !strings.HasPrefix(a.Reason, "could not be checked") {
				names = append(names, a.Image)
			}
		}
		return metav1.ConditionFalse, trustv1alpha1.ReasonImagesAtRisk,
			fmt.Sprintf("%d of %d running images are not signed by the keys that remain and will be denied when their Pods are next created after %s: %s",
				preview.AtRisk, preview.Images, retiresAt, strings.Join(names, ", "))
	case preview.Inconclusive > 0:
		return metav1.ConditionUnknown, trustv1alpha1.ReasonPreviewInconclusive,
			fmt.Sprintf("%d of %d running images could not be checked (see status.rotationPreview.atRiskImages)", preview.Inconclusive, preview.Images)
	case pending:
		return metav1.ConditionUnknown, trustv1alpha1.ReasonPreviewPending, "re-checking the running images after a change"
	default:
		return metav1.ConditionTrue, trustv1alpha1.ReasonRemainingKeysCover,
			fmt.Sprintf("all %d running images are signed by the keys that remain after %s", preview.Images, retiresAt)
	}
}

// SetAuditViolations: in Audit mode, does Kyverno report results that Enforce would block.
func SetAuditViolations(st *trustv1alpha1.TrustedRegistryStatus, in Input) {
	const c = trustv1alpha1.ConditionAuditViolations
	switch {
	case in.Registry.Spec.Action != trustv1alpha1.ActionAudit:
		meta.RemoveStatusCondition(&st.Conditions, c)
	case in.Reports == nil:
		set(st, in, c, metav1.ConditionUnknown, trustv1alpha1.ReasonNoReportAPI,
			"no Kyverno report API (wgpolicyk8s.io/v1alpha2 or openreports.io/v1alpha1) is served, so violations cannot be counted")
	case in.Reports.Fail+in.Reports.Error > 0:
		set(st, in, c, metav1.ConditionTrue, trustv1alpha1.ReasonViolationsFound,
			fmt.Sprintf("%s fail the policy in Audit mode and would be blocked under Enforce", plural(int(in.Reports.Fail+in.Reports.Error), "result", "results")))
	default:
		set(st, in, c, metav1.ConditionFalse, trustv1alpha1.ReasonNoViolations, "Kyverno reports no failing resources for the policy")
	}
}

// summary is what Ready, Reconciling and Stalled say: the rest of the status in one.
type summary struct {
	ready, reconciling, stalled metav1.ConditionStatus
	reason                      string // of all three, unless readyReason is set
	readyReason                 string
	readyMsg, stalledMsg        string
	reconcilingMsg              string
}

func summarise(in Input) summary {
	ok, pending := applied(in)
	readyStatus, _, readyMsg := readiness(in)
	switch {
	case in.ApplyErr != nil:
		return summary{ready: metav1.ConditionFalse, reconciling: metav1.ConditionTrue, stalled: metav1.ConditionFalse,
			readyReason: trustv1alpha1.ReasonApplyFailed, reason: trustv1alpha1.ReasonProgressing,
			readyMsg: in.ApplyErr.Error(), reconcilingMsg: "retrying after a failed write"}
	case pending:
		return summary{ready: metav1.ConditionFalse, reconciling: metav1.ConditionTrue, stalled: metav1.ConditionFalse,
			reason:   trustv1alpha1.ReasonSharedPolicyPending,
			readyMsg: "waiting for the shared " + render.GVK(in.Engine).Kind + " to take the current spec and keys"}
	case !ok:
		msg := in.BlockedMsg
		if in.Live != nil {
			msg = fmt.Sprintf("%s; the last applied %s %s stays in force unchanged", in.BlockedMsg, in.Live.GetKind(), in.Live.GetName())
		} else {
			msg += "; nothing is enforced for this TrustedRegistry"
		}
		return summary{ready: metav1.ConditionFalse, reconciling: metav1.ConditionFalse, stalled: metav1.ConditionTrue,
			reason: in.Blocked, readyMsg: msg, stalledMsg: in.BlockedMsg}
	case readyStatus == metav1.ConditionFalse:
		return summary{ready: metav1.ConditionFalse, reconciling: metav1.ConditionFalse, stalled: metav1.ConditionTrue,
			reason: trustv1alpha1.ReasonPolicyNotReady, readyMsg: readyMsg, stalledMsg: readyMsg}
	}
	u := in.Desired
	if u == nil {
		u = in.Live
	}
	kind, name := "", ""
	if u != nil {
		kind, name = u.GetKind(), u.GetName()
	}
	return summary{ready: metav1.ConditionTrue, reconciling: metav1.ConditionFalse, stalled: metav1.ConditionFalse,
		reason: trustv1alpha1.ReasonReady, readyMsg: readyMessage(in.Registry, in.Ring, kind, name)}
}

// SetReady: is the registry enforced as its spec asks.
func SetReady(st *trustv1alpha1.TrustedRegistryStatus, in Input) {
	s := summarise(in)
	reason := s.reason
	if s.readyReason != "" {
		reason = s.readyReason
	}
	set(st, in, trustv1alpha1.ConditionReady, s.ready, reason, s.readyMsg)
}

// SetReconciling: is Signet still working towards the spec.
func SetReconciling(st *trustv1alpha1.TrustedRegistryStatus, in Input) {
	s := summarise(in)
	set(st, in, trustv1alpha1.ConditionReconciling, s.reconciling, s.reason, s.reconcilingMsg)
}

// SetStalled: does it need someone to act (the spec, a Secret, Kyverno).
func SetStalled(st *trustv1alpha1.TrustedRegistryStatus, in Input) {
	s := summarise(in)
	set(st, in, trustv1alpha1.ConditionStalled, s.stalled, s.reason, s.stalledMsg)
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
func readyMessage(registry *trustv1alpha1.TrustedRegistry, ring keys.Ring, kind, name string) string {
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
	signers := ring.Summary()
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
	return msg + attestationPhrase(registry) // attest.go
}
