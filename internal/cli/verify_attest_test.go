package cli

import (
	"context"
	"testing"

	"github.com/signet-operator/signet/internal/ocitest"
)

// TestVerifyAttestations: `signet verify` reports each spec.attestations result, for a
// ClusterPolicy registry with offline attestations (which the ImageValidatingPolicy
// engine refuses).
func TestVerifyAttestations(t *testing.T) {
	ctx := context.Background()
	reg := ocitest.NewRegistryT(t)
	dir := t.TempDir()
	keyPath, kp := writeKey(t, dir, "ci")
	spec := `apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: team}
spec:
  images: ["` + reg.Host() + `/team/*"]
  namespaces: {names: [production]}
  keys: [{name: ci, secretRef: {name: cosign-public-key}}]
  transparencyLog: {ignore: true}
  attestations:
  - type: slsaprovenance1
    conditions: [{path: runDetails.builder.id, equals: "https://ci.example/build"}]
`
	cpol := writeFile(t, dir, "cpol.yaml", spec+"  policy: {engine: ClusterPolicy}\n")
	ivp := writeFile(t, dir, "ivp.yaml", spec+"  policy: {engine: ImageValidatingPolicy}\n")
	push := func(builder string) string {
		d, err := reg.PushRandomImage(ctx, "team/app")
		if err != nil {
			t.Fatal(err)
		}
		if err := ocitest.Sign(ctx, d, kp.Signer); err != nil {
			t.Fatal(err)
		}
		if builder != "" {
			pred := map[string]any{"runDetails": map[string]any{"builder": map[string]any{"id": builder}}}
			if err := ocitest.Attest(ctx, d, kp.Signer, "https://slsa.dev/provenance/v1", pred); err != nil {
				t.Fatal(err)
			}
		}
		return d.String()
	}
	good, wrong, none := push("https://ci.example/build"), push("https://evil.example/build"), push("")
	args := []string{"-f", cpol, "--key", "ci=" + keyPath}
	runCLI(t, "", append([]string{"verify", good}, args...)...).
		want(t, ExitOK, "✓ ALLOWED", "✓ attestation https://slsa.dev/provenance/v1: 1 of 1 required (ci)")
	runCLI(t, "", append([]string{"verify", wrong}, args...)...).
		want(t, ExitFailed, "✗ DENIED", "lack(s) an attestation https://slsa.dev/provenance/v1 with predicate.runDetails.builder.id == https://ci.example/build",
			"✗ attestation https://slsa.dev/provenance/v1: 0 of 1 required", "does not meet the conditions")
	runCLI(t, "", append([]string{"verify", none}, args...)...).
		want(t, ExitFailed, "✗ DENIED", "TrustedRegistry team")
	runCLI(t, "", "verify", good, "-f", ivp, "--key", "ci="+keyPath).
		want(t, ExitUsage, "need the ClusterPolicy engine")
}

// TestLintAttestations: `signet lint` refuses, offline, what the CRD refuses in
// spec.attestations, and what only the renderer can judge (an offline attestation for
// the ImageValidatingPolicy engine).
func TestLintAttestations(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "attest.yaml", `apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: wildcard}
spec:
  images: ["ghcr.io/org/*"]
  namespaces: {names: [prod]}
  keys: [{name: ci, secretRef: {name: k}}]
  attestations: [{type: slsaprovenance1, conditions: [{path: runDetails.builder.id, equals: "https://github.com/*"}]}]
---
apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: offline}
spec:
  images: ["ghcr.io/org/*"]
  namespaces: {names: [prod]}
  keys: [{name: ci, secretRef: {name: k}}]
  transparencyLog: {ignore: true}
  attestations: [{type: cyclonedx}]
---
apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: good}
spec:
  images: ["ghcr.io/org/*"]
  namespaces: {names: [prod]}
  keys: [{name: ci, secretRef: {name: k}}]
  signaturesRepository: ghcr.io/org/signatures
  attestations: [{type: "https://slsa.dev/provenance/v1", conditions: [{path: runDetails.builder.id, oneOf: [a, b]}]}]
`)
	runCLI(t, "", "lint", "-f", f).want(t, ExitFailed,
		`TrustedRegistry "wildcard": spec.attestations[0].conditions[0].equals`, "values must not contain '*', '?' or '{{'",
		`TrustedRegistry "offline": operator: invalid TrustedRegistry spec: attestations with transparencyLog.ignore need the ClusterPolicy engine`,
		`TrustedRegistry "good": ok`)
}
