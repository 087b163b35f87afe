package status

import (
	"testing"

	"k8s.io/utils/ptr"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
)

func TestAttestationPhrase(t *testing.T) {
	cases := []struct {
		spec trustv1alpha1.TrustedRegistrySpec
		want string
	}{
		{trustv1alpha1.TrustedRegistrySpec{}, ""},
		{trustv1alpha1.TrustedRegistrySpec{AttestationOptions: trustv1alpha1.AttestationOptions{
			Attestations: []trustv1alpha1.AttestationRequirement{
				{Type: "slsaprovenance1", Conditions: []trustv1alpha1.PredicateCondition{
					{Path: "runDetails.builder.id", Equals: ptr.To("https://ci/build")},
					{Path: "x", OneOf: []string{"a", "b"}},
				}},
				{Type: "cyclonedx"},
			},
			SignaturesRepository: "registry.example.com/signatures",
		}}, "; images must also carry 2 attestations: https://slsa.dev/provenance/v1 (runDetails.builder.id == https://ci/build and x in [a, b]), " +
			"https://cyclonedx.org/bom signed by the same signers; signatures and attestations are read from registry.example.com/signatures"},
	}
	for _, c := range cases {
		if got := attestationPhrase(&trustv1alpha1.TrustedRegistry{Spec: c.spec}); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
}
