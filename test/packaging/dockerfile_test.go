package packaging

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Docker cannot run here, so these tests read Dockerfile, bundle.Dockerfile and .dockerignore
// and check what a build would need: every file of every package linked into the binary is
// copied into the builder and not excluded from the build context, and the image is the
// static, non-root one the Deployment expects.

// dockerignore is a .dockerignore: patterns in order, the last match wins, "!" re-includes.
type dockerignore []struct {
	re      *regexp.Regexp
	include bool
}

func readDockerignore(t *testing.T, path string) dockerignore {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d dockerignore
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		include := strings.HasPrefix(line, "!")
		p := strings.Trim(strings.TrimPrefix(line, "!"), "/")
		d = append(d, struct {
			re      *regexp.Regexp
			include bool
		}{globRE(p), include})
	}
	return d
}

// globRE turns a .dockerignore pattern into a regexp over slash-separated paths: "**" spans
// directories, "*" and "?" do not.
func globRE(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case p[i] == '*':
			b.WriteString("[^/]*")
		case p[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(p[i])))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// excluded reports whether path (relative, slash-separated) is left out of the build
// context: a pattern matching the path or one of its parent directories applies to it.
func (d dockerignore) excluded(path string) bool {
	excluded := false
	parts := strings.Split(path, "/")
	for _, p := range d {
		for i := 1; i <= len(parts); i++ {
			if p.re.MatchString(strings.Join(parts[:i], "/")) {
				excluded = !p.include
				break
			}
		}
	}
	return excluded
}

var copyRE = regexp.MustCompile(`(?m)^COPY\s+(?:--\S+\s+)*(.+)$`)

// copySources returns the context sources of the COPY instructions (not --from=stage ones).
func copySources(dockerfile string) []string {
	var out []string
	for _, m := range copyRE.FindAllStringSubmatch(dockerfile, -1) {
		if strings.Contains(m[0], "--from=") {
			continue
		}
		fields := strings.Fields(m[1])
		for _, f := range fields[:len(fields)-1] {
			out = append(out, strings.Trim(f, "/"))
		}
	}
	return out
}

func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	ignore := readDockerignore(t, filepath.Join(root, ".dockerignore"))

	stages := regexp.MustCompile(`(?m)^FROM\s+.*$`).FindAllString(df, -1)
	if len(stages) != 2 {
		t.Fatalf("want a builder and a final stage, got %q", stages)
	}
	if !strings.Contains(stages[0], "golang:") || !strings.Contains(df, "ARG GO_VERSION=1.26") {
		t.Errorf("builder stage %q is not golang:1.26", stages[0])
	}
	if !strings.Contains(stages[1], "gcr.io/distroless/static:nonroot") {
		t.Errorf("final stage %q is not distroless static nonroot", stages[1])
	}
	final := df[strings.LastIndex(df, "\nFROM "):]
	for _, want := range []string{"USER 65532:65532", `ENTRYPOINT ["/signet"]`, "COPY --from=builder /out/signet /signet"} {
		if !strings.Contains(final, want) {
			t.Errorf("final stage lacks %s", want)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-o /out/signet ."} {
		if !strings.Contains(df, want) {
			t.Errorf("builder lacks %s", want)
		}
	}

	// Every source file of every package of this module linked into the binary must be
	// copied into the builder and present in the build context.
	out, _ := run(t, root, nil, "go", "list", "-deps", "-f",
		`{{if and (not .Standard) .Module}}{{if .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}
{{end}}{{end}}{{end}}`, ".")
	copied := copySources(df[:strings.LastIndex(df, "\nFROM ")])
	files := strings.Fields(string(out))
	if len(files) == 0 {
		t.Fatal("go list found no source files of the binary")
	}
	for _, f := range append(files, filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum")) {
		rel, err := filepath.Rel(root, f)
		if err != nil {
			t.Fatal(err)
		}
		rel = filepath.ToSlash(rel)
		covered := false
		for _, src := range copied {
			covered = covered || rel == src || strings.HasPrefix(rel, src+"/")
		}
		if !covered {
			t.Errorf("%s is part of the binary but no COPY in the builder stage copies it", rel)
		}
		if ignore.excluded(rel) {
			t.Errorf("%s is part of the binary but .dockerignore leaves it out of the build context", rel)
		}
	}
	for _, rel := range []string{"bin/k8s/kube-apiserver", ".git/HEAD", "dist/install.yaml", "controllers/suite_test.go", "internal/keys/testdata/x.pem"} {
		if !ignore.excluded(rel) {
			t.Errorf(".dockerignore sends %s to the build context", rel)
		}
	}

	// The bundle image copies bundle/ from the same context.
	bdata, err := os.ReadFile(filepath.Join(root, "bundle.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range copySources(string(bdata)) {
		if ignore.excluded(src + "/x.yaml") {
			t.Errorf("bundle.Dockerfile copies %s, which .dockerignore excludes", src)
		}
		if _, err := os.Stat(filepath.Join(root, src)); err != nil {
			t.Errorf("bundle.Dockerfile copies %s: %v", src, err)
		}
	}
}
