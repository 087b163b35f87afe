package verify

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/utils/ptr"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/ocitest"
	"github.com/signet-operator/signet/internal/render"
)

const (
	slsaV1       = "https://slsa.dev/provenance/v1"
	trustedBuild = "https://github.com/yourorg/.github/.github/workflows/build.yml@refs/heads/main"
)

func provenance(builder string) map[string]any {
	return map[string]any{"runDetails": map[string]any{"builder": map[string]any{"id": builder}}}
}

func (f *fixture) attest(d name.Digest, kp *ocitest.KeyPair, uri string, predicate any) {
	f.t.Helper()
	if err := ocitest.Attest(f.ctx, d, kp.Signer, uri, predicate); err != nil {
		f.t.Fatal(err)
	}
}

// TestAttestations: `signet verify` checks spec.attestations like the policies: type,
// signer and predicate conditions, and says which is missing.
func TestAttestations(t *testing.T) {
	f := newFixture(t)
	ci, other := ocitest.MustGenerateKeyPair(t), ocitest.MustGenerateKeyPair(t)
	ring := []render.Key{ringKey(t, "ci", ci, v1alpha1.KeyActive)}
	tr := f.registry(func(s *v1alpha1.TrustedRegistrySpec) {
		s.Attestations = []v1alpha1.AttestationRequirement{{Type: "slsaprovenance1", Conditions: []v1alpha1.PredicateCondition{
			{Path: "runDetails.builder.id", Equals: ptr.To(trustedBuild)},
		}}}
	}, "ci")
	image := func(signed bool, attest func(name.Digest)) string {
		d := f.push("team/app")
		if signed {
			f.sign(d, ci)
		}
		if attest != nil {
			attest(d)
		}
		return d.String()
	}
	good := image(true, func(d name.Digest) { f.attest(d, ci, slsaV1, provenance(trustedBuild)) })
	cases := []struct {
		name   string
		image  string
		ok     bool
		reason []string
	}{
		{"attested", good, true, []string{"attestation " + slsaV1 + " by ci"}},
		{"no attestation", image(true, nil), false, []string{"lack(s) an attestation " + slsaV1, "TrustedRegistry team"}},
		{"wrong builder", image(true, func(d name.Digest) { f.attest(d, ci, slsaV1, provenance("https://evil.example/build")) }), false,
			[]string{"lack(s) an attestation " + slsaV1 + " with predicate.runDetails.builder.id == " + trustedBuild}},
		{"another type", image(true, func(d name.Digest) { f.attest(d, ci, "https://cyclonedx.org/bom", provenance(trustedBuild)) }), false,
			[]string{"lack(s) an attestation " + slsaV1}},
		{"signed by another key", image(true, func(d name.Digest) { f.attest(d, other, slsaV1, provenance(trustedBuild)) }), false,
			[]string{"lack(s) an attestation " + slsaV1}},
		{"attested, not signed", image(false, func(d name.Digest) { f.attest(d, ci, slsaV1, provenance(trustedBuild)) }), false,
			[]string{"not signed by"}},
	}
	v := New(Options{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := mustVerify(t, v, Request{Registry: tr, Keys: ring, Image: c.image})
			wantOK(t, res, c.ok)
			wantReason(t, res, c.reason...)
		})
	}
}

// TestSignaturesRepository: a signature stored with COSIGN_REPOSITORY verifies only when
// spec.signaturesRepository names that repository (and the verdicts are cached apart).
func TestSignaturesRepository(t *testing.T) {
	f := newFixture(t)
	ci := ocitest.MustGenerateKeyPair(t)
	ring := []render.Key{ringKey(t, "ci", ci, v1alpha1.KeyActive)}
	d := f.push("team/app")
	store, err := name.NewRepository(f.reg.Host() + "/signatures/store")
	if err != nil {
		t.Fatal(err)
	}
	if err := ocitest.SignTo(f.ctx, d, ci.Signer, store); err != nil {
		t.Fatal(err)
	}
	v := New(Options{})
	res := mustVerify(t, v, Request{Registry: f.registry(nil, "ci"), Keys: ring, Image: d.String()})
	wantOK(t, res, false)
	named := f.registry(func(s *v1alpha1.TrustedRegistrySpec) { s.SignaturesRepository = store.Name() }, "ci")
	res = mustVerify(t, v, Request{Registry: named, Keys: ring, Image: d.String()})
	wantOK(t, res, true)
	if res.Cached {
		t.Fatal("the verdict without signaturesRepository was reused")
	}
	// the attestations are read from the named repository too
	named.Spec.Attestations = []v1alpha1.AttestationRequirement{{Type: slsaV1}}
	res = mustVerify(t, v, Request{Registry: named, Keys: ring, Image: d.String()})
	wantOK(t, res, false)
	if err := ocitest.Attest(f.ctx, d, ci.Signer, slsaV1, provenance(trustedBuild), store); err != nil {
		t.Fatal(err)
	}
	res = mustVerify(t, v, Request{Registry: named, Keys: ring, Image: d.String()})
	wantOK(t, res, true)
	if !strings.Contains(res.Reason, "attestation "+slsaV1) {
		t.Fatalf("reason %q", res.Reason)
	}
}
