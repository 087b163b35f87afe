// Command bench measures Signet's operator against a local control plane (kube-apiserver
// and etcd from bin/k8s, Signet's and Kyverno's CRDs, no Kyverno running), with the manager
// running in this process exactly as main.go sets it up, and prints a table:
//
//   - C0: the ceiling, raw server-side apply of a generated ImageValidatingPolicy, with
//     main.go's client limits (QPS 50, burst 100) and with none;
//   - P1: write requests after convergence, across a restart and forced resyncs (must be 0);
//   - P2: convergence of 100 and 1,000 TrustedRegistries created at once, against C0;
//   - P3: key rotation latency, a Secret used by 1 and by 1,000 registries, against C0;
//   - P4: the manager's heap and RSS with 10k unrelated Secrets and 10k PolicyReports;
//   - I1: Pod insights: the operator's CPU and writes for a burst of 1,000 Pod CREATEs in a
//     namespace guarded by 0, 1 and 300 TrustedRegistries (insights.go);
//   - requests per reconcile.
//
// Results are written as JSON to bench/results/<date>.json.
//
//	go run ./test/bench/controller            # full run, ~10 minutes
//	go run ./test/bench/controller -quick     # smoke run: 100 registries, short windows
//	go run ./test/bench/controller -profile   # also CPU and heap profiles next to the JSON
//	go run ./test/bench/controller -only insights  # I1 alone (about 2 minutes)
//	go run ./test/bench/controller -quick -only converge  # C0, P2, P3 alone (about 1 minute)
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/signet-operator/signet/test/bench/kit"
	"go.uber.org/zap/zapcore"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"syscall"
	"time"
)

// settings size one run.
type settings struct {
	Mode string
	// WithoutAdmission leaves config/admission out: Signet then patches each new registry's
	// finalizer itself, as on Kubernetes < 1.36.
	WithoutAdmission bool
	// C0Sizes are the object counts of the C0 runs (each at main.go's limits and
	// unlimited); C0Sequential objects are applied one at a time for the unloaded latency.
	C0Sizes      []int
	C0Sequential int
	// P2 batches, in order; the first must have its own Secret per registry (P3 single and
	// P4 reports use it), the last shared batch is P3's shared-key case.
	P2 []p2Batch
	// P3 repeats.
	P3SingleRepeats int
	P3SharedRepeats int
	// P1 window and the SyncPeriod of the manager it observes.
	P1Window     time.Duration
	P1SyncPeriod time.Duration
	// P4 object counts.
	P4Secrets     int
	P4SecretBytes int
	P4Reports     int
	P4Steps       int
	// I1: the registries guarding the namespace of each Pod burst, and the Pods per burst;
	// OnlyInsights runs I1 alone (after the warm-up).
	I1Registries []int
	I1Pods       int
	OnlyInsights bool
	// OnlyConverge stops after P3 (C0, P2, P3: the convergence figures alone).
	OnlyConverge bool
	// Quiet is how long the reconciler must be idle before a measurement; Timeout bounds
	// every wait.
	Quiet   time.Duration
	Timeout time.Duration
}

type p2Batch struct {
	Name   string
	N      int
	Shared bool
}

func fullSettings() settings {
	return settings{
		Mode:            "full",
		C0Sizes:         []int{100, 1000},
		C0Sequential:    30,
		P2:              []p2Batch{{Name: "own", N: 100}, {Name: "shared", N: 1000, Shared: true}},
		P3SingleRepeats: 10,
		P3SharedRepeats: 3,
		P1Window:        60 * time.Second,
		P1SyncPeriod:    20 * time.Second,
		P4Secrets:       10000,
		P4SecretBytes:   32 << 10,
		P4Reports:       10000,
		P4Steps:         4,
		I1Registries:    []int{0, 1, 300},
		I1Pods:          1000,
		Quiet:           1500 * time.Millisecond,
		Timeout:         10 * time.Minute,
	}
}

func quickSettings() settings {
	return settings{
		Mode:            "quick",
		C0Sizes:         []int{100},
		C0Sequential:    20,
		P2:              []p2Batch{{Name: "own", N: 100}, {Name: "shared", N: 100, Shared: true}},
		P3SingleRepeats: 5,
		P3SharedRepeats: 2,
		P1Window:        15 * time.Second,
		P1SyncPeriod:    5 * time.Second,
		P4Secrets:       2000,
		P4SecretBytes:   32 << 10,
		P4Reports:       2000,
		P4Steps:         2,
		I1Registries:    []int{0, 1, 300},
		I1Pods:          1000,
		Quiet:           time.Second,
		Timeout:         5 * time.Minute,
	}
}

func main() {
	quick := flag.Bool("quick", false, "smoke run: 100 registries, short windows (about 3 minutes)")
	procs := flag.Int("gomaxprocs", 1, "GOMAXPROCS of this process (the manager and the harness); the control plane runs in its own processes")
	out := flag.String("out", "", "directory for the JSON results (default: <repo>/bench/results)")
	profile := flag.Bool("profile", false, "write CPU profiles of P2, P3 and each I1 burst and heap profiles of P4 next to the JSON")
	verbose := flag.Bool("v", false, "log the manager's info messages")
	admission := flag.Bool("admission", true, "install config/admission (new registries are created with Signet's finalizer); false: Signet patches each new registry's finalizer, as on Kubernetes < 1.36")
	only := flag.String("only", "", `"insights": run only the Pod insights scenario I1 (with -quick's windows); "converge": only C0, P2 and P3 (with -quick, 100 registries; without, 1,000)`)
	flag.Parse()

	runtime.GOMAXPROCS(*procs)
	level := zapcore.ErrorLevel
	if *verbose {
		level = zapcore.InfoLevel
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(level)))

	s := fullSettings()
	if *quick {
		s = quickSettings()
	}
	switch *only {
	case "":
	case "insights":
		s = quickSettings()
		s.Mode, s.OnlyInsights = "insights", true
	case "converge":
		s.Mode, s.OnlyConverge = s.Mode+"-converge", true
	default:
		fatal(fmt.Errorf("-only %q: only \"insights\" and \"converge\" are known", *only))
	}
	s.WithoutAdmission = !*admission
	dir, err := kit.ResultsDir(*out)
	if err != nil {
		fatal(err)
	}
	start := time.Now()
	profiles := ""
	if *profile {
		if !s.OnlyInsights {
			// fine-grained heap profiles for the P4 attribution (I1 alone takes none: the
			// sampling would add its own CPU to the CPU profiles and to the I1 figures)
			runtime.MemProfileRate = 4096
		}
		profiles = filepath.Join(dir, kit.DateStamp(start)+"-profiles")
		if err := os.MkdirAll(profiles, 0o755); err != nil {
			fatal(err)
		}
	}
	// Ctrl-C stops the scenario in progress; the control plane is still stopped.
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	res, err := run(ctx, s, start, profiles, os.Stderr)
	cancel()
	if res != nil {
		res.printTable(os.Stdout)
		path := filepath.Join(dir, kit.DateStamp(start)+".json")
		if werr := kit.WriteJSON(path, res); werr != nil {
			fatal(werr)
		}
		fmt.Println("\nresults:", path)
		if profiles != "" {
			fmt.Println("profiles:", profiles)
		}
	}
	if err != nil {
		fatal(err)
	}
	if !res.ok() {
		os.Exit(2)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// run performs every scenario in order on one control plane and returns what it measured
// (also when a scenario fails: the results so far).
func run(ctx context.Context, s settings, start time.Time, profiles string, logw io.Writer) (*results, error) {
	logf := func(format string, args ...any) {
		_, _ = fmt.Fprintf(logw, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	res := &results{
		Date: start.UTC().Format(time.RFC3339), Mode: s.Mode, Machine: machineInfo(), Versions: versionInfo(),
		ManagerGOMAXPROCS: runtime.GOMAXPROCS(0), ManagerQPS: mainQPS, ManagerBurst: mainBurst, ManagerWorkers: mainWorkers,
		ManagerOptions: "internal/operator.New with main.go's defaults: count-blocked and pod-insights on, rotation-preview off",
		Profiles:       profiles,
		Admission:      !s.WithoutAdmission,
	}
	defer func() {
		res.Machine.LoadAtEnd = kit.LoadAvg()
		res.DurationSeconds = time.Since(start).Seconds()
		res.evaluate()
	}()

	w := waits{quiet: s.Quiet, timeout: s.Timeout}
	logf("starting kube-apiserver and etcd (Signet and Kyverno CRDs; config/admission: %v)", !s.WithoutAdmission)
	cp, err := startControlPlane(ctx, !s.WithoutAdmission)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := cp.stop(); err != nil {
			logf("stopping the control plane: %v", err)
		}
	}()

	// C0.
	tmpl, err := policyTemplate()
	if err != nil {
		return res, err
	}
	c0Sizes, c0Sequential := s.C0Sizes, s.C0Sequential
	if s.OnlyInsights {
		c0Sizes, c0Sequential = nil, 0
	}
	for _, n := range c0Sizes {
		for _, lim := range []struct {
			qps   float32
			burst int
		}{{mainQPS, mainBurst}, {unlimitedQPS, unlimitedBurst}} {
			logf("C0: %d policies, QPS %v", n, lim.qps)
			c, err := runC0(ctx, cp, tmpl, n, mainWorkers, lim.qps, lim.burst, false, w)
			if err != nil {
				return res, err
			}
			res.C0 = append(res.C0, c)
		}
	}
	if c0Sequential > 0 {
		logf("C0: %d policies one at a time", c0Sequential)
		c, err := runC0(ctx, cp, tmpl, c0Sequential, 1, mainQPS, mainBurst, true, w)
		if err != nil {
			return res, err
		}
		res.C0 = append(res.C0, c)
	}

	// P2, with the first manager.
	logf("starting the manager (GOMAXPROCS=%d)", runtime.GOMAXPROCS(0))
	m, err := startManager(cp, managerOptions{qps: mainQPS, burst: mainBurst, workers: mainWorkers})
	if err != nil {
		return res, err
	}
	stopped := false
	stop := func() {
		if !stopped {
			_ = waitIdle(ctx, waits{quiet: w.quiet, timeout: time.Minute})
			stopped = true
			if err := m.stop(); err != nil {
				logf("stopping the manager: %v", err)
			}
		}
	}
	defer stop()
	if err := waitIdle(ctx, w); err != nil {
		return res, err
	}
	// One registry first: the manager starts its policy, report, Pod and Event informers
	// lazily, on the first reconcile that needs them; P2 measures convergence, not that.
	logf("warm-up: 1 registry")
	warm, err := runP2(ctx, cp, m, "warmup", 1, false, w)
	if err != nil {
		return res, err
	}
	res.Warmup = &warm
	if s.OnlyInsights {
		return res, runInsights(ctx, cp, m, s, res, profiles, logf, w)
	}
	total := 1
	res.P4.Registries.Name = "registries"
	res.P4.Registries.Samples = append(res.P4.Registries.Samples, measureMemory(total))
	for i, b := range s.P2 {
		logf("P2: %d registries (shared Secret: %v)", b.N, b.Shared)
		done := func() {}
		if i == len(s.P2)-1 {
			done = cpuProfile(profiles, "p2-"+b.Name)
		}
		p, err := runP2(ctx, cp, m, b.Name, b.N, b.Shared, w)
		done()
		if err != nil {
			return res, err
		}
		res.P2 = append(res.P2, p)
		total += b.N
		res.P4.Registries.Samples = append(res.P4.Registries.Samples, measureMemory(total))
	}
	res.P4.Registries.finish()

	// P3.
	first := s.P2[0]
	logf("P3: rotating the key of 1 registry, %d times", s.P3SingleRepeats)
	p3, err := runP3(ctx, cp, m, "single", registryName(first.Name, 0)+"-key", []string{registryName(first.Name, 0)}, s.P3SingleRepeats, w)
	if err != nil {
		return res, err
	}
	res.P3 = append(res.P3, p3)
	for i := len(s.P2) - 1; i >= 0; i-- {
		b := s.P2[i]
		if !b.Shared {
			continue
		}
		names := make([]string, b.N)
		for j := range names {
			names[j] = registryName(b.Name, j)
		}
		logf("P3: rotating a key shared by %d registries, %d times", b.N, s.P3SharedRepeats)
		done := cpuProfile(profiles, "p3-shared")
		p3, err := runP3(ctx, cp, m, "shared", sharedSecretName(b.Name), names, s.P3SharedRepeats, w)
		done()
		if err != nil {
			return res, err
		}
		res.P3 = append(res.P3, p3)
		break
	}
	if s.OnlyConverge {
		return res, nil
	}
	if err := runInsights(ctx, cp, m, s, res, profiles, logf, w); err != nil {
		return res, err
	}
	stop()

	// P1: a restarted manager with a short SyncPeriod.
	logf("P1: restarting the manager with SyncPeriod %s, then %s of steady state", s.P1SyncPeriod, s.P1Window)
	p1, m1, err := runP1(ctx, cp, total, s.P1SyncPeriod, s.P1Window, w)
	if m1 != nil {
		if err := m1.stop(); err != nil {
			logf("stopping the manager: %v", err)
		}
	}
	if err != nil {
		return res, err
	}
	res.P1 = &p1

	// P4 with a fresh manager, as main.go runs it.
	logf("P4: memory; starting the manager again")
	m, err = startManager(cp, managerOptions{qps: mainQPS, burst: mainBurst, workers: mainWorkers})
	if err != nil {
		return res, err
	}
	stopped = false
	if err := waitIdle(ctx, w); err != nil {
		return res, err
	}
	heapProfile(profiles, "p4-baseline")
	logf("P4: %d unrelated Secrets of %d KiB in other namespaces", s.P4Secrets, s.P4SecretBytes>>10)
	if res.P4.Secrets, err = runP4Secrets(ctx, cp, s.P4Secrets, s.P4SecretBytes, s.P4Steps, w); err != nil {
		return res, err
	}
	heapProfile(profiles, "p4-after-secrets")
	logf("P4: %d PolicyReports", s.P4Reports)
	regs := make([]string, first.N)
	for j := range regs {
		regs[j] = registryName(first.Name, j)
	}
	if res.P4.Reports, err = runP4Reports(ctx, cp, m, s.P4Reports, s.P4Steps, regs, w); err != nil {
		return res, err
	}
	heapProfile(profiles, "p4-after-reports")
	logf("done")
	return res, nil
}

// runInsights runs I1 once per registry count.
func runInsights(ctx context.Context, cp *controlPlane, m *runningManager, s settings, res *results, profiles string, logf func(string, ...any), w waits) error {
	for _, n := range s.I1Registries {
		logf("I1: %d TrustedRegistries guarding one namespace, then %d Pod CREATEs there", n, s.I1Pods)
		x, err := runI1(ctx, cp, m, n, s.I1Pods, w, func() func() { return cpuProfile(profiles, fmt.Sprintf("i1-%d", n)) })
		if err != nil {
			return err
		}
		res.I1 = append(res.I1, x)
	}
	return nil
}
