//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/ocitest"
	"github.com/signet-operator/signet/internal/testenv"
)

const (
	slsaV1URI    = "https://slsa.dev/provenance/v1"
	cycloneDXURI = "https://cyclonedx.org/bom"
	trustedBuild = "https://github.com/yourorg/.github/.github/workflows/build.yml@refs/heads/main"
)

// cosignCLI runs the cosign CLI (bin/cosign-cli/cosign) offline with kp's private key
// file: what CI runs. env adds variables such as COSIGN_REPOSITORY.
func (s *scenario) cosignCLI(kp *ocitest.KeyPair, env []string, args ...string) {
	s.t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		s.t.Fatal(err)
	}
	bin := filepath.Join(root, "bin", "cosign-cli", "cosign")
	if _, err := os.Stat(bin); err != nil {
		s.t.Fatalf("the cosign CLI is needed at %s: %v", bin, err)
	}
	dir := s.t.TempDir()
	keyFile := filepath.Join(dir, "cosign.key")
	if err := os.WriteFile(keyFile, kp.PrivateKeyPEM, 0o600); err != nil {
		s.t.Fatal(err)
	}
	full := append([]string{args[0], "--key", keyFile, "--tlog-upload=false", "--allow-insecure-registry", "--yes"}, args[1:]...)
	cmd := exec.CommandContext(s.ctx, bin, full...)
	cmd.Env = append(os.Environ(), append([]string{"COSIGN_PASSWORD=" + string(kp.Password), "HOME=" + dir}, env...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// attest runs `cosign attest --predicate <file> --type <typ>` for image with kp.
func (s *scenario) attest(kp *ocitest.KeyPair, image, typ string, predicate map[string]any) {
	s.t.Helper()
	b, err := json.Marshal(predicate)
	if err != nil {
		s.t.Fatal(err)
	}
	f := filepath.Join(s.t.TempDir(), "predicate.json")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		s.t.Fatal(err)
	}
	s.cosignCLI(kp, nil, "attest", "--predicate", f, "--type", typ, image)
}

func slsaPredicate(builder string) map[string]any {
	return map[string]any{
		"buildDefinition": map[string]any{
			"buildType":          "https://actions.github.io/buildtypes/workflow/v1",
			"externalParameters": map[string]any{"workflow": map[string]any{"repository": "https://github.com/yourorg/app"}},
		},
		"runDetails": map[string]any{"builder": map[string]any{"id": builder}},
	}
}

func attestationDenial(kind, registry, what string) []string {
	if kind == "ClusterPolicy" {
		return []string{sharedPolicyPrefix(kind), "verify." + registry, "attestations verification failed"}
	}
	return []string{sharedPolicyPrefix(kind), "lack(s) an attestation " + what, "TrustedRegistry " + registry}
}

// TestSignetAttestations: a TrustedRegistry that requires a SLSA provenance v1 attestation
// from a trusted builder and a CycloneDX SBOM, both made with `cosign attest` and signed
// by its key. The attested image runs; a missing attestation, a provenance from another
// builder and a provenance signed by another key are denied, naming the registry and what
// is missing.
//
// Only with the ClusterPolicy engine: the attestations are made offline
// (--tlog-upload=false, no Rekor is reachable here), and Kyverno 1.19's
// ImageValidatingPolicy verifies attestations only with a transparency-log entry
// (TestSignetAttestationsOfflineIVP; with a log: TestSignetPrivateTransparencyLog).
func TestSignetAttestations(t *testing.T) {
	t.Parallel()
	for _, e := range signetEngines[1:] {
		t.Run(e.kind, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, 6*time.Minute)
			name := "attest-" + e.short
			ns := name
			s.namespaces(ns)
			ci, other := s.keyPair(), s.keyPair()
			s.keySecret(name+"-ci", ci)
			sbom := map[string]any{"bomFormat": "CycloneDX", "specVersion": "1.5"}

			good := s.push(s.reg, "yourorg/app", ci)
			s.attest(ci, good, "slsaprovenance1", slsaPredicate(trustedBuild))
			s.attest(ci, good, "cyclonedx", sbom)
			signedOnly := s.push(s.reg, "yourorg/app", ci)
			noSBOM := s.push(s.reg, "yourorg/app", ci)
			s.attest(ci, noSBOM, "slsaprovenance1", slsaPredicate(trustedBuild))
			wrongBuilder := s.push(s.reg, "yourorg/app", ci)
			s.attest(ci, wrongBuilder, "slsaprovenance1", slsaPredicate("https://github.com/evil/.github/workflows/build.yml@refs/heads/main"))
			s.attest(ci, wrongBuilder, "cyclonedx", sbom)
			otherKey := s.push(s.reg, "yourorg/app", ci)
			s.attest(other, otherKey, "slsaprovenance1", slsaPredicate(trustedBuild))
			s.attest(ci, otherKey, "cyclonedx", sbom)

			tr := s.registry(name, "yourorg", e.engine, []string{ns}, keyRef("ci", name+"-ci"))
			tr.Spec.Attestations = []trustv1alpha1.AttestationRequirement{
				{Type: "slsaprovenance1", Conditions: []trustv1alpha1.PredicateCondition{{Path: "runDetails.builder.id", Equals: ptr.To(trustedBuild)}}},
				{Type: "cyclonedx"},
			}
			s.create(tr)
			s.waitReady(name, e.kind)
			s.waitEnforced(newPod(ns, "probe", signedOnly))

			s.admitted("attested by the trusted builder, with an SBOM", newPod(ns, "good", good))
			s.denied("signed, no attestation", newPod(ns, "signed-only", signedOnly), attestationDenial(e.kind, name, slsaV1URI)...)
			s.denied("no SBOM", newPod(ns, "no-sbom", noSBOM), attestationDenial(e.kind, name, cycloneDXURI)...)
			s.denied("provenance from another builder", newPod(ns, "wrong-builder", wrongBuilder), attestationDenial(e.kind, name, slsaV1URI+" with predicate.runDetails.builder.id == "+trustedBuild)...)
			s.denied("provenance signed by another key", newPod(ns, "other-key", otherKey), attestationDenial(e.kind, name, slsaV1URI)...)
		})
	}
}

// TestSignetSignaturesRepository: the image's signature is pushed with COSIGN_REPOSITORY to
// another repository. The TrustedRegistry denies it until spec.signaturesRepository names
// that repository, then admits it.
func TestSignetSignaturesRepository(t *testing.T) {
	t.Parallel()
	for _, e := range signetEngines {
		t.Run(e.kind, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, 6*time.Minute)
			name := "sigrepo-" + e.short
			ns := name
			s.namespaces(ns)
			ci := s.keyPair()
			s.keySecret(name+"-ci", ci)
			img := s.push(s.reg, "yourorg/app")
			store := s.reg.Host() + "/signatures-" + e.short + "/store"
			s.cosignCLI(ci, []string{"COSIGN_REPOSITORY=" + store}, "sign", img)

			tr := s.registry(name, "yourorg", e.engine, []string{ns}, keyRef("ci", name+"-ci"))
			s.create(tr)
			s.waitReady(name, e.kind)
			s.waitEnforced(newPod(ns, "probe", img))
			s.denied("signature stored elsewhere, repository not named", newPod(ns, "unnamed", img), signatureDenial(e.kind, name)...)

			cur := s.get(name)
			cur.Spec.SignaturesRepository = store
			if err := s.client.Update(s.ctx, cur); err != nil {
				t.Fatal(err)
			}
			s.waitFor("TrustedRegistry "+name+" Ready for generation 2", func() (bool, error) {
				tr := &trustv1alpha1.TrustedRegistry{}
				if err := s.client.Get(s.ctx, client.ObjectKey{Name: name}, tr); err != nil {
					return false, err
				}
				c := meta.FindStatusCondition(tr.Status.Conditions, trustv1alpha1.ConditionReady)
				return c != nil && c.Status == "True" && c.ObservedGeneration == tr.Generation, nil
			})
			s.waitFor("Kyverno admitting "+img+" in "+ns, func() (bool, error) {
				return s.createPod(newPod(ns, "probe", img), true) == nil, nil
			})
			s.admitted("signature stored in the named repository", newPod(ns, "named", img))
		})
	}
}

// TestSignetAttestationsOfflineIVP: with the ImageValidatingPolicy engine, offline
// attestations (transparencyLog.ignore) cannot be verified by Kyverno 1.19, so adding them
// to a registry is refused with InvalidSpec, naming the ClusterPolicy engine, and the last
// good policy (signatures only) stays in force.
func TestSignetAttestationsOfflineIVP(t *testing.T) {
	t.Parallel()
	s := newScenario(t, 4*time.Minute)
	name := "attest-offline-ivp"
	ns := name
	s.namespaces(ns)
	ci := s.keyPair()
	s.keySecret(name+"-ci", ci)
	signed := s.push(s.reg, "yourorg/app", ci)
	unsigned := s.push(s.reg, "yourorg/app")
	s.create(s.registry(name, "yourorg", trustv1alpha1.EngineImageValidatingPolicy, []string{ns}, keyRef("ci", name+"-ci")))
	s.waitReady(name, "ImageValidatingPolicy")
	s.waitEnforced(newPod(ns, "probe", unsigned))

	cur := s.get(name)
	cur.Spec.Attestations = []trustv1alpha1.AttestationRequirement{{Type: "slsaprovenance1"}}
	if err := s.client.Update(s.ctx, cur); err != nil {
		t.Fatal(err)
	}
	s.waitFor("TrustedRegistry "+name+" InvalidSpec", func() (bool, error) {
		tr := &trustv1alpha1.TrustedRegistry{}
		if err := s.client.Get(s.ctx, client.ObjectKey{Name: name}, tr); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(tr.Status.Conditions, trustv1alpha1.ConditionReady)
		if c == nil || c.ObservedGeneration != tr.Generation || c.Reason != trustv1alpha1.ReasonInvalidSpec {
			return false, nil
		}
		for _, f := range []string{"ClusterPolicy engine", "stays in force"} {
			if !strings.Contains(c.Message, f) {
				t.Errorf("Ready message %q does not mention %q", c.Message, f)
			}
		}
		return true, nil
	})
	s.admitted("signed, under the last good policy", newPod(ns, "signed", signed))
	s.denied("unsigned, under the last good policy", newPod(ns, "unsigned", unsigned), signatureDenial("ImageValidatingPolicy", name)...)
}
