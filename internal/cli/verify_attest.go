package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/verify"
)

// probeEngine is the engine the spec is checked for before verifying: the ClusterPolicy
// when the spec asks for it (some specs, such as offline attestations, render only for
// it), else the ImageValidatingPolicy that Auto picks on Kyverno >= 1.18.
func probeEngine(tr *v1alpha1.TrustedRegistry) v1alpha1.Engine {
	if tr.Spec.Policy.Engine == v1alpha1.EngineClusterPolicy {
		return v1alpha1.EngineClusterPolicy
	}
	return v1alpha1.EngineImageValidatingPolicy
}

// printAttestations lists the spec.attestations results under the signers.
func printAttestations(w io.Writer, rs []verify.AttestationResult) {
	for _, a := range rs {
		mark := "✓"
		if !a.OK {
			mark = "✗"
		}
		line := fmt.Sprintf("    attestation %s: %d of %d required", a.Type, len(a.Verified), a.Required)
		if len(a.Verified) > 0 {
			line += " (" + strings.Join(a.Verified, ", ") + ")"
		}
		fmt.Fprintf(w, "      %s %s\n", mark, strings.TrimSpace(line))
		for _, e := range a.Errors {
			fmt.Fprintf(w, "          %s\n", e)
		}
	}
}
