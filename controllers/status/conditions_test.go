package status

import (
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
)

// want is one expected condition: absent, or its status, reason and a part of its message.
type want struct {
	absent bool
	status metav1.ConditionStatus
	reason string
	msg    string
}

func (w want) check(t *testing.T, st *trustv1alpha1.TrustedRegistryStatus, condType string) {
	t.Helper()
	c := meta.FindStatusCondition(st.Conditions, condType)
	switch {
	case w.absent && c != nil:
		t.Fatalf("%s is set (%s/%s), want it absent", condType, c.Status, c.Reason)
	case w.absent:
		return
	case c == nil:
		t.Fatalf("%s is not set", condType)
	}
	if c.Status != w.status || c.Reason != w.reason || !strings.Contains(c.Message, w.msg) {
		t.Fatalf("%s = %s/%s %q, want %s/%s containing %q", condType, c.Status, c.Reason, c.Message, w.status, w.reason, w.msg)
	}
	if c.ObservedGeneration != 3 {
		t.Fatalf("%s observedGeneration %d, want 3", condType, c.ObservedGeneration)
	}
}

func registry(mutate ...func(*trustv1alpha1.TrustedRegistry)) *trustv1alpha1.TrustedRegistry {
	tr := &trustv1alpha1.TrustedRegistry{}
	tr.Name, tr.Generation = "app", 3
	tr.Spec.Images = []trustv1alpha1.ImagePattern{"reg.example/app/*"}
	tr.Spec.Namespaces.Names = []string{"prod"}
	tr.Spec.Keys = []trustv1alpha1.PublicKey{{Name: "k1"}}
	for _, m := range mutate {
		m(tr)
	}
	return tr
}

func policy(kind, name string, status map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "policies.kyverno.io/v1", "kind": kind,
		"metadata": map[string]any{"name": name}}}
	if status != nil {
		u.Object["status"] = status
	}
	return u
}

var (
	ivpReady    = map[string]any{"conditionStatus": map[string]any{"ready": true}}
	ivpNotReady = map[string]any{"conditionStatus": map[string]any{"ready": false, "message": "compile error"}}
	activeRing  = keys.Ring{Entries: []keys.Entry{{Name: "k1", Fingerprint: "sha256:aa", State: trustv1alpha1.KeyActive}}}
	retiresAt   = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rotating    = keys.Ring{Entries: []keys.Entry{
		{Name: "k2", Fingerprint: "sha256:bb", State: trustv1alpha1.KeyActive},
		{Name: "k1", Fingerprint: "sha256:aa", State: trustv1alpha1.KeyRetiring, RetiresAt: &retiresAt},
	}}
)

// ready is the input of a registry enforced by its own policy, Kyverno reporting it ready.
func ready() Input {
	return Input{Registry: registry(), Ring: activeRing, Engine: trustv1alpha1.EngineImageValidatingPolicy,
		Desired: policy("ImageValidatingPolicy", "signet-app", nil), Live: policy("ImageValidatingPolicy", "signet-app", ivpReady)}
}

func with(in Input, mutate func(*Input)) Input {
	mutate(&in)
	return in
}

func run(t *testing.T, set func(*trustv1alpha1.TrustedRegistryStatus, Input), condType string, cases map[string]struct {
	in   Input
	want want
}) {
	t.Helper()
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			st := tc.in.Registry.Status.DeepCopy()
			set(st, tc.in)
			tc.want.check(t, st, condType)
		})
	}
}

type cases = map[string]struct {
	in   Input
	want want
}

func TestSetKeysResolved(t *testing.T) {
	run(t, SetKeysResolved, trustv1alpha1.ConditionKeysResolved, cases{
		"keys read": {ready(), want{status: "True", reason: trustv1alpha1.ReasonKeysResolved, msg: "1 key read from the trust namespace"}},
		"keys and keyless": {with(ready(), func(in *Input) {
			in.Registry = registry(func(tr *trustv1alpha1.TrustedRegistry) {
				tr.Spec.Keyless = make([]trustv1alpha1.KeylessIdentity, 2)
			})
		}), want{status: "True", reason: trustv1alpha1.ReasonKeysResolved, msg: "1 key read from the trust namespace and 2 keyless identities"}},
		"a Secret missing": {with(ready(), func(in *Input) {
			in.KeyErrors, in.Blocked, in.BlockedMsg = true, trustv1alpha1.ReasonSecretNotFound, `key "k1": Secret signet-system/k1 not found`
		}), want{status: "False", reason: trustv1alpha1.ReasonSecretNotFound, msg: "Secret signet-system/k1 not found"}},
	})
}

func TestSetPolicyApplied(t *testing.T) {
	shared := func(in *Input) {
		in.Desired, in.Recorded = nil, true
		in.Live = policy("ImageValidatingPolicy", "signet.ivp.enforce", ivpReady)
		in.Shared = &Placement{Kind: "ImageValidatingPolicy", Name: "signet.ivp.enforce", Branch: "b7"}
	}
	run(t, SetPolicyApplied, trustv1alpha1.ConditionPolicyApplied, cases{
		"own policy written": {ready(), want{status: "True", reason: trustv1alpha1.ReasonApplied, msg: "ImageValidatingPolicy signet-app is up to date"}},
		"write failed": {with(ready(), func(in *Input) { in.ApplyErr = errors.New("updating: conflict") }),
			want{status: "False", reason: trustv1alpha1.ReasonApplyFailed, msg: "updating: conflict"}},
		"branch in force": {with(ready(), func(in *Input) { shared(in); in.InForce = true }),
			want{status: "True", reason: trustv1alpha1.ReasonApplied, msg: "the shared ImageValidatingPolicy signet.ivp.enforce holds the current spec and keys in b7"}},
		"branch pending, last pass failed": {with(ready(), func(in *Input) { shared(in); in.SharedErr = "too large" }),
			want{status: "False", reason: trustv1alpha1.ReasonSharedPolicyPending,
				msg: "wait for the shared ImageValidatingPolicy to take them; meanwhile ImageValidatingPolicy signet.ivp.enforce enforces the previous ones; the last pass over the shared policies failed: too large"}},
		"blocked, last good kept": {with(ready(), func(in *Input) {
			in.Desired, in.Blocked, in.BlockedMsg = nil, trustv1alpha1.ReasonInvalidSpec, "bad pattern"
		}), want{status: "False", reason: trustv1alpha1.ReasonKeptLastGoodPolicy, msg: "bad pattern; the last applied ImageValidatingPolicy signet-app stays in force unchanged"}},
		"no keys, nothing enforced": {with(ready(), func(in *Input) {
			in.Desired, in.Live, in.KeyErrors = nil, nil, true
			in.Blocked, in.BlockedMsg = trustv1alpha1.ReasonInvalidPublicKey, "not a key"
		}), want{status: "False", reason: trustv1alpha1.ReasonNoUsableKeys, msg: "no policy was created, nothing is enforced yet: not a key"}},
		"Kyverno missing": {Input{Registry: registry(), Blocked: trustv1alpha1.ReasonKyvernoNotInstalled, BlockedMsg: "Kyverno is not installed"},
			want{status: "False", reason: trustv1alpha1.ReasonKyvernoNotInstalled, msg: "Kyverno is not installed"}},
	})
}

func TestSetPolicyReady(t *testing.T) {
	cpol := func(status map[string]any) *unstructured.Unstructured {
		return policy("ClusterPolicy", "signet-app", status)
	}
	run(t, SetPolicyReady, trustv1alpha1.ConditionPolicyReady, cases{
		"ready": {ready(), want{status: "True", reason: trustv1alpha1.ReasonPolicyReady, msg: "Kyverno reports ImageValidatingPolicy signet-app ready"}},
		"just created": {with(ready(), func(in *Input) { in.Live = nil }),
			want{status: "Unknown", reason: trustv1alpha1.ReasonPolicyStatusUnknown, msg: "has not reported the status of ImageValidatingPolicy signet-app yet"}},
		"not ready": {with(ready(), func(in *Input) { in.Live = policy("ImageValidatingPolicy", "signet-app", ivpNotReady) }),
			want{status: "False", reason: trustv1alpha1.ReasonPolicyNotReady, msg: "not ready: compile error"}},
		"ClusterPolicy not ready, message in a condition": {with(ready(), func(in *Input) {
			in.Desired, in.Live = nil, cpol(map[string]any{"ready": false, "conditions": []any{map[string]any{"status": "False", "message": "webhook down"}}})
		}), want{status: "False", reason: trustv1alpha1.ReasonPolicyNotReady, msg: "ClusterPolicy signet-app not ready: webhook down"}},
		"no status yet": {with(ready(), func(in *Input) { in.Desired, in.Live = nil, cpol(nil) }),
			want{status: "Unknown", reason: trustv1alpha1.ReasonPolicyStatusUnknown, msg: "has not reported the status of ClusterPolicy signet-app yet"}},
		"nothing in force": {Input{Registry: registry()}, want{status: "Unknown", reason: trustv1alpha1.ReasonPolicyStatusUnknown, msg: "no policy is in force"}},
	})
}

func TestSetRotationSafe(t *testing.T) {
	preview := func(p *trustv1alpha1.RotationPreview, pending bool) Input {
		return with(ready(), func(in *Input) { in.Ring, in.PreviewOn, in.Preview, in.PreviewPending = rotating, true, p, pending })
	}
	run(t, SetRotationSafe, trustv1alpha1.ConditionRotationSafe, cases{
		"preview off":   {with(preview(nil, false), func(in *Input) { in.PreviewOn = false }), want{absent: true}},
		"none retiring": {with(preview(nil, false), func(in *Input) { in.Ring = activeRing }), want{absent: true}},
		"first check":   {preview(nil, true), want{status: "Unknown", reason: trustv1alpha1.ReasonPreviewPending, msg: "checking the running images"}},
		"images at risk": {preview(&trustv1alpha1.RotationPreview{Images: 3, AtRisk: 1, Inconclusive: 1, AtRiskImages: []trustv1alpha1.AtRiskImage{
			{Image: "reg.example/app/a", Reason: "no signature"}, {Image: "reg.example/app/b", Reason: "could not be checked: timeout"}}}, false),
			want{status: "False", reason: trustv1alpha1.ReasonImagesAtRisk, msg: "1 of 3 running images are not signed by the keys that remain and will be denied when their Pods are next created after 2026-01-02T03:04:05Z: reg.example/app/a"}},
		"inconclusive": {preview(&trustv1alpha1.RotationPreview{Images: 2, Inconclusive: 1}, false),
			want{status: "Unknown", reason: trustv1alpha1.ReasonPreviewInconclusive, msg: "1 of 2 running images could not be checked"}},
		"re-checking": {preview(&trustv1alpha1.RotationPreview{Images: 2, Safe: 2}, true),
			want{status: "Unknown", reason: trustv1alpha1.ReasonPreviewPending, msg: "re-checking"}},
		"covered": {preview(&trustv1alpha1.RotationPreview{Images: 2, Safe: 2}, false),
			want{status: "True", reason: trustv1alpha1.ReasonRemainingKeysCover, msg: "all 2 running images are signed by the keys that remain after 2026-01-02T03:04:05Z"}},
	})
}

func TestSetAuditViolations(t *testing.T) {
	audit := func(reports *trustv1alpha1.ReportSummary) Input {
		return with(ready(), func(in *Input) {
			in.Registry = registry(func(tr *trustv1alpha1.TrustedRegistry) { tr.Spec.Action = trustv1alpha1.ActionAudit })
			in.Reports = reports
		})
	}
	run(t, SetAuditViolations, trustv1alpha1.ConditionAuditViolations, cases{
		"Enforce": {with(ready(), func(in *Input) { in.Reports = &trustv1alpha1.ReportSummary{Fail: 3} }), want{absent: true}},
		"Enforce after Audit": {with(ready(), func(in *Input) {
			in.Registry.Status.Conditions = []metav1.Condition{{Type: trustv1alpha1.ConditionAuditViolations, Status: "True"}}
		}), want{absent: true}},
		"no report API": {audit(nil), want{status: "Unknown", reason: trustv1alpha1.ReasonNoReportAPI, msg: "no Kyverno report API"}},
		"failing":       {audit(&trustv1alpha1.ReportSummary{Fail: 1, Error: 1, Pass: 4}), want{status: "True", reason: trustv1alpha1.ReasonViolationsFound, msg: "2 results fail the policy in Audit mode"}},
		"clean":         {audit(&trustv1alpha1.ReportSummary{Pass: 4}), want{status: "False", reason: trustv1alpha1.ReasonNoViolations, msg: "no failing resources"}},
	})
}

// TestSummaryConditions covers Ready, Reconciling and Stalled: each case is one row of
// what the rest of the status says.
func TestSummaryConditions(t *testing.T) {
	for name, tc := range map[string]struct {
		in                          Input
		ready, reconciling, stalled want
	}{
		"enforced": {ready(),
			want{status: "True", reason: trustv1alpha1.ReasonReady,
				msg: "ImageValidatingPolicy signet-app enforces signatures (1 required; 1 active) on reg.example/app/* in namespaces prod; images that match no restricting TrustedRegistry there are denied"},
			want{status: "False", reason: trustv1alpha1.ReasonReady},
			want{status: "False", reason: trustv1alpha1.ReasonReady}},
		"write failed": {with(ready(), func(in *Input) { in.ApplyErr = errors.New("apiserver down") }),
			want{status: "False", reason: trustv1alpha1.ReasonApplyFailed, msg: "apiserver down"},
			want{status: "True", reason: trustv1alpha1.ReasonProgressing, msg: "retrying after a failed write"},
			want{status: "False", reason: trustv1alpha1.ReasonProgressing}},
		"waiting for the shared policy": {with(ready(), func(in *Input) { in.Desired, in.Recorded = nil, true }),
			want{status: "False", reason: trustv1alpha1.ReasonSharedPolicyPending, msg: "waiting for the shared ImageValidatingPolicy"},
			want{status: "True", reason: trustv1alpha1.ReasonSharedPolicyPending},
			want{status: "False", reason: trustv1alpha1.ReasonSharedPolicyPending}},
		"invalid spec, last good kept": {with(ready(), func(in *Input) {
			in.Desired, in.Blocked, in.BlockedMsg = nil, trustv1alpha1.ReasonInvalidSpec, "bad pattern"
		}),
			want{status: "False", reason: trustv1alpha1.ReasonInvalidSpec, msg: "bad pattern; the last applied ImageValidatingPolicy signet-app stays in force unchanged"},
			want{status: "False", reason: trustv1alpha1.ReasonInvalidSpec},
			want{status: "True", reason: trustv1alpha1.ReasonInvalidSpec, msg: "bad pattern"}},
		"invalid spec, nothing enforced": {Input{Registry: registry(), Blocked: trustv1alpha1.ReasonInvalidSpec, BlockedMsg: "bad pattern"},
			want{status: "False", reason: trustv1alpha1.ReasonInvalidSpec, msg: "bad pattern; nothing is enforced for this TrustedRegistry"},
			want{status: "False", reason: trustv1alpha1.ReasonInvalidSpec},
			want{status: "True", reason: trustv1alpha1.ReasonInvalidSpec, msg: "bad pattern"}},
		"Kyverno reports it not ready": {with(ready(), func(in *Input) { in.Live = policy("ImageValidatingPolicy", "signet-app", ivpNotReady) }),
			want{status: "False", reason: trustv1alpha1.ReasonPolicyNotReady, msg: "compile error"},
			want{status: "False", reason: trustv1alpha1.ReasonPolicyNotReady},
			want{status: "True", reason: trustv1alpha1.ReasonPolicyNotReady, msg: "compile error"}},
		"Audit, pinning tags": {with(ready(), func(in *Input) {
			in.Registry = registry(func(tr *trustv1alpha1.TrustedRegistry) {
				tr.Spec.Action = trustv1alpha1.ActionAudit
				tr.Spec.Digest.Mutate = ptr.To(true)
			})
		}),
			want{status: "True", reason: trustv1alpha1.ReasonReady, msg: "audits (does not block) signatures (1 required; 1 active) on reg.example/app/* in namespaces prod; images that match no restricting TrustedRegistry there are reported; tags are pinned to the verified digest"},
			want{status: "False", reason: trustv1alpha1.ReasonReady},
			want{status: "False", reason: trustv1alpha1.ReasonReady}},
	} {
		t.Run(name, func(t *testing.T) {
			for condType, c := range map[string]struct {
				set  func(*trustv1alpha1.TrustedRegistryStatus, Input)
				want want
			}{
				trustv1alpha1.ConditionReady:       {SetReady, tc.ready},
				trustv1alpha1.ConditionReconciling: {SetReconciling, tc.reconciling},
				trustv1alpha1.ConditionStalled:     {SetStalled, tc.stalled},
			} {
				st := tc.in.Registry.Status.DeepCopy()
				c.set(st, tc.in)
				c.want.check(t, st, condType)
			}
		})
	}
}

// TestCompute checks the fields Compute fills around the conditions, and that it sets
// every condition once, in a stable order.
func TestCompute(t *testing.T) {
	in := with(ready(), func(in *Input) {
		in.Desired = nil
		in.Live = policy("ImageValidatingPolicy", "signet.ivp.enforce", ivpReady)
		in.Shared = &Placement{Kind: "ImageValidatingPolicy", Name: "signet.ivp.enforce", Branch: "b2"}
		in.Recorded, in.InForce = true, true
		in.Reports = &trustv1alpha1.ReportSummary{Pass: 2}
		in.Denials = &trustv1alpha1.BlockedSummary{Count: 1}
		in.Registry.Status.RotationPreview = &trustv1alpha1.RotationPreview{Images: 1}
		in.Registry.Status.Conditions = []metav1.Condition{{Type: trustv1alpha1.ConditionRotationSafe, Status: "True"}}
	})
	st := Compute(in)
	if st.ObservedGeneration != 3 || st.KeySummary != "1 active" || len(st.Keys) != 1 {
		t.Fatalf("observedGeneration %d, keySummary %q, keys %v", st.ObservedGeneration, st.KeySummary, st.Keys)
	}
	if p := st.Policy; p == nil || p.Name != "signet.ivp.enforce" || p.Branch != "b2" || p.APIVersion != "policies.kyverno.io/v1" {
		t.Fatalf("policy %+v, want signet.ivp.enforce branch b2", p)
	}
	if r := st.Reports; r == nil || r.Pass != 2 || r.Blocked == nil || r.Blocked.Count != 1 {
		t.Fatalf("reports %+v, want the report summary with the blocked count", r)
	}
	if in.Reports.Blocked != nil {
		t.Fatal("Compute changed its input")
	}
	if st.RotationPreview != nil {
		t.Fatal("rotation preview kept with no key retiring")
	}
	var types []string
	for _, c := range st.Conditions {
		types = append(types, c.Type)
	}
	if got, exp := strings.Join(types, ","), "KeysResolved,PolicyApplied,PolicyReady,Ready,Reconciling,Stalled"; got != exp {
		t.Fatalf("conditions %s, want %s", got, exp)
	}
	if again := Compute(in); !equalStatus(st, again) {
		t.Fatal("Compute is not deterministic")
	}
}

func equalStatus(a, b trustv1alpha1.TrustedRegistryStatus) bool {
	if len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message {
			return false
		}
	}
	return a.KeySummary == b.KeySummary
}
