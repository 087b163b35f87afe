package render

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// The policies of test/bench/kyvernocompile (a reproduction of Kyverno's per-request cost
// that runs without Signet's code): registry i exactly as test/bench/admission creates
// it, with the registry host localhost:5000 (the benchmark substitutes its in-process
// registry's port) and keys derived from fixed seeds (seed 1 is the signing key the
// benchmark signs its image with; it derives the same key). TestKyvernoReproPolicies
// keeps them in step with the renderer: `go test ./internal/render -run
// TestKyvernoReproPolicies -update`.
const reproDir = "../../test/bench/kyvernocompile/testdata"

func reproInput(tb testing.TB, i int) Input {
	name := fmt.Sprintf("team-%d", i)
	tr := registry(name, func(s *v1alpha1.TrustedRegistrySpec) {
		s.Images = patterns(fmt.Sprintf("localhost:5000/team-%d/*", i))
		s.Namespaces.Names = []string{"production"}
		t := true
		s.RestrictRegistries = &t
		s.TransparencyLog.Ignore = &t
	})
	tr.UID = "00000000-0000-4000-8000-000000000000"
	seed := byte(1)
	if i%2 == 1 {
		seed = byte(2 + i%250)
	}
	return Input{Registry: tr, Keys: []Key{testKey(tb, "ci", seed, v1alpha1.KeyActive)}, Engine: v1alpha1.EngineImageValidatingPolicy}
}

// reproPolicies: naive-1 is registry 0's own policy (what a person would write for one
// registry); shared-N the shared policy for registries 0..N-1.
func reproPolicies(tb testing.TB) map[string]*unstructured.Unstructured {
	out := map[string]*unstructured.Unstructured{}
	u, err := Render(reproInput(tb, 0))
	if err != nil {
		tb.Fatal(err)
	}
	out["naive-1"] = u
	for _, n := range []int{1, 30, 300} {
		ins := make([]Input, n)
		for i := range ins {
			ins[i] = reproInput(tb, i)
		}
		res, err := RenderShared(ins)
		if err != nil {
			tb.Fatal(err)
		}
		if len(res.Policies) != 1 {
			tb.Fatalf("N=%d: %d shared policies, want 1", n, len(res.Policies))
		}
		out[fmt.Sprintf("shared-%d", n)] = res.Policies[0]
	}
	// the shared ClusterPolicy's registry restriction rule alone (cpol_test.go there)
	for _, n := range []int{1, 300} {
		ins := make([]Input, n)
		for i := range ins {
			ins[i] = reproInput(tb, i)
			ins[i].Engine = v1alpha1.EngineClusterPolicy
		}
		res, err := RenderShared(ins)
		if err != nil {
			tb.Fatal(err)
		}
		if len(res.Policies) != 1 {
			tb.Fatalf("ClusterPolicy N=%d: %d shared policies, want 1", n, len(res.Policies))
		}
		u := res.Policies[0].DeepCopy()
		rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
		var keep []any
		for _, r := range rules {
			if r.(map[string]any)["name"] == cpRuleRestrict {
				keep = append(keep, r)
			}
		}
		if len(keep) != 1 {
			tb.Fatalf("ClusterPolicy N=%d: %d rules %s", n, len(keep), cpRuleRestrict)
		}
		if err := unstructured.SetNestedSlice(u.Object, keep, "spec", "rules"); err != nil {
			tb.Fatal(err)
		}
		out[fmt.Sprintf("cpol-restrict-%d", n)] = u
	}
	return out
}

func TestKyvernoReproPolicies(t *testing.T) {
	for name, u := range reproPolicies(t) {
		// only what Kyverno reads: no Signet metadata
		obj := map[string]any{"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(),
			"metadata": map[string]any{"name": "repro-" + name}, "spec": u.Object["spec"]}
		got, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(reproDir, name+".yaml")
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(want) != string(got) {
			t.Errorf("%s differs from the renderer's output (%x vs %x); regenerate with -update", path, sha256.Sum256(want), sha256.Sum256(got))
		}
	}
}
