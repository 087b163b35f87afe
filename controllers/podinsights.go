package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
)

// Pod insights at scale (docs/performance.md, "Pod insights"): what status.coverage and the
// report results of the shared policies read of Pods is aggregated once per namespace, by
// the podinsights controller, and shared by every TrustedRegistry guarding the namespace.
// A Pod change marks its namespace; the namespace is aggregated again once its Pods have
// been quiet for podQuietDelay, or at the latest podMaxDelay after its first unaggregated
// change; only then are the registries whose coverage changed reconciled. A burst of Pods
// thus costs one aggregation per namespace and at most one reconcile per registry per
// podMaxDelay, whatever the number of Pods. Insights are informational: enforcement never
// reads them (docs/fail-closed.md).
const (
	podQuietDelay = 2 * time.Second
	podMaxDelay   = 30 * time.Second
)

// podGroup is the Pods of one namespace that run the same set of images.
type podGroup struct {
	// images are the distinct images of each of these Pods, sorted; canonical spells each
	// (made once here, matched against every registry guarding the namespace).
	images    []string
	canonical []render.CanonicalImage
	pods      int32
	// example is the first of these Pods by "namespace/name".
	example string
}

// namespacePods is what insights read of the Pods of one namespace.
type namespacePods struct {
	pods   int32
	groups []podGroup
	// distinct spells each image of these Pods once (in the order first met), and seq
	// tells this aggregate from the namespace's others (coverageMemo)
	distinct []render.CanonicalImage
	seq      uint64
	// group maps a Pod's name to the index of its group (report results name Pods).
	group map[string]int
}

// aggregatePods groups the Pods of one namespace by the images they run (pure).
func aggregatePods(pods []*corev1.Pod) *namespacePods {
	out := &namespacePods{group: make(map[string]int, len(pods))}
	index := map[string]int{}
	seen := map[string]bool{}
	for _, p := range pods {
		images := slices.Compact(slices.Sorted(slices.Values(podImages(p))))
		key := strings.Join(images, "\n")
		i, ok := index[key]
		ex := p.Namespace + "/" + p.Name
		if !ok {
			i = len(out.groups)
			index[key] = i
			canonical := make([]render.CanonicalImage, len(images))
			for j, image := range images {
				canonical[j] = render.Canonical(image)
				if !seen[image] {
					seen[image] = true
					out.distinct = append(out.distinct, canonical[j])
				}
			}
			out.groups = append(out.groups, podGroup{images: images, canonical: canonical, example: ex})
		}
		g := &out.groups[i]
		g.pods++
		if ex < g.example {
			g.example = ex
		}
		out.group[p.Name] = i
		out.pods++
	}
	return out
}

// imagesOf returns the images of one Pod of the namespace, if it was aggregated.
func (n *namespacePods) imagesOf(name string) ([]string, bool) {
	i, ok := n.group[name]
	if !ok {
		return nil, false
	}
	return n.groups[i].images, true
}

// coverageOf is status.coverage of a registry with patterns over the aggregated Pods of
// the namespaces it guards (pure): the same summary observeCoverage makes from the Pods,
// in work proportional to the distinct image sets rather than to the Pods.
func coverageOf(matcher *render.Matcher, namespaces []*namespacePods) *trustv1alpha1.CoverageSummary {
	matches := map[string]bool{}
	match := func(image string, c render.CanonicalImage) bool {
		m, ok := matches[image]
		if !ok {
			m = matcher.MatchCanonical(c)
			matches[image] = m
		}
		return m
	}
	uses := map[string]*runningImage{}
	sum := &trustv1alpha1.CoverageSummary{}
	for _, ns := range namespaces {
		if ns == nil {
			continue
		}
		sum.Pods += ns.pods
		for _, g := range ns.groups {
			uncovered := false
			for i, image := range g.images {
				if match(image, g.canonical[i]) {
					continue
				}
				uncovered = true
				u := uses[image]
				if u == nil {
					u = &runningImage{example: g.example}
					uses[image] = u
				}
				u.pods += g.pods
				if g.example < u.example {
					u.example = g.example
				}
			}
			if uncovered {
				sum.UncoveredPods += g.pods
			}
		}
	}
	for image, u := range uses {
		sum.Uncovered = append(sum.Uncovered, trustv1alpha1.UncoveredImage{Image: image, Pods: u.pods, Example: u.example})
	}
	sum.Uncovered = mostUsedFirst(sum.Uncovered, func(u trustv1alpha1.UncoveredImage) (int32, string) { return u.Pods, u.Image })
	return sum
}

// podLookup finds the images of a Pod by namespace and name; a nil podLookup means Pods are
// not watched.
type podLookup func(namespace, name string) ([]string, bool)

// podsLookup looks Pods up in a list.
func podsLookup(pods []*corev1.Pod) podLookup {
	if pods == nil {
		return nil
	}
	byName := make(map[types.NamespacedName][]string, len(pods))
	for _, p := range pods {
		byName[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = podImages(p)
	}
	return func(ns, name string) ([]string, bool) {
		imgs, ok := byName[types.NamespacedName{Namespace: ns, Name: name}]
		return imgs, ok
	}
}

// namespacesLookup looks Pods up in the aggregates of their namespaces.
func namespacesLookup(byNS map[string]*namespacePods) podLookup {
	return func(ns, name string) ([]string, bool) {
		if n := byNS[ns]; n != nil {
			return n.imagesOf(name)
		}
		return nil, false
	}
}

// podInsights is the podinsights controller: one request per namespace, which aggregates
// its Pods and reconciles the TrustedRegistries whose coverage changed.
type podInsights struct {
	// client reads Pods from the cache
	client client.Client
	// registries patches the status of TrustedRegistries (coverageClient)
	registries rest.Interface
	// registry reconciles a TrustedRegistry (a channel source of the registry controller)
	registry chan event.GenericEvent
	// nsEvents asks for a namespace to be aggregated again (report changes)
	nsEvents chan event.GenericEvent
	// guarding lists the TrustedRegistries that guard a namespace.
	guarding func(ctx context.Context, namespace string) ([]*trustv1alpha1.TrustedRegistry, error)
	// guarded lists the namespaces a TrustedRegistry guards.
	guarded func(ctx context.Context, registry *trustv1alpha1.TrustedRegistry) ([]string, error)
	// mayWrite bounds the insight writes of one registry (at most one per interval: the
	// registry controller's, for its report results, too); wrote records one.
	mayWrite func(registry string) (bool, time.Duration)
	wrote    func(registry string)
	// preview: the rotation preview is on (TrustedRegistryReconciler.Preview)
	preview bool
	now     func() time.Time

	mu sync.Mutex
	ns map[string]*namespacePods
	// aggregations numbers the aggregates (namespacePods.seq)
	aggregations uint64
	// matchers by spec.images (a Matcher compiles its patterns on first use; every batch
	// matches the patterns of every registry guarding the namespace)
	matchers map[string]*render.Matcher
	// first and last are the times of the first and the last change of a namespace not
	// aggregated yet; reports marks namespaces whose report results changed.
	first, last map[string]time.Time
	reports     map[string]bool
}

func newPodInsights(c client.Client) *podInsights {
	return &podInsights{
		client: c, now: time.Now,
		mayWrite: func(string) (bool, time.Duration) { return true, 0 }, wrote: func(string) {},
		registry: make(chan event.GenericEvent, 1024), nsEvents: make(chan event.GenericEvent, 1024),
		ns: map[string]*namespacePods{}, matchers: map[string]*render.Matcher{}, first: map[string]time.Time{}, last: map[string]time.Time{}, reports: map[string]bool{},
	}
}

// maxMatchers bounds the cached matchers (one per distinct spec.images).
const maxMatchers = 4096

// matcher returns the (cached) Matcher of patterns.
func (p *podInsights) matcher(patterns []string) *render.Matcher {
	key := strings.Join(patterns, "\n")
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.matchers[key]
	if m == nil {
		if len(p.matchers) >= maxMatchers {
			clear(p.matchers)
		}
		m = render.NewMatcher(patterns)
		p.matchers[key] = m
	}
	return m
}

// changed records a change in a namespace (a Pod's images, or with reports its report
// results).
func (p *podInsights) changed(namespace string, reports bool) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.first[namespace]; !ok {
		p.first[namespace] = now
	}
	p.last[namespace] = now
	if reports {
		p.reports[namespace] = true
	}
}

// namespaces returns the aggregates of the namespaces named, aggregating those never
// aggregated (a registry's first reconcile); the others are as of their last aggregation.
func (p *podInsights) namespaces(ctx context.Context, names []string) (map[string]*namespacePods, error) {
	out := make(map[string]*namespacePods, len(names))
	var missing []string
	p.mu.Lock()
	for _, n := range names {
		if a, ok := p.ns[n]; ok {
			out[n] = a
		} else {
			missing = append(missing, n)
		}
	}
	p.mu.Unlock()
	for _, n := range missing {
		a, err := p.aggregate(ctx, n)
		if err != nil {
			return nil, err
		}
		out[n] = a
	}
	return out, nil
}

// aggregate lists the Pods of a namespace (from the cache) and stores their aggregate.
func (p *podInsights) aggregate(ctx context.Context, namespace string) (*namespacePods, error) {
	list := &corev1.PodList{}
	if err := p.client.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing Pods in %s: %w", namespace, err)
	}
	pods := make([]*corev1.Pod, 0, len(list.Items))
	for i := range list.Items {
		pods = append(pods, &list.Items[i])
	}
	a := aggregatePods(pods)
	p.mu.Lock()
	p.aggregations++
	a.seq = p.aggregations
	if a.pods == 0 {
		delete(p.ns, namespace) // (an empty namespace costs nothing to aggregate again)
	} else {
		p.ns[namespace] = a
	}
	p.mu.Unlock()
	return a, nil
}

// due tells whether a namespace's changes may be aggregated now, or how long to wait.
func (p *podInsights) due(namespace string, now time.Time) (bool, bool, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	first, ok := p.first[namespace]
	if !ok {
		return false, false, 0
	}
	last := p.last[namespace]
	if wait := min(podQuietDelay-now.Sub(last), podMaxDelay-now.Sub(first)); wait > 0 {
		return false, false, wait
	}
	reports := p.reports[namespace]
	delete(p.first, namespace)
	delete(p.last, namespace)
	delete(p.reports, namespace)
	return true, reports, 0
}

// Reconcile aggregates one namespace whose Pods (or report results) changed. It writes
// status.coverage of each TrustedRegistry guarding it whose coverage changed (nothing else
// in the status depends on Pods but a rotation preview), and when report results changed,
// or for a registry with a rotation preview, it asks the registry controller for a
// reconcile.
func (p *podInsights) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ok, reports, wait := p.due(req.Name, p.now())
	if !ok {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	retry, err := p.flush(ctx, req.Name, reports)
	if err != nil || retry > 0 {
		p.changed(req.Name, reports) // not done: the next pass aggregates again
	}
	return ctrl.Result{RequeueAfter: retry}, err
}

// flush aggregates a namespace and hands on what changed; retry > 0 says when to come back
// for registries whose last insight write was too recent.
func (p *podInsights) flush(ctx context.Context, namespace string, reports bool) (retry time.Duration, err error) {
	registries, err := p.guarding(ctx, namespace)
	if err != nil {
		return 0, err
	}
	if len(registries) == 0 {
		// nobody reads this namespace's Pods: keep nothing of them
		p.mu.Lock()
		delete(p.ns, namespace)
		p.mu.Unlock()
		return 0, nil
	}
	if _, err := p.aggregate(ctx, namespace); err != nil {
		return 0, err
	}
	memo := newCoverageMemo()
	for _, tr := range registries {
		if !tr.DeletionTimestamp.IsZero() {
			continue
		}
		// Report results, and the rotation preview of a registry whose keys are retiring
		// (it verifies the images running), need the registry controller's reconcile.
		if reports || (p.preview && tr.Status.RotationPreview != nil) {
			select {
			case p.registry <- event.GenericEvent{Object: tr}:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			continue
		}
		guarded, err := p.guarded(ctx, tr)
		if err != nil {
			return 0, err
		}
		aggs, err := p.namespaces(ctx, guarded)
		if err != nil {
			return 0, err
		}
		shared := memo.of(p.matcher(registryPatterns(tr)), orderedAggregates(aggs, guarded))
		if equality.Semantic.DeepEqual(tr.Status.Coverage, shared.coverage) {
			continue
		}
		if ok, wait := p.mayWrite(tr.Name); !ok {
			retry = minPositive(retry, wait)
			continue
		}
		// A merge patch of status.coverage alone: the registry controller computes the
		// same coverage from the same aggregates, so neither overwrites the other's news.
		patch, err := shared.patchOf()
		if err != nil {
			return 0, err
		}
		if err := p.patchStatus(ctx, tr.Name, patch); client.IgnoreNotFound(err) != nil {
			return 0, fmt.Errorf("writing the coverage of TrustedRegistry %s: %w", tr.Name, err)
		}
		p.wrote(tr.Name)
	}
	return retry, nil
}

// namespaceHandler records the change of a Pod (or, from nsEvents, of report results) in
// its namespace and queues the namespace: the queue keeps one pending entry per namespace.
type namespaceHandler struct {
	p       *podInsights
	reports bool
	filter  func(e event.UpdateEvent) bool // nil: every update counts
}

var _ handler.EventHandler = namespaceHandler{}

func (h namespaceHandler) add(o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	ns := o.GetNamespace()
	if ns == "" {
		return
	}
	h.p.changed(ns, h.reports)
	q.AddAfter(reconcile.Request{NamespacedName: types.NamespacedName{Name: ns}}, podQuietDelay)
}

func (h namespaceHandler) Create(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(e.Object, q)
}

func (h namespaceHandler) Update(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if h.filter != nil && !h.filter(e) {
		return
	}
	h.add(e.ObjectNew, q)
}

func (h namespaceHandler) Delete(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(e.Object, q)
}

func (h namespaceHandler) Generic(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(e.Object, q)
}

// setupWithManager registers the podinsights controller: it watches Pods (their images)
// and the report changes the registry controller hands it.
func (p *podInsights) setupWithManager(mgr ctrl.Manager, imagesChanged func(event.UpdateEvent) bool) error {
	rc, err := coverageClient(mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return fmt.Errorf("podinsights: %w", err)
	}
	p.registries = rc
	return ctrl.NewControllerManagedBy(mgr).
		Named("podinsights").
		WatchesRawSource(source.Kind[client.Object](mgr.GetCache(), &corev1.Pod{}, namespaceHandler{p: p, filter: imagesChanged})).
		WatchesRawSource(source.Channel(p.nsEvents, namespaceHandler{p: p, reports: true})).
		Complete(p)
}

// partialMetadata asks the apiserver to answer with an object's metadata alone, in protobuf
// (what the metadata client asks for).
const partialMetadata = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1," +
	"application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"

// coverageClient is the REST client of the coverage writes: TrustedRegistries' API path,
// the metadata client's serializers (an error's Status is decoded; nothing else is).
func coverageClient(cfg *rest.Config, h *http.Client) (rest.Interface, error) {
	c := metadata.ConfigFor(cfg)
	c.GroupVersion, c.APIPath = &trustv1alpha1.GroupVersion, "/apis"
	return rest.RESTClientForConfigAndClient(c, h)
}

// patchStatus applies a merge patch to the status of a TrustedRegistry. The apiserver
// answers with the registry's metadata alone (partialMetadata), which nothing reads: the
// watch brings the registry to the cache anyway. One such write per registry whose
// coverage changed is most of what a burst of Pods costs with hundreds of registries
// (docs/performance.md, "Pod insights"), so it decodes nothing of a success, and sends
// no query parameters to encode.
func (p *podInsights) patchStatus(ctx context.Context, name string, patch []byte) error {
	return p.registries.Patch(types.MergePatchType).Resource("trustedregistries").Name(name).SubResource("status").
		SetHeader("Accept", partialMetadata).Body(patch).Do(ctx).Error()
}

// reportChanged hands a report's namespace to the podinsights controller.
func (p *podInsights) reportChanged(ctx context.Context, namespace string) {
	o := &corev1.Pod{}
	o.Namespace = namespace
	select {
	case p.nsEvents <- event.GenericEvent{Object: o}:
	case <-ctx.Done():
	}
}

// podAggregates returns the Pod aggregates of the namespaces a registry guards.
func (r *TrustedRegistryReconciler) podAggregates(ctx context.Context, guarded []string) (map[string]*namespacePods, error) {
	if r.insights == nil {
		// (a reconciler set up without a manager: aggregate here, nothing is shared)
		return (&podInsights{client: r.Client, ns: map[string]*namespacePods{}}).namespaces(ctx, guarded)
	}
	return r.insights.namespaces(ctx, guarded)
}

// registryMatcher returns the Matcher of a registry's patterns (cached when shared).
func (r *TrustedRegistryReconciler) registryMatcher(registry *trustv1alpha1.TrustedRegistry) *render.Matcher {
	if r.insights == nil {
		return render.NewMatcher(registryPatterns(registry))
	}
	return r.insights.matcher(registryPatterns(registry))
}

// orderedAggregates lists the aggregates of names in order.
func orderedAggregates(aggs map[string]*namespacePods, names []string) []*namespacePods {
	out := make([]*namespacePods, 0, len(names))
	for _, n := range names {
		out = append(out, aggs[n])
	}
	return out
}

// coveragePatch is a JSON merge patch that sets status.coverage to c, every field of it
// (a field left out of a merge patch would keep its old value).
func coveragePatch(c *trustv1alpha1.CoverageSummary) ([]byte, error) {
	// (typed rather than maps: one per registry of a burst, and no field can be forgotten)
	type coverage struct {
		Pods          int32                          `json:"pods"`
		Uncovered     []trustv1alpha1.UncoveredImage `json:"uncovered"` // nil: null, which removes the list
		UncoveredPods int32                          `json:"uncoveredPods"`
	}
	type status struct {
		Coverage coverage `json:"coverage"`
	}
	var patch struct {
		Status status `json:"status"`
	}
	patch.Status.Coverage = coverage{Pods: c.Pods, UncoveredPods: c.UncoveredPods}
	if len(c.Uncovered) > 0 {
		patch.Status.Coverage.Uncovered = c.Uncovered
	}
	return json.Marshal(&patch)
}

// beyondInsights passes the updates of a TrustedRegistry that change more than its
// insights (status.coverage, status.reports): a watch that does not read them skips the
// rest (a burst of Pods rewrites the coverage of every registry guarding the namespace).
var beyondInsights = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	before, ok1 := e.ObjectOld.(*trustv1alpha1.TrustedRegistry)
	after, ok2 := e.ObjectNew.(*trustv1alpha1.TrustedRegistry)
	if !ok1 || !ok2 {
		return true
	}
	if before.Generation != after.Generation || !before.DeletionTimestamp.Equal(after.DeletionTimestamp) {
		return true
	}
	a := *after // (a shallow copy: only top-level fields are replaced)
	a.Status.Coverage, a.Status.Reports = before.Status.Coverage, before.Status.Reports
	a.ResourceVersion, a.ManagedFields = before.ResourceVersion, before.ManagedFields
	// reflect's equality, not the semantic one (a fifth of the cost on every registry's
	// coverage write): it is the stricter, so a doubt passes the update, never drops it.
	return !reflect.DeepEqual(before, &a)
}}
