package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
)

// Layout says how TrustedRegistries map to Kyverno policies.
type Layout string

const (
	// LayoutShared (the default) renders every TrustedRegistry as a branch of a few shared
	// policies, so that Pod admission costs the same with 1 or 1,000 registries.
	LayoutShared Layout = "shared"
	// LayoutPerRegistry renders one policy per TrustedRegistry, owned by it.
	LayoutPerRegistry Layout = "per-registry"
)

// inputDataKey holds, in the key ring ConfigMap, the last input of the registry that
// rendered without error: the shared policies are always rendered from these, so a
// registry whose Secret became unreadable or whose spec became invalid keeps its last good
// branch (fail closed).
const inputDataKey = render.RecordDataKey

func encodeInput(in render.Input) (string, error) { return render.EncodeRecord(in) }

func decodeInput(s string) (render.Input, error) { return render.DecodeRecord(s) }

// reconcileShared renders the shared policies from the recorded inputs of all existing
// TrustedRegistries and writes those that differ. Policies that gain registries are written
// before those that lose some, and emptied policies are deleted last, so a registry moving
// between policies (Audit to Enforce, another engine) is never unenforced in between.
func (r *SharedPolicyReconciler) reconcileShared(ctx context.Context) (ctrl.Result, error) {
	logger := log.FromContext(ctx).WithValues("sharedPolicies", true)
	served, err := r.Discovery.Served()
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("discovering Kyverno kinds: %w", err)
	}
	live := map[string]*unstructured.Unstructured{}
	for _, engine := range []trustv1alpha1.Engine{trustv1alpha1.EngineImageValidatingPolicy, trustv1alpha1.EngineClusterPolicy} {
		gvk := render.GVK(engine)
		if !served.Has(gvk) {
			continue
		}
		items, err := listShared(ctx, r.Client, engine)
		if err != nil {
			return ctrl.Result{}, err
		}
		for _, u := range items {
			live[u.GetKind()+"/"+u.GetName()] = u
		}
	}
	ins, registries, records, err := r.sharedInputs(ctx, live)
	if err != nil {
		r.setErr(err)
		return ctrl.Result{}, err
	}
	// (registries stay in the policy that holds them while it has room: a move rewrites
	// their status)
	res, err := render.RenderSharedKeeping(ins, placedIn(live))
	if err != nil {
		// Every input renders on its own (sharedInputs checked): only a shared limit
		// (size) can fail here. Keep every shared policy as it is rather than drop anyone.
		err = fmt.Errorf("rendering the shared policies (all stay as they are): %w", err)
		r.setErr(err)
		return ctrl.Result{}, err
	}
	r.setErr(nil)

	// The records first: no policy holds an input that no record keeps (records.go).
	stored, err := r.writeShards(ctx, records.shards, records.first, false)
	if err != nil {
		return shardWriteFailed(err)
	}

	desired := map[string]bool{}
	for _, p := range res.Policies {
		desired[p.GetKind()+"/"+p.GetName()] = true
	}
	for _, p := range writeOrder(res.Policies, live) {
		gvk := p.GroupVersionKind()
		if !served.Has(gvk) {
			return ctrl.Result{}, fmt.Errorf("%s %s: %s is not served (any more)", p.GetKind(), p.GetName(), gvk.GroupVersion())
		}
		changed, drift, err := r.writer.applyPolicy(ctx, p, live[p.GetKind()+"/"+p.GetName()])
		if err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{RequeueAfter: conflictRetry}, nil
			}
			return ctrl.Result{}, err
		}
		if changed {
			logger.Info("shared policy written", "kind", p.GetKind(), "name", p.GetName(), "registries", len(registriesOf(p)))
		}
		if len(drift) > 0 {
			logger.Info("shared policy had been changed by someone else: reverted", "kind", p.GetKind(), "name", p.GetName(), "drift", drift)
			r.eventOnBranches(p, live[p.GetKind()+"/"+p.GetName()], registries, driftNote(p, drift))
		}
	}
	r.rendered.remember(ins, res.Placements)
	keys := make([]string, 0, len(live))
	for k := range live {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if desired[k] {
			continue
		}
		l := live[k]
		if err := r.Client.Delete(ctx, l); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("deleting the emptied %s %s: %w", l.GetKind(), l.GetName(), err)
		}
		logger.Info("shared policy deleted: no TrustedRegistry left in it", "kind", l.GetKind(), "name", l.GetName())
	}
	// The records of registries whose branches left go last; then the per-registry
	// ConfigMaps the shards took over.
	if _, err := r.writeShards(ctx, stored, records.final, true); err != nil {
		return shardWriteFailed(err)
	}
	for _, cm := range records.migrated {
		if err := r.Client.Delete(ctx, cm, client.Preconditions{ResourceVersion: &cm.ResourceVersion}); client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
			return ctrl.Result{}, fmt.Errorf("deleting the key ring %s/%s (its record is in %s now): %w", cm.Namespace, cm.Name, recordShardName(cm.Labels[render.LabelRegistry]), err)
		}
	}
	return ctrl.Result{}, nil
}

// writeOrder orders the shared policies to write so that no moment in between allows more
// than before or after. Policies that gain registries are written before those that lose
// some (a registry moving between policies is never unenforced in between). The policies
// hosting a registry restriction hold the restriction data of registries whose branches
// are elsewhere (render.AnnotationRestriction): they go after the policies that gain
// branches (a registry's images are allowed only once they are verified) and before those
// that lose some or stop hosting (its images are refused before they stop being verified;
// while an old and a new host are both live, an image must pass both).
func writeOrder(policies []*unstructured.Unstructured, live map[string]*unstructured.Unstructured) []*unstructured.Unstructured {
	var growing, hosts, shrinking []*unstructured.Unstructured
	for _, p := range policies {
		l := live[p.GetKind()+"/"+p.GetName()]
		switch {
		case p.GetAnnotations()[render.AnnotationRestriction] != "":
			hosts = append(hosts, p)
		case l != nil && (!subsetOf(registriesOf(l), registriesOf(p)) || l.GetAnnotations()[render.AnnotationRestriction] != ""):
			shrinking = append(shrinking, p)
		default:
			growing = append(growing, p)
		}
	}
	return append(append(growing, hosts...), shrinking...)
}

// registryEntry is one value of the registries annotation: "<input hash> <branch>".
type registryEntry struct {
	hash, branch string
}

// registriesOf parses the registries annotation of a shared policy.
func registriesOf(u *unstructured.Unstructured) map[string]registryEntry {
	raw := u.GetAnnotations()[render.AnnotationRegistries]
	m := map[string]string{}
	if raw == "" || json.Unmarshal([]byte(raw), &m) != nil {
		return nil
	}
	out := make(map[string]registryEntry, len(m))
	for name, v := range m {
		h, b, _ := strings.Cut(v, " ")
		out[name] = registryEntry{hash: h, branch: b}
	}
	return out
}

func subsetOf(a, b map[string]registryEntry) bool {
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

// registriesForPolicy maps a generated policy to the TrustedRegistries that must look at
// it again: its own registry, or every registry in a shared policy (their status shows its
// readiness and whether their branch is in it).
func registriesForPolicy(ctx context.Context, o client.Object) []reconcile.Request {
	if o.GetLabels()[render.LabelManagedBy] != managedByValue {
		return nil
	}
	if _, shared := o.GetLabels()[render.LabelShard]; !shared {
		return registryFromLabel(ctx, o)
	}
	var reqs []reconcile.Request
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return reqs
	}
	names := make([]string, 0)
	for name := range registriesOf(u) {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, n := range names {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: n}})
	}
	return reqs
}

// placementCache remembers the parsed registries annotation of each shared policy by
// resourceVersion: every TrustedRegistry reconcile looks its branch up there.
type placementCache struct {
	mu sync.Mutex
	m  map[string]placementEntry
}

type placementEntry struct {
	rv      string
	entries map[string]registryEntry
}

func (c *placementCache) get(u *unstructured.Unstructured) map[string]registryEntry {
	key := u.GetKind() + "/" + u.GetName()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]placementEntry{}
	}
	if e, ok := c.m[key]; ok && e.rv == u.GetResourceVersion() && u.GetResourceVersion() != "" {
		return e.entries
	}
	entries := registriesOf(u)
	c.m[key] = placementEntry{rv: u.GetResourceVersion(), entries: entries}
	return entries
}

// sharedPlacement is where a registry's branch currently is.
type sharedPlacement struct {
	policy *unstructured.Unstructured
	entry  registryEntry
}

// observePlacement finds the shared policy that holds the registry's branch now, for each
// served engine kind.
func (r *TrustedRegistryReconciler) observePlacement(ctx context.Context, obs *observed) error {
	for _, engine := range []trustv1alpha1.Engine{trustv1alpha1.EngineImageValidatingPolicy, trustv1alpha1.EngineClusterPolicy} {
		gvk := render.GVK(engine)
		if !obs.served.Has(gvk) {
			continue
		}
		items, err := listShared(ctx, r.Client, engine)
		if err != nil {
			return err
		}
		for _, u := range items {
			if e, ok := r.placements.get(u)[obs.registry.Name]; ok {
				obs.shared[engine] = &sharedPlacement{policy: u, entry: e}
			}
		}
	}
	return nil
}

// listShared lists the shared policies of one engine kind (from the cache).
func listShared(ctx context.Context, c client.Client, engine trustv1alpha1.Engine) ([]*unstructured.Unstructured, error) {
	gvk := render.GVK(engine)
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := c.List(ctx, list, client.HasLabels{render.LabelShard}); err != nil {
		return nil, fmt.Errorf("listing shared %s: %w", gvk.Kind, err)
	}
	out := make([]*unstructured.Unstructured, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	return out, nil
}

// shardWriteFailed ends a pass whose record shard write failed: a shard the cache did not
// show yet (this process's own create, or a newer version) is read again soon, quietly;
// anything else is retried with backoff.
func shardWriteFailed(err error) (ctrl.Result, error) {
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	return ctrl.Result{}, err
}

// placedIn maps each registry to the live shared policy holding its branch (the first by
// kind and name when two do, as while it moves between them).
func placedIn(live map[string]*unstructured.Unstructured) map[string]string {
	out := map[string]string{}
	for name, pl := range branchesInForce(live) {
		out[name] = pl.policy.GetName()
	}
	return out
}
