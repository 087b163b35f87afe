package render

import "testing"

// TestMatchCanonicalAgreesWithMatch: matching the canonical spelling made once gives
// Match's answer, over the MatchImage case table and respellings of each image (host case,
// Docker Hub aliases, the default port).
func TestMatchCanonicalAgreesWithMatch(t *testing.T) {
	matched := 0
	for _, c := range matchCases() {
		m := NewMatcher(c.patterns)
		for _, img := range []string{c.image, c.image + ":latest", "docker.io/" + c.image, "index.docker.io/library/" + c.image,
			"GHCR.IO/" + c.image, "ghcr.io:443/" + c.image} {
			want := m.Match(img)
			if got := m.MatchCanonical(Canonical(img)); got != want {
				t.Errorf("patterns %q image %q: MatchCanonical %v, Match %v", c.patterns, img, got, want)
			}
			if want {
				matched++
			}
		}
	}
	if matched == 0 {
		t.Fatal("no image of the table matched")
	}
	if (&Matcher{}).MatchCanonical(Canonical("nginx")) {
		t.Error("a Matcher of no valid pattern matched")
	}
}
