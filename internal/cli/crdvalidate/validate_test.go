package crdvalidate

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/internal/cli/crd"
)

func validator(t *testing.T) *Validator {
	t.Helper()
	v, err := New(crd.TrustedRegistryYAML)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func object(t *testing.T, doc string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	// as decoded by the apiserver: whole numbers are int64
	fixInts(m)
	return m
}

func fixInts(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if f, ok := c.(float64); ok && f == float64(int64(f)) {
				t[k] = int64(f)
			} else {
				fixInts(c)
			}
		}
	case []any:
		for i, c := range t {
			if f, ok := c.(float64); ok && f == float64(int64(f)) {
				t[i] = int64(f)
			} else {
				fixInts(c)
			}
		}
	}
}

const seed = `
apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: yourorg}
spec:
  images: ["ghcr.io/yourorg/*"]
  namespaces: {names: [production]}
  keys: [{name: ci, secretRef: {name: cosign-public-key}}]
`

func TestDefaultsAreApplied(t *testing.T) {
	res := validator(t).Create(context.Background(), object(t, seed))
	if !res.OK() {
		t.Fatalf("rejected: %v", res.Messages())
	}
	spec := res.Object["spec"].(map[string]any)
	want := map[string]any{
		"action":             "Enforce",
		"restrictRegistries": true,
		"requiredSignatures": int64(1),
		"digest":             nil, // depends on the action: none stored (see DigestPolicy)
		"rotation":           map[string]any{"overlap": "168h"},
		"policy":             map[string]any{"engine": "Auto"},
	}
	for k, v := range want {
		if !reflect.DeepEqual(spec[k], v) {
			t.Errorf("spec.%s = %#v, want %#v", k, spec[k], v)
		}
	}
	ref := spec["keys"].([]any)[0].(map[string]any)["secretRef"].(map[string]any)
	if ref["key"] != "cosign.pub" {
		t.Errorf("secretRef.key = %v", ref["key"])
	}
}

func TestMessages(t *testing.T) {
	v := validator(t)
	cases := []struct {
		name string
		edit func(m map[string]any)
		want []string
	}{
		{"pattern star", func(m map[string]any) { spec(m)["images"] = []any{"*"} },
			[]string{`spec.images[0]: Invalid value: "*": image pattern must start with a registry host or repository name, not a wildcard: a leading '*' would match every image`}},
		{"regular expression pattern", func(m map[string]any) { spec(m)["images"] = []any{"ghcr.io/org/.*"} },
			[]string{`spec.images[0]: Invalid value: "ghcr.io/org/.*": "ghcr.io/org/.*" looks like a regular expression; image patterns are globs ('*' matches any characters, '/' included): use "ghcr.io/org/*"`}},
		{"duplicate pattern", func(m map[string]any) { spec(m)["images"] = []any{"ghcr.io/a/*", "ghcr.io/a/*"} },
			[]string{`spec.images[1]: Duplicate value: "ghcr.io/a/*"`}},
		{"no keys", func(m map[string]any) { delete(spec(m), "keys") },
			[]string{`spec: Invalid value: at least one key or keyless identity is required`}},
		{"action enum", func(m map[string]any) { spec(m)["action"] = "Warn" },
			[]string{`spec.action: Unsupported value: "Warn": supported values: "Enforce", "Audit"`,
				`<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation`}},
		{"requiredSignatures zero", func(m map[string]any) { spec(m)["requiredSignatures"] = int64(0) },
			[]string{`spec.requiredSignatures: Invalid value: 0: spec.requiredSignatures in body should be greater than or equal to 1`}},
		{"name too long", func(m map[string]any) { m["metadata"].(map[string]any)["name"] = strings.Repeat("a", 57) },
			[]string{`<nil>: Invalid value: TrustedRegistry name must be at most 56 characters: the generated Kyverno policy is named signet-<name>`}},
		{"bad name", func(m map[string]any) { m["metadata"].(map[string]any)["name"] = "Your_Org" },
			[]string{`metadata.name: Invalid value: "Your_Org": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`}},
		{"unknown field", func(m map[string]any) {
			spec(m)["imagess"] = []any{"x"}
			m["metadata"].(map[string]any)["labelz"] = "x"
		},
			[]string{`unknown field "metadata.labelz"`, `unknown field "spec.imagess"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := object(t, seed)
			tc.edit(m)
			got := v.Create(context.Background(), m).Messages()
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("messages\n got: %q\nwant: %q", got, tc.want)
			}
		})
	}
}

func TestWrongKindAndVersion(t *testing.T) {
	v := validator(t)
	m := object(t, seed)
	m["apiVersion"] = "trust.signet.dev/v1"
	if got := v.Create(context.Background(), m).Messages(); len(got) != 1 || !strings.Contains(got[0], `version "v1" is not served (served: v1alpha1)`) {
		t.Fatalf("got %q", got)
	}
	m["apiVersion"], m["kind"] = "trust.signet.dev/v1alpha1", "TrustedRegistries"
	if got := v.Create(context.Background(), m).Messages(); len(got) != 1 || !strings.Contains(got[0], "kind: Invalid value") {
		t.Fatalf("got %q", got)
	}
	if !v.Handles(m) || v.Handles(map[string]any{"apiVersion": "v1", "kind": "Secret"}) {
		t.Fatal("Handles")
	}
}

func TestStatusAndNamespaceAreDropped(t *testing.T) {
	m := object(t, seed)
	m["metadata"].(map[string]any)["namespace"] = "default"
	m["status"] = map[string]any{"keySummary": "x"}
	res := validator(t).Create(context.Background(), m)
	if !res.OK() {
		t.Fatal(res.Messages())
	}
	if _, ok := res.Object["status"]; ok {
		t.Error("status kept")
	}
	if _, ok := res.Object["metadata"].(map[string]any)["namespace"]; ok {
		t.Error("namespace kept on a cluster-scoped object")
	}
}

func spec(m map[string]any) map[string]any { return m["spec"].(map[string]any) }
