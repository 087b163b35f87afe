// Package status derives a TrustedRegistry's status from what its reconcile observed and
// did. It is pure: no client, no clock. Compute fills the observed fields and calls one
// setter per condition; each setter is table-tested without a control plane
// (docs/architecture.md, "Controllers"). Messages are deterministic (no timestamps, sorted lists),
// so an unchanged world produces an unchanged status and no write.
package status

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
)

// Input is what one reconcile of a TrustedRegistry observed, decided and did.
type Input struct {
	Registry *trustv1alpha1.TrustedRegistry
	// Ring is the key ring decided on.
	Ring keys.Ring
	// KeyErrors: some key could not be read (BlockedMsg says which).
	KeyErrors bool
	// Blocked and BlockedMsg say why no policy is applied (condition reason and message).
	Blocked, BlockedMsg string
	// ApplyErr is the write that failed (nil: none did).
	ApplyErr error
	// Engine is the policy kind in use ("" when none is usable).
	Engine trustv1alpha1.Engine
	// Desired is the policy of its own applied (per-registry layout; nil otherwise); Live is
	// the policy of Engine in force (its own, or the shared policy holding its branch).
	Desired, Live *unstructured.Unstructured
	// Shared is where the registry's branch is in the shared policy of Engine (nil: none).
	Shared *Placement
	// Recorded: the shared layout recorded an input for the shared policies; InForce: the
	// shared policy of Engine holds it.
	Recorded, InForce bool
	// SharedErr is why the last pass over the shared policies failed ("" when it did not).
	SharedErr string
	// Reports, Denials and Coverage are the insights (nil: not observed).
	Reports  *trustv1alpha1.ReportSummary
	Denials  *trustv1alpha1.BlockedSummary
	Coverage *trustv1alpha1.CoverageSummary
	// PreviewOn: the rotation preview is enabled; Preview is its newest answer and
	// PreviewPending says a check for the current state runs.
	PreviewOn      bool
	Preview        *trustv1alpha1.RotationPreview
	PreviewPending bool
}

// Placement is a shared policy holding the registry's branch.
type Placement struct {
	Kind, Name, Branch string
}

// setters set the conditions, in the order they first appear in status.conditions.
var setters = []func(*trustv1alpha1.TrustedRegistryStatus, Input){
	SetKeysResolved, SetPolicyApplied, SetPolicyReady, SetRotationSafe, SetAuditViolations,
	SetReady, SetReconciling, SetStalled,
}

// Compute returns the whole status of one reconcile.
func Compute(in Input) trustv1alpha1.TrustedRegistryStatus {
	st := *in.Registry.Status.DeepCopy()
	st.ObservedGeneration = in.Registry.Generation
	st.Keys = in.Ring.Status()
	st.KeySummary = in.Ring.Summary()
	st.Policy = policyRef(in)
	st.Reports = in.Reports.DeepCopy()
	if in.Denials != nil {
		if st.Reports == nil {
			st.Reports = &trustv1alpha1.ReportSummary{}
		}
		st.Reports.Blocked = in.Denials
	}
	st.Coverage = in.Coverage
	st.RotationPreview = nil
	if previewShown(in) {
		st.RotationPreview = in.Preview
	}
	for _, set := range setters {
		set(&st, in)
	}
	return st
}

// policyRef names the policy that enforces the registry, with its branch when shared.
func policyRef(in Input) *trustv1alpha1.PolicyReference {
	u := in.Desired
	if u == nil {
		u = in.Live
	}
	if u == nil {
		return nil
	}
	ref := &trustv1alpha1.PolicyReference{APIVersion: u.GetAPIVersion(), Kind: u.GetKind(), Name: u.GetName()}
	if sp := in.Shared; sp != nil && ref.Kind == sp.Kind && ref.Name == sp.Name {
		ref.Branch = sp.Branch
	}
	return ref
}

func set(st *trustv1alpha1.TrustedRegistryStatus, in Input, condType string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: condType, Status: status, Reason: reason, Message: Truncate(msg, 1024), ObservedGeneration: in.Registry.Generation,
	})
}

// Truncate shortens s to at most n bytes, marking the cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
