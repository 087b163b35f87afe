package ocitest

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/sigstore/cosign/v2/pkg/cosign"
)

// The test CA's certificates verify with cosign as Fulcio's do: chain to the given root,
// issuer from the Fulcio extension, subject from the SAN; other identities or roots fail.
func TestKeylessSignatureVerifiesWithCosign(t *testing.T) {
	ctx := context.Background()
	reg := NewRegistryT(t)
	ca, err := NewCA("test fulcio")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other fulcio")
	if err != nil {
		t.Fatal(err)
	}
	const issuer, subject = "https://token.actions.githubusercontent.com", "https://github.com/yourorg/app/.github/workflows/release.yml@refs/heads/main"
	ks, err := ca.Issue(Identity{Issuer: issuer, Subject: subject})
	if err != nil {
		t.Fatal(err)
	}
	d, err := reg.PushRandomImage(ctx, "team/app")
	if err != nil {
		t.Fatal(err)
	}
	if err := SignKeyless(ctx, d, ks); err != nil {
		t.Fatal(err)
	}
	verify := func(root *CA, id cosign.Identity) error {
		pool := x509.NewCertPool()
		pool.AddCert(root.Cert)
		_, _, err := cosign.VerifyImageSignatures(ctx, d, &cosign.CheckOpts{
			RootCerts: pool, IgnoreTlog: true, IgnoreSCT: true, Identities: []cosign.Identity{id},
			ClaimVerifier: cosign.SimpleClaimVerifier, RegistryClientOpts: remoteOpts(ctx),
		})
		return err
	}
	if err := verify(ca, cosign.Identity{Issuer: issuer, Subject: subject}); err != nil {
		t.Fatalf("matching identity: %v", err)
	}
	if err := verify(ca, cosign.Identity{Issuer: issuer, SubjectRegExp: `^https://github\.com/yourorg/.+@refs/heads/main$`}); err != nil {
		t.Fatalf("matching subject regexp: %v", err)
	}
	for what, tc := range map[string]struct {
		root *CA
		id   cosign.Identity
	}{
		"other subject": {ca, cosign.Identity{Issuer: issuer, Subject: "https://github.com/evil/app/.github/workflows/release.yml@refs/heads/main"}},
		"other issuer":  {ca, cosign.Identity{Issuer: "https://accounts.google.com", Subject: subject}},
		"other CA":      {other, cosign.Identity{Issuer: issuer, Subject: subject}},
	} {
		if err := verify(tc.root, tc.id); err == nil {
			t.Errorf("%s: verified", what)
		}
	}
}

func TestPrivateRegistryNeedsAuth(t *testing.T) {
	reg := NewPrivateRegistryT(t, "puller", "s3cret")
	if _, err := reg.PushRandomImage(context.Background(), "team/app"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("anonymous push: %v, want 401", err)
	}
	if _, err := reg.PushRandomImage(WithAuth(context.Background(), "puller", "wrong"), "team/app"); err == nil {
		t.Fatal("push with a wrong password succeeded")
	}
	ctx := WithAuth(context.Background(), "puller", "s3cret")
	d, err := reg.PushRandomImage(ctx, "team/app")
	if err != nil {
		t.Fatal(err)
	}
	kp := MustGenerateKeyPair(t)
	if err := Sign(ctx, d, kp.Signer); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, d, kp.PublicKeyPEM); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(context.Background(), d, kp.PublicKeyPEM); err == nil {
		t.Fatal("anonymous verification could read the private registry")
	}
}
