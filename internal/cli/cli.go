// Package cli implements the subcommands of the signet binary: offline checks of
// TrustedRegistry manifests for GitOps pipelines and release jobs. The operator (manager)
// stays the default when the first argument is not a subcommand.
//
//	signet render -f tr.yaml --key ci=cosign.pub      the exact policies the operator applies
//	signet verify IMAGE -f tr.yaml --key ci=cosign.pub would the policy admit IMAGE?
//	signet lint -f tr.yaml [FILE|DIR...]              would the apiserver accept the manifests?
//	signet help | signet version
//
// Exit codes: 0 success; 1 the check failed (invalid manifest, image denied); 2 usage, I/O
// or registry errors.
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

// Version is the version printed by `signet version`. Set it at build time with
// -ldflags "-X github.com/signet-operator/signet/internal/cli.Version=v0.1.0"; when empty,
// the module version and VCS revision recorded by the Go toolchain are used.
var Version = ""

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
		{"render", "print the Kyverno policy the operator would apply for a TrustedRegistry manifest", runRender},
		{"verify", "check images the way the generated policy would (cosign signatures, registry, digest)", runVerify},
		{"lint", "validate TrustedRegistry manifests offline, with the apiserver's schema, defaults and CEL rules", runLint},
		{"help", "show help for signet or for a command", runHelp},
		{"version", "print the version", runVersion},
	}
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// IsSubcommand reports whether args (os.Args[1:]) start with a signet subcommand; when
// they do not, main runs the operator as before.
func IsSubcommand(args []string) bool {
	if len(args) == 0 {
		return false
	}
	_, ok := lookup(args[0])
	return ok
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
	c, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(s.Err, "signet: unknown command %q\n\n", args[0])
		usage(s.Err)
		return ExitUsage
	}
	return c.run(ctx, args[1:], s)
}

func usage(w io.Writer) {
	fmt.Fprint(w, `signet: the Signet operator and its offline checks.

Usage:
  signet [operator flags]          run the operator (manager); see signet -h
  signet <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Examples:
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

func versionString() string {
	if Version != "" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, dirty string
	for _, st := range info.Settings {
		switch st.Key {
		case "vcs.revision":
			rev = st.Value
		case "vcs.modified":
			if st.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " (" + rev + dirty + ")"
	}
	return v + " " + info.GoVersion
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
