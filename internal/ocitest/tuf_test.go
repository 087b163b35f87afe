package ocitest

import (
	"bytes"
	"context"
	"testing"

	"github.com/sigstore/sigstore-go/pkg/root"
	sgtuf "github.com/sigstore/sigstore-go/pkg/tuf"
	legacytuf "github.com/sigstore/sigstore/pkg/tuf"
)

// TestTUFRepositoryServesTrustedRoot: both TUF clients Kyverno's ImageValidatingPolicy
// uses (sigstore-go's for trusted_root.json, sigstore's legacy singleton for its
// initialisation) accept the repository and return the trusted root naming the test CA.
func TestTUFRepositoryServesTrustedRoot(t *testing.T) {
	ca, err := NewCA("tuf test fulcio")
	if err != nil {
		t.Fatal(err)
	}
	repo, err := NewTUFRepository(ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()

	opts := sgtuf.DefaultOptions()
	opts.Root, opts.RepositoryBaseURL, opts.CachePath = repo.RootJSON, repo.Mirror, t.TempDir()
	c, err := sgtuf.New(opts)
	if err != nil {
		t.Fatalf("sigstore-go TUF client: %v", err)
	}
	got, err := c.GetTarget("trusted_root.json")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := root.NewTrustedRootFromJSON(got)
	if err != nil {
		t.Fatal(err)
	}
	cas := tr.FulcioCertificateAuthorities()
	if len(cas) != 1 || !cas[0].(*root.FulcioCertificateAuthority).Root.Equal(ca.Cert) {
		t.Fatalf("trusted root names %d CAs, want the test CA", len(cas))
	}
	if len(tr.RekorLogs()) != 1 || len(tr.CTLogs()) != 1 {
		t.Fatalf("trusted root has %d Rekor and %d CT logs, want one each", len(tr.RekorLogs()), len(tr.CTLogs()))
	}

	t.Setenv("TUF_ROOT", t.TempDir())
	if err := legacytuf.Initialize(context.Background(), repo.Mirror, repo.RootJSON); err != nil {
		t.Fatalf("sigstore legacy TUF client: %v", err)
	}
	lc, err := legacytuf.NewFromEnv(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := lc.GetTarget("trusted_root.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(legacy, repo.TrustedRoot) {
		t.Fatal("the legacy client returned another trusted_root.json")
	}
}
