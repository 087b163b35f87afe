package controllers

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
)

// coverageByPod is status.coverage as defined Pod by Pod (what the reconciler computed for
// every registry before the per-namespace aggregates): coverageOf must give the same.
func coverageByPod(patterns []string, pods []*corev1.Pod) *trustv1alpha1.CoverageSummary {
	matcher := render.NewMatcher(patterns)
	uses := map[string]*runningImage{}
	sum := &trustv1alpha1.CoverageSummary{}
	for _, p := range pods {
		sum.Pods++
		if countImages(uses, p, func(image string) bool { return !matcher.Match(image) }) {
			sum.UncoveredPods++
		}
	}
	for image, u := range uses {
		sum.Uncovered = append(sum.Uncovered, trustv1alpha1.UncoveredImage{Image: image, Pods: u.pods, Example: u.example})
	}
	sum.Uncovered = mostUsedFirst(sum.Uncovered, func(u trustv1alpha1.UncoveredImage) (int32, string) { return u.Pods, u.Image })
	return sum
}

func testPod(ns, name string, images ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for i, img := range images {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: img})
	}
	return p
}

func TestAggregatePods(t *testing.T) {
	pods := []*corev1.Pod{
		testPod("prod", "web-2", "ghcr.io/a/web:1", "mirror.example.com/envoy:1"),
		testPod("prod", "web-1", "mirror.example.com/envoy:1", "ghcr.io/a/web:1"), // same set, other order
		testPod("prod", "web-3", "ghcr.io/a/web:1", "ghcr.io/a/web:1", "mirror.example.com/envoy:1"),
		testPod("prod", "job", "nginx:1.27"),
	}
	pods[3].Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox:1"}}
	a := aggregatePods(pods)
	if a.pods != 4 || len(a.groups) != 2 {
		t.Fatalf("aggregate = %+v", a)
	}
	web := a.groups[a.group["web-3"]]
	if web.pods != 3 || web.example != "prod/web-1" || fmt.Sprint(web.images) != "[ghcr.io/a/web:1 mirror.example.com/envoy:1]" {
		t.Errorf("web group = %+v", web)
	}
	for _, g := range a.groups {
		for i, image := range g.images {
			if g.canonical[i] != render.Canonical(image) {
				t.Errorf("group %v: canonical[%d] = %v, not the canonical %s", g.images, i, g.canonical[i], image)
			}
		}
	}
	if imgs, ok := a.imagesOf("job"); !ok || fmt.Sprint(imgs) != "[busybox:1 nginx:1.27]" {
		t.Errorf("images of job = %v, %v", imgs, ok)
	}
	if _, ok := a.imagesOf("unknown"); ok {
		t.Error("an unknown Pod has images")
	}
	if e := aggregatePods(nil); e.pods != 0 || len(e.groups) != 0 {
		t.Errorf("no Pods: %+v", e)
	}
}

// TestCoverageOfAggregates: coverage from the per-namespace aggregates equals coverage
// computed Pod by Pod, for registries with different patterns over the same namespaces.
func TestCoverageOfAggregates(t *testing.T) {
	many := []*corev1.Pod{}
	for i := 0; i < 40; i++ {
		many = append(many, testPod("big", fmt.Sprintf("p-%02d", 39-i), fmt.Sprintf("registry.example.com/team-%d/app:v1", i%12), "mirror.example.com/envoy:1"))
	}
	cases := []struct {
		name     string
		patterns []string
		pods     map[string][]*corev1.Pod // by namespace
		want     *trustv1alpha1.CoverageSummary
	}{
		{name: "no pods", patterns: []string{"ghcr.io/a/*"}, pods: map[string][]*corev1.Pod{"prod": nil},
			want: &trustv1alpha1.CoverageSummary{}},
		{
			name:     "covered and not, two namespaces",
			patterns: []string{"ghcr.io/insight/*"},
			pods: map[string][]*corev1.Pod{
				"insight-a": {
					testPod("insight-a", "ok", "ghcr.io/insight/app@sha256:"+fmt.Sprintf("%064d", 1)),
					testPod("insight-a", "mirror", "ghcr.io/insight/app:1", "mirror.example.com/insight/app:1"),
				},
				"insight-b": {
					testPod("insight-b", "mirror2", "mirror.example.com/insight/app:1"),
					testPod("insight-b", "hub", "nginx:1.27"),
				},
			},
			want: &trustv1alpha1.CoverageSummary{Pods: 4, UncoveredPods: 3, Uncovered: []trustv1alpha1.UncoveredImage{
				{Image: "mirror.example.com/insight/app:1", Pods: 2, Example: "insight-a/mirror"},
				{Image: "nginx:1.27", Pods: 1, Example: "insight-b/hub"},
			}},
		},
		{name: "more uncovered images than listed", patterns: []string{"registry.example.com/team-3/*"}, pods: map[string][]*corev1.Pod{"big": many}},
		{name: "everything covered", patterns: []string{"registry.example.com/*", "mirror.example.com/*"}, pods: map[string][]*corev1.Pod{"big": many},
			want: &trustv1alpha1.CoverageSummary{Pods: 40}},
		{name: "Docker Hub spelled three ways", patterns: []string{"nginx"}, pods: map[string][]*corev1.Pod{"hub": {
			testPod("hub", "a", "nginx:1.27"), testPod("hub", "b", "docker.io/library/nginx:1.27"),
			testPod("hub", "c", "index.docker.io/nginx:1.28", "busybox:1"),
		}}, want: &trustv1alpha1.CoverageSummary{Pods: 3, UncoveredPods: 1, Uncovered: []trustv1alpha1.UncoveredImage{
			{Image: "busybox:1", Pods: 1, Example: "hub/c"},
		}}},
		{name: "invalid pattern matches nothing", patterns: []string{"[bad"}, pods: map[string][]*corev1.Pod{"big": many[:3]}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var all []*corev1.Pod
			var aggs []*namespacePods
			for _, ns := range slices.Sorted(maps.Keys(tc.pods)) {
				all = append(all, tc.pods[ns]...)
				aggs = append(aggs, aggregatePods(tc.pods[ns]))
			}
			got := coverageOf(render.NewMatcher(tc.patterns), aggs)
			if want := coverageByPod(tc.patterns, all); !equality.Semantic.DeepEqual(got, want) {
				t.Errorf("from aggregates %+v\nPod by Pod      %+v", got, want)
			}
			if tc.want != nil && !equality.Semantic.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if len(got.Uncovered) > maxUncovered {
				t.Errorf("%d uncovered images listed", len(got.Uncovered))
			}
		})
	}
	// A namespace never aggregated (nil) counts nothing.
	if got := coverageOf(render.NewMatcher([]string{"x/*"}), []*namespacePods{nil}); got.Pods != 0 {
		t.Errorf("nil aggregate: %+v", got)
	}
}

// TestPodInsightsDue: a namespace is aggregated once its Pods were quiet for podQuietDelay,
// or podMaxDelay after its first change while they keep changing.
func TestPodInsightsDue(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	now := t0
	p := newPodInsights(nil)
	p.now = func() time.Time { return now }
	if ok, _, wait := p.due("prod", now); ok || wait != 0 {
		t.Fatalf("nothing changed: due %v, wait %s", ok, wait)
	}
	p.changed("prod", false)
	if ok, _, wait := p.due("prod", now.Add(time.Second)); ok || wait != podQuietDelay-time.Second {
		t.Fatalf("1 s after a change: due %v, wait %s", ok, wait)
	}
	// a Pod every second: never quiet, due at podMaxDelay
	for now.Sub(t0) < podMaxDelay-time.Second {
		now = now.Add(time.Second)
		p.changed("prod", false)
		if ok, _, _ := p.due("prod", now); ok {
			t.Fatalf("due %s after the first change, while Pods keep changing", now.Sub(t0))
		}
	}
	now = t0.Add(podMaxDelay)
	if ok, reports, _ := p.due("prod", now); !ok || reports {
		t.Fatalf("at podMaxDelay: due %v, reports %v", ok, reports)
	}
	if ok, _, wait := p.due("prod", now); ok || wait != 0 {
		t.Fatalf("aggregated already: due %v, wait %s", ok, wait)
	}
	p.changed("prod", true)
	if ok, reports, _ := p.due("prod", now.Add(podQuietDelay)); !ok || !reports {
		t.Fatalf("report change after the quiet delay: due %v, reports %v", ok, reports)
	}
}

// TestCoveragePatch: the merge patch sets every field of status.coverage, so that a count
// dropping to zero or an emptied list does not keep its old value.
func TestCoveragePatch(t *testing.T) {
	for _, tc := range []struct {
		in   trustv1alpha1.CoverageSummary
		want string
	}{
		{trustv1alpha1.CoverageSummary{}, `{"status":{"coverage":{"pods":0,"uncovered":null,"uncoveredPods":0}}}`},
		{trustv1alpha1.CoverageSummary{Pods: 3, UncoveredPods: 1, Uncovered: []trustv1alpha1.UncoveredImage{{Image: "nginx:1", Pods: 1, Example: "a/b"}}},
			`{"status":{"coverage":{"pods":3,"uncovered":[{"image":"nginx:1","pods":1,"example":"a/b"}],"uncoveredPods":1}}}`},
		{trustv1alpha1.CoverageSummary{Pods: 2, Uncovered: []trustv1alpha1.UncoveredImage{}}, `{"status":{"coverage":{"pods":2,"uncovered":null,"uncoveredPods":0}}}`},
	} {
		got, err := coveragePatch(&tc.in)
		if err != nil || string(got) != tc.want {
			t.Errorf("coveragePatch(%+v) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

// TestBeyondInsights: watches that do not read the insights skip updates of them alone.
func TestBeyondInsights(t *testing.T) {
	base := &trustv1alpha1.TrustedRegistry{ObjectMeta: metav1.ObjectMeta{Name: "a", ResourceVersion: "1", Generation: 1}}
	base.Status.Coverage = &trustv1alpha1.CoverageSummary{Pods: 1}
	for _, tc := range []struct {
		name   string
		change func(*trustv1alpha1.TrustedRegistry)
		want   bool
	}{
		{"coverage", func(tr *trustv1alpha1.TrustedRegistry) { tr.Status.Coverage.Pods = 2 }, false},
		{"reports", func(tr *trustv1alpha1.TrustedRegistry) { tr.Status.Reports = &trustv1alpha1.ReportSummary{Pass: 3} }, false},
		{"a condition", func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Status.Conditions = []metav1.Condition{{Type: "CredentialsSynced", Status: metav1.ConditionTrue}}
		}, true},
		{"the spec", func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Generation, tr.Spec.Images = 2, []trustv1alpha1.ImagePattern{"x/*"}
		}, true},
		{"deletion", func(tr *trustv1alpha1.TrustedRegistry) { now := metav1.Now(); tr.DeletionTimestamp = &now }, true},
		{"the managed fields alone", func(tr *trustv1alpha1.TrustedRegistry) {
			tr.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "signet", Subresource: "status"}}
		}, false},
		{"a label", func(tr *trustv1alpha1.TrustedRegistry) { tr.Labels = map[string]string{"team": "a"} }, true},
		{"the status policy", func(tr *trustv1alpha1.TrustedRegistry) {
			tr.Status.Policy = &trustv1alpha1.PolicyReference{Name: "p"}
		}, true},
		// In doubt, an update passes: an empty list for none is semantically the same, but
		// the comparison is the strict one.
		{"no conditions respelled as an empty list", func(tr *trustv1alpha1.TrustedRegistry) { tr.Status.Conditions = []metav1.Condition{} }, true},
	} {
		after := base.DeepCopy()
		after.ResourceVersion = "2"
		tc.change(after)
		if got := beyondInsights.Update(event.UpdateEvent{ObjectOld: base, ObjectNew: after}); got != tc.want {
			t.Errorf("%s: passes %v, want %v", tc.name, got, tc.want)
		}
	}
}
