//go:build e2e

package kyvernocli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	openreportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/ocitest"
	"github.com/signet-operator/signet/internal/render"
)

// sharedPod is a Pod for the shared-policy test: what Kyverno must decide, and which
// TrustedRegistry a failure must be attributed to.
type sharedPod struct {
	pod
	// registry is the TrustedRegistry that fails the Pod: every failing report row must
	// come from the shared policy (and, for the ClusterPolicy, the rule) holding its
	// branch, and name no other TrustedRegistry.
	registry string
}

// auditRegistry is the one registry with action Audit.
const auditRegistry = "audit-d"

var trustedRegistryInMessage = regexp.MustCompile(`TrustedRegistry ([a-z0-9.-]+)`)

// TestKyvernoCLIApplyShared runs the Kyverno CLI over the shared policies RenderShared
// renders for several TrustedRegistries at once (both engines):
//
//   - team-a (namespace production, <reg>/team-a/*, key ka) and team-b (staging,
//     <reg>/team-b/*, key kb), Enforce, restrictRegistries: each admits its own images
//     signed by its own key, refuses them signed by the other's key, and refuses the
//     other's images by its restriction even when properly signed;
//   - team-c (qa, <reg>/team-c/*) trusts the same key as team-a: one signer set shared by
//     two branches;
//   - release (namespace release, <reg>/release/*) needs 2 signatures of ka and kb;
//   - audit-d (namespace reports, <reg>/team-d/*, key ka) is Audit: its failures are
//     report rows of the audit policy, not denials of an enforcing one;
//   - a Pod in a namespace no registry guards is not evaluated.
func TestKyvernoCLIApplyShared(t *testing.T) {
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
		aByA    = signedBy("team-a/app", ka)
		aByB    = signedBy("team-a/kb-only", kb)
		bByB    = signedBy("team-b/app", kb)
		bByA    = signedBy("team-b/ka-only", ka)
		cByA    = signedBy("team-c/app", ka)
		cByB    = signedBy("team-c/kb-only", kb)
		relBoth = signedBy("release/app", ka, kb)
		relA    = signedBy("release/ka-only", ka)
		relB    = signedBy("release/kb-only", kb)
		dByA    = signedBy("team-d/app", ka)
		dNone   = signedBy("team-d/unsigned")
	)
	// The test's own premises: which images verify with which key.
	verifies := func(d name.Digest, k *ocitest.KeyPair, want bool) {
		t.Helper()
		_, err := ocitest.Verify(ctx, d, k.PublicKeyPEM)
		switch {
		case want && err != nil:
			t.Fatalf("premise: %s must verify: %v", d, err)
		case !want && !errors.Is(err, ocitest.ErrNoValidSignature):
			t.Fatalf("premise: %s must not verify with the key, got %v", d, err)
		}
	}
	for _, c := range []struct {
		d      name.Digest
		ka, kb bool
	}{
		{aByA, true, false}, {aByB, false, true}, {bByB, false, true}, {bByA, true, false}, {cByA, true, false}, {cByB, false, true},
		{relBoth, true, true}, {relA, true, false}, {relB, false, true}, {dByA, true, false}, {dNone, false, false},
	} {
		verifies(c.d, ka, c.ka)
		verifies(c.d, kb, c.kb)
	}

	ringKey := func(keyName string, kp *ocitest.KeyPair) render.Key {
		pk, err := keys.ParsePublicKey(kp.PublicKeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return render.Key{Name: keyName, Fingerprint: pk.Fingerprint, PEM: pk.PEM, State: v1alpha1.KeyActive}
	}
	keyA, keyB := ringKey("ka", ka), ringKey("kb", kb)
	type regSpec struct {
		name, ns, repo string
		action         v1alpha1.Action
		ring           []render.Key
		required       int32
	}
	specs := []regSpec{
		{"team-a", "production", "team-a", v1alpha1.ActionEnforce, []render.Key{keyA}, 1},
		{"team-b", "staging", "team-b", v1alpha1.ActionEnforce, []render.Key{keyB}, 1},
		{"team-c", "qa", "team-c", v1alpha1.ActionEnforce, []render.Key{keyA}, 1},
		{"release", "release", "release", v1alpha1.ActionEnforce, []render.Key{keyA, keyB}, 2},
		{auditRegistry, "reports", "team-d", v1alpha1.ActionAudit, []render.Key{keyA}, 1},
	}
	inputsFor := func(engine v1alpha1.Engine) []render.Input {
		var ins []render.Input
		for i, s := range specs {
			tr := trustedRegistry(reg.Host() + "/" + s.repo + "/*")
			tr.Name = s.name
			tr.UID = types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1))
			tr.Spec.Namespaces = v1alpha1.NamespaceSelection{Names: []string{s.ns}}
			tr.Spec.Action = s.action
			tr.Spec.RestrictRegistries = ptr.To(true)
			tr.Spec.RequiredSignatures = s.required
			tr.Spec.Keys = nil
			for _, k := range s.ring {
				tr.Spec.Keys = append(tr.Spec.Keys, v1alpha1.PublicKey{Name: k.Name,
					SecretRef: v1alpha1.SecretKeyReference{Name: "cosign-" + k.Name, Key: "cosign.pub"}})
			}
			ins = append(ins, render.Input{Registry: tr, Keys: s.ring, Engine: engine})
		}
		return ins
	}

	// The refusals, in Signet's words (the ImageValidatingPolicy says all of them; the
	// ClusterPolicy says the restriction, and its verifyImages rules Kyverno's words).
	restricted := func(registry, repo string) string {
		return "not allowed by TrustedRegistry " + registry + ": only images matching " + reg.Host() + "/" + repo + "/*"
	}
	unsignedMsg := map[v1alpha1.Engine]func(registry, signers string) string{
		v1alpha1.EngineImageValidatingPolicy: func(registry, signers string) string {
			return "not signed by any trusted signer of TrustedRegistry " + registry + " (" + signers + ")"
		},
		v1alpha1.EngineClusterPolicy: func(string, string) string { return "failed to verify image" },
	}
	thresholdMsg := map[v1alpha1.Engine]string{
		v1alpha1.EngineImageValidatingPolicy: "not signed by at least 2 of the 2 trusted signers of TrustedRegistry release (ka, kb)",
		v1alpha1.EngineClusterPolicy:         "failed to verify image",
	}
	const anyRestriction = "not allowed by TrustedRegistry"
	anySignature := map[v1alpha1.Engine]string{
		v1alpha1.EngineImageValidatingPolicy: "not signed by",
		v1alpha1.EngineClusterPolicy:         "failed to verify image",
	}

	podsFor := func(engine v1alpha1.Engine) []sharedPod {
		ok := func(podName, ns string, img name.Digest) sharedPod {
			return sharedPod{pod: pod{name: podName, namespace: ns, image: img, exitCode: 0, want: "pass"}}
		}
		unsigned := func(podName, ns string, img name.Digest, registry, signers string) sharedPod {
			return sharedPod{registry: registry, pod: pod{name: podName, namespace: ns, image: img, exitCode: 1, want: "fail",
				failWith: []string{img.String(), unsignedMsg[engine](registry, signers)}, failNot: []string{anyRestriction}}}
		}
		disallowed := func(podName, ns string, img name.Digest, registry, repo string) sharedPod {
			return sharedPod{registry: registry, pod: pod{name: podName, namespace: ns, image: img, exitCode: 1, want: "fail",
				failWith: []string{img.String(), restricted(registry, repo)}, failNot: []string{anySignature[engine]}}}
		}
		threshold := func(podName string, img name.Digest) sharedPod {
			return sharedPod{registry: "release", pod: pod{name: podName, namespace: "release", image: img, exitCode: 1, want: "fail",
				failWith: []string{img.String(), thresholdMsg[engine]}, failNot: []string{anyRestriction}}}
		}
		return []sharedPod{
			// team-a in production
			ok("a-signed-by-ka", "production", aByA),
			unsigned("a-signed-by-kb", "production", aByB, "team-a", "ka"),
			disallowed("b-in-production", "production", bByB, "team-a", "team-a"),
			// team-b in staging
			ok("b-signed-by-kb", "staging", bByB),
			unsigned("b-signed-by-ka", "staging", bByA, "team-b", "kb"),
			disallowed("a-in-staging", "staging", aByA, "team-b", "team-b"),
			// team-c in qa: the signer set of team-a
			ok("c-signed-by-ka", "qa", cByA),
			unsigned("c-signed-by-kb", "qa", cByB, "team-c", "ka"),
			disallowed("a-in-qa", "qa", aByA, "team-c", "team-c"),
			// release: both signatures needed
			ok("release-both", "release", relBoth),
			threshold("release-ka-only", relA),
			threshold("release-kb-only", relB),
			// audit-d in reports: reported, not denied
			ok("d-signed", "reports", dByA),
			{registry: auditRegistry, pod: pod{name: "d-unsigned", namespace: "reports", image: dNone, exitCode: 1, want: "fail",
				failWith: []string{dNone.String(), unsignedMsg[engine](auditRegistry, "ka")}, failNot: []string{anyRestriction}}},
			// no registry guards sandbox
			{pod: pod{name: "unguarded", namespace: "sandbox", image: aByB, exitCode: 0, want: ""}},
		}
	}

	for _, engine := range []v1alpha1.Engine{v1alpha1.EngineImageValidatingPolicy, v1alpha1.EngineClusterPolicy} {
		t.Run(string(engine), func(t *testing.T) {
			shared, err := render.RenderShared(inputsFor(engine))
			if err != nil {
				t.Fatal(err)
			}
			var policyNames []string
			var docs []string
			for _, p := range shared.Policies {
				if got, want := p.GetKind(), render.GVK(engine).Kind; got != want {
					t.Fatalf("rendered a %s, want a %s", got, want)
				}
				policyNames = append(policyNames, p.GetName())
				b, err := yaml.Marshal(p.Object)
				if err != nil {
					t.Fatal(err)
				}
				docs = append(docs, string(b))
			}
			t.Logf("shared policies: %v", policyNames)
			for _, s := range specs {
				pl, ok := shared.Placements[s.name]
				if !ok {
					t.Fatalf("no placement for %s", s.name)
				}
				t.Logf("%s: %s %s, %s", s.name, pl.Kind, pl.Policy, pl.Branch)
			}
			// The premises of the layout: the Enforce registries share one policy, the
			// Audit one is elsewhere (ImageValidatingPolicy) or in the same one
			// (ClusterPolicy), and team-c's branch points to team-a's signer set.
			switch engine {
			case v1alpha1.EngineImageValidatingPolicy:
				want := []string{"signet.ivp.audit", "signet.ivp.enforce"}
				if !slices.Equal(policyNames, want) {
					t.Fatalf("shared policies %v, want %v", policyNames, want)
				}
				for _, s := range specs {
					want := "signet.ivp.enforce"
					if s.action == v1alpha1.ActionAudit {
						want = "signet.ivp.audit"
					}
					if got := shared.Placements[s.name].Policy; got != want {
						t.Fatalf("%s is in %s, want %s", s.name, got, want)
					}
				}
				setA, setC := signerSet(t, shared.Placements["team-a"].Branch), signerSet(t, shared.Placements["team-c"].Branch)
				if setA != setC || signerSet(t, shared.Placements["team-b"].Branch) == setA {
					t.Fatalf("signer sets: team-a %q, team-c %q, team-b %q: team-a and team-c must share one, team-b must not",
						shared.Placements["team-a"].Branch, shared.Placements["team-c"].Branch, shared.Placements["team-b"].Branch)
				}
			case v1alpha1.EngineClusterPolicy:
				if want := []string{"signet.cpol.all"}; !slices.Equal(policyNames, want) {
					t.Fatalf("shared policies %v, want %v", policyNames, want)
				}
			}

			dir := t.TempDir()
			policyFile := filepath.Join(dir, "policies.yaml")
			if err := os.WriteFile(policyFile, []byte(strings.Join(docs, "---\n")), 0o600); err != nil {
				t.Fatal(err)
			}
			pods := podsFor(engine)
			podFiles := map[string]string{}
			all := make([]string, 0, len(pods))
			for _, p := range pods {
				podFiles[p.name] = writeYAML(t, dir, "pod-"+p.name+".yaml", podManifest(p.pod))
				all = append(all, podFiles[p.name])
			}
			check := func(p sharedPod, rows []openreportsv1alpha1.ReportResult, res result) {
				t.Helper()
				checkPod(t, p.pod, rows, res)
				checkAttribution(t, engine, shared, p, rows, res)
			}

			res := apply(ctx, t, cli, policyFile, all...)
			if res.code != 1 {
				t.Errorf("apply with every Pod: exit code %d, want 1 (some Pods break the policies)\n%s", res.code, res)
			}
			rows := res.rows(t, policyNames...)
			for _, p := range pods {
				check(p, rows[p.name], res)
			}

			for _, p := range pods {
				res := apply(ctx, t, cli, policyFile, podFiles[p.name])
				if res.code != p.exitCode {
					t.Errorf("apply with Pod %s alone: exit code %d, want %d\n%s", p.name, res.code, p.exitCode, res)
					continue
				}
				rows := res.rows(t, policyNames...)
				check(p, rows[p.name], res)
				for other := range rows {
					if other != p.name {
						t.Errorf("apply with Pod %s alone reported on %s\n%s", p.name, other, res)
					}
				}
			}
		})
	}
}

// checkAttribution asserts that every failing row of p comes from the shared policy that
// holds the branch of p.registry (for the ClusterPolicy: from one of its rules) and that
// its message names that TrustedRegistry and no other.
func checkAttribution(t *testing.T, engine v1alpha1.Engine, shared *render.SharedPolicies, p sharedPod, rows []openreportsv1alpha1.ReportResult, res result) {
	t.Helper()
	for _, row := range rows {
		if row.Result != "fail" {
			continue
		}
		if p.registry == "" {
			t.Errorf("Pod %s: unexpected failure %s/%s: %s\n%s", p.name, row.Policy, row.Rule, row.Description, res)
			continue
		}
		if want := shared.Placements[p.registry].Policy; row.Policy != want {
			t.Errorf("Pod %s: failure from policy %s, want %s (the policy of TrustedRegistry %s)\n%s", p.name, row.Policy, want, p.registry, res)
		}
		named := map[string]bool{}
		for _, m := range trustedRegistryInMessage.FindAllStringSubmatch(row.Description, -1) {
			named[strings.TrimSuffix(m[1], ".")] = true
		}
		if engine == v1alpha1.EngineClusterPolicy {
			// the shared restriction rules name the registries in their messages
			r, ok := render.RegistryOfSharedRule(row.Rule)
			switch {
			case ok:
				named[r] = true
			case !strings.HasPrefix(row.Rule, "restrict-registries"):
				t.Errorf("Pod %s: failure from rule %q, which is no registry's\n%s", p.name, row.Rule, res)
			}
		}
		if len(named) != 1 || !named[p.registry] {
			t.Errorf("Pod %s: failure %s/%s %q names TrustedRegistries %v, want only %s\n%s",
				p.name, row.Policy, row.Rule, row.Description, named, p.registry, res)
		}
		// Reported or denied: what Kyverno does at admission with this failure.
		want := map[v1alpha1.Engine]string{v1alpha1.EngineImageValidatingPolicy: "Deny", v1alpha1.EngineClusterPolicy: "Enforce"}[engine]
		if p.registry == auditRegistry {
			want = "Audit"
		}
		if got := failureAction(t, shared, engine, row); got != want {
			t.Errorf("Pod %s: failure %s/%s is handled with %q, want %q (TrustedRegistry %s)\n%s", p.name, row.Policy, row.Rule, got, want, p.registry, res)
		}
	}
}

// failureAction is what Kyverno does at admission with a failing report row: the
// validationActions of the ImageValidatingPolicy, or the failureAction of the
// ClusterPolicy rule. The CLI itself does not tell: it reports fail and exits 1 for both.
// Its --audit-warn flag cannot either (Kyverno v1.19.1, EngineResponse.
// GetValidationFailureAction): it treats every ImageValidatingPolicy as Audit in the
// report rows (and still counts their failures for the exit code), and takes the action
// of a whole ClusterPolicy from its first rule that sets one, so in the shared
// ClusterPolicy (rules in registry name order) the first registry decides for all.
// Admission decides per rule (EngineResponse.HasEnforcedFailure).
func failureAction(t *testing.T, shared *render.SharedPolicies, engine v1alpha1.Engine, row openreportsv1alpha1.ReportResult) string {
	t.Helper()
	for _, p := range shared.Policies {
		if p.GetName() != row.Policy {
			continue
		}
		if engine == v1alpha1.EngineImageValidatingPolicy {
			actions, _, err := unstructured.NestedStringSlice(p.Object, "spec", "validationActions")
			if err != nil {
				t.Fatal(err)
			}
			return strings.Join(actions, ",")
		}
		rules, _, err := unstructured.NestedSlice(p.Object, "spec", "rules")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			rule, _ := r.(map[string]any)
			if rule["name"] != row.Rule {
				continue
			}
			if a, ok, _ := unstructured.NestedString(rule, "validate", "failureAction"); ok {
				return a
			}
			if vis, ok, _ := unstructured.NestedSlice(rule, "verifyImages"); ok && len(vis) == 1 {
				a, _, _ := unstructured.NestedString(vis[0].(map[string]any), "failureAction")
				return a
			}
			return "<rule " + row.Rule + " has no single failureAction>"
		}
		return "<no rule " + row.Rule + ">"
	}
	return "<no policy " + row.Policy + ">"
}

// signerSet reads the signer set ID out of a Placement.Branch of the shared
// ImageValidatingPolicy ("registries entry team-c (signer set 3f2a9c1b)").
func signerSet(t *testing.T, branch string) string {
	t.Helper()
	m := regexp.MustCompile(`signer set ([0-9a-f]+)`).FindStringSubmatch(branch)
	if m == nil {
		t.Fatalf("branch %q names no signer set", branch)
	}
	return m[1]
}
