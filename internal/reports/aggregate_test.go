package reports

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	policyreportv1alpha2 "github.com/kyverno/kyverno/api/policyreport/v1alpha2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/signet-operator/signet/api/v1alpha1"
)

func ts(sec int64) *metav1.Time {
	t := metav1.NewTime(time.Unix(sec, 0).UTC())
	return &t
}

func TestAggregateBothAPIs(t *testing.T) {
	objects := []*policyreportv1alpha2.PolicyReport{
		podReport("prod", "web-1",
			cpolResult("signet-prod", "verify-signature", ResultFail, "failed to verify image ghcr.io/org/app:v1: no matching signatures", 1000),
			cpolResult("signet-prod", "restrict-registries", ResultPass, "validation rule 'restrict-registries' passed.", 1001),
			cpolResult("disallow-latest", "validate-tag", ResultFail, "validation error: latest", 9999), // not ours, newer
		),
		podReport("prod", "web-2",
			cpolResult("signet-prod", "verify-signature", ResultPass, "verified image signatures for ghcr.io/org/app:v2", 1002),
			cpolResult("signet-prod", "verify-signature", ResultError, "failed to verify image ghcr.io/org/down:v1: GET https://ghcr.io/v2/: dial tcp: i/o timeout", 1003),
		),
		podReport("dev", "job-1",
			ivpResult("signet-dev", ResultWarn, "image ghcr.io/org/x:v1 is not verified: no policy performed a signature or attestation check on it", 1004),
			ivpResult("signet-dev", ResultSkip, "rule is skipped due to policy exception: dev/allow", 1005),
			ivpResult("signet-staging", ResultFail, "image ghcr.io/org/y:v1 failed signature or attestation verification", 5000), // another TrustedRegistry's
		),
		podReport("dev", "job-2",
			ivpResult("signet-dev", ResultFail, "image ghcr.io/org/z:v1 failed signature or attestation verification", 1006),
		),
	}
	policies := map[string]bool{"signet-prod": true, "signet-dev": true}
	want := v1alpha1.ReportSummary{
		Pass: 2, Fail: 2, Warn: 1, Error: 1, Skip: 1,
		Updated: ts(1006),
		Failing: []v1alpha1.FailingResource{
			{Namespace: "dev", Kind: "Pod", Name: "job-2", Image: "ghcr.io/org/z:v1", Rule: "signet-dev", Message: "image ghcr.io/org/z:v1 failed signature or attestation verification"},
			{Namespace: "prod", Kind: "Pod", Name: "web-1", Image: "ghcr.io/org/app:v1", Rule: "verify-signature", Message: "failed to verify image ghcr.io/org/app:v1: no matching signatures"},
			{Namespace: "prod", Kind: "Pod", Name: "web-2", Image: "ghcr.io/org/down:v1", Rule: "verify-signature", Message: "failed to verify image ghcr.io/org/down:v1: GET https://ghcr.io/v2/: dial tcp: i/o timeout"},
		},
	}

	var wg, or, shrunk []Report
	for _, o := range objects {
		wg = append(wg, FromPolicyReport(o, nil))
		or = append(or, FromOpenReport(o.ToOpenReports(), nil))
		c := o.DeepCopy()
		ShrinkPolicyReport(c, IsSignetPolicy)
		shrunk = append(shrunk, FromPolicyReport(c, IsSignetPolicy))
	}
	for name, reports := range map[string][]Report{"wgpolicyk8s": wg, "openreports": or, "shrunk": shrunk} {
		got := Aggregate(reports, policies, MaxFailing)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, want)
		}
		if !Equal(got, want) {
			t.Errorf("%s: Equal false", name)
		}
	}
}

func TestAggregateCounts(t *testing.T) {
	rs := []Result{
		{Policy: "signet-a", Result: ResultPass, Timestamp: 5},
		{Policy: "signet-a", Result: ResultPass, Timestamp: 7},
		{Policy: "signet-a", Result: ResultWarn, Timestamp: 3},
		{Policy: "signet-a", Result: ResultSkip},
		{Policy: "signet-a", Result: "", Timestamp: 100},        // no value: not counted
		{Policy: "signet-a", Result: "Fail", Timestamp: 100},    // unknown value
		{Policy: "signet-b", Result: ResultFail, Timestamp: 50}, // not in the set
	}
	got := Aggregate([]Report{{Results: rs}}, map[string]bool{"signet-a": true}, MaxFailing)
	want := v1alpha1.ReportSummary{Pass: 2, Warn: 1, Skip: 1, Updated: ts(7)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestAggregateEmpty(t *testing.T) {
	reports := []Report{{Results: []Result{{Policy: "signet-a", Result: ResultFail, Kind: "Pod", Name: "p", Timestamp: 1}}}}
	for name, got := range map[string]v1alpha1.ReportSummary{
		"no reports":        Aggregate(nil, map[string]bool{"signet-a": true}, MaxFailing),
		"nil policies":      Aggregate(reports, nil, MaxFailing),
		"policy not in set": Aggregate(reports, map[string]bool{"signet-b": true}, MaxFailing),
		"no results":        Aggregate([]Report{{Name: "r"}}, map[string]bool{"signet-a": true}, MaxFailing),
	} {
		if !reflect.DeepEqual(got, v1alpha1.ReportSummary{}) {
			t.Errorf("%s: %+v, want zero (Updated nil, Failing nil)", name, got)
		}
	}
	// Counted results without timestamp: Updated stays nil.
	got := Aggregate([]Report{{Results: []Result{{Policy: "signet-a", Result: ResultPass}}}}, map[string]bool{"signet-a": true}, 10)
	if got.Updated != nil || got.Pass != 1 {
		t.Errorf("%+v", got)
	}
}

func TestAggregateFailingOneEntryPerKey(t *testing.T) {
	// ClusterPolicy verifyImages writes one result per image, all with the same rule.
	pod := func(r Result) Result {
		r.Policy, r.Kind, r.Namespace, r.Name = "signet-a", "Pod", "prod", "web"
		return r
	}
	rs := []Result{
		pod(Result{Rule: "verify", Result: ResultError, Image: "a.io/x:1", Message: "failed to verify image a.io/x:1: timeout"}),
		pod(Result{Rule: "verify", Result: ResultFail, Image: "c.io/z:1", Message: "failed to verify image c.io/z:1: no signatures"}),
		pod(Result{Rule: "verify", Result: ResultFail, Image: "b.io/y:1", Message: "failed to verify image b.io/y:1: no signatures"}),
		pod(Result{Rule: "verify", Result: ResultPass, Image: "0.io/ok:1"}),
		pod(Result{Rule: "restrict", Result: ResultFail, Message: "validation error:   images must\n\tcome from a.io  "}),
		pod(Result{Rule: "restrict", Result: ResultFail, Message: strings.Repeat("é", 300)}),
	}
	got := Aggregate([]Report{{Results: rs}}, map[string]bool{"signet-a": true}, 10)
	if got.Fail != 4 || got.Error != 1 || got.Pass != 1 {
		t.Errorf("counts %+v", got)
	}
	want := []v1alpha1.FailingResource{
		{Namespace: "prod", Kind: "Pod", Name: "web", Rule: "restrict", Message: "validation error: images must come from a.io"},
		{Namespace: "prod", Kind: "Pod", Name: "web", Rule: "verify", Image: "b.io/y:1", Message: "failed to verify image b.io/y:1: no signatures"},
	}
	if !reflect.DeepEqual(got.Failing, want) {
		t.Errorf("failing\n got %+v\nwant %+v", got.Failing, want)
	}
}

func TestAggregateFailingBound(t *testing.T) {
	var rs []Result
	for i := 24; i >= 0; i-- {
		rs = append(rs, Result{Policy: "signet-a", Rule: "verify", Result: ResultError, Kind: "Pod", Namespace: "a-errors", Name: fmt.Sprintf("p%02d", i)})
		rs = append(rs, Result{Policy: "signet-a", Rule: "verify", Result: ResultFail, Kind: "Pod", Namespace: "b-fails", Name: fmt.Sprintf("p%02d", i)})
	}
	rs = append(rs, Result{Policy: "signet-a", Rule: "verify", Result: ResultFail}) // no resource: counted, not listed
	reports := []Report{{Results: rs}}
	names := func(f []v1alpha1.FailingResource) string {
		var s []string
		for _, e := range f {
			s = append(s, e.Namespace+"/"+e.Name)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		max  int
		want string
	}{
		{0, ""},
		{-1, ""},
		{3, "b-fails/p00,b-fails/p01,b-fails/p02"},
		{10, "b-fails/p00,b-fails/p01,b-fails/p02,b-fails/p03,b-fails/p04,b-fails/p05,b-fails/p06,b-fails/p07,b-fails/p08,b-fails/p09"},
		{1000, "b-fails/p00,b-fails/p01,b-fails/p02,b-fails/p03,b-fails/p04,b-fails/p05,b-fails/p06,b-fails/p07,b-fails/p08,b-fails/p09"},
	} {
		got := Aggregate(reports, map[string]bool{"signet-a": true}, tc.max)
		if got.Fail != 26 || got.Error != 25 {
			t.Errorf("max %d: counts %+v", tc.max, got)
		}
		if n := names(got.Failing); n != tc.want {
			t.Errorf("max %d: failing %s, want %s", tc.max, n, tc.want)
		}
	}

	// Errors fill the list when there are not enough fails; the list is sorted by
	// namespace, so they come first.
	few := []Result{
		{Policy: "signet-a", Rule: "verify", Result: ResultFail, Kind: "Pod", Namespace: "b-fails", Name: "only"},
	}
	few = append(few, rs[:8]...) // 4 errors, 4 fails
	got := Aggregate([]Report{{Results: few}}, map[string]bool{"signet-a": true}, 7)
	if n := names(got.Failing); n != "a-errors/p21,a-errors/p22,b-fails/only,b-fails/p21,b-fails/p22,b-fails/p23,b-fails/p24" {
		t.Errorf("fails then errors: %s", n)
	}
	got = Aggregate([]Report{{Results: few}}, map[string]bool{"signet-a": true}, 6)
	if n := names(got.Failing); n != "a-errors/p21,b-fails/only,b-fails/p21,b-fails/p22,b-fails/p23,b-fails/p24" {
		t.Errorf("fails then errors: %s", n)
	}
}

func TestAggregateFuncRuleMatcher(t *testing.T) {
	// A consolidated policy holding several TrustedRegistries, told apart by rule name.
	rs := []Result{
		{Policy: "signet-consolidated", Rule: "ghcr-verify", Result: ResultFail, Kind: "Pod", Namespace: "a", Name: "p1", Timestamp: 10},
		{Policy: "signet-consolidated", Rule: "ghcr-restrict", Result: ResultPass, Timestamp: 11},
		{Policy: "signet-consolidated", Rule: "quay-verify", Result: ResultFail, Kind: "Pod", Namespace: "a", Name: "p2", Timestamp: 12},
		{Policy: "signet-consolidated", Rule: "autogen-ghcr-verify", Result: ResultPass, Timestamp: 9},
		{Policy: "other", Rule: "ghcr-verify", Result: ResultFail, Timestamp: 13},
	}
	match := func(policy, rule string) bool {
		return policy == "signet-consolidated" && strings.HasPrefix(strings.TrimPrefix(rule, "autogen-"), "ghcr-")
	}
	got := AggregateFunc([]Report{{Results: rs}}, match, 10)
	want := v1alpha1.ReportSummary{Pass: 2, Fail: 1, Updated: ts(11), Failing: []v1alpha1.FailingResource{{Namespace: "a", Kind: "Pod", Name: "p1", Rule: "ghcr-verify"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	// nil matcher accepts everything; PolicySet matches Aggregate.
	if all := AggregateFunc([]Report{{Results: rs}}, nil, 10); all.Pass != 2 || all.Fail != 3 {
		t.Errorf("nil matcher: %+v", all)
	}
	set := map[string]bool{"signet-consolidated": true}
	if a, b := Aggregate([]Report{{Results: rs}}, set, 10), AggregateFunc([]Report{{Results: rs}}, PolicySet(set), 10); !reflect.DeepEqual(a, b) {
		t.Errorf("Aggregate %+v != AggregateFunc(PolicySet) %+v", a, b)
	}
}

// reference computes the summary the slow, obvious way: collect, dedupe, sort.
func reference(reports []Report, policies map[string]bool, maxFailing int) v1alpha1.ReportSummary {
	var s v1alpha1.ReportSummary
	var newest int64
	type cand struct {
		rank int
		f    v1alpha1.FailingResource
		raw  string
	}
	best := map[[4]string]cand{}
	for _, r := range reports {
		for _, x := range r.Results {
			if !policies[x.Policy] {
				continue
			}
			rank := -1
			switch x.Result {
			case ResultPass:
				s.Pass++
			case ResultFail:
				s.Fail++
				rank = 0
			case ResultWarn:
				s.Warn++
			case ResultError:
				s.Error++
				rank = 1
			case ResultSkip:
				s.Skip++
			default:
				continue
			}
			newest = max(newest, x.Timestamp)
			if rank < 0 || x.Kind == "" && x.Name == "" {
				continue
			}
			k := [4]string{x.Namespace, x.Kind, x.Name, x.Rule}
			c := cand{rank, v1alpha1.FailingResource{Namespace: x.Namespace, Kind: x.Kind, Name: x.Name, Rule: x.Rule, Image: x.Image}, x.Message}
			if old, ok := best[k]; !ok || cmp.Or(cmp.Compare(c.rank, old.rank), cmp.Compare(c.f.Image, old.f.Image), cmp.Compare(c.raw, old.raw)) < 0 {
				best[k] = c
			}
		}
	}
	if newest > 0 {
		s.Updated = ts(newest)
	}
	var all []cand
	for _, c := range best {
		all = append(all, c)
	}
	slices.SortFunc(all, func(a, b cand) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), cmp.Compare(a.f.Namespace, b.f.Namespace), cmp.Compare(a.f.Kind, b.f.Kind), cmp.Compare(a.f.Name, b.f.Name), cmp.Compare(a.f.Rule, b.f.Rule))
	})
	all = all[:min(len(all), maxFailing, MaxFailing)]
	for _, c := range all {
		c.f.Message = strings.Join(strings.Fields(c.raw), " ")
		s.Failing = append(s.Failing, c.f)
	}
	slices.SortFunc(s.Failing, compareFailing)
	return s
}

// shuffled returns the same results, shuffled within and across reports.
func shuffled(rng *rand.Rand, reports []Report) []Report {
	var all []Result
	for _, r := range reports {
		all = append(all, r.Results...)
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	var out []Report
	for len(all) > 0 {
		n := min(len(all), 1+rng.IntN(30))
		out = append(out, Report{Results: all[:n:n]})
		all = all[n:]
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func TestAggregateDeterministicUnderShuffle(t *testing.T) {
	policies := map[string]bool{"signet-a": true, "signet-b": true}
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 42))
		reports := randomReports(rng, 200, 12)
		for _, k := range []int{1, 3, 10} {
			want := reference(reports, policies, k)
			first := Aggregate(reports, policies, k)
			if !reflect.DeepEqual(first, want) {
				t.Fatalf("seed %d k %d: differs from reference\n got %+v\nwant %+v", seed, k, first, want)
			}
			for range 5 {
				got := Aggregate(shuffled(rng, reports), policies, k)
				if !reflect.DeepEqual(got, first) || !Equal(got, first) {
					t.Fatalf("seed %d k %d: order changed the summary\n got %+v\nwant %+v", seed, k, got, first)
				}
			}
		}
	}
}

func TestAggregate10kResults(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	reports := randomReports(rng, 1000, 19) // about 10k results
	n := 0
	for _, r := range reports {
		n += len(r.Results)
	}
	if n < 9000 {
		t.Fatalf("only %d results", n)
	}
	policies := map[string]bool{"signet-a": true, "signet-c": true}
	got := Aggregate(reports, policies, MaxFailing)
	want := reference(reports, policies, MaxFailing)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	total := got.Pass + got.Fail + got.Warn + got.Error + got.Skip
	if total < int32(n)/3 || len(got.Failing) != MaxFailing {
		t.Errorf("%d of %d results counted, %d failing listed", total, n, len(got.Failing))
	}
	if got2 := Aggregate(shuffled(rng, reports), policies, MaxFailing); !reflect.DeepEqual(got2, got) {
		t.Error("shuffle changed the summary")
	}
}

func TestEqual(t *testing.T) {
	base := func() v1alpha1.ReportSummary {
		return v1alpha1.ReportSummary{
			Pass: 1, Fail: 2, Warn: 3, Error: 4, Skip: 5, Updated: ts(100),
			Failing: []v1alpha1.FailingResource{{Namespace: "n", Kind: "Pod", Name: "p", Image: "i", Rule: "r", Message: "m"}},
		}
	}
	if !Equal(base(), base()) {
		t.Fatal("equal summaries differ")
	}
	sub := base()
	sub.Updated = &metav1.Time{Time: time.Unix(100, 999).In(time.FixedZone("x", 3600))}
	if !Equal(base(), sub) {
		t.Error("same second in another zone differs")
	}
	emptyA, emptyB := v1alpha1.ReportSummary{}, v1alpha1.ReportSummary{Failing: []v1alpha1.FailingResource{}}
	if !Equal(emptyA, emptyB) {
		t.Error("nil and empty failing differ")
	}
	for name, mod := range map[string]func(*v1alpha1.ReportSummary){
		"pass":          func(s *v1alpha1.ReportSummary) { s.Pass++ },
		"fail":          func(s *v1alpha1.ReportSummary) { s.Fail++ },
		"warn":          func(s *v1alpha1.ReportSummary) { s.Warn++ },
		"error":         func(s *v1alpha1.ReportSummary) { s.Error++ },
		"skip":          func(s *v1alpha1.ReportSummary) { s.Skip++ },
		"updated nil":   func(s *v1alpha1.ReportSummary) { s.Updated = nil },
		"updated later": func(s *v1alpha1.ReportSummary) { s.Updated = ts(101) },
		"failing gone":  func(s *v1alpha1.ReportSummary) { s.Failing = nil },
		"failing extra": func(s *v1alpha1.ReportSummary) { s.Failing = append(s.Failing, s.Failing[0]) },
		"message":       func(s *v1alpha1.ReportSummary) { s.Failing[0].Message = "other" },
		"image":         func(s *v1alpha1.ReportSummary) { s.Failing[0].Image = "" },
		"namespace":     func(s *v1alpha1.ReportSummary) { s.Failing[0].Namespace = "" },
	} {
		s := base()
		mod(&s)
		if Equal(base(), s) || Equal(s, base()) {
			t.Errorf("%s: change not seen", name)
		}
	}
	b := base()
	if !EqualPtr(nil, nil) || EqualPtr(&b, nil) || EqualPtr(nil, &b) || !EqualPtr(&b, &b) {
		t.Error("EqualPtr")
	}
}
