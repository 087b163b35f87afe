package controllers

import (
	"bytes"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/signet-operator/signet/internal/render"
)

// TestCoverageMemo: the memo gives every registry exactly coverageOf's coverage and patch,
// shares them between registries that match the same images (whatever their patterns), and
// never between different matches or different aggregates of a namespace.
func TestCoverageMemo(t *testing.T) {
	prod := aggregatePods([]*corev1.Pod{
		testPod("prod", "web", "ghcr.io/a/web:1", "mirror.example.com/envoy:1"),
		testPod("prod", "api", "ghcr.io/b/api:1", "mirror.example.com/envoy:1"),
		testPod("prod", "hub", "nginx:1.27"),
	})
	prod.seq = 1
	stage := aggregatePods([]*corev1.Pod{testPod("stage", "web", "ghcr.io/a/web:2")})
	stage.seq = 2
	if fmt.Sprint(len(prod.distinct), len(stage.distinct)) != "4 1" {
		t.Fatalf("distinct images: prod %v, stage %v", prod.distinct, stage.distinct)
	}
	registries := []struct {
		name     string
		patterns []string
		ns       []*namespacePods
	}{
		{"own-1", []string{"registry.example.com/one/*"}, []*namespacePods{prod}},
		{"own-2", []string{"registry.example.com/two/*"}, []*namespacePods{prod}}, // matches what own-1 matches: nothing
		{"a", []string{"ghcr.io/a/*"}, []*namespacePods{prod}},
		{"a-again", []string{"ghcr.io/a/web"}, []*namespacePods{prod}}, // other patterns, same image matched
		{"b", []string{"ghcr.io/b/*"}, []*namespacePods{prod}},
		{"hub", []string{"docker.io/library/nginx"}, []*namespacePods{prod}},
		{"a-two-ns", []string{"ghcr.io/a/*"}, []*namespacePods{prod, stage}},
		{"own-two-ns", []string{"registry.example.com/one/*"}, []*namespacePods{prod, stage}},
		{"never-aggregated", []string{"ghcr.io/a/*"}, []*namespacePods{nil, stage}},
	}
	memo := newCoverageMemo()
	got := map[string]*memoCoverage{}
	for _, r := range registries {
		m := render.NewMatcher(r.patterns)
		c := memo.of(m, r.ns)
		got[r.name] = c
		want := coverageOf(m, r.ns)
		if !equality.Semantic.DeepEqual(c.coverage, want) {
			t.Errorf("%s: memo %+v, coverageOf %+v", r.name, c.coverage, want)
		}
		patch, err := c.patchOf()
		wantPatch, err2 := coveragePatch(want)
		if err != nil || err2 != nil || !bytes.Equal(patch, wantPatch) {
			t.Errorf("%s: patch %s (%v), want %s (%v)", r.name, patch, err, wantPatch, err2)
		}
	}
	for _, pair := range [][2]string{{"own-1", "own-2"}, {"a", "a-again"}} {
		if got[pair[0]] != got[pair[1]] {
			t.Errorf("%s and %s match the same images but were computed apart", pair[0], pair[1])
		}
	}
	distinct := []string{"own-1", "a", "b", "hub", "a-two-ns", "own-two-ns", "never-aggregated"}
	for i, x := range distinct {
		for _, y := range distinct[i+1:] {
			if got[x] == got[y] {
				t.Errorf("%s and %s share a coverage: %+v", x, y, got[x].coverage)
			}
		}
	}
	// The namespace aggregated again (same Pods, so the same matches): another key.
	again := aggregatePods([]*corev1.Pod{testPod("stage", "web", "ghcr.io/a/web:2")})
	again.seq = 3
	if c := memo.of(render.NewMatcher([]string{"ghcr.io/a/*"}), []*namespacePods{prod, again}); c == got["a-two-ns"] {
		t.Error("a new aggregate of a namespace reused the coverage of the old one")
	}
}

// BenchmarkFlushCoverage is the coverage work of one flush of the I1 burst
// (test/bench/controller/insights.go): 300 registries, each with patterns of its own, over
// one namespace of 1,000 Pods running 20 apps and a shared sidecar that none of them lists.
func BenchmarkFlushCoverage(b *testing.B) {
	var pods []*corev1.Pod
	for i := 0; i < 1000; i++ {
		pods = append(pods, testPod("bench", fmt.Sprintf("web-%05d", i),
			fmt.Sprintf("registry.example.com/team-%02d/app:v1", i%20), "mirror.example.com/envoy:1.31"))
	}
	ns := aggregatePods(pods)
	ns.seq = 1
	aggs := []*namespacePods{ns}
	var matchers []*render.Matcher
	for i := 0; i < 300; i++ {
		m := render.NewMatcher([]string{fmt.Sprintf("ghcr.io/ins-%04d/*", i)})
		m.MatchCanonical(ns.distinct[0]) // (compiled before, as in the burst)
		matchers = append(matchers, m)
	}
	b.Run("each registry", func(b *testing.B) {
		for b.Loop() {
			for _, m := range matchers {
				if _, err := coveragePatch(coverageOf(m, aggs)); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("memo", func(b *testing.B) {
		for b.Loop() {
			memo := newCoverageMemo()
			for _, m := range matchers {
				if _, err := memo.of(m, aggs).patchOf(); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
