// Package v1alpha1 contains the TrustedRegistry API of the trust.signet.dev group.
//
// It depends only on the standard library and k8s.io/apimachinery, so that other projects
// can import it cheaply.
//
// +kubebuilder:object:generate=true
// +groupName=trust.signet.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the TrustedRegistry API.
	GroupVersion = schema.GroupVersion{Group: "trust.signet.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the API types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this group-version to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &TrustedRegistry{}, &TrustedRegistryList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
