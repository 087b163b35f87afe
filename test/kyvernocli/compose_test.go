//go:build e2e

package kyvernocli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	openreportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/ocitest"
	"github.com/signet-operator/signet/internal/render"
)

// TestKyvernoCLIComposition runs the Kyverno CLI over several TrustedRegistries guarding
// one namespace (README.md, "Composition"), both engines and both layouts:
//
//   - staging: team-a (<reg>/team-a/*, key ka) and team-b (<reg>/team-b/*, key kb), both
//     restricting Enforce: each one's signed image passes (the restrictions are a union),
//     an image of neither fails with a message naming both registries and both patterns,
//     an image signed by the other team's key fails its own registry only;
//   - production: yourorg (<reg>/yourorg/*, key ka) and the narrower critical
//     (<reg>/yourorg/critical/*, key kb): a critical image must carry both signatures,
//     other yourorg images only ka's.
func TestKyvernoCLIComposition(t *testing.T) {
	cli := kyvernoCLI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	reg := ocitest.NewRegistryT(t)
	ka := ocitest.MustGenerateKeyPair(t)
	kb := ocitest.MustGenerateKeyPair(t)
	signedBy := func(repo string, signers ...*ocitest.KeyPair) name.Digest {
		d := push(ctx, t, reg, repo)
		for _, k := range signers {
			sign(ctx, t, d, k)
		}
		return d
	}
	var (
		aByA     = signedBy("team-a/app", ka)
		aByB     = signedBy("team-a/kb-only", kb)
		bByB     = signedBy("team-b/app", kb)
		foreign  = signedBy("other/app", ka, kb)
		critA    = signedBy("yourorg/critical/db", ka)
		critB    = signedBy("yourorg/critical/kb-only", kb)
		critBoth = signedBy("yourorg/critical/both", ka, kb)
		orgA     = signedBy("yourorg/app", ka)
	)
	ringKey := func(keyName string, kp *ocitest.KeyPair) render.Key {
		pk, err := keys.ParsePublicKey(kp.PublicKeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return render.Key{Name: keyName, Fingerprint: pk.Fingerprint, PEM: pk.PEM, State: v1alpha1.KeyActive}
	}
	keyA, keyB := ringKey("ka", ka), ringKey("kb", kb)
	specs := []struct {
		name, ns, pattern string
		key               render.Key
	}{
		{"team-a", "staging", "team-a/*", keyA},
		{"team-b", "staging", "team-b/*", keyB},
		{"yourorg", "production", "yourorg/*", keyA},
		{"critical", "production", "yourorg/critical/*", keyB},
	}
	inputs := func(engine v1alpha1.Engine) []render.Input {
		var ins []render.Input
		for i, s := range specs {
			tr := trustedRegistry(reg.Host() + "/" + s.pattern)
			tr.Name = s.name
			tr.UID = types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1))
			tr.Spec.Namespaces = v1alpha1.NamespaceSelection{Names: []string{s.ns}}
			tr.Spec.Keys = []v1alpha1.PublicKey{{Name: s.key.Name, SecretRef: v1alpha1.SecretKeyReference{Name: "cosign-" + s.key.Name, Key: "cosign.pub"}}}
			ins = append(ins, render.Input{Registry: tr, Keys: []render.Key{s.key}, Engine: engine})
		}
		return ins
	}
	type composePod struct {
		pod
		registries []string // the registries whose failures refuse it, sorted
	}
	ok := func(podName, ns string, img name.Digest) composePod {
		return composePod{pod: pod{name: podName, namespace: ns, image: img, exitCode: 0, want: "pass"}}
	}
	refused := func(podName, ns string, img name.Digest, failWith []string, registries ...string) composePod {
		return composePod{registries: registries, pod: pod{name: podName, namespace: ns, image: img, exitCode: 1, want: "fail",
			failWith: append([]string{img.String()}, failWith...)}}
	}
	pods := []composePod{
		ok("a-signed", "staging", aByA),
		ok("b-signed", "staging", bByB),
		refused("a-signed-by-b", "staging", aByB, nil, "team-a"),
		refused("foreign", "staging", foreign, []string{"not allowed by TrustedRegistry team-a, TrustedRegistry team-b: only images matching " +
			reg.Host() + "/team-a/*, " + reg.Host() + "/team-b/* may run in this namespace"}, "team-a", "team-b"),
		refused("critical-signed-by-a", "production", critA, nil, "critical"),
		refused("critical-signed-by-b", "production", critB, nil, "yourorg"),
		ok("critical-signed-by-both", "production", critBoth),
		ok("yourorg-signed", "production", orgA),
	}
	for _, engine := range []v1alpha1.Engine{v1alpha1.EngineImageValidatingPolicy, v1alpha1.EngineClusterPolicy} {
		for _, layout := range []string{"shared", "per-registry"} {
			t.Run(string(engine)+"/"+layout, func(t *testing.T) {
				ins := inputs(engine)
				var policies []*unstructured.Unstructured
				if layout == "shared" {
					shared, err := render.RenderShared(ins)
					if err != nil {
						t.Fatal(err)
					}
					policies = shared.Policies
				} else {
					for i, in := range ins {
						for j, p := range ins {
							if i != j {
								in.Peers = append(in.Peers, p.Registry)
							}
						}
						u, err := render.Render(in)
						if err != nil {
							t.Fatal(err)
						}
						policies = append(policies, u)
					}
				}
				var names, docs []string
				for _, p := range policies {
					names = append(names, p.GetName())
					b, err := yaml.Marshal(p.Object)
					if err != nil {
						t.Fatal(err)
					}
					docs = append(docs, string(b))
				}
				dir := t.TempDir()
				policyFile := filepath.Join(dir, "policies.yaml")
				if err := os.WriteFile(policyFile, []byte(strings.Join(docs, "---\n")), 0o600); err != nil {
					t.Fatal(err)
				}
				var files []string
				for _, p := range pods {
					files = append(files, writeYAML(t, dir, "pod-"+p.name+".yaml", podManifest(p.pod)))
				}
				res := apply(ctx, t, cli, policyFile, files...)
				if res.code != 1 {
					t.Errorf("exit code %d, want 1\n%s", res.code, res)
				}
				rows := res.rows(t, names...)
				if engine == v1alpha1.EngineClusterPolicy && layout == "per-registry" {
					rows = dropAnnotationArtifacts(t, rows)
				}
				for _, p := range pods {
					checkPod(t, p.pod, rows[p.name], res)
					// the registries the failures belong to: named in the message, or
					// the rule (shared ClusterPolicy) or the policy (per-registry)
					failing := map[string]bool{}
					for _, row := range rows[p.name] {
						if row.Result != "fail" {
							continue
						}
						for _, m := range trustedRegistryInMessage.FindAllStringSubmatch(row.Description, -1) {
							failing[strings.TrimSuffix(strings.TrimSuffix(m[1], ","), ".")] = true
						}
						if r, ok := render.RegistryOfSharedRule(row.Rule); ok {
							failing[r] = true
						}
						if r, ok := strings.CutPrefix(row.Policy, "signet-"); ok && !strings.HasPrefix(row.Rule, "restrict-registries") {
							failing[r] = true
						}
					}
					var got []string
					for r := range failing {
						got = append(got, r)
					}
					sort.Strings(got)
					if strings.Join(got, ",") != strings.Join(p.registries, ",") {
						t.Errorf("Pod %s: failures belong to %v, want %v\n%s", p.name, got, p.registries, describe(rows[p.name]))
					}
				}
			})
		}
	}
}

func describe(rows []openreportsv1alpha1.ReportResult) string {
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprintf("%s/%s %s: %s", r.Policy, r.Rule, r.Result, r.Description))
	}
	return strings.Join(out, "\n")
}

// dropAnnotationArtifacts removes "unverified image X" failures of a ClusterPolicy that
// also reports "verified image signatures for X" for the same Pod. The CLI (v1.19.1) judges
// a verifyImages rule in its validate pass from the Pod's kyverno.io/verify-images
// annotations written by the mutate pass, and does not merge them across ClusterPolicies
// (admission does: ImageVerificationMetadata.Merge), so an image that two per-registry
// ClusterPolicies verify is "unverified" for one of them although its signatures verified.
func dropAnnotationArtifacts(t *testing.T, rows map[string][]openreportsv1alpha1.ReportResult) map[string][]openreportsv1alpha1.ReportResult {
	t.Helper()
	out := map[string][]openreportsv1alpha1.ReportResult{}
	for podName, rs := range rows {
		verified := map[string]bool{}
		for _, r := range rs {
			if img, ok := strings.CutPrefix(r.Description, "verified image signatures for "); ok && r.Result == "pass" {
				verified[r.Policy+" "+img] = true
			}
		}
		for _, r := range rs {
			if img, ok := strings.CutPrefix(r.Description, "unverified image "); ok && r.Result == "fail" && verified[r.Policy+" "+img] {
				t.Logf("Pod %s: ignoring the CLI's %s/%s %q (its signatures verified in the same run)", podName, r.Policy, r.Rule, r.Description)
				continue
			}
			out[podName] = append(out[podName], r)
		}
	}
	return out
}
