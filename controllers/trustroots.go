package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/render"
)

// Trust roots of a private Sigstore (spec.sigstore) are read like key Secrets: from the
// trust namespace only, through the manager's cache (Secrets and ConfigMaps of the trust
// namespace), and a change to one re-renders the registries that name it. A root that
// cannot be read is reported like a key that cannot be read (condition KeysResolved, the
// last good policy stays in force): rendering without it would verify against the public
// Sigstore roots or none, never what was asked.

// configMapNameIndex indexes TrustedRegistries by the ConfigMaps their trust roots name.
const configMapNameIndex = "spec.sigstore.configMapName"

// trustSecretNames and trustConfigMapNames feed the field indexes.
func trustSecretNames(tr *trustv1alpha1.TrustedRegistry) []string {
	var out []string
	for _, e := range render.TrustMaterialRefs(&tr.Spec) {
		if e.Ref.SecretName != "" {
			out = append(out, e.Ref.SecretName)
		}
	}
	return out
}

func trustConfigMapNames(tr *trustv1alpha1.TrustedRegistry) []string {
	var out []string
	for _, e := range render.TrustMaterialRefs(&tr.Spec) {
		if e.Ref.ConfigMapName != "" {
			out = append(out, e.Ref.ConfigMapName)
		}
	}
	return out
}

// observeTrustRoots reads the trust material spec.sigstore names into obs.trustRoots;
// failures are added to obs.keyErrs under the field's name.
func (r *TrustedRegistryReconciler) observeTrustRoots(ctx context.Context, registry *trustv1alpha1.TrustedRegistry, obs *observed) error {
	refs := render.TrustMaterialRefs(&registry.Spec)
	if len(refs) == 0 {
		return nil
	}
	tr := &render.TrustRoots{}
	for _, e := range refs {
		data, kerr, err := r.readTrustMaterial(ctx, e.Ref)
		if err != nil {
			return err
		}
		if kerr == nil {
			var norm string
			if norm, err = render.NormalizeTrustMaterial(e.Kind, data); err != nil {
				kerr = &keys.Error{Reason: trustv1alpha1.ReasonInvalidTrustRoot, Msg: fmt.Sprintf("%s: %v", describeRef(r.TrustNamespace, e.Ref), err)}
			}
			tr.Set(e.Kind, norm)
		}
		if kerr != nil {
			obs.keyErrs = append(obs.keyErrs, keyError{name: "sigstore." + e.Kind, err: kerr})
		}
	}
	obs.trustRoots = tr
	return nil
}

func describeRef(ns string, ref *trustv1alpha1.TrustMaterialReference) string {
	if ref.SecretName != "" {
		return fmt.Sprintf("Secret %s/%s key %q", ns, ref.SecretName, ref.Key)
	}
	return fmt.Sprintf("ConfigMap %s/%s key %q", ns, ref.ConfigMapName, ref.Key)
}

// readTrustMaterial returns the referenced data, or a *keys.Error saying why there is
// none, or an error to retry on.
func (r *TrustedRegistryReconciler) readTrustMaterial(ctx context.Context, ref *trustv1alpha1.TrustMaterialReference) ([]byte, error, error) {
	var (
		data  []byte
		found bool
		obj   client.Object
	)
	if ref.SecretName != "" {
		obj = &corev1.Secret{}
	} else {
		obj = &corev1.ConfigMap{}
	}
	name := ref.SecretName + ref.ConfigMapName
	switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.TrustNamespace, Name: name}, obj); {
	case apierrors.IsNotFound(err):
		return nil, &keys.Error{Reason: trustv1alpha1.ReasonSecretNotFound, Msg: describeRef(r.TrustNamespace, ref) + ": not found"}, nil
	case err != nil:
		return nil, nil, fmt.Errorf("reading %s: %w", describeRef(r.TrustNamespace, ref), err)
	}
	switch o := obj.(type) {
	case *corev1.Secret:
		data, found = o.Data[ref.Key]
	case *corev1.ConfigMap:
		var s string
		if s, found = o.Data[ref.Key]; found {
			data = []byte(s)
		} else {
			data, found = o.BinaryData[ref.Key]
		}
	}
	if !found {
		return nil, &keys.Error{Reason: trustv1alpha1.ReasonSecretKeyNotFound, Msg: describeRef(r.TrustNamespace, ref) + ": no such data key"}, nil
	}
	return data, nil, nil
}

// registriesForConfigMap maps a ConfigMap of the trust namespace to what it concerns: a key
// ring (and recorded input) to its registry and the shared policies, a trust-root
// ConfigMap to the registries that name it. Other ConfigMaps concern nothing.
func (r *TrustedRegistryReconciler) registriesForConfigMap(ctx context.Context, o client.Object) []reconcile.Request {
	var reqs []reconcile.Request
	if o.GetLabels()[render.LabelManagedBy] == managedByValue {
		reqs = registryFromLabel(ctx, o) // (the shared-policy controller watches them too)
	}
	if o.GetNamespace() != r.TrustNamespace {
		return reqs
	}
	if name, ok := strings.CutPrefix(o.GetName(), ringConfigMapName("")); ok && len(reqs) == 0 {
		// a key ring that lost its labels: its registry restores them (recover.go)
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: name}})
	}
	list := &trustv1alpha1.TrustedRegistryList{}
	if err := r.Client.List(ctx, list, client.MatchingFields{configMapNameIndex: o.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "listing TrustedRegistries for a ConfigMap", "configMap", o.GetName())
		return reqs
	}
	for _, tr := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: tr.Name}})
	}
	return reqs
}
