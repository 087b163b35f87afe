package controllers

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers/status"
)

// computeStatus is pure: it derives the whole status from what was observed, the plan and
// the outcome of the writes; the conditions are set by controllers/status, one setter each.
func computeStatus(obs *observed, p plan, applyErr error) trustv1alpha1.TrustedRegistryStatus {
	in := status.Input{
		Registry:       obs.registry,
		Ring:           p.ring,
		KeyErrors:      len(obs.keyErrs) > 0,
		Blocked:        p.blocked,
		BlockedMsg:     p.blockedMsg,
		ApplyErr:       applyErr,
		Engine:         p.engine,
		Desired:        p.policy,
		Recorded:       p.input != nil,
		InForce:        p.inForce(obs),
		SharedErr:      obs.sharedErr,
		Reports:        obs.reports,
		Denials:        obs.blocked,
		Coverage:       obs.coverage,
		PreviewOn:      obs.previewOn,
		Preview:        obs.preview,
		PreviewPending: obs.previewPending,
	}
	if p.engine != "" {
		in.Live = obs.live[p.engine]
	}
	if sp := obs.shared[p.engine]; sp != nil {
		in.Shared = &status.Placement{Kind: sp.policy.GetKind(), Name: sp.policy.GetName(), Branch: sp.entry.branch}
	}
	return status.Compute(in)
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
