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
//
// rs, when not nil, is the registry restriction this policy hosts (RenderShared picks one
// host per restriction): the policy then also matches the namespaces rs applies in, where
// its branches' checks find no registry of theirs and pass.
func buildSharedIVP(k shardKey, bs []*branch, rs *restriction) (policiesv1.ImageValidatingPolicySpec, map[string]string) {
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
	var sets []string // "<required>|<attestor>,<attestor>|<attestor>": one signer per '|' part
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
				n := sharedKeylessAttestor(id, b.s.ignoreLog, b.s.sigstore)
				attestors[n] = policiesv1.Attestor{Name: n, Cosign: ivpKeylessCosign(id, b.s.ignoreLog, b.s.sigstore)}
				names = append(names, n)
			}
			sort.Strings(names)
			signers = append(signers, strings.Join(names, ","))
		}
		// the order of signers does not change what the set accepts
		sort.Strings(signers)
		key := strconv.Itoa(b.s.required) + "|" + strings.Join(signers, "|")
		idx, ok := setIndex[key]
		if !ok {
			idx = len(sets)
			setIndex[key] = idx
			sets = append(sets, key)
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
	// Kyverno reads credentials per policy: the union of the branches' pull Secrets (each
	// one is used only for the registry host its docker config names)
	all := make([]*settings, 0, len(bs))
	for _, b := range bs {
		all = append(all, b.s)
	}
	if cs := credentialSecrets(all...); len(cs) > 0 {
		spec.Credentials = &policiesv1alpha1.Credentials{Secrets: cs}
	}
	names := make([]string, 0, len(attestors))
	for n := range attestors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		spec.Attestors = append(spec.Attestors, attestors[n])
	}

	// Data. Kyverno 1.19 compiles the policy again on every admission request, and
	// compiling costs per syntax node: the per-registry data are therefore a few string
	// literals (one node each, whatever their length), split into lists and searched with
	// string functions at evaluation time, never lists or maps of literals.
	//
	//   registryData: one line per registry, fields separated by tabs: name, regular
	//     expression, restrict (0/1), digest (0/1), signer set, patterns and signers for
	//     messages, the quantifier of the signature message;
	//   signerSetData: one line per signer set: "<required>|<attestors of signer 1>|…";
	//   namespaceData and prefixData: "\n<key>=<registry>,<registry>\n…" indexes.
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
	nsNames := indexKeys(byNS)
	matchNames := nsNames
	var rsSelectors []*metav1.LabelSelector
	if rs != nil {
		var rsNames []string
		rsNames, rsSelectors = namespaceUnion(rs.appliesTo())
		matchNames = sortedUnique(append(append([]string{}, nsNames...), rsNames...))
		anySelector = anySelector || len(rsSelectors) > 0
	}
	if !anySelector {
		spec.MatchConstraints.NamespaceSelector = &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: matchNames,
			}},
		}
	} else {
		// No namespaceSelector can say "these names or these labels": a match condition
		// does, so that Pods elsewhere cost Kyverno nothing beyond this test (and no image
		// is fetched for them).
		var terms []string
		if len(matchNames) > 0 {
			terms = append(terms, celString("\n"+strings.Join(matchNames, "\n")+"\n")+".contains('\\n' + object.metadata.namespace + '\\n')")
		}
		for _, b := range bs {
			if b.s.ns.selector != nil {
				terms = append(terms, "("+celSelector(b.s.ns.selector)+")")
			}
		}
		for _, sel := range rsSelectors {
			terms = append(terms, "("+celSelector(sel)+")")
		}
		spec.MatchConditions = []admissionregistrationv1.MatchCondition{{
			Name:       ivpMatchNamespace,
			Expression: strings.Join(sortedUnique(terms), " || "),
		}}
	}

	byPrefix := map[string][]int{}
	depth := 0
	for i, b := range bs {
		for _, pre := range branchPrefixes(b) {
			byPrefix[pre] = append(byPrefix[pre], i)
			depth = max(depth, strings.Count(pre, "/"))
		}
	}
	prefixList := indexKeys(byPrefix)

	var regLines []string
	for i, b := range bs {
		fields := []string{
			b.s.name, b.s.patterns.re, boolDigit(b.s.restrict), boolDigit(b.s.verifyDig), strconv.Itoa(setOf[i]),
			listForMessage(b.s.patterns.raw, maxPatternsInMessage), signerNames(b.s.signers), signerQuantifier(b.s),
		}
		regLines = append(regLines, strings.Join(fields, ";"))
	}

	v := func(name string) string { return "variables." + name }
	field := func(r string, i int) string {
		return "string(" + v(shVarRegistries) + "[" + r + "]).split(';')[" + strconv.Itoa(i) + "]"
	}
	const (
		fName = iota
		fRE
		fRestrict
		fDigest
		fSet
		fPatterns
		fSigners
		fWho
	)
	// lookup returns the registries listed under key in an index variable.
	lookup := func(index, key string) string {
		data := "string(" + v(index) + ")"
		return "(" + data + ".contains('\\n' + " + key + " + '=') ? " + data + ".substring(" + data + ".indexOf('\\n' + " + key + " + '=') + size(" + key + ") + 2).split('\\n')[0].split(',').map(s, int(s)) : [])"
	}
	var guarded []string
	if len(nsNames) > 0 {
		guarded = append(guarded, lookup(shVarNamespaces, "object.metadata.namespace"))
	}
	guarded = append(guarded, selectorTerms...)

	// candidates of the canonical image c (split into parts): the registries listed
	// under each of its directory prefixes, one lookup per level
	var cands, dirs []string
	if _, ok := byPrefix[""]; ok {
		cands = append(cands, lookup(shVarPrefixes, "''"))
	}
	for d := 1; d <= depth; d++ {
		pre := "parts[0] + '/'"
		for k := 1; k < d; k++ {
			pre += " + parts[" + strconv.Itoa(k) + "] + '/'"
		}
		cands = append(cands, fmt.Sprintf("(size(parts) > %d ? %s : [])", d, lookup(shVarPrefixes, "("+pre+")")))
		dirs = append(dirs, fmt.Sprintf("(size(parts) > %d && %s.contains('\\n' + %s + '='))", d, celString(prefixIndex(prefixList, byPrefix)), pre))
	}
	if len(cands) == 0 {
		cands = []string{"[]"}
	}
	// matchImageReferences: every image with the directory prefix of some registry (a
	// superset of what the patterns match; the validations use the exact expressions)
	canon := celCanonical("ref")
	if len(dirs) == 0 {
		dirs = []string{"true"}
	}
	spec.MatchImageReferences = []policiesv1.MatchImageReference{{
		Expression: "[" + canon + "].exists(c, [c.split('/')].exists(parts, " + strings.Join(dirs, " || ") + "))",
	}}

	// [raw image, canonical image, ",<index>,<index>,": the registries whose patterns it matches]
	imageInfo := v(ivpVarPodImages) + ".map(i, cel.bind(c, " + celCanonical("i") + ", cel.bind(parts, c.split('/'), [string(i), string(c), ',' + (" +
		strings.Join(cands, " + ") + ").filter(r, c.matches(" + field("r", fRE) + ")).map(r, string(r)).join(',') + ','])))"
	ids := "p[2].split(',').filter(s, s != '').map(s, int(s))"
	signedBy := func(img, set string) string {
		parts := "string(" + v(shVarSets) + "[" + set + "]).split('|')"
		verified := "g != sp[0] && g.split(',').exists(a, verifyImageSignatures(" + img + ", [attestors[a]]) > 0)"
		return "cel.bind(sp, " + parts + ", sp[0] == '1' ? sp.exists(g, " + verified + ") : size(sp.filter(g, " + verified + ")) >= int(sp[0]))"
	}
	// a CEL expression may not exceed 100,000 characters: the registry lines are split
	// into several variables when needed
	var dataVars []admissionregistrationv1.Variable
	var dataRefs []string
	var chunk []string
	size := 0
	flush := func() {
		name := shVarRegistries + "Data" + strconv.Itoa(len(dataVars))
		dataVars = append(dataVars, admissionregistrationv1.Variable{Name: name, Expression: celString(strings.Join(chunk, "\n"))})
		dataRefs = append(dataRefs, "string("+v(name)+").split('\\n')")
		chunk, size = nil, 0
	}
	for _, l := range regLines {
		if len(chunk) > 0 && size+len(l)+8 > maxDataChars {
			flush()
		}
		chunk = append(chunk, l)
		size += len(l) + 8
	}
	flush()
	registries := admissionregistrationv1.Variable{Name: shVarRegistries, Expression: strings.Join(dataRefs, " + ")}
	spec.Variables = []admissionregistrationv1.Variable{
		{Name: ivpVarPodImages, Expression: celPodImages},
		{Name: ivpVarUnchanged, Expression: celImagesUnchanged(ivpVarPodImages)},
		registries,
		{Name: shVarSets, Expression: celString(strings.Join(sets, "\n")) + ".split('\\n')"},
		{Name: shVarPrefixes, Expression: celString(prefixIndex(prefixList, byPrefix))},
	}
	spec.Variables = append(dataVars, spec.Variables...)
	if len(nsNames) > 0 {
		spec.Variables = append(spec.Variables, admissionregistrationv1.Variable{Name: shVarNamespaces, Expression: celString(prefixIndex(nsNames, byNS))})
	}
	spec.Variables = append(spec.Variables,
		admissionregistrationv1.Variable{Name: shVarGuarded, Expression: strings.Join(guarded, " + ")},
		admissionregistrationv1.Variable{Name: shVarImageInfo, Expression: imageInfo},
		// digest and signatures, per image: [image, message tail of each registry of the
		// namespace whose patterns it matches and whose check fails...]
		admissionregistrationv1.Variable{Name: shVarUndigested, Expression: v(shVarImageInfo) + ".filter(p, !p[0].contains('@sha256:')).map(p, [p[0]] + " + ids +
			".filter(r, r in " + v(shVarGuarded) + " && " + field("r", fDigest) + " == '1').map(r, ' must be referenced by digest (image@sha256:...): TrustedRegistry ' + " + field("r", fName) + " + ' requires digests')).filter(x, size(x) > 1)"},
		admissionregistrationv1.Variable{Name: shVarUnsigned, Expression: v(shVarImageInfo) + ".map(p, [p[0]] + " + ids +
			".filter(r, r in " + v(shVarGuarded) + " && !" + signedBy("p[0]", "int("+field("r", fSet)+")") + ").map(r, ' not signed by ' + " + field("r", fWho) + " + ' of TrustedRegistry ' + " + field("r", fName) + " + ' (' + " + field("r", fSigners) + " + ')')).filter(x, size(x) > 1)"},
	)
	unchanged := v(ivpVarUnchanged) + " || "
	perImage := func(list string) string {
		return v(list) + ".map(x, x.filter(t, t != x[0]).map(t, 'image(s) ' + x[0] + t).join('; ')).join('; ')"
	}
	if rs != nil {
		// the restriction comes first: it is cheap and needs no registry access
		spec.Variables = append(spec.Variables, rs.variables(ivpVarPodImages)...)
		spec.Validations = append(spec.Validations, rs.validation(unchanged))
	}
	spec.Validations = append(spec.Validations, []admissionregistrationv1.Validation{
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
	}...)
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

// maxDataChars bounds one generated data literal: CEL parsers refuse expressions over
// 100,000 characters.
const maxDataChars = 80_000

func boolDigit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func indexKeys(m map[string][]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// prefixIndex encodes an index as "\n<key>=<i>,<i>\n<key>=<i>\n".
func prefixIndex(keys []string, m map[string][]int) string {
	var b strings.Builder
	b.WriteString("\n")
	for _, k := range keys {
		b.WriteString(k)
		b.WriteString("=")
		for j, i := range m[k] {
			if j > 0 {
				b.WriteString(",")
			}
			b.WriteString(strconv.Itoa(i))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// signerQuantifier is how the signature message of the per-registry policy says which
// signers it needed.
func signerQuantifier(s *settings) string {
	if s.required == 1 {
		return "any trusted signer"
	}
	return fmt.Sprintf("at least %d of the %d trusted signers", s.required, len(s.signers))
}
