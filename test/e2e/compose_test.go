//go:build e2e

package e2e

import (
	"testing"
	"time"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
)

// TestSignetComposition: several TrustedRegistries on one namespace (README.md,
// "Composition") with the real Kyverno, both engines.
//
//   - Two teams on one namespace: team A trusts <registry>/teama-*/… signed by key A,
//     team B trusts <other registry>/teamb-*/… signed by key B, both restricting. Each
//     one's signed image is admitted (the restrictions are a union); an image of neither is
//     denied with a message naming both registries and their patterns; an unsigned or
//     wrongly signed image is denied by its own registry.
//   - Overlapping patterns: yourorg trusts <registry>/org-*/… signed by key A, the narrower
//     critical trusts <registry>/org-*/critical/… signed by key B. A critical image needs
//     both signatures; other images of the organisation only key A's.
func TestSignetComposition(t *testing.T) {
	t.Parallel()
	for _, e := range signetEngines {
		t.Run(e.kind, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, 5*time.Minute)
			teams, overlap := "compose-"+e.short, "overlap-"+e.short
			s.namespaces(teams, overlap)
			ka, kb := s.keyPair(), s.keyPair()
			s.keySecret(teams+"-a", ka)
			s.keySecret(teams+"-b", kb)

			// two teams
			aOrg, bOrg := "teama-"+e.short, "teamb-"+e.short
			aSigned, aUnsigned := s.push(s.reg, aOrg+"/api", ka), s.push(s.reg, aOrg+"/api")
			bSigned, bByA := s.push(s.other, bOrg+"/web", kb), s.push(s.other, bOrg+"/web", ka)
			teamA, teamB := teams+"-a", teams+"-b"
			s.create(s.registry(teamA, aOrg, e.engine, []string{teams}, keyRef("a", teams+"-a")))
			trB := s.registry(teamB, bOrg, e.engine, []string{teams}, keyRef("b", teams+"-b"))
			trB.Spec.Images = []trustv1alpha1.ImagePattern{trustv1alpha1.ImagePattern(s.other.Host() + "/" + bOrg + "/*")}
			s.create(trB)

			// overlapping patterns
			org := "org-" + e.short
			broad, narrow := overlap+"-yourorg", overlap+"-critical"
			critA, critB, critBoth := s.push(s.reg, org+"/critical/db", ka), s.push(s.reg, org+"/critical/db", kb), s.push(s.reg, org+"/critical/db", ka, kb)
			appA, appB := s.push(s.reg, org+"/app", ka), s.push(s.reg, org+"/app", kb)
			s.create(s.registry(broad, org, e.engine, []string{overlap}, keyRef("a", teams+"-a")))
			trN := s.registry(narrow, org, e.engine, []string{overlap}, keyRef("b", teams+"-b"))
			trN.Spec.Images = []trustv1alpha1.ImagePattern{trustv1alpha1.ImagePattern(s.reg.Host() + "/" + org + "/critical/*")}
			s.create(trN)

			for _, n := range []string{teamA, teamB, broad, narrow} {
				s.waitReady(n, e.kind)
			}
			// enforced once B's restriction has joined A's: B's signed image passes, and
			// the critical image needs the narrower registry's signature
			s.waitFor("team B's signed image admitted next to team A (dry run)", func() (bool, error) {
				return s.createPod(newPod(teams, "probe", bSigned), true) == nil, nil
			})
			s.waitEnforced(newPod(overlap, "probe", critA))

			s.admitted("team A's signed image", newPod(teams, "a-signed", aSigned))
			s.admitted("team B's signed image", newPod(teams, "b-signed", bSigned))
			s.admitted("both teams' images in one Pod", newPod(teams, "a-and-b", aSigned, withInit(bSigned)))
			s.denied("team A's unsigned image", newPod(teams, "a-unsigned", aUnsigned), signatureDenial(e.kind, teamA)...)
			s.denied("team B's image signed by team A's key", newPod(teams, "b-by-a", bByA), signatureDenial(e.kind, teamB)...)
			s.denied("an image of neither team", newPod(teams, "foreign", dockerHubImage), sharedPolicyPrefix(e.kind),
				"not allowed by TrustedRegistry "+teamA+", TrustedRegistry "+teamB,
				s.reg.Host()+"/"+aOrg+"/*", s.other.Host()+"/"+bOrg+"/*")

			s.denied("critical image signed by yourorg's key only", newPod(overlap, "crit-a", critA), signatureDenial(e.kind, narrow)...)
			s.denied("critical image signed by critical's key only", newPod(overlap, "crit-b", critB), signatureDenial(e.kind, broad)...)
			s.admitted("critical image signed by both", newPod(overlap, "crit-both", critBoth))
			s.admitted("organisation image outside the overlap, yourorg's key", newPod(overlap, "app-a", appA))
			s.denied("organisation image outside the overlap, critical's key only", newPod(overlap, "app-b", appB), signatureDenial(e.kind, broad)...)
		})
	}
}
