package render

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/signet-operator/signet/api/v1alpha1"
)

func TestContract(t *testing.T) {
	if got := PolicyName("yourorg"); got != "signet-yourorg" {
		t.Errorf("PolicyName = %q", got)
	}
	if got := GVK(v1alpha1.EngineImageValidatingPolicy); got != (schema.GroupVersionKind{Group: "policies.kyverno.io", Version: "v1", Kind: "ImageValidatingPolicy"}) {
		t.Errorf("GVK(IVP) = %v", got)
	}
	if got := GVK(v1alpha1.EngineClusterPolicy); got != (schema.GroupVersionKind{Group: "kyverno.io", Version: "v1", Kind: "ClusterPolicy"}) {
		t.Errorf("GVK(ClusterPolicy) = %v", got)
	}
	if got := GVK(v1alpha1.EngineAuto); !got.Empty() {
		t.Errorf("GVK(Auto) = %v", got)
	}
	// errors.As works with pointer and value targets, also when wrapped
	err := fmt.Errorf("reconcile: %w", error(&InvalidError{Msg: "x"}))
	var p *InvalidError
	if !errors.As(err, &p) || p.Msg != "x" {
		t.Errorf("errors.As(*InvalidError) failed")
	}
	var v InvalidError
	if !errors.As(err, &v) || v.Msg != "x" {
		t.Errorf("errors.As(InvalidError) failed")
	}
	if !IsInvalid(err) || IsInvalid(errors.New("x")) {
		t.Errorf("IsInvalid")
	}
}

func TestRenderErrors(t *testing.T) {
	key := func(t testing.TB) []Key { return []Key{testKey(t, "ci-2026", 1, v1alpha1.KeyActive)} }
	cases := []struct {
		name    string
		in      func(t testing.TB) Input
		invalid bool // InvalidError (spec) rather than a plain error (caller bug)
		msg     string
	}{
		{"no attestors", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) { s.Keys = nil })}
		}, true, "no usable key"},
		{"threshold above signers", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) { s.RequiredSignatures = 2 }), Keys: key(t)}
		}, true, "requiredSignatures is 2"},
		{"rotating key counts once for the threshold", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) { s.RequiredSignatures = 2 }), Keys: []Key{
				testKey(t, "ci", 1, v1alpha1.KeyActive), testKey(t, "ci", 2, v1alpha1.KeyRetiring)}}
		}, true, "only 1 distinct signers"},
		{"one key under two names counts once", func(t testing.TB) Input {
			a := testKey(t, "a", 1, v1alpha1.KeyActive)
			b := a
			b.Name = "b"
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) { s.RequiredSignatures = 2 }), Keys: []Key{a, b}}
		}, true, "(a/b)"},
		{"audit with mutate", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Action = v1alpha1.ActionAudit
				s.Digest.Mutate = ptr.To(true)
			}), Keys: key(t)}
		}, true, "digest.mutate"},
		{"unknown action", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) { s.Action = "Warn" }), Keys: key(t)}
		}, true, "unknown action"},
		{"no namespaces", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) { s.Namespaces = v1alpha1.NamespaceSelection{} }), Keys: key(t)}
		}, true, "namespaces needs"},
		{"empty selector", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Namespaces = v1alpha1.NamespaceSelection{Selector: &metav1.LabelSelector{}}
			}), Keys: key(t)}
		}, true, "every namespace"},
		{"invalid selector", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Namespaces = v1alpha1.NamespaceSelection{Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: metav1.LabelSelectorOpIn}}}}
			}), Keys: key(t)}
		}, true, "namespaces.selector"},
		{"bad namespace name", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) { s.Namespaces.Names = []string{"Prod"} }), Keys: key(t)}
		}, true, "namespace name"},
		{"no images", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) { s.Images = nil }), Keys: key(t)}
		}, true, "spec.images is empty"},
		{"wildcard host", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) { s.Images = patterns("ghcr.*/x") }), Keys: key(t)}
		}, true, "wildcard"},
		{"keyless regexp not anchored", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Keyless = []v1alpha1.KeylessIdentity{{Name: "gh", Issuer: "https://x", SubjectRegExp: "yourorg"}}
			}), Keys: key(t)}
		}, true, "anchored"},
		{"keyless regexp: alternation escapes the anchors", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Keyless = []v1alpha1.KeylessIdentity{{Name: "gh", Issuer: "https://x", SubjectRegExp: "^x|.*$"}}
			}), Keys: key(t)}
		}, true, "anchored"},
		{"keyless regexp: alternation in the issuer", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Keyless = []v1alpha1.KeylessIdentity{{Name: "gh", IssuerRegExp: "^https://a|b$", SubjectRegExp: "^x$"}}
			}), Keys: key(t)}
		}, true, "anchored"},
		{"keyless regexp: alternative without its own end anchor", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Keyless = []v1alpha1.KeylessIdentity{{Name: "gh", Issuer: "https://x", SubjectRegExp: "^a$|^b"}}
			}), Keys: key(t)}
		}, true, "anchored"},
		{"keyless regexp: group closes before the alternation", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Keyless = []v1alpha1.KeylessIdentity{{Name: "gh", Issuer: "https://x", SubjectRegExp: "^(a)|(b)$"}}
			}), Keys: key(t)}
		}, true, "anchored"},
		{"keyless regexp: optional start anchor", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Keyless = []v1alpha1.KeylessIdentity{{Name: "gh", Issuer: "https://x", SubjectRegExp: "^?x$"}}
			}), Keys: key(t)}
		}, true, "anchored"},
		{"keyless regexp: multi-line anchors", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Keyless = []v1alpha1.KeylessIdentity{{Name: "gh", Issuer: "https://x", SubjectRegExp: "(?m)^x$"}}
			}), Keys: key(t)}
		}, true, "anchored"},
		{"keyless needs issuer", func(t testing.TB) Input {
			return Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) {
				s.Keyless = []v1alpha1.KeylessIdentity{{Name: "gh", Subject: "me"}}
			}), Keys: key(t)}
		}, true, "issuer"},
		{"name too long", func(t testing.TB) Input {
			return Input{Registry: registry(strings.Repeat("a", 60), nil), Keys: key(t)}
		}, true, "too long"},

		{"nil registry", func(t testing.TB) Input { return Input{Keys: key(t)} }, false, "nil TrustedRegistry"},
		{"unresolved engine", func(t testing.TB) Input {
			return Input{Registry: registry("x", nil), Keys: key(t), Engine: v1alpha1.EngineAuto}
		}, false, "not a resolved policy kind"},
		{"no uid", func(t testing.TB) Input {
			tr := registry("x", nil)
			tr.UID = ""
			return Input{Registry: tr, Keys: key(t)}
		}, false, "UID"},
		{"fingerprint mismatch", func(t testing.TB) Input {
			k := testKey(t, "ci", 1, v1alpha1.KeyActive)
			k.Fingerprint = testKey(t, "ci", 2, v1alpha1.KeyActive).Fingerprint
			return Input{Registry: registry("x", nil), Keys: []Key{k}}
		}, false, "does not match fingerprint"},
		{"not a public key", func(t testing.TB) Input {
			k := testKey(t, "ci", 1, v1alpha1.KeyActive)
			k.PEM = strings.Replace(k.PEM, "PUBLIC KEY", "PRIVATE KEY", 2)
			return Input{Registry: registry("x", nil), Keys: []Key{k}}
		}, false, "PUBLIC KEY"},
		{"unknown state", func(t testing.TB) Input {
			k := testKey(t, "ci", 1, "Retired")
			return Input{Registry: registry("x", nil), Keys: []Key{k}}
		}, false, "unknown state"},
	}
	for _, c := range cases {
		for _, e := range engines {
			t.Run(c.name+"/"+e.name, func(t *testing.T) {
				in := c.in(t)
				if in.Engine == "" {
					in.Engine = e.engine
				}
				u, err := Render(in)
				if err == nil {
					t.Fatalf("Render succeeded: %v", u.GetName())
				}
				if IsInvalid(err) != c.invalid {
					t.Errorf("IsInvalid(%v) = %v, want %v", err, IsInvalid(err), c.invalid)
				}
				if !strings.Contains(err.Error(), c.msg) {
					t.Errorf("error %q does not mention %q", err, c.msg)
				}
			})
		}
	}
}

// TestIVPMessages checks the ImageValidatingPolicy's denial messages name the images and
// the threshold.
func TestIVPMessages(t *testing.T) {
	sc := map[string]scenario{}
	for _, s := range scenarios() {
		sc[s.name] = s
	}
	in := sc["threshold"].in(t)
	in.Engine = v1alpha1.EngineImageValidatingPolicy
	u, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	db := sigDB{}
	db.sign(appA, keyID(in.Keys[2]))
	d := evalIVP(t, u, prod, testPod{containers: []string{appA}}, db)
	for _, want := range []string{appA, "at least 2 of the 3 trusted signers", "TrustedRegistry threshold", "ci-2026, release, keyless:github-main"} {
		if !strings.Contains(d.message, want) {
			t.Errorf("message %q lacks %q", d.message, want)
		}
	}
}

// TestKeylessAnchoredAlternatives: expressions anchored on every alternative render.
func TestKeylessAnchoredAlternatives(t *testing.T) {
	for _, re := range []string{
		"^https://github.com/yourorg/.*$", "^(?:a|b)$", "^a$|^b$", "^(a|b)$", "^(?:^a$)$", `^a\|b$`, "^[|]$",
		"^https://github\\.com/(yourorg|partner)/[^/]+/\\.github/workflows/release\\.yml@refs/tags/v.*$",
	} {
		in := Input{Registry: registry("x", func(s *v1alpha1.TrustedRegistrySpec) {
			s.Keyless = []v1alpha1.KeylessIdentity{{Name: "gh", Issuer: "https://x", SubjectRegExp: re}}
		}), Keys: []Key{testKey(t, "ci-2026", 1, v1alpha1.KeyActive)}, Engine: v1alpha1.EngineImageValidatingPolicy}
		if _, err := Render(in); err != nil {
			t.Errorf("subjectRegExp %q: %v", re, err)
		}
	}
}
