package controllers

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"sort"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/render"
)

const ringDataKey = "ring.json"

// managedByValue is the app.kubernetes.io/managed-by label value of generated objects.
const managedByValue = render.ManagedByValue

// ringConfigMapName is the name of the ConfigMap that persists a registry's key ring.
func ringConfigMapName(registry string) string { return "signet-keyring-" + registry }

// ringConfigMap renders the persisted key ring: a ConfigMap in the trust namespace (public
// keys only), owned by the TrustedRegistry so it goes away with it.
// input, when not empty, is the recorded input of the shared layout (inputDataKey).
func ringConfigMap(registry *trustv1alpha1.TrustedRegistry, namespace string, ring keys.Ring, input string) *corev1ac.ConfigMapApplyConfiguration {
	cmData := map[string]string{ringDataKey: ringText(ring)}
	if input != "" {
		cmData[inputDataKey] = input
	}
	return corev1ac.ConfigMap(ringConfigMapName(registry.Name), namespace).
		WithLabels(map[string]string{render.LabelManagedBy: managedByValue, render.LabelRegistry: registry.Name}).
		WithOwnerReferences(ownerReferenceApply(render.OwnerReference(registry))).
		WithData(cmData)
}

// ringText is a ring as its record stores it.
func ringText(ring keys.Ring) string {
	data, err := ring.Marshal()
	if err != nil {
		// Marshal of a ring built by keys.Next cannot fail; keep the type honest anyway.
		return fmt.Sprintf(`{"error":%q}`, err.Error())
	}
	return string(data)
}

// ownerReferenceApply is an owner reference (render.OwnerReference) as an apply configuration.
func ownerReferenceApply(ref metav1.OwnerReference) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().WithAPIVersion(ref.APIVersion).WithKind(ref.Kind).WithName(ref.Name).
		WithUID(ref.UID).WithController(ptr.Deref(ref.Controller, false)).WithBlockOwnerDeletion(ptr.Deref(ref.BlockOwnerDeletion, false))
}

func ringEqual(a, b keys.Ring) bool {
	ja, errA := a.Marshal()
	jb, errB := b.Marshal()
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// policyWriter writes generated objects under Signet's field owner; each controller that
// writes policies has its own (canon is per policy name).
type policyWriter struct {
	Client client.Client
	canon  canonCache
}

// applyObject server-side applies obj under Signet's field owner; the response is decoded
// into obj (applyPolicy reads its managed fields).
func (r *policyWriter) applyObject(ctx context.Context, obj *unstructured.Unstructured) error {
	return r.apply(ctx, client.ApplyConfigurationFromUnstructured(obj))
}

// apply server-side applies a typed apply configuration under Signet's field owner.
func (r *policyWriter) apply(ctx context.Context, ac runtime.ApplyConfiguration) error {
	return r.Client.Apply(ctx, ac, client.FieldOwner(render.FieldOwner), client.ForceOwnership)
}

// applyPolicy writes the desired policy unless the live one already is exactly it, and
// reports whether it wrote and what foreign content it removed (drift, for an Event).
//
// The live spec must EQUAL the desired spec, not merely contain it: any field Signet did
// not render (an objectSelector, excludeResourceRules, a matchCondition, a rule's exclude
// or preconditions, an extra rule or validation) can be an opt-out. "Desired" is compared
// after the apiserver's defaulting: the canonical spec is what the apiserver stored (or,
// in a dry run, would store) for exactly the desired spec, so defaults never look like
// drift. It is learnt from the response of Signet's own full write (never from a merge
// with fields of other managers) or, when this process has not written the current
// content, from one server-side dry-run Update, and remembered per policy and content hash
// (canonCache), so a converged policy costs no request.
//
// A new policy is created with server-side apply. An existing one is replaced as a whole
// with an optimistic-concurrency Update: server-side apply keeps fields owned by other
// managers (and cannot remove what they added to set-type lists), a full Update does not.
func (r *policyWriter) applyPolicy(ctx context.Context, desired, live *unstructured.Unstructured) (bool, []string, error) {
	if live == nil {
		applied := desired.DeepCopy()
		if err := r.applyObject(ctx, applied); err != nil {
			return false, nil, fmt.Errorf("applying %s %s: %w", desired.GetKind(), desired.GetName(), err)
		}
		// A fresh object managed by Signet alone is the canonical form; an object that
		// existed unseen (its labels edited, say) may carry foreign fields: not learnt here.
		if mf := applied.GetManagedFields(); len(mf) == 1 && mf[0].Manager == render.FieldOwner {
			r.canon.put(desired, applied.Object["spec"])
		}
		return true, nil, nil
	}
	// A new content is written anyway (its canonical form comes with the response); only
	// a policy that says it holds the desired content is compared with its canonical form.
	if desired.GetAnnotations()[render.AnnotationHash] == live.GetAnnotations()[render.AnnotationHash] {
		canon, err := r.canonicalSpec(ctx, desired, live)
		if err != nil {
			return false, nil, err
		}
		if upToDate(desired, live, canon) {
			return false, nil, nil
		}
	}
	// What differs from Signet's own content is drift: compare with the canonical spec of
	// the content the live policy says it holds (the desired one, or an earlier one).
	var drift []string
	if held, ok := r.canon.get(live); ok {
		drift = driftPaths(held, live.Object["spec"], "spec")
	}
	replacement := policyReplacement(desired, live)
	if err := r.Client.Update(ctx, replacement, client.FieldOwner(render.FieldOwner)); err != nil {
		return false, nil, fmt.Errorf("updating %s %s: %w", desired.GetKind(), desired.GetName(), err)
	}
	r.canon.put(desired, replacement.Object["spec"])
	return true, drift, nil
}

// policyReplacement is live with desired's spec, Signet's labels and annotations, and
// desired's owner references: the object of a full Update.
func policyReplacement(desired, live *unstructured.Unstructured) *unstructured.Unstructured {
	replacement := live.DeepCopy()
	replacement.Object["spec"] = runtime.DeepCopyJSONValue(desired.Object["spec"])
	replacement.SetLabels(withAll(replacement.GetLabels(), desired.GetLabels()))
	replacement.SetAnnotations(withAll(replacement.GetAnnotations(), desired.GetAnnotations()))
	replacement.SetOwnerReferences(desired.GetOwnerReferences())
	return replacement
}

// withAll is m with every entry of add set (m may be nil).
func withAll(m, add map[string]string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	maps.Copy(m, add)
	return m
}

// canonicalSpec returns the spec the apiserver stores for desired: remembered, or learnt
// with a server-side dry-run Update of the live object (nothing is written).
func (r *policyWriter) canonicalSpec(ctx context.Context, desired, live *unstructured.Unstructured) (any, error) {
	if spec, ok := r.canon.get(desired); ok {
		return spec, nil
	}
	dry := policyReplacement(desired, live)
	if err := r.Client.Update(ctx, dry, client.DryRunAll, client.FieldOwner(render.FieldOwner)); err != nil {
		return nil, fmt.Errorf("dry-run update of %s %s (to learn its defaulted form): %w", desired.GetKind(), desired.GetName(), err)
	}
	r.canon.put(desired, dry.Object["spec"])
	return dry.Object["spec"], nil
}

// canonCache remembers, per policy, the canonical (apiserver-defaulted) spec of the last
// two contents Signet wrote or dry-ran, by content-hash annotation: the newest is what the
// live policy must equal; the previous one tells what someone changed in a policy that
// also waits for a new content of Signet's (registries change a shared policy often).
type canonCache struct {
	mu sync.Mutex
	m  map[string][]canonEntry // newest first, at most canonDepth (memory: specs are large)
}

const canonDepth = 2

type canonEntry struct {
	hash string
	spec any
}

func canonKey(u *unstructured.Unstructured) string { return u.GetKind() + "/" + u.GetName() }

// get returns the canonical spec of the content u says it holds (its content hash).
func (c *canonCache) get(u *unstructured.Unstructured) (any, bool) {
	h := u.GetAnnotations()[render.AnnotationHash]
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.m[canonKey(u)] {
		if h != "" && e.hash == h {
			return e.spec, true
		}
	}
	return nil, false
}

func (c *canonCache) put(desired *unstructured.Unstructured, spec any) {
	h := desired.GetAnnotations()[render.AnnotationHash]
	if h == "" || spec == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string][]canonEntry{}
	}
	k := canonKey(desired)
	entries := []canonEntry{{hash: h, spec: runtime.DeepCopyJSONValue(spec)}}
	for _, e := range c.m[k] {
		if e.hash != h && len(entries) < canonDepth {
			entries = append(entries, e)
		}
	}
	c.m[k] = entries
}

// upToDate tells whether live is exactly the desired policy: the same content hash
// annotation, Signet's labels and annotations, the owner references, and a spec equal to
// the canonical form of the desired one (nothing missing, nothing added). Status, and
// labels or annotations others add to the metadata, are not compared.
func upToDate(desired, live *unstructured.Unstructured, canon any) bool {
	if desired.GetAnnotations()[render.AnnotationHash] != live.GetAnnotations()[render.AnnotationHash] {
		return false
	}
	for k, v := range desired.GetLabels() {
		if live.GetLabels()[k] != v {
			return false
		}
	}
	for k, v := range desired.GetAnnotations() {
		if live.GetAnnotations()[k] != v {
			return false
		}
	}
	if !ownerRefsPresent(desired.GetOwnerReferences(), live.GetOwnerReferences()) {
		return false
	}
	return jsonEqual(canon, live.Object["spec"])
}

// jsonEqual compares two JSON values exactly, except that a missing value equals an empty
// map or list (the apiserver may drop either) and number encodings of one value are equal.
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			return len(x) == 0 && isEmpty(b)
		}
		for k, xv := range x {
			if !jsonEqual(xv, y[k]) {
				return false
			}
		}
		for k, yv := range y {
			if _, ok := x[k]; !ok && !isEmpty(yv) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok {
			return len(x) == 0 && isEmpty(b)
		}
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case nil:
		return isEmpty(b)
	default:
		return scalarEqual(a, b)
	}
}

// driftPaths lists where have differs from want, for people: fields and list items only
// in have ("added"), only in want ("removed") or different ("changed"). List items that
// all carry a name are matched by name. At most maxDriftPaths entries.
func driftPaths(want, have any, path string) []string {
	var out []string
	var walk func(w, h any, p string)
	walk = func(w, h any, p string) {
		if len(out) >= maxDriftPaths {
			return
		}
		switch {
		case isEmpty(w) && isEmpty(h):
			return
		case isEmpty(w):
			out = append(out, p+" (added)")
			return
		case isEmpty(h):
			out = append(out, p+" (removed)")
			return
		}
		switch x := w.(type) {
		case map[string]any:
			y, ok := h.(map[string]any)
			if !ok {
				out = append(out, p+" (changed)")
				return
			}
			for _, k := range sortedKeys(x, y) {
				walk(x[k], y[k], p+"."+k)
			}
		case []any:
			y, ok := h.([]any)
			if !ok {
				out = append(out, p+" (changed)")
				return
			}
			xn, xok := byName(x)
			yn, yok := byName(y)
			if xok && yok {
				for _, k := range sortedKeys(xn, yn) {
					walk(xn[k], yn[k], p+"["+k+"]")
				}
				return
			}
			if len(x) != len(y) {
				out = append(out, fmt.Sprintf("%s (%d items instead of %d)", p, len(y), len(x)))
				return
			}
			for i := range x {
				walk(x[i], y[i], fmt.Sprintf("%s[%d]", p, i))
			}
		default:
			if !scalarEqual(w, h) {
				out = append(out, p+" (changed)")
			}
		}
	}
	walk(want, have, path)
	return out
}

const maxDriftPaths = 10

// byName indexes list items by their "name" field when every item is a map with a
// distinct non-empty name.
func byName(l []any) (map[string]any, bool) {
	m := make(map[string]any, len(l))
	for _, v := range l {
		item, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		n, ok := item["name"].(string)
		if !ok || n == "" {
			return nil, false
		}
		if _, dup := m[n]; dup {
			return nil, false
		}
		m[n] = item
	}
	return m, true
}

func sortedKeys(a, b map[string]any) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range []map[string]any{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

func ownerRefsPresent(want, have []metav1.OwnerReference) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if h.UID == w.UID && h.Kind == w.Kind && ptr.Deref(h.Controller, false) == ptr.Deref(w.Controller, false) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func isEmpty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(t) == 0
	case []any:
		return len(t) == 0
	}
	return false
}

// scalarEqual compares JSON scalars, treating integer and float encodings of the same
// number as equal.
func scalarEqual(a, b any) bool {
	if fa, ok := number(a); ok {
		fb, ok := number(b)
		return ok && fa == fb
	}
	return reflect.DeepEqual(a, b)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case int:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}
