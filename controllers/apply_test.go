package controllers

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/signet-operator/signet/internal/keys"
)

func TestJSONEqual(t *testing.T) {
	live := map[string]any{
		"a": "x",
		"n": int64(3),
		"m": map[string]any{"k": "v"},
		"l": []any{map[string]any{"name": "a"}, "s"},
	}
	cases := []struct {
		name string
		want any
		ok   bool
	}{
		{"equal", map[string]any{"a": "x", "n": int64(3), "m": map[string]any{"k": "v"}, "l": []any{map[string]any{"name": "a"}, "s"}}, true},
		{"number encodings", map[string]any{"a": "x", "n": float64(3), "m": map[string]any{"k": "v"}, "l": []any{map[string]any{"name": "a"}, "s"}}, true},
		{"empty values equal missing ones", map[string]any{"a": "x", "n": 3, "m": map[string]any{"k": "v", "e": []any{}}, "l": []any{map[string]any{"name": "a"}, "s"}, "z": map[string]any{}}, true},
		{"live has a field desired lacks (an opt-out)", map[string]any{"a": "x", "n": 3, "l": []any{map[string]any{"name": "a"}, "s"}}, false},
		{"live item has an extra field", map[string]any{"a": "x", "n": 3, "m": map[string]any{"k": "v"}, "l": []any{map[string]any{}, "s"}}, false},
		{"changed scalar", map[string]any{"a": "y", "n": 3, "m": map[string]any{"k": "v"}, "l": []any{map[string]any{"name": "a"}, "s"}}, false},
		{"list length differs", map[string]any{"a": "x", "n": 3, "m": map[string]any{"k": "v"}, "l": []any{map[string]any{"name": "a"}}}, false},
		{"type differs", map[string]any{"a": "x", "n": 3, "m": "v", "l": []any{map[string]any{"name": "a"}, "s"}}, false},
	}
	for _, tc := range cases {
		if got := jsonEqual(tc.want, live); got != tc.ok {
			t.Errorf("%s: jsonEqual = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestDriftPaths(t *testing.T) {
	want := map[string]any{
		"matchConstraints":  map[string]any{"resourceRules": []any{"r"}},
		"rules":             []any{map[string]any{"name": "verify.a", "match": "m"}},
		"validationActions": []any{"Deny"},
	}
	have := map[string]any{
		"matchConstraints": map[string]any{"resourceRules": []any{"r"}, "objectSelector": map[string]any{"matchLabels": map[string]any{"x": "y"}}},
		"rules": []any{
			map[string]any{"name": "verify.a", "match": "m", "exclude": map[string]any{"any": []any{"e"}}},
			map[string]any{"name": "evil", "match": "m"},
		},
		"validationActions": []any{"Deny", "Audit"},
	}
	got := strings.Join(driftPaths(want, have, "spec"), "; ")
	wantStr := "spec.matchConstraints.objectSelector (added); spec.rules[evil] (added); spec.rules[verify.a].exclude (added); spec.validationActions (2 items instead of 1)"
	if got != wantStr {
		t.Errorf("driftPaths:\n got %s\nwant %s", got, wantStr)
	}
	if p := driftPaths(want, want, "spec"); len(p) != 0 {
		t.Errorf("no drift expected: %v", p)
	}
}

func TestStripPrivateSecretData(t *testing.T) {
	s := &corev1.Secret{Data: map[string][]byte{
		"cosign.pub":      []byte("-----BEGIN PUBLIC KEY-----\nAAA\n-----END PUBLIC KEY-----\n"),
		"cosign.key":      []byte("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nsecret-material\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"),
		"cosign.password": []byte("hunter2"),
		"other.pem":       []byte("-----BEGIN EC PRIVATE KEY-----\nmore-secret\n-----END EC PRIVATE KEY-----\n"),
	}}
	out, err := stripPrivateSecretData(s)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Secret)
	for k, v := range got.Data {
		if strings.Contains(string(v), "secret") || strings.Contains(string(v), "hunter2") {
			t.Errorf("%s still holds private material: %q", k, v)
		}
	}
	if string(got.Data["cosign.pub"]) != string(s.Data["cosign.pub"]) {
		t.Error("public key was altered")
	}
	// A redacted private key is still recognised as a private key, so the condition reason
	// stays accurate.
	if _, err := keys.PublicKeyFromSecretData(got.Data, "other.pem"); keys.ReasonOf(err) != keys.ReasonPrivateKeyOnly {
		t.Errorf("redacted private key: reason %q (%v), want PrivateKeyOnly", keys.ReasonOf(err), err)
	}
}
