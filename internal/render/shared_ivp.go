package render

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	policiesv1 "github.com/kyverno/api/api/policies.kyverno.io/v1"
	policiesv1alpha1 "github.com/kyverno/api/api/policies.kyverno.io/v1alpha1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// buildSharedIVP renders the spec of one shared ImageValidatingPolicy (see shared.go) and
// says, per registry, which branch is its.
func buildSharedIVP(k shardKey, bs []*branch) (policiesv1.ImageValidatingPolicySpec, map[string]string) {
	spec := policiesv1.ImageValidatingPolicySpec{
		FailurePolicy: ptr.To(admissionregistrationv1.Fail),
		MatchConstraints: &admissionregistrationv1.MatchResources{
			ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule: admissionregistrationv1.Rule{
						APIGroups:   []string{""},
						APIVersions: []string{"v1"},
						Resources:   []string{"pods", "pods/ephemeralcontainers"},
					},
				},
			}},
		},
		ValidationConfigurations: policiesv1alpha1.ValidationConfiguration{
			VerifyDigest: ptr.To(false),
			MutateDigest: ptr.To(k.group == "enforce-pin"),
			Required:     ptr.To(false),
		},
		EvaluationConfiguration: &policiesv1.EvaluationConfiguration{
			Background: &policiesv1.BackgroundConfiguration{Enabled: ptr.To(true)},
		},
	}
	if k.group == "audit" {
		spec.ValidationAction = []admissionregistrationv1.ValidationAction{admissionregistrationv1.Audit}
	} else {
		spec.ValidationAction = []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}
	}

	// Attestors and signer sets, deduplicated by content.
	attestors := map[string]policiesv1.Attestor{}
	setIndex := map[string]int{}
	var sets []string // CEL literal of each set
	var needs []string
	branchOf := map[string]string{}
	setOf := make([]int, len(bs))
	setUsers := map[int]int{}
	for i, b := range bs {
		var ctlog *policiesv1.CTLog
		if b.s.ignoreLog {
			ctlog = &policiesv1.CTLog{InsecureIgnoreTlog: true, InsecureIgnoreSCT: true}
		}
		var signers []string
		for _, sg := range b.s.signers {
			var names []string
			for _, key := range sg.keys {
				n := sharedKeyAttestor(key.fingerprint, b.s.ignoreLog)
				attestors[n] = policiesv1.Attestor{Name: n, Cosign: &policiesv1.Cosign{Key: &policiesv1.Key{Data: key.pem}, CTLog: ctlog.DeepCopy()}}
				names = append(names, n)
			}
			if id := sg.keyless; id != nil {
				n := sharedKeylessAttestor(id, b.s.ignoreLog)
				attestors[n] = policiesv1.Attestor{Name: n, Cosign: &policiesv1.Cosign{
					Keyless: &policiesv1.Keyless{Identities: []policiesv1.Identity{{
						Issuer: id.Issuer, IssuerRegExp: id.IssuerRegExp, Subject: id.Subject, SubjectRegExp: id.SubjectRegExp,
					}}},
					CTLog: ctlog.DeepCopy(),
				}}
				names = append(names, n)
			}
			sort.Strings(names)
			signers = append(signers, celStringList(names))
		}
		// the order of signers does not change what the set accepts
		sort.Strings(signers)
		lit := "[" + strings.Join(signers, ", ") + "]"
		key := lit + "/" + strconv.Itoa(b.s.required)
		idx, ok := setIndex[key]
		if !ok {
			idx = len(sets)
			setIndex[key] = idx
			sets = append(sets, lit)
			needs = append(needs, strconv.Itoa(b.s.required))
		}
		setOf[i] = idx
		setUsers[idx]++
	}
	for i, b := range bs {
		n := setUsers[setOf[i]]
		shared := "its own"
		if n > 1 {
			shared = fmt.Sprintf("shared with %d other registries", n-1)
			if n == 2 {
				shared = "shared with 1 other registry"
			}
		}
		branchOf[b.s.name] = fmt.Sprintf("registries[%d] (signer set %d, %s)", i, setOf[i], shared)
	}
	names := make([]string, 0, len(attestors))
	for n := range attestors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		spec.Attestors = append(spec.Attestors, attestors[n])
	}

	// Namespaces: a map from name to branches, and per-branch selector tests.
	byNS := map[string][]int{}
	var selectorTerms []string
	anySelector := false
	for i, b := range bs {
		for _, n := range b.s.ns.names {
			byNS[n] = append(byNS[n], i)
		}
		if b.s.ns.selector != nil {
			anySelector = true
			selectorTerms = append(selectorTerms, fmt.Sprintf("((%s) ? [%d] : [])", celSelector(b.s.ns.selector), i))
		}
	}
	nsNames := make([]string, 0, len(byNS))
	for n := range byNS {
		nsNames = append(nsNames, n)
	}
	sort.Strings(nsNames)
	if !anySelector {
		spec.MatchConstraints.NamespaceSelector = &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: nsNames,
			}},
		}
	} else {
		// No namespaceSelector can say "these names or these labels": a match condition
		// does, so that Pods elsewhere cost Kyverno nothing beyond this test (and no image
		// is fetched for them).
		var terms []string
		if len(nsNames) > 0 {
			terms = append(terms, "object.metadata.namespace in "+celNSMapKeys(nsNames))
		}
		for _, b := range bs {
			if b.s.ns.selector != nil {
				terms = append(terms, "("+celSelector(b.s.ns.selector)+")")
			}
		}
		spec.MatchConditions = []admissionregistrationv1.MatchCondition{{
			Name:       ivpMatchNamespace,
			Expression: strings.Join(sortedUnique(terms), " || "),
		}}
	}

	// matchImageReferences: the union of all patterns, grouped by literal prefix.
	prefixes, groups := prefixGroups(bs)
	var alts []string
	for _, p := range prefixes {
		re := celRawString(`^(?:` + strings.Join(groups[p], `|`) + `)$`)
		if p == "" {
			alts = append(alts, "c.matches("+re+")")
			continue
		}
		alts = append(alts, "(c.startsWith("+celString(p)+") && c.matches("+re+"))")
	}
	canon := celCanonical("ref")
	spec.MatchImageReferences = []policiesv1.MatchImageReference{{
		Expression: "[" + canon + "].exists(c, " + strings.Join(alts, " || ") + ")",
	}}

	// Data.
	regs := make([]string, 0, len(bs))
	for i, b := range bs {
		fields := []string{
			"'name': " + celString(b.s.name),
			"'re': " + celRawString(b.s.patterns.re),
			"'restrict': " + celString(strconv.FormatBool(b.s.restrict)),
			"'digest': " + celString(strconv.FormatBool(b.s.verifyDig)),
			"'set': " + celString(strconv.Itoa(setOf[i])),
			"'allowTail': " + celString(restrictionTail(b.s)),
			"'digestTail': " + celString(digestTail(b.s)),
			"'signTail': " + celString(signatureTail(b.s)),
		}
		regs = append(regs, "{"+strings.Join(fields, ", ")+"}")
	}
	nsEntries := make([]string, 0, len(nsNames))
	for _, n := range nsNames {
		idx := make([]string, 0, len(byNS[n]))
		for _, i := range byNS[n] {
			idx = append(idx, strconv.Itoa(i))
		}
		nsEntries = append(nsEntries, celString(n)+": ["+strings.Join(idx, ", ")+"]")
	}
	v := func(name string) string { return "variables." + name }
	reg := v(shVarRegistries) + "[r]"
	var guarded []string
	if len(nsNames) > 0 {
		guarded = append(guarded, "(object.metadata.namespace in "+v(shVarNamespaces)+" ? "+v(shVarNamespaces)+"[object.metadata.namespace] : [])")
	}
	guarded = append(guarded, selectorTerms...)
	signedBy := func(img, set string) string {
		one := v(shVarSets) + "[" + set + "].exists(g, g.exists(a, verifyImageSignatures(" + img + ", [attestors[a]]) > 0))"
		count := "size(" + v(shVarSets) + "[" + set + "].filter(g, g.exists(a, verifyImageSignatures(" + img + ", [attestors[a]]) > 0))) >= " + v(shVarNeeds) + "[" + set + "]"
		return "(" + v(shVarNeeds) + "[" + set + "] == 1 ? " + one + " : " + count + ")"
	}
	set := "int(" + reg + ".set)"
	failing := func(branches, tail, bad string) string {
		return branches + ".map(r, [string(" + reg + "." + tail + ")] + " + v(shVarCanonical) + ".filter(p, " + bad + ").map(p, p[0])).filter(x, size(x) > 1)"
	}
	inReg := "p[1].matches(" + reg + ".re)"
	spec.Variables = []admissionregistrationv1.Variable{
		{Name: ivpVarPodImages, Expression: celPodImages},
		{Name: ivpVarUnchanged, Expression: celImagesUnchanged(ivpVarPodImages)},
		{Name: shVarRegistries, Expression: "[" + strings.Join(regs, ", ") + "]"},
		{Name: shVarSets, Expression: "[" + strings.Join(sets, ", ") + "]"},
		{Name: shVarNeeds, Expression: "[" + strings.Join(needs, ", ") + "]"},
	}
	if len(nsNames) > 0 {
		spec.Variables = append(spec.Variables, admissionregistrationv1.Variable{Name: shVarNamespaces, Expression: "{" + strings.Join(nsEntries, ", ") + "}"})
	}
	spec.Variables = append(spec.Variables,
		admissionregistrationv1.Variable{Name: shVarGuarded, Expression: strings.Join(guarded, " + ")},
		// [raw, canonical] per image, so each image is canonicalised once
		admissionregistrationv1.Variable{Name: shVarCanonical, Expression: v(ivpVarPodImages) + ".map(i, [i, " + celCanonical("i") + "])"},
		// each check is a list of [message tail, offending images...] per failing branch:
		// variables are evaluated once, so a denial does not verify twice for its message
		admissionregistrationv1.Variable{Name: shVarDisallowed, Expression: failing(v(shVarGuarded)+".filter(r, "+reg+".restrict == 'true')", "allowTail", "!"+inReg)},
		admissionregistrationv1.Variable{Name: shVarUndigested, Expression: failing(v(shVarGuarded)+".filter(r, "+reg+".digest == 'true')", "digestTail", inReg+" && !p[0].contains('@sha256:')")},
		admissionregistrationv1.Variable{Name: shVarUnsigned, Expression: failing(v(shVarGuarded), "signTail", inReg+" && !"+signedBy("p[0]", set))},
	)
	unchanged := v(ivpVarUnchanged) + " || "
	message := func(list string) string {
		return v(list) + ".map(x, 'image(s) ' + x.filter(i, i != x[0]).join(', ') + x[0]).join('; ')"
	}
	spec.Validations = []admissionregistrationv1.Validation{
		{
			Expression:        unchanged + "size(" + v(shVarDisallowed) + ") == 0",
			Message:           "image(s) not allowed by the TrustedRegistries that guard this namespace",
			MessageExpression: message(shVarDisallowed),
		},
		{
			Expression:        unchanged + "size(" + v(shVarUndigested) + ") == 0",
			Message:           "image(s) must be referenced by digest (image@sha256:...)",
			MessageExpression: message(shVarUndigested),
		},
		{
			Expression:        unchanged + "size(" + v(shVarUnsigned) + ") == 0",
			Message:           "image(s) not signed by the trusted signers of the TrustedRegistries that guard this namespace",
			MessageExpression: message(shVarUnsigned),
		},
	}
	return spec, branchOf
}

// celNSMapKeys is a CEL map literal with the names as keys, for an O(1) "in" test.
func celNSMapKeys(names []string) string {
	entries := make([]string, 0, len(names))
	for _, n := range names {
		entries = append(entries, celString(n)+": true")
	}
	return "{" + strings.Join(entries, ", ") + "}"
}

// The message tails of the per-registry policies, for the shared policy's data.
func restrictionTail(s *settings) string {
	return fmt.Sprintf(" not allowed by TrustedRegistry %s: only images matching %s may run in this namespace",
		s.name, listForMessage(s.patterns.raw, maxPatternsInMessage))
}

func digestTail(s *settings) string {
	return fmt.Sprintf(" must be referenced by digest (image@sha256:...): TrustedRegistry %s requires digests", s.name)
}

func signatureTail(s *settings) string {
	if s.required == 1 {
		return fmt.Sprintf(" not signed by any trusted signer of TrustedRegistry %s (%s)", s.name, signerNames(s.signers))
	}
	return fmt.Sprintf(" not signed by at least %d of the %d trusted signers of TrustedRegistry %s (%s)",
		s.required, len(s.signers), s.name, signerNames(s.signers))
}
