package faults

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/render"
)

func newKey(t *testing.T) render.Key {
	t.Helper()
	pemKey, err := keys.StandInPEM()
	if err != nil {
		t.Fatal(err)
	}
	pk, err := keys.ParsePublicKey(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	return render.Key{Name: "ci", Fingerprint: pk.Fingerprint, PEM: string(pemKey), State: trustv1alpha1.KeyActive}
}

// input is a registry's recorded input, as the controller stores it.
func input(name string, engine trustv1alpha1.Engine, keys []render.Key, mutate ...func(*trustv1alpha1.TrustedRegistrySpec)) render.Input {
	tr := &trustv1alpha1.TrustedRegistry{}
	tr.Name, tr.UID = name, types.UID("uid-"+name)
	tr.Spec = trustv1alpha1.TrustedRegistrySpec{
		Images:             []trustv1alpha1.ImagePattern{trustv1alpha1.ImagePattern("ghcr.io/" + name + "/*")},
		Namespaces:         trustv1alpha1.NamespaceSelection{Names: []string{"production"}},
		RestrictRegistries: ptr.To(true),
		Action:             trustv1alpha1.ActionEnforce,
		RequiredSignatures: 1,
	}
	for i := range keys {
		tr.Spec.Keys = append(tr.Spec.Keys, trustv1alpha1.PublicKey{Name: keys[i].Name, SecretRef: trustv1alpha1.SecretKeyReference{Name: name + "-" + keys[i].Name}})
	}
	for _, m := range mutate {
		m(&tr.Spec)
	}
	return render.Input{Registry: tr, Keys: keys, Engine: engine}
}

// keyRing is the ConfigMap write that records an input.
func keyRing(t *testing.T, in render.Input) *unstructured.Unstructured {
	t.Helper()
	rec, err := render.EncodeRecord(in)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "signet-keyring-" + in.Registry.Name, "namespace": "signet-system"},
		"data":     map[string]any{render.RecordDataKey: rec},
	}}
}

// rendered returns the shared policies of ins by name, recording each input as the
// controller would have before.
func rendered(t *testing.T, c *Checker, ins ...render.Input) map[string]*unstructured.Unstructured {
	t.Helper()
	for _, in := range ins {
		c.RecordObject(keyRing(t, in))
	}
	res, err := render.RenderShared(ins)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*unstructured.Unstructured{}
	for _, p := range res.Policies {
		out[p.GetName()] = p
	}
	return out
}

func write(c *Checker, op string, p *unstructured.Unstructured) []Violation {
	vs := c.CheckWrite(op, p.GetKind(), p.GetName(), p)
	c.Committed(p.GetKind(), p.GetName(), p)
	return vs
}

// TestCheckerFlagsWeakenedPolicies: the checker passes legitimate changes (creation, key
// rotation, a second registry, a stricter threshold) and flags each way of weakening a
// registry's branch, naming the invariant. Without this, a fault test with 0 violations
// could pass because the checker sees nothing.
func TestCheckerFlagsWeakenedPolicies(t *testing.T) {
	k1, k2, k3 := newKey(t), newKey(t), newKey(t)
	retiring := k1
	retiring.State = trustv1alpha1.KeyRetiring

	for _, engine := range []trustv1alpha1.Engine{trustv1alpha1.EngineImageValidatingPolicy, trustv1alpha1.EngineClusterPolicy} {
		enforceName, auditName := "signet.ivp.enforce-pin", "signet.ivp.audit" // Enforce pins tags by default
		if engine == trustv1alpha1.EngineClusterPolicy {
			enforceName, auditName = "signet.cpol.all", "signet.cpol.all"
		}
		// start: registry r trusts k1, then k1 and k2 with 2 signatures required
		start := func(t *testing.T) (*Checker, render.Input) {
			c := NewChecker()
			c.Expect("r", Want{Enforce: true, Restrict: true, Images: []string{"ghcr.io/r/*"}, Keys: []string{k1.PEM, k2.PEM, k3.PEM}})
			c.Expect("s", Want{Enforce: true, Restrict: true, Images: []string{"ghcr.io/s/*"}, Keys: []string{k3.PEM}})
			good := input("r", engine, []render.Key{k1})
			if vs := write(c, "apply", rendered(t, c, good)[enforceName]); len(vs) != 0 {
				t.Fatalf("creation flagged: %v", vs)
			}
			k2b := k2
			k2b.Name = "release"
			good = input("r", engine, []render.Key{k1, k2b}, func(s *trustv1alpha1.TrustedRegistrySpec) { s.RequiredSignatures = 2 })
			if vs := write(c, "update", rendered(t, c, good)[enforceName]); len(vs) != 0 {
				t.Fatalf("a stricter threshold flagged: %v", vs)
			}
			return c, good
		}

		t.Run(string(engine)+"/legitimate", func(t *testing.T) {
			c, good := start(t)
			// k1 replaced by k3 in its Secret: k1 retires, k3 is active; s joins
			rotated := input("r", engine, []render.Key{retiring, good.Keys[1], {Name: "ci", Fingerprint: k3.Fingerprint, PEM: k3.PEM, State: trustv1alpha1.KeyActive}},
				func(s *trustv1alpha1.TrustedRegistrySpec) { s.RequiredSignatures = 2 })
			other := input("s", engine, []render.Key{k3})
			if vs := write(c, "update", rendered(t, c, rotated, other)[enforceName]); len(vs) != 0 {
				t.Fatalf("legitimate rotation flagged: %v", vs)
			}
			if n, _ := c.Writes(); n != 3 {
				t.Errorf("%d writes checked, want 3", n)
			}
		})

		cases := []struct {
			name   string
			weaken func(t *testing.T, c *Checker, good render.Input) []Violation
			want   []string // invariants that must be reported
		}{
			{"key dropped", func(t *testing.T, c *Checker, good render.Input) []Violation {
				in := input("r", engine, good.Keys[1:], func(s *trustv1alpha1.TrustedRegistrySpec) { s.RequiredSignatures = 1 })
				return write(c, "update", rendered(t, c, in)[enforceName])
			}, []string{FewerSigners}},
			{"threshold lowered", func(t *testing.T, c *Checker, good render.Input) []Violation {
				in := input("r", engine, good.Keys, func(s *trustv1alpha1.TrustedRegistrySpec) { s.RequiredSignatures = 1 })
				return write(c, "update", rendered(t, c, in)[enforceName])
			}, []string{FewerSigners}},
			{"foreign key", func(t *testing.T, c *Checker, good render.Input) []Violation {
				stranger := newKey(t)
				stranger.Name = "x"
				in := input("r", engine, append(append([]render.Key(nil), good.Keys...), stranger), func(s *trustv1alpha1.TrustedRegistrySpec) { s.RequiredSignatures = 2 })
				return write(c, "update", rendered(t, c, in)[enforceName])
			}, []string{ForeignSigner}},
			{"broader images", func(t *testing.T, c *Checker, good render.Input) []Violation {
				in := input("r", engine, good.Keys, func(s *trustv1alpha1.TrustedRegistrySpec) {
					s.RequiredSignatures = 2
					s.Images = []trustv1alpha1.ImagePattern{"ghcr.io/*"}
				})
				return write(c, "update", rendered(t, c, in)[enforceName])
			}, []string{BroaderImages}},
			{"restriction dropped", func(t *testing.T, c *Checker, good render.Input) []Violation {
				in := input("r", engine, good.Keys, func(s *trustv1alpha1.TrustedRegistrySpec) {
					s.RequiredSignatures = 2
					s.RestrictRegistries = ptr.To(false)
				})
				return write(c, "update", rendered(t, c, in)[enforceName])
			}, []string{BroaderImages}},
			{"namespace dropped", func(t *testing.T, c *Checker, good render.Input) []Violation {
				in := input("r", engine, good.Keys, func(s *trustv1alpha1.TrustedRegistrySpec) {
					s.RequiredSignatures = 2
					s.Namespaces.Names = []string{"staging"}
				})
				return write(c, "update", rendered(t, c, in)[enforceName])
			}, []string{FewerNamespaces}},
			{"moved to Audit", func(t *testing.T, c *Checker, good render.Input) []Violation {
				in := input("r", engine, good.Keys, func(s *trustv1alpha1.TrustedRegistrySpec) {
					s.RequiredSignatures = 2
					s.Action = trustv1alpha1.ActionAudit
				})
				vs := write(c, "apply", rendered(t, c, in)[auditName])
				if engine == trustv1alpha1.EngineImageValidatingPolicy {
					enforce := c.policies["ImageValidatingPolicy/"+enforceName]
					vs = append(vs, c.CheckWrite("delete", enforce.GetKind(), enforceName, nil)...)
				}
				return vs
			}, []string{AuditNotEnforce}},
			{"Audit by hand", func(t *testing.T, c *Checker, good render.Input) []Violation {
				p := rendered(t, c, good)[enforceName].DeepCopy()
				if engine == trustv1alpha1.EngineImageValidatingPolicy {
					_ = unstructured.SetNestedStringSlice(p.Object, []string{"Audit"}, "spec", "validationActions")
				} else {
					rules, _, _ := unstructured.NestedSlice(p.Object, "spec", "rules")
					for _, r := range rules {
						if vi, ok := r.(map[string]any)["verifyImages"].([]any); ok {
							vi[0].(map[string]any)["failureAction"] = "Audit"
						}
					}
					_ = unstructured.SetNestedSlice(p.Object, rules, "spec", "rules")
				}
				return write(c, "update", p)
			}, []string{AuditNotEnforce, NotARender}},
			{"objectSelector by hand", func(t *testing.T, c *Checker, good render.Input) []Violation {
				p := rendered(t, c, good)[enforceName].DeepCopy()
				sel := map[string]any{"matchExpressions": []any{map[string]any{"key": "bypass", "operator": "DoesNotExist"}}}
				if engine == trustv1alpha1.EngineImageValidatingPolicy {
					_ = unstructured.SetNestedMap(p.Object, sel, "spec", "matchConstraints", "objectSelector")
				} else {
					_ = unstructured.SetNestedField(p.Object, "Ignore", "spec", "failurePolicy")
				}
				return write(c, "update", p)
			}, []string{NotARender}},
			{"branch dropped", func(t *testing.T, c *Checker, good render.Input) []Violation {
				return write(c, "update", rendered(t, c, input("s", engine, []render.Key{k3}))[enforceName])
			}, []string{BranchMissing}},
			{"policy deleted", func(t *testing.T, c *Checker, good render.Input) []Violation {
				return c.CheckWrite("delete", render.GVK(engine).Kind, enforceName, nil)
			}, []string{BranchMissing}},
			{"unknown input", func(t *testing.T, c *Checker, good render.Input) []Violation {
				in := input("r", engine, good.Keys, func(s *trustv1alpha1.TrustedRegistrySpec) {
					s.RequiredSignatures = 2
					s.Images = append(s.Images, "quay.io/r/*")
				})
				res, err := render.RenderShared([]render.Input{in}) // never recorded in a key ring
				if err != nil {
					t.Fatal(err)
				}
				return write(c, "update", res.Policies[0])
			}, []string{NotARender}},
		}
		for _, tc := range cases {
			t.Run(string(engine)+"/"+tc.name, func(t *testing.T) {
				c, good := start(t)
				vs := tc.weaken(t, c, good)
				for _, inv := range tc.want {
					found := false
					for _, v := range vs {
						found = found || v.Invariant == inv
					}
					if !found {
						t.Errorf("no %s violation reported; got %v", inv, vs)
					}
				}
				if len(c.Violations()) != len(vs) {
					t.Errorf("Violations() keeps %d, the writes returned %d", len(c.Violations()), len(vs))
				}
				for _, v := range vs {
					if !strings.Contains(v.String(), v.Invariant) {
						t.Errorf("violation text %q", v)
					}
					t.Logf("flagged: %s", v)
				}
			})
		}
	}
}

// TestCheckerRestrictionHostFromLaggingPeers: the shared pass renders the restriction host
// from the key rings in its cache, which may hold an older record of another registry than
// the latest one written. Such a host is exactly a render of recorded inputs and passes; a
// host whose restriction names an input no key ring ever recorded is flagged.
func TestCheckerRestrictionHostFromLaggingPeers(t *testing.T) {
	k := newKey(t)
	engine := trustv1alpha1.EngineImageValidatingPolicy
	noPin := func(s *trustv1alpha1.TrustedRegistrySpec) { s.Digest.Mutate = ptr.To(false) }
	host := func(t *testing.T, ins ...render.Input) *unstructured.Unstructured {
		t.Helper()
		res, err := render.RenderShared(ins)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range res.Policies {
			if p.GetName() == "signet.ivp.enforce" {
				if p.GetAnnotations()[render.AnnotationRestriction] == "" {
					t.Fatal("signet.ivp.enforce does not host the restriction")
				}
				return p
			}
		}
		t.Fatal("no signet.ivp.enforce rendered")
		return nil
	}
	a := input("a", engine, []render.Key{k}, noPin)
	bOld := input("b", engine, []render.Key{k}) // pins tags: its branch is in signet.ivp.enforce-pin
	bNew := input("b", engine, []render.Key{k}, func(s *trustv1alpha1.TrustedRegistrySpec) {
		s.Images = append(s.Images, "ghcr.io/b2/*")
	})
	bForged := input("b", engine, []render.Key{k}, func(s *trustv1alpha1.TrustedRegistrySpec) {
		s.Images = append(s.Images, "docker.io/*")
	})

	newChecker := func() *Checker {
		c := NewChecker()
		for _, in := range []render.Input{a, bOld, bNew} {
			c.RecordObject(keyRing(t, in))
		}
		return c
	}
	t.Run("older record of a peer", func(t *testing.T) {
		if vs := write(newChecker(), "apply", host(t, a, bOld)); len(vs) != 0 {
			t.Fatalf("a host rendered from b's older record flagged: %v", vs)
		}
	})
	t.Run("latest record of a peer", func(t *testing.T) {
		if vs := write(newChecker(), "apply", host(t, a, bNew)); len(vs) != 0 {
			t.Fatalf("a host rendered from b's latest record flagged: %v", vs)
		}
	})
	t.Run("peer input never recorded", func(t *testing.T) {
		vs := write(newChecker(), "apply", host(t, a, bForged))
		if len(vs) == 0 || vs[0].Invariant != NotARender {
			t.Fatalf("a host whose restriction allows docker.io/* for b (never recorded) passed: %v", vs)
		}
	})
}
