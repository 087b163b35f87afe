package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-operator/signet/internal/ocitest"
)

const (
	seedSample = "../../config/samples/trust_v1alpha1_trustedregistry.yaml"
	samplesDir = "../../config/samples"
)

// renderCase is a golden render: the arguments after "render" and the golden file.
type renderCase struct {
	name string
	args []string
}

func renderCases() []renderCase {
	return []renderCase{
		{"seed.ivp", []string{"-f", seedSample, "--key", "ci-2026=testdata/keys/ci-2026.pub"}},
		{"seed.clusterpolicy", []string{"-f", seedSample, "--key", "ci-2026=testdata/keys/ci-2026.pub", "--engine", "ClusterPolicy"}},
		{"rotation-threshold.ivp", []string{"-f", "testdata/rotation-threshold.yaml",
			"--key", "ci=testdata/keys/ci-2026.pub", "--key", "release=testdata/keys/release.pub", "--retiring-key", "ci=testdata/keys/ci-2025.pub"}},
		{"rotation-threshold.clusterpolicy", []string{"-f", "testdata/rotation-threshold.yaml", "--engine", "ClusterPolicy",
			"--key", "ci=testdata/keys/ci-2026.pub", "--key", "release=testdata/keys/release.pub", "--retiring-key", "ci=testdata/keys/ci-2025.pub"}},
	}
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range renderCases() {
		t.Run(tc.name, func(t *testing.T) {
			golden := filepath.Join("testdata", tc.name+".golden")
			eachRunner(t, func(t *testing.T, r runner) {
				res := r.run(t, "", append([]string{"render", "-q", "--layout", "per-registry"}, tc.args...)...)
				res.want(t, 0)
				if res.err != "" {
					t.Fatalf("-q render wrote to stderr: %s", res.err)
				}
				if *update {
					if _, ok := r.(inProcess); ok {
						if err := os.WriteFile(golden, []byte(res.out), 0o644); err != nil {
							t.Fatal(err)
						}
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test ./test/cli -run TestRenderGolden -update)", err)
				}
				if res.out != string(want) {
					t.Fatalf("output differs from %s: if internal/render changed on purpose, regenerate with `go test ./test/cli -run TestRenderGolden -update`\n--- got\n%s", golden, res.out)
				}
			})
		})
	}
}

func TestRenderGoldenSemantics(t *testing.T) {
	// what the goldens must say, independently of their bytes
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", name+".golden"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	seed := read("seed.ivp")
	if strings.Contains(seed, "uid:") {
		t.Error("seed: the sample has no metadata.uid, so the owner reference must not carry one")
	}
	if !strings.Contains(seed, "mutateDigest: true") {
		t.Error("seed: an Enforce registry with digest unset must pin tags (mutateDigest: true)")
	}
	rot := read("rotation-threshold.ivp")
	for _, s := range []string{
		"uid: 3f9e2b7c-5d41-4c8a-9b0e-7a6d2c1f8e90",
		" ? 1 : 0) + (",
		">= 2",
		"not signed by at least 2 of the 2 trusted signers of TrustedRegistry",
		"(ci, release)",
		"mutateDigest: true",
	} {
		if !strings.Contains(rot, s) {
			t.Errorf("rotation-threshold.ivp does not contain %q", s)
		}
	}
	if n := strings.Count(rot, "BEGIN PUBLIC KEY"); n != 3 {
		t.Errorf("rotation-threshold.ivp inlines %d keys, want 3 (ci active and retiring, release)", n)
	}
	cp := read("rotation-threshold.clusterpolicy")
	for _, s := range []string{"count: 2", "count: 1", "kind: ClusterPolicy"} {
		if !strings.Contains(cp, s) {
			t.Errorf("rotation-threshold.clusterpolicy does not contain %q", s)
		}
	}
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	reg := ocitest.NewRegistryT(t)
	dir := t.TempDir()
	kp := ocitest.MustGenerateKeyPair(t)
	keyPath := filepath.Join(dir, "cosign.pub")
	trPath := filepath.Join(dir, "tr.yaml")
	if err := os.WriteFile(keyPath, kp.PublicKeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tr := `apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: team}
spec:
  images: ["` + reg.Host() + `/team/*"]
  namespaces: {names: [production]}
  keys: [{name: ci, secretRef: {name: cosign-public-key}}]
  transparencyLog: {ignore: true}
`
	if err := os.WriteFile(trPath, []byte(tr), 0o600); err != nil {
		t.Fatal(err)
	}
	signed, err := reg.PushRandomImage(ctx, "team/signed")
	if err != nil {
		t.Fatal(err)
	}
	if err := ocitest.Sign(ctx, signed, kp.Signer); err != nil {
		t.Fatal(err)
	}
	unsigned, err := reg.PushRandomImage(ctx, "team/unsigned")
	if err != nil {
		t.Fatal(err)
	}
	replayed, err := reg.PushRandomImage(ctx, "team/replayed")
	if err != nil {
		t.Fatal(err)
	}
	if err := ocitest.ReplaySignature(ctx, signed, replayed); err != nil {
		t.Fatal(err)
	}
	flags := []string{"-f", trPath, "--key", "ci=" + keyPath}
	verify := func(r runner, images ...string) result {
		return r.run(t, "", append(append([]string{"verify"}, images...), flags...)...)
	}
	eachRunner(t, func(t *testing.T, r runner) {
		verify(r, signed.String()).want(t, 0, "✓ ALLOWED", "✓ ci")
		verify(r, unsigned.String()).want(t, 1, "✗ DENIED", "no signatures found")
		verify(r, replayed.String()).want(t, 1, "✗ DENIED", "invalid or missing digest in claim")
		verify(r, signed.String(), unsigned.String()).want(t, 1, "✓ ALLOWED", "✗ DENIED")
		// by default an Enforce registry pins a signed tag to its digest
		verify(r, reg.Ref("team/signed:latest")).want(t, 0, "✓ ALLOWED", "Kyverno pins the tag to "+signed.DigestStr())
		verify(r, reg.Ref("team/unsigned:latest")).want(t, 1, "✗ DENIED", "no signatures found")

		res := r.run(t, "", append([]string{"verify", "-o", "json", signed.String()}, flags...)...)
		res.want(t, 0)
		var out []map[string]any
		if err := json.Unmarshal([]byte(res.out), &out); err != nil || len(out) != 1 || out[0]["ok"] != true || out[0]["digest"] != signed.DigestStr() {
			t.Fatalf("json: %v %s", err, res.out)
		}
		r.run(t, "", "verify", signed.String(), "-f", trPath).want(t, 2, "without a public key")
	})
}

func TestLint(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: bad}
spec:
  images: ["*/*"]
  namespaces: {selector: {}}
  keys: [{name: ci, secretRef: {name: k, namespace: other}}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	eachRunner(t, func(t *testing.T, r runner) {
		r.run(t, "", "lint", samplesDir).want(t, 0, "6 TrustedRegistries valid")
		r.run(t, "", "lint", "-q", "-f", seedSample, "-f", "testdata/rotation-threshold.yaml").want(t, 0)
		res := r.run(t, "", "lint", "-f", bad)
		res.want(t, 1,
			`bad.yaml:1: TrustedRegistry "bad": spec.images[0]: Invalid value: "*/*": image pattern must start with a registry host or repository name`,
			`bad.yaml:1: TrustedRegistry "bad": spec.namespaces.selector: Invalid value: selector must have matchLabels or matchExpressions`,
			`bad.yaml:1: TrustedRegistry "bad": spec.keys[0].secretRef: Invalid value: secretRef.namespace is not supported`,
			"signet lint: 1 of 1 TrustedRegistry invalid")
		data, err := os.ReadFile(bad)
		if err != nil {
			t.Fatal(err)
		}
		r.run(t, string(data), "lint", "-").want(t, 1, `<stdin>:1: TrustedRegistry "bad"`)
	})
}
