package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
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
	names := sharedNamespaceMatch(&spec, ss, idx, rs)
	spec.MatchImageReferences = sharedImageMatch(idx)
	spec.Variables = sharedVariables(ss, sets, idx, everyGuards(ss, names))
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
// in the registries list, by name, and its signer set, named by its content. It names
// nothing that changes when another registry joins the policy (no position in the list,
// no count of a set's registries, no set index: a registry with new signers that sorts
// first renumbers the sets): each registry whose branch text changes is reconciled and its
// status written again, so with those, each new registry rewrote the status of every
// registry after it or sharing its key (docs/performance.md).
func (s sharedSets) branchOf(bs []*branch) map[string]string {
	out := make(map[string]string, len(bs))
	for i, b := range bs {
		out[b.s.name] = fmt.Sprintf("registries entry %s (signer set %s)", b.s.name, signerSetID(s.lines[s.of[i]]))
	}
	return out
}

// signerSetID names a signer set by its line (the required count and the attestors, which
// are named after their content): registries with the same signers have the same ID in
// every policy.
func signerSetID(line string) string {
	sum := sha256.Sum256([]byte(line))
	return hex.EncodeToString(sum[:4])
}

// sharedNamespaceMatch makes the policy match the namespaces its registries guard, and
// those the hosted restriction rs (if any) applies in: a namespaceSelector on the names
// when no registry selects namespaces by label, else a match condition. It returns the
// names of the namespaceSelector (nil with a match condition).
func sharedNamespaceMatch(spec *policiesv1.ImageValidatingPolicySpec, ss []*settings, idx registryIndex, rs *restriction) []string {
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
		return names
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
	return nil
}

// everyGuards tells whether every registry guards exactly the namespaces the policy
// matches (names, its namespaceSelector): then every request the policy sees is in a
// namespace all its registries guard, and the per-request lookup of the guarding
// registries (variables.guarded) is left out, a variable and a test Kyverno would
// compile on every request.
func everyGuards(ss []*settings, names []string) bool {
	if len(names) == 0 {
		return false
	}
	for _, s := range ss {
		if s.ns.selector != nil || !slices.Equal(sortedUnique(s.ns.names), names) {
			return false
		}
	}
	return true
}

// sharedImageMatch is the policy's matchImageReferences: every image with the literal
// directory prefix of some registry, a superset of what the patterns match (the
// validations test the regular expressions). It cannot read variables, so the prefixes
// are inlined. Kyverno compiles this twice per request (for the policy and for its
// verifyImageSignatures): up to maxMatchRegexPrefixes prefixes are one regular
// expression (one call, far cheaper for its type checker than a comprehension); more
// are a list scanned with startsWith, since Go compiles a regular expression again on
// each evaluation (~0.5 ms and 250 KB for 300 prefixes, several times per request).
func sharedImageMatch(idx registryIndex) []policiesv1.MatchImageReference {
	if len(idx.byPrefix) == 0 {
		return []policiesv1.MatchImageReference{{Expression: "true"}}
	}
	prefixes := indexKeys(idx.byPrefix)
	if len(prefixes) > maxMatchRegexPrefixes {
		return []policiesv1.MatchImageReference{{
			Expression: "[" + celCanonical("ref") + "].exists(c, " + celString(strings.Join(prefixes, "\n")) + ".split('\\n').exists(p, c.startsWith(p)))",
		}}
	}
	quoted := make([]string, 0, len(prefixes))
	for _, pre := range prefixes {
		quoted = append(quoted, regexp.QuoteMeta(pre))
	}
	return []policiesv1.MatchImageReference{{
		Expression: celCanonical("ref") + ".matches(" + celRawString("^(?:"+strings.Join(quoted, "|")+")") + ")",
	}}
}

// maxMatchRegexPrefixes bounds the prefixes sharedImageMatch writes as one regular
// expression.
const maxMatchRegexPrefixes = 16

// Fields of a line of variables.registries (sharedRegistryLines). A registry has a line
// per literal directory prefix of its patterns (registryPrefixes): an image has at most
// one of them, so it meets each registry at most once.
const (
	regPrefix     = iota // the literal directory prefix
	regID                // ",<i>,": the registry's number, as variables.guarded lists it
	regRE                // regular expression of its patterns, over canonical images
	regDigestTail        // the digest message after the image, '' when digests are not required
	regSigTail           // the signature message after the image
	regSet               // its signers (celSignedBy)
)

// matchedField is the index of a line field in an entry of variables.matched: [raw
// image, the line's fields…].
func matchedField(f int) string { return "m[" + strconv.Itoa(f+1) + "]" }

// sharedRegistryLines are the lines of variables.registries, ordered by prefix, then by
// registry (the order of the messages of an image that several registries check).
func sharedRegistryLines(ss []*settings, sets sharedSets, idx registryIndex) []string {
	var lines []string
	for _, pre := range indexKeys(idx.byPrefix) {
		for _, i := range idx.byPrefix[pre] {
			s := ss[i]
			digestTail := ""
			if s.verifyDig {
				digestTail = " must be referenced by digest (image@sha256:...): TrustedRegistry " + s.name + " requires digests"
			}
			sigTail := " not signed by " + signerQuantifier(s) + " of TrustedRegistry " + s.name + " (" + signerNames(s.signers) + ")"
			fields := []string{pre, "," + strconv.Itoa(i) + ",", s.patterns.re, digestTail, sigTail, sets.field(sets.of[i])}
			lines = append(lines, strings.Join(fields, ";"))
		}
	}
	return lines
}

// sharedVariables are the policy's variables, in evaluation order: the registries' lines,
// the registries guarding the request's namespace, each image's canonical form, the
// (image, registry) pairs to check, then the images that fail the digest and signature
// checks.
func sharedVariables(ss []*settings, sets sharedSets, idx registryIndex, allGuard bool) []admissionregistrationv1.Variable {
	vars, re := sharedRegistryData(sharedRegistryLines(ss, sets, idx))
	vars = append(vars,
		admissionregistrationv1.Variable{Name: ivpVarPodImages, Expression: celPodImages},
		admissionregistrationv1.Variable{Name: ivpVarUnchanged, Expression: celImagesUnchanged(ivpVarPodImages)},
	)
	guard := ""
	if !allGuard {
		vars = append(vars, admissionregistrationv1.Variable{Name: shVarGuarded, Expression: sharedGuarded(ss, idx)})
		guard = celVar(shVarGuarded) + ".contains(l.split(';')[" + strconv.Itoa(regID) + "]) && "
	}
	// [raw image, canonical image] of every image of the Pod, computed once for the
	// branches and the hosted restriction (rs.imagesVar)
	canonical := celVar(ivpVarPodImages) + ".map(i, [string(i), " + celCanonical("string(i)") + "])"
	// [raw image, the line's fields…] per image and registry guarding the namespace whose
	// patterns it matches: a flat list, so that each check is one comprehension
	f := func(i int) string { return "l.split(';')[" + strconv.Itoa(i) + "]" }
	matched := celVar(shVarCanonical) + ".map(p, " + celVar(shVarRegistries) + ".filter(l, p[1].startsWith(" + f(regPrefix) + ") && " +
		guard + "p[1].matches(" + re(f(regRE)) + ")).map(l, [p[0]] + l.split(';'))).flatten()"
	// per failing check, its message: "image(s) <image> <tail>" (joined with "; ")
	undigested := celVar(shVarMatched) + ".filter(m, " + matchedField(regDigestTail) + " != '' && !m[0].contains('@sha256:')).map(m, 'image(s) ' + m[0] + " + matchedField(regDigestTail) + ")"
	unsigned := celVar(shVarMatched) + ".filter(m, !" + celSignedBy("m[0]", matchedField(regSet), sets) + ").map(m, 'image(s) ' + m[0] + " + matchedField(regSigTail) + ")"
	return append(vars,
		admissionregistrationv1.Variable{Name: shVarCanonical, Expression: canonical},
		admissionregistrationv1.Variable{Name: shVarMatched, Expression: matched},
		admissionregistrationv1.Variable{Name: shVarUndigested, Expression: undigested},
		admissionregistrationv1.Variable{Name: shVarUnsigned, Expression: unsigned},
	)
}

// sharedRegistryData returns the variables that make variables.registries from its
// lines, and the CEL expression of a line's regular expression given its field (a CEL
// string). The lines are written as Kyverno's parser reads them fastest, as the
// restriction's are (restrict_lookup.go): raw string literals separated by rsLineSep,
// the tag-and-digest suffix most patterns end with written as rsSuffixMark; lines
// holding either character, a quote or a line break are written as quoted literals.
// Each literal stays under maxDataChars; when one holds them all, it is the only
// variable (each costs Kyverno a compilation of its own per request).
func sharedRegistryData(lines []string) (vars []admissionregistrationv1.Variable, re func(field string) string) {
	sep, quote := rsLineSep, celRawString
	re = func(field string) string {
		return field + ".replace('" + rsSuffixMark + "', " + celRawString(rsSuffix) + ")"
	}
	marked := make([]string, len(lines))
	for i, l := range lines {
		if strings.ContainsAny(l, rsSuffixMark+rsLineSep+"'\n\r") {
			marked, sep, quote = lines, "\n", celString
			re = func(field string) string { return field }
			break
		}
		f := strings.Split(l, ";")
		f[regRE] = strings.ReplaceAll(f[regRE], rsSuffix, rsSuffixMark)
		marked[i] = strings.Join(f, ";")
	}
	split := ".split(" + celString(sep) + ")"
	// a quoted literal may escape characters (celString): room for that
	extra := 1
	if sep != rsLineSep {
		extra = 8
	}
	var chunks [][]string
	size := 0
	for _, l := range marked {
		if len(chunks) == 0 || size+len(l)+extra > maxDataChars {
			chunks, size = append(chunks, nil), 0
		}
		chunks[len(chunks)-1] = append(chunks[len(chunks)-1], l)
		size += len(l) + extra
	}
	if len(chunks) == 1 {
		return []admissionregistrationv1.Variable{{Name: shVarRegistries, Expression: quote(strings.Join(chunks[0], sep)) + split}}, re
	}
	var refs []string
	for i, c := range chunks {
		name := shVarRegistries + "Data" + strconv.Itoa(i)
		vars = append(vars, admissionregistrationv1.Variable{Name: name, Expression: quote(strings.Join(c, sep)) + split})
		refs = append(refs, celVar(name))
	}
	return append(vars, admissionregistrationv1.Variable{Name: shVarRegistries, Expression: strings.Join(refs, " + ")}), re
}

// sharedGuarded is the CEL string of the registries guarding the request's namespace:
// ",<i>,<j>," pieces (membership is a substring test, never a list), one from the
// namespace index "\n<namespace>=,<i>,<j>,\n" (the key appended as a last line without
// registries, so the lookup always finds a line), one per matching label selector.
func sharedGuarded(ss []*settings, idx registryIndex) string {
	var terms []string
	if len(idx.byNamespace) > 0 {
		var b strings.Builder
		b.WriteString("\n")
		for _, ns := range indexKeys(idx.byNamespace) {
			b.WriteString(ns + "=,")
			for _, i := range idx.byNamespace[ns] {
				b.WriteString(strconv.Itoa(i) + ",")
			}
			b.WriteString("\n")
		}
		key := "'\\n' + object.metadata.namespace + '='"
		terms = append(terms, "("+celString(b.String())+" + "+key+" + '\\n').split("+key+", 2)[1].split('\\n', 2)[0]")
	}
	for i, s := range ss {
		if s.ns.selector != nil {
			terms = append(terms, "(("+celSelector(s.ns.selector)+") ? ',"+strconv.Itoa(i)+",' : '')")
		}
	}
	if len(terms) == 0 {
		return "''"
	}
	return strings.Join(terms, " + ")
}

// field is the signers field of a registry line of signer set i: with only sets that
// need one signer, the attestor names of all its signers ("a,b,c": any one verifying
// suffices), else the set's line (sharedSets.lines).
func (s sharedSets) field(i int) string {
	if s.onlyOne() {
		parts := strings.Split(s.lines[i], "|")[1:]
		return strings.Join(parts, ",")
	}
	return s.lines[i]
}

// onlyOne tells whether every set needs one signer.
func (s sharedSets) onlyOne() bool {
	for _, l := range s.lines {
		if !strings.HasPrefix(l, "1|") {
			return false
		}
	}
	return true
}

// celSignedBy is a CEL condition: image img is signed by enough of the signers field
// (a CEL string, sharedSets.field). A signer counts when any of its attestors verifies
// the image; each attestor is verified on its own, so Kyverno caches each success
// (ivpSignerVerified). A set that needs one signer stops at the first that verifies; only
// the forms the policy's sets need are rendered (Kyverno compiles every syntax node on
// every request).
func celSignedBy(img, field string, sets sharedSets) string {
	verify := "verifyImageSignatures(" + img + ", [attestors[a]]) > 0"
	if sets.onlyOne() {
		return field + ".split(',').exists(a, " + verify + ")"
	}
	one := false
	for _, l := range sets.lines {
		if strings.HasPrefix(l, "1|") {
			one = true
		}
	}
	verified := "g != sp[0] && g.split(',').exists(a, " + verify + ")"
	enough := "size(sp.filter(g, " + verified + ")) >= int(sp[0])"
	if one {
		return "cel.bind(sp, " + field + ".split('|'), sp[0] == '1' ? sp.exists(g, " + verified + ") : " + enough + ")"
	}
	return "cel.bind(sp, " + field + ".split('|'), " + enough + ")"
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

// signerQuantifier is how the signature message of the per-registry policy says which
// signers it needed.
func signerQuantifier(s *settings) string {
	if s.required == 1 {
		return "any trusted signer"
	}
	return fmt.Sprintf("at least %d of the %d trusted signers", s.required, len(s.signers))
}
