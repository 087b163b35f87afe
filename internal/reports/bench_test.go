package reports

import (
	"fmt"
	"math/rand/v2"
	"testing"

	policyreportv1alpha2 "github.com/kyverno/kyverno/api/policyreport/v1alpha2"
)

// benchReports builds n Pod reports of perReport results each, as the cache holds them
// when no transform filters them: half of the results are Signet's (two TrustedRegistries,
// two rules each), half other policies'; about one Signet result in ten fails and one in
// fifty errors. Strings repeated across reports are shared, as after Transform.
func benchReports(n, perReport int) []Report {
	rng := rand.New(rand.NewPCG(1, 2))
	ours := []string{"signet-prod", "signet-dev"}
	rules := []string{"verify-signature", "restrict-registries"}
	others := []string{"disallow-latest", "require-labels", "require-requests", "pss-baseline", "no-host-path"}
	namespaces := make([]string, 50)
	for i := range namespaces {
		namespaces[i] = fmt.Sprintf("team-%02d", i)
	}
	failMsg := make([]string, 100)
	images := make([]string, 100)
	for i := range failMsg {
		images[i] = fmt.Sprintf("ghcr.io/org/app-%d:v1", i)
		failMsg[i] = "failed to verify image " + images[i] + ": .attestors[0].entries[0].keys: no matching signatures"
	}
	out := make([]Report, n)
	for i := range out {
		ns := namespaces[rng.IntN(len(namespaces))]
		name := fmt.Sprintf("app-%d-%05d", i%97, i)
		rs := make([]Result, perReport)
		for j := range rs {
			r := Result{Kind: "Pod", Namespace: ns, Name: name, Timestamp: 1_750_000_000 + rng.Int64N(86400), Result: ResultPass}
			if j%2 == 0 {
				r.Policy, r.Rule = ours[rng.IntN(2)], rules[(j/2)%2]
				switch x := rng.IntN(100); {
				case x < 10:
					img := rng.IntN(len(images))
					r.Result, r.Image, r.Message = ResultFail, images[img], failMsg[img]
				case x < 12:
					r.Result, r.Message = ResultError, "failed to verify image ghcr.io/org/x:v1: dial tcp: i/o timeout"
				}
			} else {
				r.Policy, r.Rule = others[rng.IntN(len(others))], "check"
			}
			rs[j] = r
		}
		out[i] = Report{Namespace: ns, Name: fmt.Sprintf("uid-%d", i), Results: rs}
	}
	return out
}

// BenchmarkAggregate: 10k reports x 20 results, one TrustedRegistry's policy set.
func BenchmarkAggregate(b *testing.B) {
	reports := benchReports(10_000, 20)
	policies := map[string]bool{"signet-prod": true}
	b.ReportAllocs()
	b.ResetTimer()
	var s int32
	for b.Loop() {
		s += Aggregate(reports, policies, MaxFailing).Fail
	}
	if s == 0 {
		b.Fatal("nothing failed")
	}
}

// BenchmarkAggregateFunc: the same with a policy-and-rule matcher.
func BenchmarkAggregateFunc(b *testing.B) {
	reports := benchReports(10_000, 20)
	match := func(policy, rule string) bool { return policy == "signet-prod" && rule == "verify-signature" }
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		AggregateFunc(reports, match, MaxFailing)
	}
}

// BenchmarkShrinkAndConvert: one Kyverno-shaped PolicyReport (2 of 6 results Signet's)
// through the cache transform and the converter.
func BenchmarkShrinkAndConvert(b *testing.B) {
	src := mixedReport()
	objs := make([]*policyreportv1alpha2.PolicyReport, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if len(objs) == 0 {
			b.StopTimer()
			for range cap(objs) {
				objs = append(objs, src.DeepCopy())
			}
			b.StartTimer()
		}
		o := objs[len(objs)-1]
		objs = objs[:len(objs)-1]
		ShrinkPolicyReport(o, IsSignetPolicy)
		_ = FromPolicyReport(o, IsSignetPolicy)
	}
}
