package reports

import (
	"strings"
	"testing"
)

// TestTruncateNamingRegistries: a cut message still names every registry the whole one
// named (shared policies' results map to registries by name), and stays within the bound.
func TestTruncateNamingRegistries(t *testing.T) {
	var parts []string
	for _, r := range []string{"team-a", "team-b", "team-c", "team-d", "team-e", "team-f"} {
		parts = append(parts, "image(s) ghcr.io/"+r+"/app@sha256:"+strings.Repeat("a", 64)+" not signed by any trusted signer of TrustedRegistry "+r+" (ci)")
	}
	msg := strings.Join(parts, "; ")
	got := TruncateNamingRegistries(msg, MaxMessageBytes)
	if len(got) > MaxMessageBytes {
		t.Fatalf("%d bytes", len(got))
	}
	if names := RegistriesNamedIn(got); strings.Join(names, ",") != "team-a,team-b,team-c,team-d,team-e,team-f" {
		t.Fatalf("names %v in %q", names, got)
	}
	if short := "TrustedRegistry x: fine"; TruncateNamingRegistries(short, MaxMessageBytes) != short {
		t.Fatal("a short message changed")
	}
	if got := RegistriesNamedIn("Pod a/b: [verify.team-a] fail (blocked); [allow.team-b.x] fail"); strings.Join(got, ",") != "team-a,team-b.x" {
		t.Fatalf("rule names: %v", got)
	}
}
