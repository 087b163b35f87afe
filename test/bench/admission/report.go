package main

import (
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/signet-operator/signet/test/bench/kit"
)

// results is everything one run measured; it is written as JSON.
type results struct {
	start             time.Time
	Date              string   `json:"date"`
	Mode              string   `json:"mode"`
	DurationSeconds   float64  `json:"durationSeconds"`
	Config            config   `json:"config"`
	Machine           machine  `json:"machine"`
	Versions          versions `json:"versions"`
	StackStartSeconds float64  `json:"stackStartSeconds"`
	Setup             setup    `json:"setup"`
	Notes             []string `json:"notes"`
	Baselines         []step   `json:"baselines"`
	Steps             []step   `json:"steps"`
	Ratios            []ratio  `json:"ratios"`
	LogDir            string   `json:"logDir,omitempty"`
}

type setup struct {
	Namespace          string `json:"namespace"`
	ImagePattern       string `json:"imagePattern"`
	RestrictRegistries bool   `json:"restrictRegistries"`
	Keys               string `json:"keys"`
	MeasuredPod        string `json:"measuredPod"`
	Signet             string `json:"signet"`
	Kyverno            string `json:"kyverno"`
	Percentile         string `json:"percentile"`
}

type machine struct {
	kit.Machine
	Kernel string `json:"kernel"`
}

type versions struct {
	kit.Versions
	Kyverno string `json:"kyverno"`
}

// step is one variant with N registries (or the 0-policy baseline).
type step struct {
	Variant   string `json:"variant"`
	Label     string `json:"label"`
	Kind      string `json:"kind,omitempty"`
	ViaSignet bool   `json:"viaSignet"`
	N         int    `json:"n"`
	Policies  int    `json:"policiesPresent"`
	// PolicyNames are the step's policies when there are at most 10.
	PolicyNames []string `json:"policyNames,omitempty"`

	// seconds from the first create
	CreateSeconds       float64  `json:"createSeconds,omitempty"`
	SignetReadySeconds  float64  `json:"signetAllReadySeconds,omitempty"`
	KyvernoReadySeconds float64  `json:"kyvernoAllReadySeconds,omitempty"`
	EnforcedSeconds     float64  `json:"enforcedSeconds,omitempty"`
	ProbeDenial         string   `json:"probeDenial,omitempty"`
	Webhooks            []string `json:"kyvernoWebhooks,omitempty"`
	SpecsEqualSignet    *bool    `json:"naiveSpecsEqualSignets,omitempty"`

	Latency        latency `json:"latency"`
	RatioToFirst   float64 `json:"medianRatioToSmallestN,omitempty"`
	PerPolicyMs    float64 `json:"medianMinusBaselinePerPolicyMs,omitempty"`
	MeasureSeconds float64 `json:"measureSeconds"`
	// CPU time per measured admission
	KyvernoCPUms      float64 `json:"kyvernoCPUmsPerAdmission"`
	APIServerCPUms    float64 `json:"apiserverCPUmsPerAdmission"`
	BenchProcessCPUms float64 `json:"signetAndClientCPUmsPerAdmission"`
	SignetReconciles  float64 `json:"signetReconcilesDuringMeasurement"`

	KyvernoRSSLoadedMiB float64 `json:"kyvernoRSSLoadedMiB,omitempty"`
	KyvernoRSSAfterMiB  float64 `json:"kyvernoRSSAfterMeasureMiB,omitempty"`
	KyvernoPeakRSSMiB   float64 `json:"kyvernoPeakRSSMiB,omitempty"`

	UnloadSeconds  float64 `json:"unloadSeconds,omitempty"`
	RestartSeconds float64 `json:"kyvernoRestartSeconds,omitempty"`
	Error          string  `json:"error,omitempty"`
}

type latency struct {
	WarmupMs   []float64 `json:"warmupMs"`
	SamplesMs  []float64 `json:"samplesMs"`
	MedianMs   float64   `json:"medianMs"`
	P99Ms      float64   `json:"p99Ms"`
	MeanMs     float64   `json:"meanMs"`
	MinMs      float64   `json:"minMs"`
	MaxMs      float64   `json:"maxMs"`
	Errors     int       `json:"errors"`
	Timeouts   int       `json:"timeouts"`
	Aborted    bool      `json:"aborted,omitempty"`
	FirstError string    `json:"firstError,omitempty"`
}

type ratio struct {
	Variant string  `json:"variant"`
	Label   string  `json:"label"`
	FromN   int     `json:"fromN"`
	ToN     int     `json:"toN"`
	Ratio   float64 `json:"medianRatio"`
	// P99Ratio is the same ratio of the p99s.
	P99Ratio float64 `json:"p99Ratio,omitempty"`
	// CPURatio is the same ratio of Kyverno's CPU time per admission.
	CPURatio float64 `json:"kyvernoCPURatio,omitempty"`
	Target   float64 `json:"target"`
	Met      bool    `json:"met"`
}

func newResults(cfg config, start time.Time) *results {
	return &results{
		start: start, Date: start.UTC().Format(time.RFC3339), Mode: cfg.Mode, Config: cfg,
		Machine: machineInfo(), Versions: versionInfo(),
		Setup: setup{
			Namespace:          guardedNS,
			ImagePattern:       "<registry>/team-<i>/* for registry i, all guarding " + guardedNS,
			RestrictRegistries: true,
			Keys:               "even i: one shared key; odd i: a key each; transparencyLog.ignore (offline), Enforce, digest required",
			MeasuredPod:        "one container, <registry>/team-0/app@sha256:…, signed with the shared key (matches registry 0 only)",
			Signet:             "manager in-process via internal/operator, main.go defaults: QPS 50, burst 100, 4 workers, count-blocked and pod-insights on",
			Kyverno:            "admission controller only (no reports-controller), localstack defaults, webhook timeout 10s, failurePolicy Fail",
			Percentile:         "p99 by nearest rank: with fewer than 100 samples it is the slowest request",
		},
		Notes: []string{
			"restrictRegistries is true on every registry: the images allowed in the namespace are the union of the N registries' patterns (README.md, Composition), evaluated once per engine by the shared policy hosting the restriction; the measured Pod's image matches registry 0 only.",
			"naive-ivp are N ImageValidatingPolicies rendered with render.Render (one per TrustedRegistry) and applied without Signet; that is Signet's per-registry layout (naiveSpecsEqualSignets checks it on the live objects of registries 0 and 1 when Signet generates signet-<registry> policies).",
			"shared-ivp and shared-cpol are the policies render.RenderShared renders for the same N registries (same specs and keys; at most three ImageValidatingPolicies, enforce/enforce-pin/audit, here all in enforce; or one ClusterPolicy with a verify rule per registry and one restriction rule), applied without Signet under the names shared.<group> instead of signet.<group>; naiveSpecsEqualSignets compares them with Signet's live signet.* policies when Signet generates the shared layout.",
			signetNote(cfg),
			"With no policy Kyverno registers no resource webhook, so the baseline Pod CREATE never reaches Kyverno: it is the apiserver and etcd alone.",
			"Kyverno CPU/adm is the CPU time of the Kyverno process per measured admission (/proc, all threads): less sensitive to the shared machine's load than latency.",
			"The machine is shared: compare ratios within one run, not absolute figures across runs.",
		},
	}
}

func signetNote(cfg config) string {
	if cfg.SignetDuringMeasure {
		return "Signet's manager runs during every measurement (-signet-during-measure; also for the naive and shared variants, with no TrustedRegistry): with Pod insights every Pod CREATE in production enqueues every TrustedRegistry guarding it, see signetReconcilesDuringMeasurement."
	}
	return "Signet's manager runs while a Signet step loads (until every registry is Ready and enforced) and is stopped while Pods are measured: with Pod insights a burst of Pod CREATEs still leads to one (coalesced) reconcile of every TrustedRegistry guarding the namespace, work that would compete with Kyverno for the same 2 cores (-signet-during-measure keeps it running). The naive and shared steps run without Signet."
}

func (r *results) finish() {
	r.Machine.LoadAtEnd = kit.LoadAvg()
	r.DurationSeconds = time.Since(r.start).Seconds()
	r.evaluate()
}

// evaluate fills ratios: each step's median against the smallest N of its variant, the
// cost per registry above the 0-policy baseline, and the largest-N/smallest-N ratios.
func (r *results) evaluate() {
	base := 0.0
	if len(r.Baselines) > 0 && r.Baselines[0].Error == "" {
		base = r.Baselines[0].Latency.MedianMs
	}
	r.Ratios = nil
	for _, v := range r.Config.Variants {
		var first, last *step
		for i := range r.Steps {
			s := &r.Steps[i]
			if s.Variant != v.ID || len(s.Latency.SamplesMs) == 0 {
				continue
			}
			if first == nil {
				first = s
			}
			last = s
			if first.Latency.MedianMs > 0 {
				s.RatioToFirst = s.Latency.MedianMs / first.Latency.MedianMs
			}
			if base > 0 && s.N > 0 {
				s.PerPolicyMs = (s.Latency.MedianMs - base) / float64(s.N)
			}
		}
		if first != nil && last != nil && last != first {
			rt := ratio{Variant: v.ID, Label: v.Label, FromN: first.N, ToN: last.N, Ratio: last.RatioToFirst, Target: targetRatio}
			if first.KyvernoCPUms > 0 {
				rt.CPURatio = last.KyvernoCPUms / first.KyvernoCPUms
			}
			if first.Latency.P99Ms > 0 {
				rt.P99Ratio = last.Latency.P99Ms / first.Latency.P99Ms
			}
			rt.Met = rt.Ratio <= targetRatio
			r.Ratios = append(r.Ratios, rt)
		}
	}
}

func (l *latency) summarize() {
	s := append([]float64(nil), l.SamplesMs...)
	if len(s) == 0 {
		return
	}
	sort.Float64s(s)
	l.MinMs, l.MaxMs = s[0], s[len(s)-1]
	sum := 0.0
	for _, v := range s {
		sum += v
	}
	l.MeanMs = sum / float64(len(s))
	l.MedianMs = percentile(s, 50)
	l.P99Ms = percentile(s, 99)
}

// percentile of sorted samples: the median interpolates between the middle two, any
// other percentile is the nearest rank.
func percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p == 50 {
		if n%2 == 1 {
			return sorted[n/2]
		}
		return (sorted[n/2-1] + sorted[n/2]) / 2
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	return sorted[min(max(rank, 1), n)-1]
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ms formats milliseconds for the table: 7.3 ms, 344 ms, 3.16 s.
func ms(v float64) string {
	switch {
	case v <= 0:
		return "–"
	case v < 10:
		return fmt.Sprintf("%.1f ms", v)
	case v < 1000:
		return fmt.Sprintf("%.0f ms", v)
	default:
		return fmt.Sprintf("%.2f s", v/1000)
	}
}

func ratioString(v float64) string {
	switch {
	case v <= 0:
		return "–"
	case v < 10:
		return fmt.Sprintf("%.2f×", v)
	default:
		return fmt.Sprintf("%.0f×", v)
	}
}

const againLabel = ", again at the end"

// printReport writes the table, the ratios and the notes.
func printReport(w io.Writer, r *results) {
	fmt.Fprintf(w, "\nPod admission latency with N TrustedRegistries guarding one namespace (%s run, %s)\n", r.Mode, r.Date)
	fmt.Fprintf(w, "machine: %d × %s, %s, load average %.2f %.2f %.2f at start, %.2f %.2f %.2f at end (shared machine: compare ratios)\n",
		r.Machine.NumCPU, r.Machine.CPUModel, r.Machine.MemTotal,
		r.Machine.LoadAtStart[0], r.Machine.LoadAtStart[1], r.Machine.LoadAtStart[2],
		r.Machine.LoadAtEnd[0], r.Machine.LoadAtEnd[1], r.Machine.LoadAtEnd[2])
	fmt.Fprintf(w, "versions: Kyverno %s, %s, etcd %s, %s, controller-runtime %s, Signet %s\n",
		r.Versions.Kyverno, r.Versions.KubeAPIServer, strings.TrimPrefix(r.Versions.Etcd, "etcd Version: "), r.Versions.Go,
		r.Versions.ControllerRuntime, r.Versions.Signet)
	fmt.Fprintf(w, "each step: %d warm-up + %d measured sequential Pod CREATEs in %q; p99 is the nearest rank (= the slowest of fewer than 100)\n\n",
		r.Config.Warmup, r.Config.Requests, guardedNS)

	width := len("engine")
	for _, s := range r.Baselines {
		width = max(width, len(s.Label)+len(againLabel))
	}
	for _, s := range r.Steps {
		width = max(width, len(s.Label))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\tN\tpolicies\tmedian\tp99\tvs smallest N\tper registry\tKyverno CPU/adm\tKyverno RSS\tKyverno ready\terrors\t\n", width, "engine")
	row := func(s step) {
		errs := strconv.Itoa(s.Latency.Errors)
		if s.Latency.Timeouts > 0 {
			errs += fmt.Sprintf(" (%d timeouts)", s.Latency.Timeouts)
		}
		if s.Error != "" {
			errs += " FAILED"
		}
		ready := "–"
		if s.KyvernoReadySeconds > 0 {
			ready = fmt.Sprintf("%.1f s", s.KyvernoReadySeconds)
		}
		rss := "–"
		if s.KyvernoRSSAfterMiB > 0 {
			rss = fmt.Sprintf("%.0f MiB", s.KyvernoRSSAfterMiB)
		}
		per := "–"
		switch {
		case s.PerPolicyMs >= 1 || s.PerPolicyMs <= -1:
			per = fmt.Sprintf("%.1f ms", s.PerPolicyMs)
		case s.PerPolicyMs != 0:
			per = fmt.Sprintf("%.2f ms", s.PerPolicyMs)
		}
		pols := "–"
		if s.Policies > 0 {
			pols = strconv.Itoa(s.Policies)
		}
		fmt.Fprintf(tw, "%-*s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", width, s.Label, s.N, pols, ms(s.Latency.MedianMs), ms(s.Latency.P99Ms),
			ratioString(s.RatioToFirst), per, ms(s.KyvernoCPUms), rss, ready, errs)
	}
	if len(r.Baselines) > 0 {
		row(r.Baselines[0])
	}
	for _, v := range r.Config.Variants {
		for _, s := range r.Steps {
			if s.Variant == v.ID {
				row(s)
			}
		}
	}
	for _, b := range r.Baselines[min(1, len(r.Baselines)):] {
		b.Label += againLabel
		row(b)
	}
	_ = tw.Flush()

	if len(r.Ratios) > 0 {
		fmt.Fprintf(w, "\nmedian(N=%d) / median(N=%d), target ≤ %.1f×:\n", r.Ratios[0].ToN, r.Ratios[0].FromN, targetRatio)
		for _, rt := range r.Ratios {
			verdict := "MISSED"
			if rt.Met {
				verdict = "met"
			}
			label := rt.Label
			if rt.ToN != r.Ratios[0].ToN || rt.FromN != r.Ratios[0].FromN {
				label += fmt.Sprintf(" (N=%d/N=%d)", rt.ToN, rt.FromN)
			}
			fmt.Fprintf(w, "  %-44s %8s  %-6s  (p99: %s, Kyverno CPU per admission: %s)\n", label, ratioString(rt.Ratio), verdict,
				ratioString(rt.P99Ratio), ratioString(rt.CPURatio))
		}
	}
	for _, v := range r.Config.Variants {
		var same, differ []string
		for _, s := range r.Steps {
			if s.Variant != v.ID || s.SpecsEqualSignet == nil {
				continue
			}
			if *s.SpecsEqualSignet {
				same = append(same, strconv.Itoa(s.N))
			} else {
				differ = append(differ, strconv.Itoa(s.N))
			}
		}
		what := "the live specs of registries 0 and 1 are identical to Signet's signet-<registry> policies"
		if v.Shared {
			what = "the live specs of the shared policies are identical to Signet's signet.* policies"
		}
		if len(same) > 0 && len(differ) == 0 {
			fmt.Fprintf(w, "\n%s = Signet's layout: %s (checked at N = %s)\n", v.ID, what, strings.Join(same, ", "))
		}
	}
	var findings []string
	for _, s := range r.Steps {
		if s.Latency.P99Ms >= float64(webhookTimeout.Milliseconds())/2 || s.Latency.Timeouts > 0 {
			findings = append(findings, fmt.Sprintf("%s N=%d: p99 %s against the %v webhook timeout, %d timeouts (failurePolicy Fail: a timed-out admission is a denied Pod)",
				s.Label, s.N, ms(s.Latency.P99Ms), webhookTimeout, s.Latency.Timeouts))
		}
		if s.Error != "" {
			findings = append(findings, fmt.Sprintf("%s N=%d failed: %s", s.Label, s.N, s.Error))
		}
		if s.SpecsEqualSignet != nil && !*s.SpecsEqualSignet {
			findings = append(findings, fmt.Sprintf("%s N=%d: the rendered specs differ from Signet's live ones", s.Variant, s.N))
		}
	}
	if len(findings) > 0 {
		fmt.Fprintln(w, "\nfindings:")
		for _, f := range findings {
			fmt.Fprintln(w, "  -", f)
		}
	}
	fmt.Fprintln(w, "\nnotes:")
	for _, n := range r.Notes {
		fmt.Fprintln(w, "  -", n)
	}
}

// --- machine, versions, processes -------------------------------------------------------

// waitForLoad waits until the 1-minute load average is below limit, polling every
// interval, for at most maxWait; then it goes on anyway (and says so).
func waitForLoad(ctx context.Context, limit float64, maxWait, interval time.Duration, logf func(string, ...any)) {
	deadline := time.Now().Add(maxWait)
	for {
		l := kit.LoadAvg()
		if l[0] < limit {
			logf("load average %.2f < %.2f: starting", l[0], limit)
			return
		}
		if time.Now().After(deadline) {
			logf("load average still %.2f after %v: starting anyway", l[0], maxWait)
			return
		}
		logf("load average %.2f ≥ %.2f: waiting %v", l[0], limit, interval)
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func machineInfo() machine {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return machine{Machine: kit.MachineInfo(), Kernel: runtime.GOOS + "/" + runtime.GOARCH + " " + strings.TrimSpace(string(kernel))}
}

func versionInfo() versions {
	return versions{Versions: kit.VersionInfo()}
}

// binaryModuleVersion is the version of the main module a Go binary was built from.
func binaryModuleVersion(path string) string {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return bi.Main.Version
}

// findProc returns the pid of the process named name (base name of argv[0]) whose
// arguments mention dir (the stack's directory), or 0.
func findProc(dir, name string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil || len(data) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if filepath.Base(args[0]) != name {
			continue
		}
		for _, a := range args[1:] {
			if strings.Contains(a, dir) {
				return pid
			}
		}
	}
	return 0
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// procCPUSeconds is the user + system CPU time of a process (all its threads).
func procCPUSeconds(pid int) float64 {
	if pid == 0 {
		return 0
	}
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// after the command: state(3) ... utime(14) stime(15)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / clockTicks
}

func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// rssMiB reads VmRSS or VmHWM (peak) of a process.
func rssMiB(pid int, field string) float64 {
	v := kit.ProcField(filepath.Join("/proc", strconv.Itoa(pid), "status"), field)
	kb, err := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64)
	if err != nil {
		return 0
	}
	return kb / 1024
}
