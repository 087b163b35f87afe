package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	policiesv1 "github.com/kyverno/api/api/policies.kyverno.io/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// --- the attestation model of the test CEL environments --------------------------------

// An attestation in the sigDB is the identity "attest|<type URI>|<signer identity>|<statement JSON>".
func (db sigDB) attest(image, uri, identity string, statement map[string]any) {
	b, err := json.Marshal(statement)
	if err != nil {
		panic(err)
	}
	db.sign(image, "attest|"+uri+"|"+identity+"|"+string(b))
}

type dbAttestation struct {
	uri, identity string
	statement     map[string]any
}

func (db sigDB) attestations(image string) []dbAttestation {
	var ids []string
	for id := range db[sigKey(image)] {
		if strings.HasPrefix(id, "attest|") {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	var out []dbAttestation
	for _, id := range ids {
		parts := strings.SplitN(id, "|", 4)
		// a keyless identity contains '|': the statement is after the last "|{"
		i := strings.LastIndex(id, "|{")
		rest := id[len("attest|"+parts[1]+"|"):i]
		var st map[string]any
		if err := json.Unmarshal([]byte(id[i+1:]), &st); err != nil {
			panic(err)
		}
		out = append(out, dbAttestation{uri: parts[1], identity: rest, statement: st})
	}
	return out
}

func typePrefix(uri string) string {
	sum := sha256.Sum256([]byte(uri))
	return "at_" + hex.EncodeToString(sum[:])[:12] + "_"
}

// attestationEnvOptions add Kyverno's attestations variable, verifyAttestationSignatures
// and extractPayload to the ImageValidatingPolicy test environment. Like Kyverno 1.19,
// each verified attestation of a type overwrites the image's payload of that type, and
// extractPayload returns the one verified last (pkg/cel/libs/imageverify/impl.go).
func attestationEnvOptions(db sigDB) []cel.EnvOption {
	last := map[string]map[string]any{} // image|uri -> statement
	return []cel.EnvOption{
		cel.Variable("attestations", cel.MapType(cel.StringType, cel.StringType)),
		cel.Function("verifyAttestationSignatures",
			cel.Overload("verify_image_attestations_string_string_stringarray",
				[]*cel.Type{cel.StringType, cel.StringType, cel.ListType(cel.DynType)}, cel.IntType,
				cel.FunctionBinding(func(args ...ref.Val) ref.Val {
					image, _ := args[0].Value().(string)
					name, _ := args[1].Value().(string)
					l, err := args[2].ConvertToNative(stringSliceType)
					if err != nil {
						return types.WrapErr(err)
					}
					n := 0
					for _, who := range l.([]string) {
						ok := false
						for _, a := range db.attestations(image) {
							if strings.HasPrefix(name, typePrefix(a.uri)) && a.identity == who {
								ok = true
								last[image+"|"+a.uri] = a.statement
							}
						}
						if ok {
							n++
						}
					}
					return types.Int(n)
				}))),
		cel.Function("extractPayload",
			cel.Overload("extract_payload_string_string", []*cel.Type{cel.StringType, cel.StringType}, cel.DynType,
				cel.BinaryBinding(func(img, att ref.Val) ref.Val {
					image, _ := img.Value().(string)
					name, _ := att.Value().(string)
					for k, st := range last {
						uri := strings.TrimPrefix(k, image+"|")
						if strings.HasPrefix(k, image+"|") && strings.HasPrefix(name, typePrefix(uri)) {
							return types.DefaultTypeAdapter.NativeToValue(st)
						}
					}
					return types.NewErr("intoto attestation payload cannot be fetch before verifying intoto attestation")
				}))),
	}
}

// attestationNames is Kyverno's attestations variable: name -> name.
func attestationNames(spec policiesv1.ImageValidatingPolicySpec) map[string]string {
	m := map[string]string{}
	for _, a := range spec.Attestations {
		m[a.Name] = a.Name
	}
	return m
}

// cpVerifyAttestations is Kyverno's verifyAttestations for a ClusterPolicy
// (pkg/engine/internal/imageverifier.go): for each attestation, every attestor set must
// have count entries (flat: nested sets are not descended into) that fetched attestations
// of the type, every one of which meets the conditions. It returns the failure message.
func cpVerifyAttestations(atts []cpAttestation, img string, db sigDB) string {
	for _, a := range atts {
		for _, set := range a.Attestors {
			need := len(set.Entries)
			if set.Count != nil && *set.Count > 0 {
				need = *set.Count
			}
			n := 0
			for _, e := range set.Entries {
				var who string
				switch {
				case e.Attestor != nil:
					panic("Kyverno does not descend into nested attestor sets for attestations")
				case e.Keys != nil:
					who = e.Keys.PublicKeys
				case e.Keyless != nil:
					who = keylessIdentity(e.Keyless.Issuer, e.Keyless.IssuerRegExp, e.Keyless.Subject, e.Keyless.SubjectRegExp)
				}
				found, ok := false, true
				for _, at := range db.attestations(img) {
					if at.identity != who || at.uri != a.Type {
						continue
					}
					found = true
					ok = ok && cpConditionsHold(a.Conditions, at.statement)
				}
				if found && ok {
					n++
				}
			}
			if n < need {
				return fmt.Sprintf("%s: image attestations verification failed, verifiedCount: %d, requiredCount: %d, type %s", img, n, need, a.Type)
			}
		}
	}
	return ""
}

func cpConditionsHold(conds []cpAnyAllConditions, statement map[string]any) bool {
	pred, _ := statement["predicate"].(map[string]any)
	for _, c := range conds {
		for _, cond := range c.All {
			path := strings.TrimSuffix(strings.TrimPrefix(cond.Key, "{{ "), " }}")
			var v any = pred
			for _, k := range strings.Split(path, ".") {
				m, ok := v.(map[string]any)
				if !ok {
					return false
				}
				if v, ok = m[strings.Trim(k, `"`)]; !ok {
					return false // Kyverno: variable substitution fails
				}
			}
			s, ok := v.(string)
			if !ok {
				return false
			}
			switch cond.Operator {
			case "Equals":
				if s != cond.Value.(string) {
					return false
				}
			case "AnyIn":
				in := false
				for _, x := range cond.Value.([]any) {
					in = in || x.(string) == s
				}
				if !in {
					return false
				}
			default:
				panic("operator " + cond.Operator)
			}
		}
	}
	return true
}

// --- scenarios -----------------------------------------------------------------------

const (
	slsaV1      = "https://slsa.dev/provenance/v1"
	cycloneDX   = "https://cyclonedx.org/bom"
	mainBuilder = "https://github.com/yourorg/.github/workflows/build.yml@refs/heads/main"
)

func provenance(builder, repo string) map[string]any {
	return map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"predicateType": slsaV1,
		"predicate": map[string]any{
			"buildDefinition": map[string]any{"externalParameters": map[string]any{"workflow": map[string]any{"repository": repo}}},
			"runDetails":      map[string]any{"builder": map[string]any{"id": builder}},
		},
	}
}

func attestScenarios() []scenario {
	return []scenario{
		{"attestations", func(t testing.TB) Input {
			return Input{Registry: registry("attest", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Attestations = []v1alpha1.AttestationRequirement{
					{Type: "slsaprovenance1", Conditions: []v1alpha1.PredicateCondition{
						{Path: "runDetails.builder.id", Equals: ptr.To(mainBuilder)},
						{Path: "buildDefinition.externalParameters.workflow.repository", OneOf: []string{"https://github.com/yourorg/app", "https://github.com/yourorg/tool"}},
					}},
					{Type: "cyclonedx"},
				}
			}), Keys: []Key{testKey(t, "ci-2026", 1, v1alpha1.KeyActive)}}
		}},
		{"attestations-threshold", func(t testing.TB) Input {
			// a rotating key name and a second signer, two required
			return Input{Registry: registry("attestthreshold", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Keys = append(s.Keys, v1alpha1.PublicKey{Name: "release", SecretRef: v1alpha1.SecretKeyReference{Name: "release-key", Key: "cosign.pub"}})
				s.Keyless = []v1alpha1.KeylessIdentity{{Name: "github-main", Issuer: "https://token.actions.githubusercontent.com",
					Subject: "https://github.com/yourorg/app/.github/workflows/release.yml@refs/heads/main"}}
				s.RequiredSignatures = 2
				s.Attestations = []v1alpha1.AttestationRequirement{{Type: slsaV1}}
			}), Keys: []Key{
				testKey(t, "ci-2026", 1, v1alpha1.KeyRetiring),
				testKey(t, "ci-2026", 2, v1alpha1.KeyActive),
				testKey(t, "release", 3, v1alpha1.KeyActive),
			}}
		}},
		{"signatures-repository", func(t testing.TB) Input {
			return Input{Registry: registry("sigrepo", func(s *v1alpha1.TrustedRegistrySpec) {
				s.SignaturesRepository = "ghcr.io/yourorg/signatures"
				s.Keyless = []v1alpha1.KeylessIdentity{{Name: "github-main", Issuer: "https://token.actions.githubusercontent.com",
					Subject: "https://github.com/yourorg/app/.github/workflows/release.yml@refs/heads/main"}}
			}), Keys: []Key{testKey(t, "ci-2026", 1, v1alpha1.KeyActive)}}
		}},
	}
}

// sharedAttestInputs: the attestation scenarios next to a registry without attestations
// that trusts the same key for another organisation.
func sharedAttestInputs(t testing.TB, engine v1alpha1.Engine) []Input {
	var ins []Input
	scs := append(attestScenarios(), scenario{"plain", func(t testing.TB) Input {
		return Input{Registry: registry("plain", func(s *v1alpha1.TrustedRegistrySpec) {
			s.Images = patterns("ghcr.io/partner/*")
		}), Keys: []Key{testKey(t, "ci-2026", 1, v1alpha1.KeyActive)}}
	}})
	for _, sc := range scs {
		in := sc.in(t)
		in.Registry.Name = sc.name
		in.Registry.UID = ktypes.UID(fmt.Sprintf("00000000-0000-4000-8000-%012x", sha256.Sum256([]byte(sc.name)))[:36])
		in.Engine = engine
		ins = append(ins, in)
	}
	return ins
}

// TestAttestationSharedGolden: the shared policies of the attestation scenarios, in
// testdata/attest/ (run with -update to accept changes). The shared goldens of the other
// scenarios (testdata/shared.*) stay as they are: a policy holds the attestation check only
// when one of its registries requires attestations.
func TestAttestationSharedGolden(t *testing.T) {
	dir := filepath.Join("testdata", "attest")
	for _, e := range engines {
		res, err := RenderShared(sharedAttestInputs(t, e.engine))
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range res.Policies {
			got, err := yaml.Marshal(u.Object)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "shared."+u.GetName()+".yaml")
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/render -run TestAttestationSharedGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the rendered policy (run with -update to accept):\n%s", path, lineDiff(string(want), string(got)))
			}
		}
	}
}

// TestNoAttestationsNoChange: a registry without attestations renders no attestation
// field, variable or validation in either layout.
func TestNoAttestationsNoChange(t *testing.T) {
	for _, e := range engines {
		in := Input{Registry: registry("plain", nil), Keys: []Key{testKey(t, "ci-2026", 1, v1alpha1.KeyActive)}, Engine: e.engine}
		u, err := Render(in)
		if err != nil {
			t.Fatal(err)
		}
		res, err := RenderShared([]Input{in})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range append([]*unstructured.Unstructured{u}, res.Policies...) {
			b, _ := json.Marshal(p.Object)
			for _, s := range []string{"attestations", "unattested", "repository", "source"} {
				if bytes.Contains(b, []byte(`"`+s+`"`)) || bytes.Contains(b, []byte(ivpVarUnattested)) {
					t.Errorf("%s %s: %q rendered without attestations", e.name, p.GetName(), s)
				}
			}
		}
	}
}

type attestCase struct {
	name     string
	scenario string
	sign     func(t testing.TB, db sigDB, in Input)
	want     outcome
	msg      []string
}

func attestAll(img string, in Input, who []string, uri string, st map[string]any, db sigDB) {
	for _, w := range who {
		db.attest(img, uri, w, st)
	}
}

func attestCases() []attestCase {
	good := provenance(mainBuilder, "https://github.com/yourorg/app")
	sbom := map[string]any{"predicateType": cycloneDX, "predicate": map[string]any{"bomFormat": "CycloneDX"}}
	ci := func(in Input) []string { return []string{keyID(in.Keys[0])} }
	other := func(t testing.TB) string { return testKey(t, "x", 9, v1alpha1.KeyActive).PEM }
	return []attestCase{
		{"attested image admitted", "attestations", func(t testing.TB, db sigDB, in Input) {
			db.sign(appA, ci(in)...)
			attestAll(appA, in, ci(in), slsaV1, good, db)
			attestAll(appA, in, ci(in), cycloneDX, sbom, db)
		}, allow, nil},
		{"unsigned image reported as unsigned", "attestations", func(t testing.TB, db sigDB, in Input) {
			attestAll(appA, in, ci(in), slsaV1, good, db)
			attestAll(appA, in, ci(in), cycloneDX, sbom, db)
		}, deny, []string{"ghcr.io/yourorg/app"}},
		{"missing provenance denied", "attestations", func(t testing.TB, db sigDB, in Input) {
			db.sign(appA, ci(in)...)
			attestAll(appA, in, ci(in), cycloneDX, sbom, db)
		}, deny, []string{"ghcr.io/yourorg/app", slsaV1}},
		{"missing SBOM denied", "attestations", func(t testing.TB, db sigDB, in Input) {
			db.sign(appA, ci(in)...)
			attestAll(appA, in, ci(in), slsaV1, good, db)
		}, deny, []string{"ghcr.io/yourorg/app", cycloneDX}},
		{"wrong builder denied", "attestations", func(t testing.TB, db sigDB, in Input) {
			db.sign(appA, ci(in)...)
			attestAll(appA, in, ci(in), slsaV1, provenance("https://evil.example/builder", "https://github.com/yourorg/app"), db)
			attestAll(appA, in, ci(in), cycloneDX, sbom, db)
		}, deny, []string{"ghcr.io/yourorg/app", slsaV1}},
		{"repository outside oneOf denied", "attestations", func(t testing.TB, db sigDB, in Input) {
			db.sign(appA, ci(in)...)
			attestAll(appA, in, ci(in), slsaV1, provenance(mainBuilder, "https://github.com/evil/app"), db)
			attestAll(appA, in, ci(in), cycloneDX, sbom, db)
		}, deny, []string{"ghcr.io/yourorg/app"}},
		{"missing predicate field denied", "attestations", func(t testing.TB, db sigDB, in Input) {
			db.sign(appA, ci(in)...)
			attestAll(appA, in, ci(in), slsaV1, map[string]any{"predicate": map[string]any{"runDetails": "flat"}}, db)
			attestAll(appA, in, ci(in), cycloneDX, sbom, db)
		}, deny, []string{"ghcr.io/yourorg/app"}},
		{"attestation by another key denied", "attestations", func(t testing.TB, db sigDB, in Input) {
			db.sign(appA, ci(in)...)
			attestAll(appA, in, []string{other(t)}, slsaV1, good, db)
			attestAll(appA, in, ci(in), cycloneDX, sbom, db)
		}, deny, []string{"ghcr.io/yourorg/app", slsaV1}},
		{"threshold: two signers attested", "attestations-threshold", func(t testing.TB, db sigDB, in Input) {
			db.sign(appA, keyID(in.Keys[1]), keyID(in.Keys[2]))
			attestAll(appA, in, []string{keyID(in.Keys[1]), keyID(in.Keys[2])}, slsaV1, good, db)
		}, allow, nil},
		{"threshold: keyless and retiring key attested", "attestations-threshold", func(t testing.TB, db sigDB, in Input) {
			db.sign(appA, keyID(in.Keys[0]), keylessID(in.Registry.Spec.Keyless[0]))
			attestAll(appA, in, []string{keyID(in.Keys[0]), keylessID(in.Registry.Spec.Keyless[0])}, slsaV1, good, db)
		}, allow, nil},
		{"threshold: old and new key of one name count once", "attestations-threshold", func(t testing.TB, db sigDB, in Input) {
			db.sign(appA, keyID(in.Keys[1]), keyID(in.Keys[2]))
			attestAll(appA, in, []string{keyID(in.Keys[0]), keyID(in.Keys[1])}, slsaV1, good, db)
		}, deny, []string{"ghcr.io/yourorg/app"}},
		{"threshold: one signer attested", "attestations-threshold", func(t testing.TB, db sigDB, in Input) {
			db.sign(appA, keyID(in.Keys[1]), keyID(in.Keys[2]))
			attestAll(appA, in, []string{keyID(in.Keys[2])}, slsaV1, good, db)
		}, deny, []string{"ghcr.io/yourorg/app"}},
	}
}

// TestAttestationBehaviour evaluates the rendered policies of both engines and both
// layouts in the test model of Kyverno (semantics_test.go).
func TestAttestationBehaviour(t *testing.T) {
	byName := map[string]scenario{}
	for _, sc := range attestScenarios() {
		byName[sc.name] = sc
	}
	for _, c := range attestCases() {
		for _, e := range engines {
			t.Run(c.name+"/"+e.name, func(t *testing.T) {
				in := byName[c.scenario].in(t)
				in.Engine = e.engine
				db := sigDB{}
				c.sign(t, db, in)
				u, err := Render(in)
				if err != nil {
					t.Fatal(err)
				}
				check := func(layout string, d decision) {
					if got := outcomeOf(d); got != c.want {
						t.Errorf("%s: %v, want %v (%s)", layout, got, c.want, d.message)
					}
					for _, m := range c.msg {
						if !strings.Contains(d.message, m) {
							t.Errorf("%s: message %q does not mention %q", layout, d.message, m)
						}
					}
					if c.want == deny && e.engine == v1alpha1.EngineImageValidatingPolicy && !strings.Contains(d.message, in.Registry.Name) {
						t.Errorf("%s: message %q does not name TrustedRegistry %s", layout, d.message, in.Registry.Name)
					}
				}
				pod := testPod{containers: []string{appA}}
				check("per-registry", evalPolicy(t, e.engine, u, prod, pod, db))
				res, err := RenderShared([]Input{in})
				if err != nil {
					t.Fatal(err)
				}
				check("shared", evalAll(t, e.engine, res.Policies, pod, db))
			})
		}
	}
}

func TestAttestationInvalid(t *testing.T) {
	cases := []struct {
		name   string
		engine v1alpha1.Engine
		mut    func(*v1alpha1.TrustedRegistrySpec)
		want   string
	}{
		{"unknown short name", v1alpha1.EngineImageValidatingPolicy, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Attestations = []v1alpha1.AttestationRequirement{{Type: "slsa"}}
		}, "neither a known short name"},
		{"both equals and oneOf", v1alpha1.EngineClusterPolicy, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Attestations = []v1alpha1.AttestationRequirement{{Type: "slsaprovenance1", Conditions: []v1alpha1.PredicateCondition{{Path: "a", Equals: ptr.To("x"), OneOf: []string{"y"}}}}}
		}, "exactly one of equals or oneOf"},
		{"neither equals nor oneOf", v1alpha1.EngineImageValidatingPolicy, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Attestations = []v1alpha1.AttestationRequirement{{Type: "slsaprovenance1", Conditions: []v1alpha1.PredicateCondition{{Path: "a"}}}}
		}, "exactly one of equals or oneOf"},
		{"wildcard value", v1alpha1.EngineImageValidatingPolicy, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Attestations = []v1alpha1.AttestationRequirement{{Type: "slsaprovenance1", Conditions: []v1alpha1.PredicateCondition{{Path: "a", Equals: ptr.To("https://github.com/*")}}}}
		}, "must not contain"},
		{"variable value", v1alpha1.EngineClusterPolicy, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Attestations = []v1alpha1.AttestationRequirement{{Type: "slsaprovenance1", Conditions: []v1alpha1.PredicateCondition{{Path: "a", OneOf: []string{"{{ request.object }}"}}}}}
		}, "must not contain"},
		{"bad path", v1alpha1.EngineImageValidatingPolicy, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Attestations = []v1alpha1.AttestationRequirement{{Type: "slsaprovenance1", Conditions: []v1alpha1.PredicateCondition{{Path: "a..b", Equals: ptr.To("x")}}}}
		}, "condition path"},
		{"path reading Kyverno's context", v1alpha1.EngineClusterPolicy, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Attestations = []v1alpha1.AttestationRequirement{{Type: "slsaprovenance1", Conditions: []v1alpha1.PredicateCondition{{Path: "request.operation", Equals: ptr.To("CREATE")}}}}
		}, "admission request"},
		{"type listed twice", v1alpha1.EngineImageValidatingPolicy, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Attestations = []v1alpha1.AttestationRequirement{{Type: "cyclonedx"}, {Type: "cyclonedx"}}
		}, "listed twice"},
		{"bad repository", v1alpha1.EngineClusterPolicy, func(s *v1alpha1.TrustedRegistrySpec) {
			s.SignaturesRepository = "ghcr.io/yourorg/signatures:latest"
		}, "signaturesRepository"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := Input{Registry: registry("bad", c.mut), Keys: []Key{testKey(t, "ci-2026", 1, v1alpha1.KeyActive)}, Engine: c.engine}
			_, err := Render(in)
			if err == nil || !IsInvalid(err) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Render: %v, want an InvalidError mentioning %q", err, c.want)
			}
			if _, err := RenderShared([]Input{in}); err == nil || !IsInvalid(err) {
				t.Fatalf("RenderShared: %v, want an InvalidError", err)
			}
		})
	}
}

// TestCPAttestationSetsExact: the flat attestor sets accept exactly the signer subsets
// that reach the threshold (every subset of signers, each signer attesting with one of
// its keys).
func TestCPAttestationSetsExact(t *testing.T) {
	for _, required := range []int{1, 2, 3} {
		keys := []Key{
			testKey(t, "a", 1, v1alpha1.KeyRetiring), testKey(t, "a", 2, v1alpha1.KeyActive),
			testKey(t, "b", 3, v1alpha1.KeyActive), testKey(t, "c", 4, v1alpha1.KeyRetiring), testKey(t, "c", 5, v1alpha1.KeyActive),
		}
		s, err := resolve(Input{Registry: registry("x", func(sp *v1alpha1.TrustedRegistrySpec) {
			sp.RequiredSignatures = int32(required)
			sp.Attestations = []v1alpha1.AttestationRequirement{{Type: slsaV1}}
		}), Keys: keys, Engine: v1alpha1.EngineClusterPolicy})
		if err != nil {
			t.Fatal(err)
		}
		sets, err := cpAttestationSets(s)
		if err != nil {
			t.Fatal(err)
		}
		// every subset of keys that attested
		for mask := 0; mask < 1<<len(keys); mask++ {
			db := sigDB{}
			names := map[string]bool{}
			for i, k := range keys {
				if mask&(1<<i) != 0 {
					db.attest(appA, slsaV1, k.PEM, map[string]any{"predicate": map[string]any{}})
					names[k.Name] = true
				}
			}
			want := len(names) >= required
			got := cpVerifyAttestations([]cpAttestation{{Type: slsaV1, Attestors: sets}}, appA, db) == ""
			if got != want {
				t.Errorf("required %d, keys %05b: accepted=%v, want %v", required, mask, got, want)
			}
		}
	}
}

// evalAll evaluates policies together: the first that fails decides, messages joined.
func evalAll(t testing.TB, engine v1alpha1.Engine, policies []*unstructured.Unstructured, pod testPod, db sigDB) decision {
	out := decision{}
	var msgs []string
	failed := false
	for _, u := range policies {
		d := evalPolicy(t, engine, u, prod, pod, db)
		if !d.matched {
			continue
		}
		out.matched = true
		if !d.pass {
			failed = true
			out.denied = out.denied || d.denied
			msgs = append(msgs, d.message)
		}
	}
	out.pass = out.matched && !failed
	out.message = strings.Join(msgs, "; ")
	return out
}

// TestAttestationsOfflineNeedClusterPolicy: Kyverno's ImageValidatingPolicy cannot verify
// an attestation without a transparency-log entry; the spec is refused for that engine
// and renders for the ClusterPolicy.
func TestAttestationsOfflineNeedClusterPolicy(t *testing.T) {
	mut := func(s *v1alpha1.TrustedRegistrySpec) {
		s.TransparencyLog.Ignore = ptr.To(true)
		s.Attestations = []v1alpha1.AttestationRequirement{{Type: "slsaprovenance1"}}
	}
	in := Input{Registry: registry("offline", mut), Keys: []Key{testKey(t, "ci-2026", 1, v1alpha1.KeyActive)}, Engine: v1alpha1.EngineImageValidatingPolicy}
	if _, err := Render(in); err == nil || !IsInvalid(err) || !strings.Contains(err.Error(), "ClusterPolicy engine") {
		t.Fatalf("ImageValidatingPolicy: %v, want an InvalidError naming the ClusterPolicy engine", err)
	}
	in.Engine = v1alpha1.EngineClusterPolicy
	if _, err := Render(in); err != nil {
		t.Fatalf("ClusterPolicy: %v", err)
	}
}

// TestPredicateConditionsAgree: the Go reading of conditions (internal/verify) and the
// rendered CEL agree on statements with present, missing, nested and mistyped fields.
func TestPredicateConditionsAgree(t *testing.T) {
	env, err := ivpEnv(sigDB{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	conds := [][]v1alpha1.PredicateCondition{
		{{Path: "runDetails.builder.id", Equals: ptr.To("b")}},
		{{Path: "a-b.c", OneOf: []string{"x", "y"}}},
		{{Path: "runDetails.builder.id", Equals: ptr.To("b")}, {Path: "v", OneOf: []string{"1"}}},
		{{Path: "v", Equals: ptr.To("")}},
	}
	statements := []map[string]any{
		{},
		{"predicate": "flat"},
		{"predicate": map[string]any{}},
		{"predicate": map[string]any{"runDetails": map[string]any{"builder": map[string]any{"id": "b"}}}},
		{"predicate": map[string]any{"runDetails": map[string]any{"builder": map[string]any{"id": "c"}}}},
		{"predicate": map[string]any{"runDetails": map[string]any{"builder": "b"}}},
		{"predicate": map[string]any{"runDetails": map[string]any{"builder": map[string]any{"id": 1.0}}}},
		{"predicate": map[string]any{"runDetails": map[string]any{"builder": map[string]any{"id": "b"}}, "v": "1"}},
		{"predicate": map[string]any{"a-b": map[string]any{"c": "y"}, "v": ""}},
		{"predicate": map[string]any{"a-b": map[string]any{"c": []any{"y"}}}},
		{"runDetails": map[string]any{"builder": map[string]any{"id": "b"}}},
	}
	held := 0
	for _, cs := range conds {
		req := attestReq{uri: slsaV1}
		for _, c := range cs {
			pc, err := resolvePredCond(slsaV1, c)
			if err != nil {
				t.Fatal(err)
			}
			req.conditions = append(req.conditions, pc)
		}
		prg, err := compileCEL(env, "cel.bind(st, variables.st, "+req.celPredicate("st")+")")
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range statements {
			want := PredicateConditionsHold(cs, st)
			got := prg.evalBool(t, map[string]any{"variables": map[string]any{"st": st}})
			if got != want {
				t.Errorf("conditions %v, statement %v: CEL %v, Go %v", cs, st, got, want)
			}
			if want {
				held++
			}
		}
	}
	if held == 0 {
		t.Fatal("no statement met any condition: the comparison proves nothing")
	}
}
