package render

import (
	"bytes"
	"math/rand"
	"strings"
	"testing"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// byteSource turns fuzz input into choices; it yields zeros when exhausted.
type byteSource struct {
	b []byte
	i int
}

func (s *byteSource) next() byte {
	if s.i >= len(s.b) {
		return 0
	}
	c := s.b[s.i]
	s.i++
	return c
}

func (s *byteSource) intn(n int) int { return int(s.next()) % n }
func (s *byteSource) bool() bool     { return s.next()&1 == 1 }

var (
	fuzzHosts    = []string{"ghcr.io/", "quay.io/", "docker.io/", "", "localhost:5000/", "registry.example.com:5000/", "index.docker.io/", "localhost/"}
	fuzzPaths    = []string{"yourorg/*", "app", "team/app", "*", "library/nginx", "a-*", "x/*/y", "nginx", "yourorg"}
	fuzzSuffixes = []string{"", "", ":v1", ":7.*", "@" + digestA, ":v1@" + digestB, ":latest", ":*"}
	fuzzNS       = []string{"production", "staging", "dev", "a-b", "kube-public"}
	fuzzKeyNames = []string{"ci", "release", "ops"}
)

// fuzzInput builds a TrustedRegistry (as the apiserver could store it) and a key ring.
func fuzzInput(t testing.TB, data []byte) Input {
	src := &byteSource{b: data}
	var pats []v1alpha1.ImagePattern
	for n := 1 + src.intn(5); n > 0; n-- {
		p := fuzzHosts[src.intn(len(fuzzHosts))] + fuzzPaths[src.intn(len(fuzzPaths))] + fuzzSuffixes[src.intn(len(fuzzSuffixes))]
		if _, err := parsePattern(p); err == nil {
			pats = append(pats, v1alpha1.ImagePattern(p))
		}
	}
	if len(pats) == 0 {
		pats = patterns("ghcr.io/yourorg/*")
	}
	spec := func(s *v1alpha1.TrustedRegistrySpec) {
		s.Images = pats
		s.Namespaces = v1alpha1.NamespaceSelection{}
		for i, n := range fuzzNS {
			if src.next()&(1<<uint(i%8)) != 0 {
				s.Namespaces.Names = append(s.Namespaces.Names, n)
			}
		}
		if src.bool() || len(s.Namespaces.Names) == 0 {
			sel := &metav1.LabelSelector{}
			if src.bool() {
				sel.MatchLabels = map[string]string{"signet.dev/enforce": "true"}
			}
			ops := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
			for n := src.intn(3); n > 0; n-- {
				op := ops[src.intn(len(ops))]
				r := metav1.LabelSelectorRequirement{Key: []string{"tier", "team", "env"}[src.intn(3)], Operator: op}
				if op == metav1.LabelSelectorOpIn || op == metav1.LabelSelectorOpNotIn {
					r.Values = []string{"a", "b", "c"}[:1+src.intn(3)]
				}
				sel.MatchExpressions = append(sel.MatchExpressions, r)
			}
			if len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0 {
				sel.MatchLabels = map[string]string{"team": "x"}
			}
			s.Namespaces.Selector = sel
		}
		s.Action = []v1alpha1.Action{"", v1alpha1.ActionEnforce, v1alpha1.ActionAudit}[src.intn(3)]
		s.RestrictRegistries = []*bool{nil, ptr.To(true), ptr.To(false)}[src.intn(3)]
		s.Digest = v1alpha1.DigestPolicy{Require: []*bool{nil, ptr.To(true), ptr.To(false)}[src.intn(3)]}
		if s.Action != v1alpha1.ActionAudit {
			s.Digest.Mutate = []*bool{nil, ptr.To(true), ptr.To(false)}[src.intn(3)]
		}
		s.TransparencyLog.Ignore = []*bool{nil, ptr.To(true), ptr.To(false)}[src.intn(3)]
		s.Keyless = nil
		for i, n := 0, src.intn(3); i < n; i++ {
			id := v1alpha1.KeylessIdentity{Name: []string{"gh", "gl", "ci-bot"}[i]}
			if src.bool() {
				id.Issuer = "https://token.actions.githubusercontent.com"
			} else {
				id.IssuerRegExp = `^https://gitlab\.example\.com$`
			}
			if src.bool() {
				id.Subject = "https://github.com/yourorg/app/.github/workflows/ci.yml@refs/heads/main"
			} else {
				id.SubjectRegExp = `^https://github\.com/yourorg/.+$`
			}
			s.Keyless = append(s.Keyless, id)
		}
		s.RequiredSignatures = int32(src.intn(4))
	}
	tr := registry("fuzz", spec)
	var keys []Key
	for n := src.intn(5); n > 0; n-- {
		state := v1alpha1.KeyActive
		if src.bool() {
			state = v1alpha1.KeyRetiring
		}
		keys = append(keys, testKey(t, fuzzKeyNames[src.intn(len(fuzzKeyNames))], byte(src.intn(6)), state))
	}
	if len(keys) == 0 && len(tr.Spec.Keyless) == 0 {
		keys = append(keys, testKey(t, "ci", 1, v1alpha1.KeyActive))
	}
	engine := v1alpha1.EngineImageValidatingPolicy
	if src.bool() {
		engine = v1alpha1.EngineClusterPolicy
	}
	return Input{Registry: tr, Keys: keys, Engine: engine}
}

// shuffled returns a copy of in with every list in a different order.
func shuffled(in Input, seed int64) Input {
	r := rand.New(rand.NewSource(seed))
	out := in
	out.Registry = in.Registry.DeepCopy()
	out.Keys = append([]Key(nil), in.Keys...)
	r.Shuffle(len(out.Keys), func(i, j int) { out.Keys[i], out.Keys[j] = out.Keys[j], out.Keys[i] })
	s := &out.Registry.Spec
	r.Shuffle(len(s.Images), func(i, j int) { s.Images[i], s.Images[j] = s.Images[j], s.Images[i] })
	r.Shuffle(len(s.Keyless), func(i, j int) { s.Keyless[i], s.Keyless[j] = s.Keyless[j], s.Keyless[i] })
	n := s.Namespaces.Names
	r.Shuffle(len(n), func(i, j int) { n[i], n[j] = n[j], n[i] })
	if sel := s.Namespaces.Selector; sel != nil {
		r.Shuffle(len(sel.MatchExpressions), func(i, j int) {
			sel.MatchExpressions[i], sel.MatchExpressions[j] = sel.MatchExpressions[j], sel.MatchExpressions[i]
		})
		for _, e := range sel.MatchExpressions {
			r.Shuffle(len(e.Values), func(i, j int) { e.Values[i], e.Values[j] = e.Values[j], e.Values[i] })
		}
	}
	return out
}

// checkRenderProperties asserts the safety properties of one rendering.
func checkRenderProperties(t testing.TB, in Input) {
	t.Helper()
	u, err := Render(in)
	if err != nil {
		if !IsInvalid(err) {
			t.Fatalf("Render: unexpected non-spec error for a valid input: %v", err)
		}
		return
	}
	first, err := yaml.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	// deterministic, and independent of list order
	for seed := int64(0); seed < 3; seed++ {
		u2, err := Render(shuffled(in, seed))
		if err != nil {
			t.Fatalf("Render of shuffled input: %v", err)
		}
		again, _ := yaml.Marshal(u2.Object)
		if !bytes.Equal(first, again) {
			t.Fatalf("rendering depends on input order:\n%s", lineDiff(string(first), string(again)))
		}
	}
	spec := u.Object["spec"].(map[string]any)
	if spec["failurePolicy"] != "Fail" {
		t.Fatalf("failurePolicy %v", spec["failurePolicy"])
	}
	// never Audit unless asked
	wantAction := "Enforce"
	if in.Registry.Spec.Action == v1alpha1.ActionAudit {
		wantAction = "Audit"
	}
	switch in.Engine {
	case v1alpha1.EngineImageValidatingPolicy:
		acts, _ := spec["validationActions"].([]any)
		want := map[string]string{"Enforce": "Deny", "Audit": "Audit"}[wantAction]
		if len(acts) != 1 || acts[0] != want {
			t.Fatalf("validationActions %v, want [%s]", acts, want)
		}
	case v1alpha1.EngineClusterPolicy:
		n := strings.Count(string(first), "failureAction: ")
		if n == 0 || strings.Count(string(first), "failureAction: "+wantAction+"\n") != n {
			t.Fatalf("failureAction is not %s on every rule", wantAction)
		}
		if strings.Contains(string(first), "validationFailureAction") {
			t.Fatal("spec.validationFailureAction must not be set")
		}
	}
	// every given key is present
	for _, k := range in.Keys {
		if !containsPEM(u.Object, k.PEM) {
			t.Fatalf("key %s (%s) is missing from the policy", k.Name, k.Fingerprint)
		}
	}
	// keyless identities are present
	for _, id := range in.Registry.Spec.Keyless {
		for _, v := range []string{id.Issuer, id.IssuerRegExp, id.Subject, id.SubjectRegExp} {
			if v != "" && !strings.Contains(string(first), v) {
				t.Fatalf("keyless identity %s: %q missing", id.Name, v)
			}
		}
	}
	// matching never broader than the patterns, CEL and Go agree, ClusterPolicy globs cover
	pats := make([]string, 0, len(in.Registry.Spec.Images))
	for _, p := range in.Registry.Spec.Images {
		pats = append(pats, string(p))
	}
	probes := probeImages(pats)
	ps, err := newPatternSet(pats)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range probes {
		if ps.match(img) {
			ok := false
			for _, p := range pats {
				ok = ok || anchorOK(p, img)
			}
			if !ok {
				t.Fatalf("patterns %q admit %q beyond their anchors", pats, img)
			}
		}
	}
	if in.Engine == v1alpha1.EngineImageValidatingPolicy {
		refs := spec["matchImageReferences"].([]any)
		expr := refs[0].(map[string]any)["expression"].(string)
		env, err := matchImageEnv()
		if err != nil {
			t.Fatal(err)
		}
		p, err := compileCEL(env, expr)
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range probes {
			if got, want := p.evalBool(t, map[string]any{"ref": img}), ps.match(img); got != want {
				t.Fatalf("patterns %q image %q: rendered CEL %v, MatchImage %v", pats, img, got, want)
			}
		}
	} else {
		checkGlobsCover(t, pats, probes)
	}
}

func containsPEM(obj any, pemText string) bool {
	switch x := obj.(type) {
	case string:
		return x == pemText
	case map[string]any:
		for _, v := range x {
			if containsPEM(v, pemText) {
				return true
			}
		}
	case []any:
		for _, v := range x {
			if containsPEM(v, pemText) {
				return true
			}
		}
	}
	return false
}

func FuzzRender(f *testing.F) {
	for _, seed := range [][]byte{
		{},
		{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20},
		[]byte("signet-render-fuzz-seed-0123456789abcdef"),
		bytes.Repeat([]byte{0xff}, 48),
		bytes.Repeat([]byte{0x55, 0xaa}, 24),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRenderProperties(t, fuzzInput(t, data))
	})
}

// TestRenderRandomInputs runs the fuzz properties over pseudo-random inputs in normal test
// runs.
func TestRenderRandomInputs(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	n := 200
	if testing.Short() {
		n = 30
	}
	for i := 0; i < n; i++ {
		data := make([]byte, 64)
		r.Read(data)
		checkRenderProperties(t, fuzzInput(t, data))
	}
}

func TestDeterminism(t *testing.T) {
	for _, sc := range scenarios() {
		for _, e := range engines {
			in := sc.in(t)
			in.Engine = e.engine
			a := renderYAML(t, in)
			b := renderYAML(t, in)
			if !bytes.Equal(a, b) {
				t.Fatalf("%s/%s: two renderings differ", sc.name, e.name)
			}
			for seed := int64(1); seed <= 5; seed++ {
				c := renderYAML(t, shuffled(in, seed))
				if !bytes.Equal(a, c) {
					t.Fatalf("%s/%s: shuffled input renders differently:\n%s", sc.name, e.name, lineDiff(string(a), string(c)))
				}
			}
		}
	}
}

// FuzzMatchImageCEL compares MatchImage with the rendered CEL matcher on arbitrary image
// strings (any bytes a Pod spec could carry, including non-ASCII).
func FuzzMatchImageCEL(f *testing.F) {
	sets := [][]string{
		{"ghcr.io/yourorg/*"},
		{"nginx", "docker.io/*"},
		{"nginx:1.27", "quay.io/team/tool@" + digestA, "localhost:5000/dev/*"},
		{"gcr.io/*/mirror", "redis:7.*", "index.docker.io/bitnami/postgresql"},
	}
	env, err := matchImageEnv()
	if err != nil {
		f.Fatal(err)
	}
	progs := make([]*celProgram, len(sets))
	pss := make([]*patternSet, len(sets))
	for i, s := range sets {
		ps, err := newPatternSet(s)
		if err != nil {
			f.Fatal(err)
		}
		pss[i] = ps
		if progs[i], err = compileCEL(env, celImageMatch("ref", ps.re)); err != nil {
			f.Fatal(err)
		}
	}
	for _, c := range matchCases() {
		f.Add(uint8(0), c.image)
	}
	f.Add(uint8(1), "docker.io/ü/x")
	f.Add(uint8(2), "localhost:5000/dev/é@"+digestA)
	f.Fuzz(func(t *testing.T, set uint8, image string) {
		i := int(set) % len(sets)
		if !utf8.ValidString(image) {
			return // Kubernetes objects are JSON: strings are valid UTF-8
		}
		want := pss[i].match(image)
		if got := progs[i].evalBool(t, map[string]any{"ref": image}); got != want {
			t.Fatalf("patterns %q image %q: CEL %v, Go %v", sets[i], image, got, want)
		}
		if want {
			ok := false
			for _, p := range sets[i] {
				ok = ok || anchorOK(p, image)
			}
			if !ok {
				t.Fatalf("patterns %q admit %q beyond their anchors", sets[i], image)
			}
		}
	})
}
