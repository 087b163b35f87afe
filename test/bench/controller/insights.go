package main

import (
	"context"
	"fmt"
	"syscall"
	"time"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/test/bench/kit"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// --- I1: Pod insights under a burst of Pod creations -------------------------------------

// i1Result is one burst of Pod CREATEs into a namespace guarded by Registries
// TrustedRegistries (0: the namespace is guarded by none, the floor: the harness creating
// the Pods and the manager's Pod informer).
type i1Result struct {
	Registries int    `json:"registries"`
	Pods       int    `json:"pods"`
	Namespace  string `json:"namespace"`
	// CreateSeconds is how long creating the Pods took; SettleSeconds runs from the first
	// create until every registry's status.coverage counts every Pod.
	CreateSeconds float64 `json:"createSeconds"`
	SettleSeconds float64 `json:"settleSeconds"`
	// CPUSeconds is this process's CPU time (user+system: the manager, and the harness
	// creating the Pods and polling the registries) over the same span.
	CPUSeconds float64 `json:"cpuSeconds"`
	// ControlPlaneCPUSeconds is the CPU time of kube-apiserver and etcd over the same span
	// (Linux only): what the burst, and the manager's requests and watches, cost the cluster.
	ControlPlaneCPUSeconds map[string]float64 `json:"controlPlaneCPUSeconds,omitempty"`
	StatusWrites           int64              `json:"statusWrites"`
	WritesPerPod           float64            `json:"writesPerPod"`
	RatioToSingle          float64            `json:"cpuRatioToOneRegistry,omitempty"`
	Phase                  phaseStats         `json:"phase"`
}

func insightsRegistryName(n, i int) string { return fmt.Sprintf("ins%d-%04d", n, i) }

// insightsRegistry guards one namespace and matches images of its own; the burst's Pods
// run images no registry lists, so every registry has every Pod uncovered (each registry's
// coverage changes with every Pod).
func insightsRegistry(name, batch, ns, secret string) *trustv1alpha1.TrustedRegistry {
	tr := benchRegistry(name, batch, secret)
	tr.Spec.Namespaces = trustv1alpha1.NamespaceSelection{Names: []string{ns}}
	return tr
}

// insightsPod is a Pod as the apiserver stores it without kubelets: pending, images only.
func insightsPod(ns string, i int) *corev1.Pod {
	team := i % 20
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%02d-%05d", team, i), Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "app", Image: fmt.Sprintf("registry.example.com/team-%02d/app:v1", team)},
			{Name: "proxy", Image: "mirror.example.com/envoy:1.31"},
		}},
	}
}

// runI1 creates n TrustedRegistries guarding a fresh namespace (one shared key Secret) and
// waits until they are Ready and the manager is idle; then it creates pods Pods there
// (8 creating goroutines) and waits until every registry's status.coverage counts them all.
// It measures the process CPU, the manager's requests and its status writes over that span.
func runI1(ctx context.Context, cp *controlPlane, m *runningManager, n, pods int, w waits, profile func() func()) (i1Result, error) {
	ns := fmt.Sprintf("bench-insights-%d", n)
	res := i1Result{Registries: n, Pods: pods, Namespace: ns}
	if err := cp.ensureNamespace(ctx, ns); err != nil {
		return res, err
	}
	batch := fmt.Sprintf("ins%d", n)
	if n > 0 {
		pub, err := newKeyPEM()
		if err != nil {
			return res, err
		}
		objs := []client.Object{keySecret(sharedSecretName(batch), pub)}
		for i := 0; i < n; i++ {
			objs = append(objs, insightsRegistry(insightsRegistryName(n, i), batch, ns, sharedSecretName(batch)))
		}
		if err := createAll(ctx, cp.c, objs); err != nil {
			return res, err
		}
		if err := waitRegistries(ctx, cp, batch, n, w, func(tr *trustv1alpha1.TrustedRegistry) bool {
			return isReady(tr) && tr.Status.Coverage != nil
		}); err != nil {
			return res, fmt.Errorf("I1 %d registries: %w", n, err)
		}
	}
	if err := waitIdle(ctx, w); err != nil {
		return res, err
	}
	// Let delayed triggers of the setup fire and settle before measuring.
	time.Sleep(6 * time.Second)
	if err := waitIdle(ctx, w); err != nil {
		return res, err
	}
	mark, err := markPhase(m)
	if err != nil {
		return res, err
	}
	stopProfile := profile()
	children0 := childrenCPU() // (read outside the measured span: /proc of every process)
	cpu0 := processCPU()
	t0 := time.Now()
	err = kit.Parallel(ctx, pods, 8, func(ctx context.Context, i int) error {
		return cp.c.Create(ctx, insightsPod(ns, i))
	})
	res.CreateSeconds = time.Since(t0).Seconds()
	if err != nil {
		return res, fmt.Errorf("I1 creating Pods: %w", err)
	}
	counted := func(tr *trustv1alpha1.TrustedRegistry) bool {
		return tr.Status.Coverage != nil && tr.Status.Coverage.Pods == int32(pods) && tr.Status.Coverage.UncoveredPods == int32(pods)
	}
	if n > 0 {
		// Settled: every registry's status.coverage, as the apiserver's watch delivered it
		// to the manager's cache, counts every Pod. Reading the cache costs the harness
		// next to nothing; listing the registries from the apiserver (decoding 300 of them)
		// would add the harness's own work, growing with the registries, to the measured
		// CPU. The apiserver is asked below, after the measurement.
		for statusWrites(m, mark) < int64(n) && time.Since(t0) < w.timeout {
			time.Sleep(100 * time.Millisecond) // (cheaper still: no registry written yet)
		}
		if err := waitCached(ctx, m, batch, n, w, counted); err != nil {
			return res, fmt.Errorf("I1 %d registries after %d Pods: %w", n, pods, err)
		}
	}
	res.SettleSeconds = time.Since(t0).Seconds()
	res.CPUSeconds = processCPU() - cpu0
	res.ControlPlaneCPUSeconds = cpuSince(children0, childrenCPU())
	stopProfile()
	if n > 0 {
		if err := waitRegistries(ctx, cp, batch, n, w, counted); err != nil {
			return res, fmt.Errorf("I1 %d registries after %d Pods, from the apiserver: %w", n, pods, err)
		}
	}
	if err := waitIdle(ctx, w); err != nil {
		return res, err
	}
	if res.Phase, err = mark.stats(n); err != nil {
		return res, err
	}
	res.StatusWrites = statusWrites(m, mark)
	res.WritesPerPod = float64(res.Phase.Requests.Writes) / float64(pods)
	return res, nil
}

// waitRegistries polls (every second, to keep the harness's own CPU small) until every
// registry of batch satisfies done.
func waitRegistries(ctx context.Context, cp *controlPlane, batch string, n int, w waits, done func(*trustv1alpha1.TrustedRegistry) bool) error {
	list := func(l *trustv1alpha1.TrustedRegistryList) error {
		return cp.c.List(ctx, l, client.MatchingLabels{labelBatch: batch})
	}
	return pollRegistries(ctx, list, n, w.timeout, time.Second, "", done)
}

// waitCached polls the manager's cache (every 100 ms) until every registry of batch
// satisfies done.
func waitCached(ctx context.Context, m *runningManager, batch string, n int, w waits, done func(*trustv1alpha1.TrustedRegistry) bool) error {
	list := func(l *trustv1alpha1.TrustedRegistryList) error {
		return m.cache.List(ctx, l, client.MatchingLabels{labelBatch: batch}, client.UnsafeDisableDeepCopy)
	}
	return pollRegistries(ctx, list, n, w.timeout, 100*time.Millisecond, " in the manager's cache", done)
}

// pollRegistries lists every interval until exactly n registries are listed and all
// satisfy done; where names the source in the timeout error.
func pollRegistries(ctx context.Context, list func(*trustv1alpha1.TrustedRegistryList) error, n int, timeout, interval time.Duration,
	where string, done func(*trustv1alpha1.TrustedRegistry) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		l := &trustv1alpha1.TrustedRegistryList{}
		if err := list(l); err != nil {
			return err
		}
		ok := 0
		for i := range l.Items {
			if done(&l.Items[i]) {
				ok++
			}
		}
		if ok == n && len(l.Items) == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d registries done%s after %s", ok, n, where, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// processCPU is this process's user+system CPU time in seconds.
func processCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// evaluateInsights compares the burst under the most registries with the same burst under
// one registry: the target is at most twice its CPU.
func (r *results) evaluateInsights(add func(what, target, value string, ok bool)) {
	var one *i1Result
	for i := range r.I1 {
		if r.I1[i].Registries == 1 {
			one = &r.I1[i]
		}
	}
	if one == nil || one.CPUSeconds <= 0 {
		return
	}
	for i := range r.I1 {
		x := &r.I1[i]
		if x.Registries <= 1 {
			continue
		}
		x.RatioToSingle = x.CPUSeconds / one.CPUSeconds
		add(fmt.Sprintf("I1 Pod burst, %d registries: CPU vs 1 registry", x.Registries), "≤ 2.0×", fmt.Sprintf("%.2f×", x.RatioToSingle), x.RatioToSingle <= 2)
	}
}

func (r *results) printInsights(p func(string, ...any)) {
	for _, x := range r.I1 {
		guard := fmt.Sprintf("%d registries", x.Registries)
		switch x.Registries {
		case 0:
			guard = "no registry (floor: harness + Pod informer)"
		case 1:
			guard = "1 registry"
		}
		target := "(info)"
		if x.Registries > 1 {
			target = fmt.Sprintf("%s ≤ 2.0× 1 registry (%.2f×)", mark(x.RatioToSingle <= 2), x.RatioToSingle)
		}
		cluster := ""
		if cp := x.ControlPlaneCPUSeconds; len(cp) > 0 {
			cluster = fmt.Sprintf(" (kube-apiserver %.2f, etcd %.2f)", cp["kube-apiserver"], cp["etcd"])
		}
		p("| I1 %d Pod CREATEs in a namespace guarded by %s | **%.2f CPU s** (process)%s; %d status writes, %d writes, %.0f reconciles; created in %.1f s, settled in %.1f s | – | %s |\n",
			x.Pods, guard, x.CPUSeconds, cluster, x.StatusWrites, x.Phase.Requests.Writes, x.Phase.Reconciles, x.CreateSeconds, x.SettleSeconds, target)
	}
}

// statusWrites counts the manager's TrustedRegistry status writes since mark.
func statusWrites(m *runningManager, mark phaseMark) int64 {
	d := m.requests.snapshot().sub(mark.req)
	return d.ByKind["PUT trustedregistries/status"] + d.ByKind["PATCH trustedregistries/status"]
}
