package render

import (
	"regexp"
	"slices"
	"testing"
)

// TestPrefixFilterAgreesWithRegexp: ruling an image out by the patterns' literal prefixes
// never changes the answer of the full regular expression, over the MatchImage case table
// and look-alikes of each image.
func TestPrefixFilterAgreesWithRegexp(t *testing.T) {
	ruledOut := 0
	for _, c := range matchCases() {
		var valid []string
		for _, p := range c.patterns {
			if _, err := parsePattern(p); err == nil {
				valid = append(valid, p)
			}
		}
		ps, err := newPatternSet(valid)
		if err != nil {
			continue // no valid pattern: nothing to compare
		}
		re := regexp.MustCompile(ps.re)
		for _, img := range []string{c.image, c.image + "x", "x" + c.image, c.image + "/x", c.image + ":latest"} {
			canonical := canonicalImage(img)
			full := re.MatchString(canonical)
			if !hasAnyPrefix(canonical, ps.prefixes) {
				ruledOut++
				if full {
					t.Errorf("patterns %q: prefixes %q rule out %q, which the regular expression matches", valid, ps.prefixes, img)
				}
			}
			if got := ps.match(img); got != full {
				t.Errorf("patterns %q image %q: match %v, regular expression %v", valid, img, got, full)
			}
		}
	}
	if ruledOut == 0 {
		t.Fatal("the prefixes ruled out no image of the table")
	}
}

func TestLiteralPrefixes(t *testing.T) {
	cases := []struct {
		patterns []string
		want     []string
	}{
		{[]string{"ghcr.io/org/*"}, []string{"ghcr.io/org/"}},
		{[]string{"ghcr.io/org/app:1.*"}, []string{"ghcr.io/org/app"}},
		{[]string{"gcr.io/*/mirror"}, []string{"gcr.io/"}},
		{[]string{"nginx"}, []string{"docker.io/library/nginx"}},
		// a Docker Hub wildcard means both the official and the user repositories
		{[]string{"docker.io/*"}, []string{"docker.io/", "docker.io/library/"}},
		{[]string{"docker.io/ngin*"}, []string{"docker.io/library/ngin", "docker.io/ngin"}},
		{[]string{"ghcr.io:443/org/x", "ghcr.io/org/x@" + digestA}, []string{"ghcr.io/org/x"}},
	}
	for _, c := range cases {
		ps, err := newPatternSet(c.patterns)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ps.prefixes, c.want) {
			t.Errorf("%q: prefixes %q, want %q", c.patterns, ps.prefixes, c.want)
		}
	}
}

// TestMatcherCompilesOnlyForCandidates: images outside every prefix are answered without
// compiling the regular expression (a cluster's other images cost no compilation).
func TestMatcherCompilesOnlyForCandidates(t *testing.T) {
	m := NewMatcher([]string{"ghcr.io/ins-0001/*", "registry.example.com/ins-0001/*"})
	for _, img := range []string{"registry.example.com/team-01/app:v1", "mirror.example.com/envoy:1.31", "nginx"} {
		if m.Match(img) {
			t.Errorf("%q matched", img)
		}
	}
	if m.ps.cre != nil {
		t.Fatal("compiled for images no pattern can match")
	}
	if !m.Match("registry.example.com/ins-0001/app:v1") || m.ps.cre == nil {
		t.Fatal("a candidate image was not matched with the compiled expression")
	}
}
