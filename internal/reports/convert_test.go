package reports

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	policyreportv1alpha2 "github.com/kyverno/kyverno/api/policyreport/v1alpha2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// convertCase is run through all four report kinds: PolicyReport and ClusterPolicyReport
// as built here, Report and ClusterReport through Kyverno's own ToOpenReports conversion
// (what its reports-controller does with --openreportsEnabled).
type convertCase struct {
	name    string
	ns      string // report namespace ("" for the cluster kinds' expectations)
	scope   *corev1.ObjectReference
	results []policyreportv1alpha2.PolicyReportResult
	keep    func(string) bool
	want    []Result
	// fromReportNS names the wanted results whose namespace comes from the report (the
	// reference has none); for the cluster kinds it stays empty.
	fromReportNS []string
}

func convertCases() []convertCase {
	podScope := &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "prod", Name: "web-1", UID: "u1"}
	long := "failed to verify image ghcr.io/org/app:v1: " + strings.Repeat("x", 2*MaxMessageBytes)
	withResources := cpolResult("signet-prod", "verify-signature", ResultFail, "unverified image ghcr.io/org/app:v2", 30)
	withResources.Resources = []corev1.ObjectReference{
		{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "prod", Name: "web"},
		{APIVersion: "v1", Kind: "Pod", Name: "web-2"}, // namespace from the report
	}
	withProperty := cpolResult("signet-prod", "verify-signature", ResultFail, "image signature mismatch", 40)
	withProperty.Properties["image"] = "ghcr.io/org/prop:v1"
	return []convertCase{
		{
			name:  "clusterpolicy verifyImages, other policies dropped",
			ns:    "prod",
			scope: podScope,
			results: []policyreportv1alpha2.PolicyReportResult{
				cpolResult("disallow-latest", "validate-tag", ResultPass, "validation rule 'validate-tag' passed.", 10),
				cpolResult("signet-prod", "verify-signature", ResultFail, "failed to verify image ghcr.io/org/app:v1: .attestors[0].entries[0].keys: no matching signatures", 11),
				cpolResult("signet-prod", "restrict-registries", ResultPass, "validation rule 'restrict-registries' passed.", 12),
				cpolResult("ns1/signet-prod", "verify-signature", ResultFail, "namespaced policy, not Signet's", 13),
			},
			keep: IsSignetPolicy,
			want: []Result{
				{Policy: "signet-prod", Rule: "verify-signature", Result: ResultFail, Message: "failed to verify image ghcr.io/org/app:v1: .attestors[0].entries[0].keys: no matching signatures", Image: "ghcr.io/org/app:v1", Kind: "Pod", Namespace: "prod", Name: "web-1", Timestamp: 11},
				{Policy: "signet-prod", Rule: "restrict-registries", Result: ResultPass, Message: "validation rule 'restrict-registries' passed.", Kind: "Pod", Namespace: "prod", Name: "web-1", Timestamp: 12},
			},
		},
		{
			name:  "image validating policy, skip warn error",
			ns:    "prod",
			scope: podScope,
			results: []policyreportv1alpha2.PolicyReportResult{
				ivpResult("signet-prod", ResultFail, "image ghcr.io/org/app@"+digest+" failed signature or attestation verification", 20),
				ivpResult("signet-prod", ResultError, "failed to evaluate policy: boom", 21),
				ivpResult("signet-prod", ResultWarn, "image docker.io/library/nginx:1 is not verified: no policy performed a signature or attestation check on it", 22),
				ivpResult("signet-prod", ResultSkip, "rule is skipped due to policy exception: prod/allow", 23),
			},
			keep: IsSignetPolicy,
			want: []Result{
				{Policy: "signet-prod", Rule: "signet-prod", Result: ResultFail, Message: "image ghcr.io/org/app@" + digest + " failed signature or attestation verification", Image: "ghcr.io/org/app@" + digest, Kind: "Pod", Namespace: "prod", Name: "web-1", Timestamp: 20},
				{Policy: "signet-prod", Rule: "signet-prod", Result: ResultError, Message: "failed to evaluate policy: boom", Kind: "Pod", Namespace: "prod", Name: "web-1", Timestamp: 21},
				{Policy: "signet-prod", Rule: "signet-prod", Result: ResultWarn, Message: "image docker.io/library/nginx:1 is not verified: no policy performed a signature or attestation check on it", Image: "docker.io/library/nginx:1", Kind: "Pod", Namespace: "prod", Name: "web-1", Timestamp: 22},
				{Policy: "signet-prod", Rule: "signet-prod", Result: ResultSkip, Message: "rule is skipped due to policy exception: prod/allow", Kind: "Pod", Namespace: "prod", Name: "web-1", Timestamp: 23},
			},
		},
		{
			name:         "result resources win over scope, one result per resource",
			ns:           "prod",
			scope:        podScope,
			results:      []policyreportv1alpha2.PolicyReportResult{withResources},
			keep:         IsSignetPolicy,
			fromReportNS: []string{"web-2"},
			want: []Result{
				{Policy: "signet-prod", Rule: "verify-signature", Result: ResultFail, Message: "unverified image ghcr.io/org/app:v2", Image: "ghcr.io/org/app:v2", Kind: "Deployment", Namespace: "prod", Name: "web", Timestamp: 30},
				{Policy: "signet-prod", Rule: "verify-signature", Result: ResultFail, Message: "unverified image ghcr.io/org/app:v2", Image: "ghcr.io/org/app:v2", Kind: "Pod", Namespace: "prod", Name: "web-2", Timestamp: 30},
			},
		},
		{
			name:         "image property wins, scope without namespace takes the report's",
			ns:           "prod",
			scope:        &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Name: "web-3"},
			results:      []policyreportv1alpha2.PolicyReportResult{withProperty},
			keep:         IsSignetPolicy,
			fromReportNS: []string{"web-3"},
			want: []Result{
				{Policy: "signet-prod", Rule: "verify-signature", Result: ResultFail, Message: "image signature mismatch", Image: "ghcr.io/org/prop:v1", Kind: "Pod", Namespace: "prod", Name: "web-3", Timestamp: 40},
			},
		},
		{
			name:    "long message cut, image kept",
			ns:      "prod",
			scope:   podScope,
			results: []policyreportv1alpha2.PolicyReportResult{cpolResult("signet-prod", "verify-signature", ResultFail, long, 50)},
			keep:    IsSignetPolicy,
			want: []Result{
				{Policy: "signet-prod", Rule: "verify-signature", Result: ResultFail, Message: long[:MaxMessageBytes-3] + "…", Image: "ghcr.io/org/app:v1", Kind: "Pod", Namespace: "prod", Name: "web-1", Timestamp: 50},
			},
		},
		{
			name:  "nil keep keeps all",
			ns:    "prod",
			scope: podScope,
			results: []policyreportv1alpha2.PolicyReportResult{
				cpolResult("disallow-latest", "validate-tag", ResultFail, "validation error: tag latest is not allowed", 60),
			},
			want: []Result{
				{Policy: "disallow-latest", Rule: "validate-tag", Result: ResultFail, Message: "validation error: tag latest is not allowed", Kind: "Pod", Namespace: "prod", Name: "web-1", Timestamp: 60},
			},
		},
		{
			name:    "no results of ours",
			ns:      "prod",
			scope:   podScope,
			results: []policyreportv1alpha2.PolicyReportResult{cpolResult("other", "r", ResultFail, "x", 1)},
			keep:    IsSignetPolicy,
		},
		{
			name:         "no scope, no resources",
			ns:           "prod",
			results:      []policyreportv1alpha2.PolicyReportResult{cpolResult("signet-prod", "r", ResultPass, "ok", 1)},
			keep:         IsSignetPolicy,
			fromReportNS: []string{""},
			want:         []Result{{Policy: "signet-prod", Rule: "r", Result: ResultPass, Message: "ok", Namespace: "prod", Timestamp: 1}},
		},
	}
}

func TestConvertAllKinds(t *testing.T) {
	for _, tc := range convertCases() {
		t.Run(tc.name, func(t *testing.T) {
			pr := podReport("prod", "web-1", tc.results...)
			pr.Scope = tc.scope
			pr.Namespace = tc.ns

			check := func(t *testing.T, kind string, got Report, wantNS string) {
				t.Helper()
				if got.Name != pr.Name || got.Namespace != wantNS {
					t.Errorf("%s: report identity = %s/%s, want %s/%s", kind, got.Namespace, got.Name, wantNS, pr.Name)
				}
				if !reflect.DeepEqual(got.Results, tc.want) {
					t.Errorf("%s: results\n got %#v\nwant %#v", kind, got.Results, tc.want)
				}
			}
			check(t, "PolicyReport", FromPolicyReport(pr, tc.keep), tc.ns)
			check(t, "Report", FromOpenReport(pr.ToOpenReports(), tc.keep), tc.ns)

			// Cluster kinds: same results; a reference without namespace stays without
			// one, as a cluster report has no namespace to lend it.
			cpr := &policyreportv1alpha2.ClusterPolicyReport{
				TypeMeta:   metav1.TypeMeta{APIVersion: WGPolicyAPIVersion, Kind: "ClusterPolicyReport"},
				ObjectMeta: metav1.ObjectMeta{Name: pr.Name},
				Scope:      pr.Scope,
				Results:    pr.Results,
			}
			var wantCluster []Result
			for _, w := range tc.want {
				if slices.Contains(tc.fromReportNS, w.Name) {
					w.Namespace = ""
				}
				wantCluster = append(wantCluster, w)
			}
			gotC := FromClusterPolicyReport(cpr, tc.keep)
			gotO := FromOpenClusterReport(cpr.ToOpenReports(), tc.keep)
			for kind, got := range map[string]Report{"ClusterPolicyReport": gotC, "ClusterReport": gotO} {
				if got.Name != pr.Name || got.Namespace != "" {
					t.Errorf("%s: identity %s/%s", kind, got.Namespace, got.Name)
				}
				if !reflect.DeepEqual(got.Results, wantCluster) {
					t.Errorf("%s: results\n got %#v\nwant %#v", kind, got.Results, wantCluster)
				}
			}
		})
	}
}

func TestConvertNil(t *testing.T) {
	if !reflect.DeepEqual(FromPolicyReport(nil, nil), Report{}) ||
		!reflect.DeepEqual(FromClusterPolicyReport(nil, nil), Report{}) ||
		!reflect.DeepEqual(FromOpenReport(nil, nil), Report{}) ||
		!reflect.DeepEqual(FromOpenClusterReport(nil, nil), Report{}) {
		t.Fatal("nil report must convert to the zero Report")
	}
	if _, err := FromObject(&corev1.Pod{}, nil); err == nil {
		t.Fatal("FromObject accepted a Pod")
	}
}

func TestImageOf(t *testing.T) {
	for _, tc := range []struct {
		props map[string]string
		msg   string
		want  string
	}{
		// ClusterPolicy verifyImages (pkg/engine/internal/imageverifier.go).
		{msg: "failed to verify image ghcr.io/org/app:v1: .attestors[0].entries[0].keys: no matching signatures:\ninvalid signature", want: "ghcr.io/org/app:v1"},
		{msg: "failed to verify image localhost:5000/team/app@" + digest + ": GET https://localhost:5000/v2/: connection refused", want: "localhost:5000/team/app@" + digest},
		{msg: "verified image signatures for ghcr.io/org/app:v1", want: "ghcr.io/org/app:v1"},
		{msg: "verified image attestations for ghcr.io/org/app@" + digest, want: "ghcr.io/org/app@" + digest},
		{msg: "failed to add image to context ghcr.io/org/app:v1: boom", want: "ghcr.io/org/app:v1"},
		{msg: "skipping image reference image ghcr.io/org/app:v1, policy signet-prod ruleName verify", want: "ghcr.io/org/app:v1"},
		// validate phase (pkg/engine/handlers/validation/validate_image.go).
		{msg: "missing digest for ghcr.io/org/app:v1", want: "ghcr.io/org/app:v1"},
		{msg: "unverified image ghcr.io/org/app:v1", want: "ghcr.io/org/app:v1"},
		// ImageValidatingPolicy (pkg/image/verification/evaluator/policy.go).
		{msg: "image ghcr.io/org/app:v1 failed signature or attestation verification", want: "ghcr.io/org/app:v1"},
		{msg: "image nginx is not verified: no policy performed a signature or attestation check on it", want: "nginx"},
		{msg: "image ghcr.io/org/app:v1 does not have a digest", want: "ghcr.io/org/app:v1"},
		{msg: "failed to evaluate policy: failed to resolve digest for image ghcr.io/org/app:v1: not found", want: "ghcr.io/org/app:v1"},
		{msg: "failed to parse image reference Bad!Ref: invalid", want: ""},
		// Wrapped: the outermost (first) image wins.
		{msg: "failed to verify image a.io/x:1: image b.io/y:2 does not have a digest", want: "a.io/x:1"},
		// Not an image.
		{msg: "image verified, skipped images: ghcr.io/org/app:v1", want: ""},
		{msg: "validation error: images must come from ghcr.io/org. rule restrict-registries failed at path /spec/containers/0/image/", want: ""},
		{msg: "", want: ""},
		// Properties.
		{props: map[string]string{"image": "ghcr.io/org/p:v1"}, msg: "failed to verify image ghcr.io/org/app:v1: x", want: "ghcr.io/org/p:v1"},
		{props: map[string]string{"image": "not an image"}, msg: "unverified image ghcr.io/org/app:v1", want: "ghcr.io/org/app:v1"},
		{props: map[string]string{"images": "ghcr.io/org/a:v1, ghcr.io/org/b:v1"}, msg: "success", want: "ghcr.io/org/a:v1"},
		{props: map[string]string{"images": "ghcr.io/org/a:v1 ghcr.io/org/b:v1"}, want: "ghcr.io/org/a:v1"},
		{props: map[string]string{"process": "background scan"}, msg: "success", want: ""},
	} {
		if got := ImageOf(tc.props, tc.msg); got != tc.want {
			t.Errorf("ImageOf(%v, %q) = %q, want %q", tc.props, tc.msg, got, tc.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"0123456789abc", 10, "0123456…"},
		{"ééééééé", 10, "ééé…"}, // 14 bytes; never cut inside a rune
		{"abcdef", 2, ""},
	} {
		got := truncate(tc.in, tc.n)
		if got != tc.want || len(got) > tc.n {
			t.Errorf("truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
