package main

import (
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"

	"github.com/signet-operator/signet/test/bench/kit"
)

// results is everything one run measured; it is written as JSON to bench/results.
type results struct {
	Date              string        `json:"date"`
	Mode              string        `json:"mode"`
	DurationSeconds   float64       `json:"durationSeconds"`
	Machine           machine       `json:"machine"`
	Versions          versions      `json:"versions"`
	ManagerGOMAXPROCS int           `json:"managerGOMAXPROCS"`
	ManagerQPS        float32       `json:"managerQPS"`
	ManagerBurst      int           `json:"managerBurst"`
	ManagerWorkers    int           `json:"managerWorkers"`
	ManagerOptions    string        `json:"managerOptions"`
	C0                []c0Result    `json:"c0"`
	Warmup            *p2Result     `json:"warmup,omitempty"`
	P2                []p2Result    `json:"p2"`
	P3                []p3Result    `json:"p3"`
	P1                *p1Result     `json:"p1,omitempty"`
	P4                p4Result      `json:"p4"`
	I1                []i1Result    `json:"i1,omitempty"`
	Targets           []targetCheck `json:"targets"`
	Profiles          string        `json:"profilesDir,omitempty"`
	// Admission: config/admission was installed (Signet writes no finalizer for a new
	// registry).
	Admission bool `json:"finalizerPolicy"`
}

type machine struct {
	kit.Machine
	KernelArch string `json:"goosGoarch"`
}

type versions struct {
	kit.Versions
	ClientGo string `json:"clientGo"`
}

type targetCheck struct {
	What   string `json:"what"`
	Target string `json:"target"`
	Value  string `json:"value"`
	OK     bool   `json:"ok"`
}

func machineInfo() machine {
	return machine{Machine: kit.MachineInfo(), KernelArch: runtime.GOOS + "/" + runtime.GOARCH}
}

func versionInfo() versions {
	return versions{Versions: kit.VersionInfo(), ClientGo: kit.DepVersion("k8s.io/client-go")}
}

// --- targets and the table ----------------------------------------------------------------

func (r *results) c0For(n int, qps float32) *c0Result {
	var best *c0Result
	for i := range r.C0 {
		c := &r.C0[i]
		if c.Sequential || c.QPS != qps {
			continue
		}
		if c.Objects == n {
			return c
		}
		if best == nil || c.Objects > best.Objects {
			best = c
		}
	}
	return best
}

func (r *results) c0Sequential() *c0Result {
	for i := range r.C0 {
		if r.C0[i].Sequential {
			return &r.C0[i]
		}
	}
	return nil
}

// fullReports and fullSecrets are the object counts the memory targets are stated for;
// smaller runs are compared by projecting their slope.
const fullObjects = 10000

// evaluate fills in the ratios that need C0 and the target checks.
func (r *results) evaluate() {
	r.Targets = nil
	add := func(what, target, value string, ok bool) {
		r.Targets = append(r.Targets, targetCheck{What: what, Target: target, Value: value, OK: ok})
	}
	if r.P1 != nil {
		add("P1 writes in the steady-state window", "0", strconv.FormatInt(r.P1.Window.Requests.Writes, 10), r.P1.Window.Requests.Writes == 0)
	}
	for i := range r.P2 {
		p := &r.P2[i]
		if c := r.c0For(p.Registries, r.ManagerQPS); c != nil {
			p.C0ObjectsPerSec = c.ObjectsPerSec
			p.Ratio = p.RegistriesPerSec / c.ObjectsPerSec
		}
		add(fmt.Sprintf("P2 convergence, %d registries", p.Registries), "≥ 0.70× C0", fmt.Sprintf("%.2f×", p.Ratio), p.Ratio >= 0.7)
	}
	for i := range r.P3 {
		p := &r.P3[i]
		if c := r.c0For(p.Registries, r.ManagerQPS); c != nil {
			p.ThroughputRatio = p.PoliciesPerSec / c.ObjectsPerSec
		}
		if c := r.c0Sequential(); c != nil && p.P50Ms > 0 {
			p.LatencyRatio = c.LatencyP50Ms / p.P50Ms
		}
		if p.Registries == 1 {
			p.Ratio, p.RatioOf = p.LatencyRatio, "latency: C0 unloaded apply→watch-event p50 / rotation p50"
			add("P3 rotation, 1 registry, p99", "≤ 1000 ms", fmt.Sprintf("%.0f ms", p.P99Ms), p.P99Ms <= 1000)
		} else {
			p.Ratio, p.RatioOf = p.ThroughputRatio, "throughput: policies rotated per second / C0 objects per second"
		}
		add(fmt.Sprintf("P3 rotation, %d registries", p.Registries), "≥ 0.70× C0", fmt.Sprintf("%.2f× (%s)", p.Ratio, p.RatioOf), p.Ratio >= 0.7)
	}
	r.evaluateInsights(add)
	for _, s := range []*memSeries{&r.P4.Secrets, &r.P4.Reports} {
		if len(s.Samples) < 2 {
			continue
		}
		n := s.Samples[len(s.Samples)-1].Objects
		delta := float64(s.HeapDelta)
		what := s.Name + ": heap growth"
		if n != fullObjects && n > 0 {
			delta = max(s.HeapPerObject, 0) * fullObjects
			what += fmt.Sprintf(" (slope × %d)", fullObjects)
		}
		add(what, "≤ "+mib(float64(s.TargetMaxBytes)), mib(delta), delta <= float64(s.TargetMaxBytes))
	}
}

func mib(b float64) string { return fmt.Sprintf("%.2f MiB", b/(1<<20)) }

func (r *results) ok() bool {
	for _, t := range r.Targets {
		if !t.OK {
			return false
		}
	}
	return true
}

func mark(ok bool) string {
	if ok {
		return "✅"
	}
	return "❌"
}

// printTable writes the human summary (Markdown, so it pastes into the README).
func (r *results) printTable(w io.Writer) {
	p := func(format string, args ...any) { _, _ = fmt.Fprintf(w, format, args...) }
	m := r.Machine
	p("\nSignet benchmark, %s (%s mode, %.0f s)\n\n", r.Date, r.Mode, r.DurationSeconds)
	p("- machine: %d × %s, %s; load average %.2f %.2f %.2f at start, %.2f %.2f %.2f at end (shared machine)\n",
		m.NumCPU, m.CPUModel, m.MemTotal, m.LoadAtStart[0], m.LoadAtStart[1], m.LoadAtStart[2], m.LoadAtEnd[0], m.LoadAtEnd[1], m.LoadAtEnd[2])
	v := r.Versions
	p("- versions: %s, %s, etcd %s, controller-runtime %s, client-go %s, signet %s\n",
		v.Go, v.KubeAPIServer, strings.TrimPrefix(v.Etcd, "etcd Version: "), v.ControllerRuntime, v.ClientGo, v.Signet)
	admission := "config/admission installed: new registries are created with Signet's finalizer"
	if !r.Admission {
		admission = "without config/admission: Signet patches each new registry's finalizer (as on Kubernetes < 1.36)"
	}
	p("- manager in-process (%s): GOMAXPROCS=%d, QPS %.0f / burst %d, %d workers; kube-apiserver and etcd are separate processes (envtest, Kyverno CRDs, no Kyverno); %s\n\n",
		r.ManagerOptions, r.ManagerGOMAXPROCS, r.ManagerQPS, r.ManagerBurst, r.ManagerWorkers, admission)

	p("| scenario | result | vs C0 | target |\n|---|---|---|---|\n")
	for _, c := range r.C0 {
		limit := fmt.Sprintf("QPS %.0f/%d", c.QPS, c.Burst)
		if c.QPS >= unlimitedQPS {
			limit = "no client limit"
		}
		if c.Sequential {
			p("| C0 SSA, 1 at a time, %d objects, %s | apply→watch event p50 %.1f ms, p99 %.1f ms | – | – |\n", c.Objects, limit, c.LatencyP50Ms, c.LatencyP99Ms)
			continue
		}
		p("| C0 SSA ceiling, %d objects, %d workers, %s | **%.0f objects/s**; apply→watch event p50 %.0f ms, p99 %.0f ms | – | – |\n",
			c.Objects, c.Workers, limit, c.ObjectsPerSec, c.LatencyP50Ms, c.LatencyP99Ms)
	}
	if x := r.Warmup; x != nil {
		p("| First registry after start (lazy informers start) | Ready after %.2f s | – | (info) |\n", x.Seconds)
	}
	for _, x := range r.P2 {
		keys := "own Secret each"
		if x.SharedSecret {
			keys = "one shared Secret"
		}
		p("| P2 convergence, %d registries (%s) | **%.1f registries/s** (%.1f s; create→Ready p50 %.1f s, p99 %.1f s); %.1f writes/registry | %.2f× | %s ≥ 0.70× |\n",
			x.Registries, keys, x.RegistriesPerSec, x.Seconds, x.ReadyP50Ms/1000, x.ReadyP99Ms/1000, x.Phase.WritesPerObject, x.Ratio, mark(x.Ratio >= 0.7))
	}
	for _, x := range r.P3 {
		if x.Registries == 1 {
			p("| P3 rotation, Secret used by 1 registry (%d runs) | **p50 %.0f ms, p99 %.0f ms**; %.1f writes/rotation | %.2f× latency (%.2f× as throughput) | %s p99 ≤ 1 s, %s ≥ 0.70× |\n",
				x.Repeats, x.P50Ms, x.P99Ms, x.Phase.WritesPerObject, x.LatencyRatio, x.ThroughputRatio, mark(x.P99Ms <= 1000), mark(x.Ratio >= 0.7))
			continue
		}
		p("| P3 rotation, Secret used by %d registries (%d runs) | **all rotated: p50 %.1f s, p99 %.1f s** (%.1f policies/s; per policy p50 %.1f s); %.1f writes/registry | %.2f× | %s ≥ 0.70× |\n",
			x.Registries, x.Repeats, x.P50Ms/1000, x.P99Ms/1000, x.PoliciesPerSec, x.PerPolicyP50Ms/1000, x.Phase.WritesPerObject, x.Ratio, mark(x.Ratio >= 0.7))
	}
	if x := r.P1; x != nil {
		p("| P1 restart on %d converged registries | %.1f s, %d writes | – | (info) |\n", x.Registries, x.RestartSeconds, x.Restart.Requests.Writes)
		p("| P1 steady state, %.0f s window, SyncPeriod %.0f s | **%d writes**, %d requests, %.0f reconciles | – | %s 0 writes |\n",
			x.WindowSeconds, x.SyncPeriodSeconds, x.Window.Requests.Writes, x.Window.Requests.Total, x.Window.Reconciles, mark(x.Window.Requests.Writes == 0))
	}
	if s := r.P4.Registries; len(s.Samples) >= 2 {
		last := s.Samples[len(s.Samples)-1]
		p("| P4 memory, %d registries converged | heap %s, RSS %s; %.1f KiB heap/registry (slope) | – | (info) |\n",
			last.Objects, mib(float64(last.HeapBytes)), mib(float64(last.RSSBytes)), s.HeapPerObject/1024)
	}
	if s := r.P4.Secrets; len(s.Samples) >= 2 {
		first := s.Samples[0]
		p("| P4 memory baseline (restarted manager) | heap %s, RSS %s | – | – |\n", mib(float64(first.HeapBytes)), mib(float64(first.RSSBytes)))
	}
	for _, s := range []memSeries{r.P4.Secrets, r.P4.Reports} {
		if len(s.Samples) < 2 {
			continue
		}
		ok := true
		for _, t := range r.Targets {
			if strings.HasPrefix(t.What, s.Name) {
				ok = t.OK
			}
		}
		p("| P4 memory, + %s | **heap %+.2f MiB** (%.0f B/object by slope), RSS %+.2f MiB | – | %s ≤ %s |\n",
			s.Name, float64(s.HeapDelta)/(1<<20), s.HeapPerObject, float64(s.RSSDelta)/(1<<20), mark(ok), mib(float64(s.TargetMaxBytes)))
	}
	r.printInsights(p)
	p("\nRequests per reconcile (all HTTP requests of the manager / controller_runtime_reconcile_total):")
	for _, x := range r.P2 {
		p(" P2-%d %.2f;", x.Registries, x.Phase.RequestsPerReconcile)
	}
	for _, x := range r.P3 {
		p(" P3-%d %.2f;", x.Registries, x.Phase.RequestsPerReconcile)
	}
	if r.P1 != nil {
		p(" P1 restart %.2f; P1 window %.2f;", r.P1.Restart.RequestsPerReconcile, r.P1.Window.RequestsPerReconcile)
	}
	if r.P4.Reports.Phase != nil {
		p(" P4 reports %.2f", r.P4.Reports.Phase.RequestsPerReconcile)
	}
	p("\nReconcile errors:")
	for _, x := range r.P2 {
		p(" P2-%d %.0f;", x.Registries, x.Phase.ReconcileErrors)
	}
	for _, x := range r.P3 {
		p(" P3-%d %.0f;", x.Registries, x.Phase.ReconcileErrors)
	}
	if r.P1 != nil {
		p(" P1 restart %.0f; P1 window %.0f;", r.P1.Restart.ReconcileErrors, r.P1.Window.ReconcileErrors)
	}
	if r.P4.Reports.Phase != nil {
		p(" P4 reports %.0f", r.P4.Reports.Phase.ReconcileErrors)
	}
	p("\n")
	for _, x := range r.P2 {
		p("Writes, P2-%d: %s\n", x.Registries, strings.Join(x.Phase.WriteKinds, ", "))
	}
	for _, x := range r.P3 {
		p("Writes, P3-%d (%d runs): %s\n", x.Registries, x.Repeats, strings.Join(x.Phase.WriteKinds, ", "))
	}
	if r.P1 != nil && len(r.P1.Window.WriteKinds)+len(r.P1.Restart.WriteKinds) > 0 {
		p("Writes, P1 restart: %s; window: %s\n", strings.Join(r.P1.Restart.WriteKinds, ", "), strings.Join(r.P1.Window.WriteKinds, ", "))
	}
	failed := 0
	for _, t := range r.Targets {
		if !t.OK {
			failed++
		}
	}
	p("\nTargets: %d of %d met.\n", len(r.Targets)-failed, len(r.Targets))
	for _, t := range r.Targets {
		if !t.OK {
			p("  MISSED: %s: %s (target %s)\n", t.What, t.Value, t.Target)
		}
	}
}
