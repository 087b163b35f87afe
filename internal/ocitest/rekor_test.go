package ocitest

import (
	"context"
	"crypto"
	"testing"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/tuf"
)

// The test log's bundles verify with cosign offline, against the log's key, for a
// signature and an attestation; without a bundle or against another log's key they do not.
func TestRekorBundlesVerifyWithCosign(t *testing.T) {
	ctx := context.Background()
	reg := NewRegistryT(t)
	log, err := NewRekor()
	if err != nil {
		t.Fatal(err)
	}
	otherLog, err := NewRekor()
	if err != nil {
		t.Fatal(err)
	}
	kp := MustGenerateKeyPair(t)
	signer := kp.Signer
	logged, err := reg.PushRandomImage(ctx, "team/app")
	if err != nil {
		t.Fatal(err)
	}
	if err := Sign(ctx, logged, signer, WithRekor(log)); err != nil {
		t.Fatal(err)
	}
	if err := AttestWithRekor(ctx, logged, signer, log, "https://slsa.dev/provenance/v1", map[string]any{"builder": "ci"}); err != nil {
		t.Fatal(err)
	}
	unlogged, err := reg.PushRandomImage(ctx, "team/app")
	if err != nil {
		t.Fatal(err)
	}
	if err := Sign(ctx, unlogged, signer); err != nil {
		t.Fatal(err)
	}
	if err := Attest(ctx, unlogged, signer, "https://slsa.dev/provenance/v1", map[string]any{"builder": "ci"}); err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(kp.PublicKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	opts := func(l *Rekor) *cosign.CheckOpts {
		keys := cosign.NewTrustedTransparencyLogPubKeys()
		if err := keys.AddTransparencyLogPubKey(l.PublicKeyPEM, tuf.Active); err != nil {
			t.Fatal(err)
		}
		return &cosign.CheckOpts{SigVerifier: verifier, RekorPubKeys: &keys, Offline: true, IgnoreSCT: true,
			ClaimVerifier: cosign.SimpleClaimVerifier, RegistryClientOpts: remoteOpts(ctx)}
	}
	if _, bundled, err := cosign.VerifyImageSignatures(ctx, logged, opts(log)); err != nil || !bundled {
		t.Fatalf("signature with the log's bundle: verified bundle %v, %v", bundled, err)
	}
	attOpts := opts(log)
	attOpts.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
	if _, bundled, err := cosign.VerifyImageAttestations(ctx, logged, attOpts); err != nil || !bundled {
		t.Fatalf("attestation with the log's bundle: verified bundle %v, %v", bundled, err)
	}
	if _, _, err := cosign.VerifyImageSignatures(ctx, logged, opts(otherLog)); err == nil {
		t.Fatal("a bundle of another log verified")
	}
	if _, _, err := cosign.VerifyImageSignatures(ctx, unlogged, opts(log)); err == nil {
		t.Fatal("a signature without a bundle verified with the transparency log required")
	}
	attOpts = opts(log)
	attOpts.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
	if _, _, err := cosign.VerifyImageAttestations(ctx, unlogged, attOpts); err == nil {
		t.Fatal("an attestation without a bundle verified with the transparency log required")
	}
}
