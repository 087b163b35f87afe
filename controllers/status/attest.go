package status

import (
	"fmt"
	"strings"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
)

// attestationPhrase ends the Ready message with the attestations the policy requires and
// where it reads signatures (spec.attestations, spec.signaturesRepository; README.md,
// "Attestations"), so status says everything an image needs to be admitted.
func attestationPhrase(registry *trustv1alpha1.TrustedRegistry) string {
	var out string
	if as := registry.Spec.Attestations; len(as) > 0 {
		parts := make([]string, 0, len(as))
		for _, a := range as {
			uri, ok := render.PredicateTypeURI(a.Type)
			if !ok {
				uri = a.Type
			}
			var conds []string
			for _, c := range a.Conditions {
				if c.Equals != nil {
					conds = append(conds, c.Path+" == "+*c.Equals)
				} else {
					conds = append(conds, c.Path+" in ["+strings.Join(c.OneOf, ", ")+"]")
				}
			}
			if len(conds) > 0 {
				uri += " (" + strings.Join(conds, " and ") + ")"
			}
			parts = append(parts, uri)
		}
		out += fmt.Sprintf("; images must also carry %s signed by the same signers", plural(len(as), "attestation", "attestations")+": "+strings.Join(parts, ", "))
	}
	if r := registry.Spec.SignaturesRepository; r != "" {
		out += "; signatures and attestations are read from " + r
	}
	return out
}
