package render

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	policiesv1 "github.com/kyverno/api/api/policies.kyverno.io/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// A small model of how Kyverno 1.19 evaluates the two policy kinds for a Pod admission
// (read from pkg/image/verification/evaluator and pkg/engine), driven by the rendered
// objects, so that tests can check what the policies decide rather than how they look.

type testNS struct {
	name   string
	labels map[string]string
}

type testPod struct {
	containers, initContainers, ephemeral []string
}

func (p testPod) object() map[string]any {
	list := func(imgs []string) []any {
		out := []any{}
		for i, img := range imgs {
			out = append(out, map[string]any{"name": fmt.Sprintf("c%d", i), "image": img})
		}
		return out
	}
	spec := map[string]any{"containers": list(p.containers)}
	if len(p.initContainers) > 0 {
		spec["initContainers"] = list(p.initContainers)
	}
	if len(p.ephemeral) > 0 {
		spec["ephemeralContainers"] = list(p.ephemeral)
	}
	return map[string]any{"apiVersion": "v1", "kind": "Pod", "spec": spec}
}

// objectIn is the Pod as the apiserver passes it to admission: with its namespace set.
func (p testPod) objectIn(ns testNS) map[string]any {
	o := p.object()
	o["metadata"] = map[string]any{"name": "p", "namespace": ns.name}
	return o
}

func (p testPod) all() []string {
	return append(append(append([]string{}, p.containers...), p.initContainers...), p.ephemeral...)
}

// decision is what a policy did to an admission request.
type decision struct {
	matched bool   // the policy applies to the request
	pass    bool   // every check passed
	denied  bool   // the request is denied (a failed check in Enforce mode)
	message string // the failure message
	// failures are the failing ClusterPolicy rules (each with its own failureAction)
	failures []ruleFailure
}

type ruleFailure struct {
	rule, message string
	enforce       bool
}

func (d decision) String() string {
	return fmt.Sprintf("matched=%v pass=%v denied=%v message=%q", d.matched, d.pass, d.denied, d.message)
}

func nsObject(ns testNS) map[string]any {
	meta := map[string]any{"name": ns.name}
	if len(ns.labels) > 0 {
		l := map[string]any{}
		for k, v := range ns.labels {
			l[k] = v
		}
		meta["labels"] = l
	}
	return map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": meta}
}

func nsLabels(ns testNS) labels.Set {
	l := labels.Set{"kubernetes.io/metadata.name": ns.name}
	for k, v := range ns.labels {
		l[k] = v
	}
	return l
}

func selectorMatches(t testing.TB, sel *metav1.LabelSelector, ns testNS) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return s.Matches(nsLabels(ns))
}

// evalIVP evaluates a rendered ImageValidatingPolicy for a Pod CREATE.
func evalIVP(t testing.TB, u *unstructured.Unstructured, ns testNS, pod testPod, db sigDB) decision {
	t.Helper()
	var spec policiesv1.ImageValidatingPolicySpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object["spec"].(map[string]any), &spec); err != nil {
		t.Fatal(err)
	}
	calls := &ivpCalls{}
	env, err := ivpEnv(db, calls)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]any{
		"object":          pod.objectIn(ns),
		"oldObject":       nil,
		"request":         map[string]any{"namespace": ns.name, "operation": "CREATE"},
		"namespaceObject": nsObject(ns),
	}
	// the mutating webhook pins matched tags to digests first (Kyverno's MutateDigest
	// writes ImageInfo.String() + "@" + digest)
	mutate := ptr.Deref(spec.ValidationConfigurations.MutateDigest, true)
	// matchConstraints, matchConditions
	if sel := spec.MatchConstraints.NamespaceSelector; sel != nil && !selectorMatches(t, sel, ns) {
		return decision{}
	}
	for _, mc := range spec.MatchConditions {
		p, err := compileCEL(env, mc.Expression)
		if err != nil {
			t.Fatal(err)
		}
		if !p.evalBool(t, vars) {
			return decision{}
		}
	}
	d := decision{matched: true}
	fail := func(msg string) decision {
		d.message = msg
		d.denied = len(spec.ValidationAction) == 1 && string(spec.ValidationAction[0]) == "Deny"
		return d
	}
	// images matching matchImageReferences, by category
	menv, err := matchImageEnv()
	if err != nil {
		t.Fatal(err)
	}
	var refs []*celProgram
	for _, m := range spec.MatchImageReferences {
		if m.Expression == "" {
			t.Fatalf("unexpected glob matchImageReference %q", m.Glob)
		}
		p, err := compileCEL(menv, m.Expression)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, p)
	}
	matches := func(img string) bool {
		for _, p := range refs {
			if p.evalBool(t, map[string]any{"ref": img}) {
				return true
			}
		}
		return false
	}
	if mutate {
		pin := func(list []string) {
			for i, img := range list {
				if matches(img) && !strings.Contains(img, "@") {
					list[i] = kyvernoImageString(img, true) + "@" + digestA
				}
			}
		}
		pod = testPod{containers: append([]string{}, pod.containers...), initContainers: append([]string{}, pod.initContainers...), ephemeral: append([]string{}, pod.ephemeral...)}
		pin(pod.containers)
		pin(pod.initContainers)
		pin(pod.ephemeral)
		vars["object"] = pod.objectIn(ns)
	}
	images := map[string][]string{}
	var matched []string
	for cat, list := range map[string][]string{"containers": pod.containers, "initContainers": pod.initContainers, "ephemeralContainers": pod.ephemeral} {
		images[cat] = []string{}
		for _, img := range list {
			if matches(img) {
				images[cat] = append(images[cat], img)
				matched = append(matched, img)
			}
		}
	}
	if ptr.Deref(spec.ValidationConfigurations.VerifyDigest, true) {
		for _, img := range matched {
			if !strings.Contains(img, "@sha256:") {
				return fail(fmt.Sprintf("image %s does not have a digest", img))
			}
		}
	}
	attestors := map[string]any{}
	for _, a := range spec.Attestors {
		switch {
		case a.Cosign.Key != nil:
			attestors[a.Name] = a.Cosign.Key.Data
		case a.Cosign.Keyless != nil:
			id := a.Cosign.Keyless.Identities[0]
			attestors[a.Name] = keylessIdentity(id.Issuer, id.IssuerRegExp, id.Subject, id.SubjectRegExp)
		}
	}
	vars["images"] = images
	vars["attestors"] = attestors
	vars["attestations"] = attestationNames(spec) // attest_test.go
	variables := map[string]any{}
	vars["variables"] = variables
	for _, v := range spec.Variables {
		p, err := compileCEL(env, v.Expression)
		if err != nil {
			t.Fatal(err)
		}
		out, err := p.eval(vars)
		if err != nil {
			t.Fatal(err)
		}
		variables[v.Name] = out
	}
	for i, v := range spec.Validations {
		p, err := compileCEL(env, v.Expression)
		if err != nil {
			t.Fatal(err)
		}
		if p.evalBool(t, vars) {
			continue
		}
		msg := v.Message
		if v.MessageExpression != "" {
			mp, err := compileCEL(env, v.MessageExpression)
			if err != nil {
				t.Fatal(err)
			}
			out, err := mp.eval(vars)
			if err != nil {
				t.Fatal(err)
			}
			msg = out.Value().(string)
		}
		if msg == "" {
			msg = fmt.Sprintf("CEL expression validation failed at index %d", i)
		}
		return fail(msg)
	}
	// validationConfigurations.required
	if ptr.Deref(spec.ValidationConfigurations.Required, true) {
		for _, img := range matched {
			if !calls.verified[img] {
				return fail(fmt.Sprintf("image %s failed signature or attestation verification", img))
			}
		}
	}
	d.pass = true
	return d
}

// evalClusterPolicy evaluates a rendered ClusterPolicy for a Pod CREATE.
func evalClusterPolicy(t testing.TB, u *unstructured.Unstructured, ns testNS, pod testPod, db sigDB) decision {
	t.Helper()
	var spec cpSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object["spec"].(map[string]any), &spec); err != nil {
		t.Fatal(err)
	}
	env, err := k8sEnv()
	if err != nil {
		t.Fatal(err)
	}
	d := decision{}
	var failures []string
	denied := false
	// verifyImages runs in the mutating webhook, validate rules in the validating one:
	// evaluate verifyImages rules first
	ordered := append([]cpRule{}, spec.Rules...)
	for i := range ordered {
		for j := i + 1; j < len(ordered); j++ {
			if len(ordered[j].VerifyImages) > 0 && len(ordered[i].VerifyImages) == 0 {
				ordered[i], ordered[j] = ordered[j], ordered[i]
			}
		}
	}
	for _, r := range ordered {
		ruleMatched := false
		for _, f := range r.Match.Any {
			if len(f.Resources.Kinds) != 1 || f.Resources.Kinds[0] != "Pod" {
				t.Fatalf("rule %s matches kinds %v", r.Name, f.Resources.Kinds)
			}
			nsOK := true
			if len(f.Resources.Namespaces) > 0 {
				nsOK = false
				for _, n := range f.Resources.Namespaces {
					if n == ns.name {
						nsOK = true
					}
				}
			}
			if f.Resources.NamespaceSelector != nil && !selectorMatches(t, f.Resources.NamespaceSelector, ns) {
				nsOK = false
			}
			if nsOK {
				ruleMatched = true
			}
		}
		if !ruleMatched {
			continue
		}
		d.matched = true
		for _, iv := range r.VerifyImages {
			for _, img := range pod.all() {
				ks := kyvernoImageString(img, true)
				selected := false
				for _, g := range iv.ImageReferences {
					if wildcardMatch(g, ks) {
						selected = true
					}
				}
				if !selected {
					continue
				}
				msg := ""
				if !cpVerifySets(iv.Attestors, img, db) {
					msg = fmt.Sprintf("failed to verify image %s", ks)
				} else if m := cpVerifyAttestations(iv.Attestations, img, db); m != "" { // attest_test.go
					msg = m
				} else if ptr.Deref(iv.VerifyDigest, true) && !ptr.Deref(iv.MutateDigest, true) && !strings.Contains(img, "@") {
					msg = fmt.Sprintf("missing digest for %s", ks)
				}
				if msg != "" {
					failures = append(failures, msg)
					denied = denied || iv.FailureAction == "Enforce"
					d.failures = append(d.failures, ruleFailure{rule: r.Name, message: msg, enforce: iv.FailureAction == "Enforce"})
				}
			}
		}
		if r.Preconditions != nil && !cpPreconditionsHold(t, r.Preconditions, pod) {
			continue
		}
		if v := r.Validate; v != nil && v.CEL != nil {
			vars := map[string]any{"object": pod.objectIn(ns), "oldObject": nil, "request": map[string]any{"namespace": ns.name}, "namespaceObject": nsObject(ns)}
			variables := map[string]any{}
			vars["variables"] = variables
			for _, cv := range v.CEL.Variables {
				p, err := compileCEL(env, cv.Expression)
				if err != nil {
					t.Fatal(err)
				}
				out, err := p.eval(vars)
				if err != nil {
					t.Fatal(err)
				}
				variables[cv.Name] = out
			}
			for _, e := range v.CEL.Expressions {
				p, err := compileCEL(env, e.Expression)
				if err != nil {
					t.Fatal(err)
				}
				if p.evalBool(t, vars) {
					continue
				}
				msg := v.Message
				if e.MessageExpression != "" {
					mp, err := compileCEL(env, e.MessageExpression)
					if err != nil {
						t.Fatal(err)
					}
					out, err := mp.eval(vars)
					if err != nil {
						t.Fatal(err)
					}
					msg = out.Value().(string)
				}
				failures = append(failures, msg)
				denied = denied || v.FailureAction == "Enforce"
				d.failures = append(d.failures, ruleFailure{rule: r.Name, message: msg, enforce: v.FailureAction == "Enforce"})
				break
			}
		}
	}
	if !d.matched {
		return d
	}
	d.pass = len(failures) == 0
	d.denied = denied
	d.message = strings.Join(failures, "; ")
	return d
}

// cpPreconditionsHold evaluates a rule's preconditions. The only one Signet writes is
// cpRespelledPrecondition, whose JMESPath Kyverno evaluates (e2e TestSignetSpellings and
// the Kyverno CLI tests run it for real); here it is its meaning: some image of the Pod
// matches cpRespelledRE.
func cpPreconditionsHold(t testing.TB, c *cpConditions, pod testPod) bool {
	t.Helper()
	want := cpRespelledPrecondition.Any[0]
	if len(c.Any) != 1 || c.Any[0].Key != want.Key || c.Any[0].Operator != want.Operator || fmt.Sprint(c.Any[0].Value) != fmt.Sprint(want.Value) {
		t.Fatalf("preconditions %+v: the simulator knows only cpRespelledPrecondition", c)
	}
	re := regexp.MustCompile(cpRespelledRE)
	for _, img := range pod.all() {
		if re.MatchString(img) {
			return true
		}
	}
	return false
}

// cpVerifySets is Kyverno's verifyAttestors/verifyAttestorSet: every set must pass; a set
// passes when count (default: all) of its entries verify; an entry is a key, a keyless
// identity or a nested set.
func cpVerifySets(sets []cpAttestorSet, img string, db sigDB) bool {
	for _, s := range sets {
		if !cpVerifySet(s, img, db) {
			return false
		}
	}
	return len(sets) > 0
}

func cpVerifySet(s cpAttestorSet, img string, db sigDB) bool {
	need := len(s.Entries)
	if s.Count != nil && *s.Count > 0 {
		need = *s.Count
	}
	n := 0
	for _, e := range s.Entries {
		ok := false
		switch {
		case e.Attestor != nil:
			ok = cpVerifySet(*e.Attestor, img, db)
		case e.Keys != nil:
			if strings.Count(e.Keys.PublicKeys, "BEGIN PUBLIC KEY") != 1 {
				panic("several keys in one publicKeys value are expanded by Kyverno into separate entries")
			}
			ok = db.signed(img, e.Keys.PublicKeys)
		case e.Keyless != nil:
			ok = db.signed(img, keylessIdentity(e.Keyless.Issuer, e.Keyless.IssuerRegExp, e.Keyless.Subject, e.Keyless.SubjectRegExp))
		}
		if ok {
			n++
			if n >= need {
				return true
			}
		}
	}
	return false
}

func evalPolicy(t testing.TB, engine v1alpha1.Engine, u *unstructured.Unstructured, ns testNS, pod testPod, db sigDB) decision {
	if engine == v1alpha1.EngineImageValidatingPolicy {
		return evalIVP(t, u, ns, pod, db)
	}
	return evalClusterPolicy(t, u, ns, pod, db)
}

// keyID and keylessID are the identities the sigDB uses for a key and a keyless identity.
func keyID(k Key) string { return k.PEM }

func keylessID(id v1alpha1.KeylessIdentity) string {
	return keylessIdentity(id.Issuer, id.IssuerRegExp, id.Subject, id.SubjectRegExp)
}
