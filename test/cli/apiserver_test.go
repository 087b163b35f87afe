package cli

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/cli/crd"
	"github.com/signet-operator/signet/internal/cli/crdvalidate"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/render"
	"github.com/signet-operator/signet/internal/testenv"
)

// TestAgainstAPIServer compares the CLI with a real kube-apiserver (envtest, with Kyverno's
// CRDs): `signet render` prints, byte for byte, what the operator renders for the same
// manifest once the apiserver has defaulted it, and that policy is accepted by Kyverno's
// CRDs; `signet lint` reports exactly the apiserver's causes for invalid manifests.
func TestAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs kube-apiserver and etcd")
	}
	_, c := testenv.Start(t, testenv.WithKyvernoCRDs())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("render equals the operator's rendering of the stored object", func(t *testing.T) {
		cases := []struct {
			manifest string
			active   map[string]string // spec key name -> public key file
			retiring map[string]string
		}{
			{seedSample, map[string]string{"ci-2026": "testdata/keys/ci-2026.pub"}, nil},
			{"testdata/rotation-threshold.yaml",
				map[string]string{"ci": "testdata/keys/ci-2026.pub", "release": "testdata/keys/release.pub"},
				map[string]string{"ci": "testdata/keys/ci-2025.pub"}},
			{samplesDir + "/trust_v1alpha1_trustedregistry_keyless.yaml", nil, nil},
			{samplesDir + "/trust_v1alpha1_trustedregistry_audit.yaml", map[string]string{"release": "testdata/keys/release.pub"}, nil},
		}
		for _, tc := range cases {
			u := readObject(t, tc.manifest)
			u.SetUID("")
			if err := c.Create(ctx, u); err != nil {
				t.Fatalf("%s: create: %v", tc.manifest, err)
			}
			stored := &v1alpha1.TrustedRegistry{}
			if err := c.Get(ctx, client.ObjectKey{Name: u.GetName()}, stored); err != nil {
				t.Fatal(err)
			}
			// the manifest with the UID the cluster gave it, as a user would copy it
			withUID := readObject(t, tc.manifest)
			withUID.SetUID(stored.UID)
			manifest := filepath.Join(t.TempDir(), "tr.yaml")
			writeYAML(t, manifest, withUID.Object)

			ring := operatorRing(t, stored, tc.active, tc.retiring)
			for _, engine := range []v1alpha1.Engine{v1alpha1.EngineImageValidatingPolicy, v1alpha1.EngineClusterPolicy} {
				t.Run(u.GetName()+"/"+string(engine), func(t *testing.T) {
					policy, err := render.Render(render.Input{Registry: stored, Keys: ring, Engine: engine})
					if err != nil {
						t.Fatal(err)
					}
					want, err := yaml.Marshal(policy.Object)
					if err != nil {
						t.Fatal(err)
					}
					args := []string{"render", "-q", "--layout", "per-registry", "-f", manifest, "--engine", string(engine)}
					for n, p := range tc.active {
						args = append(args, "--key", n+"="+p)
					}
					for n, p := range tc.retiring {
						args = append(args, "--retiring-key", n+"="+p)
					}
					eachRunner(t, func(t *testing.T, r runner) {
						res := r.run(t, "", args...)
						res.want(t, 0)
						if res.out != string(want) {
							t.Fatalf("signet render differs from the operator's rendering\n--- signet render\n%s\n--- operator\n%s", res.out, want)
						}
					})
					// Kyverno's CRD accepts it (server-side dry run)
					got := &unstructured.Unstructured{}
					if err := yaml.Unmarshal(want, &got.Object); err != nil {
						t.Fatal(err)
					}
					if err := c.Create(ctx, got, client.DryRunAll); err != nil {
						t.Fatalf("the rendered policy is refused: %v", err)
					}
				})
			}
		}
	})

	t.Run("lint messages equal the apiserver's causes", func(t *testing.T) {
		v, err := crdvalidate.New(crd.TrustedRegistryYAML)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range badManifests() {
			t.Run(tc.name, func(t *testing.T) {
				obj := map[string]any{
					"apiVersion": "trust.signet.dev/v1alpha1", "kind": "TrustedRegistry",
					"metadata": map[string]any{"name": tc.objName}, "spec": tc.spec,
				}
				u := &unstructured.Unstructured{Object: deepCopy(t, obj)}
				err := c.Create(ctx, u)
				if !apierrors.IsInvalid(err) {
					t.Fatalf("apiserver: want Invalid, got %v", err)
				}
				var want []string
				for _, cause := range err.(apierrors.APIStatus).Status().Details.Causes {
					want = append(want, cause.Field+": "+cause.Message)
				}
				got := v.Create(ctx, deepCopy(t, obj)).Messages()
				// the apiserver reports CEL errors in map iteration order: compare as sets
				sort.Strings(got)
				sort.Strings(want)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("crdvalidate\n got: %q\nwant: %q", got, want)
				}
				// and the CLI prints them, one line each, after the location
				manifest := filepath.Join(t.TempDir(), "bad.yaml")
				writeYAML(t, manifest, obj)
				res := inProcess{}.run(t, "", "lint", "-f", manifest)
				res.want(t, 1)
				for _, w := range want {
					if !strings.Contains(res.out, `bad.yaml:1: TrustedRegistry "`+tc.objName+`": `+w+"\n") {
						t.Errorf("lint output lacks the apiserver's cause %q:\n%s", w, res.out)
					}
				}
			})
		}
	})
}

// operatorRing is the key ring the operator builds for the stored object: every spec key
// resolved (all Active, keys.Next from an empty ring), plus retiring keys.
func operatorRing(t *testing.T, tr *v1alpha1.TrustedRegistry, active, retiring map[string]string) []render.Key {
	t.Helper()
	var desired []keys.Desired
	for _, k := range tr.Spec.Keys {
		desired = append(desired, keys.Desired{Name: k.Name, Key: parseKey(t, active[k.Name])})
	}
	ring, _ := keys.Next(keys.Ring{}, desired, tr.Spec.Rotation.Overlap.Duration, time.Now())
	var out []render.Key
	for _, e := range ring.Entries {
		out = append(out, render.Key{Name: e.Name, Fingerprint: e.Fingerprint, PEM: e.PEM, State: e.State})
	}
	for n, p := range retiring {
		pk := parseKey(t, p)
		out = append(out, render.Key{Name: n, Fingerprint: pk.Fingerprint, PEM: pk.PEM, State: v1alpha1.KeyRetiring})
	}
	return out
}

func parseKey(t *testing.T, path string) *keys.PublicKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := keys.ParsePublicKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

func readObject(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

func writeYAML(t *testing.T, path string, obj map[string]any) {
	t.Helper()
	b, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// deepCopy round-trips through JSON, so numbers are int64 as the apiserver decodes them.
func deepCopy(t *testing.T, obj map[string]any) map[string]any {
	t.Helper()
	b, err := utiljson.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := utiljson.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

type badManifest struct {
	name, objName string
	spec          map[string]any
}

// badManifests are cases of api/v1alpha1/validation_test.go: schema, list-type and CEL
// errors at several depths, and the metadata-level rule.
func badManifests() []badManifest {
	valid := func(mut func(s map[string]any)) map[string]any {
		s := map[string]any{
			"images":     []any{"ghcr.io/yourorg/*"},
			"namespaces": map[string]any{"names": []any{"production"}},
			"keys":       []any{map[string]any{"name": "ci", "secretRef": map[string]any{"name": "cosign-public-key"}}},
		}
		mut(s)
		return s
	}
	key := func(name, secret string) map[string]any {
		return map[string]any{"name": name, "secretRef": map[string]any{"name": secret}}
	}
	return []badManifest{
		{"images missing", "bad-images-missing", valid(func(s map[string]any) { delete(s, "images") })},
		{"pattern star", "bad-pattern-star", valid(func(s map[string]any) { s["images"] = []any{"*"} })},
		{"pattern wildcard host", "bad-wildcard-host", valid(func(s map[string]any) { s["images"] = []any{"ghcr*.io/org/*"} })},
		{"pattern regular expression", "bad-pattern-regexp", valid(func(s map[string]any) { s["images"] = []any{"ghcr.io/org/.*", `^quay\.io/(a|b)$`} })},
		{"pattern duplicate", "bad-pattern-duplicate", valid(func(s map[string]any) { s["images"] = []any{"ghcr.io/a/*", "ghcr.io/a/*"} })},
		{"pattern too long", "bad-pattern-too-long", valid(func(s map[string]any) { s["images"] = []any{"ghcr.io/" + strings.Repeat("a", 250)} })},
		{"empty selector", "bad-empty-selector", valid(func(s map[string]any) { s["namespaces"] = map[string]any{"selector": map[string]any{}} })},
		{"no keys", "bad-no-keys", valid(func(s map[string]any) { delete(s, "keys") })},
		{"duplicate key names", "bad-duplicate-keys", valid(func(s map[string]any) { s["keys"] = []any{key("ci", "a"), key("ci", "b")} })},
		{"secret namespace", "bad-secret-namespace", valid(func(s map[string]any) {
			s["keys"] = []any{map[string]any{"name": "ci", "secretRef": map[string]any{"name": "k", "namespace": "other"}}}
		})},
		{"requiredSignatures above signers", "bad-required", valid(func(s map[string]any) { s["requiredSignatures"] = 2 })},
		{"mutate with audit", "bad-mutate-audit", valid(func(s map[string]any) {
			s["action"] = "Audit"
			s["digest"] = map[string]any{"mutate": true}
		})},
		{"engine enum", "bad-engine", valid(func(s map[string]any) { s["policy"] = map[string]any{"engine": "Gatekeeper"} })},
		{"overlap too long", "bad-overlap", valid(func(s map[string]any) { s["rotation"] = map[string]any{"overlap": "2161h"} })},
		{"keyless unanchored regexp", "bad-keyless", valid(func(s map[string]any) {
			s["keyless"] = []any{map[string]any{"name": "gh", "issuer": "https://a", "subjectRegExp": "https://github.com/org/.*"}}
		})},
		{"several errors", "bad-several", valid(func(s map[string]any) {
			s["images"] = []any{"*", "GHCR.io/x"}
			s["namespaces"] = map[string]any{"names": []any{"Prod_1"}}
			s["requiredSignatures"] = 0
		})},
		{"name too long", strings.Repeat("a", 57), valid(func(map[string]any) {})},
		{"name invalid", "Bad_Name", valid(func(map[string]any) {})},
	}
}
