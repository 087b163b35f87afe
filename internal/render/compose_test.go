package render

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// composeOracle is the composition of several TrustedRegistries on one namespace written
// plainly in Go (README.md, "Composition"), the reference the rendered policies of both
// layouts and engines are compared with:
//   - restriction: where restricting Enforce registries guard the namespace, an image
//     matching none of their patterns is denied (union); where a restricting Audit one
//     guards, an image matching none of the patterns of all restricting registries there
//     is reported; non-restricting registries never restrict;
//   - signatures: every registry guarding the namespace whose patterns match an image
//     requires its own signers, threshold and digest rule (Enforce denies, Audit reports).
//
// The ClusterPolicy selects the images it verifies with Kyverno wildcards (a superset of
// the patterns, see kyvernoGlobs); the oracle does the same for that engine.
func composeOracle(t testing.TB, engine v1alpha1.Engine, ins []Input, ns testNS, pod testPod, db sigDB) verdict {
	t.Helper()
	v := verdict{denyNames: map[string]bool{}, reportNames: map[string]bool{}}
	fail := func(enforce bool, names ...string) {
		for _, n := range names {
			if enforce {
				v.denied = true
				v.denyNames[n] = true
			} else {
				v.reported = true
				v.reportNames[n] = true
			}
		}
	}
	var guarding []*settings
	for _, in := range ins {
		s, err := resolve(in)
		if err != nil {
			t.Fatal(err)
		}
		g := false
		for _, n := range s.ns.names {
			g = g || n == ns.name
		}
		if s.ns.selector != nil && selectorMatches(t, s.ns.selector, ns) {
			g = true
		}
		if g {
			guarding = append(guarding, s)
		}
	}
	allowedBy := func(img string, enforceOnly bool) (bool, []string) {
		var names []string
		ok := false
		for _, s := range guarding {
			if !s.restrict || (enforceOnly && !s.enforce) {
				continue
			}
			names = append(names, s.name)
			ok = ok || s.patterns.match(img)
		}
		return ok || len(names) == 0, names
	}
	var auditNames []string
	for _, s := range guarding {
		if s.restrict && !s.enforce {
			auditNames = append(auditNames, s.name)
		}
	}
	for _, img := range pod.all() {
		if ok, names := allowedBy(img, true); !ok {
			fail(true, names...)
		}
		if len(auditNames) > 0 {
			if ok, _ := allowedBy(img, false); !ok {
				fail(false, auditNames...)
			}
		}
		for _, s := range guarding {
			subject := s.patterns.match(img)
			if engine == v1alpha1.EngineClusterPolicy && subject && regexp.MustCompile(cpRespelledRE).MatchString(img) {
				// Kyverno's wildcards cannot select this spelling of the host: the
				// ClusterPolicy refuses it instead of verifying it
				fail(s.enforce, s.name)
				continue
			}
			if engine == v1alpha1.EngineClusterPolicy {
				subject = false
				for _, g := range s.patterns.kyvernoGlobs() {
					subject = subject || wildcardMatch(g, kyvernoImageString(img, true))
				}
			}
			if !subject {
				continue
			}
			n := 0
			for _, sg := range s.signers {
				ok := false
				for _, k := range sg.keys {
					ok = ok || db.signed(img, k.pem)
				}
				if id := sg.keyless; id != nil {
					ok = ok || db.signed(img, keylessID(*id))
				}
				if ok {
					n++
				}
			}
			undigested := s.verifyDig && !s.mutateDig && !strings.Contains(img, "@")
			if n < s.required || undigested {
				fail(s.enforce, s.name)
			}
		}
	}
	return v
}

// perRegistryWithPeers renders every registry's own policy, each knowing the others.
func perRegistryWithPeers(t testing.TB, ins []Input) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for i, in := range ins {
		in.Peers = nil
		for j, p := range ins {
			if j != i {
				in.Peers = append(in.Peers, p.Registry)
			}
		}
		u, err := Render(in)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

// layouts renders the same registries as the shared policies and as per-registry ones.
func layouts(t testing.TB, ins []Input) map[string][]*unstructured.Unstructured {
	t.Helper()
	shared, err := RenderShared(ins)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]*unstructured.Unstructured{"shared": shared.Policies, "per-registry": perRegistryWithPeers(t, ins)}
}

// messages lists the failure messages of the policies for a request.
func messages(t testing.TB, engine v1alpha1.Engine, policies []*unstructured.Unstructured, ns testNS, pod testPod, db sigDB) string {
	var out []string
	for _, u := range policies {
		d := evalPolicy(t, engine, u, ns, pod, db)
		if !d.matched || d.pass {
			continue
		}
		if engine == v1alpha1.EngineImageValidatingPolicy {
			out = append(out, d.message)
			continue
		}
		// Kyverno's own verifyImages messages do not name the registry: the rule (shared
		// policy) or the policy (per-registry) does, as in Kyverno's events
		for _, f := range d.failures {
			owner, ok := RegistryOfSharedRule(f.rule)
			if own := u.GetLabels()[LabelRegistry]; own != "" && f.rule == cpRuleVerify {
				owner, ok = own, true
			}
			if ok {
				out = append(out, "[TrustedRegistry "+owner+"] "+f.message)
			} else {
				out = append(out, f.message)
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, " | ")
}

const (
	teamAImg     = "registry.example.com/teama/api@" + digestA
	teamBImg     = "registry2.example.com/teamb/web@" + digestA
	platformImg  = "registry.example.com/platform/proxy@" + digestA
	criticalImg  = "registry.example.com/yourorg/critical/db@" + digestA
	yourorgImg   = "registry.example.com/yourorg/app@" + digestA
	foreignImg   = "docker.io/library/nginx@" + digestA
	teamAPattern = "registry.example.com/teama/*"
	teamBPattern = "registry2.example.com/teamb/*"
)

type composeReg struct {
	name     string
	images   []string
	ns       []string
	selector map[string]string
	audit    bool
	noRestr  bool
	mutate   bool
	seed     byte // key seed; the registry's signer
}

func composeInputs(t testing.TB, engine v1alpha1.Engine, regs ...composeReg) []Input {
	var ins []Input
	for _, r := range regs {
		tr := registry(r.name, func(s *v1alpha1.TrustedRegistrySpec) {
			s.Images = patterns(r.images...)
			s.Namespaces = v1alpha1.NamespaceSelection{Names: r.ns}
			if r.selector != nil {
				s.Namespaces.Selector = &metav1.LabelSelector{MatchLabels: r.selector}
			}
			if r.audit {
				s.Action = v1alpha1.ActionAudit
			}
			s.RestrictRegistries = ptr.To(!r.noRestr)
			s.Digest.Mutate = ptr.To(r.mutate)
		})
		ins = append(ins, Input{Registry: tr, Keys: []Key{testKey(t, "ci", r.seed, v1alpha1.KeyActive)}, Engine: engine})
	}
	return ins
}

// TestComposition is the table of the composition rules: for both engines and both
// layouts, what happens to Pods in a namespace guarded by several registries, compared
// with the expected outcome and with composeOracle.
func TestComposition(t *testing.T) {
	teamA := composeReg{name: "teama", images: []string{teamAPattern}, ns: []string{"staging"}, seed: 1}
	teamB := composeReg{name: "teamb", images: []string{teamBPattern}, ns: []string{"staging"}, seed: 2}
	yourorg := composeReg{name: "yourorg", images: []string{"registry.example.com/yourorg/*"}, ns: []string{"production"}, seed: 3}
	critical := composeReg{name: "critical", images: []string{"registry.example.com/yourorg/critical/*"}, ns: []string{"production"}, seed: 4}
	platform := composeReg{name: "platform", images: []string{"registry.example.com/platform/*"}, selector: map[string]string{"team": "a"}, seed: 5}
	auditB := teamB
	auditB.audit = true
	openB := teamB
	openB.noRestr = true
	pinA := teamA
	pinA.mutate = true

	type sigs map[string][]byte // image -> key seeds that signed it
	cases := []struct {
		name   string
		regs   []composeReg
		ns     testNS
		pod    []string
		signed sigs
		want   outcome // deny, report (admitted with a report) or allow
		msg    []string
		notMsg []string
		// cpWant, when set, is the ClusterPolicy's outcome where it differs (it denies
		// host spellings its wildcards cannot select instead of verifying them)
		cpWant outcome
		cpMsg  []string
	}{
		{name: "team A's signed image admitted next to team B", regs: []composeReg{teamA, teamB}, ns: staging, pod: []string{teamAImg}, signed: sigs{teamAImg: {1}}, want: allow},
		{name: "team B's signed image admitted next to team A", regs: []composeReg{teamA, teamB}, ns: staging, pod: []string{teamBImg}, signed: sigs{teamBImg: {2}}, want: allow},
		{name: "both teams' images in one Pod", regs: []composeReg{teamA, teamB}, ns: staging, pod: []string{teamAImg, teamBImg}, signed: sigs{teamAImg: {1}, teamBImg: {2}}, want: allow},
		{name: "foreign image denied, message lists both registries and patterns", regs: []composeReg{teamA, teamB}, ns: staging, pod: []string{foreignImg},
			want: deny, msg: []string{foreignImg, "TrustedRegistry teama", "TrustedRegistry teamb", teamAPattern, teamBPattern, "may run in this namespace"}},
		{name: "team A's image signed by team B's key denied", regs: []composeReg{teamA, teamB}, ns: staging, pod: []string{teamAImg}, signed: sigs{teamAImg: {2}},
			want: deny, msg: []string{"TrustedRegistry teama"}, notMsg: []string{"TrustedRegistry teamb"}},
		{name: "unsigned team B image denied by team B only", regs: []composeReg{teamA, teamB}, ns: staging, pod: []string{teamBImg},
			want: deny, msg: []string{"TrustedRegistry teamb"}, notMsg: []string{"TrustedRegistry teama"}},
		{name: "selector registry joins the union", regs: []composeReg{teamA, teamB, platform}, ns: staging, pod: []string{platformImg, teamAImg}, signed: sigs{platformImg: {5}, teamAImg: {1}}, want: allow},
		{name: "selector registry's patterns not allowed where it does not guard", regs: []composeReg{teamA, platform}, ns: testNS{name: "staging"}, pod: []string{platformImg}, signed: sigs{platformImg: {5}},
			want: deny, msg: []string{"TrustedRegistry teama"}, notMsg: []string{"TrustedRegistry platform"}},
		{name: "enforce-pin and enforce registries still a union", regs: []composeReg{pinA, teamB}, ns: staging, pod: []string{teamAImg, teamBImg}, signed: sigs{teamAImg: {1}, teamBImg: {2}}, want: allow},
		{name: "enforce-pin and enforce registries: foreign denied", regs: []composeReg{pinA, teamB}, ns: staging, pod: []string{foreignImg}, want: deny, msg: []string{"TrustedRegistry teama", "TrustedRegistry teamb"}},
		// overlapping patterns: each registry whose patterns match must be satisfied
		{name: "overlap: signed by the broad registry only denied", regs: []composeReg{yourorg, critical}, ns: prod, pod: []string{criticalImg}, signed: sigs{criticalImg: {3}},
			want: deny, msg: []string{"TrustedRegistry critical"}, notMsg: []string{"TrustedRegistry yourorg"}},
		{name: "overlap: signed by the narrow registry only denied", regs: []composeReg{yourorg, critical}, ns: prod, pod: []string{criticalImg}, signed: sigs{criticalImg: {4}},
			want: deny, msg: []string{"TrustedRegistry yourorg"}, notMsg: []string{"TrustedRegistry critical"}},
		{name: "overlap: signed by both admitted", regs: []composeReg{yourorg, critical}, ns: prod, pod: []string{criticalImg}, signed: sigs{criticalImg: {3, 4}}, want: allow},
		{name: "overlap: outside the narrow pattern needs the broad signer only", regs: []composeReg{yourorg, critical}, ns: prod, pod: []string{yourorgImg}, signed: sigs{yourorgImg: {3}}, want: allow},
		// Audit never loosens Enforce
		{name: "Audit registry's image denied by the Enforce restriction", regs: []composeReg{teamA, auditB}, ns: staging, pod: []string{teamBImg}, signed: sigs{teamBImg: {2}},
			want: deny, msg: []string{"TrustedRegistry teama", teamAPattern}, notMsg: []string{teamBPattern}},
		{name: "Audit registry reports foreign images outside the union", regs: []composeReg{auditB}, ns: staging, pod: []string{foreignImg}, want: report, msg: []string{"TrustedRegistry teamb"}},
		{name: "Audit restriction counts the Enforce registry's patterns", regs: []composeReg{teamA, auditB}, ns: staging, pod: []string{teamAImg}, signed: sigs{teamAImg: {1}}, want: allow},
		{name: "Audit and Enforce on one image: Enforce decides, Audit reports", regs: []composeReg{teamA, {name: "audita", images: []string{teamAPattern}, ns: []string{"staging"}, audit: true, seed: 6}},
			ns: staging, pod: []string{teamAImg}, signed: sigs{teamAImg: {1}}, want: report, msg: []string{"TrustedRegistry audita"}},
		// images holding the restriction index's separators ('#', '%', '=', ',', line
		// breaks: internal/render/restrict_lookup.go) around a trusted prefix are not
		// taken for it (the Pod API accepts such strings; found with the real Kyverno)
		{name: "separators around a trusted prefix denied", regs: []composeReg{teamA, teamB}, ns: staging,
			pod:  []string{"evil.example.com/x#registry.example.com/teama/api", "evil.example.com/=0,1,#%/x", "registry.example.com/teama%/x"},
			want: deny, msg: []string{"evil.example.com/x#registry.example.com/teama/api", "registry.example.com/teama%/x", "may run in this namespace"}},
		{name: "line breaks around a trusted prefix denied", regs: []composeReg{teamA, teamB}, ns: staging,
			pod: []string{"evil.example.com/a\nregistry.example.com/teama/=0,\nx/y"}, want: deny},
		// non-restricting registries
		{name: "non-restricting registry does not widen the union", regs: []composeReg{teamA, openB}, ns: staging, pod: []string{teamBImg}, signed: sigs{teamBImg: {2}},
			want: deny, msg: []string{"TrustedRegistry teama"}, notMsg: []string{"TrustedRegistry teamb"}},
		{name: "non-restricting registry alone restricts nothing", regs: []composeReg{openB}, ns: staging, pod: []string{foreignImg}, want: allow},
		{name: "unguarded namespace untouched", regs: []composeReg{teamA, teamB}, ns: other, pod: []string{foreignImg}, want: allow},
		// host spellings: the ImageValidatingPolicy verifies the canonical image, the
		// ClusterPolicy denies the spelling, naming only the registries whose patterns match
		{name: "upper-case host of a signed image", regs: []composeReg{teamA, teamB}, ns: staging, pod: []string{"REGISTRY.example.com/teama/api@" + digestA},
			signed: sigs{"REGISTRY.example.com/teama/api@" + digestA: {1}}, want: allow,
			cpWant: deny, cpMsg: []string{"REGISTRY.example.com/teama/api@", "TrustedRegistry teama verifies its images only with the registry host in lower case"}, notMsg: []string{"TrustedRegistry teamb"}},
		{name: "upper-case host of an Audit registry's image", regs: []composeReg{auditB}, ns: staging, pod: []string{"Registry2.Example.com/teamb/web@" + digestA},
			signed: sigs{"Registry2.Example.com/teamb/web@" + digestA: {2}}, want: allow, cpWant: report, cpMsg: []string{"TrustedRegistry teamb"}},
		{name: "upper-case host matching two registries", regs: []composeReg{yourorg, critical}, ns: prod, pod: []string{"Registry.Example.com/yourorg/critical/x@" + digestA},
			signed: sigs{"Registry.Example.com/yourorg/critical/x@" + digestA: {3, 4}}, want: allow,
			cpWant: deny, cpMsg: []string{"TrustedRegistry critical", "TrustedRegistry yourorg", "images only with the registry host in lower case"}},
		{name: "upper-case host where no registry guards", regs: []composeReg{teamA}, ns: other, pod: []string{"REGISTRY.example.com/teama/api@" + digestA}, want: allow},
		{name: "upper-case host of a non-restricting registry's image", regs: []composeReg{openB}, ns: staging, pod: []string{"REGISTRY2.example.com/teamb/web@" + digestA},
			signed: sigs{"REGISTRY2.example.com/teamb/web@" + digestA: {2}}, want: allow, cpWant: deny, cpMsg: []string{"TrustedRegistry teamb"}},
	}
	for _, e := range engines {
		for _, tc := range cases {
			ins := composeInputs(t, e.engine, tc.regs...)
			db := sigDB{}
			for img, seeds := range tc.signed {
				for _, s := range seeds {
					db.sign(img, keyID(testKey(t, "ci", s, v1alpha1.KeyActive)))
				}
			}
			pod := testPod{containers: tc.pod}
			want, wantMsg := tc.want, tc.msg
			if e.engine == v1alpha1.EngineClusterPolicy {
				if tc.cpWant != 0 {
					want = tc.cpWant
				}
				if tc.cpMsg != nil {
					wantMsg = tc.cpMsg
				}
			}
			oracle := composeOracle(t, e.engine, ins, tc.ns, pod, db)
			if got := verdictOutcome(oracle); got != want {
				t.Errorf("%s/%s: oracle says %s, the table %s", e.name, tc.name, got, want)
			}
			for lname, policies := range layouts(t, ins) {
				v := combine(t, e.engine, policies, tc.ns, pod, db)
				msg := messages(t, e.engine, policies, tc.ns, pod, db)
				if got := verdictOutcome(v); got != want {
					t.Errorf("%s/%s/%s: %s, want %s (%s)", e.name, lname, tc.name, got, want, msg)
					continue
				}
				for _, m := range wantMsg {
					if !strings.Contains(msg, m) {
						t.Errorf("%s/%s/%s: message %q lacks %q", e.name, lname, tc.name, msg, m)
					}
				}
				for _, m := range tc.notMsg {
					if strings.Contains(msg, m) {
						t.Errorf("%s/%s/%s: message %q has %q", e.name, lname, tc.name, msg, m)
					}
				}
			}
		}
	}
}

func verdictOutcome(v verdict) outcome {
	switch {
	case v.denied:
		return deny
	case v.reported:
		return report
	}
	return allow
}

// TestCompositionMessageBounded: a namespace guarded by many restricting registries gets
// a message with ten patterns and ten registries, and says how many more there are.
func TestCompositionMessageBounded(t *testing.T) {
	var regs []composeReg
	for i := 0; i < 14; i++ {
		regs = append(regs, composeReg{name: fmt.Sprintf("team-%02d", i), images: []string{fmt.Sprintf("registry.example.com/team-%02d/*", i)}, ns: []string{"staging"}, seed: 1})
	}
	for _, e := range engines {
		ins := composeInputs(t, e.engine, regs...)
		for lname, policies := range layouts(t, ins) {
			msg := messages(t, e.engine, policies, staging, testPod{containers: []string{foreignImg}}, sigDB{})
			for _, want := range []string{"TrustedRegistry team-00", "TrustedRegistry team-09 and 4 more", "registry.example.com/team-09/* and 4 more may run"} {
				if !strings.Contains(msg, want) {
					t.Errorf("%s/%s: message lacks %q: %s", e.name, lname, want, abbreviate(msg))
				}
			}
			if strings.Contains(msg, "team-10") {
				t.Errorf("%s/%s: message names more than ten: %s", e.name, lname, abbreviate(msg))
			}
		}
	}
}

// TestCompositionAcrossEngines: registries of both engines on one namespace still make
// one union (each engine's shared policy holds the other's patterns), and a namespace
// guarded only by registries of one engine is not judged by the other engine's policy.
func TestCompositionAcrossEngines(t *testing.T) {
	teamA := composeInputs(t, v1alpha1.EngineImageValidatingPolicy, composeReg{name: "teama", images: []string{teamAPattern}, ns: []string{"staging", "production"}, seed: 1})
	teamB := composeInputs(t, v1alpha1.EngineClusterPolicy, composeReg{name: "teamb", images: []string{teamBPattern}, ns: []string{"staging"}, seed: 2})
	ins := append(teamA, teamB...)
	shared, err := RenderShared(ins)
	if err != nil {
		t.Fatal(err)
	}
	judge := func(ns testNS, img string, signed ...byte) (verdict, []string) {
		db := sigDB{}
		for _, s := range signed {
			db.sign(img, keyID(testKey(t, "ci", s, v1alpha1.KeyActive)))
		}
		out := verdict{denyNames: map[string]bool{}, reportNames: map[string]bool{}}
		var judgedBy []string
		for _, u := range shared.Policies {
			engine := v1alpha1.EngineImageValidatingPolicy
			if u.GetKind() == cpKind {
				engine = v1alpha1.EngineClusterPolicy
			}
			pod := testPod{containers: []string{img}}
			if d := evalPolicy(t, engine, u, ns, pod, db); d.matched {
				judgedBy = append(judgedBy, u.GetName())
			}
			v := combine(t, engine, []*unstructured.Unstructured{u}, ns, pod, db)
			out.denied = out.denied || v.denied
			out.reported = out.reported || v.reported
		}
		return out, judgedBy
	}
	if v, _ := judge(staging, teamAImg, 1); v.denied {
		t.Error("team A's signed image denied next to team B of the other engine")
	}
	if v, _ := judge(staging, teamBImg, 2); v.denied {
		t.Error("team B's signed image denied next to team A of the other engine")
	}
	if v, _ := judge(staging, foreignImg); !v.denied {
		t.Error("foreign image admitted")
	}
	if v, by := judge(prod, foreignImg); !v.denied || len(by) != 1 || by[0] != "signet.ivp.enforce" {
		t.Errorf("production (team A only): denied=%v, judged by %v; want denied by signet.ivp.enforce alone", v.denied, by)
	}
}

// TestRestrictionHostDoesNotPin: the Enforce restriction is hosted by the non-pinning
// policy when there is one. The host matches every restricted namespace and its image
// references are namespace-blind, so a pinning host would pin (and so admit) the tags of a
// registry that asked for tags to be denied, wherever an image also has the prefix of a
// pinning registry of another namespace.
func TestRestrictionHostDoesNotPin(t *testing.T) {
	ins := composeInputs(t, v1alpha1.EngineImageValidatingPolicy,
		composeReg{name: "strict", images: []string{"reg.example.com/yourorg/*"}, ns: []string{"production"}, seed: 1},
		composeReg{name: "pins", images: []string{"reg.example.com/yourorg/*"}, ns: []string{"walkthrough"}, mutate: true, seed: 2},
	)
	res, err := RenderShared(ins)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*unstructured.Unstructured{}
	for _, p := range res.Policies {
		byName[p.GetName()] = p
	}
	enforce, pin := byName["signet.ivp.enforce"], byName["signet.ivp.enforce-pin"]
	if enforce == nil || pin == nil {
		t.Fatalf("want signet.ivp.enforce and signet.ivp.enforce-pin, got %d policies", len(res.Policies))
	}
	if enforce.GetAnnotations()[AnnotationRestriction] == "" || pin.GetAnnotations()[AnnotationRestriction] != "" {
		t.Fatalf("restriction hosted by enforce %q, enforce-pin %q; want the non-pinning policy",
			enforce.GetAnnotations()[AnnotationRestriction], pin.GetAnnotations()[AnnotationRestriction])
	}
	sel, _, _ := unstructured.NestedSlice(pin.Object, "spec", "matchConstraints", "namespaceSelector", "matchExpressions")
	if len(sel) != 1 || fmt.Sprint(sel[0].(map[string]any)["values"]) != "[walkthrough]" {
		t.Fatalf("the pinning policy matches namespaces %v; want only its own registry's (walkthrough)", sel)
	}
}
