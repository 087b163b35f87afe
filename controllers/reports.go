package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	policyreportv1alpha2 "github.com/kyverno/kyverno/api/policyreport/v1alpha2"
	openreportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/kyverno"
	"github.com/signet-operator/signet/internal/render"
	"github.com/signet-operator/signet/internal/reports"
)

// reportPolicyIndex indexes cached reports by the Signet policies their results name.
const reportPolicyIndex = "signet.policies"

// reportStatusInterval bounds how often a change of report results alone (nothing else in
// the status changed) may cause a status write for one TrustedRegistry: bursts of report
// updates are coalesced into one write.
const reportStatusInterval = 5 * time.Second

// reportKind is one report API Signet reads.
type reportKind struct {
	gvk     schema.GroupVersionKind
	newObj  func() client.Object
	newList func() client.ObjectList
	items   func(client.ObjectList) []client.Object
}

var reportKinds = []reportKind{
	{
		gvk:     kyverno.PolicyReport,
		newObj:  func() client.Object { return &policyreportv1alpha2.PolicyReport{} },
		newList: func() client.ObjectList { return &policyreportv1alpha2.PolicyReportList{} },
		items: func(l client.ObjectList) []client.Object {
			return objects(l.(*policyreportv1alpha2.PolicyReportList).Items)
		},
	},
	{
		gvk:     kyverno.OpenReport,
		newObj:  func() client.Object { return &openreportsv1alpha1.Report{} },
		newList: func() client.ObjectList { return &openreportsv1alpha1.ReportList{} },
		items: func(l client.ObjectList) []client.Object {
			return objects(l.(*openreportsv1alpha1.ReportList).Items)
		},
	},
}

// objects points at the items of a typed list.
func objects[T any, PT interface {
	*T
	client.Object
}](items []T) []client.Object {
	out := make([]client.Object, 0, len(items))
	for i := range items {
		out = append(out, PT(&items[i]))
	}
	return out
}

// reportScheme knows only the report kinds: the report caches use it.
func reportScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{policyreportv1alpha2.Install, openreportsv1alpha1.Install} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// reportWatcher owns one cache per report API, created the first time that API is found
// served (Kyverno and its report CRDs may be installed after Signet starts). Each cache holds
// reports shrunk to the results of Signet's policies, indexed by policy name.
type reportWatcher struct {
	mgr        ctrl.Manager
	watch      func(src source.Source) error
	mapFn      handler.MapFunc
	mu         sync.Mutex
	caches     map[schema.GroupVersionKind]cache.Cache
	lastWrites map[string]time.Time
}

func newReportWatcher(mgr ctrl.Manager, watch func(source.Source) error, mapFn handler.MapFunc) *reportWatcher {
	return &reportWatcher{mgr: mgr, watch: watch, mapFn: mapFn, caches: map[schema.GroupVersionKind]cache.Cache{}, lastWrites: map[string]time.Time{}}
}

// ensure starts the caches and watches of the served report kinds (kyvernokinds_controller.go).
func (w *reportWatcher) ensure(ctx context.Context, served kyverno.Served) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, kind := range reportKinds {
		if !served.Has(kind.gvk) || w.caches[kind.gvk] != nil {
			continue
		}
		c, err := cache.New(w.mgr.GetConfig(), cache.Options{
			Scheme:           reportScheme(),
			HTTPClient:       w.mgr.GetHTTPClient(),
			DefaultTransform: reports.SignetTransform,
		})
		if err != nil {
			return fmt.Errorf("creating the %s cache: %w", kind.gvk.Kind, err)
		}
		if err := c.IndexField(ctx, kind.newObj(), reportPolicyIndex, indexReportPolicies); err != nil {
			return fmt.Errorf("indexing %s: %w", kind.gvk.Kind, err)
		}
		if err := w.mgr.Add(c); err != nil {
			return fmt.Errorf("starting the %s cache: %w", kind.gvk.Kind, err)
		}
		if err := w.watch(source.Kind[client.Object](c, kind.newObj(), handler.EnqueueRequestsFromMapFunc(w.mapFn))); err != nil {
			return fmt.Errorf("watching %s: %w", kind.gvk.Kind, err)
		}
		w.caches[kind.gvk] = c
	}
	return nil
}

// running returns the caches of the served report kinds; a served kind whose cache the
// kyvernokinds controller has not started yet is errKindNotWatched.
func (w *reportWatcher) running(served kyverno.Served) (map[schema.GroupVersionKind]cache.Cache, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[schema.GroupVersionKind]cache.Cache{}
	for _, kind := range reportKinds {
		if !served.Has(kind.gvk) {
			continue
		}
		if w.caches[kind.gvk] == nil {
			return nil, fmt.Errorf("%s: %w", kind.gvk.Kind, errKindNotWatched)
		}
		out[kind.gvk] = w.caches[kind.gvk]
	}
	return out, nil
}

// indexReportPolicies lists the Signet policy names a (shrunk) report has results for.
func indexReportPolicies(o client.Object) []string {
	r, err := reports.FromObject(o, reports.IsSignetPolicy)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, res := range r.Results {
		if !seen[res.Policy] {
			seen[res.Policy] = true
			out = append(out, res.Policy)
		}
	}
	return out
}

// registriesInReport maps a report to the TrustedRegistries it has results for: the owner
// of a policy of its own; for a shared policy, the registry of a ClusterPolicy rule or the
// registries its messages name, and for results that name none (passes), the registries
// that guard the report's namespace.
func (r *TrustedRegistryReconciler) registriesInReport(ctx context.Context, o client.Object) []reconcile.Request {
	rep, err := reports.FromObject(o, reports.IsSignetPolicy)
	if err != nil {
		return nil
	}
	names := map[string]bool{}
	byNamespace := false
	for _, res := range rep.Results {
		if name, ok := strings.CutPrefix(res.Policy, reports.PolicyPrefix); ok && name != "" {
			names[name] = true
			continue
		}
		if reg, ok := render.RegistryOfSharedRule(res.Rule); ok {
			names[reg] = true
			continue
		}
		found := registriesNamedIn(res.Message)
		for _, n := range found {
			names[n] = true
		}
		if len(found) == 0 {
			byNamespace = true
		}
	}
	var reqs []reconcile.Request
	if byNamespace && o.GetNamespace() != "" && r.insights != nil {
		// every registry guarding the namespace: batched per namespace (podinsights.go)
		r.insights.reportChanged(ctx, o.GetNamespace())
	} else if byNamespace && o.GetNamespace() != "" {
		for _, req := range r.registriesForNamespace(ctx, o.GetNamespace()) {
			if !names[req.Name] {
				reqs = append(reqs, req)
			}
		}
	}
	for n := range names {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: n}})
	}
	return reqs
}

// registriesNamedIn lists the registries a message names (reports.RegistriesNamedIn).
func registriesNamedIn(msg string) []string { return reports.RegistriesNamedIn(msg) }

// sharedResultMatcher accepts the results of the shared policies that concern one
// registry: a ClusterPolicy rule of its own, a message that names it, or — for results
// that name no registry (passes, errors) — a Pod in a namespace it guards that runs an
// image of its patterns (any Pod there when Pods are not watched).
func sharedResultMatcher(registry *trustv1alpha1.TrustedRegistry, policies map[string]bool, guarded map[string]bool, pods podLookup) reports.ResultMatcher {
	matcher := render.NewMatcher(registryPatterns(registry))
	return func(res *reports.Result) bool {
		if !policies[res.Policy] {
			return false
		}
		if reg, ok := render.RegistryOfSharedRule(res.Rule); ok {
			return reg == registry.Name
		}
		if named := registriesNamedIn(res.Message); len(named) > 0 {
			return slices.Contains(named, registry.Name)
		}
		if !guarded[res.Namespace] {
			return false
		}
		if pods == nil {
			return true
		}
		imgs, known := pods(res.Namespace, res.Name)
		if !known {
			return true
		}
		for _, img := range imgs {
			if matcher.Match(img) {
				return true
			}
		}
		return false
	}
}

// observeReports aggregates the results of one policy across the served report APIs.
// It returns nil when no report API is served.
func (w *reportWatcher) observeReports(ctx context.Context, served kyverno.Served, policies []string, match reports.ResultMatcher) (*trustv1alpha1.ReportSummary, error) {
	caches, err := w.running(served)
	if err != nil {
		return nil, err
	}
	if len(caches) == 0 {
		return nil, nil
	}
	var all []reports.Report
	for _, kind := range reportKinds {
		c := caches[kind.gvk]
		if c == nil {
			continue
		}
		// The manager starts a new cache in the background: wait (bounded) until it has
		// listed the reports, so that a summary is never computed from a partial cache.
		syncCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		synced := c.WaitForCacheSync(syncCtx)
		cancel()
		if !synced {
			return nil, fmt.Errorf("the %s cache has not synced yet", kind.gvk.Kind)
		}
		seen := map[string]bool{}
		for _, policy := range policies {
			list := kind.newList()
			if err := c.List(ctx, list, client.MatchingFields{reportPolicyIndex: policy}); err != nil {
				return nil, fmt.Errorf("listing %s: %w", kind.gvk.Kind, err)
			}
			for _, o := range kind.items(list) {
				if key := o.GetNamespace() + "/" + o.GetName(); seen[key] {
					continue
				} else {
					seen[key] = true
				}
				r, err := reports.FromObject(o, reports.IsSignetPolicy)
				if err != nil {
					continue
				}
				all = append(all, r)
			}
		}
	}
	set := map[string]bool{}
	for _, p := range policies {
		set[p] = true
	}
	var summary trustv1alpha1.ReportSummary
	if match != nil {
		summary = reports.AggregateResults(all, func(r *reports.Result) bool { return set[r.Policy] && match(r) }, reports.MaxFailing)
	} else {
		summary = reports.Aggregate(all, set, reports.MaxFailing)
	}
	return &summary, nil
}

// coalesce decides whether a status change that only concerns report results may be
// written now; if not, it says when to come back.
func (w *reportWatcher) coalesce(registry string, now time.Time) (bool, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if last, ok := w.lastWrites[registry]; ok && now.Sub(last) < reportStatusInterval {
		return false, reportStatusInterval - now.Sub(last)
	}
	return true, 0
}

func (w *reportWatcher) wrote(registry string, now time.Time) {
	w.mu.Lock()
	w.lastWrites[registry] = now
	w.mu.Unlock()
}

func (w *reportWatcher) forget(registry string) {
	w.mu.Lock()
	delete(w.lastWrites, registry)
	w.mu.Unlock()
}
