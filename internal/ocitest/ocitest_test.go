package ocitest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg := NewRegistryT(t)
	key := MustGenerateKeyPair(t)
	other := MustGenerateKeyPair(t)

	signed, err := reg.PushRandomImage(ctx, "team/app")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(signed.String(), "127.0.0.1:") || !strings.Contains(signed.String(), "/team/app@sha256:") {
		t.Fatalf("unexpected reference %s", signed)
	}
	unsigned, err := reg.PushRandomImage(ctx, "team/app")
	if err != nil {
		t.Fatal(err)
	}
	replayed, err := reg.PushRandomImage(ctx, "team/other")
	if err != nil {
		t.Fatal(err)
	}

	if err := Sign(ctx, signed, key.Signer); err != nil {
		t.Fatal(err)
	}
	// Signing twice must not duplicate the signature.
	if err := Sign(ctx, signed, key.Signer, WithAnnotations(nil)); err != nil {
		t.Fatal(err)
	}
	sigs, err := Verify(ctx, signed, key.PublicKeyPEM)
	if err != nil {
		t.Fatalf("signed image: %v", err)
	}
	if len(sigs) != 1 {
		t.Errorf("verified %d signatures, want 1", len(sigs))
	}

	if _, err := Verify(ctx, signed, other.PublicKeyPEM); !errors.Is(err, ErrNoValidSignature) {
		t.Errorf("wrong key: err = %v, want ErrNoValidSignature", err)
	}
	if _, err := Verify(ctx, unsigned, key.PublicKeyPEM); !errors.Is(err, ErrNoValidSignature) {
		t.Errorf("unsigned image: err = %v, want ErrNoValidSignature", err)
	}

	if err := ReplaySignature(ctx, signed, replayed); err != nil {
		t.Fatal(err)
	}
	got, err := Signatures(ctx, replayed)
	if err != nil || len(got) != 1 {
		t.Fatalf("replayed image has %d signatures (err %v), want 1", len(got), err)
	}
	if _, err := Verify(ctx, replayed, key.PublicKeyPEM); !errors.Is(err, ErrNoValidSignature) {
		t.Errorf("replayed signature: err = %v, want ErrNoValidSignature", err)
	}
	// The original stays valid.
	if _, err := Verify(ctx, signed, key.PublicKeyPEM); err != nil {
		t.Errorf("signed image after replay: %v", err)
	}
}

func TestKeyPairSecretData(t *testing.T) {
	k, err := GenerateKeyPair("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	d := k.SecretData()
	if !strings.Contains(string(d["cosign.pub"]), "BEGIN PUBLIC KEY") {
		t.Errorf("cosign.pub = %q", d["cosign.pub"])
	}
	if !strings.Contains(string(d["cosign.key"]), "ENCRYPTED SIGSTORE PRIVATE KEY") {
		t.Errorf("cosign.key is not an encrypted cosign key")
	}
	if string(d["cosign.password"]) != "s3cret" {
		t.Errorf("cosign.password = %q", d["cosign.password"])
	}
}

func TestReplayWithoutSignatures(t *testing.T) {
	ctx := context.Background()
	reg := NewRegistryT(t)
	a, err := reg.PushRandomImage(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := reg.PushRandomImage(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if err := ReplaySignature(ctx, a, b); err == nil {
		t.Fatal("replaying from an unsigned image succeeded")
	}
}
