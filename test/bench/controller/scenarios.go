package main

import (
	"context"
	"encoding/base64"
	"fmt"
	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/kyverno"
	"github.com/signet-operator/signet/internal/render"
	"github.com/signet-operator/signet/test/bench/kit"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// phaseStats is what the manager did during one phase.
type phaseStats struct {
	Requests             requestCounts `json:"requests"`
	Reconciles           float64       `json:"reconciles"`
	ReconcileErrors      float64       `json:"reconcileErrors"`
	RequestsPerReconcile float64       `json:"requestsPerReconcile"`
	// WritesPerObject is write requests per TrustedRegistry the phase concerned.
	WritesPerObject float64    `json:"writesPerObject,omitempty"`
	WriteKinds      []string   `json:"writeKinds,omitempty"`
	Load            [3]float64 `json:"loadAvgAtStart"`
}

// phaseMark remembers the manager's counters at the start of a phase.
type phaseMark struct {
	m    *runningManager
	req  requestCounts
	rec  float64
	errs float64
	load [3]float64
}

func markPhase(m *runningManager) (phaseMark, error) {
	cm, err := readControllerMetrics()
	if err != nil {
		return phaseMark{}, err
	}
	return phaseMark{m: m, req: m.requests.snapshot(), rec: cm.Reconciles, errs: cm.Errors, load: kit.LoadAvg()}, nil
}

func (p phaseMark) stats(objects int) (phaseStats, error) {
	cm, err := readControllerMetrics()
	if err != nil {
		return phaseStats{}, err
	}
	s := phaseStats{Requests: p.m.requests.snapshot().sub(p.req), Reconciles: cm.Reconciles - p.rec, ReconcileErrors: cm.Errors - p.errs, Load: p.load}
	if s.Reconciles > 0 {
		s.RequestsPerReconcile = float64(s.Requests.Total) / s.Reconciles
	}
	if objects > 0 {
		s.WritesPerObject = float64(s.Requests.Writes) / float64(objects)
	}
	s.WriteKinds = s.Requests.writeKinds()
	return s, nil
}

// --- C0: the server-side apply ceiling ------------------------------------------------

type c0Result struct {
	Objects    int     `json:"objects"`
	Workers    int     `json:"workers"`
	QPS        float32 `json:"qps"`
	Burst      int     `json:"burst"`
	Sequential bool    `json:"sequential"`
	// Seconds runs from the first apply to the last watch event.
	Seconds       float64    `json:"seconds"`
	ObjectsPerSec float64    `json:"objectsPerSec"`
	LatencyP50Ms  float64    `json:"latencyP50Ms"`
	LatencyP99Ms  float64    `json:"latencyP99Ms"`
	LatencyMaxMs  float64    `json:"latencyMaxMs"`
	PolicyBytes   int        `json:"policyBytes"`
	Load          [3]float64 `json:"loadAvgAtStart"`
}

var c0Runs int

// runC0 server-side applies n copies of a generated ImageValidatingPolicy (different
// names) from workers goroutines through a client limited to qps/burst, the way the
// reconciler applies a new policy, and times each apply to its watch event. Sequential:
// one object at a time, each after the previous one's watch event (unloaded latency).
func runC0(ctx context.Context, cp *controlPlane, tmpl *unstructured.Unstructured, n, workers int, qps float32, burst int, sequential bool, w waits) (c0Result, error) {
	c0Runs++
	run := fmt.Sprintf("r%d", c0Runs)
	res := c0Result{Objects: n, Workers: workers, QPS: qps, Burst: burst, Sequential: sequential, Load: kit.LoadAvg()}
	if js, err := tmpl.MarshalJSON(); err == nil {
		res.PolicyBytes = len(js)
	}
	cfg := rest.CopyConfig(cp.cfg)
	cfg.QPS, cfg.Burst = qps, burst
	c, err := client.New(cfg, client.Options{Scheme: benchScheme()})
	if err != nil {
		return res, err
	}
	var mu sync.Mutex
	started := make(map[string]time.Time, n)
	arrived := make(map[string]time.Time, n)
	events := make(chan string, n)
	tr, err := track(ctx, cp.c, func() client.ObjectList { return ivpList() }, []client.ListOption{client.MatchingLabels{labelC0: run}},
		func(o k8sruntime.Object, at time.Time) bool {
			name := o.(*unstructured.Unstructured).GetName()
			mu.Lock()
			defer mu.Unlock()
			if _, ok := arrived[name]; !ok {
				arrived[name] = at
				events <- name
			}
			return len(arrived) == n
		})
	if err != nil {
		return res, err
	}
	apply := func(ctx context.Context, i int) error {
		obj := tmpl.DeepCopy()
		name := fmt.Sprintf("signet-c0-%s-%05d", run, i)
		obj.SetName(name)
		labels := obj.GetLabels()
		labels[render.LabelRegistry] = strings.TrimPrefix(name, "signet-")
		labels[labelC0] = run
		obj.SetLabels(labels)
		mu.Lock()
		started[name] = time.Now()
		mu.Unlock()
		return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(render.FieldOwner), client.ForceOwnership)
	}
	t0 := time.Now()
	if sequential {
		for i := 0; i < n && err == nil; i++ {
			if err = apply(ctx, i); err == nil {
				select {
				case <-events:
				case <-time.After(w.timeout):
					err = fmt.Errorf("no watch event for object %d after %s", i, w.timeout)
				}
			}
		}
	} else {
		err = kit.Parallel(ctx, n, workers, apply)
	}
	if err == nil {
		err = tr.wait(w.timeout)
	}
	tr.cancel()
	if err != nil {
		return res, fmt.Errorf("C0 (%d objects, QPS %v): %w", n, qps, err)
	}
	lat, last := latencies(started, arrived)
	res.Seconds = last.Sub(t0).Seconds()
	res.ObjectsPerSec = float64(n) / res.Seconds
	res.LatencyP50Ms, res.LatencyP99Ms, res.LatencyMaxMs = percentile(lat, 50), percentile(lat, 99), percentile(lat, 100)

	del := &unstructured.Unstructured{}
	del.SetGroupVersionKind(kyverno.ImageValidatingPolicy)
	if err := cp.c.DeleteAllOf(ctx, del, client.MatchingLabels{labelC0: run}); err != nil {
		return res, fmt.Errorf("deleting the C0 objects: %w", err)
	}
	return res, nil
}

// --- P2: convergence ------------------------------------------------------------------

type p2Result struct {
	Batch        string `json:"batch"`
	Registries   int    `json:"registries"`
	SharedSecret bool   `json:"sharedSecret"`
	// Seconds runs from the first create to the last Ready=True.
	Seconds          float64    `json:"seconds"`
	CreateSeconds    float64    `json:"createSeconds"`
	RegistriesPerSec float64    `json:"registriesPerSec"`
	ReadyP50Ms       float64    `json:"readyP50Ms"`
	ReadyP99Ms       float64    `json:"readyP99Ms"`
	C0ObjectsPerSec  float64    `json:"c0ObjectsPerSec"`
	Ratio            float64    `json:"ratioToC0"`
	Phase            phaseStats `json:"phase"`
}

func registryName(batch string, i int) string { return fmt.Sprintf("%s-%04d", batch, i) }

// sharedSecretName is the key Secret every registry of a shared batch references.
func sharedSecretName(batch string) string { return batch + "-shared-key" }

// runP2 creates n TrustedRegistries at once (8 creating goroutines), each with its own key
// Secret or all sharing one (created beforehand), and waits until every one is Ready.
func runP2(ctx context.Context, cp *controlPlane, m *runningManager, batch string, n int, shared bool, w waits) (p2Result, error) {
	res := p2Result{Batch: batch, Registries: n, SharedSecret: shared}
	var secrets []client.Object
	if shared {
		pub, err := newKeyPEM()
		if err != nil {
			return res, err
		}
		secrets = append(secrets, keySecret(sharedSecretName(batch), pub))
	} else {
		for i := 0; i < n; i++ {
			pub, err := newKeyPEM()
			if err != nil {
				return res, err
			}
			secrets = append(secrets, keySecret(registryName(batch, i)+"-key", pub))
		}
	}
	if err := createAll(ctx, cp.c, secrets); err != nil {
		return res, err
	}
	regs := make([]client.Object, n)
	for i := range regs {
		secret := registryName(batch, i) + "-key"
		if shared {
			secret = sharedSecretName(batch)
		}
		regs[i] = benchRegistry(registryName(batch, i), batch, secret)
	}
	if err := waitIdle(ctx, w); err != nil {
		return res, err
	}
	mark, err := markPhase(m)
	if err != nil {
		return res, err
	}

	var mu sync.Mutex
	created := make(map[string]time.Time, n)
	ready := make(map[string]time.Time, n)
	tr, err := track(ctx, cp.c, func() client.ObjectList { return &trustv1alpha1.TrustedRegistryList{} },
		[]client.ListOption{client.MatchingLabels{labelBatch: batch}},
		func(o k8sruntime.Object, at time.Time) bool {
			reg := o.(*trustv1alpha1.TrustedRegistry)
			if _, ok := ready[reg.Name]; !ok && isReady(reg) {
				ready[reg.Name] = at
			}
			return len(ready) == n
		})
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	err = kit.Parallel(ctx, n, 8, func(ctx context.Context, i int) error {
		mu.Lock()
		created[regs[i].GetName()] = time.Now()
		mu.Unlock()
		return cp.c.Create(ctx, regs[i])
	})
	res.CreateSeconds = time.Since(t0).Seconds()
	if err == nil {
		err = tr.wait(w.timeout)
	}
	tr.cancel()
	if err != nil {
		return res, fmt.Errorf("P2 %s: %d of %d Ready: %w", batch, len(ready), n, err)
	}
	lat, last := latencies(created, ready)
	res.Seconds = last.Sub(t0).Seconds()
	res.RegistriesPerSec = float64(n) / res.Seconds
	res.ReadyP50Ms, res.ReadyP99Ms = percentile(lat, 50), percentile(lat, 99)
	if err := waitIdle(ctx, w); err != nil {
		return res, err
	}
	res.Phase, err = mark.stats(n)
	return res, err
}

func isReady(reg *trustv1alpha1.TrustedRegistry) bool {
	c := meta.FindStatusCondition(reg.Status.Conditions, trustv1alpha1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && reg.Status.ObservedGeneration == reg.Generation
}

// --- P3: rotation latency ---------------------------------------------------------------

type p3Result struct {
	Name       string `json:"name"`
	Registries int    `json:"registries"`
	Repeats    int    `json:"repeats"`
	// SamplesMs: per repeat, from the Secret update to the last policy carrying the key.
	SamplesMs []float64 `json:"samplesMs"`
	P50Ms     float64   `json:"p50Ms"`
	P99Ms     float64   `json:"p99Ms"`
	// PerPolicy*: from the Secret update to each policy carrying the key, over all repeats.
	PerPolicyP50Ms float64 `json:"perPolicyP50Ms"`
	PerPolicyP99Ms float64 `json:"perPolicyP99Ms"`
	// PoliciesPerSec is registries / median sample.
	PoliciesPerSec float64 `json:"policiesPerSec"`
	// ThroughputRatio is PoliciesPerSec over C0's objects/s (same client limits, same or
	// nearest object count); LatencyRatio is C0's unloaded apply→watch-event p50 over P50Ms.
	// Ratio is the one the target is checked on: throughput for a shared key, latency for
	// a single registry.
	ThroughputRatio float64    `json:"throughputRatioToC0"`
	LatencyRatio    float64    `json:"latencyRatioToC0"`
	Ratio           float64    `json:"ratioToC0"`
	RatioOf         string     `json:"ratioOf"`
	Phase           phaseStats `json:"phase"`
}

// runP3 replaces the public key in secret, referenced by the registries named, repeats
// times, and measures how long until every generated policy inlines the new key.
func runP3(ctx context.Context, cp *controlPlane, m *runningManager, name, secret string, registries []string, repeats int, w waits) (p3Result, error) {
	res := p3Result{Name: name, Registries: len(registries), Repeats: repeats}
	want := make(map[string]bool, len(registries))
	for _, r := range registries {
		want[r] = true
	}
	if err := waitIdle(ctx, w); err != nil {
		return res, err
	}
	mark, err := markPhase(m)
	if err != nil {
		return res, err
	}
	var perPolicy []float64
	for rep := 0; rep < repeats; rep++ {
		pub, err := newKeyPEM()
		if err != nil {
			return res, err
		}
		got := make(map[string]time.Time, len(want))
		sel := client.MatchingLabels{render.LabelManagedBy: "signet"}
		// A registry has rotated when the policy enforcing it holds the new key: its own
		// policy (per-registry layout), or a shared policy whose registries annotation shows
		// a new input hash for it (the key alone may come from another registry's branch).
		first := map[string]string{}
		tr, err := track(ctx, cp.c, func() client.ObjectList { return ivpList() }, []client.ListOption{sel},
			func(o k8sruntime.Object, at time.Time) bool {
				u := o.(*unstructured.Unstructured)
				if !hasKey(u, pub) {
					for r, h := range policyRegistries(u) {
						if _, seen := first[r]; !seen {
							first[r] = h
						}
					}
					return len(got) == len(want)
				}
				for r, h := range policyRegistries(u) {
					if _, done := got[r]; done || !want[r] {
						continue
					}
					if f, seen := first[r]; !seen || f != h || h == "" {
						got[r] = at
					}
				}
				return len(got) == len(want)
			})
		if err != nil {
			return res, err
		}
		patch := fmt.Sprintf(`{"data":{"cosign.pub":%q}}`, base64.StdEncoding.EncodeToString([]byte(pub)))
		t0 := time.Now()
		err = cp.c.Patch(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: trustNS, Name: secret}},
			client.RawPatch(types.MergePatchType, []byte(patch)))
		if err == nil {
			err = tr.wait(w.timeout)
		}
		tr.cancel()
		if err != nil {
			return res, fmt.Errorf("P3 %s repeat %d: %d of %d policies rotated: %w", name, rep, len(got), len(want), err)
		}
		var last time.Time
		for _, at := range got {
			if at.After(last) {
				last = at
			}
			perPolicy = append(perPolicy, ms(at.Sub(t0)))
		}
		res.SamplesMs = append(res.SamplesMs, ms(last.Sub(t0)))
		if err := waitIdle(ctx, w); err != nil {
			return res, err
		}
	}
	res.P50Ms, res.P99Ms = percentile(res.SamplesMs, 50), percentile(res.SamplesMs, 99)
	res.PerPolicyP50Ms, res.PerPolicyP99Ms = percentile(perPolicy, 50), percentile(perPolicy, 99)
	res.PoliciesPerSec = float64(len(registries)) / (res.P50Ms / 1000)
	res.Phase, err = mark.stats(len(registries) * repeats)
	return res, err
}

// --- P1: steady state -------------------------------------------------------------------

type p1Result struct {
	// The restart: a new manager reconciles every registry once.
	Registries        int        `json:"registries"`
	RestartSeconds    float64    `json:"restartSeconds"`
	Restart           phaseStats `json:"restart"`
	SyncPeriodSeconds float64    `json:"syncPeriodSeconds"`
	WindowSeconds     float64    `json:"windowSeconds"`
	Window            phaseStats `json:"window"`
}

// runP1 starts a manager with a short SyncPeriod on a converged cluster, waits for its
// first pass over every registry, then counts its requests for window (several resyncs).
func runP1(ctx context.Context, cp *controlPlane, registries int, syncPeriod, window time.Duration, w waits) (p1Result, *runningManager, error) {
	res := p1Result{Registries: registries, SyncPeriodSeconds: syncPeriod.Seconds(), WindowSeconds: window.Seconds()}
	before, err := readControllerMetrics()
	if err != nil {
		return res, nil, err
	}
	load := kit.LoadAvg()
	t0 := time.Now()
	m, err := startManager(cp, managerOptions{qps: mainQPS, burst: mainBurst, workers: mainWorkers, syncPeriod: &syncPeriod})
	if err != nil {
		return res, nil, err
	}
	// The first pass: one reconcile per registry.
	deadline := time.Now().Add(w.timeout)
	for {
		cm, err := readControllerMetrics()
		if err != nil {
			return res, m, err
		}
		if cm.Reconciles-before.Reconciles >= float64(registries) && cm.QueueDepth == 0 && cm.ActiveWorkers == 0 {
			break
		}
		if time.Now().After(deadline) {
			return res, m, fmt.Errorf("P1: the restarted manager reconciled %v of %d registries in %s", cm.Reconciles-before.Reconciles, registries, w.timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.RestartSeconds = time.Since(t0).Seconds()
	restart := phaseMark{m: m, req: requestCounts{ByKind: map[string]int64{}}, rec: before.Reconciles, errs: before.Errors, load: load}
	if res.Restart, err = restart.stats(registries); err != nil {
		return res, m, err
	}
	mark, err := markPhase(m)
	if err != nil {
		return res, m, err
	}
	select {
	case <-ctx.Done():
		return res, m, ctx.Err()
	case <-time.After(window):
	}
	res.Window, err = mark.stats(registries)
	if err == nil {
		// Stop between two resyncs, with nothing in flight.
		err = waitIdle(ctx, w)
	}
	return res, m, err
}

// --- P4: memory -------------------------------------------------------------------------

type memSample struct {
	Objects   int    `json:"objects"`
	HeapBytes uint64 `json:"heapAllocBytes"`
	RSSBytes  uint64 `json:"rssBytes"`
}

type memSeries struct {
	Name           string      `json:"name"`
	Samples        []memSample `json:"samples"`
	HeapDelta      int64       `json:"heapDeltaBytes"`
	RSSDelta       int64       `json:"rssDeltaBytes"`
	HeapPerObject  float64     `json:"heapBytesPerObjectBySlope"`
	RSSPerObject   float64     `json:"rssBytesPerObjectBySlope"`
	TargetMaxBytes int64       `json:"targetMaxHeapDeltaBytes,omitempty"`
	Phase          *phaseStats `json:"phase,omitempty"`
}

func (s *memSeries) finish() {
	if len(s.Samples) < 2 {
		return
	}
	first, last := s.Samples[0], s.Samples[len(s.Samples)-1]
	s.HeapDelta = int64(last.HeapBytes) - int64(first.HeapBytes)
	s.RSSDelta = int64(last.RSSBytes) - int64(first.RSSBytes)
	var xs, hs, rs []float64
	for _, p := range s.Samples {
		xs = append(xs, float64(p.Objects))
		hs = append(hs, float64(p.HeapBytes))
		rs = append(rs, float64(p.RSSBytes))
	}
	s.HeapPerObject, s.RSSPerObject = slope(xs, hs), slope(xs, rs)
}

type p4Result struct {
	// Registries: the heap of the first manager with no registry and after each P2 batch.
	Registries memSeries `json:"registries"`
	Secrets    memSeries `json:"unrelatedSecrets"`
	Reports    memSeries `json:"policyReports"`
}

// measureMemory returns the live heap after a full collection and the process RSS after
// returning freed memory to the OS. The whole process is measured: the harness holds no
// per-object state between samples, so differences are the manager's.
func measureMemory(objects int) memSample {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{Objects: objects, HeapBytes: ms.HeapAlloc, RSSBytes: rss()}
}

func rss() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// runP4Secrets adds n Secrets of size bytes in namespaces other than the trust namespace,
// in steps, measuring memory after each.
func runP4Secrets(ctx context.Context, cp *controlPlane, n, size, steps int, w waits) (memSeries, error) {
	s := memSeries{Name: fmt.Sprintf("%d unrelated Secrets of %d KiB", n, size/1024), TargetMaxBytes: 2 << 20}
	const namespaces = 10
	for i := 0; i < namespaces; i++ {
		if err := cp.ensureNamespace(ctx, fmt.Sprintf("bench-other-%02d", i)); err != nil {
			return s, err
		}
	}
	blob := make([]byte, size)
	for i := range blob {
		blob[i] = byte('a' + i%26)
	}
	if err := waitIdle(ctx, w); err != nil {
		return s, err
	}
	s.Samples = append(s.Samples, measureMemory(0))
	done := 0
	for step := 1; step <= steps; step++ {
		upto := n * step / steps
		err := kit.Parallel(ctx, upto-done, 8, func(ctx context.Context, j int) error {
			i := done + j
			sec := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%05d", i), Namespace: fmt.Sprintf("bench-other-%02d", i%namespaces)},
				Type:       corev1.SecretTypeOpaque,
				Data:       map[string][]byte{"blob": blob, "id": []byte(strconv.Itoa(i))},
			}
			return cp.c.Create(ctx, sec)
		})
		if err != nil {
			return s, fmt.Errorf("creating unrelated Secrets: %w", err)
		}
		done = upto
		if err := waitIdle(ctx, w); err != nil {
			return s, err
		}
		s.Samples = append(s.Samples, measureMemory(done))
	}
	s.finish()
	return s, nil
}

// runP4Reports adds n PolicyReports, one per Pod, each with two results of other policies
// and one or two of Signet's policies (registries named), in steps; after each step it
// waits until the registries' status counts every Signet result, then measures memory.
func runP4Reports(ctx context.Context, cp *controlPlane, m *runningManager, n, steps int, registries []string, w waits) (memSeries, error) {
	s := memSeries{Name: fmt.Sprintf("%d PolicyReports", n), TargetMaxBytes: 15 << 20}
	const namespaces = 20
	for i := 0; i < namespaces; i++ {
		if err := cp.ensureNamespace(ctx, fmt.Sprintf("bench-apps-%02d", i)); err != nil {
			return s, err
		}
	}
	baseline, err := signetResultsInStatus(ctx, cp)
	if err != nil {
		return s, err
	}
	if err := waitIdle(ctx, w); err != nil {
		return s, err
	}
	mark, err := markPhase(m)
	if err != nil {
		return s, err
	}
	s.Samples = append(s.Samples, measureMemory(0))
	done, expected := 0, baseline
	for step := 1; step <= steps; step++ {
		upto := n * step / steps
		var mu sync.Mutex
		err := kit.Parallel(ctx, upto-done, 8, func(ctx context.Context, j int) error {
			i := done + j
			policies := []string{render.PolicyName(registries[i%len(registries)])}
			if i%3 == 0 && len(registries) > 1 {
				policies = append(policies, render.PolicyName(registries[(i+37)%len(registries)]))
			}
			mu.Lock()
			expected += int64(len(policies))
			mu.Unlock()
			return cp.c.Create(ctx, podReport(fmt.Sprintf("bench-apps-%02d", i%namespaces), i, policies, i%10 == 0))
		})
		if err != nil {
			return s, fmt.Errorf("creating PolicyReports: %w", err)
		}
		done = upto
		if err := waitCounted(ctx, cp, expected, w); err != nil {
			return s, err
		}
		if err := waitIdle(ctx, w); err != nil {
			return s, err
		}
		s.Samples = append(s.Samples, measureMemory(done))
	}
	s.finish()
	st, err := mark.stats(0)
	s.Phase = &st
	return s, err
}

// signetResultsInStatus sums the report results counted in every registry's status.
func signetResultsInStatus(ctx context.Context, cp *controlPlane) (int64, error) {
	list := &trustv1alpha1.TrustedRegistryList{}
	if err := cp.c.List(ctx, list); err != nil {
		return 0, err
	}
	var sum int64
	for i := range list.Items {
		if r := list.Items[i].Status.Reports; r != nil {
			sum += int64(r.Pass) + int64(r.Fail) + int64(r.Warn) + int64(r.Error) + int64(r.Skip)
		}
	}
	return sum, nil
}

func waitCounted(ctx context.Context, cp *controlPlane, want int64, w waits) error {
	deadline := time.Now().Add(w.timeout)
	for {
		got, err := signetResultsInStatus(ctx, cp)
		if err != nil {
			return err
		}
		if got == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("registry statuses count %d Signet report results after %s, want %d", got, w.timeout, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// --- helpers ----------------------------------------------------------------------------

// latencies lists, in milliseconds, how long each object took from start to end, and
// when the last one ended.
func latencies(start, end map[string]time.Time) (lat []float64, last time.Time) {
	lat = make([]float64, 0, len(end))
	for name, at := range end {
		if at.After(last) {
			last = at
		}
		lat = append(lat, ms(at.Sub(start[name])))
	}
	return lat, last
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// percentile returns the p-th percentile (nearest rank) of xs; 100 is the maximum.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// slope is the least-squares slope of ys over xs.
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// cpuProfile starts a CPU profile into dir/name.cpu.pprof (no-op without dir).
func cpuProfile(dir, name string) func() {
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, name+".cpu.pprof"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "cpu profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "cpu profile:", err)
		_ = f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}

// heapProfile writes the live heap to dir/name.heap.pprof (no-op without dir).
func heapProfile(dir, name string) {
	if dir == "" {
		return
	}
	f, err := os.Create(filepath.Join(dir, name+".heap.pprof"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "heap profile:", err)
		return
	}
	defer func() { _ = f.Close() }()
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		fmt.Fprintln(os.Stderr, "heap profile:", err)
	}
}

// policyRegistries lists the registries a generated policy enforces, with their input hash
// (shared layout; "" for a policy of its own).
func policyRegistries(u *unstructured.Unstructured) map[string]string {
	if name := u.GetLabels()[render.LabelRegistry]; name != "" {
		return map[string]string{name: ""}
	}
	return render.InputHashesOf(u)
}
