package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	policiesv1 "github.com/kyverno/api/api/policies.kyverno.io/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/api/v1alpha1"
)

var registryInMessage = regexp.MustCompile(`TrustedRegistry ([a-z0-9.-]+)`)

// verdict is what a set of policies did to one request, as a whole.
type verdict struct {
	denied   bool
	reported bool
	// failing names the registries the failure messages name, by enforce/audit
	denyNames, reportNames map[string]bool
}

func combine(t testing.TB, engine v1alpha1.Engine, policies []*unstructured.Unstructured, ns testNS, pod testPod, db sigDB) verdict {
	v := verdict{denyNames: map[string]bool{}, reportNames: map[string]bool{}}
	for _, u := range policies {
		d := evalPolicy(t, engine, u, ns, pod, db)
		if !d.matched || d.pass {
			continue
		}
		own := u.GetLabels()[LabelRegistry]
		add := func(enforce bool, rule, msg string) {
			names := v.reportNames
			if enforce {
				v.denied = true
				names = v.denyNames
			} else {
				v.reported = true
			}
			ruleOwner, ruleNamed := RegistryOfSharedRule(rule)
			switch {
			case own != "":
				names[own] = true
			case ruleNamed:
				names[ruleOwner] = true
			default:
				// the shared IVP and the restriction rules name registries in messages
				found := registryInMessage.FindAllStringSubmatch(msg, -1)
				for _, m := range found {
					names[strings.TrimSuffix(m[1], ".")] = true
				}
				if len(found) == 0 {
					names["<unnamed: "+msg+">"] = true
				}
			}
		}
		if engine == v1alpha1.EngineClusterPolicy {
			for _, f := range d.failures {
				add(f.enforce, f.rule, f.message)
			}
			continue
		}
		add(d.denied, "", d.message)
	}
	return v
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// randomRegistries returns n renderable registries with distinct names.
func randomRegistries(t testing.TB, r *rand.Rand, n int, engine v1alpha1.Engine) []Input {
	var ins []Input
	for len(ins) < n {
		data := make([]byte, 96)
		r.Read(data)
		in := fuzzInput(t, data)
		name := fmt.Sprintf("team-%d", len(ins))
		in.Registry.Name = name
		in.Registry.UID = types.UID(fmt.Sprintf("%x", sha256.Sum256([]byte(name)))[:36])
		in.Engine = engine
		if _, err := Render(in); err != nil {
			continue
		}
		ins = append(ins, in)
	}
	return ins
}

// TestSharedAgreesWithPerRegistry: for random sets of registries (sharing namespaces,
// with overlapping patterns, Enforce and Audit, restricting or not), random Pods, random
// signatures and every test namespace, the per-registry policies (each knowing the other
// registries) decide what the composition rules (composeOracle) say, the shared policies
// deny exactly when the per-registry policies deny, report exactly when they report, and
// every registry a shared policy's message names is one whose own policy fails.
func TestSharedAgreesWithPerRegistry(t *testing.T) {
	namespaces := []testNS{prod, staging, other, labeled, sandbox, noteam,
		{name: "dev", labels: map[string]string{"tier": "a", "team": "b", "env": "c"}}, {name: "a-b"}, {name: "kube-public", labels: map[string]string{"team": "x"}}}
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			r := rand.New(rand.NewSource(11))
			trials, pods := 10, 10
			if testing.Short() {
				trials = 6
			}
			compared := map[string]int{}
			for trial := 0; trial < trials; trial++ {
				ins := randomRegistries(t, r, 1+r.Intn(5), e.engine)
				per := perRegistryWithPeers(t, ins)
				var pats []string
				var ids []string
				for _, in := range ins {
					for _, p := range in.Registry.Spec.Images {
						pats = append(pats, string(p))
					}
					for _, k := range in.Keys {
						ids = append(ids, keyID(k))
					}
					for _, id := range in.Registry.Spec.Keyless {
						ids = append(ids, keylessID(id))
					}
				}
				shared, err := RenderShared(ins)
				if err != nil {
					t.Fatal(err)
				}
				if len(shared.Placements) != len(ins) {
					t.Fatalf("%d placements for %d registries", len(shared.Placements), len(ins))
				}
				images := probeImages(pats)
				images = append(images, "nginx", "evil.io/x@"+digestA)
				for k := 0; k < pods; k++ {
					pick := func() string { return images[r.Intn(len(images))] }
					pod := testPod{containers: []string{pick()}}
					if r.Intn(2) == 0 {
						pod.containers = append(pod.containers, pick())
					}
					if r.Intn(3) == 0 {
						pod.initContainers = []string{pick()}
					}
					if r.Intn(4) == 0 {
						pod.ephemeral = []string{pick()}
					}
					db := sigDB{}
					for _, img := range pod.all() {
						for _, id := range ids {
							if r.Intn(3) != 0 {
								db.sign(img, id)
							}
						}
					}
					for _, ns := range namespaces {
						want := combine(t, e.engine, per, ns, pod, db)
						got := combine(t, e.engine, shared.Policies, ns, pod, db)
						if o := composeOracle(t, e.engine, ins, ns, pod, db); o.denied != want.denied || o.reported != want.reported {
							t.Fatalf("trial %d, namespace %s, pod %v: the composition rules say denied=%v reported=%v %v/%v, the per-registry policies denied=%v reported=%v %v/%v",
								trial, ns.name, pod, o.denied, o.reported, sortedKeys(o.denyNames), sortedKeys(o.reportNames),
								want.denied, want.reported, sortedKeys(want.denyNames), sortedKeys(want.reportNames))
						}
						if want.denied != got.denied || want.reported != got.reported {
							t.Fatalf("trial %d, namespace %s, pod %v: per-registry denied=%v reported=%v %v/%v, shared denied=%v reported=%v %v/%v",
								trial, ns.name, pod, want.denied, want.reported, sortedKeys(want.denyNames), sortedKeys(want.reportNames),
								got.denied, got.reported, sortedKeys(got.denyNames), sortedKeys(got.reportNames))
						}
						for n := range got.denyNames {
							if !want.denyNames[n] {
								t.Fatalf("trial %d, namespace %s, pod %v: shared denial names %s, whose own policy does not deny (%v)", trial, ns.name, pod, n, sortedKeys(want.denyNames))
							}
						}
						for n := range got.reportNames {
							if !want.reportNames[n] {
								t.Fatalf("trial %d, namespace %s, pod %v: shared report names %s, whose own policy does not report (%v)", trial, ns.name, pod, n, sortedKeys(want.reportNames))
							}
						}
						switch {
						case want.denied:
							compared["denied"]++
						case want.reported:
							compared["reported"]++
						default:
							compared["admitted"]++
						}
					}
				}
			}
			// the comparison must have exercised every outcome
			for _, o := range []string{"denied", "reported", "admitted"} {
				if compared[o] == 0 {
					t.Errorf("no case was %s: %v", o, compared)
				}
			}
			t.Logf("compared %v", compared)
		})
	}
}

// sharedScenarioInputs is every golden scenario as one registry named after it.
func sharedScenarioInputs(t testing.TB, engine v1alpha1.Engine) []Input {
	var ins []Input
	for _, sc := range scenarios() {
		in := sc.in(t)
		in.Registry.Name = sc.name
		in.Registry.UID = types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012x", sha256.Sum256([]byte(sc.name)))[:36])
		in.Engine = engine
		ins = append(ins, in)
	}
	return ins
}

// TestSharedGolden renders all golden scenarios as one cluster's registries into the
// shared policies: testdata/shared.<policy name>.yaml, one file per policy (run with
// -update to accept changes). TestGoldensAgainstKyvernoCRDs applies them too.
func TestSharedGolden(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range engines {
		res, err := RenderShared(sharedScenarioInputs(t, e.engine))
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range res.Policies {
			got, err := yaml.Marshal(u.Object)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "shared."+u.GetName()+".yaml")
			seen[filepath.Base(path)] = true
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/render -run TestSharedGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the rendered policy (run with -update to accept):\n%s", path, lineDiff(string(want), string(got)))
			}
		}
	}
	entries, _ := os.ReadDir("testdata")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "shared.") && !seen[e.Name()] {
			if *update {
				_ = os.Remove(filepath.Join("testdata", e.Name()))
				continue
			}
			t.Errorf("stale golden file testdata/%s: no shared policy renders it", e.Name())
		}
	}
}

// TestSharedScales renders 1,000 registries (distinct patterns, half sharing a key): the
// shared policies stay few, every CEL expression stays under the parsers' size limit and
// compiles, and every policy stays under the object size budget.
func TestSharedScales(t *testing.T) {
	shared := testKey(t, "ci", 1, v1alpha1.KeyActive)
	var ins []Input
	for i := 0; i < 1000; i++ {
		name := fmt.Sprintf("team-%d", i)
		tr := registry(name, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Images = patterns(fmt.Sprintf("registry.example.com:5000/team-%d/*", i))
			s.Namespaces.Names = []string{"production"}
		})
		tr.UID = types.UID(fmt.Sprintf("%x", sha256.Sum256([]byte(name)))[:36])
		key := shared
		if i%2 == 1 {
			key = testKey(t, "ci", byte(2+i%200), v1alpha1.KeyActive)
		}
		ins = append(ins, Input{Registry: tr, Keys: []Key{key}, Engine: v1alpha1.EngineImageValidatingPolicy})
	}
	res, err := RenderShared(ins)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Policies) != 2 || len(res.Placements) != 1000 {
		t.Fatalf("%d policies, %d placements; want 2 (500 registries each) and 1000", len(res.Policies), len(res.Placements))
	}
	env, err := ivpEnv(sigDB{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	menv, err := matchImageEnv()
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range res.Policies {
		b, _ := json.Marshal(u.Object)
		if len(b) > maxSharedPolicyBytes {
			t.Errorf("%s: %d bytes", u.GetName(), len(b))
		}
		var spec policiesv1.ImageValidatingPolicySpec
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object["spec"].(map[string]any), &spec); err != nil {
			t.Fatal(err)
		}
		check := func(e *cel.Env, expr string) {
			if len(expr) > 100_000 {
				t.Errorf("%s: expression of %d characters", u.GetName(), len(expr))
			}
			if _, err := compileCEL(e, expr); err != nil {
				t.Errorf("%s: %v", u.GetName(), err)
			}
		}
		for _, v := range spec.Variables {
			check(env, v.Expression)
		}
		for _, v := range spec.Validations {
			check(env, v.Expression)
			check(env, v.MessageExpression)
		}
		for _, m := range spec.MatchImageReferences {
			check(menv, m.Expression)
		}
		t.Logf("%s: %d KiB, %d variables, %d matchImageReferences", u.GetName(), len(b)/1024, len(spec.Variables), len(spec.MatchImageReferences))
	}
}

// TestSharedPolicyNamesBounded: every shared policy is named in SharedPolicyNames (the
// names Signet's RBAC may write), and a group that would need more policies than that is
// refused rather than written under a name Signet may not write.
func TestSharedPolicyNamesBounded(t *testing.T) {
	for _, e := range engines {
		names := SharedPolicyNames(e.engine)
		if len(names) != maxSharedPolicies*len(sharedGroups[engineTag(e.engine)]) {
			t.Errorf("%s: %d names", e.name, len(names))
		}
		res, err := RenderShared(sharedScenarioInputs(t, e.engine))
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range res.Policies {
			if !slices.Contains(names, u.GetName()) {
				t.Errorf("%s: policy %s is not among SharedPolicyNames %q", e.name, u.GetName(), names)
			}
		}
	}
	key := testKey(t, "ci", 1, v1alpha1.KeyActive)
	var ins []Input
	for i := 0; i <= maxSharedRegistries; i++ {
		name := fmt.Sprintf("team-%d", i)
		tr := registry(name, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Images = patterns(fmt.Sprintf("registry.example.com/team-%d/*", i))
		})
		tr.UID = types.UID(fmt.Sprintf("%x", sha256.Sum256([]byte(name)))[:36])
		ins = append(ins, Input{Registry: tr, Keys: []Key{key}, Engine: v1alpha1.EngineImageValidatingPolicy})
	}
	res, err := RenderShared(ins)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Policies) != 2 || res.Policies[1].GetName() != "signet.ivp.enforce.2" {
		t.Fatalf("%d registries: %d policies", len(ins), len(res.Policies))
	}
	defer func(n int) { maxSharedPolicies = n }(maxSharedPolicies)
	maxSharedPolicies = 1
	if _, err := RenderShared(ins); err == nil || !strings.Contains(err.Error(), "do not fit 1 policies") {
		t.Fatalf("%d registries in a group of at most 1 policy: %v", len(ins), err)
	}
}

// TestSharedClusterPolicyCELRulesBounded: the shared ClusterPolicy has a fixed number of
// CEL rules however many registries it holds. Kyverno compiles every CEL rule of a
// ClusterPolicy in its policy-validation webhook on each write; with one host-spelling rule
// per registry that took longer than the webhook's 10 s timeout at 300 registries on two
// cores, so the policy was never written (make bench-admission).
func TestSharedClusterPolicyCELRulesBounded(t *testing.T) {
	var ins []Input
	for i := 0; i < 300; i++ {
		name := fmt.Sprintf("team-%d", i)
		tr := registry(name, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Images = patterns(fmt.Sprintf("registry.example.com:5000/team-%d/*", i))
			s.Namespaces.Names = []string{fmt.Sprintf("ns-%d", i%7)}
			if i%3 == 0 {
				s.Action = v1alpha1.ActionAudit
			}
			if i%5 == 0 {
				s.Namespaces.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprint(i % 4)}}
			}
		})
		ins = append(ins, Input{Registry: tr, Keys: []Key{testKey(t, "ci", byte(1+i%200), v1alpha1.KeyActive)}, Engine: v1alpha1.EngineClusterPolicy})
	}
	res, err := RenderShared(ins)
	if err != nil {
		t.Fatal(err)
	}
	verify := 0
	for _, u := range res.Policies {
		rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
		cel := 0
		for _, r := range rules {
			rule := r.(map[string]any)
			if _, ok, _ := unstructured.NestedMap(rule, "validate", "cel"); ok {
				cel++
			} else {
				verify++
			}
		}
		if cel > 4 {
			t.Errorf("%s: %d CEL rules for %d rules; want at most 4 (the restrictions and the host-spelling denials, Enforce and Audit)", u.GetName(), cel, len(rules))
		}
	}
	if verify != len(ins) {
		t.Errorf("%d verifyImages rules for %d registries", verify, len(ins))
	}
}
