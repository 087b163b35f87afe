// Package cli implements the command line of the signet binary: the operator itself
// (`signet manager`, also spelled `signet run`) and offline checks of TrustedRegistry
// manifests for GitOps pipelines and release jobs. Every run names its command: an unknown
// command, a bare flag or a stray argument is a usage error (exit 2), so that a typo never
// starts the operator against the current kubeconfig.
//
//	signet manager [flags]                            run the operator
//	signet render -f tr.yaml --key ci=cosign.pub      the exact policies the operator applies
//	signet verify IMAGE -f tr.yaml --key ci=cosign.pub would the policy admit IMAGE?
//	signet lint -f tr.yaml [FILE|DIR...]              would the apiserver accept the manifests?
//	signet help | signet version
//
// Exit codes: 0 success; 1 the check failed (invalid manifest, image denied) or the operator
// stopped with an error; 2 usage, I/O or registry errors.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

// Exit codes.
const (
	ExitOK     = 0 // success
	ExitFailed = 1 // the check failed: invalid manifest, image denied
	ExitUsage  = 2 // bad usage, unreadable input, registry unreachable
)

// Version and Commit are printed by `signet version`. Release builds set them with
// -ldflags "-X github.com/signet-operator/signet/internal/cli.Version=v0.1.0
// -X github.com/signet-operator/signet/internal/cli.Commit=<git sha>" (see the Makefile's
// build and release targets); when empty, the module version and the VCS revision recorded
// by the Go toolchain (debug.ReadBuildInfo) are used.
var (
	Version = ""
	Commit  = ""
)

// Manager runs the operator with its flags (os.Args after "manager") until ctx ends and
// returns the exit code. main sets it, so that this package does not link the controllers;
// a binary without it refuses `signet manager`.
var Manager func(ctx context.Context, args []string, s Streams) int

// Streams are the standard streams of a command.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, s Streams) int
}

func commands() []command {
	return []command{
		{"manager", "run the operator (alias: run); see signet manager -h", runManager},
		{"render", "print the Kyverno policy the operator would apply for a TrustedRegistry manifest", runRender},
		{"verify", "check images the way the generated policy would (cosign signatures, registry, digest)", runVerify},
		{"lint", "validate TrustedRegistry manifests offline, with the apiserver's schema, defaults and CEL rules", runLint},
		{"help", "show help for signet or for a command", runHelp},
		{"version", "print the version", runVersion},
	}
}

// aliases are other spellings of a command.
var aliases = map[string]string{"run": "manager"}

func lookup(name string) (command, bool) {
	if a, ok := aliases[name]; ok {
		name = a
	}
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func runManager(ctx context.Context, args []string, s Streams) int {
	if Manager == nil {
		fmt.Fprintln(s.Err, "signet manager: this binary was built without the operator")
		return ExitUsage
	}
	return Manager(ctx, args, s)
}

// Main runs the subcommand in args (os.Args[1:]) with os.Stdin as standard input and
// returns the exit code. SIGINT and SIGTERM cancel it.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, args, Streams{In: os.Stdin, Out: stdout, Err: stderr})
}

// Run is Main with explicit streams and context, for tests and embedding.
func Run(ctx context.Context, args []string, s Streams) int {
	if s.In == nil {
		s.In = strings.NewReader("")
	}
	if len(args) == 0 {
		usage(s.Err)
		return ExitUsage
	}
	if isHelpFlag(args[0]) && len(args) == 1 {
		usage(s.Out)
		return ExitOK
	}
	c, ok := lookup(args[0])
	if !ok {
		if strings.HasPrefix(args[0], "-") && !isHelpFlag(args[0]) {
			// the operator's flags without the command: the old spelling of `signet manager`
			fmt.Fprintf(s.Err, "signet: %q is not a command; to run the operator, say so: signet manager %s\n\n", args[0], strings.Join(args, " "))
		} else if !strings.HasPrefix(args[0], "-") {
			fmt.Fprintf(s.Err, "signet: unknown command %q\n\n", args[0])
		}
		usage(s.Err)
		return ExitUsage
	}
	return c.run(ctx, args[1:], s)
}

func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

func usage(w io.Writer) {
	fmt.Fprint(w, `signet: the Signet operator and its offline checks.

Usage:
  signet <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Examples:
  signet manager --leader-elect                               # the operator (as the Deployment runs it)
  signet lint deploy/trust/                                   # every manifest in a directory
  signet render -f trust/yourorg.yaml --key ci-2026=cosign.pub
  signet verify ghcr.io/yourorg/app@sha256:… -f trust/yourorg.yaml --key ci-2026=cosign.pub

Run "signet help <command>" for a command's flags.
Exit codes: 0 success; 1 the check failed (invalid manifest, image denied); 2 usage, I/O or
registry errors.
`)
}

func runHelp(_ context.Context, args []string, s Streams) int {
	if len(args) == 0 {
		usage(s.Out)
		return ExitOK
	}
	if len(args) > 1 {
		fmt.Fprintf(s.Err, "signet help: takes one command, not %q\n", strings.Join(args, " "))
		return ExitUsage
	}
	c, ok := lookup(args[0])
	if !ok || c.name == "help" || c.name == "version" {
		if !ok {
			fmt.Fprintf(s.Err, "signet: unknown command %q\n\n", args[0])
			usage(s.Err)
			return ExitUsage
		}
		usage(s.Out)
		return ExitOK
	}
	return c.run(context.Background(), []string{"-h"}, Streams{In: s.In, Out: s.Out, Err: s.Out})
}

func runVersion(_ context.Context, args []string, s Streams) int {
	if len(args) > 0 {
		fmt.Fprintln(s.Err, "signet version: takes no arguments")
		return ExitUsage
	}
	fmt.Fprintf(s.Out, "signet %s\n", versionString())
	return ExitOK
}

// versionString is "VERSION (commit REV) GOVERSION": -ldflags first, then what the Go
// toolchain recorded (a `go install …@vX` build knows its module version; a build in a git
// checkout knows its revision).
func versionString() string {
	v, rev, dirty, goVersion := Version, Commit, "", ""
	if info, ok := debug.ReadBuildInfo(); ok {
		goVersion = info.GoVersion
		if v == "" {
			v = info.Main.Version
		}
		for _, st := range info.Settings {
			switch st.Key {
			case "vcs.revision":
				if rev == "" {
					rev = st.Value
				}
			case "vcs.modified":
				if st.Value == "true" && Commit == "" {
					dirty = "-dirty"
				}
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " (commit " + rev + dirty + ")"
	}
	if goVersion != "" {
		v += " " + goVersion
	}
	return v
}

// newFlagSet returns a FlagSet that prints its usage (header, then the flags) to the
// command's error stream, or to Out for -h.
func newFlagSet(name, synopsis, description string, s Streams) *flag.FlagSet {
	fs := flag.NewFlagSet("signet "+name, flag.ContinueOnError)
	fs.SetOutput(s.Err)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: signet %s %s\n\n%s\n\nFlags:\n", name, synopsis, strings.TrimSpace(description))
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses flags and positional arguments in any order ("verify IMAGE -f x");
// everything after "--" is positional. It returns the positional arguments, or an exit
// code when parsing ended the command (-h: ExitOK, an error: ExitUsage).
func parseFlags(fs *flag.FlagSet, args []string, s Streams) ([]string, int, bool) {
	var rest []string
	for i, a := range args {
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			args = args[:i]
			break
		}
	}
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(s.Out)
			fs.Usage()
			return nil, ExitOK, false
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, ExitOK, false
			}
			return nil, ExitUsage, false
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	return append(pos, rest...), 0, true
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (f *stringsFlag) String() string { return strings.Join(*f, ",") }
func (f *stringsFlag) Set(v string) error {
	*f = append(*f, v)
	return nil
}

// keyFlag is a repeatable NAME=PATH flag.
type keyFlag []keyArg

type keyArg struct{ name, path string }

func (f *keyFlag) String() string {
	parts := make([]string, 0, len(*f))
	for _, k := range *f {
		parts = append(parts, k.name+"="+k.path)
	}
	return strings.Join(parts, ",")
}

func (f *keyFlag) Set(v string) error {
	n, p, ok := strings.Cut(v, "=")
	if !ok || n == "" || p == "" {
		return fmt.Errorf("want NAME=PATH (the spec.keys name and a PEM public key file, e.g. ci=cosign.pub), got %q", v)
	}
	*f = append(*f, keyArg{name: n, path: p})
	return nil
}
