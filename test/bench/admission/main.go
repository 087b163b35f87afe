// Command bench-admission measures what the number of Kyverno policies costs every Pod
// admission (docs/architecture.md, "The shared layout": admission cost must stay flat as
// registries grow). It measures Signet's layout (whatever the operator generates), the
// naive one policy per TrustedRegistry, and the shared layout of internal/render
// (RenderShared: a bounded set of policies for all registries), side by side.
//
// On one machine it starts etcd, kube-apiserver, kube-controller-manager and the real Kyverno
// admission controller (internal/localstack), an in-process OCI registry with one image
// signed offline by a cosign key (internal/ocitest) and Signet's manager in this process
// (internal/operator, as main.go builds it). Then, for every N of -n and every variant,
//
//   - signet-ivp:  N TrustedRegistries with spec.policy.engine ImageValidatingPolicy,
//   - naive-ivp:   N ImageValidatingPolicies rendered with render.Render (one per
//     registry) and applied without Signet;
//   - shared-ivp:  the ImageValidatingPolicies render.RenderShared renders for the same N
//     registries (signet.ivp.enforce, …; here named shared.ivp.enforce, …), applied
//     without Signet;
//   - signet-cpol: N TrustedRegistries with spec.policy.engine ClusterPolicy,
//   - shared-cpol: the one ClusterPolicy render.RenderShared renders for the N registries
//     (signet.cpol.all, here shared.cpol.all), applied without Signet,
//
// it waits until every registry is Ready (Signet variants), Kyverno reports every policy
// of the step ready and lists it in its webhook configuration, and the policy of the last
// registry denies an unsigned image; then it creates -warmup + -requests real Pods
// (sequentially) in the one guarded namespace `production`, and records the latency of
// each CREATE, Kyverno's CPU time and memory. The policies of a Signet step are those
// labelled app.kubernetes.io/managed-by=signet (and those the registries' status names),
// so the Signet variants work with one policy per registry as with shared policies.
// Signet's manager runs while a Signet step loads and is stopped while Pods are
// measured (its Pod insights reconcile every registry on every Pod event, which would
// compete with Kyverno for the same cores); -signet-during-measure keeps it running. Between steps it deletes everything, waits until Kyverno has removed the
// policies from its webhook configuration and restarts Kyverno. A 0-policy baseline is
// measured at the start and at the end.
//
// Registry i trusts <registry>/team-<i>/* in production, restrictRegistries true (the
// allowed images are the union of all N registries' patterns, see README.md
// "Composition"), offline (transparencyLog.ignore), Enforce; even i share one key, odd i
// have a key each. The naive and shared variants render registry i from exactly that spec and key.
// The measured Pod runs one image under team-0, signed with the shared key: every
// policy is evaluated, one verifies a signature (cached by Kyverno after the warm-up).
//
//	go run ./test/bench/admission                    # N = 1,30,100,300, all variants, 20 requests
//	go run ./test/bench/admission -quick             # N = 1,30, 10 requests
//	go run ./test/bench/admission -n 1,10 -requests 30 -variants signet-ivp,naive-ivp
//	go run ./test/bench/admission -n 1,30,100 -variants shared-ivp,shared-cpol,naive-ivp
//
// The table (median and p99 per variant and N, and median(N=max)/median(N=min) per
// variant) goes to stdout, progress to stderr, JSON to bench/results/admission-<date>.json.
// The machine is usually shared: compare ratios measured within one run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/test/bench/kit"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// variant is one way of putting N registries into the cluster.
type variant struct {
	ID     string               `json:"id"`
	Label  string               `json:"label"`
	Kind   string               `json:"kind"`
	Engine trustv1alpha1.Engine `json:"-"`
	Signet bool                 `json:"viaSignet"`
	// Shared: without Signet, the policies render.RenderShared renders for all N
	// registries; otherwise (and not Signet) one render.Render policy per registry.
	Shared bool `json:"sharedLayout,omitempty"`
}

// variants in the order they run for each N: the naive and shared baselines right after
// Signet's ImageValidatingPolicies, so they are measured minutes apart.
var allVariants = []variant{
	{ID: "signet-ivp", Label: "ImageValidatingPolicy via Signet", Kind: kindIVP, Engine: trustv1alpha1.EngineImageValidatingPolicy, Signet: true},
	{ID: "naive-ivp", Label: "naive ImageValidatingPolicies (no Signet)", Kind: kindIVP, Engine: trustv1alpha1.EngineImageValidatingPolicy},
	{ID: "shared-ivp", Label: "shared ImageValidatingPolicies (no Signet)", Kind: kindIVP, Engine: trustv1alpha1.EngineImageValidatingPolicy, Shared: true},
	{ID: "signet-cpol", Label: "ClusterPolicy via Signet", Kind: kindCP, Engine: trustv1alpha1.EngineClusterPolicy, Signet: true},
	{ID: "shared-cpol", Label: "shared ClusterPolicy (no Signet)", Kind: kindCP, Engine: trustv1alpha1.EngineClusterPolicy, Shared: true},
}

const (
	kindIVP = "ImageValidatingPolicy"
	kindCP  = "ClusterPolicy"

	maxN        = 1000
	maxRequests = 1000
	// targetRatio is the target for median(N=300)/median(N=1) (README.md, "Performance").
	targetRatio = 1.5
)

// config is one run's settings, from the command line.
type config struct {
	Mode        string        `json:"mode"`
	Ns          []int         `json:"n"`
	Requests    int           `json:"requests"`
	Warmup      int           `json:"warmup"`
	Variants    []variant     `json:"variants"`
	MaxLoad     float64       `json:"maxLoad"`
	LoadWait    time.Duration `json:"-"`
	StepTimeout time.Duration `json:"-"`
	Restart     bool          `json:"restartKyvernoBetweenSteps"`
	// SignetDuringMeasure keeps Signet's manager running while Pods are measured.
	SignetDuringMeasure bool   `json:"signetRunsDuringMeasurement"`
	Out                 string `json:"-"`
	Verbose             bool   `json:"-"`
	Keep                bool   `json:"-"`
	// KyvernoProfilePort, when set, makes Kyverno serve Go's pprof endpoints on
	// 127.0.0.1:<port> (its -profile flag), to profile it while Pods are measured.
	KyvernoProfilePort int `json:"kyvernoProfilePort,omitempty"`
}

func parseFlags(args []string, out io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench-admission", flag.ContinueOnError)
	fs.SetOutput(out)
	ns := fs.String("n", "1,30,100,300", "comma-separated numbers of TrustedRegistries per step (-quick: 1,30)")
	requests := fs.Int("requests", 20, "measured Pod CREATEs per step, after the warm-up (-quick: 10)")
	warmup := fs.Int("warmup", 3, "warm-up Pod CREATEs per step, not measured")
	quick := fs.Bool("quick", false, "smoke run: N = 1,30 and 10 requests, no load-average wait")
	vs := fs.String("variants", variantIDs(allVariants), "comma-separated variants to run: "+variantIDs(allVariants))
	maxLoad := fs.Float64("max-load", 2.5, "before starting, wait until the 1-minute load average is below this; 0: do not wait (-quick: 0)")
	loadWait := fs.Duration("load-wait", 15*time.Minute, "give up waiting for -max-load after this long and run anyway")
	stepTimeout := fs.Duration("step-timeout", 20*time.Minute, "bound on one step (load, measure)")
	restart := fs.Bool("restart-kyverno", true, "restart Kyverno after each step has been unloaded, so each step starts from a fresh process")
	signetRunning := fs.Bool("signet-during-measure", false, "keep Signet's manager running while Pods are measured (default: it runs only while a Signet step loads)")
	outDir := fs.String("out", "", "directory for the JSON results (default <repo>/bench/results)")
	verbose := fs.Bool("v", false, "also print Signet's log on stderr (it always goes to a file)")
	profilePort := fs.Int("kyverno-profile-port", 0, "serve Kyverno's pprof endpoints on 127.0.0.1:<port> (e.g. go tool pprof http://127.0.0.1:<port>/debug/pprof/profile?seconds=20 while a step measures); 0: off")
	keep := fs.Bool("keep", false, "keep the stack's directory (Kyverno's and the apiserver's logs) after the run")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./test/bench/admission [-n 1,30,100,300] [-requests 20] [-variants %s] [-quick] [flags]\n\n", variantIDs(allVariants))
		fmt.Fprintf(fs.Output(), "Variants (run in this order for each N):\n")
		for _, v := range allVariants {
			fmt.Fprintf(fs.Output(), "  %-12s %s\n", v.ID, v.Label)
		}
		fmt.Fprintln(fs.Output())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c := config{
		Mode: "full", Requests: *requests, Warmup: *warmup, MaxLoad: *maxLoad, LoadWait: *loadWait,
		StepTimeout: *stepTimeout, Restart: *restart, SignetDuringMeasure: *signetRunning, Out: *outDir, Verbose: *verbose, Keep: *keep,
		KyvernoProfilePort: *profilePort,
	}
	nList := *ns
	if set["n"] || set["requests"] || set["variants"] {
		c.Mode = "custom"
	}
	if *quick {
		c.Mode = "quick" // also with -n, -requests or -variants: it still skips the load wait
		if !set["n"] {
			nList = "1,30"
		}
		if !set["requests"] {
			c.Requests = 10
		}
		if !set["max-load"] {
			c.MaxLoad = 0
		}
	}
	var err error
	if c.Ns, err = parseNs(nList); err != nil {
		return config{}, err
	}
	if c.Variants, err = parseVariants(*vs); err != nil {
		return config{}, err
	}
	switch {
	case c.Requests < 1 || c.Requests > maxRequests:
		return config{}, fmt.Errorf("-requests must be between 1 and %d, not %d", maxRequests, c.Requests)
	case c.Warmup < 0 || c.Warmup > maxRequests:
		return config{}, fmt.Errorf("-warmup must be between 0 and %d, not %d", maxRequests, c.Warmup)
	case c.MaxLoad < 0:
		return config{}, fmt.Errorf("-max-load must not be negative")
	case c.StepTimeout < time.Minute:
		return config{}, fmt.Errorf("-step-timeout must be at least 1m")
	case c.KyvernoProfilePort < 0 || c.KyvernoProfilePort > 65535:
		return config{}, fmt.Errorf("-kyverno-profile-port must be a TCP port, not %d", c.KyvernoProfilePort)
	}
	return c, nil
}

// parseNs parses "1,30,100,300" into sorted, distinct counts in [1, maxN].
func parseNs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("-n: %q is not a number", f)
		}
		if n < 1 || n > maxN {
			return nil, fmt.Errorf("-n: %d is outside 1..%d (the 0-policy baseline is always measured)", n, maxN)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("-n: no registry counts given")
	}
	sort.Ints(out)
	return out, nil
}

func parseVariants(s string) ([]variant, error) {
	want := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		found := false
		for _, v := range allVariants {
			found = found || v.ID == f
		}
		if !found {
			return nil, fmt.Errorf("-variants: unknown variant %q (known: %s)", f, variantIDs(allVariants))
		}
		want[f] = true
	}
	var out []variant
	for _, v := range allVariants {
		if want[v.ID] {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("-variants: none given")
	}
	return out, nil
}

func variantIDs(vs []variant) string {
	ids := make([]string, len(vs))
	for i, v := range vs {
		ids[i] = v.ID
	}
	return strings.Join(ids, ",")
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-admission:", err)
		os.Exit(2)
	}
	dir, err := kit.ResultsDir(cfg.Out)
	if err != nil {
		fatal(err)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	res, err := run(ctx, cfg, logf)
	if res != nil {
		printReport(os.Stdout, res)
		path := filepath.Join(dir, "admission-"+kit.DateStamp(res.start)+".json")
		if werr := kit.WriteJSON(path, res); werr != nil {
			fatal(werr)
		}
		fmt.Println("\nresults:", path)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench-admission:", err)
	os.Exit(1)
}

// run waits for a quiet machine, starts the environment and measures every step; it
// returns what was measured also when a step or the environment fails.
func run(ctx context.Context, cfg config, logf func(string, ...any)) (*results, error) {
	if cfg.MaxLoad > 0 {
		waitForLoad(ctx, cfg.MaxLoad, cfg.LoadWait, 30*time.Second, logf)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	res := newResults(cfg, time.Now())
	defer res.finish()

	e, err := startEnv(ctx, cfg, logf)
	if err != nil {
		return res, err
	}
	defer e.stop()
	res.Versions.Kyverno = kyvernoVersion(e.stack)
	res.StackStartSeconds = e.stack.Timings().Total.Seconds()
	res.LogDir = e.dir

	logf("0-policy baseline")
	b, err := e.baseline(ctx, "base-start")
	if err != nil {
		return res, err
	}
	res.Baselines = append(res.Baselines, b)

	for _, n := range cfg.Ns {
		for _, v := range cfg.Variants {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			logf("%s, N=%d", v.Label, n)
			st, err := e.runStep(ctx, v, n)
			res.Steps = append(res.Steps, st)
			if st.Error != "" {
				logf("  step failed: %s", st.Error)
			}
			if err != nil {
				return res, err
			}
		}
	}

	logf("0-policy baseline again (drift check)")
	b, err = e.baseline(ctx, "base-end")
	if err != nil {
		return res, err
	}
	res.Baselines = append(res.Baselines, b)
	logf("done")
	return res, nil
}
