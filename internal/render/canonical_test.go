package render

import (
	"math/rand"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// spelledRef is a generated image reference: the same image (registry, repository, tag,
// digest) written in one of its odd spellings.
type spelledRef struct{ raw string }

var (
	refHosts = []string{"", "ghcr.io", "localhost", "localhost:5000", "docker.io", "index.docker.io",
		"registry-1.docker.io", "quay.io", "127.0.0.1:5000", "registry.example.com:5000", "gcr.io",
		"registry-2.docker.io", "docker.io.evil.com", "localhost.localdomain"}
	refPorts = []string{"", "", "", ":443", ":0443", ":00443", ":80", ":5000", ":05000", ":4430", ":0", ":65535"}
	refPaths = []string{"nginx", "library/nginx", "yourorg/app", "yourorg/team/app", "dev/x", "open/app",
		"team/tool", "a/b/mirror", "bitnami/postgresql"}
	refTags = []string{"", "", ":1", ":latest", ":Latest_1.x-y", ":v1"}
)

// randomSpelling writes a random reference in a random spelling: host letters in random
// case, a port appended (default, zero-padded, other) when the host has none.
func randomSpelling(r *rand.Rand) string {
	host := refHosts[r.Intn(len(refHosts))]
	if host != "" && !strings.Contains(host, ":") {
		host += refPorts[r.Intn(len(refPorts))]
	}
	b := []byte(host)
	if r.Intn(2) == 0 {
		for i, c := range b {
			if 'a' <= c && c <= 'z' && r.Intn(2) == 0 {
				b[i] = c - 'a' + 'A'
			}
		}
	}
	ref := string(b)
	if ref != "" {
		ref += "/"
	}
	ref += refPaths[r.Intn(len(refPaths))] + refTags[r.Intn(len(refTags))]
	if r.Intn(3) == 0 {
		ref += "@" + digestA
	}
	return ref
}

// oracleCanonical is the canonical image according to go-containerregistry's parser (the
// one Kyverno and cosign use), with the registry folded by independent means: net's host
// and port split, strings.ToLower, and the port compared as a number. ok is false when
// go-containerregistry refuses the reference.
func oracleCanonical(raw string) (string, bool) {
	ref, err := name.ParseReference(raw)
	if err != nil {
		return "", false
	}
	reg := strings.ToLower(ref.Context().RegistryStr())
	if h, p, err := net.SplitHostPort(reg); err == nil {
		if n, err := strconv.Atoi(p); err == nil && n < 100000 {
			reg = h
			if n != 443 {
				reg = net.JoinHostPort(h, strconv.Itoa(n))
			}
		}
	}
	repo := ref.Context().RepositoryStr()
	switch reg {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		reg = "docker.io"
		if !strings.Contains(repo, "/") {
			repo = "library/" + repo
		}
	}
	out := reg + "/" + repo
	// the tag as written (go-containerregistry drops it from a digested reference)
	if i := strings.LastIndex(strings.Split(raw, "@")[0], ":"); i > strings.LastIndex(raw, "/") {
		out += strings.Split(raw, "@")[0][i:]
	}
	if d, ok := ref.(name.Digest); ok {
		out += "@" + d.DigestStr()
	}
	return out, true
}

// TestCanonicalImageAgreesWithGoContainerRegistry: every spelling go-containerregistry
// parses canonicalises (in Go and in the rendered CEL, in both CEL environments) to the
// image that go-containerregistry names, with case, default port and Docker Hub aliases
// folded.
func TestCanonicalImageAgreesWithGoContainerRegistry(t *testing.T) {
	menv, err := matchImageEnv()
	if err != nil {
		t.Fatal(err)
	}
	kenv, err := k8sEnv()
	if err != nil {
		t.Fatal(err)
	}
	ivp, err := compileCEL(menv, celCanonical("ref"))
	if err != nil {
		t.Fatal(err)
	}
	k8s, err := compileCEL(kenv, "variables.podImages.map(i, "+celCanonical("i")+")")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(1))
	parsed := 0
	seen := map[string]bool{}
	for n := 0; n < 6000; n++ {
		raw := randomSpelling(r)
		if seen[raw] {
			continue
		}
		seen[raw] = true
		got := canonicalImage(raw)
		if want, ok := oracleCanonical(raw); ok {
			parsed++
			if got != want {
				t.Errorf("canonicalImage(%q) = %q, go-containerregistry says %q", raw, got, want)
			}
		}
		if c := evalString(t, ivp, map[string]any{"ref": raw}); c != got {
			t.Errorf("CEL (ImageValidatingPolicy) canonical %q = %q, Go %q", raw, c, got)
		}
		out, err := k8s.eval(map[string]any{"variables": map[string]any{"podImages": []string{raw}}})
		if err != nil {
			t.Fatal(err)
		}
		l, err := out.ConvertToNative(stringSliceType)
		if err != nil {
			t.Fatal(err)
		}
		if c := l.([]string)[0]; c != got {
			t.Errorf("CEL (Kubernetes) canonical %q = %q, Go %q", raw, c, got)
		}
	}
	if parsed < 1000 {
		t.Fatalf("only %d generated references parse: the generator is broken", parsed)
	}
	t.Logf("%d distinct spellings, %d parsed by go-containerregistry", len(seen), parsed)
}

func evalString(tb testing.TB, p *celProgram, vars map[string]any) string {
	tb.Helper()
	out, err := p.eval(vars)
	if err != nil {
		tb.Fatal(err)
	}
	s, ok := out.Value().(string)
	if !ok {
		tb.Fatalf("%q returned %T", abbreviate(p.src), out.Value())
	}
	return s
}

// TestMatchIgnoresSpelling: two spellings of the same image (same canonical form per
// go-containerregistry) are admitted or refused together by every pattern set, and the
// rendered CEL matcher agrees with MatchImage on each of them.
func TestMatchIgnoresSpelling(t *testing.T) {
	sets := [][]string{
		{"ghcr.io/yourorg/*"},
		{"nginx"},
		{"docker.io/*"},
		{"localhost:5000/dev/*", "quay.io/team/tool:v1"},
		{"registry-1.docker.io/bitnami/postgresql", "ghcr.io:443/yourorg/team/*"},
		{"127.0.0.1:5000/open/*", "localhost/open/*"},
		{"gcr.io/*/mirror", "index.docker.io/library/nginx:latest"},
	}
	env, err := matchImageEnv()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(2))
	byCanon := map[string][]string{}
	for n := 0; n < 4000; n++ {
		raw := randomSpelling(r)
		if c, ok := oracleCanonical(raw); ok {
			byCanon[c] = append(byCanon[c], raw)
		}
	}
	for _, set := range sets {
		ps, err := newPatternSet(set)
		if err != nil {
			t.Fatal(err)
		}
		prog, err := compileCEL(env, celImageMatch("ref", ps.re))
		if err != nil {
			t.Fatal(err)
		}
		for c, raws := range byCanon {
			want := ps.match(c)
			for _, raw := range raws {
				if got := ps.match(raw); got != want {
					t.Errorf("patterns %q: %q matches %v, its canonical spelling %q %v", set, raw, got, c, want)
				}
				if got := prog.evalBool(t, map[string]any{"ref": raw}); got != want {
					t.Errorf("patterns %q: CEL matches %q %v, MatchImage %v", set, raw, got, want)
				}
			}
		}
	}
}

// TestPatternHostsFolded: patterns name a registry in any of its spellings.
func TestPatternHostsFolded(t *testing.T) {
	for _, c := range []struct{ pattern, host string }{
		{"ghcr.io:443/org/*", "ghcr.io"},
		{"ghcr.io:0443/org/*", "ghcr.io"},
		{"localhost:05000/dev/*", "localhost:5000"},
		{"registry-1.docker.io/library/nginx", dockerHub},
		{"registry-1.docker.io:443/nginx", dockerHub},
		{"index.docker.io/nginx", dockerHub},
		{"docker.io:443/*", dockerHub},
		{"registry.example.com:80/x", "registry.example.com:80"},
	} {
		ip, err := parsePattern(c.pattern)
		if err != nil {
			t.Fatalf("%s: %v", c.pattern, err)
		}
		if ip.host != c.host {
			t.Errorf("parsePattern(%q).host = %q, want %q", c.pattern, ip.host, c.host)
		}
	}
}
