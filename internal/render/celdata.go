package render

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// Data plus fixed expressions: the shared ImageValidatingPolicy (shared_ivp.go) and the
// registry restriction (restrict.go) hold their per-registry data as a few CEL string
// literals, searched with string functions at evaluation time. Kyverno 1.19 compiles a
// policy again on every admission request and compiling costs per syntax node, so one
// literal (one node, whatever its length) is far cheaper than a list or map of literals
// (shared.go). These are the pieces both use:
//
//   - a data list: one line per registry, its fields separated by ';' (celField), split
//     over several variables when it would exceed the CEL expression size limit
//     (dataVariables);
//   - an index "\n<key>=<i>,<i>\n…" from a namespace name to the registries' line numbers
//     (encodeIndex, celIndexLookup), and a list of the registries' literal directory
//     prefixes (prefixIndex, candidates).

// maxDataChars bounds one generated data literal: CEL parsers refuse expressions over
// 100,000 characters.
const maxDataChars = 80_000

// celVar is the CEL reference to the policy variable name.
func celVar(name string) string { return "variables." + name }

// celField is field f of line i (a CEL int expression) of the data list variable list.
func celField(list, i string, f int) string {
	return "string(" + celVar(list) + "[" + i + "]).split(';')[" + strconv.Itoa(f) + "]"
}

// celIndexLookup is the CEL list of the line numbers listed under key (a CEL string
// expression) in the index variable index, [] when key is not there.
func celIndexLookup(index, key string) string {
	data := "string(" + celVar(index) + ")"
	return "(" + data + ".contains('\\n' + " + key + " + '=') ? " + data + ".substring(" + data + ".indexOf('\\n' + " + key + " + '=') + size(" + key + ") + 2).split('\\n')[0].split(',').map(s, int(s)) : [])"
}

// dataVariables splits lines into string literals <prefix>0, <prefix>1, … each under
// maxDataChars, and returns them with the CEL expression that joins them into one list.
func dataVariables(prefix string, lines []string) (vars []admissionregistrationv1.Variable, list string) {
	var refs, chunk []string
	size := 0
	flush := func() {
		name := prefix + strconv.Itoa(len(vars))
		vars = append(vars, admissionregistrationv1.Variable{Name: name, Expression: celString(strings.Join(chunk, "\n"))})
		refs = append(refs, "string("+celVar(name)+").split('\\n')")
		chunk, size = nil, 0
	}
	for _, l := range lines {
		if len(chunk) > 0 && size+len(l)+8 > maxDataChars {
			flush()
		}
		chunk = append(chunk, l)
		size += len(l) + 8
	}
	flush()
	return vars, strings.Join(refs, " + ")
}

// encodeIndex encodes an index as "\n<key>=<i>,<i>\n<key>=<i>\n" (keys in the given order).
func encodeIndex(keys []string, m map[string][]int) string {
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

// indexKeys returns the keys of an index, sorted.
func indexKeys(m map[string][]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// registryIndex says, for registries numbered by their line in a data list, which guard
// which namespaces and which have which literal directory prefixes.
type registryIndex struct {
	// byNamespace lists the registries naming each namespace.
	byNamespace map[string][]int
	// selectorTerms are CEL lists, one per registry with a label selector: [i] when the
	// request's namespace matches it, else [].
	selectorTerms []string
	// byPrefix lists the registries with each literal directory prefix (registryPrefixes).
	byPrefix map[string][]int
}

func indexRegistries(ss []*settings) registryIndex {
	x := registryIndex{byNamespace: map[string][]int{}, byPrefix: map[string][]int{}}
	for i, s := range ss {
		for _, n := range s.ns.names {
			x.byNamespace[n] = append(x.byNamespace[n], i)
		}
		if s.ns.selector != nil {
			x.selectorTerms = append(x.selectorTerms, fmt.Sprintf("((%s) ? [%d] : [])", celSelector(s.ns.selector), i))
		}
		for _, pre := range registryPrefixes(s) {
			x.byPrefix[pre] = append(x.byPrefix[pre], i)
		}
	}
	return x
}

// namespaceIndex is the value of the namespace index variable.
func (x registryIndex) namespaceIndex() string {
	return celString(encodeIndex(indexKeys(x.byNamespace), x.byNamespace))
}

// prefixIndex is the prefix index as a CEL string literal: one line "<i>=<prefix>" per
// registry i and literal directory prefix of its patterns, sorted by prefix. It is
// scanned whole (candidates), which costs Kyverno's compiler one comprehension however
// many registries there are, where a lookup per directory level cost several operators
// per level on every request.
func (x registryIndex) prefixIndex() string {
	var lines []string
	for _, pre := range indexKeys(x.byPrefix) {
		for _, i := range x.byPrefix[pre] {
			lines = append(lines, strconv.Itoa(i)+"="+pre)
		}
	}
	return celString(strings.Join(lines, "\n"))
}

// guarded lists CEL lists whose concatenation is the registries guarding the request's
// namespace: the lookup in the namespace index variable nsVar (when any registry names
// namespaces), then the selector terms.
func (x registryIndex) guarded(nsVar string) []string {
	var terms []string
	if len(x.byNamespace) > 0 {
		terms = append(terms, celIndexLookup(nsVar, "object.metadata.namespace"))
	}
	return append(terms, x.selectorTerms...)
}

// candidates is a CEL list of the registries that may match the canonical image img (a
// CEL string): those with a literal directory prefix of img in the prefix index; a superset of the registries whose patterns match, which the caller tests
// with their regular expressions (so that an image costs one regular expression per
// registry it may belong to, not one per registry).
func (x registryIndex) candidates(img string) string {
	if len(x.byPrefix) == 0 {
		return "[]"
	}
	// the literal inline, not in a variable of its own: each variable costs Kyverno a
	// compilation of its own on every request
	return x.prefixIndex() + ".split('\\n').filter(l, " + img + ".startsWith(l.substring(l.indexOf('=') + 1))).map(l, int(l.substring(0, l.indexOf('='))))"
}

// registryPrefixes lists the literal directory prefixes of a registry's patterns, leaving
// out those that extend another one (an image with the longer prefix has the shorter too).
func registryPrefixes(s *settings) []string {
	var all []string
	for _, ip := range s.patterns.parsed {
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
