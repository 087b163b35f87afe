package render

import (
	"sort"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// The registry restriction's lookups (restrict.go): what it evaluates on every admission
// request is a few native string searches in its data literals, however many registries
// there are. Kyverno evaluates a ClusterPolicy's validate.cel messageExpression on every
// request, in a context of its own (Kubernetes' validating admission policy evaluator),
// so the variables it reads are evaluated twice per Pod: comprehensions over all
// registries (a list of the guarding ones, a scan of every directory prefix) cost
// milliseconds per Pod at a few hundred registries (README.md, "Performance").
//
//   - restrictGuarded is a string: the entries guarding the request's namespace as
//     "<F>,<i>,<j>," pieces, F being Y when one of them makes the restriction apply there
//     (restriction.counts), else N; one piece from the namespace index, one per matching
//     label selector. Membership is a substring test, never a list.
//   - an image's candidate entries are found by looking up its directory prefixes (the
//     host, then each further path segment, as far as the deepest literal prefix of an
//     entry's patterns goes) in a prefix index literal "\n<prefix>=<i>,<j>\n…", instead
//     of testing every prefix against the image.

// rsFlag is the F of a piece of restrictGuarded: Y when one of the entries counts.
func (r *restriction) rsFlag(ids []int) string {
	for _, i := range ids {
		if r.counts(r.entries[i]) {
			return "Y"
		}
	}
	return "N"
}

// rsPiece is a piece of restrictGuarded: "<F>,<i>,<j>,".
func (r *restriction) rsPiece(ids []int) string {
	var b strings.Builder
	b.WriteString(r.rsFlag(ids))
	b.WriteString(",")
	for _, i := range ids {
		b.WriteString(strconv.Itoa(i))
		b.WriteString(",")
	}
	return b.String()
}

// guardedPieces is the CEL string expression of restrictGuarded.
func (r *restriction) guardedPieces(x registryIndex) string {
	var terms []string
	if len(x.byNamespace) > 0 {
		// "\n<namespace>=<piece>\n" per named namespace
		var b strings.Builder
		b.WriteString("\n")
		for _, ns := range indexKeys(x.byNamespace) {
			b.WriteString(ns + "=" + r.rsPiece(x.byNamespace[ns]) + "\n")
		}
		// the line's piece, or '' (the key appended as a last line without ids)
		key := "'\\n' + object.metadata.namespace + '='"
		terms = append(terms, "("+celString(b.String())+" + "+key+" + '\\n').split("+key+", 2)[1].split('\\n', 2)[0]")
	}
	for i, s := range r.entries {
		if s.ns.selector != nil {
			terms = append(terms, "(("+celSelector(s.ns.selector)+") ? "+celString(r.rsPiece([]int{i}))+" : '')")
		}
	}
	if len(terms) == 0 {
		return "''"
	}
	return strings.Join(terms, " + ")
}

// matchedBy is a CEL condition: the canonical image img (a CEL string) matches the
// patterns of an entry listed in guarded (a CEL string, restrictGuarded).
func (r *restriction) matchedBy(x registryIndex, img, guarded string, re func(i string) string) string {
	var always []string // entries with a pattern without a literal directory: every image is a candidate
	levels := map[int]bool{}
	var b strings.Builder
	b.WriteString("\n")
	for _, pre := range indexKeys(x.byPrefix) {
		ids := make([]string, 0, len(x.byPrefix[pre]))
		for _, i := range x.byPrefix[pre] {
			ids = append(ids, strconv.Itoa(i))
		}
		if pre == "" {
			always = append(always, ids...)
			continue
		}
		levels[strings.Count(pre, "/")] = true
		b.WriteString(pre + "=" + strings.Join(ids, ",") + "\n")
	}
	// one lookup per level: [<before>, <after>] when the image's prefix of that level is
	// in the index, else [<index>]
	var lookups []string
	if len(levels) > 0 {
		ls := make([]int, 0, len(levels))
		for l := range levels {
			ls = append(ls, l)
		}
		sort.Ints(ls)
		index := celString(b.String())
		for _, l := range ls {
			// the image up to its l-th '/', or '' (which no line of the index has)
			re := "^[^/]*/"
			if l > 1 {
				re = "^(?:[^/]*/){" + strconv.Itoa(l) + "}"
			}
			lookups = append(lookups, index+".split('\\n' + "+img+".find(r'"+re+"') + '=', 2)")
		}
	}
	if len(always) > 0 {
		lookups = append(lookups, celStringList([]string{"", strings.Join(always, ",")}))
	}
	if len(lookups) == 0 {
		return "false"
	}
	return "[" + strings.Join(lookups, ", ") + "].exists(s, size(s) == 2 && s[1].split('\\n', 2)[0].split(',').exists(r, " + guarded + ".contains(',' + r + ',') && " +
		img + ".matches(" + re("int(r)") + ")))"
}

// The data lines as Kyverno's parser reads them fastest: the longest literals of the
// rule, so their length is most of what grows with the number of registries in its
// per-request compile. The tag-and-digest suffix every pattern without a tag or digest
// has is written as rsSuffixMark, and the lines are separated by rsLineSep in raw string
// literals (no escape processing); data holding either character, a quote or a line
// break (image patterns cannot: parsePattern) is written as other data literals are.
const (
	rsSuffixMark = "%"
	rsLineSep    = "#"
)

var rsSuffix = `(?::` + tagRE + `)?(?:@` + digestRE + `)?`

// lookupData returns the data variables (rsVarData and its chunks) and the CEL
// expression of an entry's regular expression, given the CEL int expression of its line.
func lookupData(lines []string) (vars []admissionregistrationv1.Variable, re func(i string) string) {
	plain := func(i string) string { return celField(rsVarData, i, rsRE) }
	for _, l := range lines {
		if strings.ContainsAny(l, rsSuffixMark+rsLineSep+"'\n\r") {
			vars, data := dataVariables(rsVarData, lines)
			return append(vars, admissionregistrationv1.Variable{Name: rsVarData, Expression: data}), plain
		}
	}
	var refs, chunk []string
	size := 0
	flush := func() {
		name := rsVarData + strconv.Itoa(len(vars))
		vars = append(vars, admissionregistrationv1.Variable{Name: name, Expression: celRawString(strings.Join(chunk, rsLineSep))})
		refs = append(refs, "string("+celVar(name)+").split('"+rsLineSep+"')")
		chunk, size = nil, 0
	}
	for _, l := range lines {
		l = strings.ReplaceAll(l, rsSuffix, rsSuffixMark)
		if len(chunk) > 0 && size+len(l)+1 > maxDataChars {
			flush()
		}
		chunk = append(chunk, l)
		size += len(l) + 1
	}
	flush()
	vars = append(vars, admissionregistrationv1.Variable{Name: rsVarData, Expression: strings.Join(refs, " + ")})
	return vars, func(i string) string {
		return plain(i) + ".replace('" + rsSuffixMark + "', " + celRawString(rsSuffix) + ")"
	}
}

// lookupVariables are the restriction's variables (restrict.go), given its data lines.
func (r *restriction) lookupVariables(x registryIndex, podImages string, lines, allPatterns []string) []admissionregistrationv1.Variable {
	vars, re := lookupData(lines)
	guarded := celVar(rsVarGuarded)
	vars = append(vars, admissionregistrationv1.Variable{Name: rsVarGuarded, Expression: r.guardedPieces(x)})
	images := rsVarImages
	if r.imagesVar != "" {
		images = r.imagesVar
	} else {
		// [raw image, canonical image] of every image of the Pod
		vars = append(vars, admissionregistrationv1.Variable{Name: rsVarImages, Expression: celVar(podImages) + ".map(i, [string(i), " + celCanonical("string(i)") + "])"})
	}
	// for the messages only (evaluated on failure): the guarding entries as a list
	list := guarded + ".split(',').filter(i, !(i in ['', 'Y', 'N']))"
	field := func(i string, f int) string { return celField(rsVarData, i, f) }
	names := list
	if r.audit {
		names += ".filter(r, " + field("int(r)", rsAction) + " == 'A')"
	}
	return append(vars,
		admissionregistrationv1.Variable{Name: rsVarDisallowed, Expression: "!" + guarded + ".contains('Y') ? [] : " + celVar(images) + ".filter(p, !" + r.matchedBy(x, "p[1]", guarded, re) + ").map(p, p[0])"},
		// the patterns allowed here, in sorted order without repeats, and the registries
		// that allow them
		admissionregistrationv1.Variable{Name: rsVarPatterns, Expression: celString(strings.Join(sortedUnique(allPatterns), "\n")) + ".split('\\n')"},
		admissionregistrationv1.Variable{Name: rsVarAllowedPat, Expression: "[' ' + " + list + ".map(r, " + field("int(r)", rsPatterns) + ").join(' ') + ' '].map(all, " + celVar(rsVarPatterns) + ".filter(p, all.contains(' ' + p + ' ')))[0]"},
		admissionregistrationv1.Variable{Name: rsVarNames, Expression: names + ".map(r, 'TrustedRegistry ' + " + field("int(r)", rsName) + ")"},
	)
}
