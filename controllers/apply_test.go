package controllers

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/signet-operator/signet/internal/keys"
)

func TestSubset(t *testing.T) {
	live := map[string]any{
		"a": "x",
		"n": int64(3),
		"m": map[string]any{"k": "v", "defaulted": true},
		"l": []any{map[string]any{"name": "a", "extra": "d"}, "s"},
	}
	cases := []struct {
		name string
		want any
		ok   bool
	}{
		{"equal subset", map[string]any{"a": "x", "m": map[string]any{"k": "v"}}, true},
		{"number encodings", map[string]any{"n": float64(3)}, true},
		{"list elements are subsets", map[string]any{"l": []any{map[string]any{"name": "a"}, "s"}}, true},
		{"empty desired map matches missing", map[string]any{"gone": map[string]any{}}, true},
		{"changed scalar", map[string]any{"a": "y"}, false},
		{"missing key", map[string]any{"b": "x"}, false},
		{"list length differs", map[string]any{"l": []any{map[string]any{"name": "a"}}}, false},
		{"list order differs", map[string]any{"l": []any{"s", map[string]any{"name": "a"}}}, false},
		{"type differs", map[string]any{"m": "v"}, false},
	}
	for _, tc := range cases {
		if got := subset(tc.want, live); got != tc.ok {
			t.Errorf("%s: subset = %v, want %v", tc.name, got, tc.ok)
		}
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
