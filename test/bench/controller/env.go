package main

import (
	"context"
	"errors"
	"fmt"
	policyreportv1alpha2 "github.com/kyverno/kyverno/api/policyreport/v1alpha2"
	"github.com/signet-operator/signet/controllers"
	"github.com/signet-operator/signet/internal/kyverno"
	"github.com/signet-operator/signet/internal/operator"
	"github.com/signet-operator/signet/internal/testenv"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"net/http"
	"net/url"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// trustNS is the trust namespace of the benchmark (main.go's default).
const trustNS = controllers.DefaultTrustNamespace

// controllerName is the name the reconciler registers with controller-runtime (metrics
// labels carry it).
const controllerName = "trustedregistry"

// mainQPS and mainBurst are main.go's defaults for --kube-api-qps and --kube-api-burst.
const (
	mainQPS   = 50
	mainBurst = 100
	// mainWorkers is main.go's default for --workers.
	mainWorkers = 4
	// unlimitedQPS stands for "no client-side limit" (far above what the apiserver serves).
	unlimitedQPS   = 100000
	unlimitedBurst = 200000
)

// controlPlane is the local kube-apiserver + etcd with Signet's and Kyverno's CRDs (no
// Kyverno running) and the harness clients that drive the scenarios.
type controlPlane struct {
	env *envtest.Environment
	cfg *rest.Config
	// c is the harness client: no client-side rate limit, never the manager's.
	c client.WithWatch
}

// benchScheme is the manager's scheme plus the wgpolicyk8s.io report kinds the harness
// writes.
func benchScheme() *runtime.Scheme {
	s := operator.Scheme()
	if err := policyreportv1alpha2.Install(s); err != nil {
		panic(err)
	}
	return s
}

// startControlPlane starts kube-apiserver and etcd with the CRDs, and config/admission
// when admission is set.
func startControlPlane(ctx context.Context, admission bool) (*controlPlane, error) {
	env, err := testenv.New(testenv.WithKyvernoCRDs())
	if err != nil {
		return nil, err
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	cp := &controlPlane{env: env, cfg: cfg}
	hcfg := rest.CopyConfig(cfg)
	hcfg.QPS, hcfg.Burst = unlimitedQPS, unlimitedBurst
	cp.c, err = client.NewWithWatch(hcfg, client.Options{Scheme: benchScheme()})
	if err == nil {
		err = cp.ensureNamespace(ctx, trustNS)
	}
	if err == nil && admission {
		err = testenv.InstallAdmission(ctx, cfg, controllers.Finalizer)
	}
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return cp, nil
}

func (cp *controlPlane) stop() error { return cp.env.Stop() }

func (cp *controlPlane) ensureNamespace(ctx context.Context, name string) error {
	err := cp.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// --- request counting -----------------------------------------------------------------

// requestCounter counts a client's HTTP requests to the apiserver by verb and resource,
// e.g. "PATCH configmaps", "PUT trustedregistries/status", "WATCH secrets".
type requestCounter struct {
	total  atomic.Int64
	writes atomic.Int64
	mu     sync.Mutex
	byKey  map[string]int64
}

func newRequestCounter() *requestCounter { return &requestCounter{byKey: map[string]int64{}} }

func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		c.count(req.Method, req.URL)
		return rt.RoundTrip(req)
	})
}

func (c *requestCounter) count(method string, u *url.URL) {
	key := requestKey(method, u)
	c.total.Add(1)
	// a dry run (Signet learning a policy's defaulted form once after a start) stores
	// nothing: a request, not a write
	if method != http.MethodGet && method != http.MethodHead && u.Query().Get("dryRun") == "" {
		c.writes.Add(1)
	}
	c.mu.Lock()
	c.byKey[key]++
	c.mu.Unlock()
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// requestCounts is a snapshot of a requestCounter, or the difference of two.
type requestCounts struct {
	Total  int64            `json:"total"`
	Writes int64            `json:"writes"`
	ByKind map[string]int64 `json:"byKind"`
}

func (c *requestCounter) snapshot() requestCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := requestCounts{Total: c.total.Load(), Writes: c.writes.Load(), ByKind: make(map[string]int64, len(c.byKey))}
	for k, v := range c.byKey {
		s.ByKind[k] = v
	}
	return s
}

// sub returns s - before.
func (s requestCounts) sub(before requestCounts) requestCounts {
	d := requestCounts{Total: s.Total - before.Total, Writes: s.Writes - before.Writes, ByKind: map[string]int64{}}
	for k, v := range s.ByKind {
		if n := v - before.ByKind[k]; n != 0 {
			d.ByKind[k] = n
		}
	}
	return d
}

// writeKinds lists the write requests of s, e.g. "PATCH configmaps ×100", most first.
func (s requestCounts) writeKinds() []string {
	type kv struct {
		k string
		v int64
	}
	var all []kv
	for k, v := range s.ByKind {
		if isWriteKey(k) {
			all = append(all, kv{k, v})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].v != all[j].v {
			return all[i].v > all[j].v
		}
		return all[i].k < all[j].k
	})
	out := make([]string, 0, len(all))
	for _, e := range all {
		out = append(out, fmt.Sprintf("%s ×%d", e.k, e.v))
	}
	return out
}

func isWriteKey(k string) bool {
	verb, _, _ := strings.Cut(k, " ")
	switch verb {
	case "GET", "LIST", "WATCH", "DISCOVERY", "HEAD":
		return false
	}
	return true
}

// requestKey names a request by verb (GET, LIST, WATCH, POST, PUT, PATCH, DELETE, or
// DISCOVERY) and resource (with subresource).
func requestKey(method string, u *url.URL) string {
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	var rest []string
	switch {
	case len(segs) >= 2 && segs[0] == "api":
		rest = segs[2:]
	case len(segs) >= 3 && segs[0] == "apis":
		rest = segs[3:]
	}
	if len(rest) == 0 {
		return "DISCOVERY " + u.Path
	}
	if rest[0] == "namespaces" && len(rest) >= 3 {
		rest = rest[2:]
	}
	resource := rest[0]
	if len(rest) >= 3 {
		resource += "/" + rest[2]
	}
	verb := method
	if u.Query().Get("dryRun") != "" {
		verb = "DRYRUN-" + method
	}
	if method == http.MethodGet {
		q := u.Query()
		switch {
		case q.Get("watch") == "true" || q.Get("watch") == "1":
			verb = "WATCH"
		case len(rest) == 1:
			verb = "LIST"
		}
	}
	return verb + " " + resource
}

// --- the manager, in-process, as main.go runs it --------------------------------------

type managerOptions struct {
	qps        float32
	burst      int
	workers    int
	syncPeriod *time.Duration
}

// runningManager is Signet's manager running in this process.
type runningManager struct {
	requests *requestCounter
	// cache is the manager's informer cache: what the manager has seen of the apiserver
	cache client.Reader
	stop  func() error
}

// startManager runs Signet's manager in this process against the control plane, built by
// internal/operator exactly as main.go builds it with its default flags (trust namespace,
// 4 workers, blocked counts and Pod insights on, rotation preview off, QPS/burst on the
// rest.Config), except: metrics and probe endpoints off, the SyncPeriod given, several
// managers allowed one after another, and every HTTP request counted.
func startManager(cp *controlPlane, o managerOptions) (*runningManager, error) {
	cfg := rest.CopyConfig(cp.cfg)
	cfg.QPS, cfg.Burst = o.qps, o.burst
	rc := newRequestCounter()
	cfg.Wrap(rc.wrap)
	mgr, err := operator.New(cfg, operator.Options{
		TrustNamespace:               trustNS,
		Workers:                      o.workers,
		CountBlocked:                 true,
		PodInsights:                  true,
		DiscoveryMaxAge:              kyverno.DefaultMaxAge,
		SyncPeriod:                   o.syncPeriod,
		SkipControllerNameValidation: true,
	})
	if err != nil {
		return nil, err
	}
	// The workqueue and worker gauges are global, shared by every manager this process
	// ran: a manager stopped with work queued leaves them above zero. Measure from here.
	base, err := gatherControllerMetrics()
	if err != nil {
		return nil, err
	}
	gaugeBase.Store(&base)
	activeRequests.Store(rc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			stopErr = <-done
		})
		return stopErr
	}
	syncCtx, syncCancel := context.WithTimeout(ctx, 2*time.Minute)
	defer syncCancel()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		_ = stop()
		return nil, errors.New("the manager's cache did not sync")
	}
	return &runningManager{requests: rc, cache: mgr.GetCache(), stop: stop}, nil
}

// --- controller-runtime metrics -------------------------------------------------------

// controllerMetrics reads the reconciler's counters from controller-runtime's registry.
type controllerMetrics struct {
	Reconciles    float64
	Errors        float64
	QueueDepth    float64
	ActiveWorkers float64
}

// activeRequests counts the running manager's requests (waitIdle also waits for them to
// stop: the event recorder sends Events asynchronously, after the reconcile that made them).
var activeRequests atomic.Pointer[requestCounter]

// gaugeBase holds the gauges' values when the running manager started.
var gaugeBase atomic.Pointer[controllerMetrics]

// readControllerMetrics returns the reconcile counters (cumulative over every manager this
// process ran) and the queue and worker gauges of the running manager.
func readControllerMetrics() (controllerMetrics, error) {
	m, err := gatherControllerMetrics()
	if b := gaugeBase.Load(); b != nil {
		m.QueueDepth -= b.QueueDepth
		m.ActiveWorkers -= b.ActiveWorkers
	}
	return m, err
}

func gatherControllerMetrics() (controllerMetrics, error) {
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return controllerMetrics{}, err
	}
	var m controllerMetrics
	for _, f := range families {
		var dst *float64
		switch f.GetName() {
		case "controller_runtime_reconcile_total":
			dst = &m.Reconciles
		case "controller_runtime_reconcile_errors_total":
			dst = &m.Errors
		case "workqueue_depth":
			dst = &m.QueueDepth
		case "controller_runtime_active_workers":
			dst = &m.ActiveWorkers
		default:
			continue
		}
		for _, s := range f.GetMetric() {
			ours := false
			for _, l := range s.GetLabel() {
				if (l.GetName() == "controller" || l.GetName() == "name") && l.GetValue() == controllerName {
					ours = true
				}
			}
			if !ours {
				continue
			}
			if c := s.GetCounter(); c != nil {
				*dst += c.GetValue()
			}
			if g := s.GetGauge(); g != nil {
				*dst += g.GetValue()
			}
		}
	}
	return m, nil
}

// waits bounds the harness's waits: quiet is how long the reconciler must have been idle
// to count as idle, timeout how long any wait may last.
type waits struct{ quiet, timeout time.Duration }

// waitIdle waits until the manager has had nothing to do (empty queue, no active worker,
// no new reconcile, no HTTP request) for quiet, or until timeout.
func waitIdle(ctx context.Context, w waits) error {
	quiet, timeout := w.quiet, w.timeout
	deadline := time.Now().Add(timeout)
	var last controllerMetrics
	var lastRequests int64
	stableSince := time.Time{}
	for {
		m, err := readControllerMetrics()
		if err != nil {
			return err
		}
		var requests int64
		if rc := activeRequests.Load(); rc != nil {
			requests = rc.total.Load()
		}
		now := time.Now()
		switch {
		case m.QueueDepth != 0 || m.ActiveWorkers != 0 || m.Reconciles != last.Reconciles || requests != lastRequests:
			stableSince = time.Time{}
		case stableSince.IsZero():
			stableSince = now
		case now.Sub(stableSince) >= quiet:
			return nil
		}
		last, lastRequests = m, requests
		if now.After(deadline) {
			return fmt.Errorf("the reconciler was still busy after %s (queue %v, active %v)", timeout, m.QueueDepth, m.ActiveWorkers)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
