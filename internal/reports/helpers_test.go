package reports

import (
	"fmt"
	"math/rand/v2"

	policyreportv1alpha2 "github.com/kyverno/kyverno/api/policyreport/v1alpha2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Sources Kyverno v1.19 writes (pkg/utils/report/source.go).
const (
	sourceClusterPolicy = "kyverno"
	sourceIVP           = "KyvernoImageValidatingPolicy"
)

// podReport builds a PolicyReport the way Kyverno's reports-controller writes one: named
// by the Pod's UID, in its namespace, owned by the Pod, labelled managed-by kyverno, with
// scope = the Pod and a summary over all results.
func podReport(ns, pod string, results ...policyreportv1alpha2.PolicyReportResult) *policyreportv1alpha2.PolicyReport {
	uid := types.UID(fmt.Sprintf("%08x-0000-4000-8000-%012x", len(ns)+len(pod), hash(ns+"/"+pod)))
	r := &policyreportv1alpha2.PolicyReport{
		TypeMeta: metav1.TypeMeta{APIVersion: WGPolicyAPIVersion, Kind: "PolicyReport"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      string(uid),
			Namespace: ns,
			Labels:    map[string]string{"app.kubernetes.io/managed-by": "kyverno"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Pod", Name: pod, UID: uid,
			}},
			Annotations: map[string]string{"audit.kyverno.io/last-applied": "x"},
			ManagedFields: []metav1.ManagedFieldsEntry{{
				Manager: "reports-controller", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: WGPolicyAPIVersion,
			}},
		},
		Scope: &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: pod, UID: uid},
	}
	r.Results = results
	r.Summary = summaryOf(wgResults, results)
	return r
}

func hash(s string) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h & 0xffffffffffff
}

// cpolResult is a ClusterPolicy result as Kyverno writes it.
func cpolResult(policy, rule, result, message string, ts int64) policyreportv1alpha2.PolicyReportResult {
	return policyreportv1alpha2.PolicyReportResult{
		Source:     sourceClusterPolicy,
		Policy:     policy,
		Rule:       rule,
		Result:     policyreportv1alpha2.PolicyResult(result),
		Message:    message,
		Scored:     true,
		Properties: map[string]string{"process": "background scan"},
		Timestamp:  metav1.Timestamp{Seconds: ts},
	}
}

// ivpResult is an ImageValidatingPolicy result: the rule is named after the policy.
func ivpResult(policy, result, message string, ts int64) policyreportv1alpha2.PolicyReportResult {
	r := cpolResult(policy, policy, result, message, ts)
	r.Source = sourceIVP
	return r
}

// randomReports builds n compact reports with up to perReport results each, from a small
// vocabulary so that keys collide.
func randomReports(rng *rand.Rand, n, perReport int) []Report {
	policies := []string{"signet-a", "signet-b", "other", "signet-c"}
	rules := []string{"verify-signature", "restrict-registries", "autogen-verify-signature"}
	values := []string{ResultPass, ResultFail, ResultWarn, ResultError, ResultSkip, ResultFail, ResultError}
	out := make([]Report, n)
	for i := range out {
		ns := fmt.Sprintf("ns-%d", rng.IntN(5))
		kind := []string{"Pod", "Deployment"}[rng.IntN(2)]
		name := fmt.Sprintf("app-%d", rng.IntN(40))
		rs := make([]Result, rng.IntN(perReport+1))
		for j := range rs {
			img := fmt.Sprintf("ghcr.io/org/img-%d:v1", rng.IntN(4))
			rs[j] = Result{
				Policy:    policies[rng.IntN(len(policies))],
				Rule:      rules[rng.IntN(len(rules))],
				Result:    values[rng.IntN(len(values))],
				Message:   fmt.Sprintf("failed to verify image %s: msg %d\n  detail", img, rng.IntN(3)),
				Image:     img,
				Kind:      kind,
				Namespace: ns,
				Name:      name,
				Timestamp: 1_700_000_000 + rng.Int64N(1000),
			}
		}
		out[i] = Report{Namespace: ns, Name: fmt.Sprintf("r-%d", i), Results: rs}
	}
	return out
}
