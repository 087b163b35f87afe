package render

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// scenario is one TrustedRegistry + key ring rendered for both engines.
type scenario struct {
	name string
	in   func(t testing.TB) Input // Engine is set by the caller
}

func scenarios() []scenario {
	oneKey := func(t testing.TB) []Key { return []Key{testKey(t, "ci-2026", 1, v1alpha1.KeyActive)} }
	return append([]scenario{
		{"seed", func(t testing.TB) Input {
			return Input{Registry: registry("yourorg", nil), Keys: oneKey(t)}
		}},
		{"rotation", func(t testing.TB) Input {
			return Input{Registry: registry("rotation", nil), Keys: []Key{
				testKey(t, "ci-2026", 1, v1alpha1.KeyRetiring),
				testKey(t, "ci-2026", 2, v1alpha1.KeyActive),
			}}
		}},
		{"keyless", func(t testing.TB) Input {
			return Input{Registry: registry("keyless", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Keys = nil
				s.Keyless = []v1alpha1.KeylessIdentity{{
					Name:          "github-main",
					Issuer:        "https://token.actions.githubusercontent.com",
					SubjectRegExp: `^https://github.com/yourorg/.+@refs/heads/main$`,
				}}
			})}
		}},
		{"audit", func(t testing.TB) Input {
			return Input{Registry: registry("audit", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Action = v1alpha1.ActionAudit
			}), Keys: oneKey(t)}
		}},
		{"selector", func(t testing.TB) Input {
			return Input{Registry: registry("selector", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Namespaces = v1alpha1.NamespaceSelection{Selector: &metav1.LabelSelector{
					MatchLabels: map[string]string{"signet.dev/enforce": "true"},
				}}
			}), Keys: oneKey(t)}
		}},
		{"union", func(t testing.TB) Input {
			return Input{Registry: registry("union", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Namespaces = v1alpha1.NamespaceSelection{
					Names: []string{"staging", "production"},
					Selector: &metav1.LabelSelector{
						MatchLabels: map[string]string{"signet.dev/enforce": "true"},
						MatchExpressions: []metav1.LabelSelectorRequirement{
							{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"sandbox", "dev"}},
							{Key: "team", Operator: metav1.LabelSelectorOpExists},
						},
					},
				}
			}), Keys: oneKey(t)}
		}},
		{"digest-mutate", func(t testing.TB) Input {
			return Input{Registry: registry("mutate", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Digest = v1alpha1.DigestPolicy{Require: ptr.To(true), Mutate: ptr.To(true)}
			}), Keys: oneKey(t)}
		}},
		{"threshold", func(t testing.TB) Input {
			return Input{Registry: registry("threshold", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Keys = append(s.Keys, v1alpha1.PublicKey{Name: "release", SecretRef: v1alpha1.SecretKeyReference{Name: "release-key", Key: "cosign.pub"}})
				s.Keyless = []v1alpha1.KeylessIdentity{{Name: "github-main", Issuer: "https://token.actions.githubusercontent.com",
					Subject: "https://github.com/yourorg/app/.github/workflows/release.yml@refs/heads/main"}}
				s.RequiredSignatures = 2
			}), Keys: []Key{
				testKey(t, "ci-2026", 1, v1alpha1.KeyRetiring),
				testKey(t, "ci-2026", 2, v1alpha1.KeyActive),
				testKey(t, "release", 3, v1alpha1.KeyActive),
			}}
		}},
		{"no-restrict", func(t testing.TB) Input {
			return Input{Registry: registry("norestrict", func(s *v1alpha1.TrustedRegistrySpec) {
				s.RestrictRegistries = ptr.To(false)
			}), Keys: oneKey(t)}
		}},
		{"offline", func(t testing.TB) Input {
			return Input{Registry: registry("offline", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Images = patterns("registry.internal:5000/platform/*")
				s.TransparencyLog.Ignore = ptr.To(true)
				s.Keyless = []v1alpha1.KeylessIdentity{{Name: "internal-ca", IssuerRegExp: `^https://dex\.internal/.*$`, Subject: "builder@internal"}}
			}), Keys: oneKey(t)}
		}},
		{"many-images", func(t testing.TB) Input {
			return Input{Registry: registry("many", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Images = patterns(
					"nginx",
					"docker.io/library/redis:7.*",
					"bitnami/postgresql",
					"docker.io/*",
					"ghcr.io/yourorg/*",
					"ghcr.io/partner/app:v1.2.3",
					"quay.io/team/tool@"+digestA,
					"quay.io/team/pinned:v1@"+digestB,
					"localhost:5000/dev/*",
					"localhost/cache",
					"registry.example.com:5000/team/app",
					"gcr.io/*/mirror",
				)
			}), Keys: oneKey(t)}
		}},
		{"defaults-unset", func(t testing.TB) Input {
			// fields the apiserver would default, left unset: the renderer must pick the
			// secure defaults itself
			tr := registry("unset", func(s *v1alpha1.TrustedRegistrySpec) {
				s.RestrictRegistries = nil
				s.Action = ""
				s.RequiredSignatures = 0
				s.Digest = v1alpha1.DigestPolicy{}
				s.TransparencyLog = v1alpha1.TransparencyLog{}
			})
			return Input{Registry: tr, Keys: oneKey(t)}
		}},
		{"audit-unset", func(t testing.TB) Input {
			// Audit as stored since digest defaults depend on the action: no digest field
			return Input{Registry: registry("auditunset", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Action = v1alpha1.ActionAudit
				s.Digest = v1alpha1.DigestPolicy{}
			}), Keys: oneKey(t)}
		}},
		{"shared-key", func(t testing.TB) Input {
			// one public key listed under two names (a rename in progress): one signer
			k := testKey(t, "build", 4, v1alpha1.KeyActive)
			old := k
			old.Name, old.State = "legacy-build", v1alpha1.KeyRetiring
			return Input{Registry: registry("shared", nil), Keys: []Key{k, old, testKey(t, "legacy-build", 5, v1alpha1.KeyRetiring)}}
		}},
	}, sigstoreScenarios()...)
}

func renderYAML(t testing.TB, in Input) []byte {
	t.Helper()
	u, err := Render(in)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	b, err := yaml.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func goldenPath(scenario, engine string) string {
	return filepath.Join("testdata", scenario+"."+engine+".yaml")
}

func TestGolden(t *testing.T) {
	seen := map[string]bool{}
	for _, sc := range append(scenarios(), attestScenarios()...) {
		for _, e := range engines {
			t.Run(sc.name+"/"+e.name, func(t *testing.T) {
				in := sc.in(t)
				in.Engine = e.engine
				got := renderYAML(t, in)
				path := goldenPath(sc.name, e.name)
				seen[filepath.Base(path)] = true
				if *update {
					if err := os.MkdirAll("testdata", 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, got, 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test ./internal/render -run TestGolden -update)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from the rendered policy (run with -update to accept):\n%s", path, lineDiff(string(want), string(got)))
				}
			})
		}
	}
	if !*update {
		entries, _ := os.ReadDir("testdata")
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".yaml") && !strings.HasPrefix(e.Name(), "shared.") && !seen[e.Name()] {
				t.Errorf("stale golden file testdata/%s: no scenario renders it", e.Name())
			}
		}
	}
}

// lineDiff is a small line-based diff for failure messages.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, "- "+x, "+ "+y)
			if len(out) > 40 {
				out = append(out, "…")
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestGoldenShape checks properties every rendered object must have.
func TestGoldenShape(t *testing.T) {
	for _, sc := range scenarios() {
		for _, e := range engines {
			t.Run(sc.name+"/"+e.name, func(t *testing.T) {
				in := sc.in(t)
				in.Engine = e.engine
				u, err := Render(in)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := u.GroupVersionKind(), GVK(e.engine); got != want {
					t.Errorf("GVK %v, want %v", got, want)
				}
				if u.GetName() != PolicyName(in.Registry.Name) {
					t.Errorf("name %q", u.GetName())
				}
				if l := u.GetLabels(); l[LabelManagedBy] != "signet" || l[LabelRegistry] != in.Registry.Name {
					t.Errorf("labels %v", l)
				}
				refs := u.GetOwnerReferences()
				if len(refs) != 1 || refs[0].UID != in.Registry.UID || refs[0].Kind != "TrustedRegistry" ||
					refs[0].APIVersion != "trust.signet.dev/v1alpha1" || !ptr.Deref(refs[0].Controller, false) ||
					!ptr.Deref(refs[0].BlockOwnerDeletion, false) {
					t.Errorf("owner references %+v", refs)
				}
				// the hash covers everything but itself
				h := u.GetAnnotations()[AnnotationHash]
				c := u.DeepCopy()
				a := c.GetAnnotations()
				delete(a, AnnotationHash)
				if len(a) == 0 {
					a = nil
				}
				c.SetAnnotations(a)
				if want, _ := contentHash(c.Object); h != want || !strings.HasPrefix(h, "sha256:") {
					t.Errorf("content hash %q, want %q", h, want)
				}
				assertNoEmptyValues(t, "", u.Object)
				// no per-policy webhook configuration (it would give each registry its own
				// webhook), no creationTimestamp, no status
				for _, path := range [][]string{{"spec", "webhookConfiguration"}, {"spec", "webhookTimeoutSeconds"}, {"status"}, {"metadata", "creationTimestamp"}} {
					if _, found, _ := unstructuredNested(u.Object, path...); found {
						t.Errorf("%s must not be set", strings.Join(path, "."))
					}
				}
			})
		}
	}
}

func unstructuredNested(obj map[string]any, path ...string) (any, bool, error) {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false, nil
		}
		cur, ok = m[p]
		if !ok {
			return nil, false, nil
		}
	}
	return cur, true, nil
}

// assertNoEmptyValues fails on null, "" and empty objects or lists anywhere in obj: under
// server-side apply they would claim fields and override Kyverno's defaults.
func assertNoEmptyValues(t testing.TB, path string, v any) {
	t.Helper()
	switch x := v.(type) {
	case nil:
		t.Errorf("%s is null", path)
	case string:
		if x == "" && !strings.HasSuffix(path, ".apiGroups[0]") { // "" is the core API group
			t.Errorf("%s is an empty string", path)
		}
	case map[string]any:
		if len(x) == 0 {
			t.Errorf("%s is an empty object", path)
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			assertNoEmptyValues(t, path+"."+k, x[k])
		}
	case []any:
		if len(x) == 0 {
			t.Errorf("%s is an empty list", path)
		}
		for i, c := range x {
			assertNoEmptyValues(t, path+"["+strconv.Itoa(i)+"]", c)
		}
	}
}
