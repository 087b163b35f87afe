package render

import (
	"regexp"
	"sort"
	"strings"
	"testing"
)

type matchCase struct {
	patterns []string
	image    string
	want     bool
}

func matchCases() []matchCase {
	org := []string{"ghcr.io/yourorg/*"}
	nginx := []string{"nginx"}
	return []matchCase{
		// the seed pattern
		{org, "ghcr.io/yourorg/app", true},
		{org, "ghcr.io/yourorg/app:1.2", true},
		{org, "ghcr.io/yourorg/app@" + digestA, true},
		{org, "ghcr.io/yourorg/app:v1@" + digestA, true},
		{org, "ghcr.io/yourorg/team/app:v1", true},
		{org, "ghcr.io/yourorg/app:Latest_1.x-y", true},
		// look-alikes
		{org, "ghcr.io/yourorg-evil/app", false},
		{org, "ghcr.io/yourorgx/app:1", false},
		{org, "ghcr.io.evil.com/yourorg/app", false},
		{org, "evil.io/ghcr.io/yourorg/app", false},
		{org, "ghcr.io/yourorg", false},
		{org, "GHCR.io/yourorg/app", true},
		{org, "ghcr.io:443/yourorg/app", true},
		{org, "ghcr.io:0443/yourorg/app@" + digestA, true},
		{org, "Ghcr.IO:00443/yourorg/app", true},
		{org, "ghcr.io:4430/yourorg/app", false},
		{org, "ghcr.io:80/yourorg/app", false},
		{org, "ghcr.io:443443/yourorg/app", false},
		{org, "ghcr.io:/yourorg/app", false},
		{org, "GHCR.io/YourOrg/app", false},
		{[]string{"ghcr.io:443/yourorg/*"}, "ghcr.io/yourorg/app", true},
		{[]string{"ghcr.io:0443/yourorg/*"}, "GHCR.IO:443/yourorg/app", true},
		{org, "ghcr.io/other/yourorg/app", false},
		{org, "yourorg/app", false},
		{org, "docker.io/ghcr.io/yourorg/app", false},
		{org, "ghcr.io/yourorg/app@sha256:short", false},
		{org, "ghcr.io/yourorg/app:", false},
		{org, "ghcr.io/yourorg/app:tag/../../x", false},
		{org, " ghcr.io/yourorg/app", false},
		{org, "", false},
		// Docker Hub official image
		{nginx, "nginx", true},
		{nginx, "nginx:1.27", true},
		{nginx, "nginx@" + digestA, true},
		{nginx, "nginx:1.27@" + digestA, true},
		{nginx, "library/nginx", true},
		{nginx, "docker.io/nginx:1", true},
		{nginx, "docker.io/library/nginx:1", true},
		{nginx, "index.docker.io/library/nginx", true},
		{nginx, "index.docker.io/nginx:stable", true},
		{nginx, "nginx-evil", false},
		{nginx, "nginxinc/nginx-unprivileged", false},
		{nginx, "evil/nginx", false},
		{nginx, "registry-1.docker.io/library/nginx", true},
		{nginx, "registry-1.docker.io/nginx:1", true},
		{nginx, "REGISTRY-1.Docker.IO:443/library/nginx", true},
		{nginx, "docker.io:443/nginx", true},
		{nginx, "Index.Docker.io:0443/nginx@" + digestA, true},
		{nginx, "registry-2.docker.io/library/nginx", false},
		{nginx, "registry-1.docker.io:80/library/nginx", false},
		{nginx, "registry-1.docker.io.evil.com/library/nginx", false},
		{[]string{"registry-1.docker.io/library/nginx"}, "nginx:1", true},
		{[]string{"docker.io:443/nginx"}, "index.docker.io/library/nginx", true},
		{nginx, "docker.io.evil.com/library/nginx", false},
		{nginx, "ghcr.io/library/nginx", false},
		{nginx, "localhost/nginx", false},
		{nginx, "Docker.io/library/nginx", true},
		{nginx, "docker.io/library/nginx/sub", false},
		{[]string{"docker.io/library/nginx"}, "nginx:1", true},
		{[]string{"index.docker.io/nginx"}, "nginx:1", true},
		{[]string{"library/nginx"}, "docker.io/nginx", true},
		// Docker Hub user repository
		{[]string{"bitnami/postgresql"}, "bitnami/postgresql:16", true},
		{[]string{"bitnami/postgresql"}, "docker.io/bitnami/postgresql", true},
		{[]string{"bitnami/postgresql"}, "postgresql", false},
		{[]string{"bitnami/postgresql"}, "bitnami/postgresql-evil", false},
		// Docker Hub wildcards
		{[]string{"docker.io/*"}, "nginx", true},
		{[]string{"docker.io/*"}, "bitnami/redis:7", true},
		{[]string{"docker.io/*"}, "ghcr.io/x/y", false},
		{[]string{"docker.io/*"}, "localhost/x", false},
		{[]string{"docker.io/library/*"}, "redis", true},
		{[]string{"docker.io/library/*"}, "bitnami/redis", false},
		{[]string{"docker.io/app-*"}, "app-web:1", true},
		{[]string{"docker.io/app-*"}, "app-team/web:1", true},
		{[]string{"docker.io/app-*"}, "appx", false},
		// tags
		{[]string{"nginx:1.27"}, "nginx:1.27", true},
		{[]string{"nginx:1.27"}, "nginx:1.27@" + digestA, true},
		{[]string{"nginx:1.27"}, "nginx:1.28", false},
		{[]string{"nginx:1.27"}, "nginx:1.27.1", false},
		{[]string{"nginx:1.27"}, "nginx", false},
		{[]string{"nginx:1.27"}, "nginx@" + digestA, false},
		{[]string{"nginx:latest"}, "nginx", true},
		{[]string{"nginx:latest"}, "nginx:latest", true},
		{[]string{"nginx:latest"}, "nginx@" + digestA, false},
		{[]string{"redis:7.*"}, "redis:7.2", true},
		{[]string{"redis:7.*"}, "redis:8.0", false},
		{[]string{"redis:7.*"}, "redis", false},
		{[]string{"nginx:*"}, "nginx", true},
		{[]string{"nginx:*"}, "nginx:x", true},
		{[]string{"nginx:*"}, "nginx@" + digestA, false},
		// digests
		{[]string{"quay.io/team/tool@" + digestA}, "quay.io/team/tool@" + digestA, true},
		{[]string{"quay.io/team/tool@" + digestA}, "quay.io/team/tool:v9@" + digestA, true},
		{[]string{"quay.io/team/tool@" + digestA}, "quay.io/team/tool@" + digestB, false},
		{[]string{"quay.io/team/tool@" + digestA}, "quay.io/team/tool", false},
		{[]string{"quay.io/team/tool:v1@" + digestA}, "quay.io/team/tool:v1@" + digestA, true},
		{[]string{"quay.io/team/tool:v1@" + digestA}, "quay.io/team/tool@" + digestA, false},
		// ports, localhost
		{[]string{"registry.example.com:5000/team/app"}, "registry.example.com:5000/team/app:1", true},
		{[]string{"registry.example.com:5000/team/app"}, "registry.example.com/team/app:1", false},
		{[]string{"registry.example.com:5000/team/app"}, "registry.example.com:5001/team/app", false},
		{[]string{"localhost:5000/dev/*"}, "localhost:5000/dev/x/y:1", true},
		{[]string{"localhost:5000/dev/*"}, "localhost/dev/x", false},
		{[]string{"localhost:5000/dev/*"}, "LOCALHOST:5000/dev/x@" + digestA, true},
		{[]string{"localhost:5000/dev/*"}, "LocalHost:05000/dev/x", true},
		{[]string{"localhost:5000/dev/*"}, "localhost:50000/dev/x", false},
		{[]string{"localhost:5000/dev/*"}, "localhost:5000/Dev/x", false},
		{[]string{"localhost:5000/dev/*"}, "localhost:443/dev/x", false},
		{[]string{"localhost/cache"}, "LOCALHOST/cache", true},
		{[]string{"localhost/cache"}, "localhost:443/cache", true},
		{[]string{"localhost/cache"}, "localhost/cache:1", true},
		{[]string{"localhost/cache"}, "cache", false},
		// wildcard in the middle
		{[]string{"gcr.io/*/mirror"}, "gcr.io/a/b/mirror:1", true},
		{[]string{"gcr.io/*/mirror"}, "gcr.io/a/mirror@" + digestA, true},
		{[]string{"gcr.io/*/mirror"}, "gcr.io/a/mirror2", false},
		{[]string{"gcr.io/*/mirror"}, "gcr.io.evil/a/mirror", false},
		// several patterns
		{[]string{"nginx", "ghcr.io/yourorg/*"}, "ghcr.io/yourorg/a", true},
		{[]string{"nginx", "ghcr.io/yourorg/*"}, "nginx:1", true},
		{[]string{"nginx", "ghcr.io/yourorg/*"}, "redis", false},
		// invalid patterns match nothing, valid ones still do
		{[]string{"*"}, "nginx", false},
		{[]string{"ghcr.io*/x"}, "ghcr.io/x", false},
		{[]string{"Nginx"}, "Nginx", false},
		{[]string{"Nginx", "nginx"}, "nginx", true},
	}
}

func TestMatchImage(t *testing.T) {
	for _, c := range matchCases() {
		if got := MatchImage(c.patterns, c.image); got != c.want {
			t.Errorf("MatchImage(%q, %q) = %v, want %v", c.patterns, c.image, got, c.want)
		}
	}
}

func TestParsePatternRejects(t *testing.T) {
	for _, p := range []string{
		"", "*", "*/x", "ghcr.io*/x", "gh*.io/x", "ngin*", "a//b", "a/", "/a", "a/**", "Nginx",
		"a b", "nginx@sha256:abc", "nginx@md5:" + strings.Repeat("a", 32), "@" + digestA,
		"nginx:", "ghcr.io/x:.bad", strings.Repeat("a", 256), "host:port/x", "ghcr.io/x'y",
	} {
		if _, err := parsePattern(p); err == nil {
			t.Errorf("parsePattern(%q) accepted", p)
		} else if !IsInvalid(err) {
			t.Errorf("parsePattern(%q): %v is not an InvalidError", p, err)
		}
	}
	for _, p := range []string{"ghcr.io*", "nginx:*", "localhost", "localhost:5000"} {
		if _, err := parsePattern(p); err != nil {
			t.Errorf("parsePattern(%q): %v", p, err)
		}
	}
}

// probeImages derives raw images from patterns and look-alike mutations of them.
func probeImages(patterns []string) []string {
	set := map[string]bool{}
	add := func(s string) { set[s] = true }
	suffixes := []string{"", ":1", ":latest", ":V1_x", "@" + digestA, ":v1@" + digestA, "@sha256:abc", ":a/b"}
	for _, p := range patterns {
		base := strings.NewReplacer("*", "x").Replace(p)
		deep := strings.NewReplacer("*", "x/y").Replace(p)
		empty := strings.NewReplacer("*", "").Replace(p)
		repoOnly := base
		if i := strings.Index(repoOnly, "@"); i >= 0 {
			repoOnly = repoOnly[:i]
		}
		if i := strings.LastIndex(repoOnly, ":"); i > strings.LastIndex(repoOnly, "/") {
			repoOnly = repoOnly[:i]
		}
		for _, b := range []string{base, deep, empty, repoOnly} {
			add(b)
			for _, s := range suffixes {
				add(b + s)
			}
			first, rest, ok := strings.Cut(b, "/")
			if ok {
				add(first + "-evil/" + rest)
				add(first + ".evil.com/" + rest)
				add("evil.io/" + b)
				add(strings.ToUpper(first) + "/" + rest)
				add(first + ":443/" + rest)
				add(first + ":0443/" + rest)
				add(first + ":80/" + rest)
				add("registry-1.docker.io/" + b)
				add("docker.io/" + b)
				add("index.docker.io/" + b)
				add(rest)
				if i := strings.Index(rest, "/"); i >= 0 {
					add(first + "/" + rest[:i] + "-evil" + rest[i:])
				}
			} else {
				add("library/" + b)
				add("docker.io/" + b)
				add("docker.io/library/" + b)
				add("index.docker.io/library/" + b)
				add("Registry-1.Docker.io:443/library/" + b)
				add("evil/" + b)
				add(b + "-evil")
			}
			add(b + "-evil")
			add(b + "/sub")
		}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// TestRenderedCELAgreesWithMatchImage evaluates the CEL matcher that the policies carry
// (matchImageReferences, and the restriction variable) with cel-go and compares it with
// MatchImage over the case table and derived look-alikes.
func TestRenderedCELAgreesWithMatchImage(t *testing.T) {
	groups := map[string][]string{}
	for _, c := range matchCases() {
		key := strings.Join(c.patterns, "\x00")
		groups[key] = append(groups[key], c.image)
	}
	menv, err := matchImageEnv()
	if err != nil {
		t.Fatal(err)
	}
	kenv, err := k8sEnv()
	if err != nil {
		t.Fatal(err)
	}
	for key, imgs := range groups {
		pats := strings.Split(key, "\x00")
		var valid []string
		for _, p := range pats {
			if _, err := parsePattern(p); err == nil {
				valid = append(valid, p)
			}
		}
		if len(valid) == 0 {
			continue
		}
		ps, err := newPatternSet(valid)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := compileCEL(menv, celImageMatch("ref", ps.re))
		if err != nil {
			t.Fatal(err)
		}
		restrict, err := compileCEL(kenv, "variables.podImages.filter(i, !"+celImageMatch("i", ps.re)+")")
		if err != nil {
			t.Fatal(err)
		}
		all := append(imgs, probeImages(valid)...)
		for _, img := range all {
			want := MatchImage(valid, img)
			if got := ref.evalBool(t, map[string]any{"ref": img}); got != want {
				t.Errorf("patterns %q image %q: CEL matchImageReferences %v, MatchImage %v", valid, img, got, want)
			}
			out, err := restrict.eval(map[string]any{"variables": map[string]any{"podImages": []string{img}}})
			if err != nil {
				t.Fatal(err)
			}
			disallowed, err := out.ConvertToNative(stringSliceType)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(disallowed.([]string)) == 0; got != want {
				t.Errorf("patterns %q image %q: CEL restriction admits %v, MatchImage %v", valid, img, got, want)
			}
		}
	}
}

// anchorOK is an independent statement of "never broader than the pattern": an image
// admitted by pattern p has p's registry host (after Docker Hub normalisation) and starts,
// below it, with p's literal text up to the first '*'.
func anchorOK(p, image string) bool {
	ip, err := parsePattern(p)
	if err != nil {
		return false
	}
	c := canonicalImage(image)
	host, rest, ok := strings.Cut(c, "/")
	if !ok || host != ip.host {
		return false
	}
	for _, path := range ip.paths {
		lit, _, _ := strings.Cut(path, "*")
		if strings.HasPrefix(rest, lit) {
			if !strings.Contains(path, "*") && ip.tag == "" && ip.digest == "" {
				// exact repository: what follows is a tag or digest only
				tail := rest[len(lit):]
				if tail == "" || tail[0] == ':' || tail[0] == '@' {
					return true
				}
				continue
			}
			return true
		}
	}
	return false
}

func TestMatchImageNeverBroaderThanAnchor(t *testing.T) {
	for _, c := range matchCases() {
		for _, img := range append([]string{c.image}, probeImages(c.patterns)...) {
			if !MatchImage(c.patterns, img) {
				continue
			}
			ok := false
			for _, p := range c.patterns {
				if anchorOK(p, img) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("patterns %q admit %q beyond their literal anchor", c.patterns, img)
			}
		}
	}
}

// validRef is a simplified distribution/reference grammar, used to keep only images
// Kyverno can parse when checking the ClusterPolicy globs.
var validRef = regexp.MustCompile(`^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$`)

var respelled = regexp.MustCompile(cpRespelledRE)

// TestClusterPolicyGlobsCoverAdmitted checks the ClusterPolicy safety property: every
// image the restriction admits is selected for signature verification by
// verifyImages.imageReferences, as Kyverno matches them (wildcards over its normalised
// image string), with and without Kyverno's default-registry mutation.
func TestClusterPolicyGlobsCoverAdmitted(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range matchCases() {
		key := strings.Join(c.patterns, "\x00")
		if seen[key] {
			continue
		}
		seen[key] = true
		var valid []string
		for _, p := range c.patterns {
			if _, err := parsePattern(p); err == nil {
				valid = append(valid, p)
			}
		}
		if len(valid) == 0 {
			continue
		}
		checkGlobsCover(t, valid, append(probeImages(valid), c.image))
	}
}

func checkGlobsCover(t testing.TB, patterns []string, images []string) {
	t.Helper()
	ps, err := newPatternSet(patterns)
	if err != nil {
		t.Fatal(err)
	}
	globs := ps.kyvernoGlobs()
	for _, img := range images {
		if !validRef.MatchString(img) || !ps.match(img) || respelled.MatchString(img) {
			continue // not a valid reference, not admitted, or denied by the ClusterPolicy
		}
		for _, mutation := range []bool{true, false} {
			if !mutation && !admittedOutsideGap(patterns, img) {
				continue // documented gap, see kyvernoGlobs
			}
			ks := kyvernoImageString(img, mutation)
			covered := false
			for _, g := range globs {
				if wildcardMatch(g, ks) {
					covered = true
					break
				}
			}
			if !covered {
				t.Errorf("patterns %q admit %q (Kyverno sees %q, registry mutation %v) but no imageReference selects it: %q",
					patterns, img, ks, mutation, globs)
			}
		}
	}
}

// admittedOutsideGap: with Kyverno's enableDefaultRegistryMutation=false, a Docker Hub
// pattern whose path (without "library/") starts with '*' has no safe glob, since it would
// match every registry. Is img admitted by some other pattern?
func admittedOutsideGap(patterns []string, img string) bool {
	for _, p := range patterns {
		ip, err := parsePattern(p)
		if err != nil {
			continue
		}
		gap := ip.host == dockerHub
		for _, path := range ip.paths {
			if !strings.HasPrefix(strings.TrimPrefix(path, "library/"), "*") {
				gap = false
			}
		}
		if !gap && MatchImage([]string{p}, img) {
			return true
		}
	}
	return false
}
