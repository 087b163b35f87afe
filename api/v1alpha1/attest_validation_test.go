package v1alpha1_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/signet-operator/signet/internal/testenv"
)

// TestCRDValidationAttestations: the CRD accepts well-formed spec.attestations and
// spec.signaturesRepository and refuses, with a specific message, what the renderer could
// not enforce exactly (docs/fail-closed.md: bad input is refused, never rendered weaker).
func TestCRDValidationAttestations(t *testing.T) {
	_, c := testenv.Start(t)
	ctx := context.Background()
	good := []any{
		map[string]any{"type": "slsaprovenance1", "conditions": []any{
			map[string]any{"path": "runDetails.builder.id", "equals": "https://github.com/yourorg/.github/.github/workflows/build.yml@refs/heads/main"},
			map[string]any{"path": "buildDefinition.externalParameters.workflow.repository", "oneOf": []any{"https://github.com/yourorg/app"}},
			map[string]any{"path": "x_y.a-b", "equals": ""},
		}},
		map[string]any{"type": "https://example.com/predicate/v1"},
		map[string]any{"type": "cyclonedx"},
	}
	spec := valid()
	spec["attestations"] = good
	spec["signaturesRepository"] = "127.0.0.1:5000/signatures/store"
	if err := c.Create(ctx, object("attest-ok", spec)); err != nil {
		t.Fatalf("valid attestations rejected: %v", err)
	}

	cases := []struct {
		name string
		mut  func(s map[string]any)
		want string
	}{
		{"unknown short name", func(s map[string]any) { s["attestations"] = []any{map[string]any{"type": "slsa"}} },
			"type must be slsaprovenance1, slsaprovenance02, spdxjson, cyclonedx, openvex or a predicate type URI"},
		{"type twice", func(s map[string]any) {
			s["attestations"] = []any{map[string]any{"type": "cyclonedx"}, map[string]any{"type": "cyclonedx"}}
		}, "Duplicate value"},
		{"both equals and oneOf", func(s map[string]any) {
			s["attestations"] = []any{map[string]any{"type": "cyclonedx", "conditions": []any{map[string]any{"path": "a", "equals": "x", "oneOf": []any{"y"}}}}}
		}, "set exactly one of equals or oneOf"},
		{"neither", func(s map[string]any) {
			s["attestations"] = []any{map[string]any{"type": "cyclonedx", "conditions": []any{map[string]any{"path": "a"}}}}
		}, "set exactly one of equals or oneOf"},
		{"wildcard value", func(s map[string]any) {
			s["attestations"] = []any{map[string]any{"type": "cyclonedx", "conditions": []any{map[string]any{"path": "a", "equals": "https://x/*"}}}}
		}, "values must not contain '*', '?' or '{{'"},
		{"variable in oneOf", func(s map[string]any) {
			s["attestations"] = []any{map[string]any{"type": "cyclonedx", "conditions": []any{map[string]any{"path": "a", "oneOf": []any{"ok", "{{ request.object }}"}}}}}
		}, "values must not contain '*', '?' or '{{'"},
		{"bad path", func(s map[string]any) {
			s["attestations"] = []any{map[string]any{"type": "cyclonedx", "conditions": []any{map[string]any{"path": "a..b", "equals": "x"}}}}
		}, "path must be dot-separated keys"},
		{"path as JMESPath", func(s map[string]any) {
			s["attestations"] = []any{map[string]any{"type": "cyclonedx", "conditions": []any{map[string]any{"path": "a[0].b", "equals": "x"}}}}
		}, "path must be dot-separated keys"},
		{"repository with tag", func(s map[string]any) { s["signaturesRepository"] = "ghcr.io/yourorg/signatures:latest" },
			"signaturesRepository must be a repository reference"},
		{"repository without path", func(s map[string]any) { s["signaturesRepository"] = "ghcr.io" },
			"signaturesRepository must be a repository reference"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := valid()
			tc.mut(s)
			err := c.Create(ctx, object("attest-bad-"+strconv.Itoa(i), s))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a rejection mentioning %q", err, tc.want)
			}
		})
	}
}
