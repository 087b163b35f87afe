package controllers

import (
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
	"github.com/signet-operator/signet/internal/reports"
)

func TestRegistriesNamedIn(t *testing.T) {
	for msg, want := range map[string][]string{
		"Pod a/b: [verify.team-a] fail (blocked); failed to verify image x":                                                                                                     {"team-a"},
		"Pod a/b: [allow.team-b.prod] fail (blocked); image(s) x not allowed by TrustedRegistry team-b.prod: only":                                                              {"team-b.prod"},
		"image(s) x not signed by any trusted signer of TrustedRegistry a (ci); image(s) y must be referenced by digest (image@sha256:...): TrustedRegistry b requires digests": {"a", "b"},
		"image(s) x not allowed by TrustedRegistry team-a: only images matching ...; image(s) x not allowed by TrustedRegistry team-a-x: only":                                  {"team-a", "team-a-x"},
		"failed to verify image x: no signatures found":                                                                                                                         nil,
		"validation rule 'check' passed.": nil,
	} {
		if got := registriesNamedIn(msg); !reflect.DeepEqual(got, want) {
			t.Errorf("registriesNamedIn(%q) = %v, want %v", msg, got, want)
		}
	}
}

// TestSharedResultMatcher: results of a shared policy count for a registry when its rule
// or its name says so, or — naming no one — when they concern a Pod of its namespaces that
// runs one of its images.
func TestSharedResultMatcher(t *testing.T) {
	tr := &trustv1alpha1.TrustedRegistry{ObjectMeta: metav1.ObjectMeta{Name: "team-a"},
		Spec: trustv1alpha1.TrustedRegistrySpec{Images: []trustv1alpha1.ImagePattern{"ghcr.io/team-a/*"}}}
	pod := func(ns, name string, images ...string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		for _, i := range images {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Image: i})
		}
		return p
	}
	pods := []*corev1.Pod{pod("prod", "mine", "ghcr.io/team-a/app:v1"), pod("prod", "theirs", "ghcr.io/team-b/app:v1")}
	match := sharedResultMatcher(tr, map[string]bool{"signet.ivp.enforce": true, "signet.cpol.all": true}, map[string]bool{"prod": true}, podsLookup(pods))
	for _, c := range []struct {
		res  reports.Result
		want bool
	}{
		{reports.Result{Policy: "signet.cpol.all", Rule: "verify.team-a", Result: "pass", Namespace: "other"}, true},
		{reports.Result{Policy: "signet.cpol.all", Rule: "verify.team-b", Result: "fail", Namespace: "prod", Name: "mine"}, false},
		{reports.Result{Policy: "signet.ivp.enforce", Result: "fail", Message: "image(s) x not signed by any trusted signer of TrustedRegistry team-a (ci)"}, true},
		{reports.Result{Policy: "signet.ivp.enforce", Result: "fail", Message: "image(s) x not signed by any trusted signer of TrustedRegistry team-b (ci)", Namespace: "prod", Name: "mine"}, false},
		{reports.Result{Policy: "signet.ivp.enforce", Result: "pass", Namespace: "prod", Name: "mine"}, true},
		{reports.Result{Policy: "signet.ivp.enforce", Result: "pass", Namespace: "prod", Name: "theirs"}, false},
		{reports.Result{Policy: "signet.ivp.enforce", Result: "pass", Namespace: "prod", Name: "unknown"}, true},
		{reports.Result{Policy: "signet.ivp.enforce", Result: "pass", Namespace: "elsewhere", Name: "mine"}, false},
		{reports.Result{Policy: "signet.ivp.audit", Result: "pass", Namespace: "prod", Name: "mine"}, false},
	} {
		res := c.res
		if got := match(&res); got != c.want {
			t.Errorf("%+v: %v, want %v", c.res, got, c.want)
		}
	}
}

func TestMergeBlocked(t *testing.T) {
	at := func(s int) metav1.Time { return metav1.NewTime(time.Unix(int64(s), 0)) }
	a := &trustv1alpha1.BlockedSummary{Window: "1h0m0s", Count: 3, Recent: []trustv1alpha1.BlockedRequest{{Name: "a3", Time: at(3)}, {Name: "a1", Time: at(1)}}}
	b := &trustv1alpha1.BlockedSummary{Window: "1h0m0s", Count: 5, Recent: []trustv1alpha1.BlockedRequest{{Name: "b9", Time: at(9)}, {Name: "b8", Time: at(8)}, {Name: "b7", Time: at(7)}, {Name: "b2", Time: at(2)}}}
	got := mergeBlocked(a, b)
	var names []string
	for _, r := range got.Recent {
		names = append(names, r.Name)
	}
	if got.Count != 8 || !reflect.DeepEqual(names, []string{"b9", "b8", "b7", "a3", "b2"}) {
		t.Fatalf("merged %d %v", got.Count, names)
	}
	if mergeBlocked(nil, b) != b || mergeBlocked(a, nil) != a || mergeBlocked(a, &trustv1alpha1.BlockedSummary{}) != a {
		t.Fatal("merging with nothing must keep the other")
	}
	if a.Count != 3 || len(a.Recent) != 2 {
		t.Fatal("mergeBlocked changed its argument")
	}
}

// TestWriteOrder: policies that gain branches first, then the restriction hosts, then the
// policies that lose branches or stop hosting.
func TestWriteOrder(t *testing.T) {
	policy := func(name, registries, restriction string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetKind("ImageValidatingPolicy")
		u.SetName(name)
		a := map[string]string{render.AnnotationRegistries: registries}
		if restriction != "" {
			a[render.AnnotationRestriction] = restriction
		}
		u.SetAnnotations(a)
		return u
	}
	live := map[string]*unstructured.Unstructured{}
	for _, p := range []*unstructured.Unstructured{
		policy("signet.ivp.enforce", `{"a":"h a"}`, "enforce"),  // stops hosting
		policy("signet.ivp.audit", `{"x":"h x","y":"h y"}`, ""), // loses y
		policy("signet.ivp.other", `{"o":"h o"}`, ""),           // unchanged
	} {
		live[p.GetKind()+"/"+p.GetName()] = p
	}
	desired := []*unstructured.Unstructured{
		policy("signet.ivp.audit", `{"x":"h x"}`, ""),
		policy("signet.ivp.enforce", `{"a":"h a","b":"h b"}`, ""),
		policy("signet.ivp.enforce-pin", `{"p":"h p"}`, "enforce"), // new host
		policy("signet.ivp.other", `{"o":"h o","n":"h n"}`, ""),    // gains n
	}
	var got []string
	for _, p := range writeOrder(desired, live) {
		got = append(got, p.GetName())
	}
	want := []string{"signet.ivp.other", "signet.ivp.enforce-pin", "signet.ivp.audit", "signet.ivp.enforce"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}
