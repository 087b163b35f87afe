package v1alpha1

// Attestations and the location of signatures (README.md, "Attestations" and "Signatures
// stored in another repository"). Kept apart from trustedregistry_types.go: the spec
// embeds them through AttestationOptions.

// Well-known short names for in-toto predicate types, as cosign attest --type spells them.
// Any other type is given as its URI.
var PredicateTypeShortNames = map[string]string{
	"slsaprovenance1":  "https://slsa.dev/provenance/v1",
	"slsaprovenance02": "https://slsa.dev/provenance/v0.2",
	"spdxjson":         "https://spdx.dev/Document",
	"cyclonedx":        "https://cyclonedx.org/bom",
	"openvex":          "https://openvex.dev/ns",
}

// AttestationOptions are the TrustedRegistry fields about attestations and where cosign
// stores signatures. Embedded (inline) in TrustedRegistrySpec.
type AttestationOptions struct {
	// Attestations lists the in-toto attestations (cosign attest) every image must carry
	// besides its signature, each signed by the registry's signers: requiredSignatures of
	// the keys and keyless identities, counted as for signatures.
	// +kubebuilder:validation:MaxItems=8
	// +listType=map
	// +listMapKey=type
	// +optional
	Attestations []AttestationRequirement `json:"attestations,omitempty"`

	// SignaturesRepository is the repository where the images' signatures and attestations
	// are stored, when they were pushed with COSIGN_REPOSITORY (for example
	// "registry.example.com/signatures"). Unset: next to each image, cosign's default.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$')",message="signaturesRepository must be a repository reference such as registry.example.com/signatures: a registry host with a path, in lowercase, without tag or digest"
	// +optional
	SignaturesRepository string `json:"signaturesRepository,omitempty"`
}

// AttestationRequirement is one required in-toto attestation.
type AttestationRequirement struct {
	// Type is the predicate type: a short name (slsaprovenance1, slsaprovenance02, spdxjson,
	// cyclonedx, openvex, as cosign attest --type spells them) or the predicate type URI.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self in ['slsaprovenance1', 'slsaprovenance02', 'spdxjson', 'cyclonedx', 'openvex'] || self.matches('^[a-z][a-z0-9+.-]*://[^\\\\s{}]+$')",message="type must be slsaprovenance1, slsaprovenance02, spdxjson, cyclonedx, openvex or a predicate type URI such as https://slsa.dev/provenance/v1"
	Type string `json:"type"`

	// Conditions the attestation's predicate must meet, all of them. Without conditions,
	// any predicate of the type signed by the registry's signers is accepted.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	Conditions []PredicateCondition `json:"conditions,omitempty"`
}

// PredicateCondition compares one string field of the predicate with expected values.
// +kubebuilder:validation:XValidation:rule="has(self.equals) != has(self.oneOf)",message="set exactly one of equals or oneOf"
type PredicateCondition struct {
	// Path is a field of the predicate as dot-separated keys, for example
	// "runDetails.builder.id" or "buildDefinition.externalParameters.workflow.repository".
	// A missing field fails the condition.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z_][A-Za-z0-9_-]*(\\\\.[A-Za-z_][A-Za-z0-9_-]*)*$')",message="path must be dot-separated keys of letters, digits, '_' and '-' (each starting with a letter or '_'), such as runDetails.builder.id"
	// +kubebuilder:validation:XValidation:rule="size(self.split('.')) <= 16",message="path may have at most 16 keys"
	Path string `json:"path"`

	// Equals is the value the field must have, compared as an exact string.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.matches('[*?]') && !self.contains('{{')",message="values must not contain '*', '?' or '{{': conditions compare exact strings (Kyverno's ClusterPolicy would read them as wildcards or variables)"
	// +optional
	Equals *string `json:"equals,omitempty"`

	// OneOf lists the values the field may have.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=1024
	// +kubebuilder:validation:items:XValidation:rule="!self.matches('[*?]') && !self.contains('{{')",message="values must not contain '*', '?' or '{{': conditions compare exact strings (Kyverno's ClusterPolicy would read them as wildcards or variables)"
	// +listType=atomic
	// +optional
	OneOf []string `json:"oneOf,omitempty"`
}
