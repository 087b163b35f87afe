package reports

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"unsafe"

	policyreportv1alpha2 "github.com/kyverno/kyverno/api/policyreport/v1alpha2"
	openreportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// mixedReport is a Pod's report with results of Signet's and other policies, a long
// message whose image lies past the cut, and extra properties.
func mixedReport() *policyreportv1alpha2.PolicyReport {
	long := "failed to evaluate policy: " + strings.Repeat("context ", 80) + "failed to verify image ghcr.io/org/late:v9: boom"
	withImages := ivpResult("signet-b", ResultPass, "success", 105)
	withImages.Properties["images"] = "ghcr.io/org/a:v1,ghcr.io/org/b:v1"
	return podReport("prod", "web-1",
		cpolResult("disallow-latest", "validate-tag", ResultPass, "validation rule 'validate-tag' passed.", 100),
		cpolResult("signet-a", "verify-signature", ResultFail, "failed to verify image ghcr.io/org/app:v1: no matching signatures", 101),
		cpolResult("require-labels", "check", ResultFail, "label app is required", 102),
		cpolResult("signet-a", "restrict-registries", ResultError, long, 103),
		ivpResult("signet-b", ResultSkip, "rule is skipped due to policy exception: prod/x", 104),
		withImages,
	)
}

func TestShrinkPolicyReport(t *testing.T) {
	orig := mixedReport()
	before := FromPolicyReport(orig, IsSignetPolicy)

	r := mixedReport()
	out, err := SignetTransform(r)
	if err != nil || out != any(r) {
		t.Fatalf("transform returned %p, %v; want the same object", out, err)
	}
	if r.ManagedFields != nil || r.Annotations != nil {
		t.Errorf("managedFields/annotations kept: %v %v", r.ManagedFields, r.Annotations)
	}
	// The scope says which resource the results are about; labels and owners are not read.
	if r.Labels != nil || r.OwnerReferences != nil || r.Scope == nil || r.Scope.Name != "web-1" || r.Scope.UID != "" {
		t.Errorf("metadata not shrunk as expected: labels %v owners %v scope %v", r.Labels, r.OwnerReferences, r.Scope)
	}
	if len(r.Results) != 4 || cap(r.Results) != 4 {
		t.Fatalf("results len %d cap %d, want 4/4", len(r.Results), cap(r.Results))
	}
	for _, res := range r.Results {
		if !IsSignetPolicy(res.Policy) {
			t.Errorf("kept result of %s", res.Policy)
		}
		if len(res.Message) > MaxMessageBytes {
			t.Errorf("message of %d bytes", len(res.Message))
		}
		if _, ok := res.Properties["process"]; ok {
			t.Errorf("property process kept")
		}
	}
	// Passing and skipped results are only counted: no message, no properties.
	if got := r.Results[3]; got.Properties != nil || got.Message != "" {
		t.Errorf("passing result kept message %q / properties %v", got.Message, got.Properties)
	}
	if got := r.Results[1].Properties["image"]; got != "ghcr.io/org/late:v9" {
		t.Errorf("image past the cut not kept as property: %q", got)
	}
	want := policyreportv1alpha2.PolicyReportSummary{Fail: 1, Error: 1, Skip: 1, Pass: 1}
	if r.Summary != want {
		t.Errorf("summary %+v, want %+v", r.Summary, want)
	}

	// What the converter reads is unchanged by the shrink, except the message and image of
	// results that are only counted; the aggregate summary is exactly the same.
	if after := FromPolicyReport(r, IsSignetPolicy); !reflect.DeepEqual(after, countedOnly(before)) {
		t.Errorf("conversion changed by shrink\n got %#v\nwant %#v", after, countedOnly(before))
	}
	policies := map[string]bool{"signet-a": true, "signet-b": true}
	if a, b := Aggregate([]Report{FromPolicyReport(r, IsSignetPolicy)}, policies, MaxFailing), Aggregate([]Report{before}, policies, MaxFailing); !Equal(a, b) {
		t.Errorf("summary changed by shrink:\n got %+v\nwant %+v", a, b)
	}

	// Idempotent.
	again := r.DeepCopy()
	ShrinkPolicyReport(again, IsSignetPolicy)
	if !reflect.DeepEqual(again, r) {
		t.Errorf("second shrink changed the object")
	}
}

func TestShrinkAllKinds(t *testing.T) {
	pr := mixedReport()
	want := countedOnly(FromPolicyReport(pr, IsSignetPolicy))
	strip := func(r Report) Report { r.Namespace = ""; return r }

	cpr := &policyreportv1alpha2.ClusterPolicyReport{ObjectMeta: *pr.ObjectMeta.DeepCopy(), Scope: pr.Scope.DeepCopy(), Results: mixedReport().Results}
	cpr.Namespace = ""
	orr := mixedReport().ToOpenReports()
	ocr := cpr.DeepCopy().ToOpenReports()

	for _, obj := range []any{cpr, orr, ocr} {
		if _, err := SignetTransform(obj); err != nil {
			t.Fatal(err)
		}
	}
	if got := FromClusterPolicyReport(cpr, IsSignetPolicy); !reflect.DeepEqual(got, strip(want)) {
		t.Errorf("ClusterPolicyReport: %#v", got)
	}
	if got := FromOpenReport(orr, IsSignetPolicy); !reflect.DeepEqual(got, want) {
		t.Errorf("Report: %#v", got)
	}
	if got := FromOpenClusterReport(ocr, IsSignetPolicy); !reflect.DeepEqual(got, strip(want)) {
		t.Errorf("ClusterReport: %#v", got)
	}
	for name, m := range map[string]metav1.ObjectMeta{"cpr": cpr.ObjectMeta, "or": orr.ObjectMeta, "ocr": ocr.ObjectMeta} {
		if m.ManagedFields != nil || m.Annotations != nil {
			t.Errorf("%s: metadata not shrunk", name)
		}
	}
	if len(orr.Results) != 4 || orr.Summary != (openreportsv1alpha1.ReportSummary{Pass: 1, Fail: 1, Error: 1, Skip: 1}) {
		t.Errorf("openreports: %d results, summary %+v", len(orr.Results), orr.Summary)
	}

	// Nothing of ours: results nil, summary zero.
	other := podReport("prod", "x", cpolResult("other", "r", ResultFail, "m", 1)).ToOpenReports()
	ShrinkOpenReport(other, IsSignetPolicy)
	if other.Results != nil || other.Summary != (openreportsv1alpha1.ReportSummary{}) {
		t.Errorf("foreign results kept: %+v", other)
	}
}

func TestShrinkUnstructured(t *testing.T) {
	for _, tc := range []struct {
		name string
		obj  runtime.Object
	}{
		{"PolicyReport", mixedReport()},
		{"Report", func() runtime.Object {
			r := mixedReport().ToOpenReports()
			r.APIVersion, r.Kind = OpenReportsAPIVersion, "Report"
			return r
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := FromObject(tc.obj, IsSignetPolicy)
			if err != nil {
				t.Fatal(err)
			}
			// As the API server sends it: JSON decoded into unstructured.
			data, err := json.Marshal(tc.obj)
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(data); err != nil {
				t.Fatal(err)
			}
			if _, err := SignetTransform(u); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "metadata", "managedFields"); ok {
				t.Error("managedFields kept")
			}
			if _, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "metadata", "annotations"); ok {
				t.Error("annotations kept")
			}
			results, _, _ := unstructured.NestedSlice(u.Object, "results")
			if len(results) != 4 {
				t.Errorf("%d results kept, want 4", len(results))
			}
			if f, _, _ := unstructured.NestedInt64(u.Object, "summary", "fail"); f != 1 {
				t.Errorf("summary.fail = %d", f)
			}
			got, err := FromUnstructured(u, IsSignetPolicy)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, countedOnly(want)) {
				t.Errorf("unstructured conversion\n got %#v\nwant %#v", got, want)
			}
			// Still valid JSON of the kind, and idempotent.
			before := u.DeepCopy()
			ShrinkUnstructured(u, IsSignetPolicy)
			if !reflect.DeepEqual(before.Object, u.Object) {
				t.Error("second shrink changed the object")
			}
		})
	}
}

func TestTransformLeavesOthersAlone(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{"a": "b"}}}
	upod := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "p", "annotations": map[string]any{"a": "b"}},
	}}
	for _, obj := range []any{pod, upod, "string", nil} {
		before := deepCopyAny(obj)
		out, err := SignetTransform(obj)
		if err != nil || !reflect.DeepEqual(out, before) {
			t.Errorf("transform changed %T: %v %v", obj, out, err)
		}
	}
	if _, err := FromUnstructured(upod, nil); err == nil {
		t.Error("FromUnstructured accepted a Pod")
	}
}

func deepCopyAny(obj any) any {
	if o, ok := obj.(runtime.Object); ok {
		return o.DeepCopyObject()
	}
	return obj
}

func TestShrinkInterns(t *testing.T) {
	// Decoded separately, as two informer events are: equal strings, distinct memory.
	data, err := json.Marshal(mixedReport())
	if err != nil {
		t.Fatal(err)
	}
	var a, b policyreportv1alpha2.PolicyReport
	if err := json.Unmarshal(data, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	if unsafe.StringData(a.Results[1].Policy) == unsafe.StringData(b.Results[1].Policy) {
		t.Skip("decoder already shares strings")
	}
	ShrinkPolicyReport(&a, IsSignetPolicy)
	ShrinkPolicyReport(&b, IsSignetPolicy)
	same := func(x, y string) bool { return unsafe.StringData(x) == unsafe.StringData(y) }
	if !same(a.Results[0].Policy, b.Results[0].Policy) || !same(a.Results[0].Rule, b.Results[0].Rule) ||
		!same(string(a.Results[0].Result), string(b.Results[0].Result)) || !same(a.Scope.Kind, b.Scope.Kind) ||
		!same(a.Namespace, b.Namespace) {
		t.Error("repeated strings not shared after shrink")
	}
}

func TestTransformConcurrent(t *testing.T) {
	// Informers of the four kinds run their transforms on their own goroutines.
	want := countedOnly(FromPolicyReport(mixedReport(), IsSignetPolicy))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				var obj any = mixedReport()
				if g%2 == 1 {
					obj = mixedReport().ToOpenReports()
				}
				if _, err := SignetTransform(obj); err != nil {
					t.Error(err)
					return
				}
				if got, _ := FromObject(obj, IsSignetPolicy); !reflect.DeepEqual(got, want) {
					t.Errorf("concurrent shrink: %#v", got)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// countedOnly is what the cache keeps of a report: results that are only counted (not fail
// or error) lose their message and image.
func countedOnly(r Report) Report {
	out := r
	out.Results = append([]Result(nil), r.Results...)
	for i := range out.Results {
		if !listed(out.Results[i].Result) {
			out.Results[i].Message, out.Results[i].Image = "", ""
		}
	}
	return out
}
