package reports

import (
	"math"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// MaxFailing is the most entries status.reports.failing may hold (the CRD's maxItems).
// Aggregate lists at most this many, whatever it is asked for.
const MaxFailing = 10

// FailingMessageBytes bounds a message in status.reports.failing.
const FailingMessageBytes = 256

// PolicySet returns a matcher for AggregateFunc that accepts every rule of the named
// policies.
func PolicySet(policies map[string]bool) func(policy, rule string) bool {
	return func(policy, _ string) bool { return policies[policy] }
}

// ResultMatcher accepts results one by one, when policy and rule are not enough to tell
// whose a result is (a shared policy holds many TrustedRegistries; its messages name them).
type ResultMatcher func(r *Result) bool

// Aggregate summarises the results of reports whose policy is in policies (the policies
// generated for one TrustedRegistry). See AggregateFunc.
func Aggregate(reports []Report, policies map[string]bool, maxFailing int) v1alpha1.ReportSummary {
	if len(policies) == 0 {
		return v1alpha1.ReportSummary{}
	}
	return AggregateFunc(reports, PolicySet(policies), maxFailing)
}

// AggregateFunc summarises the results accepted by match (nil accepts all), for the day
// a consolidated policy holds several TrustedRegistries, told apart by rule name.
//
//   - Pass, Fail, Warn, Error and Skip count accepted results by value; a result with
//     another value is not counted. Counts saturate at MaxInt32.
//   - Updated is the newest timestamp among counted results, in UTC, at second
//     precision; nil when no counted result has a timestamp.
//   - Failing lists resources with a fail or error result: a result that could not be
//     verified (error, e.g. registry unreachable) leaves an image unverified just as a
//     failed one does. There is one entry per (namespace, kind, name, rule); when a key
//     has several results (ClusterPolicy verifyImages writes one per image), fail wins
//     over error, then the smallest (image, message). When there are more keys than
//     fit, fail entries are kept before error entries, then the smallest by (namespace,
//     kind, name, rule). At most min(maxFailing, MaxFailing) entries, sorted by
//     namespace, kind, name, rule, image, message. Messages are trimmed, runs of white
//     space become one space, and they are cut to FailingMessageBytes. Results without a
//     resource (no scope, no subject) are counted but not listed.
//
// The summary depends only on the multiset of results, never on their order.
func AggregateFunc(reports []Report, match func(policy, rule string) bool, maxFailing int) v1alpha1.ReportSummary {
	return aggregate(reports, match, nil, maxFailing)
}

// AggregateResults is AggregateFunc with a matcher that sees each whole result.
func AggregateResults(reports []Report, match ResultMatcher, maxFailing int) v1alpha1.ReportSummary {
	return aggregate(reports, nil, match, maxFailing)
}

func aggregate(reports []Report, match func(policy, rule string) bool, matchResult ResultMatcher, maxFailing int) v1alpha1.ReportSummary {
	var counts [5]int64 // pass, fail, warn, error, skip
	var newest int64
	sel := selector{k: min(max(maxFailing, 0), MaxFailing)}

	// Results of one report, and reports in a row, mostly share policy and rule: remember
	// the last decision.
	var lastPolicy, lastRule string
	lastOK, haveLast := false, false

	for i := range reports {
		rs := reports[i].Results
		for j := range rs {
			r := &rs[j]
			var ok bool
			if haveLast && r.Policy == lastPolicy && r.Rule == lastRule {
				ok = lastOK
			} else {
				ok = match == nil || match(r.Policy, r.Rule)
				lastPolicy, lastRule, lastOK, haveLast = r.Policy, r.Rule, ok, true
			}
			if ok && matchResult != nil {
				ok = matchResult(r)
			}
			if !ok {
				continue
			}
			switch r.Result {
			case ResultPass:
				counts[0]++
			case ResultFail:
				counts[1]++
				sel.offer(r, 0)
			case ResultWarn:
				counts[2]++
			case ResultError:
				counts[3]++
				sel.offer(r, 1)
			case ResultSkip:
				counts[4]++
			default:
				continue
			}
			if r.Timestamp > newest {
				newest = r.Timestamp
			}
		}
	}

	s := v1alpha1.ReportSummary{
		Pass:  clamp32(counts[0]),
		Fail:  clamp32(counts[1]),
		Warn:  clamp32(counts[2]),
		Error: clamp32(counts[3]),
		Skip:  clamp32(counts[4]),
	}
	if newest > 0 {
		t := metav1.NewTime(time.Unix(newest, 0).UTC())
		s.Updated = &t
	}
	s.Failing = sel.result()
	return s
}

func clamp32(n int64) int32 {
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(n) //nolint:gosec // n is a non-negative count, clamped to MaxInt32 above
}

// candidate is a fail or error result, ordered by rank (0 fail, 1 error), namespace,
// kind, name, rule, image, message.
type candidate struct {
	rank                                        uint8
	namespace, kind, name, rule, image, message string
}

func (a *candidate) less(b *candidate) bool {
	if a.rank != b.rank {
		return a.rank < b.rank
	}
	if c := strings.Compare(a.namespace, b.namespace); c != 0 {
		return c < 0
	}
	if c := strings.Compare(a.kind, b.kind); c != 0 {
		return c < 0
	}
	if c := strings.Compare(a.name, b.name); c != 0 {
		return c < 0
	}
	if c := strings.Compare(a.rule, b.rule); c != 0 {
		return c < 0
	}
	if c := strings.Compare(a.image, b.image); c != 0 {
		return c < 0
	}
	return a.message < b.message
}

func (a *candidate) sameKey(b *candidate) bool {
	return a.name == b.name && a.namespace == b.namespace && a.kind == b.kind && a.rule == b.rule
}

// selector keeps, in one pass, the k keys whose best candidate is smallest, with that
// best candidate. k is at most MaxFailing, so linear scans are cheapest.
//
// Invariant: sel holds the current best candidate of each of its keys, and every key
// seen but not held has a best candidate greater than all of sel. A key evicted at
// max(sel) stays out unless it later offers something below max(sel), which can only
// shrink; so at the end sel holds the k smallest bests.
type selector struct {
	k    int
	sel  []candidate
	maxI int // index of the greatest candidate in sel when len(sel) == k
}

func (s *selector) offer(r *Result, rank uint8) {
	if s.k == 0 || r.Kind == "" && r.Name == "" {
		return
	}
	c := candidate{rank: rank, namespace: r.Namespace, kind: r.Kind, name: r.Name, rule: r.Rule, image: r.Image, message: r.Message}
	full := len(s.sel) == s.k
	if full && !c.less(&s.sel[s.maxI]) {
		// Not below the greatest: neither a new key that fits nor an improvement of a
		// held key (whose best is at most the greatest).
		return
	}
	for i := range s.sel {
		if s.sel[i].sameKey(&c) {
			if c.less(&s.sel[i]) {
				s.sel[i] = c
				if full && i == s.maxI {
					s.findMax()
				}
			}
			return
		}
	}
	if !full {
		s.sel = append(s.sel, c)
		if len(s.sel) == s.k {
			s.findMax()
		}
		return
	}
	s.sel[s.maxI] = c
	s.findMax()
}

func (s *selector) findMax() {
	s.maxI = 0
	for i := 1; i < len(s.sel); i++ {
		if s.sel[s.maxI].less(&s.sel[i]) {
			s.maxI = i
		}
	}
}

func (s *selector) result() []v1alpha1.FailingResource {
	if len(s.sel) == 0 {
		return nil
	}
	out := make([]v1alpha1.FailingResource, len(s.sel))
	for i := range s.sel {
		c := &s.sel[i]
		out[i] = v1alpha1.FailingResource{
			Namespace: c.namespace,
			Kind:      c.kind,
			Name:      c.name,
			Image:     c.image,
			Rule:      c.rule,
			Message:   cleanMessage(c.message),
		}
	}
	slices.SortFunc(out, compareFailing)
	return out
}

func compareFailing(a, b v1alpha1.FailingResource) int {
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	if c := strings.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	if c := strings.Compare(a.Rule, b.Rule); c != 0 {
		return c
	}
	if c := strings.Compare(a.Image, b.Image); c != 0 {
		return c
	}
	return strings.Compare(a.Message, b.Message)
}

// cleanMessage trims msg, turns runs of white space into one space and cuts it to
// FailingMessageBytes.
func cleanMessage(msg string) string {
	return truncate(strings.Join(strings.Fields(msg), " "), FailingMessageBytes)
}

// Equal reports whether two summaries would be written the same way: equal counts,
// equal Failing entries in the same order (nil and empty are equal), and Updated both
// nil or equal to the second (the precision status keeps).
func Equal(a, b v1alpha1.ReportSummary) bool {
	if a.Pass != b.Pass || a.Fail != b.Fail || a.Warn != b.Warn || a.Error != b.Error || a.Skip != b.Skip {
		return false
	}
	if (a.Updated == nil) != (b.Updated == nil) {
		return false
	}
	if a.Updated != nil && a.Updated.Unix() != b.Updated.Unix() {
		return false
	}
	return slices.Equal(a.Failing, b.Failing)
}

// EqualPtr is Equal for optional summaries (status.reports): both nil, or both set and
// Equal.
func EqualPtr(a, b *v1alpha1.ReportSummary) bool {
	if a == nil || b == nil {
		return a == b
	}
	return Equal(*a, *b)
}
