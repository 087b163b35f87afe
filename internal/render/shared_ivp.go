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
)

// buildSharedIVP renders the spec of one shared ImageValidatingPolicy (see shared.go) and
// says, per registry, which branch is its.
//
// rs, when not nil, is the registry restriction this policy hosts (RenderShared picks one
// host per restriction): the policy then also matches the namespaces rs applies in, where
// its branches' checks find no registry of theirs and pass.
func buildSharedIVP(k shardKey, bs []*branch, rs *restriction) (policiesv1.ImageValidatingPolicySpec, map[string]string) {
	spec := ivpSkeleton(k.group != "audit", k.group == "enforce-pin")
	sets := sharedSignerSets(bs)
	spec.Attestors = sets.attestors
	ss := make([]*settings, len(bs))
	for i, b := range bs {
		ss[i] = b.s
	}
	// Kyverno reads credentials per policy: the union of the branches' pull Secrets (each
	// one is used only for the registry host its docker config names)
	if cs := credentialSecrets(ss...); len(cs) > 0 {
		spec.Credentials = &policiesv1alpha1.Credentials{Secrets: cs}
	}
	idx := indexRegistries(ss)
	sharedNamespaceMatch(&spec, ss, idx, rs)
	spec.MatchImageReferences = sharedImageMatch(idx)
	spec.Variables = sharedVariables(ss, sets, idx)
	// CEL variables are lazy: for an UPDATE that changes no image, nothing is verified.
	unchanged := celVar(ivpVarUnchanged) + " || "
	if rs != nil {
		// the restriction comes first: it is cheap and needs no registry access
		hosted := *rs
		hosted.imagesVar = shVarCanonical
		spec.Variables = append(spec.Variables, hosted.variables(ivpVarPodImages)...)
		spec.Validations = append(spec.Validations, rs.validation(unchanged))
	}
	spec.Validations = append(spec.Validations, sharedValidations(unchanged)...)
	sharedIVPAddAttestations(bs, &spec)
	return spec, sets.branchOf(bs)
}

// sharedSets are the distinct signer sets of a shared policy's registries and the
// attestors they name. Attestors are named after their content (sharedKeyAttestor,
// sharedKeylessAttestor), so one key trusted by many registries is one attestor.
type sharedSets struct {
	// attestors, sorted by name.
	attestors []policiesv1.Attestor
	// lines are the signer sets, one per line:
	// "<required>|<attestors of signer 1>|<attestors of signer 2>…", each signer's
	// attestors sorted and joined with ',' (a rotating key name has two), the signers
	// sorted (their order does not change what the set accepts).
	lines []string
	// of is the set of each registry.
	of []int
}

func sharedSignerSets(bs []*branch) sharedSets {
	attestors := map[string]policiesv1.Attestor{}
	index := map[string]int{}
	out := sharedSets{of: make([]int, len(bs))}
	for i, b := range bs {
		var signers []string
		for _, sg := range b.s.signers {
			var names []string
			for _, key := range sg.keys {
				a := sharedKeyAttestorFor(b.s, key)
				attestors[a.Name] = a
				names = append(names, a.Name)
			}
			if id := sg.keyless; id != nil {
				a := sharedKeylessAttestorFor(b.s, id)
				attestors[a.Name] = a
				names = append(names, a.Name)
			}
			sort.Strings(names)
			signers = append(signers, strings.Join(names, ","))
		}
		sort.Strings(signers)
		line := strconv.Itoa(b.s.required) + "|" + strings.Join(signers, "|")
		set, ok := index[line]
		if !ok {
			set = len(out.lines)
			index[line] = set
			out.lines = append(out.lines, line)
		}
		out.of[i] = set
	}
	names := make([]string, 0, len(attestors))
	for n := range attestors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out.attestors = append(out.attestors, attestors[n])
	}
	return out
}

// branchOf says, per registry, which branch of the policy is its (for status): its entry
// in the registries list, by name, and its signer set. It names nothing that changes when
// another registry joins the policy (no position in the list, no count of a set's
// registries): each registry whose branch text changes is reconciled and its status
// written again, so with those, each new registry rewrote the status of every registry
// after it or sharing its key (docs/performance.md).
func (s sharedSets) branchOf(bs []*branch) map[string]string {
	out := make(map[string]string, len(bs))
	for i, b := range bs {
		out[b.s.name] = fmt.Sprintf("registries entry %s (signer set %d)", b.s.name, s.of[i])
	}
	return out
}

// sharedNamespaceMatch makes the policy match the namespaces its registries guard, and
// those the hosted restriction rs (if any) applies in: a namespaceSelector on the names
// when no registry selects namespaces by label, else a match condition.
func sharedNamespaceMatch(spec *policiesv1.ImageValidatingPolicySpec, ss []*settings, idx registryIndex, rs *restriction) {
	names := indexKeys(idx.byNamespace)
	anySelector := len(idx.selectorTerms) > 0
	var rsSelectors []*metav1.LabelSelector
	if rs != nil {
		var rsNames []string
		rsNames, rsSelectors = namespaceUnion(rs.appliesTo())
		names = sortedUnique(append(append([]string{}, names...), rsNames...))
		anySelector = anySelector || len(rsSelectors) > 0
	}
	if !anySelector {
		spec.MatchConstraints.NamespaceSelector = namespaceNameSelector(names)
		return
	}
	// No namespaceSelector can say "these names or these labels": a match condition does,
	// so that Pods elsewhere cost Kyverno nothing beyond this test (and no image is
	// fetched for them).
	var terms []string
	if len(names) > 0 {
		terms = append(terms, celString("\n"+strings.Join(names, "\n")+"\n")+".contains('\\n' + object.metadata.namespace + '\\n')")
	}
	for _, s := range ss {
		if s.ns.selector != nil {
			terms = append(terms, "("+celSelector(s.ns.selector)+")")
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

// sharedImageMatch is the policy's matchImageReferences: every image with the literal
// directory prefix of some registry, a superset of what the patterns match (the
// validations test the regular expressions). It cannot read variables, so the prefix
// index is inlined.
func sharedImageMatch(idx registryIndex) []policiesv1.MatchImageReference {
	// Kyverno compiles this twice per request (for the policy and for its
	// verifyImageSignatures), so it scans a list of prefixes rather than look up each level
	match := "true"
	if len(idx.byPrefix) > 0 {
		match = idx.prefixList() + ".split('\\n').exists(p, c.startsWith(p))"
	}
	return []policiesv1.MatchImageReference{{
		Expression: "[" + celCanonical("ref") + "].exists(c, " + match + ")",
	}}
}

// Fields of a line of variables.registries (sharedRegistryLines).
const (
	regName     = iota // registry name
	regRE              // regular expression of its patterns, over canonical images
	regRestrict        // 1 with restrictRegistries (not read: the restriction has data of its own)
	regDigest          // 1 when digests are required
	regSet             // its signer set: a line number of the signer sets (sharedSets.lines)
	regPatterns        // its patterns, the first maxPatternsInMessage (not read by the expressions)
	regSigners         // its signers' names, for messages
	regWho             // "any trusted signer" or "at least N of the M trusted signers"
)

// sharedRegistryLines are the lines of variables.registries, one per registry.
func sharedRegistryLines(ss []*settings, sets sharedSets) []string {
	lines := make([]string, 0, len(ss))
	for i, s := range ss {
		fields := []string{
			s.name, s.patterns.re, boolDigit(s.restrict), boolDigit(s.verifyDig), strconv.Itoa(sets.of[i]),
			listForMessage(s.patterns.raw, maxPatternsInMessage), signerNames(s.signers), signerQuantifier(s),
		}
		lines = append(lines, strings.Join(fields, ";"))
	}
	return lines
}

// sharedVariables are the policy's variables, in evaluation order: the data literals and
// indexes, the registries guarding the request's namespace, each image's candidate
// registries, then the images that fail the digest and signature checks.
func sharedVariables(ss []*settings, sets sharedSets, idx registryIndex) []admissionregistrationv1.Variable {
	vars, registries := dataVariables(shVarRegistries+"Data", sharedRegistryLines(ss, sets))
	vars = append(vars,
		admissionregistrationv1.Variable{Name: ivpVarPodImages, Expression: celPodImages},
		admissionregistrationv1.Variable{Name: ivpVarUnchanged, Expression: celImagesUnchanged(ivpVarPodImages)},
		admissionregistrationv1.Variable{Name: shVarRegistries, Expression: registries},
	)
	if len(idx.byNamespace) > 0 {
		vars = append(vars, admissionregistrationv1.Variable{Name: shVarNamespaces, Expression: idx.namespaceIndex()})
	}
	// [raw image, canonical image] of every image of the Pod, computed once for the
	// branches and the hosted restriction (rs.imagesVar)
	canonical := celVar(ivpVarPodImages) + ".map(i, [string(i), " + celCanonical("string(i)") + "])"
	// [raw image, canonical image, ",<i>,<i>,": the registries guarding the namespace whose
	// patterns it matches], for the images with at least one such registry
	imageInfo := celVar(shVarCanonical) + ".map(p, [string(p[0]), string(p[1]), ',' + (" + idx.candidates("p[1]") + ").filter(r, r in " + celVar(shVarGuarded) +
		" && p[1].matches(" + celField(shVarRegistries, "r", regRE) + ")).map(r, string(r)).join(',') + ',']).filter(p, p[2] != ',,')"
	// per image with a failing check: its message, one sentence per registry of the image
	// whose check fails ("image(s) <image> <tail>", joined with "; ")
	ids := "p[2].substring(1, size(p[2]) - 1).split(',').map(s, int(s))"
	field := func(f int) string { return celField(shVarRegistries, "r", f) }
	undigested := celVar(shVarImageInfo) + ".filter(p, !p[0].contains('@sha256:')).map(p, " + ids +
		".filter(r, " + field(regDigest) + " == '1').map(r, 'image(s) ' + p[0] + ' must be referenced by digest (image@sha256:...): TrustedRegistry ' + " + field(regName) + " + ' requires digests').join('; ')).filter(m, m != '')"
	unsigned := celVar(shVarImageInfo) + ".map(p, " + ids +
		".filter(r, !" + celSignedBySet("p[0]", "int("+field(regSet)+")", sets) + ").map(r, 'image(s) ' + p[0] + ' not signed by ' + " + field(regWho) + " + ' of TrustedRegistry ' + " + field(regName) + " + ' (' + " + field(regSigners) + " + ')').join('; ')).filter(m, m != '')"
	return append(vars,
		admissionregistrationv1.Variable{Name: shVarGuarded, Expression: strings.Join(idx.guarded(shVarNamespaces), " + ")},
		admissionregistrationv1.Variable{Name: shVarCanonical, Expression: canonical},
		admissionregistrationv1.Variable{Name: shVarImageInfo, Expression: imageInfo},
		admissionregistrationv1.Variable{Name: shVarUndigested, Expression: undigested},
		admissionregistrationv1.Variable{Name: shVarUnsigned, Expression: unsigned},
	)
}

// celSignedBySet is a CEL condition: image img is signed by enough signers of signer set
// set (a line number of the signer sets, sharedSets.lines). A signer counts when any of its attestors
// verifies the image; each attestor is verified on its own, so Kyverno caches each
// success (ivpSignerVerified). A set that needs one signer stops at the first that
// verifies; only the forms the policy's sets need are rendered (Kyverno compiles every
// syntax node on every request).
func celSignedBySet(img, set string, sets sharedSets) string {
	one, more := false, false
	for _, l := range sets.lines {
		if strings.HasPrefix(l, "1|") {
			one = true
		} else {
			more = true
		}
	}
	// the sets' literal inline (a variable costs Kyverno a compilation of its own per request)
	parts := celString(strings.Join(sets.lines, "\n")) + ".split('\\n')[" + set + "].split('|')"
	verified := "g != sp[0] && g.split(',').exists(a, verifyImageSignatures(" + img + ", [attestors[a]]) > 0)"
	anyOne := "sp.exists(g, " + verified + ")"
	enough := "size(sp.filter(g, " + verified + ")) >= int(sp[0])"
	switch {
	case one && more:
		return "cel.bind(sp, " + parts + ", sp[0] == '1' ? " + anyOne + " : " + enough + ")"
	case one:
		return "cel.bind(sp, " + parts + ", " + anyOne + ")"
	}
	return "cel.bind(sp, " + parts + ", " + enough + ")"
}

// sharedValidations are the digest and signature checks; unchanged is the CEL condition
// (with a trailing " || ") under which they are skipped.
func sharedValidations(unchanged string) []admissionregistrationv1.Validation {
	perImage := func(list string) string { return celVar(list) + ".join('; ')" }
	return []admissionregistrationv1.Validation{
		{
			Expression:        unchanged + "size(" + celVar(shVarUndigested) + ") == 0",
			Message:           "image(s) must be referenced by digest (image@sha256:...)",
			MessageExpression: perImage(shVarUndigested),
		},
		{
			Expression:        unchanged + "size(" + celVar(shVarUnsigned) + ") == 0",
			Message:           "image(s) not signed by the trusted signers of the TrustedRegistries that guard this namespace",
			MessageExpression: perImage(shVarUnsigned),
		},
	}
}

func boolDigit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// signerQuantifier is how the signature message of the per-registry policy says which
// signers it needed.
func signerQuantifier(s *settings) string {
	if s.required == 1 {
		return "any trusted signer"
	}
	return fmt.Sprintf("at least %d of the %d trusted signers", s.required, len(s.signers))
}
