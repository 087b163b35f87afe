package v1alpha1_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/internal/testenv"
)

// valid returns a fresh copy of a valid TrustedRegistry spec for mutation by a test case.
func valid() map[string]any {
	return map[string]any{
		"images":     []any{"ghcr.io/yourorg/*"},
		"namespaces": map[string]any{"names": []any{"production"}},
		"keys": []any{
			map[string]any{"name": "ci", "secretRef": map[string]any{"name": "cosign-public-key"}},
		},
	}
}

func object(name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "trust.signet.dev/v1alpha1",
		"kind":       "TrustedRegistry",
		"metadata":   map[string]any{"name": name},
		"spec":       spec,
	}}
	return u
}

func key(name, secret string) map[string]any {
	return map[string]any{"name": name, "secretRef": map[string]any{"name": secret}}
}

func TestCRDValidation(t *testing.T) {
	_, c := testenv.Start(t)
	ctx := context.Background()

	t.Run("samples are accepted", func(t *testing.T) {
		files, err := filepath.Glob("../../config/samples/trust_*.yaml")
		if err != nil || len(files) < 3 {
			t.Fatalf("expected at least 3 samples, got %v (%v)", files, err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(data, &u.Object); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if err := c.Create(ctx, u); err != nil {
				t.Errorf("%s rejected: %v", f, err)
			}
		}
	})

	// Anchored alternations pass. Where CEL cannot tell ('(', '[' or '\': "^(a)|(b)$" is
	// not anchored, the others are), the operator's check of the parsed expression decides
	// (internal/render/signers.go, condition InvalidSpec), so the CRD lets them through.
	t.Run("keyless alternatives CEL cannot judge are accepted", func(t *testing.T) {
		for i, re := range []string{"^a$|^b$", "^(?:a|b)$", "^(a)|(b)$", `^a\|b$`, "^[|]$"} {
			spec := valid()
			spec["keyless"] = []any{map[string]any{"name": "gh", "issuer": "https://a", "subjectRegExp": re}}
			if err := c.Create(ctx, object("anchored-"+strconv.Itoa(i), spec)); err != nil {
				t.Errorf("subjectRegExp %q rejected: %v", re, err)
			}
		}
	})

	t.Run("defaults are applied", func(t *testing.T) {
		u := object("defaults", valid())
		if err := c.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(u.GroupVersionKind())
		if err := c.Get(ctx, client.ObjectKey{Name: "defaults"}, got); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"action":             "Enforce",
			"restrictRegistries": true,
			"requiredSignatures": int64(1),
			"rotation":           map[string]any{"overlap": "168h"},
			"policy":             map[string]any{"engine": "Auto"},
		}
		spec := got.Object["spec"].(map[string]any)
		for k, v := range want {
			if !equalJSON(spec[k], v) {
				t.Errorf("default %s = %v, want %v", k, spec[k], v)
			}
		}
		// digest defaults depend on the action, so none is stored (see DigestPolicy)
		if d, ok := spec["digest"]; ok {
			t.Errorf("digest = %v, want no stored default", d)
		}
		ref := spec["keys"].([]any)[0].(map[string]any)["secretRef"].(map[string]any)
		if ref["key"] != "cosign.pub" {
			t.Errorf("default secretRef.key = %v, want cosign.pub", ref["key"])
		}
	})

	t.Run("glob patterns are accepted", func(t *testing.T) {
		spec := valid()
		// a '.' before '*' is regular-expression syntax only outside a tag
		spec["images"] = []any{"ghcr.io/org/app:v1.*", "docker.io/library/redis:7.*", "ghcr.io/org/*-api", "localhost:5000/x/*"}
		if err := c.Create(ctx, object("globs", spec)); err != nil {
			t.Fatal(err)
		}
	})

	long := strings.Repeat("a", 57)
	cases := []struct {
		name    string
		objName string
		mutate  func(s map[string]any)
		want    string // the apiserver's field path and message, exactly
	}{
		{"images missing", "", func(s map[string]any) { delete(s, "images") },
			`spec.images: Required value`},
		{"images empty", "", func(s map[string]any) { s["images"] = []any{} },
			`spec.images: Invalid value: 0: spec.images in body should have at least 1 items`},
		{"pattern star", "", func(s map[string]any) { s["images"] = []any{"*"} },
			`spec.images[0]: Invalid value: "*": image pattern must start with a registry host or repository name, not a wildcard: a leading '*' would match every image`},
		{"pattern star slash star", "", func(s map[string]any) { s["images"] = []any{"*/*"} },
			`spec.images[0]: Invalid value: "*/*": image pattern must start with a registry host or repository name, not a wildcard: a leading '*' would match every image`},
		{"pattern double star", "", func(s map[string]any) { s["images"] = []any{"ghcr.io/**"} },
			`spec.images[0]: Invalid value: "ghcr.io/**": image pattern must not contain '**': a single '*' already matches across '/'`},
		{"pattern wildcard host", "", func(s map[string]any) { s["images"] = []any{"ghcr*.io/org/*"} },
			`spec.images[0]: Invalid value: "ghcr*.io/org/*": the registry host of an image pattern must not contain a wildcard`},
		{"pattern uppercase", "", func(s map[string]any) { s["images"] = []any{"GHCR.io/org/*"} },
			`spec.images[0]: Invalid value: "GHCR.io/org/*": image pattern may contain only lowercase letters, digits and . _ - : / @ * characters`},
		{"pattern space", "", func(s map[string]any) { s["images"] = []any{"ghcr.io/org /app"} },
			`spec.images[0]: Invalid value: "ghcr.io/org /app": image pattern may contain only lowercase letters, digits and . _ - : / @ * characters`},
		{"pattern empty segment", "", func(s map[string]any) { s["images"] = []any{"ghcr.io//app"} },
			`spec.images[0]: Invalid value: "ghcr.io//app": image pattern must not have empty path segments`},
		{"pattern trailing slash", "", func(s map[string]any) { s["images"] = []any{"ghcr.io/org/"} },
			`spec.images[0]: Invalid value: "ghcr.io/org/": image pattern must not have empty path segments`},
		{"pattern bad digest", "", func(s map[string]any) { s["images"] = []any{"ghcr.io/org/app@sha256:abc"} },
			`spec.images[0]: Invalid value: "ghcr.io/org/app@sha256:abc": a digest in an image pattern must be '@sha256:' followed by 64 lowercase hex characters`},
		{"pattern regexp dot star", "", func(s map[string]any) { s["images"] = []any{"ghcr.io/org/.*"} },
			`spec.images[0]: Invalid value: "ghcr.io/org/.*": "ghcr.io/org/.*" looks like a regular expression; image patterns are globs ('*' matches any characters, '/' included): use "ghcr.io/org/*"`},
		{"pattern regexp anchored", "", func(s map[string]any) { s["images"] = []any{`^ghcr\.io/org/app-.+$`} },
			`spec.images[0]: Invalid value: "^ghcr\\.io/org/app-.+$": "^ghcr\.io/org/app-.+$" looks like a regular expression; image patterns are globs ('*' matches any characters, '/' included): use "ghcr.io/org/app-*"`},
		{"pattern regexp dot star in name", "", func(s map[string]any) { s["images"] = []any{"ghcr.io/org/app.*:v1"} },
			`spec.images[0]: Invalid value: "ghcr.io/org/app.*:v1": "ghcr.io/org/app.*:v1" looks like a regular expression; image patterns are globs ('*' matches any characters, '/' included): use "ghcr.io/org/app*:v1"`},
		{"pattern regexp question mark", "", func(s map[string]any) { s["images"] = []any{"ghcr.io/org/app?"} },
			`spec.images[0]: Invalid value: "ghcr.io/org/app?": "ghcr.io/org/app?" looks like a regular expression; image patterns are globs ('*' matches any characters, '/' included): use '*' as the only wildcard, and one pattern per alternative`},
		{"pattern regexp alternation", "", func(s map[string]any) { s["images"] = []any{"ghcr.io/org/(api|web)"} },
			`spec.images[0]: Invalid value: "ghcr.io/org/(api|web)": "ghcr.io/org/(api|web)" looks like a regular expression; image patterns are globs ('*' matches any characters, '/' included): use '*' as the only wildcard, and one pattern per alternative`},
		{"pattern regexp class", "", func(s map[string]any) { s["images"] = []any{"ghcr.io/org/[a-z]*"} },
			`spec.images[0]: Invalid value: "ghcr.io/org/[a-z]*": "ghcr.io/org/[a-z]*" looks like a regular expression; image patterns are globs ('*' matches any characters, '/' included): use '*' as the only wildcard, and one pattern per alternative`},
		{"pattern regexp host", "", func(s map[string]any) { s["images"] = []any{".*.example.com/app"} },
			`spec.images[0]: Invalid value: ".*.example.com/app": ".*.example.com/app" looks like a regular expression; image patterns are globs ('*' matches any characters, '/' included): use '*' as the only wildcard, and one pattern per alternative`},
		{"pattern duplicate", "", func(s map[string]any) { s["images"] = []any{"ghcr.io/a/*", "ghcr.io/a/*"} },
			`spec.images[1]: Duplicate value: "ghcr.io/a/*"`},
		{"pattern too long", "", func(s map[string]any) { s["images"] = []any{"ghcr.io/" + strings.Repeat("a", 250)} },
			`spec.images[0]: Too long: may not be more than 255 bytes`},
		{"namespaces empty", "", func(s map[string]any) { s["namespaces"] = map[string]any{} },
			`spec.namespaces: Invalid value: namespaces needs names, a selector, or both`},
		{"namespaces empty names", "", func(s map[string]any) { s["namespaces"] = map[string]any{"names": []any{}} },
			`spec.namespaces: Invalid value: namespaces needs names, a selector, or both`},
		{"namespace name invalid", "", func(s map[string]any) { s["namespaces"] = map[string]any{"names": []any{"Prod_1"}} },
			`spec.namespaces.names[0]: Invalid value: "Prod_1": namespace names must be DNS labels (lowercase letters, digits and '-')`},
		{"empty selector", "", func(s map[string]any) { s["namespaces"] = map[string]any{"selector": map[string]any{}} },
			`spec.namespaces.selector: Invalid value: selector must have matchLabels or matchExpressions; an empty selector would select every namespace`},
		{"no keys", "", func(s map[string]any) { delete(s, "keys") },
			`spec: Invalid value: at least one key or keyless identity is required`},
		{"duplicate key names", "", func(s map[string]any) { s["keys"] = []any{key("ci", "a"), key("ci", "b")} },
			`spec.keys[1]: Duplicate value: {"name":"ci"}`},
		{"key name invalid", "", func(s map[string]any) { s["keys"] = []any{key("CI key", "a")} },
			`spec.keys[0].name: Invalid value: "CI key": key name must be a DNS label (lowercase letters, digits and '-')`},
		{"secret namespace", "", func(s map[string]any) {
			s["keys"] = []any{map[string]any{"name": "ci", "secretRef": map[string]any{"name": "k", "namespace": "other"}}}
		}, `spec.keys[0].secretRef: Invalid value: secretRef.namespace is not supported: key Secrets must live in the trust namespace of the operator`},
		{"secret name missing", "", func(s map[string]any) {
			s["keys"] = []any{map[string]any{"name": "ci", "secretRef": map[string]any{}}}
		}, `spec.keys[0].secretRef.name: Required value`},
		{"secret name invalid", "", func(s map[string]any) { s["keys"] = []any{key("ci", "Bad_Name")} },
			`spec.keys[0].secretRef.name: Invalid value: "Bad_Name": secret name must be a DNS subdomain`},
		{"requiredSignatures zero", "", func(s map[string]any) { s["requiredSignatures"] = 0 },
			`spec.requiredSignatures: Invalid value: 0: spec.requiredSignatures in body should be greater than or equal to 1`},
		{"requiredSignatures above signers", "", func(s map[string]any) { s["requiredSignatures"] = 2 },
			`spec: Invalid value: requiredSignatures cannot exceed the number of keys plus keyless identities`},
		{"mutate with audit", "", func(s map[string]any) {
			s["action"] = "Audit"
			s["digest"] = map[string]any{"mutate": true}
		}, `spec: Invalid value: digest.mutate cannot be used with action Audit: Kyverno only rewrites tags to digests when it enforces`},
		{"action enum", "", func(s map[string]any) { s["action"] = "Warn" },
			`spec.action: Unsupported value: "Warn": supported values: "Enforce", "Audit"`},
		{"engine enum", "", func(s map[string]any) { s["policy"] = map[string]any{"engine": "Gatekeeper"} },
			`spec.policy.engine: Unsupported value: "Gatekeeper": supported values: "Auto", "ImageValidatingPolicy", "ClusterPolicy"`},
		{"overlap not a duration", "", func(s map[string]any) { s["rotation"] = map[string]any{"overlap": "a week"} },
			`spec.rotation.overlap: Invalid value: "a week": overlap must be a duration such as 168h, 30m or 90s`},
		{"overlap negative", "", func(s map[string]any) { s["rotation"] = map[string]any{"overlap": "-1h"} },
			`spec.rotation.overlap: Invalid value: "-1h": overlap must be a duration such as 168h, 30m or 90s`},
		{"overlap too long", "", func(s map[string]any) { s["rotation"] = map[string]any{"overlap": "2161h"} },
			`spec.rotation.overlap: Invalid value: "2161h": overlap must be at most 2160h (90 days)`},
		{"keyless issuer and regexp", "", func(s map[string]any) {
			s["keyless"] = []any{map[string]any{"name": "gh", "issuer": "https://a", "issuerRegExp": "^https://a$", "subject": "x"}}
		}, `spec.keyless[0]: Invalid value: set exactly one of issuer or issuerRegExp`},
		{"keyless without subject", "", func(s map[string]any) {
			s["keyless"] = []any{map[string]any{"name": "gh", "issuer": "https://a"}}
		}, `spec.keyless[0]: Invalid value: set exactly one of subject or subjectRegExp`},
		{"keyless http issuer", "", func(s map[string]any) {
			s["keyless"] = []any{map[string]any{"name": "gh", "issuer": "http://a", "subject": "x"}}
		}, `spec.keyless[0].issuer: Invalid value: "http://a": issuer must be an https:// URL`},
		{"keyless unanchored regexp", "", func(s map[string]any) {
			s["keyless"] = []any{map[string]any{"name": "gh", "issuer": "https://a", "subjectRegExp": "https://github.com/org/.*"}}
		}, `spec.keyless[0].subjectRegExp: Invalid value: "https://github.com/org/.*": subjectRegExp must be anchored with ^ and $`},
		{"keyless subjectRegExp alternation escapes anchors", "", func(s map[string]any) {
			s["keyless"] = []any{map[string]any{"name": "gh", "issuer": "https://a", "subjectRegExp": "^x|.*$"}}
		}, `spec.keyless[0].subjectRegExp: Invalid value: "^x|.*$": subjectRegExp must be anchored on every alternative: a top-level '|' escapes ^ and $ (write ^(?:a|b)$)`},
		{"keyless issuerRegExp alternation escapes anchors", "", func(s map[string]any) {
			s["keyless"] = []any{map[string]any{"name": "gh", "issuerRegExp": "^https://a|https://b$", "subject": "x"}}
		}, `spec.keyless[0].issuerRegExp: Invalid value: "^https://a|https://b$": issuerRegExp must be anchored on every alternative: a top-level '|' escapes ^ and $ (write ^(?:a|b)$)`},
		{"too many keys", "", func(s map[string]any) {
			var ks []any
			for i := 0; i < 33; i++ {
				ks = append(ks, key("k"+strings.Repeat("x", i), "s"))
			}
			s["keys"] = ks
		}, `spec.keys: Too many: 33: must have at most 32 items`},
		{"name too long", long, func(map[string]any) {},
			`<nil>: Invalid value: TrustedRegistry name must be at most 56 characters: the generated Kyverno policy is named signet-<name>`},
	}
	if len(cases) < 25 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := valid()
			tc.mutate(spec)
			name := tc.objName
			if name == "" {
				name = "bad-" + strings.ReplaceAll(strings.ToLower(tc.name), " ", "-")
			}
			err := c.Create(ctx, object(name, spec))
			if err == nil {
				t.Fatalf("accepted; want rejection %q", tc.want)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not contain the expected cause\n want: %s\n  got: %s", tc.want, err)
			}
			// One mistake, one message: a person should not have to untangle several.
			if status, ok := err.(apierrors.APIStatus); ok && status.Status().Details != nil {
				n := 0
				for _, cause := range status.Status().Details.Causes {
					// The apiserver adds this note whenever schema errors stop CEL evaluation.
					if !strings.Contains(cause.Message, "some validation rules were not checked") {
						n++
					}
				}
				if n != 1 {
					t.Fatalf("want exactly 1 cause, got %d: %s", n, err)
				}
			}
		})
	}
}

func equalJSON(a, b any) bool {
	ja, _ := yaml.Marshal(a)
	jb, _ := yaml.Marshal(b)
	return string(ja) == string(jb)
}
