package reports

import (
	"fmt"
	"strings"
	"sync"

	policyreportv1alpha2 "github.com/kyverno/kyverno/api/policyreport/v1alpha2"
	openreportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// API groups and versions of the report kinds this package reads.
const (
	WGPolicyAPIVersion    = "wgpolicyk8s.io/v1alpha2"
	OpenReportsAPIVersion = "openreports.io/v1alpha1"
)

// Transform returns a cache transform (the shape of client-go's cache.TransformFunc and
// controller-runtime's cache.Options.DefaultTransform / ByObject.Transform) that shrinks
// Kyverno report objects in place: *PolicyReport, *ClusterPolicyReport (wgpolicyk8s.io),
// *Report, *ClusterReport (openreports.io) and *unstructured.Unstructured of those kinds.
// Any other object is returned unchanged. See ShrinkPolicyReport for what is removed.
// The transform never fails and is idempotent.
func Transform(keep func(policy string) bool) func(any) (any, error) {
	return func(obj any) (any, error) {
		switch o := obj.(type) {
		case *policyreportv1alpha2.PolicyReport:
			ShrinkPolicyReport(o, keep)
		case *policyreportv1alpha2.ClusterPolicyReport:
			ShrinkClusterPolicyReport(o, keep)
		case *openreportsv1alpha1.Report:
			ShrinkOpenReport(o, keep)
		case *openreportsv1alpha1.ClusterReport:
			ShrinkOpenClusterReport(o, keep)
		case *unstructured.Unstructured:
			ShrinkUnstructured(o, keep)
		}
		return obj, nil
	}
}

var signetTransform = Transform(IsSignetPolicy)

// SignetTransform is Transform(IsSignetPolicy): it keeps only results of Signet's policies.
func SignetTransform(obj any) (any, error) { return signetTransform(obj) }

// ShrinkPolicyReport reduces r in place to what the converters read:
//   - metadata.managedFields and metadata.annotations are dropped (labels, owner
//     references and the rest of metadata stay);
//   - results whose policy keep rejects are dropped (keep nil keeps all), and the results
//     slice is reallocated to its new length so the dropped ones are freed;
//   - messages are cut to MaxMessageBytes;
//   - properties are dropped except PropertyImage and PropertyImages (when a cut message
//     loses the image it named, the image is kept as PropertyImage);
//   - repeated strings (policy, rule, result, source, category, severity, kinds,
//     API versions, namespaces) share one copy;
//   - summary is recomputed from the kept results.
//
// The object remains a valid report, but a lossy one: use it only through this package.
func ShrinkPolicyReport(r *policyreportv1alpha2.PolicyReport, keep func(policy string) bool) {
	if r != nil {
		r.Summary = shrinkReport(wgResults, &r.ObjectMeta, r.Scope, &r.Results, keep)
	}
}

// ShrinkClusterPolicyReport is ShrinkPolicyReport for a ClusterPolicyReport.
func ShrinkClusterPolicyReport(r *policyreportv1alpha2.ClusterPolicyReport, keep func(policy string) bool) {
	ShrinkPolicyReport((*policyreportv1alpha2.PolicyReport)(r), keep)
}

// ShrinkOpenReport is ShrinkPolicyReport for an openreports.io Report.
func ShrinkOpenReport(r *openreportsv1alpha1.Report, keep func(policy string) bool) {
	if r != nil {
		r.Source = intern(r.Source)
		r.Summary = openreportsv1alpha1.ReportSummary(shrinkReport(orResults, &r.ObjectMeta, r.Scope, &r.Results, keep))
	}
}

// ShrinkOpenClusterReport is ShrinkPolicyReport for an openreports.io ClusterReport.
func ShrinkOpenClusterReport(r *openreportsv1alpha1.ClusterReport, keep func(policy string) bool) {
	ShrinkOpenReport((*openreportsv1alpha1.Report)(r), keep)
}

// shrinkReport shrinks the parts every report kind has and returns the summary of the
// kept results (both APIs' summaries have the same fields).
func shrinkReport[R any](api resultAPI[R], meta *metav1.ObjectMeta, scope *corev1.ObjectReference, results *[]R, keep func(string) bool) policyreportv1alpha2.PolicyReportSummary {
	shrinkMeta(meta)
	shrinkRef(scope)
	*results = shrinkResults(api, *results, keep)
	return summaryOf(api, *results)
}

// summaryOf counts results by outcome.
func summaryOf[R any](api resultAPI[R], results []R) policyreportv1alpha2.PolicyReportSummary {
	var sum policyreportv1alpha2.PolicyReportSummary
	for i := range results {
		countResult(&sum, api.outcome(&results[i]))
	}
	return sum
}

func shrinkMeta(m *metav1.ObjectMeta) {
	m.ManagedFields = nil
	m.Annotations = nil
	m.Labels = nil
	m.OwnerReferences = nil
	m.Namespace = intern(m.Namespace)
}

func shrinkRef(r *corev1.ObjectReference) {
	if r == nil {
		return
	}
	r.Kind = intern(r.Kind)
	r.APIVersion = intern(r.APIVersion)
	r.Namespace = intern(r.Namespace)
	r.UID, r.ResourceVersion, r.FieldPath = "", "", ""
}

func shrinkRefs(refs []corev1.ObjectReference) {
	for i := range refs {
		shrinkRef(&refs[i])
	}
}

// shrinkResults drops the results whose policy keep rejects (reallocating the slice when
// any is dropped, so they are freed) and shrinks the others in place.
func shrinkResults[R any](api resultAPI[R], in []R, keep func(string) bool) []R {
	n := 0
	for i := range in {
		if kept(keep, api.policy(&in[i])) {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := in
	if n != len(in) {
		out = make([]R, 0, n)
		for i := range in {
			if kept(keep, api.policy(&in[i])) {
				out = append(out, in[i])
			}
		}
	}
	for i := range out {
		api.shrink(&out[i])
	}
	return out
}

// internAs is intern for the report APIs' string types.
func internAs[S ~string](s S) S { return S(intern(string(s))) }

// shrinkResultMessage is the message and properties a result keeps: only failing results
// are listed with a message (and image), the others are only counted.
func shrinkResultMessage(result, msg string, props map[string]string) (string, map[string]string) {
	if !listed(result) {
		return "", nil
	}
	return shrinkMessage(msg, props)
}

// shrinkMessage cuts msg to MaxMessageBytes and reduces props to the image properties,
// recording the image as PropertyImage when the cut removed it from the message.
// listed tells whether results with this outcome are listed in status (with message and
// image); other results are only counted, so the cache keeps neither.
func listed(result string) bool { return result == ResultFail || result == ResultError }

func shrinkMessage(msg string, props map[string]string) (string, map[string]string) {
	props = imageProperties(props)
	if len(msg) <= MaxMessageBytes {
		return msg, props
	}
	short := TruncateNamingRegistries(msg, MaxMessageBytes)
	if props[PropertyImage] == "" {
		if img := imageFromMessage(msg); img != "" && imageFromMessage(short) != img {
			if props == nil {
				props = make(map[string]string, 1)
			}
			props[PropertyImage] = strings.Clone(img)
		}
	}
	return short, props
}

// imageProperties returns props reduced to PropertyImage and PropertyImages, reusing props
// when it holds nothing else, or nil when it holds neither.
func imageProperties(props map[string]string) map[string]string {
	img, hasImg := props[PropertyImage]
	imgs, hasImgs := props[PropertyImages]
	if !hasImg && !hasImgs {
		return nil
	}
	n := 0
	if hasImg {
		n++
	}
	if hasImgs {
		n++
	}
	if len(props) == n {
		return props
	}
	out := make(map[string]string, n)
	if hasImg {
		out[PropertyImage] = img
	}
	if hasImgs {
		out[PropertyImages] = imgs
	}
	return out
}

// countResult adds a result with the given outcome to sum.
func countResult(sum *policyreportv1alpha2.PolicyReportSummary, outcome string) {
	switch outcome {
	case ResultPass:
		sum.Pass++
	case ResultFail:
		sum.Fail++
	case ResultWarn:
		sum.Warn++
	case ResultError:
		sum.Error++
	case ResultSkip:
		sum.Skip++
	}
}

// isReportGVK reports whether apiVersion/kind name one of the four report kinds.
func isReportGVK(apiVersion, kind string) bool {
	switch apiVersion {
	case WGPolicyAPIVersion:
		return kind == "PolicyReport" || kind == "ClusterPolicyReport"
	case OpenReportsAPIVersion:
		return kind == "Report" || kind == "ClusterReport"
	}
	return false
}

// ShrinkUnstructured is ShrinkPolicyReport for an unstructured report of one of the four
// kinds (wgpolicyk8s.io/v1alpha2 PolicyReport, ClusterPolicyReport; openreports.io/v1alpha1
// Report, ClusterReport). Other objects are left alone. String sharing is not done here.
func ShrinkUnstructured(u *unstructured.Unstructured, keep func(policy string) bool) {
	if u == nil || u.Object == nil || !isReportGVK(u.GetAPIVersion(), u.GetKind()) {
		return
	}
	if md, ok := u.Object["metadata"].(map[string]any); ok {
		delete(md, "managedFields")
		delete(md, "annotations")
	}
	in, _ := u.Object["results"].([]any)
	out := make([]any, 0, len(in))
	var sum policyreportv1alpha2.PolicyReportSummary
	for _, item := range in {
		r, ok := item.(map[string]any)
		if !ok {
			continue
		}
		policy, _ := r["policy"].(string)
		if !kept(keep, policy) {
			continue
		}
		msg, _ := r["message"].(string)
		var props map[string]string
		if p, ok := r["properties"].(map[string]any); ok {
			for _, k := range [...]string{PropertyImage, PropertyImages} {
				if v, ok := p[k].(string); ok {
					if props == nil {
						props = make(map[string]string, 2)
					}
					props[k] = v
				}
			}
		}
		res, _ := r["result"].(string)
		countResult(&sum, res)
		msg, props = shrinkResultMessage(res, msg, props)
		if msg == "" {
			delete(r, "message")
		} else {
			r["message"] = msg
		}
		if props == nil {
			delete(r, "properties")
		} else {
			p := make(map[string]any, len(props))
			for k, v := range props {
				p[k] = v
			}
			r["properties"] = p
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		delete(u.Object, "results")
	} else {
		u.Object["results"] = out
	}
	u.Object["summary"] = map[string]any{"pass": int64(sum.Pass), "fail": int64(sum.Fail), "warn": int64(sum.Warn), "error": int64(sum.Error), "skip": int64(sum.Skip)}
}

// FromUnstructured converts an unstructured report of one of the four kinds.
func FromUnstructured(u *unstructured.Unstructured, keep func(policy string) bool) (Report, error) {
	if u == nil {
		return Report{}, nil
	}
	apiVersion, kind := u.GetAPIVersion(), u.GetKind()
	if !isReportGVK(apiVersion, kind) {
		return Report{}, fmt.Errorf("reports: %s %s is not a policy report", apiVersion, kind)
	}
	var typed any
	switch kind {
	case "PolicyReport":
		typed = &policyreportv1alpha2.PolicyReport{}
	case "ClusterPolicyReport":
		typed = &policyreportv1alpha2.ClusterPolicyReport{}
	case "Report":
		typed = &openreportsv1alpha1.Report{}
	case "ClusterReport":
		typed = &openreportsv1alpha1.ClusterReport{}
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, typed); err != nil {
		return Report{}, fmt.Errorf("reports: decoding %s %s/%s: %w", kind, u.GetNamespace(), u.GetName(), err)
	}
	return FromObject(typed, keep)
}

// FromObject converts any of the four typed report kinds (pointers) or an
// *unstructured.Unstructured report. Other types are an error.
func FromObject(obj any, keep func(policy string) bool) (Report, error) {
	switch o := obj.(type) {
	case *policyreportv1alpha2.PolicyReport:
		return FromPolicyReport(o, keep), nil
	case *policyreportv1alpha2.ClusterPolicyReport:
		return FromClusterPolicyReport(o, keep), nil
	case *openreportsv1alpha1.Report:
		return FromOpenReport(o, keep), nil
	case *openreportsv1alpha1.ClusterReport:
		return FromOpenClusterReport(o, keep), nil
	case *unstructured.Unstructured:
		return FromUnstructured(o, keep)
	}
	return Report{}, fmt.Errorf("reports: unsupported object type %T", obj)
}

// Strings repeated across reports (policy and rule names, result values, kinds,
// namespaces) are decoded into separate allocations; intern makes them share one.
// The table is bounded: once full, new strings are returned as they are.
const (
	maxInterned   = 8192
	maxInternSize = 253
)

var interned = struct {
	sync.Mutex
	m map[string]string
}{m: make(map[string]string, 256)}

func intern(s string) string {
	if s == "" || len(s) > maxInternSize {
		return s
	}
	interned.Lock()
	defer interned.Unlock()
	if v, ok := interned.m[s]; ok {
		return v
	}
	if len(interned.m) < maxInterned {
		s = strings.Clone(s)
		interned.m[s] = s
	}
	return s
}
