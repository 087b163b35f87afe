package render

import (
	"slices"
	"strings"
)

// Matching an image in Go (Matcher) compiles the patterns' regular expression on first use,
// about half a millisecond per registry. Most images of a cluster belong to other
// registries: they do not even start with the literal text of any pattern, so they are
// ruled out before anything is compiled (Pod insights match every registry guarding a
// namespace against its images, docs/performance.md "Pod insights").

// literalPrefixes returns, for each canonical form a pattern admits (alternatives), the
// text every image it matches starts with: the host, '/', and the repository path up to its
// first '*'. Each alternative of patternSet.re begins with exactly this text, quoted.
func literalPrefixes(patterns []imagePattern) []string {
	var out []string
	for _, ip := range patterns {
		for _, p := range ip.paths {
			lit, _, _ := strings.Cut(p, "*")
			out = append(out, ip.host+"/"+lit)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// hasAnyPrefix tells whether the canonical image c starts with one of prefixes; if not, no
// pattern can match it.
func hasAnyPrefix(c string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(c, p) {
			return true
		}
	}
	return false
}
