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
	// CEL parsers refuse expressions over 100,000 characters: split into several
	// references (Kyverno takes an image that any of them matches)
	canon := celCanonical("ref")
	for _, chunk := range chunks(alts, maxExpressionChars) {
		spec.MatchImageReferences = append(spec.MatchImageReferences, policiesv1.MatchImageReference{
			Expression: "[" + canon + "].exists(c, " + strings.Join(chunk, " || ") + ")",
		})
	}

	// Data.
	regs := make([]string, 0, len(bs))
	for i, b := range bs {
		fields := []string{
			"'name': " + celString(b.s.name),
			"'re': " + celRawString(b.s.patterns.re),
			"'restrict': " + celString(strconv.FormatBool(b.s.restrict)),
			"'digest': " + celString(strconv.FormatBool(b.s.verifyDig)),
			"'set': " + celString(strconv.Itoa(setOf[i])),
			"'patterns': " + celString(listForMessage(b.s.patterns.raw, maxPatternsInMessage)),
			"'who': " + celString(signerQuantifier(b.s)),
			"'signers': " + celString(signerNames(b.s.signers)),
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
	// Prefix index: the literal directory prefixes of each registry's patterns ("ghcr.io/
	// org/"), so that an image is only matched against the registries whose prefix it has.
	byPrefix := map[string][]int{}
	depth := 0
	for i, b := range bs {
		for _, pre := range branchPrefixes(b) {
			byPrefix[pre] = append(byPrefix[pre], i)
			depth = max(depth, strings.Count(pre, "/"))
		}
	}
	prefixList := make([]string, 0, len(byPrefix))
	for pre := range byPrefix {
		prefixList = append(prefixList, pre)
	}
	sort.Strings(prefixList)
	var prefixEntries []string
	for _, pre := range prefixList {
		idx := make([]string, 0, len(byPrefix[pre]))
		for _, i := range byPrefix[pre] {
			idx = append(idx, strconv.Itoa(i))
		}
		prefixEntries = append(prefixEntries, celString(pre)+": ["+strings.Join(idx, ", ")+"]")
	}

	v := func(name string) string { return "variables." + name }
	reg := func(r string) string { return v(shVarRegistries) + "[" + r + "]" }
	var guarded []string
	if len(nsNames) > 0 {
		guarded = append(guarded, "(object.metadata.namespace in "+v(shVarNamespaces)+" ? "+v(shVarNamespaces)+"[object.metadata.namespace] : [])")
	}
	guarded = append(guarded, selectorTerms...)

	// candidates: the registries listed under each directory prefix of the canonical image
	// c (split into parts), one map lookup per level.
	var cands []string
	if _, ok := byPrefix[""]; ok {
		cands = append(cands, v(shVarPrefixes)+"['']")
	}
	for d := 1; d <= depth; d++ {
		pre := "parts[0] + '/'"
		for k := 1; k < d; k++ {
			pre += " + parts[" + strconv.Itoa(k) + "] + '/'"
		}
		cands = append(cands, fmt.Sprintf("(size(parts) > %d && (%s) in %s ? %s[%s] : [])", d, pre, v(shVarPrefixes), v(shVarPrefixes), pre))
	}
	if len(cands) == 0 {
		cands = []string{"[]"}
	}
	// [raw image, canonical image, ",<index>,<index>,": the registries whose patterns it matches]
	imageInfo := v(ivpVarPodImages) + ".map(i, cel.bind(c, " + celCanonical("i") + ", cel.bind(parts, c.split('/'), [string(i), string(c), ',' + (" +
		strings.Join(cands, " + ") + ").filter(r, c.matches(" + reg("r") + ".re)).map(r, string(r)).join(',') + ','])))"
	ids := "p[2].split(',').filter(s, s != '').map(s, int(s))"
	signedBy := func(img, set string) string {
		one := v(shVarSets) + "[" + set + "].exists(g, g.exists(a, verifyImageSignatures(" + img + ", [attestors[a]]) > 0))"
		count := "size(" + v(shVarSets) + "[" + set + "].filter(g, g.exists(a, verifyImageSignatures(" + img + ", [attestors[a]]) > 0))) >= " + v(shVarNeeds) + "[" + set + "]"
		return "(" + v(shVarNeeds) + "[" + set + "] == 1 ? " + one + " : " + count + ")"
	}
	var regChunks []admissionregistrationv1.Variable
	registriesVariable := func(regs []string) admissionregistrationv1.Variable {
		parts := chunks(regs, maxExpressionChars)
		if len(parts) == 1 {
			return admissionregistrationv1.Variable{Name: shVarRegistries, Expression: "[" + strings.Join(regs, ", ") + "]"}
		}
		var refs []string
		for i, part := range parts {
			name := shVarRegistries + strconv.Itoa(i)
			regChunks = append(regChunks, admissionregistrationv1.Variable{Name: name, Expression: "[" + strings.Join(part, ", ") + "]"})
			refs = append(refs, v(name))
		}
		return admissionregistrationv1.Variable{Name: shVarRegistries, Expression: strings.Join(refs, " + ")}
	}
	spec.Variables = []admissionregistrationv1.Variable{
		{Name: ivpVarPodImages, Expression: celPodImages},
		{Name: ivpVarUnchanged, Expression: celImagesUnchanged(ivpVarPodImages)},
		registriesVariable(regs),
		{Name: shVarSets, Expression: "[" + strings.Join(sets, ", ") + "]"},
		{Name: shVarNeeds, Expression: "[" + strings.Join(needs, ", ") + "]"},
		{Name: shVarPrefixes, Expression: "{" + strings.Join(prefixEntries, ", ") + "}"},
	}
	spec.Variables = append(regChunks, spec.Variables...)
	if len(nsNames) > 0 {
		spec.Variables = append(spec.Variables, admissionregistrationv1.Variable{Name: shVarNamespaces, Expression: "{" + strings.Join(nsEntries, ", ") + "}"})
	}
	spec.Variables = append(spec.Variables,
		admissionregistrationv1.Variable{Name: shVarGuarded, Expression: strings.Join(guarded, " + ")},
		admissionregistrationv1.Variable{Name: shVarImageInfo, Expression: imageInfo},
		// restriction, per restricting registry of the namespace: [message tail, images
		// outside its patterns...]; no regular expression runs here
		admissionregistrationv1.Variable{Name: shVarDisallowed, Expression: v(shVarGuarded) + ".filter(r, " + reg("r") + ".restrict == 'true').map(r, [' not allowed by TrustedRegistry ' + string(" + reg("r") + ".name) + ': only images matching ' + string(" + reg("r") + ".patterns) + ' may run in this namespace'] + " +
			v(shVarImageInfo) + ".filter(p, !p[2].contains(',' + string(r) + ',')).map(p, p[0])).filter(x, size(x) > 1)"},
		// digest and signatures, per image: [image, message tail of each registry of the
		// namespace whose patterns it matches and whose check fails...]
		admissionregistrationv1.Variable{Name: shVarUndigested, Expression: v(shVarImageInfo) + ".filter(p, !p[0].contains('@sha256:')).map(p, [p[0]] + " + ids +
			".filter(r, r in " + v(shVarGuarded) + " && " + reg("r") + ".digest == 'true').map(r, ' must be referenced by digest (image@sha256:...): TrustedRegistry ' + string(" + reg("r") + ".name) + ' requires digests')).filter(x, size(x) > 1)"},
		admissionregistrationv1.Variable{Name: shVarUnsigned, Expression: v(shVarImageInfo) + ".map(p, [p[0]] + " + ids +
			".filter(r, r in " + v(shVarGuarded) + " && !" + signedBy("p[0]", "int("+reg("r")+".set)") + ").map(r, ' not signed by ' + string(" + reg("r") + ".who) + ' of TrustedRegistry ' + string(" + reg("r") + ".name) + ' (' + string(" + reg("r") + ".signers) + ')')).filter(x, size(x) > 1)"},
	)
	unchanged := v(ivpVarUnchanged) + " || "
	perRegistry := func(list string) string {
		return v(list) + ".map(x, 'image(s) ' + x.filter(i, i != x[0]).join(', ') + x[0]).join('; ')"
	}
	perImage := func(list string) string {
		return v(list) + ".map(x, x.filter(t, t != x[0]).map(t, 'image(s) ' + x[0] + t).join('; ')).join('; ')"
	}
	spec.Validations = []admissionregistrationv1.Validation{
		{
			Expression:        unchanged + "size(" + v(shVarDisallowed) + ") == 0",
			Message:           "image(s) not allowed by the TrustedRegistries that guard this namespace",
			MessageExpression: perRegistry(shVarDisallowed),
		},
		{
			Expression:        unchanged + "size(" + v(shVarUndigested) + ") == 0",
			Message:           "image(s) must be referenced by digest (image@sha256:...)",
			MessageExpression: perImage(shVarUndigested),
		},
		{
			Expression:        unchanged + "size(" + v(shVarUnsigned) + ") == 0",
			Message:           "image(s) not signed by the trusted signers of the TrustedRegistries that guard this namespace",
			MessageExpression: perImage(shVarUnsigned),
		},
	}
	return spec, branchOf
}

// branchPrefixes lists the literal directory prefixes of a registry's patterns, leaving
// out those that extend another one (an image with the longer prefix has the shorter too).
func branchPrefixes(b *branch) []string {
	var all []string
	for _, ip := range b.s.patterns.parsed {
		for _, alt := range ip.alternatives() {
			all = append(all, literalDir(alt))
		}
	}
	all = sortedUnique(all)
	var out []string
	for _, p := range all {
		redundant := false
		for _, q := range out {
			if strings.HasPrefix(p, q) {
				redundant = true
				break
			}
		}
		if !redundant {
			out = append(out, p)
		}
	}
	return out
}

// celNSMapKeys is a CEL map literal with the names as keys, for an O(1) "in" test.
func celNSMapKeys(names []string) string {
	entries := make([]string, 0, len(names))
	for _, n := range names {
		entries = append(entries, celString(n)+": true")
	}
	return "{" + strings.Join(entries, ", ") + "}"
}

// signerQuantifier is how the signature message of the per-registry policy says which
// signers it needed.
func signerQuantifier(s *settings) string {
	if s.required == 1 {
		return "any trusted signer"
	}
	return fmt.Sprintf("at least %d of the %d trusted signers", s.required, len(s.signers))
}

// maxExpressionChars bounds one generated CEL expression: Kubernetes' and Kyverno's CEL
// parsers refuse expressions over 100,000 characters.
const maxExpressionChars = 60_000

// chunks splits items (joined with short separators) into runs of at most budget
// characters; an item longer than budget is a run of its own.
func chunks(items []string, budget int) [][]string {
	var out [][]string
	var cur []string
	size := 0
	for _, it := range items {
		if len(cur) > 0 && size+len(it)+4 > budget {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, it)
		size += len(it) + 4
	}
	if len(cur) > 0 || len(out) == 0 {
		out = append(out, cur)
	}
	return out
}
