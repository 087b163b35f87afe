package render

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	policiesv1 "github.com/kyverno/api/api/policies.kyverno.io/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// benchShared renders n registries as the admission benchmark does and returns the first
// shared ImageValidatingPolicy's spec.
func benchShared(b *testing.B, n int) policiesv1.ImageValidatingPolicySpec {
	shared := testKey(b, "ci", 1, v1alpha1.KeyActive)
	var ins []Input
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("team-%d", i)
		tr := registry(name, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Images = patterns(fmt.Sprintf("registry.example.com:5000/team-%d/*", i))
			s.Namespaces.Names = []string{"production"}
			s.RestrictRegistries = new(bool)
		})
		tr.UID = types.UID(fmt.Sprintf("%x", sha256.Sum256([]byte(name)))[:36])
		key := shared
		if i%2 == 1 {
			key = testKey(b, "ci", byte(2+i%200), v1alpha1.KeyActive)
		}
		ins = append(ins, Input{Registry: tr, Keys: []Key{key}, Engine: v1alpha1.EngineImageValidatingPolicy})
	}
	res, err := RenderShared(ins)
	if err != nil {
		b.Fatal(err)
	}
	var spec policiesv1.ImageValidatingPolicySpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(res.Policies[0].Object["spec"].(map[string]any), &spec); err != nil {
		b.Fatal(err)
	}
	return spec
}

// BenchmarkSharedIVPEvaluation evaluates every variable and validation of the shared
// ImageValidatingPolicy for one admitted Pod, in a CEL environment like Kyverno's, with N
// registries guarding the Pod's namespace. Compare ns/op across N: the CEL part of the
// admission cost.
func BenchmarkSharedIVPEvaluation(b *testing.B) {
	for _, n := range []int{1, 30, 100, 300} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			spec := benchShared(b, n)
			db := sigDB{}
			img := "registry.example.com:5000/team-0/app@" + digestA
			db.sign(img, testKey(b, "ci", 1, v1alpha1.KeyActive).PEM)
			env, err := ivpEnv(db, nil)
			if err != nil {
				b.Fatal(err)
			}
			type prog struct {
				name string
				p    cel.Program
			}
			// compiled as Kyverno does: no evaluation options (no constant folding)
			plain := func(src string) cel.Program {
				ast, iss := env.Compile(src)
				if iss.Err() != nil {
					b.Fatal(iss.Err())
				}
				p, err := env.Program(ast)
				if err != nil {
					b.Fatal(err)
				}
				return p
			}
			var vars, vals []prog
			for _, v := range spec.Variables {
				vars = append(vars, prog{v.Name, plain(v.Expression)})
			}
			for _, v := range spec.Validations {
				vals = append(vals, prog{"", plain(v.Expression)})
			}
			attestors := map[string]any{}
			for _, a := range spec.Attestors {
				attestors[a.Name] = a.Cosign.Key.Data
			}
			pod := testPod{containers: []string{img}}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				variables := map[string]any{}
				act := map[string]any{"object": pod.objectIn(prod), "oldObject": nil, "request": map[string]any{"operation": "CREATE"},
					"namespaceObject": nsObject(prod), "images": map[string][]string{}, "attestors": attestors, "variables": variables}
				for _, v := range vars {
					out, _, err := v.p.Eval(act)
					if err != nil {
						b.Fatal(err)
					}
					variables[v.name] = out
				}
				for _, v := range vals {
					out, _, err := v.p.Eval(act)
					if err != nil || out.Value() != true {
						b.Fatalf("validation: %v %v", out, err)
					}
				}
			}
		})
	}
}

// BenchmarkSharedIVPCompile compiles every expression of the shared ImageValidatingPolicy,
// as Kyverno 1.19 does on every admission request (pkg/cel/policies/ivpol/engine).
func BenchmarkSharedIVPCompile(b *testing.B) {
	for _, n := range []int{1, 100, 300} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			spec := benchShared(b, n)
			env, err := ivpEnv(sigDB{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			menv, err := matchImageEnv()
			if err != nil {
				b.Fatal(err)
			}
			var exprs []string
			for _, v := range spec.Variables {
				exprs = append(exprs, v.Name+"\x00"+v.Expression)
			}
			for _, v := range spec.Validations {
				exprs = append(exprs, "validation\x00"+v.Expression, "message\x00"+v.MessageExpression)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, e := range exprs {
					_, src, _ := strings.Cut(e, "\x00")
					ast, iss := env.Compile(src)
					if iss.Err() != nil {
						b.Fatal(iss.Err())
					}
					if _, err := env.Program(ast); err != nil {
						b.Fatal(err)
					}
				}
				for _, m := range spec.MatchImageReferences {
					ast, iss := menv.Compile(m.Expression)
					if iss.Err() != nil {
						b.Fatal(iss.Err())
					}
					if _, err := menv.Program(ast); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkRenderShared renders n registries into the shared policies: the controller does
// this on every pass over the shared policies.
func BenchmarkRenderShared(b *testing.B) {
	for _, n := range []int{200, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			shared := testKey(b, "ci", 1, v1alpha1.KeyActive)
			var ins []Input
			for i := 0; i < n; i++ {
				name := fmt.Sprintf("team-%d", i)
				tr := registry(name, func(s *v1alpha1.TrustedRegistrySpec) {
					s.Images = patterns(fmt.Sprintf("registry.example.com:5000/team-%d/*", i))
				})
				tr.UID = types.UID(fmt.Sprintf("%x", sha256.Sum256([]byte(name)))[:36])
				key := shared
				if i%2 == 1 {
					key = testKey(b, "ci", byte(2+i%200), v1alpha1.KeyActive)
				}
				ins = append(ins, Input{Registry: tr, Keys: []Key{key}, Engine: v1alpha1.EngineImageValidatingPolicy})
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := RenderShared(ins); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
