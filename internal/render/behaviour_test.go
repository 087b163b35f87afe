package render

import (
	"math/rand"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/signet-operator/signet/api/v1alpha1"
)

type outcome int

const (
	skip   outcome = iota // the policy does not apply
	allow                 // applies, passes
	deny                  // applies, fails, request denied
	report                // applies, fails, request admitted (Audit)
)

func (o outcome) String() string { return [...]string{"skip", "allow", "deny", "report"}[o] }

func outcomeOf(d decision) outcome {
	switch {
	case !d.matched:
		return skip
	case d.pass:
		return allow
	case d.denied:
		return deny
	}
	return report
}

var (
	prod    = testNS{name: "production"}
	staging = testNS{name: "staging", labels: map[string]string{"team": "a"}}
	other   = testNS{name: "other"}
	labeled = testNS{name: "labeled", labels: map[string]string{"signet.dev/enforce": "true", "team": "b"}}
	sandbox = testNS{name: "sandbox-x", labels: map[string]string{"signet.dev/enforce": "true", "team": "b", "tier": "sandbox"}}
	noteam  = testNS{name: "noteam", labels: map[string]string{"signet.dev/enforce": "true"}}
)

const (
	appA = "ghcr.io/yourorg/app@" + digestA
	appB = "ghcr.io/yourorg/tool:v1@" + digestB
)

type behaviourCase struct {
	name     string
	scenario string
	ns       testNS
	pod      testPod
	sign     func(t testing.TB, db sigDB, in Input) // which signatures exist
	want     outcome
	msg      []string // substrings of the failure message
}

// signBy signs images with the keys of in (by seed index into in.Keys) and keyless
// identities of the spec (by index).
func signKeys(images []string, keyIdx ...int) func(testing.TB, sigDB, Input) {
	return func(t testing.TB, db sigDB, in Input) {
		for _, img := range images {
			for _, i := range keyIdx {
				db.sign(img, keyID(in.Keys[i]))
			}
		}
	}
}

func signKeyless(images []string, idx ...int) func(testing.TB, sigDB, Input) {
	return func(t testing.TB, db sigDB, in Input) {
		for _, img := range images {
			for _, i := range idx {
				db.sign(img, keylessID(in.Registry.Spec.Keyless[i]))
			}
		}
	}
}

func both(fs ...func(testing.TB, sigDB, Input)) func(testing.TB, sigDB, Input) {
	return func(t testing.TB, db sigDB, in Input) {
		for _, f := range fs {
			f(t, db, in)
		}
	}
}

func behaviourCases() []behaviourCase {
	return []behaviourCase{
		{"signed pod admitted", "seed", prod, testPod{containers: []string{appA}}, signKeys([]string{appA}, 0), allow, nil},
		{"unsigned pod denied, image named", "seed", prod, testPod{containers: []string{appA}}, nil, deny, []string{"ghcr.io/yourorg/app"}},
		{"other namespace untouched", "seed", other, testPod{containers: []string{"evil.io/x"}}, nil, skip, nil},
		{"foreign registry denied, image named", "seed", prod, testPod{containers: []string{appA, "nginx:1.27"}}, signKeys([]string{appA}, 0), deny, []string{"nginx:1.27", "ghcr.io/yourorg/*"}},
		{"look-alike org denied", "seed", prod, testPod{containers: []string{"ghcr.io/yourorg-evil/app@" + digestA}}, nil, deny, []string{"ghcr.io/yourorg-evil/app"}},
		{"look-alike host denied", "seed", staging, testPod{containers: []string{"ghcr.io.evil.com/yourorg/app@" + digestA}}, nil, deny, []string{"ghcr.io.evil.com"}},
		{"nested look-alike denied", "seed", prod, testPod{containers: []string{"evil.io/ghcr.io/yourorg/app@" + digestA}}, nil, deny, []string{"evil.io/ghcr.io/yourorg/app"}},
		{"foreign init container denied", "seed", prod, testPod{containers: []string{appA}, initContainers: []string{"busybox"}}, signKeys([]string{appA}, 0), deny, []string{"busybox"}},
		{"foreign ephemeral container denied", "seed", prod, testPod{containers: []string{appA}, ephemeral: []string{"busybox:1.36"}}, signKeys([]string{appA}, 0), deny, []string{"busybox:1.36"}},
		{"unsigned ephemeral container denied", "seed", prod, testPod{containers: []string{appA}, ephemeral: []string{appB}}, signKeys([]string{appA}, 0), deny, []string{"ghcr.io/yourorg/tool"}},
		{"unsigned init container denied", "seed", prod, testPod{containers: []string{appA}, initContainers: []string{appB}}, signKeys([]string{appA}, 0), deny, []string{"ghcr.io/yourorg/tool"}},
		{"tag without digest denied", "seed", prod, testPod{containers: []string{"ghcr.io/yourorg/app:v1"}}, signKeys([]string{"ghcr.io/yourorg/app:v1"}, 0), deny, []string{"ghcr.io/yourorg/app:v1"}},
		{"tag allowed with digest mutation", "digest-mutate", prod, testPod{containers: []string{"ghcr.io/yourorg/app:v1"}}, signKeys([]string{"ghcr.io/yourorg/app:v1"}, 0), allow, nil},

		{"rotation: old key accepted", "rotation", prod, testPod{containers: []string{appA}}, signKeys([]string{appA}, 0), allow, nil},
		{"rotation: new key accepted", "rotation", prod, testPod{containers: []string{appA}}, signKeys([]string{appA}, 1), allow, nil},
		{"rotation: other key refused", "rotation", prod, testPod{containers: []string{appA}}, func(t testing.TB, db sigDB, in Input) {
			db.sign(appA, testKey(t, "x", 9, v1alpha1.KeyActive).PEM)
		}, deny, []string{"ghcr.io/yourorg/app"}},

		{"keyless signature accepted", "keyless", prod, testPod{containers: []string{appA}}, signKeyless([]string{appA}, 0), allow, nil},
		{"keyless unsigned denied", "keyless", prod, testPod{containers: []string{appA}}, nil, deny, []string{"ghcr.io/yourorg/app"}},

		{"audit reports, admits", "audit", prod, testPod{containers: []string{appA, "evil.io/x"}}, nil, report, []string{"evil.io/x"}},
		{"audit passes signed", "audit", prod, testPod{containers: []string{appA}}, signKeys([]string{appA}, 0), allow, nil},

		{"selector: labelled namespace guarded", "selector", labeled, testPod{containers: []string{"evil.io/x"}}, nil, deny, []string{"evil.io/x"}},
		{"selector: named-only namespace not guarded", "selector", prod, testPod{containers: []string{"evil.io/x"}}, nil, skip, nil},

		{"union: named namespace guarded", "union", prod, testPod{containers: []string{"evil.io/x"}}, nil, deny, []string{"evil.io/x"}},
		{"union: named namespace with labels guarded", "union", staging, testPod{containers: []string{"evil.io/x"}}, nil, deny, []string{"evil.io/x"}},
		{"union: selected namespace guarded", "union", labeled, testPod{containers: []string{"evil.io/x"}}, nil, deny, []string{"evil.io/x"}},
		{"union: NotIn excludes", "union", sandbox, testPod{containers: []string{"evil.io/x"}}, nil, skip, nil},
		{"union: Exists required", "union", noteam, testPod{containers: []string{"evil.io/x"}}, nil, skip, nil},
		{"union: other namespace untouched", "union", other, testPod{containers: []string{"evil.io/x"}}, nil, skip, nil},
		{"union: signed admitted in selected namespace", "union", labeled, testPod{containers: []string{appA}}, signKeys([]string{appA}, 0), allow, nil},

		{"threshold: two signers pass", "threshold", prod, testPod{containers: []string{appA}}, signKeys([]string{appA}, 1, 2), allow, nil},
		{"threshold: key and keyless pass", "threshold", prod, testPod{containers: []string{appA}}, both(signKeys([]string{appA}, 0), signKeyless([]string{appA}, 0)), allow, nil},
		{"threshold: one signer fails", "threshold", prod, testPod{containers: []string{appA}}, signKeys([]string{appA}, 2), deny, []string{"ghcr.io/yourorg/app"}},
		{"threshold: old and new key of one name count once", "threshold", prod, testPod{containers: []string{appA}}, signKeys([]string{appA}, 0, 1), deny, []string{"ghcr.io/yourorg/app"}},
		{"threshold: per image", "threshold", prod, testPod{containers: []string{appA, appB}}, both(signKeys([]string{appA, appB}, 1), signKeys([]string{appA}, 2)), deny, []string{"ghcr.io/yourorg/tool"}},

		{"no-restrict: foreign image admitted", "no-restrict", prod, testPod{containers: []string{"evil.io/x", appA}}, signKeys([]string{appA}, 0), allow, nil},
		{"no-restrict: matching image still verified", "no-restrict", prod, testPod{containers: []string{"evil.io/x", appA}}, nil, deny, []string{"ghcr.io/yourorg/app"}},
		{"no-restrict: upper-case host still verified", "no-restrict", prod, testPod{containers: []string{"evil.io/x", "GHCR.IO/yourorg/app@" + digestA}}, nil, deny, []string{"GHCR.IO/yourorg/app"}},
		{"no-restrict: :443 still verified", "no-restrict", prod, testPod{containers: []string{"ghcr.io:443/yourorg/app@" + digestA}}, nil, deny, []string{"ghcr.io:443/yourorg/app"}},
		{"no-restrict: zero-padded port still verified", "no-restrict", prod, testPod{containers: []string{"ghcr.io:00443/yourorg/app@" + digestA}}, nil, deny, []string{"ghcr.io:00443/yourorg/app"}},
		{"no-restrict: signed :443 spelling admitted", "no-restrict", prod, testPod{containers: []string{"ghcr.io:443/yourorg/app@" + digestA}}, signKeys([]string{appA}, 0), allow, nil},

		{"many: nginx short name verified", "many-images", prod, testPod{containers: []string{"nginx@" + digestA}}, signKeys([]string{"nginx@" + digestA}, 0), allow, nil},
		{"many: nginx short name unsigned", "many-images", prod, testPod{containers: []string{"nginx@" + digestA}}, nil, deny, []string{"nginx@"}},
		{"many: registry-1.docker.io spelling unsigned", "many-images", prod, testPod{containers: []string{"registry-1.docker.io/library/nginx:1@" + digestA}}, nil, deny, []string{"registry-1.docker.io/library/nginx"}},
		{"many: upper-case Docker Hub spelling unsigned", "many-images", prod, testPod{containers: []string{"Docker.IO:443/nginx@" + digestA}}, nil, deny, []string{"Docker.IO:443/nginx"}},
		{"many: index.docker.io spelling unsigned", "many-images", prod, testPod{containers: []string{"index.docker.io/library/nginx:1@" + digestA}}, nil, deny, []string{"index.docker.io/library/nginx"}},
		{"many: pinned tag, other digest allowed if signed", "many-images", prod, testPod{containers: []string{"quay.io/team/pinned:v1@" + digestB}}, signKeys([]string{"quay.io/team/pinned:v1@" + digestB}, 0), allow, nil},
		{"many: digest pattern, other digest refused", "many-images", prod, testPod{containers: []string{"quay.io/team/tool@" + digestB}}, signKeys([]string{"quay.io/team/tool@" + digestB}, 0), deny, []string{"quay.io/team/tool@" + digestB}},
		{"many: tag pattern, other tag refused", "many-images", prod, testPod{containers: []string{"ghcr.io/partner/app:v9@" + digestA}}, signKeys([]string{"ghcr.io/partner/app:v9@" + digestA}, 0), deny, []string{"ghcr.io/partner/app:v9"}},

		{"shared key: one signature satisfies", "shared-key", prod, testPod{containers: []string{appA}}, signKeys([]string{appA}, 0), allow, nil},
		{"shared key: retiring key accepted", "shared-key", prod, testPod{containers: []string{appA}}, signKeys([]string{appA}, 2), allow, nil},

		{"unset fields: secure defaults enforce", "defaults-unset", prod, testPod{containers: []string{"evil.io/x"}}, nil, deny, []string{"evil.io/x"}},
		// Enforce with digest unset pins tags: a signed tag is admitted (and pinned), an
		// unsigned one denied; Audit with digest unset verifies what the tag resolves to and
		// does not report the tag itself, so it previews Enforce; an explicit require still
		// reports tags.
		{"unset fields: signed tag pinned", "defaults-unset", prod, testPod{containers: []string{"ghcr.io/yourorg/app:v1"}}, signKeys([]string{"ghcr.io/yourorg/app:v1"}, 0), allow, nil},
		{"unset fields: unsigned tag denied", "defaults-unset", prod, testPod{containers: []string{"ghcr.io/yourorg/app:v1"}}, nil, deny, []string{"ghcr.io/yourorg/app:v1"}},
		{"audit, digest unset: signed tag passes", "audit-unset", prod, testPod{containers: []string{"ghcr.io/yourorg/app:v1"}}, signKeys([]string{"ghcr.io/yourorg/app:v1"}, 0), allow, nil},
		{"audit, digest unset: unsigned tag reported", "audit-unset", prod, testPod{containers: []string{"ghcr.io/yourorg/app:v1"}}, nil, report, []string{"ghcr.io/yourorg/app:v1"}},
		{"audit, require set: signed tag reported", "audit", prod, testPod{containers: []string{"ghcr.io/yourorg/app:v1"}}, signKeys([]string{"ghcr.io/yourorg/app:v1"}, 0), report, []string{"ghcr.io/yourorg/app:v1"}},

		{"offline: key signature accepted", "offline", prod, testPod{containers: []string{"registry.internal:5000/platform/x@" + digestA}}, signKeys([]string{"registry.internal:5000/platform/x@" + digestA}, 0), allow, nil},
	}
}

// TestBehaviour checks, for both engines, what the rendered policies decide for Pods.
func TestBehaviour(t *testing.T) {
	sc := map[string]scenario{}
	for _, s := range scenarios() {
		sc[s.name] = s
	}
	for _, c := range behaviourCases() {
		for _, e := range engines {
			t.Run(c.name+"/"+e.name, func(t *testing.T) {
				s, ok := sc[c.scenario]
				if !ok {
					t.Fatalf("no scenario %q", c.scenario)
				}
				in := s.in(t)
				in.Engine = e.engine
				u, err := Render(in)
				if err != nil {
					t.Fatal(err)
				}
				db := sigDB{}
				if c.sign != nil {
					c.sign(t, db, in)
				}
				d := evalPolicy(t, e.engine, u, c.ns, c.pod, db)
				if got := outcomeOf(d); got != c.want {
					t.Fatalf("outcome %v, want %v (%v)", got, c.want, d)
				}
				for _, m := range c.msg {
					if !strings.Contains(d.message, m) {
						t.Errorf("message %q does not contain %q", d.message, m)
					}
				}
			})
		}
	}
}

// TestCELSelectorAgreesWithLabelSelector compares the CEL form of a namespace selector
// (used by the ImageValidatingPolicy when names and a selector are both given) with
// Kubernetes' own label selector semantics over random selectors and label sets.
func TestCELSelectorAgreesWithLabelSelector(t *testing.T) {
	env, err := k8sEnv()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(7))
	keys := []string{"a", "b", "example.com/c"}
	vals := []string{"x", "y", "z"}
	ops := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
	randLabels := func() map[string]string {
		l := map[string]string{}
		for _, k := range keys {
			if r.Intn(2) == 0 {
				l[k] = vals[r.Intn(len(vals))]
			}
		}
		return l
	}
	for i := 0; i < 300; i++ {
		sel := &metav1.LabelSelector{}
		if r.Intn(2) == 0 {
			sel.MatchLabels = map[string]string{keys[r.Intn(len(keys))]: vals[r.Intn(len(vals))]}
		}
		for n := r.Intn(3); n > 0 || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0); n-- {
			op := ops[r.Intn(len(ops))]
			req := metav1.LabelSelectorRequirement{Key: keys[r.Intn(len(keys))], Operator: op}
			if op == metav1.LabelSelectorOpIn || op == metav1.LabelSelectorOpNotIn {
				req.Values = vals[:1+r.Intn(len(vals))]
			}
			sel.MatchExpressions = append(sel.MatchExpressions, req)
		}
		p, err := compileCEL(env, celSelector(sel))
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 10; j++ {
			ns := testNS{name: "n", labels: randLabels()}
			want := selectorMatches(t, sel, ns)
			if got := p.evalBool(t, map[string]any{"namespaceObject": nsObject(ns)}); got != want {
				t.Fatalf("selector %+v labels %v: CEL %v, label selector %v", sel, ns.labels, got, want)
			}
		}
	}
}
