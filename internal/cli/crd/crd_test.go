package crd

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestEmbeddedCRDIsCurrent(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "..", filepath.FromSlash(SourcePath)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(src, TrustedRegistryYAML) {
		t.Fatalf("internal/cli/crd/trust.signet.dev_trustedregistries.yaml differs from %s: run `make manifests` (or `go generate ./internal/cli/crd`) and commit", SourcePath)
	}
}
