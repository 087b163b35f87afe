package controllers

import (
	"context"
	"fmt"
	"reflect"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/render"
)

const (
	ringDataKey = "ring.json"
	// managedByValue is the app.kubernetes.io/managed-by label value of generated objects.
	managedByValue = "signet"
)

// ringConfigMapName is the name of the ConfigMap that persists a registry's key ring.
func ringConfigMapName(registry string) string { return "signet-keyring-" + registry }

// ringConfigMap renders the persisted key ring: a ConfigMap in the trust namespace (public
// keys only), owned by the TrustedRegistry so it goes away with it.
// input, when not empty, is the recorded input of the shared layout (inputDataKey).
func ringConfigMap(registry *trustv1alpha1.TrustedRegistry, namespace string, ring keys.Ring, input string) *unstructured.Unstructured {
	data, err := ring.Marshal()
	if err != nil {
		// Marshal of a ring built by keys.Next cannot fail; keep the type honest anyway.
		data = []byte(fmt.Sprintf(`{"error":%q}`, err.Error()))
	}
	owner := ownerRef(registry)
	cmData := map[string]any{ringDataKey: string(data)}
	if input != "" {
		cmData[inputDataKey] = input
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata": map[string]any{
			"name":      ringConfigMapName(registry.Name),
			"namespace": namespace,
			"labels": map[string]any{
				render.LabelManagedBy: managedByValue,
				render.LabelRegistry:  registry.Name,
			},
			"ownerReferences": []any{map[string]any{
				"apiVersion":         owner.APIVersion,
				"kind":               owner.Kind,
				"name":               owner.Name,
				"uid":                string(owner.UID),
				"controller":         true,
				"blockOwnerDeletion": true,
			}},
		},
		"data": cmData,
	}}
}

func ownerRef(registry *trustv1alpha1.TrustedRegistry) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         trustv1alpha1.GroupVersion.String(),
		Kind:               "TrustedRegistry",
		Name:               registry.Name,
		UID:                registry.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

func ringEqual(a, b keys.Ring) bool {
	ja, errA := a.Marshal()
	jb, errB := b.Marshal()
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// applyObject server-side applies obj under Signet's field owner.
func (r *TrustedRegistryReconciler) applyObject(ctx context.Context, obj *unstructured.Unstructured) error {
	return r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj),
		client.FieldOwner(render.FieldOwner), client.ForceOwnership)
}

// applyPolicy writes the desired policy unless the live one already carries it, and
// reports whether it wrote. A new policy is created with server-side apply. An existing one
// is replaced as a whole with an optimistic-concurrency update: the generated policy is
// Signet's alone, and server-side apply cannot remove what others added to set-type lists
// (someone adding "Audit" next to "Deny" in validationActions would survive a forced apply).
func (r *TrustedRegistryReconciler) applyPolicy(ctx context.Context, desired, live *unstructured.Unstructured) (bool, error) {
	if live == nil {
		if err := r.applyObject(ctx, desired); err != nil {
			return false, fmt.Errorf("applying %s %s: %w", desired.GetKind(), desired.GetName(), err)
		}
		return true, nil
	}
	if upToDate(desired, live) {
		return false, nil
	}
	replacement := live.DeepCopy()
	replacement.Object["spec"] = desired.Object["spec"]
	labels := replacement.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	for k, v := range desired.GetLabels() {
		labels[k] = v
	}
	replacement.SetLabels(labels)
	annotations := replacement.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	for k, v := range desired.GetAnnotations() {
		annotations[k] = v
	}
	replacement.SetAnnotations(annotations)
	replacement.SetOwnerReferences(desired.GetOwnerReferences())
	if err := r.Client.Update(ctx, replacement, client.FieldOwner(render.FieldOwner)); err != nil {
		return false, fmt.Errorf("updating %s %s: %w", desired.GetKind(), desired.GetName(), err)
	}
	return true, nil
}

// upToDate tells whether live already holds everything desired says: the same content hash
// annotation (cheap, catches every change Signet makes) and every desired field with the
// same value (catches edits by others: drift). Fields the apiserver or Kyverno added, such
// as defaults and status, are ignored.
func upToDate(desired, live *unstructured.Unstructured) bool {
	if desired.GetAnnotations()[render.AnnotationHash] != live.GetAnnotations()[render.AnnotationHash] {
		return false
	}
	for k, v := range desired.GetLabels() {
		if live.GetLabels()[k] != v {
			return false
		}
	}
	if !ownerRefsPresent(desired.GetOwnerReferences(), live.GetOwnerReferences()) {
		return false
	}
	return subset(desired.Object["spec"], live.Object["spec"])
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

// subset reports whether every value in want is present and equal in have. Maps may have
// extra keys in have; lists must have the same length, element by element. Empty maps and
// lists in want match a missing value (the apiserver drops them).
func subset(want, have any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return len(w) == 0 && have == nil
		}
		for k, wv := range w {
			hv, present := h[k]
			if !present {
				if isEmpty(wv) {
					continue
				}
				return false
			}
			if !subset(wv, hv) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok {
			return len(w) == 0 && have == nil
		}
		if len(w) != len(h) {
			return false
		}
		for i := range w {
			if !subset(w[i], h[i]) {
				return false
			}
		}
		return true
	case nil:
		return true
	default:
		return scalarEqual(w, have)
	}
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
