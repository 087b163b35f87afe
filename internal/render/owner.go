package render

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// OwnerReference is the controller owner reference of every object generated for one
// TrustedRegistry (its own policy, its key ring): the garbage collector removes them with it.
func OwnerReference(tr *v1alpha1.TrustedRegistry) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         v1alpha1.GroupVersion.String(),
		Kind:               "TrustedRegistry",
		Name:               tr.Name,
		UID:                tr.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

// ownerReferenceField is OwnerReference as an unstructured metadata.ownerReferences item.
func ownerReferenceField(tr *v1alpha1.TrustedRegistry) map[string]any {
	ref := OwnerReference(tr)
	return map[string]any{
		"apiVersion":         ref.APIVersion,
		"kind":               ref.Kind,
		"name":               ref.Name,
		"uid":                string(ref.UID),
		"controller":         *ref.Controller,
		"blockOwnerDeletion": *ref.BlockOwnerDeletion,
	}
}
