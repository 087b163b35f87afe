// Package cli tests the signet subcommands end to end: in process (cli.Run) and through
// the real binary built from the repository root (go build -o $TMP/signet ., with the
// version stamped by -ldflags as the Makefile stamps it).
package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-operator/signet/internal/cli"
	"github.com/signet-operator/signet/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// result is one run of the CLI.
type result struct {
	code     int
	out, err string
}

func (r result) want(t *testing.T, code int, substrings ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.out, r.err)
	}
	for _, s := range substrings {
		if !strings.Contains(r.out+r.err, s) {
			t.Errorf("output does not contain %q\nstdout:\n%s\nstderr:\n%s", s, r.out, r.err)
		}
	}
}

// runner runs signet with arguments and standard input.
type runner interface {
	run(t *testing.T, stdin string, args ...string) result
}

type inProcess struct{}

func (inProcess) run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), args, cli.Streams{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return result{code, out.String(), errb.String()}
}

type binary struct{ path, home string }

func (b binary) run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.path, args...)
	cmd.Env = b.env()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running %s: %v", b.path, err)
	}
	return result{code, out.String(), errb.String()}
}

// env is a minimal environment: no kubeconfig and no in-cluster variables, so a binary
// without the subcommand hook fails fast instead of starting the operator against a
// cluster; HOME is empty so no Docker credentials are used.
func (b binary) env() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + b.home,
		"KUBECONFIG=" + filepath.Join(b.home, "no-kubeconfig"),
		"DOCKER_CONFIG=" + filepath.Join(b.home, "docker"),
	}
}

// The version the test binary is stamped with, as `make build` and `make release` stamp it.
const (
	stampVersion = "v0.0.0-test"
	stampCommit  = "0123456789abcdef0123456789abcdef01234567"
	stampFlags   = "-X github.com/signet-operator/signet/internal/cli.Version=" + stampVersion +
		" -X github.com/signet-operator/signet/internal/cli.Commit=" + stampCommit
)

var (
	buildOnce  sync.Once
	built      binary
	buildSkip  string // why the binary tests are skipped
	buildError error
)

// signetBinary builds the operator binary once and checks that it dispatches subcommands.
func signetBinary(t *testing.T) binary {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: not building the signet binary")
	}
	buildOnce.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			buildError = err
			return
		}
		dir, err := os.MkdirTemp("", "signet-cli-test-")
		if err != nil {
			buildError = err
			return
		}
		built = binary{path: filepath.Join(dir, "signet"), home: dir}
		cmd := exec.Command("go", "build", "-ldflags", stampFlags, "-o", built.path, ".")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildError = fmt.Errorf("go build -o %s . (in %s): %v\n%s", built.path, root, err, out)
			return
		}
		probe := built.run(t, "", "help")
		if probe.code != 0 || !strings.Contains(probe.out, "signet render") {
			buildSkip = fmt.Sprintf("main.go does not dispatch subcommands: `signet help` exited %d (%s)",
				probe.code, strings.TrimSpace(firstLine(probe.err+probe.out)))
		}
	})
	if buildError != nil {
		t.Fatal(buildError)
	}
	if buildSkip != "" {
		t.Skip(buildSkip)
	}
	return built
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// eachRunner runs f in process and through the binary.
func eachRunner(t *testing.T, f func(t *testing.T, r runner)) {
	t.Helper()
	t.Run("in-process", func(t *testing.T) { f(t, inProcess{}) })
	t.Run("binary", func(t *testing.T) { f(t, signetBinary(t)) })
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if built.home != "" {
		_ = os.RemoveAll(built.home)
	}
	os.Exit(code)
}

func TestHelpAndVersion(t *testing.T) {
	eachRunner(t, func(t *testing.T, r runner) {
		r.run(t, "", "help").want(t, 0, "signet render", "signet verify", "signet lint")
		r.run(t, "", "version").want(t, 0, "signet ")
		r.run(t, "", "lint", "--no-such-flag").want(t, 2, "flag provided but not defined")
	})
}
