package render

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// This file holds the one definition of "image matches pattern" that every output shares:
//
//   - MatchImage (Go), used by tests, the CLI and coverage checks;
//   - celImageMatch, the same algorithm as a CEL expression over a raw image string, used in
//     the ImageValidatingPolicy's matchImageReferences and registry restriction and in the
//     ClusterPolicy's registry restriction (validate.cel);
//   - kyvernoGlobs, wildcard patterns for ClusterPolicy verifyImages.imageReferences, which
//     Kyverno matches against its own normalised form of the image. They select a SUPERSET
//     of what MatchImage admits (never fewer images are verified than are admitted).
//
// Both MatchImage and celImageMatch first canonicalise the raw image string as the
// container runtime resolves it (distribution/reference rules), with the spellings of one
// registry host folded into one: the host in lower case (DNS and runtimes ignore case), the
// default HTTPS port ":443" and leading zeros of a port dropped, and Docker Hub's aliases
// ("index.docker.io", "registry-1.docker.io") spelled "docker.io". Then they test one
// anchored RE2 regular expression built from the patterns (patternRegexp). cel-go's
// matches() is RE2 as well, so the two agree; the tests evaluate the rendered CEL with
// cel-go to prove it, and compare canonicalImage with go-containerregistry's parser.
// ":80" is not folded (it is plain HTTP, another endpoint); other DNS names or addresses of
// the same registry cannot be known here (README.md: restrictRegistries stops them).

const (
	dockerHub = "docker.io"

	// tagRE is a Docker tag ([\w][\w.-]{0,127}).
	tagRE = `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
	// tagGlobRE is what '*' may match inside a tag pattern.
	tagGlobRE = `[A-Za-z0-9_.-]*`
	// digestRE is the only digest form go-containerregistry (and so Kyverno) accepts.
	digestRE = `sha256:[a-f0-9]{64}`
	// repoGlobRE is what '*' matches in the repository part of a pattern: any characters,
	// including '/', but not the ':' or '@' that start a tag or digest. The registry host is
	// never reached by a '*' because it is literal and comes first.
	repoGlobRE = `[^:@]*`

	// hostPrefixRE matches a raw reference whose first path component is a registry host:
	// it contains '.' or ':' or an upper-case letter, or is "localhost", and a '/' follows.
	hostPrefixRE = `^(?:localhost|[^/]*[.:A-Z][^/]*)/`
	// portRE matches a numeric port of at most five significant digits at the end of a
	// host; leading zeros do not change the port a runtime dials.
	portRE = `:0*[0-9]{1,5}$`
	// defaultPort is the port an https registry host without one is reached at.
	defaultPort = 443
	// dockerHubHostRE matches the lower-cased spellings of Docker Hub's registry host
	// (dockerHubAliases, with or without the default port).
	dockerHubHostRE = `^(?:(?:index|registry-1)\.)?docker\.io(?::0*443)?$`
)

// dockerHubAliases are the host names of Docker Hub's registry (after lower-casing and
// dropping ":443"); all are spelled dockerHub in canonical images.
var dockerHubAliases = []string{dockerHub, "index.docker.io", "registry-1.docker.io"}

var (
	hostPrefix = regexp.MustCompile(hostPrefixRE)
	hostPort   = regexp.MustCompile(portRE)

	patternCharsRE = regexp.MustCompile(`^[a-z0-9*._:/@-]+$`)
	patternDigest  = regexp.MustCompile(`^` + digestRE + `$`)
	patternTag     = regexp.MustCompile(`^[a-z0-9_*][a-z0-9_.*-]{0,127}$`)
	patternHost    = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?$`)
)

// canonicalImage resolves a raw image reference (as written in a Pod) to the form the
// container runtime pulls, with one spelling per registry: an explicit registry host
// (canonicalHost), and "library/" for single-component Docker Hub names. The tag and
// digest are kept as written. It mirrors celCanonical exactly; change both together.
func canonicalImage(img string) string {
	if !hostPrefix.MatchString(img) {
		return dockerHub + "/" + libraryIfSingle(img)
	}
	i := strings.Index(img, "/")
	host, rest := canonicalHost(img[:i]), img[i+1:]
	if host == dockerHub {
		return dockerHub + "/" + libraryIfSingle(rest)
	}
	return host + "/" + rest
}

// canonicalHost folds the spellings of a registry host: ASCII letters in lower case (as
// CEL's lowerAscii does; other characters are never valid in a host), a port without
// leading zeros and without ":443", and Docker Hub's aliases as "docker.io".
func canonicalHost(h string) string {
	b := []byte(h)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	h = string(b)
	if hostPort.MatchString(h) {
		i := strings.LastIndex(h, ":")
		port, _ := strconv.Atoi(h[i+1:]) // at most 5 significant digits: cannot fail
		h = h[:i]
		if port != defaultPort {
			h += ":" + strconv.Itoa(port)
		}
	}
	if slices.Contains(dockerHubAliases, h) {
		return dockerHub
	}
	return h
}

func libraryIfSingle(path string) string {
	if strings.Contains(path, "/") {
		return path
	}
	return "library/" + path
}

// celCanonical is canonicalImage as a CEL expression over the string expression img (an
// identifier, so repeating it is cheap). It uses only core CEL and the strings extension
// functions present in every Kubernetes and Kyverno CEL environment (indexOf, lastIndexOf,
// substring, contains, matches, lowerAscii); no cel.bind, which Kubernetes' environment
// lacks: a one-element list's map() names the lower-cased host h instead. Kyverno compiles
// these expressions on every admission, so it is written for few syntax nodes: the Docker
// Hub aliases and ports are recognised by regular expressions, and int() drops a port's
// leading zeros (at most five digits follow them, so it cannot overflow).
func celCanonical(img string) string {
	lib := func(path string) string {
		return "(" + path + ".contains('/') ? '' : 'library/') + " + path
	}
	rest := img + ".substring(" + img + ".indexOf('/') + 1)"
	port := "h.substring(h.lastIndexOf(':') + 1)"
	host := "(h.matches(r':0*" + strconv.Itoa(defaultPort) + "$') ? h.substring(0, h.lastIndexOf(':')) : " +
		"h.matches(r':0+[0-9]{1,5}$') ? h.substring(0, h.lastIndexOf(':') + 1) + string(int(" + port + ")) : h)"
	return "(" + img + ".matches(r'" + hostPrefixRE + "') ? " +
		"[" + img + ".substring(0, " + img + ".indexOf('/')).lowerAscii()].map(h, h.matches(r'" + dockerHubHostRE + "') ? " +
		"'docker.io/' + " + lib(rest) + " : " + host + " + '/' + " + rest + ")[0] : " +
		"'docker.io/' + " + lib(img) + ")"
}

// celImageMatch is a CEL boolean expression: the image held by identifier img matches one
// of the patterns compiled into re (see patternRegexp).
func celImageMatch(img, re string) string {
	return celCanonical(img) + ".matches(" + celRawString(re) + ")"
}

// imagePattern is a parsed TrustedRegistry image pattern.
type imagePattern struct {
	raw    string
	host   string   // canonical registry host, literal
	paths  []string // repository path globs below host ('*' = any characters but ':' and '@')
	tag    string   // "" or a tag glob
	digest string   // "" or sha256:<hex>
}

// parsePattern parses and checks one pattern. It applies the same rules as the CRD's
// validation (so a pattern that reached the apiserver parses) and refuses anything that
// could make the rendered match broader than the pattern says.
func parsePattern(p string) (imagePattern, error) {
	bad := func(why string) (imagePattern, error) {
		return imagePattern{}, &InvalidError{Msg: fmt.Sprintf("image pattern %q: %s", p, why)}
	}
	if p == "" {
		return bad("empty")
	}
	if len(p) > 255 {
		return bad("longer than 255 characters")
	}
	if !patternCharsRE.MatchString(p) {
		return bad("may contain only lowercase letters, digits and . _ - : / @ *")
	}
	if strings.HasPrefix(p, "*") {
		return bad("must not start with a wildcard")
	}
	if strings.Contains(p, "**") {
		return bad("must not contain '**'")
	}
	if strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
		return bad("must not have empty path segments")
	}
	out := imagePattern{raw: p}
	name := p
	if i := strings.Index(p, "@"); i >= 0 {
		name, out.digest = p[:i], p[i+1:]
		if !patternDigest.MatchString(out.digest) {
			return bad("a digest must be '@sha256:' followed by 64 lowercase hex characters")
		}
		if name == "" {
			return bad("a digest needs a repository")
		}
	}
	repo := name
	lastSlash := strings.LastIndex(name, "/")
	if i := strings.LastIndex(name, ":"); i > lastSlash {
		repo, out.tag = name[:i], name[i+1:]
		if !patternTag.MatchString(out.tag) {
			return bad("invalid tag")
		}
	}
	if repo == "" {
		return bad("no repository")
	}
	first, _, hasSlash := strings.Cut(p, "/")
	if hasSlash && strings.Contains(first, "*") {
		return bad("the registry host must not contain a wildcard")
	}
	if !hasSlash && strings.Contains(first, "*") && !strings.ContainsAny(first, ".:") {
		return bad("must name a repository, not only a wildcard")
	}
	host, path := dockerHub, repo
	if i := strings.Index(repo, "/"); i >= 0 {
		first := repo[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" {
			host, path = first, repo[i+1:]
		}
	}
	if !patternHost.MatchString(host) {
		return bad("invalid registry host")
	}
	// the same folding as images get: "ghcr.io:443" is "ghcr.io", and every Docker Hub
	// alias is "docker.io" (with "library/" for a single component, below)
	host = canonicalHost(host)
	out.host = host
	switch {
	case host != dockerHub || strings.Contains(path, "/"):
		out.paths = []string{path}
	case strings.Contains(path, "*"):
		// "nginx*" or "docker.io/*": a wildcard may span several components, so both the
		// official-image form and the user-repository form are meant.
		out.paths = []string{"library/" + path, path}
	default:
		out.paths = []string{"library/" + path}
	}
	return out, nil
}

// globRE turns a glob into a regular expression: literal text quoted, '*' replaced by star.
func globRE(glob, star string) string {
	parts := strings.Split(glob, "*")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return strings.Join(parts, star)
}

// alternatives returns the regular expressions (unanchored) for the canonical images this
// pattern matches.
func (ip imagePattern) alternatives() []string {
	var suffix string
	switch {
	case ip.tag == "" && ip.digest == "":
		// any tag or digest (or neither: the runtime pulls :latest)
		suffix = `(?::` + tagRE + `)?(?:@` + digestRE + `)?`
	case ip.tag != "" && ip.digest == "":
		t := globRE(ip.tag, tagGlobRE)
		if regexp.MustCompile(`^` + t + `$`).MatchString("latest") {
			// an image without tag and digest is pulled as :latest
			suffix = `(?::` + t + `(?:@` + digestRE + `)?)?`
		} else {
			suffix = `:` + t + `(?:@` + digestRE + `)?`
		}
	case ip.tag == "":
		suffix = `(?::` + tagRE + `)?@` + regexp.QuoteMeta(ip.digest)
	default:
		suffix = `:` + globRE(ip.tag, tagGlobRE) + `@` + regexp.QuoteMeta(ip.digest)
	}
	out := make([]string, 0, len(ip.paths))
	for _, p := range ip.paths {
		out = append(out, regexp.QuoteMeta(ip.host)+`/`+globRE(p, repoGlobRE)+suffix)
	}
	return out
}

// patternSet is the parsed, sorted, de-duplicated set of a registry's patterns.
type patternSet struct {
	raw    []string // sorted, unique
	parsed []imagePattern
	re     string // anchored regular expression over canonical images

	// The compiled form is needed only to match images in Go (Matcher), never to render:
	// compile it on first use.
	once sync.Once
	cre  *regexp.Regexp
	// prefixes rule out most images without the compiled form (matcher_prefix.go).
	prefixes []string
}

func newPatternSet(patterns []string) (*patternSet, error) {
	if len(patterns) == 0 {
		return nil, &InvalidError{Msg: "spec.images is empty: there is nothing to verify"}
	}
	raw := sortedUnique(patterns)
	ps := &patternSet{raw: raw}
	var alts []string
	for _, p := range raw {
		ip, err := parsePattern(p)
		if err != nil {
			return nil, err
		}
		ps.parsed = append(ps.parsed, ip)
		alts = append(alts, ip.alternatives()...)
	}
	alts = sortedUnique(alts)
	ps.re = `^(?:` + strings.Join(alts, `|`) + `)$`
	ps.prefixes = literalPrefixes(ps.parsed)
	// A syntax check is enough here (RE2 syntax is what CEL's matches() accepts); it is
	// ~50x cheaper than compiling, which only Matcher needs.
	if _, err := syntax.Parse(ps.re, syntax.Perl); err != nil {
		return nil, fmt.Errorf("render: compiling image patterns: %w", err)
	}
	return ps, nil
}

func (ps *patternSet) match(image string) bool {
	return ps.matchCanonical(canonicalImage(image))
}

// Matcher matches raw image references against a set of TrustedRegistry image patterns,
// with exactly the semantics of the rendered policies. Build it once and reuse it: building
// compiles a regular expression.
type Matcher struct{ ps *patternSet }

// NewMatcher returns a Matcher for patterns. Invalid patterns match nothing.
func NewMatcher(patterns []string) *Matcher {
	valid := make([]string, 0, len(patterns))
	for _, p := range patterns {
		if _, err := parsePattern(p); err == nil {
			valid = append(valid, p)
		}
	}
	ps, err := newPatternSet(valid)
	if err != nil {
		return &Matcher{}
	}
	return &Matcher{ps: ps}
}

// Match reports whether the raw image reference (as written in a Pod spec) matches.
func (m *Matcher) Match(image string) bool {
	return m.ps != nil && m.ps.match(image)
}

// MatchImage reports whether the raw image reference (as written in a Pod spec, e.g.
// "nginx", "nginx:1.27", "ghcr.io/org/app@sha256:…") matches one of the TrustedRegistry
// image patterns, with exactly the semantics of the rendered policies (see the package
// documentation). Invalid patterns match nothing.
// To match many images against the same patterns, use NewMatcher.
func MatchImage(patterns []string, image string) bool {
	return NewMatcher(patterns).Match(image)
}

// kyvernoGlobs returns wildcard patterns ('*' only) for ClusterPolicy
// verifyImages.imageReferences. Kyverno matches them against ImageInfo.String(): the raw
// image with "docker.io/" prepended when it has no registry host (no "library/" added,
// the host kept as written: case, port and Docker Hub alias), ":latest" added when it has
// neither tag nor digest, and the tag dropped when it has a digest. The globs cover every
// such string of every image MatchImage admits whose host is in lower case with no
// zero-padded port (the ClusterPolicy denies the other spellings, see cpRespelledRE; tests
// check this), possibly more: verification may be asked for more images than the
// restriction admits, never fewer.
func (ps *patternSet) kyvernoGlobs() []string {
	var out []string
	for _, ip := range ps.parsed {
		var repos []string
		for _, p := range ip.paths {
			if ip.host != dockerHub {
				repos = append(repos, ip.host+"/"+p)
				if !strings.Contains(ip.host, ":") {
					repos = append(repos, ip.host+":"+strconv.Itoa(defaultPort)+"/"+p)
				}
				continue
			}
			short := strings.TrimPrefix(p, "library/")
			for _, h := range dockerHubAliases {
				for _, hp := range []string{h, h + ":" + strconv.Itoa(defaultPort)} {
					repos = append(repos, hp+"/"+p, hp+"/"+short)
				}
			}
			// Kyverno with enableDefaultRegistryMutation=false leaves the default
			// registry out; a leading '*' would then match images of every registry
			for _, r := range []string{p, short} {
				if !strings.HasPrefix(r, "*") {
					repos = append(repos, r)
				}
			}
		}
		for _, r := range repos {
			switch {
			case ip.digest != "":
				out = append(out, r+"@"+ip.digest)
			case ip.tag != "":
				// Kyverno drops the tag of a digested image: any digest of the repository
				out = append(out, r+":"+ip.tag, r+"@*")
			case strings.HasSuffix(r, "*"):
				out = append(out, r)
			default:
				out = append(out, r+":*", r+"@*")
			}
		}
	}
	return sortedUnique(out)
}

func sortedUnique(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	j := 0
	for i, s := range out {
		if i > 0 && s == out[j-1] {
			continue
		}
		out[j] = s
		j++
	}
	return out[:j]
}
