package reports

import (
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	policyreportv1alpha2 "github.com/kyverno/kyverno/api/policyreport/v1alpha2"
	openreportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
)

// PolicyPrefix starts the name of every Kyverno policy Signet generates
// ("signet-<TrustedRegistry name>").
const PolicyPrefix = "signet-"

// MaxMessageBytes bounds the result messages kept by the converters and by Transform.
const MaxMessageBytes = 512

// Result values written by Kyverno (wgpolicyk8s.io and openreports.io use the same ones).
const (
	ResultPass  = "pass"
	ResultFail  = "fail"
	ResultWarn  = "warn"
	ResultError = "error"
	ResultSkip  = "skip"
)

// Result properties read for the image of a result. Kyverno itself sets neither: a
// result's properties are the rule's reportProperties (ClusterPolicy) or the evaluated
// auditAnnotations (ImageValidatingPolicy), so a generated policy may set them. PropertyImage
// holds one image reference; PropertyImages a comma or space separated list, of which the
// first is used.
const (
	PropertyImage  = "image"
	PropertyImages = "images"
)

// IsSignetPolicy reports whether a report result's policy field names a policy Signet
// generates. Kyverno writes a cluster-scoped policy by its name and a namespaced one as
// "namespace/name"; Signet's policies are cluster-scoped.
func IsSignetPolicy(policy string) bool {
	return strings.HasPrefix(policy, PolicyPrefix) || strings.HasPrefix(policy, SharedPolicyPrefix)
}

// SharedPolicyPrefix starts the name of every shared policy ("signet.ivp.enforce").
const SharedPolicyPrefix = "signet."

// Result is one report result, reduced to what the summary needs. A result that names
// several resources (Kyverno's CLI writes subjects; the reports-controller writes one
// report per resource with scope = the resource and no subjects) becomes one Result per
// resource, so it is counted once per resource.
type Result struct {
	Policy string // policy key as Kyverno writes it: name, or namespace/name
	Rule   string
	Result string // pass, fail, warn, error or skip
	// Message is at most MaxMessageBytes long.
	Message string
	// Image is the image reference the result is about, when the result says so
	// (see ImageOf); empty otherwise.
	Image string
	// Kind, Namespace and Name identify the resource (from the result's
	// resources/subjects, else the report's scope). Namespace is empty for
	// cluster-scoped resources.
	Kind, Namespace, Name string
	// Timestamp is the result time in Unix seconds (0 when Kyverno wrote none).
	Timestamp int64
}

// Report is the compact form of one report object: its identity and the results that
// were kept.
type Report struct {
	Namespace, Name string // report object, Namespace empty for cluster reports
	Results         []Result
}

// FromPolicyReport converts a wgpolicyk8s.io/v1alpha2 PolicyReport. keep selects results by
// policy (nil keeps all; IsSignetPolicy keeps Signet's).
func FromPolicyReport(r *policyreportv1alpha2.PolicyReport, keep func(policy string) bool) Report {
	if r == nil {
		return Report{}
	}
	return Report{Namespace: r.Namespace, Name: r.Name, Results: fromResults(wgResults, r.Namespace, r.Scope, r.Results, keep)}
}

// FromClusterPolicyReport converts a wgpolicyk8s.io/v1alpha2 ClusterPolicyReport (the
// fields of a PolicyReport, cluster-scoped).
func FromClusterPolicyReport(r *policyreportv1alpha2.ClusterPolicyReport, keep func(policy string) bool) Report {
	return FromPolicyReport((*policyreportv1alpha2.PolicyReport)(r), keep)
}

// FromOpenReport converts an openreports.io/v1alpha1 Report.
func FromOpenReport(r *openreportsv1alpha1.Report, keep func(policy string) bool) Report {
	if r == nil {
		return Report{}
	}
	return Report{Namespace: r.Namespace, Name: r.Name, Results: fromResults(orResults, r.Namespace, r.Scope, r.Results, keep)}
}

// FromOpenClusterReport converts an openreports.io/v1alpha1 ClusterReport (the fields of
// a Report, cluster-scoped).
func FromOpenClusterReport(r *openreportsv1alpha1.ClusterReport, keep func(policy string) bool) Report {
	return FromOpenReport((*openreportsv1alpha1.Report)(r), keep)
}

func kept(keep func(string) bool, policy string) bool {
	return keep == nil || keep(policy)
}

// resultAPI is what the generic code of this package needs of the result type R of one
// report API: wgpolicyk8s.io's PolicyReportResult and openreports.io's ReportResult have
// the same fields under other Go names and types (Message/Description,
// Resources/Subjects).
type resultAPI[R any] struct {
	policy   func(*R) string
	outcome  func(*R) string
	subjects func(*R) []corev1.ObjectReference
	// result converts all but the resource, which appendResults fills in.
	result func(*R) Result
	// shrink shrinks one kept result in place (ShrinkPolicyReport).
	shrink func(*R)
}

var wgResults = resultAPI[policyreportv1alpha2.PolicyReportResult]{
	policy:   func(r *policyreportv1alpha2.PolicyReportResult) string { return r.Policy },
	outcome:  func(r *policyreportv1alpha2.PolicyReportResult) string { return string(r.Result) },
	subjects: func(r *policyreportv1alpha2.PolicyReportResult) []corev1.ObjectReference { return r.Resources },
	result: func(r *policyreportv1alpha2.PolicyReportResult) Result {
		return newResult(r.Policy, r.Rule, string(r.Result), r.Message, r.Properties, r.Timestamp.Seconds)
	},
	shrink: func(r *policyreportv1alpha2.PolicyReportResult) {
		r.Policy, r.Rule, r.Source, r.Category = intern(r.Policy), intern(r.Rule), intern(r.Source), intern(r.Category)
		r.Result, r.Severity = internAs(r.Result), internAs(r.Severity)
		r.Message, r.Properties = shrinkResultMessage(string(r.Result), r.Message, r.Properties)
		shrinkRefs(r.Resources)
	},
}

var orResults = resultAPI[openreportsv1alpha1.ReportResult]{
	policy:   func(r *openreportsv1alpha1.ReportResult) string { return r.Policy },
	outcome:  func(r *openreportsv1alpha1.ReportResult) string { return string(r.Result) },
	subjects: func(r *openreportsv1alpha1.ReportResult) []corev1.ObjectReference { return r.Subjects },
	result: func(r *openreportsv1alpha1.ReportResult) Result {
		return newResult(r.Policy, r.Rule, string(r.Result), r.Description, r.Properties, r.Timestamp.Seconds)
	},
	shrink: func(r *openreportsv1alpha1.ReportResult) {
		r.Policy, r.Rule, r.Source, r.Category = intern(r.Policy), intern(r.Rule), intern(r.Source), intern(r.Category)
		r.Result, r.Severity = internAs(r.Result), internAs(r.Severity)
		r.Description, r.Properties = shrinkResultMessage(string(r.Result), r.Description, r.Properties)
		shrinkRefs(r.Subjects)
	},
}

func newResult(policy, rule, outcome, msg string, props map[string]string, seconds int64) Result {
	return Result{
		Policy:    policy,
		Rule:      rule,
		Result:    outcome,
		Message:   TruncateNamingRegistries(msg, MaxMessageBytes),
		Image:     ImageOf(props, msg),
		Timestamp: seconds,
	}
}

// fromResults converts the results keep accepts, one Result per resource.
func fromResults[R any](api resultAPI[R], reportNS string, scope *corev1.ObjectReference, in []R, keep func(string) bool) []Result {
	n := 0
	for i := range in {
		if kept(keep, api.policy(&in[i])) {
			n += max(1, len(api.subjects(&in[i])))
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]Result, 0, n)
	for i := range in {
		r := &in[i]
		if kept(keep, api.policy(r)) {
			out = appendResults(out, reportNS, scope, api.subjects(r), api.result(r))
		}
	}
	return out
}

// appendResults appends res once per subject, or once for the scope when the result names
// no subject. A namespaced report describes resources of its own namespace, so an empty
// reference namespace falls back to the report's.
func appendResults(out []Result, reportNS string, scope *corev1.ObjectReference, subjects []corev1.ObjectReference, res Result) []Result {
	if len(subjects) == 0 {
		if scope != nil {
			res.Kind, res.Namespace, res.Name = scope.Kind, orDefault(scope.Namespace, reportNS), scope.Name
		} else {
			res.Namespace = reportNS
		}
		return append(out, res)
	}
	for i := range subjects {
		s := &subjects[i]
		res.Kind, res.Namespace, res.Name = s.Kind, orDefault(s.Namespace, reportNS), s.Name
		out = append(out, res)
	}
	return out
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// registryNameRE finds the TrustedRegistry names in a policy message or a Kyverno event:
// "TrustedRegistry <name>" in the shared policies' messages, "[verify.<name>]" and
// "[allow.<name>]" (the shared ClusterPolicy's rules) in Kyverno's event notes.
var registryNameRE = regexp.MustCompile(`(?:TrustedRegistry |\[(?:verify|allow)\.)([a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)`)

// RegistriesNamedIn lists the TrustedRegistries a message names, sorted, without repeats.
func RegistriesNamedIn(msg string) []string {
	var out []string
	for _, m := range registryNameRE.FindAllStringSubmatch(msg, -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	sort.Strings(out)
	return out
}

// TruncateNamingRegistries is truncate that keeps every TrustedRegistry the message names:
// the names the cut would lose are appended as "… (TrustedRegistry a, TrustedRegistry b)",
// so a result or denial of a shared policy still maps to all its registries (as many as
// fit in n bytes).
func TruncateNamingRegistries(msg string, n int) string {
	if len(msg) <= n {
		return msg
	}
	all := RegistriesNamedIn(msg)
	// cutting more can only lose more names: shorten until the suffix of the lost names
	// fits (it may take at most half the bytes; names that do not fit are dropped)
	cut := n
	for {
		short := truncate(msg, cut)
		kept := RegistriesNamedIn(short)
		var lost []string
		for _, r := range all {
			if !slices.Contains(kept, r) {
				lost = append(lost, "TrustedRegistry "+r)
			}
		}
		suffix := ""
		for len(lost) > 0 {
			suffix = " (" + strings.Join(lost, ", ") + ")"
			if len(suffix) <= n/2 {
				break
			}
			lost, suffix = lost[:len(lost)-1], ""
		}
		if len(short)+len(suffix) <= n {
			return short + suffix
		}
		cut = n - len(suffix)
	}
}

// truncate shortens s to at most n bytes, cutting at a rune boundary and ending with "…".
// The result of a cut is a new string, so it does not keep s's memory alive.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	if n < len(ellipsis) {
		return ""
	}
	cut := n - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// ImageOf returns the image reference a result is about: the PropertyImage property,
// else the image named in a message Kyverno writes for image verification, else the first
// entry of the PropertyImages property; empty when none is found. Only strings that look
// like image references are returned.
//
// Messages recognised (Kyverno v1.19):
//   - ClusterPolicy verifyImages: "failed to verify image %s: …", "verified image
//     signatures for %s", "verified image attestations for %s", "failed to add image to
//     context %s: …", "skipping image reference image %s, …"; validate phase: "missing
//     digest for %s", "unverified image %s".
//   - ImageValidatingPolicy: "image %s failed signature or attestation verification",
//     "image %s is not verified: …", "image %s does not have a digest", "failed to resolve
//     digest for image %s: …", "failed to parse image reference %s: …". Other
//     ImageValidatingPolicy failures carry the policy's own validation message.
func ImageOf(properties map[string]string, message string) string {
	if v := strings.TrimSpace(properties[PropertyImage]); isImageRef(v) {
		return v
	}
	if v := imageFromMessage(message); v != "" {
		// A substring of a (possibly long) message would keep all of it alive.
		return strings.Clone(v)
	}
	if v := properties[PropertyImages]; v != "" {
		first, _, _ := strings.Cut(strings.TrimSpace(v), ",")
		if f := strings.Fields(first); len(f) > 0 && isImageRef(f[0]) {
			return f[0]
		}
	}
	return ""
}

// imagePrefixes precede an image reference anywhere in a message.
var imagePrefixes = [...]string{
	"failed to verify image ",
	"verified image signatures for ",
	"verified image attestations for ",
	"failed to add image to context ",
	"skipping image reference image ",
	"missing digest for ",
	"unverified image ",
	"failed to resolve digest for image ",
	"failed to parse image reference ",
}

// imageSuffixes follow "image <ref>" in ImageValidatingPolicy messages.
var imageSuffixes = [...]string{
	" failed signature or attestation verification",
	" is not verified:",
	" does not have a digest",
}

func imageFromMessage(msg string) string {
	if !strings.Contains(msg, "image") && !strings.Contains(msg, "digest for ") {
		return ""
	}
	best, bestPos := "", len(msg)+1
	for _, p := range imagePrefixes {
		i := strings.Index(msg, p)
		if i < 0 || i >= bestPos {
			continue
		}
		if ref := imageToken(msg[i+len(p):]); ref != "" {
			best, bestPos = ref, i
		}
	}
	for _, s := range imageSuffixes {
		i := strings.Index(msg, s)
		if i < 0 {
			continue
		}
		head := msg[:i]
		start := strings.LastIndexByte(head, ' ') + 1
		if start < len("image ") || head[start-len("image "):start] != "image " {
			continue
		}
		if start-len("image ") >= bestPos {
			continue
		}
		if ref := imageToken(head[start:]); ref != "" {
			best, bestPos = ref, start-len("image ")
		}
	}
	return best
}

// imageToken returns the leading space-free token of s, without trailing punctuation or
// quotes, if it looks like an image reference.
func imageToken(s string) string {
	if i := strings.IndexAny(s, " \t\n"); i >= 0 {
		s = s[:i]
	}
	s = strings.Trim(s, "\"'`")
	s = strings.TrimRight(s, ":,;.)\"'`")
	if !isImageRef(s) {
		return ""
	}
	return s
}

// isImageRef is a cheap syntactic check: non-empty, at most 512 bytes, only the characters
// image references use, and starting with a letter or digit.
func isImageRef(s string) bool {
	if s == "" || len(s) > 512 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '-' || c == '_' || c == '/' || c == ':' || c == '@' || c == '+'):
		default:
			return false
		}
	}
	return true
}
