package controllers

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers/status"
	"github.com/signet-operator/signet/internal/render"
	"github.com/signet-operator/signet/internal/reports"
)

// Kyverno records every request it denies as an events.k8s.io Event in namespace default:
// reason PolicyViolation, action "Resource Blocked", regarding = the policy, related = the
// resource, note "Pod ns/name: [rule] fail (blocked); message". Reports never show denials,
// so these events are the only record of what a policy blocks.
const (
	kyvernoEventNamespace = metav1.NamespaceDefault
	kyvernoViolation      = "PolicyViolation"
	kyvernoBlockedAction  = "Resource Blocked"
	// BlockedWindow is how far back denials are counted.
	BlockedWindow    = time.Hour
	maxBlockedRecent = 5
	maxUncovered     = 10
	// eventPolicyIndex indexes cached events by the name of the object they regard.
	eventPolicyIndex = "involvedObject.name"
	// sharedEventsKey indexes the events of every shared policy together.
	sharedEventsKey = "signet.*"
)

// shrinkEvent keeps only what the blocked summary reads.
func shrinkEvent(obj any) (any, error) {
	e, ok := obj.(*corev1.Event)
	if !ok {
		return obj, nil
	}
	out := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name: e.Name, Namespace: e.Namespace, UID: e.UID, ResourceVersion: e.ResourceVersion,
			CreationTimestamp: e.CreationTimestamp,
		},
		InvolvedObject: corev1.ObjectReference{Kind: e.InvolvedObject.Kind, Name: e.InvolvedObject.Name, APIVersion: e.InvolvedObject.APIVersion},
		Related:        e.Related,
		Reason:         e.Reason,
		Action:         e.Action,
		Message:        reports.TruncateNamingRegistries(e.Message, 512),
		EventTime:      e.EventTime,
		LastTimestamp:  e.LastTimestamp,
		FirstTimestamp: e.FirstTimestamp,
		Count:          e.Count,
		Type:           e.Type,
	}
	if e.Series != nil {
		out.Series = &corev1.EventSeries{Count: e.Series.Count, LastObservedTime: e.Series.LastObservedTime}
	}
	return out, nil
}

// shrinkPod keeps only the images and pull secrets of a Pod.
func shrinkPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	images := func(n int, get func(i int) (string, string)) []corev1.Container {
		out := make([]corev1.Container, 0, n)
		for i := 0; i < n; i++ {
			name, image := get(i)
			out = append(out, corev1.Container{Name: name, Image: image})
		}
		return out
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion},
		Spec: corev1.PodSpec{
			Containers:       images(len(p.Spec.Containers), func(i int) (string, string) { return p.Spec.Containers[i].Name, p.Spec.Containers[i].Image }),
			InitContainers:   images(len(p.Spec.InitContainers), func(i int) (string, string) { return p.Spec.InitContainers[i].Name, p.Spec.InitContainers[i].Image }),
			ImagePullSecrets: p.Spec.ImagePullSecrets,
		},
	}
	for _, e := range p.Spec.EphemeralContainers {
		out.Spec.EphemeralContainers = append(out.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: e.Name, Image: e.Image},
		})
	}
	return out, nil
}

func podImages(p *corev1.Pod) []string {
	var out []string
	for _, c := range p.Spec.InitContainers {
		out = append(out, c.Image)
	}
	for _, c := range p.Spec.Containers {
		out = append(out, c.Image)
	}
	for _, c := range p.Spec.EphemeralContainers {
		out = append(out, c.Image)
	}
	return out
}

// eventTime is when an event happened, from whichever field its writer filled in.
func eventTime(e *corev1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

// observeBlocked counts the denials of one policy within the window ending at now. It also
// returns when the oldest counted denial leaves the window (0: none counted).
// registry, when not empty, keeps only the denials that name it (a shared policy's).
func (r *TrustedRegistryReconciler) observeBlocked(ctx context.Context, policy, registry string, now time.Time) (*trustv1alpha1.BlockedSummary, time.Duration, error) {
	list := &corev1.EventList{}
	if err := r.Client.List(ctx, list, client.InNamespace(kyvernoEventNamespace), client.MatchingFields{eventPolicyIndex: policy}); err != nil {
		return nil, 0, fmt.Errorf("listing Kyverno events: %w", err)
	}
	sum := &trustv1alpha1.BlockedSummary{Window: BlockedWindow.String()}
	type denial struct {
		at  time.Time
		req trustv1alpha1.BlockedRequest
	}
	var recent []denial
	var oldest time.Time
	for i := range list.Items {
		e := &list.Items[i]
		if e.Reason != kyvernoViolation || (e.Action != kyvernoBlockedAction && !strings.Contains(e.Message, "(blocked)")) {
			continue
		}
		if registry != "" && !slices.Contains(registriesNamedIn(e.Message), registry) {
			continue
		}
		at := eventTime(e)
		if at.After(now) || now.Sub(at) >= BlockedWindow {
			continue
		}
		n := int32(1)
		if e.Series != nil && e.Series.Count > 1 {
			n = e.Series.Count
		} else if e.Count > 1 {
			n = e.Count
		}
		sum.Count += n
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
		recent = append(recent, denial{at: at, req: blockedRequest(e, at)})
	}
	// Newest first by the event's full-precision time (status shows whole seconds).
	sort.Slice(recent, func(i, j int) bool {
		a, b := recent[i], recent[j]
		if !a.at.Equal(b.at) {
			return a.at.After(b.at)
		}
		return a.req.Namespace+"/"+a.req.Name+"/"+a.req.Message < b.req.Namespace+"/"+b.req.Name+"/"+b.req.Message
	})
	if len(recent) > maxBlockedRecent {
		recent = recent[:maxBlockedRecent]
	}
	for _, d := range recent {
		sum.Recent = append(sum.Recent, d.req)
	}
	var requeue time.Duration
	if !oldest.IsZero() {
		requeue = oldest.Add(BlockedWindow).Sub(now) + time.Second
	}
	return sum, requeue, nil
}

// blockedRequest reads the denied resource from the event: the related object when set,
// else the "Kind ns/name:" prefix of Kyverno's note.
func blockedRequest(e *corev1.Event, at time.Time) trustv1alpha1.BlockedRequest {
	b := trustv1alpha1.BlockedRequest{Time: metav1.NewTime(at.UTC().Truncate(time.Second))}
	msg := e.Message
	if head, rest, ok := strings.Cut(msg, ": "); ok {
		if kind, ref, ok := strings.Cut(head, " "); ok && !strings.Contains(ref, " ") {
			b.Kind = kind
			if ns, name, ok := strings.Cut(ref, "/"); ok {
				b.Namespace, b.Name = ns, name
			} else {
				b.Name = ref
			}
			msg = rest
		}
	}
	// Drop Kyverno's "[rule] fail (blocked); " preamble: the reason follows it.
	if i := strings.Index(msg, "(blocked); "); i >= 0 && strings.HasPrefix(msg, "[") {
		msg = msg[i+len("(blocked); "):]
	}
	if e.Related != nil && e.Related.Name != "" {
		b.Kind, b.Namespace, b.Name = e.Related.Kind, e.Related.Namespace, e.Related.Name
	}
	if b.Kind == "" {
		b.Kind = "Pod"
	}
	b.Image = imageInMessage(msg)
	b.Message = status.Truncate(strings.Join(strings.Fields(msg), " "), 256)
	return b
}

// imageInMessage finds the first image reference Kyverno names in a denial message.
func imageInMessage(msg string) string {
	for _, marker := range []string{"image(s) ", "image ", "failed to verify image ", "verify image "} {
		if i := strings.Index(msg, marker); i >= 0 {
			rest := msg[i+len(marker):]
			end := strings.IndexAny(rest, " ;,'\"\n")
			if end < 0 {
				end = len(rest)
			}
			cand := strings.Trim(rest[:end], ":.")
			if strings.Contains(cand, "/") || strings.Contains(cand, "@") || strings.Contains(cand, ":") {
				return cand
			}
		}
	}
	return ""
}

// guardedNamespaces lists the namespaces a TrustedRegistry guards that exist now.
func (r *TrustedRegistryReconciler) guardedNamespaces(ctx context.Context, registry *trustv1alpha1.TrustedRegistry) ([]string, error) {
	set := map[string]bool{}
	for _, n := range registry.Spec.Namespaces.Names {
		set[n] = true
	}
	if registry.Spec.Namespaces.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(registry.Spec.Namespaces.Selector)
		if err != nil {
			return nil, nil //nolint:nilerr // an unusable selector guards nothing; the spec condition says why
		}
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
		if err := r.Client.List(ctx, list, client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return nil, fmt.Errorf("listing namespaces: %w", err)
		}
		for _, ns := range list.Items {
			set[ns.Name] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// guardedPods lists the Pods (as cached: images only) in the namespaces a TrustedRegistry
// guards (guardedNamespaces), for the rotation preview (coverage reads the per-namespace
// aggregates of podinsights.go).
func (r *TrustedRegistryReconciler) guardedPods(ctx context.Context, namespaces []string) ([]*corev1.Pod, error) {
	var out []*corev1.Pod
	for _, ns := range namespaces {
		pods := &corev1.PodList{}
		if err := r.Client.List(ctx, pods, client.InNamespace(ns)); err != nil {
			return nil, fmt.Errorf("listing Pods in %s: %w", ns, err)
		}
		for i := range pods.Items {
			out = append(out, &pods.Items[i])
		}
	}
	return out, nil
}

// registryPatterns returns spec.images as strings.
func registryPatterns(registry *trustv1alpha1.TrustedRegistry) []string {
	patterns := make([]string, 0, len(registry.Spec.Images))
	for _, p := range registry.Spec.Images {
		patterns = append(patterns, string(p))
	}
	return patterns
}

// countImages counts, in uses, each image of pod that keep selects (once per Pod), with the
// first Pod by name as the example; it tells whether pod had any.
func countImages(uses map[string]*runningImage, pod *corev1.Pod, keep func(string) bool) bool {
	seen := map[string]bool{}
	for _, image := range podImages(pod) {
		if seen[image] || !keep(image) {
			continue
		}
		seen[image] = true
		ex := pod.Namespace + "/" + pod.Name
		u := uses[image]
		if u == nil {
			u = &runningImage{example: ex}
			uses[image] = u
		}
		u.pods++
		if ex < u.example {
			u.example = ex
		}
	}
	return len(seen) > 0
}

// mostUsedFirst orders images by the Pods that use them, most first, then by name, and
// keeps the first maxUncovered (status lists stay bounded and stable).
func mostUsedFirst[T any](images []T, use func(T) (pods int32, image string)) []T {
	sort.Slice(images, func(i, j int) bool {
		pi, ii := use(images[i])
		pj, ij := use(images[j])
		if pi != pj {
			return pi > pj
		}
		return ii < ij
	})
	if len(images) > maxUncovered {
		images = images[:maxUncovered]
	}
	return images
}

// registriesForNamespace maps a Namespace (or a report in it) to the TrustedRegistries that
// guard it.
func (r *TrustedRegistryReconciler) registriesForNamespace(ctx context.Context, namespace string) []reconcile.Request {
	list, err := r.guardingRegistries(ctx, namespace)
	if err != nil {
		log.FromContext(ctx).Error(err, "listing TrustedRegistries for a namespace")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list))
	for _, tr := range list {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: tr.Name}})
	}
	return reqs
}

// guardingRegistries lists the TrustedRegistries that guard a namespace, as cached: the
// caller must not modify them (no copy of every registry per Pod batch).
func (r *TrustedRegistryReconciler) guardingRegistries(ctx context.Context, namespace string) ([]*trustv1alpha1.TrustedRegistry, error) {
	list := &trustv1alpha1.TrustedRegistryList{}
	if err := r.Client.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing TrustedRegistries: %w", err)
	}
	var nsLabels labels.Set
	var out []*trustv1alpha1.TrustedRegistry
	for i := range list.Items {
		tr := &list.Items[i]
		guarded := slices.Contains(tr.Spec.Namespaces.Names, namespace)
		if !guarded && tr.Spec.Namespaces.Selector != nil {
			if nsLabels == nil {
				ns := &metav1.PartialObjectMetadata{}
				ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
				if err := r.Client.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
					continue
				}
				nsLabels = labels.Set(ns.GetLabels())
			}
			if sel, err := metav1.LabelSelectorAsSelector(tr.Spec.Namespaces.Selector); err == nil && sel.Matches(nsLabels) {
				guarded = true
			}
		}
		if guarded {
			out = append(out, tr)
		}
	}
	return out, nil
}

func (r *TrustedRegistryReconciler) registriesForNamespaceObject(ctx context.Context, o client.Object) []reconcile.Request {
	return r.registriesForNamespace(ctx, o.GetName())
}

// registryForEvent maps a Kyverno event about one of Signet's policies to its registry.
func registryForEvent(_ context.Context, o client.Object) []reconcile.Request {
	e, ok := o.(*corev1.Event)
	if !ok || e.Reason != kyvernoViolation {
		return nil
	}
	if render.IsSharedPolicyName(e.InvolvedObject.Name) {
		var reqs []reconcile.Request
		for _, n := range registriesNamedIn(e.Message) {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: n}})
		}
		return reqs
	}
	name, ok := strings.CutPrefix(e.InvolvedObject.Name, "signet-")
	if !ok || name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: name}}}
}

// mergeBlocked adds the denials of b to a (either may be nil): counts add up, and the
// newest denials of both are kept.
func mergeBlocked(a, b *trustv1alpha1.BlockedSummary) *trustv1alpha1.BlockedSummary {
	switch {
	case a == nil:
		return b
	case b == nil || b.Count == 0:
		return a
	case a.Count == 0:
		return b
	}
	out := a.DeepCopy()
	out.Count += b.Count
	out.Recent = append(out.Recent, b.Recent...)
	sort.SliceStable(out.Recent, func(i, j int) bool { return out.Recent[i].Time.After(out.Recent[j].Time.Time) })
	if len(out.Recent) > maxBlockedRecent {
		out.Recent = out.Recent[:maxBlockedRecent]
	}
	return out
}
