//go:build e2e

package kyvernocli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGoldensPassKyvernoValidation: every policy in internal/render/testdata (per-registry
// and shared, both engines) passes the Kyverno CLI's policy validation, the checks its
// admission webhook makes beyond the CRD schema (TestGoldensAgainstKyvernoCRDs). A policy
// it refuses is listed under "Policies Skipped" with the reason; Signet would never get it
// written. (It caught a keyless rekor block without a URL: "An URL is required".)
func TestGoldensPassKyvernoValidation(t *testing.T) {
	cli := kyvernoCLI(t)
	var files []string
	for _, glob := range []string{"*.yaml", "*/*.yaml"} {
		m, err := filepath.Glob(filepath.Join("..", "..", "internal", "render", "testdata", glob))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "\nkind: ClusterPolicy\n") || strings.Contains(string(b), "\nkind: ImageValidatingPolicy\n") {
				abs, err := filepath.Abs(f)
				if err != nil {
					t.Fatal(err)
				}
				files = append(files, abs)
			}
		}
	}
	if len(files) < 20 {
		t.Fatalf("only %d golden policies found", len(files))
	}
	// a Pod no policy guards: only the policies' validation is at stake
	podFile := writeYAML(t, t.TempDir(), "pod.yaml", map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "p", "namespace": "unguarded"},
		"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": "example.com/x@sha256:" + strings.Repeat("a", 64)}}},
	})
	for _, f := range files {
		res := apply(context.Background(), t, cli, f, podFile)
		if out := res.out + res.errOut; strings.Contains(out, "Policies Skipped") || strings.Contains(out, "policy validation error") {
			t.Errorf("%s: Kyverno refuses the policy:\n%s", filepath.Base(f), out)
		}
	}
	t.Logf("%d golden policies validated", len(files))
}
