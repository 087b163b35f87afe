package render

import "regexp"

// Pod insights match the same images against the patterns of every registry guarding a
// namespace (docs/performance.md, "Pod insights"). Spelling an image canonically runs a
// regular expression; done once per image and shared by every Matcher, the work per
// registry is the prefix test of matcher_prefix.go alone for images it cannot match.

// CanonicalImage is a raw image reference in the canonical form Matcher compares
// (Canonical); only Canonical makes one.
type CanonicalImage struct{ s string }

// Canonical spells a raw image reference (as written in a Pod) canonically, for
// Matcher.MatchCanonical.
func Canonical(image string) CanonicalImage { return CanonicalImage{canonicalImage(image)} }

// MatchCanonical is Match of the image c was made from.
func (m *Matcher) MatchCanonical(c CanonicalImage) bool {
	return m.ps != nil && m.ps.matchCanonical(c.s)
}

// matchCanonical matches a canonical image.
func (ps *patternSet) matchCanonical(c string) bool {
	if !hasAnyPrefix(c, ps.prefixes) {
		return false
	}
	ps.once.Do(func() { ps.cre = regexp.MustCompile(ps.re) })
	return ps.cre.MatchString(c)
}
