// Package v1alpha1 contains the TrustedRegistry API of the trust.signet.dev group.
//
// +kubebuilder:object:generate=true
// +groupName=trust.signet.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the TrustedRegistry API.
	GroupVersion = schema.GroupVersion{Group: "trust.signet.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the API types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this group-version to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
