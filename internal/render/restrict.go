package render

import (
	"sort"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// Registry restriction of several TrustedRegistries (README.md, "Composition").
//
// In a namespace guarded by restricting TrustedRegistries, an image may run if it matches
// the patterns of at least one of them: the allowed images are the UNION of their patterns,
// never the intersection (which would let a second team's registry block the first
// team's images). Audit never loosens Enforce:
//
//   - the Enforce restriction (deny) uses the union of the restricting Enforce registries
//     guarding the namespace;
//   - the Audit restriction (report only) applies where a restricting Audit registry
//     guards the namespace and uses the union of all restricting registries there,
//     Enforce and Audit;
//   - non-restricting registries neither deny images outside their patterns nor widen
//     the allowed set.
//
// Which registries guard the namespace is decided at admission (names and label
// selectors), so the restriction is data plus fixed expressions, like the shared
// ImageValidatingPolicy: one line per restricting registry, a namespace index, a literal
// directory prefix index (so an image is only tested against the regular expressions of
// registries whose prefix it has) and the sorted list of all patterns for the message.
// It uses only core CEL and the strings extension (no cel.bind), so the same expressions
// serve the ImageValidatingPolicy and a ClusterPolicy validate.cel rule.

// restriction is the registry restriction over a set of restricting registries.
type restriction struct {
	// entries are the registries whose patterns make the allowed set (sorted by name):
	// the restricting Enforce registries, or with audit all restricting registries.
	entries []*settings
	// audit: report mode; it applies only where a restricting Audit entry guards.
	audit bool
	// engine, when set, is the engine of the shared policy that evaluates it: it applies
	// only where an entry of that engine guards, so that a namespace guarded only by
	// registries of the other engine is not judged twice (by both engines' policies).
	engine v1alpha1.Engine
	// imagesVar, when set, names a variable of the policy that already holds [raw image,
	// canonical image] of every image of the Pod (the shared ImageValidatingPolicy's), used
	// instead of computing them again.
	imagesVar string
	// respelled turns the check around for the shared ClusterPolicy's host-spelling rule
	// (respelledRestriction): it denies the images that match a guarding entry's patterns
	// with a registry host Kyverno's verifyImages would not select.
	respelled bool
}

// respelledRestriction is the host-spelling check over the given registries (all of one
// action): one rule for all of them, where one rule per registry made Kyverno's policy
// validation of a shared ClusterPolicy take longer than its webhook's 10 s timeout at a
// few hundred registries (README.md, "Performance").
func respelledRestriction(entries []*settings, audit bool) *restriction {
	return &restriction{entries: entries, audit: audit, respelled: true}
}

// forEngine is r evaluated by a shared policy of the engine (nil when r is nil).
func (r *restriction) forEngine(e v1alpha1.Engine) *restriction {
	if r == nil {
		return nil
	}
	c := *r
	c.engine = e
	return &c
}

// counts tells whether entry s makes the restriction apply where it guards.
func (r *restriction) counts(s *settings) bool {
	return (!r.audit || !s.enforce) && (r.engine == "" || s.engine == r.engine)
}

func engineCode(e v1alpha1.Engine) string {
	switch e {
	case v1alpha1.EngineImageValidatingPolicy:
		return "I"
	case v1alpha1.EngineClusterPolicy:
		return "C"
	}
	return "-"
}

// CEL variable names of the restriction.
const (
	rsVarData       = "restrictData"
	rsVarNamespaces = "restrictNamespaces"
	rsVarPatterns   = "restrictPatterns"
	rsVarGuarded    = "restrictGuarded"
	rsVarImages     = "restrictImages"
	rsVarDisallowed = "restrictDisallowed"
	rsVarAllowedPat = "restrictAllowedPatterns"
	rsVarNames      = "restrictNames"
)

// restrictionsOf returns the Enforce and the Audit restriction over the given registries
// (nil when no registry asks for one).
func restrictionsOf(all []*settings) (enforce, audit *restriction) {
	var enf, any []*settings
	hasAudit := false
	for _, s := range all {
		if !s.restrict {
			continue
		}
		any = append(any, s)
		if s.enforce {
			enf = append(enf, s)
		} else {
			hasAudit = true
		}
	}
	byName := func(l []*settings) []*settings {
		sort.Slice(l, func(i, j int) bool { return l[i].name < l[j].name })
		return l
	}
	if len(enf) > 0 {
		enforce = &restriction{entries: byName(enf)}
	}
	if hasAudit {
		audit = &restriction{entries: byName(any), audit: true}
	}
	return enforce, audit
}

// restrictionFor is the restriction a per-registry policy of s evaluates, given the other
// registries (peers): nil when s does not restrict.
func restrictionFor(s *settings, peers []*settings) *restriction {
	if !s.restrict {
		return nil
	}
	all := []*settings{s}
	for _, p := range peers {
		if p.name != s.name {
			all = append(all, p)
		}
	}
	enforce, audit := restrictionsOf(all)
	if s.enforce {
		return enforce
	}
	return audit
}

// appliesTo lists the entries whose namespaces the restriction applies in: every entry of
// the Enforce restriction, the Audit entries of the Audit one (of the engine, if set).
func (r *restriction) appliesTo() []*settings {
	var out []*settings
	for _, s := range r.entries {
		if r.counts(s) {
			out = append(out, s)
		}
	}
	return out
}

// namespaceUnion is the union of the namespaces of the given registries: the names, and
// the distinct selectors.
func namespaceUnion(ss []*settings) (names []string, selectors []*metav1.LabelSelector) {
	seen := map[string]bool{}
	for _, s := range ss {
		names = append(names, s.ns.names...)
		if s.ns.selector != nil {
			k := celSelector(s.ns.selector)
			if !seen[k] {
				seen[k] = true
				selectors = append(selectors, s.ns.selector)
			}
		}
	}
	sort.Slice(selectors, func(i, j int) bool { return celSelector(selectors[i]) < celSelector(selectors[j]) })
	return sortedUnique(names), selectors
}

// Fields of a line of the restriction data (restrictData).
const (
	rsName     = iota // registry name
	rsRE              // regular expression of its patterns, over canonical images
	rsPatterns        // its patterns, separated by ' ', for the message
	rsAction          // E (Enforce) or A (Audit)
	rsEngine          // engineCode of its engine
)

// variables are the CEL variables of the restriction; podImages names the variable that
// lists the Pod's raw images.
func (r *restriction) variables(podImages string) []admissionregistrationv1.Variable {
	var lines, allPatterns []string
	for _, s := range r.entries {
		action := "E"
		if !s.enforce {
			action = "A"
		}
		lines = append(lines, strings.Join([]string{s.name, s.patterns.re, strings.Join(s.patterns.raw, " "), action, engineCode(s.engine)}, ";"))
		allPatterns = append(allPatterns, s.patterns.raw...)
	}
	idx := indexRegistries(r.entries)
	field := func(i string, f int) string { return celField(rsVarData, i, f) }

	if !r.respelled {
		return r.lookupVariables(idx, podImages, lines, allPatterns)
	}
	vars, data := dataVariables(rsVarData, lines)
	vars = append(vars,
		admissionregistrationv1.Variable{Name: rsVarData, Expression: data},
	)
	if len(idx.byNamespace) > 0 {
		vars = append(vars, admissionregistrationv1.Variable{Name: rsVarNamespaces, Expression: idx.namespaceIndex()})
	}
	vars = append(vars, admissionregistrationv1.Variable{Name: rsVarGuarded, Expression: r.guarded(idx)})

	// an image is matched when one of the registries guarding the namespace matches it,
	// testing only those with one of its directory prefixes (idx.candidates)
	matched := "(" + idx.candidates("p[1]") + ").exists(r, r in " + celVar(rsVarGuarded) + " && p[1].matches(" + field("r", rsRE) + "))"
	return append(vars,
		admissionregistrationv1.Variable{Name: rsVarImages, Expression: celVar(podImages) + ".filter(i, string(i).matches(r'" + cpRespelledRE + "')).map(i, [string(i), " + celCanonical("string(i)") + "])"},
		// [raw, canonical] of each respelled image of a guarding registry's patterns
		admissionregistrationv1.Variable{Name: rsVarDisallowed, Expression: "size(" + celVar(rsVarGuarded) + ") == 0 ? [] : " + celVar(rsVarImages) + ".filter(p, " + matched + ")"},
		// for the message only: the guarding registries whose patterns they match
		admissionregistrationv1.Variable{Name: rsVarNames, Expression: celVar(rsVarGuarded) + ".filter(r, " + celVar(rsVarDisallowed) + ".exists(p, p[1].matches(" + field("r", rsRE) + "))).map(r, 'TrustedRegistry ' + " + field("r", rsName) + ")"},
	)
}

// guarded is the CEL list of the entries guarding the request's namespace that make the
// allowed set there: all of them, or none when no entry that counts (the Audit ones of
// the Audit restriction, those of its engine if set) guards it.
func (r *restriction) guarded(idx registryIndex) string {
	terms := idx.guarded(rsVarNamespaces)
	if len(terms) == 0 {
		terms = []string{"[]"}
	}
	expr := strings.Join(terms, " + ")
	var counts []string
	if r.audit {
		counts = append(counts, celField(rsVarData, "x", rsAction)+" == 'A'")
	}
	if r.engine != "" {
		counts = append(counts, celField(rsVarData, "x", rsEngine)+" == '"+engineCode(r.engine)+"'")
	}
	if len(counts) > 0 {
		expr = "[" + expr + "].map(g, g.exists(x, " + strings.Join(counts, " && ") + ") ? g : [])[0]"
	}
	return expr
}

// celBounded joins the first max items of a CEL string list with ", " and says how many
// more there are.
func celBounded(list string, maxItems int) string {
	idx := make([]string, maxItems)
	for i := range idx {
		idx[i] = strconv.Itoa(i)
	}
	return "[" + strings.Join(idx, ", ") + "].filter(k, k < size(" + list + ")).map(k, " + list + "[k]).join(', ') + (size(" + list + ") > " + strconv.Itoa(maxItems) +
		" ? ' and ' + string(size(" + list + ") - " + strconv.Itoa(maxItems) + ") + ' more' : '')"
}

// maxRegistriesInMessage bounds the registries a restriction message names.
const maxRegistriesInMessage = 10

// validation is the restriction's check; unchanged is a CEL condition under which it is
// skipped (an UPDATE that changes no image).
func (r *restriction) validation(unchanged string) admissionregistrationv1.Validation {
	v := celVar
	if r.respelled {
		names := v(rsVarNames)
		return admissionregistrationv1.Validation{
			Expression: unchanged + "size(" + v(rsVarDisallowed) + ") == 0",
			Message:    "image(s) with a registry host in upper case or a zero-padded port: the TrustedRegistries that guard this namespace verify images only with the registry host in lower case and a port without leading zeros",
			MessageExpression: "'image(s) ' + " + v(rsVarDisallowed) + ".map(p, p[0]).join(', ') + ': ' + " + celBounded(names, maxRegistriesInMessage) +
				" + (size(" + names + ") == 1 ? ' verifies its' : ' verify their') + ' images only with the registry host in lower case and a port without leading zeros'",
		}
	}
	return admissionregistrationv1.Validation{
		Expression: unchanged + "size(" + v(rsVarDisallowed) + ") == 0",
		Message:    "image(s) not allowed by the TrustedRegistries that guard this namespace",
		MessageExpression: "'image(s) ' + " + v(rsVarDisallowed) + ".join(', ') + ' not allowed by ' + " + celBounded(v(rsVarNames), maxRegistriesInMessage) +
			" + ': only images matching ' + " + celBounded(v(rsVarAllowedPat), maxPatternsInMessage) + " + ' may run in this namespace'",
	}
}

// resolvePeer resolves what the restriction needs of another registry: action,
// restrictRegistries, patterns and namespaces. A peer that does not resolve is left out,
// which can only narrow the allowed set.
func resolvePeer(tr *v1alpha1.TrustedRegistry) (*settings, bool) {
	if tr == nil || tr.Name == "" {
		return nil, false
	}
	s := &settings{name: tr.Name, enforce: tr.Spec.Action != v1alpha1.ActionAudit, restrict: boolOr(tr.Spec.RestrictRegistries, true)}
	if a := tr.Spec.Action; a != "" && a != v1alpha1.ActionEnforce && a != v1alpha1.ActionAudit {
		return nil, false
	}
	images := make([]string, 0, len(tr.Spec.Images))
	for _, p := range tr.Spec.Images {
		images = append(images, string(p))
	}
	var err error
	if s.patterns, err = newPatternSet(images); err != nil {
		return nil, false
	}
	if s.ns, err = resolveNamespaces(tr.Spec.Namespaces); err != nil {
		return nil, false
	}
	return s, true
}
