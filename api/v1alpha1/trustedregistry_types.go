package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Action says what happens to a Pod that breaks the policy.
// +kubebuilder:validation:Enum=Enforce;Audit
type Action string

const (
	// ActionEnforce denies the admission request (Kyverno validationActions Deny /
	// failureAction Enforce).
	ActionEnforce Action = "Enforce"
	// ActionAudit admits the request and records the violation in a PolicyReport.
	ActionAudit Action = "Audit"
)

// Engine selects which Kyverno policy kind Signet generates.
// +kubebuilder:validation:Enum=Auto;ImageValidatingPolicy;ClusterPolicy
type Engine string

const (
	// EngineAuto picks ImageValidatingPolicy when the cluster serves it (Kyverno >= 1.18),
	// otherwise ClusterPolicy.
	EngineAuto Engine = "Auto"
	// EngineImageValidatingPolicy generates a policies.kyverno.io/v1 ImageValidatingPolicy.
	EngineImageValidatingPolicy Engine = "ImageValidatingPolicy"
	// EngineClusterPolicy generates a kyverno.io/v1 ClusterPolicy with verifyImages rules.
	EngineClusterPolicy Engine = "ClusterPolicy"
)

// KeyState is the place of a public key in the rotation life cycle.
// +kubebuilder:validation:Enum=Active;Retiring
type KeyState string

const (
	// KeyActive keys are listed in spec.keys and accepted by the policy.
	KeyActive KeyState = "Active"
	// KeyRetiring keys were replaced or removed from spec.keys; the policy still accepts
	// them until retiresAt, then they are dropped.
	KeyRetiring KeyState = "Retiring"
)

// ImagePattern is an image reference glob such as "ghcr.io/yourorg/*",
// "registry.example.com:5000/team/app" or "nginx" (= docker.io/library/nginx).
// "*" matches any characters including "/", but never in the registry host, so
// "ghcr.io/yourorg/*" matches "ghcr.io/yourorg/app" and "ghcr.io/yourorg/team/app" and
// never "ghcr.io/yourorg-evil/app" or "ghcr.io.evil.com/yourorg/app".
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=255
// Patterns are globs, not regular expressions: regular-expression syntax is refused with
// the glob to write instead (a '.' before a '*' is regular-expression syntax except in a tag,
// where "redis:7.*" is a glob for the 7.x tags).
// +kubebuilder:validation:XValidation:rule=`!(self.matches(r'[\\^$+?()\[\]{}|]') || self.matches(r'(^|/)[^/:@]*\.\*'))`,messageExpression=`'"' + self + '" looks like a regular expression; image patterns are globs (\'*\' matches any characters, \'/\' included): ' + (self.replace('^', "").replace('$', "").replace(r'\.', '.').replace('.*', '*').replace('.+', '*').matches(r'^[a-z0-9][a-z0-9*._:/@-]*$') && !self.replace('^', "").replace('$', "").replace(r'\.', '.').replace('.*', '*').replace('.+', '*').contains('**') && !(self.replace('^', "").replace('$', "").replace(r'\.', '.').replace('.*', '*').replace('.+', '*').contains('/') && self.replace('^', "").replace('$', "").replace(r'\.', '.').replace('.*', '*').replace('.+', '*').split('/')[0].contains('*')) ? 'use "' + self.replace('^', "").replace('$', "").replace(r'\.', '.').replace('.*', '*').replace('.+', '*') + '"' : 'use \'*\' as the only wildcard, and one pattern per alternative')`,message="image patterns are globs, not regular expressions: use '*' as the only wildcard"
// +kubebuilder:validation:XValidation:rule=`self.matches(r'[\\^$+?()\[\]{}|]') || self.matches(r'(^|/)[^/:@]*\.\*') || self.matches('^[a-z0-9*._:/@-]+$')`,message="image pattern may contain only lowercase letters, digits and . _ - : / @ * characters"
// +kubebuilder:validation:XValidation:rule="!self.startsWith('*')",message="image pattern must start with a registry host or repository name, not a wildcard: a leading '*' would match every image"
// +kubebuilder:validation:XValidation:rule=`self.matches(r'[\\^$+?()\[\]{}|]') || self.matches(r'(^|/)[^/:@]*\.\*') || self.startsWith('*') || !self.contains('/') || !self.split('/')[0].contains('*')`,message="the registry host of an image pattern must not contain a wildcard"
// +kubebuilder:validation:XValidation:rule="!self.contains('**')",message="image pattern must not contain '**': a single '*' already matches across '/'"
// +kubebuilder:validation:XValidation:rule="!self.contains('//') && !self.endsWith('/') && !self.startsWith('/')",message="image pattern must not have empty path segments"
// +kubebuilder:validation:XValidation:rule="!self.contains('@') || self.matches('^[^@]+@sha256:[a-f0-9]{64}$')",message="a digest in an image pattern must be '@sha256:' followed by 64 lowercase hex characters"
type ImagePattern string

// TrustedRegistrySpec declares which images must be signed, where, and by whom.
// +kubebuilder:validation:XValidation:rule="(has(self.keys) ? size(self.keys) : 0) + (has(self.keyless) ? size(self.keyless) : 0) >= 1",message="at least one key or keyless identity is required"
// +kubebuilder:validation:XValidation:rule="!has(self.requiredSignatures) || (has(self.keys) ? size(self.keys) : 0) + (has(self.keyless) ? size(self.keyless) : 0) == 0 || self.requiredSignatures <= (has(self.keys) ? size(self.keys) : 0) + (has(self.keyless) ? size(self.keyless) : 0)",message="requiredSignatures cannot exceed the number of keys plus keyless identities"
// +kubebuilder:validation:XValidation:rule="!(has(self.digest) && has(self.digest.mutate) && self.digest.mutate && has(self.action) && self.action == 'Audit')",message="digest.mutate cannot be used with action Audit: Kyverno only rewrites tags to digests when it enforces"
type TrustedRegistrySpec struct {
	// Images lists the image reference patterns whose images must carry a valid signature.
	// A short Docker Hub name is normalised: "nginx" means "docker.io/library/nginx".
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	Images []ImagePattern `json:"images"`

	// Namespaces selects the namespaces this TrustedRegistry guards: those named, plus
	// those matching the selector (the union of both).
	Namespaces NamespaceSelection `json:"namespaces"`

	// RestrictRegistries, when true, admits in the guarded namespaces only images that
	// match one of the patterns in images; every other image is denied (or audited).
	// +kubebuilder:default=true
	// +optional
	RestrictRegistries *bool `json:"restrictRegistries,omitempty"`

	// Action is Enforce (deny Pods that break the policy) or Audit (admit them and report).
	// +kubebuilder:default=Enforce
	// +optional
	Action Action `json:"action,omitempty"`

	// Keys are cosign public keys, each read from a Secret in the trust namespace.
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	// +optional
	Keys []PublicKey `json:"keys,omitempty"`

	// Keyless lists Fulcio certificate identities (OIDC issuer and subject) whose
	// signatures are accepted.
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	// +optional
	Keyless []KeylessIdentity `json:"keyless,omitempty"`

	// RequiredSignatures is how many distinct keys or identities must have signed an image.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	// +optional
	RequiredSignatures int32 `json:"requiredSignatures,omitempty"`

	// Digest controls digest pinning. Its defaults depend on the action (see DigestPolicy),
	// so the apiserver stores none.
	// +optional
	Digest DigestPolicy `json:"digest,omitempty"`

	// TransparencyLog controls use of the Rekor transparency log and certificate
	// timestamps.
	// +optional
	TransparencyLog TransparencyLog `json:"transparencyLog,omitempty"`

	// Rotation controls how long a replaced or removed key is still accepted.
	// +kubebuilder:default={overlap: "168h"}
	// +optional
	Rotation Rotation `json:"rotation,omitempty"`

	// Policy selects the Kyverno policy kind to generate.
	// +kubebuilder:default={engine: Auto}
	// +optional
	Policy PolicyOptions `json:"policy,omitempty"`

	// Attestations and the signatures' repository (attestation_types.go).
	AttestationOptions `json:",inline"`

	// --- Private Sigstore and private registries (sigstore_types.go) ---

	// Sigstore names the trust roots of a private Sigstore deployment (Fulcio, Rekor, CT
	// log) that keyless identities are verified against, and the checks skipped on purpose.
	// +optional
	Sigstore *SigstoreTrust `json:"sigstore,omitempty"`

	// Credentials names the pull Secret Kyverno uses to read the images and signatures of
	// a private registry.
	// +optional
	Credentials *RegistryCredentials `json:"credentials,omitempty"`
}

// NamespaceSelection names namespaces and/or selects them by label. A namespace is
// guarded when it is named or matches the selector.
// +kubebuilder:validation:XValidation:rule="(has(self.names) && size(self.names) > 0) || has(self.selector)",message="namespaces needs names, a selector, or both"
type NamespaceSelection struct {
	// Names of guarded namespaces.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="namespace names must be DNS labels (lowercase letters, digits and '-')"
	// +listType=set
	// +optional
	Names []string `json:"names,omitempty"`

	// Selector selects guarded namespaces by their labels. An empty selector ({}) is
	// rejected: guarding every namespace must be said with explicit labels.
	// +kubebuilder:validation:XValidation:rule="(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",message="selector must have matchLabels or matchExpressions; an empty selector would select every namespace"
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// PublicKey is a cosign public key held in a Secret of the trust namespace.
type PublicKey struct {
	// Name identifies the key in status and in rotation history.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="key name must be a DNS label (lowercase letters, digits and '-')"
	Name string `json:"name"`

	// SecretRef names the Secret and the data key that hold the PEM public key.
	SecretRef SecretKeyReference `json:"secretRef"`
}

// SecretKeyReference points at one data key of a Secret in the trust namespace.
// +kubebuilder:validation:XValidation:rule="!has(self.__namespace__)",message="secretRef.namespace is not supported: key Secrets must live in the trust namespace of the operator"
type SecretKeyReference struct {
	// Name of the Secret in the trust namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="secret name must be a DNS subdomain"
	Name string `json:"name"`

	// Key is the data key holding the PEM public key. The default matches the Secret
	// written by `cosign generate-key-pair k8s://<namespace>/<name>`.
	// +kubebuilder:default="cosign.pub"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-._a-zA-Z0-9]+$')",message="key must be a valid Secret data key"
	// +optional
	Key string `json:"key,omitempty"`

	// Namespace must not be set. It exists only so that a manifest that sets it is refused
	// with a clear message instead of having the field silently dropped.
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// KeylessIdentity accepts signatures made with a Fulcio certificate issued to this
// identity.
// +kubebuilder:validation:XValidation:rule="has(self.issuer) != has(self.issuerRegExp)",message="set exactly one of issuer or issuerRegExp"
// +kubebuilder:validation:XValidation:rule="has(self.subject) != has(self.subjectRegExp)",message="set exactly one of subject or subjectRegExp"
type KeylessIdentity struct {
	// Name identifies the identity in status.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="identity name must be a DNS label (lowercase letters, digits and '-')"
	Name string `json:"name"`

	// Issuer is the exact OIDC issuer URL.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://')",message="issuer must be an https:// URL"
	// +optional
	Issuer string `json:"issuer,omitempty"`

	// IssuerRegExp is a regular expression the OIDC issuer must match. It must be anchored
	// on every alternative ("^a$|^b$" or "^(?:a|b)$", never "^a|b$"); where '(', '[' or '\'
	// make that undecidable here, the operator checks the parsed expression (condition
	// InvalidSpec).
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.startsWith('^') && self.endsWith('$')",message="issuerRegExp must be anchored with ^ and $"
	// +kubebuilder:validation:XValidation:rule="!self.contains('|') || self.matches('[(\\\\[\\\\\\\\]') || self.split('|').all(a, a.startsWith('^') && a.endsWith('$'))",message="issuerRegExp must be anchored on every alternative: a top-level '|' escapes ^ and $ (write ^(?:a|b)$)"
	// +optional
	IssuerRegExp string `json:"issuerRegExp,omitempty"`

	// Subject is the exact certificate subject (e.g. a workflow URL or an email).
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:MinLength=1
	// +optional
	Subject string `json:"subject,omitempty"`

	// SubjectRegExp is a regular expression the certificate subject must match, anchored
	// on every alternative like IssuerRegExp.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.startsWith('^') && self.endsWith('$')",message="subjectRegExp must be anchored with ^ and $"
	// +kubebuilder:validation:XValidation:rule="!self.contains('|') || self.matches('[(\\\\[\\\\\\\\]') || self.split('|').all(a, a.startsWith('^') && a.endsWith('$'))",message="subjectRegExp must be anchored on every alternative: a top-level '|' escapes ^ and $ (write ^(?:a|b)$)"
	// +optional
	SubjectRegExp string `json:"subjectRegExp,omitempty"`
}

// DigestPolicy controls digest pinning. Unset fields take a default that depends on the
// action (see Resolve): with Enforce, a tag is verified and then pinned, i.e. rewritten to
// the digest Kyverno verified (require and mutate true); with Audit, which cannot rewrite
// Pods, the image a tag resolves to is verified and tag references are not reported
// (require and mutate false). Set mutate: false (with require left unset or true) to deny
// every image that is not referenced by digest.
type DigestPolicy struct {
	// Require denies (or, with Audit, reports) images that are not referenced by digest
	// after mutation. Default: true with Enforce, false with Audit.
	// +optional
	Require *bool `json:"require,omitempty"`

	// Mutate lets Kyverno rewrite a tag to the digest it verified, so the Pod runs exactly
	// the verified image even if the tag moves later. Enforce only. Default: true with
	// Enforce, false with Audit.
	// +optional
	Mutate *bool `json:"mutate,omitempty"`
}

// Resolve returns the digest settings in force for a TrustedRegistry with this action
// (empty means Enforce): the fields that are set, and the action's defaults for the others.
// The renderer, `signet verify` and status messages all use it, so they cannot disagree.
func (d DigestPolicy) Resolve(action Action) (require, mutate bool) {
	enforce := action != ActionAudit
	mutate = enforce
	if d.Mutate != nil {
		mutate = *d.Mutate
	}
	require = enforce
	if d.Require != nil {
		require = *d.Require
	}
	return require, mutate
}

// TransparencyLog controls Rekor and certificate transparency checks.
type TransparencyLog struct {
	// Ignore skips the Rekor transparency log and SCT checks, for keys used offline or in
	// air-gapped registries (cosign sign --tlog-upload=false).
	// +kubebuilder:default=false
	// +optional
	Ignore *bool `json:"ignore,omitempty"`
}

// Rotation controls key rotation.
type Rotation struct {
	// Overlap is how long a key that was replaced or removed from spec.keys is still
	// accepted, so images signed with it keep running while they are re-signed.
	// Between 0s and 2160h (90 days).
	// +kubebuilder:default="168h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$')",message="overlap must be a duration such as 168h, 30m or 90s"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || duration(self) <= duration('2160h')",message="overlap must be at most 2160h (90 days)"
	// +optional
	Overlap *metav1.Duration `json:"overlap,omitempty"`
}

// PolicyOptions selects how the Kyverno policy is generated.
type PolicyOptions struct {
	// Engine is Auto (ImageValidatingPolicy when served, else ClusterPolicy),
	// ImageValidatingPolicy or ClusterPolicy.
	// +kubebuilder:default=Auto
	// +optional
	Engine Engine `json:"engine,omitempty"`
}

// TrustedRegistryStatus is what Signet observed and did.
type TrustedRegistryStatus struct {
	// ObservedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, KeysResolved, PolicyApplied, PolicyReady, Reconciling, Stalled,
	// AuditViolations.
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// Policy is the Kyverno policy that enforces this TrustedRegistry.
	// +optional
	Policy *PolicyReference `json:"policy,omitempty"`

	// Keys is the key ring: the keys the policy accepts now, with their rotation state.
	// +listType=atomic
	// +optional
	Keys []KeyStatus `json:"keys,omitempty"`

	// KeySummary is a short form of keys for kubectl get, e.g. "2 active, 1 retiring".
	// +optional
	KeySummary string `json:"keySummary,omitempty"`

	// Reports summarises the Kyverno PolicyReport results of the generated policy. Kyverno
	// writes no report for a request it denies in Enforce mode, so these count resources
	// that exist (admitted, or scanned in the background); denied admissions are not here.
	// +optional
	Reports *ReportSummary `json:"reports,omitempty"`

	// Coverage reports running Pods whose images no pattern matches (when Pod insights are
	// enabled in the operator).
	// +optional
	Coverage *CoverageSummary `json:"coverage,omitempty"`

	// RotationPreview says, while keys are retiring, whether the images running in the
	// guarded namespaces are signed by the keys that remain (when rotation preview is
	// enabled in the operator).
	// +optional
	RotationPreview *RotationPreview `json:"rotationPreview,omitempty"`
}

// RotationPreview is the result of verifying running images against the keys that remain
// after the retiring ones are gone.
type RotationPreview struct {
	// RetiringKeys names the keys about to leave, as "name (sha256:…)".
	// +listType=atomic
	RetiringKeys []string `json:"retiringKeys"`
	// Images is the number of distinct running images checked (those spec.images covers).
	Images int32 `json:"images"`
	// Safe is the number of those images the remaining keys verify.
	Safe int32 `json:"safe"`
	// AtRisk is the number of images the remaining keys do not verify: their Pods will be
	// denied when next created after the retirement.
	AtRisk int32 `json:"atRisk"`
	// Inconclusive is the number of images that could not be checked (registry
	// unreachable, trust material missing offline).
	Inconclusive int32 `json:"inconclusive"`
	// AtRiskImages lists up to 10 of them, most used first.
	// +kubebuilder:validation:MaxItems=10
	// +listType=atomic
	// +optional
	AtRiskImages []AtRiskImage `json:"atRiskImages,omitempty"`
}

// AtRiskImage is a running image the remaining keys do not verify.
type AtRiskImage struct {
	Image string `json:"image"`
	Pods  int32  `json:"pods"`
	// Example is one Pod running it, as namespace/name.
	Example string `json:"example"`
	// Reason is why it does not verify (or could not be checked).
	Reason string `json:"reason"`
}

// PolicyReference names a generated Kyverno policy.
type PolicyReference struct {
	// APIVersion of the policy, e.g. policies.kyverno.io/v1.
	APIVersion string `json:"apiVersion"`
	// Kind of the policy: ImageValidatingPolicy or ClusterPolicy.
	Kind string `json:"kind"`
	// Name of the (cluster-scoped) policy.
	Name string `json:"name"`
	// Branch is the part of a shared policy that holds this TrustedRegistry: for an
	// ImageValidatingPolicy its entry in variables.registries and the signer set it uses;
	// for a ClusterPolicy its rules. Empty for a policy of its own.
	// +optional
	Branch string `json:"branch,omitempty"`
}

// KeyStatus is one key of the key ring.
type KeyStatus struct {
	// Name of the key in spec.keys (for a retiring key, the name it had).
	Name string `json:"name"`
	// Fingerprint is "sha256:" and the hex SHA-256 of the DER SubjectPublicKeyInfo.
	Fingerprint string `json:"fingerprint"`
	// Algorithm, e.g. ECDSA-P256, RSA-3072, Ed25519.
	// +optional
	Algorithm string `json:"algorithm,omitempty"`
	// State is Active or Retiring.
	State KeyState `json:"state"`
	// RetiresAt is when a Retiring key stops being accepted.
	// +optional
	RetiresAt *metav1.Time `json:"retiresAt,omitempty"`
}

// ReportSummary aggregates PolicyReport results for the generated policy.
type ReportSummary struct {
	Pass  int32 `json:"pass"`
	Fail  int32 `json:"fail"`
	Warn  int32 `json:"warn"`
	Error int32 `json:"error"`
	Skip  int32 `json:"skip"`
	// Updated is the time of the newest result counted.
	// +optional
	Updated *metav1.Time `json:"updated,omitempty"`
	// Failing lists up to 10 failing resources, sorted by namespace, kind and name.
	// +kubebuilder:validation:MaxItems=10
	// +listType=atomic
	// +optional
	Failing []FailingResource `json:"failing,omitempty"`
	// Blocked counts admission requests Kyverno denied because of the generated policy.
	// Kyverno writes no report for a denied request, only a PolicyViolation event; Signet
	// counts those events.
	// +optional
	Blocked *BlockedSummary `json:"blocked,omitempty"`
}

// BlockedSummary counts denied admission requests in a recent window.
type BlockedSummary struct {
	// Window is the period counted, e.g. "1h0m0s".
	Window string `json:"window"`
	// Count is the number of denied requests in the window.
	Count int32 `json:"count"`
	// Recent lists up to 5 of the newest denials, newest first.
	// +kubebuilder:validation:MaxItems=5
	// +listType=atomic
	// +optional
	Recent []BlockedRequest `json:"recent,omitempty"`
}

// BlockedRequest is one denied admission request.
type BlockedRequest struct {
	// Time Kyverno denied the request.
	Time metav1.Time `json:"time"`
	// +optional
	Namespace string `json:"namespace,omitempty"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	// +optional
	Image string `json:"image,omitempty"`
	// Message is Kyverno's reason, trimmed.
	// +optional
	Message string `json:"message,omitempty"`
}

// CoverageSummary reports running Pods in the guarded namespaces whose images match none
// of spec.images: under restrictRegistries they would be denied when next created, and
// without it they run unverified. Useful to catch mirrors and typos before Enforce.
type CoverageSummary struct {
	// Pods is the number of Pods in the guarded namespaces.
	Pods int32 `json:"pods"`
	// UncoveredPods is the number of those Pods with at least one image outside spec.images.
	UncoveredPods int32 `json:"uncoveredPods"`
	// Uncovered lists up to 10 images outside spec.images, most used first.
	// +kubebuilder:validation:MaxItems=10
	// +listType=atomic
	// +optional
	Uncovered []UncoveredImage `json:"uncovered,omitempty"`
}

// UncoveredImage is an image in use that no pattern of the TrustedRegistry matches.
type UncoveredImage struct {
	Image string `json:"image"`
	// Pods using it.
	Pods int32 `json:"pods"`
	// Example is one Pod using it, as namespace/name.
	Example string `json:"example"`
}

// FailingResource is one resource with a failing result.
type FailingResource struct {
	// +optional
	Namespace string `json:"namespace,omitempty"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	// +optional
	Image string `json:"image,omitempty"`
	// +optional
	Rule string `json:"rule,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
}

// TrustedRegistry declares that images matching its patterns must be signed by its keys
// (or keyless identities) to run in its namespaces. Signet keeps the Kyverno policy, the
// key rotation state and a report summary in sync with it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=tr;treg,categories=signet
// +kubebuilder:printcolumn:name="Images",type=string,JSONPath=`.spec.images`
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.spec.action`
// +kubebuilder:printcolumn:name="Keys",type=string,JSONPath=`.status.keySummary`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.status.policy.name`
// +kubebuilder:printcolumn:name="Fail",type=integer,JSONPath=`.status.reports.fail`
// +kubebuilder:printcolumn:name="Blocked",type=integer,JSONPath=`.status.reports.blocked.count`,priority=1
// +kubebuilder:printcolumn:name="Uncovered",type=integer,JSONPath=`.status.coverage.uncoveredPods`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 56",message="TrustedRegistry name must be at most 56 characters: the generated Kyverno policy is named signet-<name>"
type TrustedRegistry struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec TrustedRegistrySpec `json:"spec"`
	// Status is what Signet observed and did. Until Signet first sees the TrustedRegistry
	// it reads as observedGeneration 0 (a default), so that kstatus-based tools such as
	// Flux's wait report it InProgress rather than Current (README.md, "GitOps").
	// +kubebuilder:default={observedGeneration: 0}
	Status TrustedRegistryStatus `json:"status,omitempty"`
}

// TrustedRegistryList is a list of TrustedRegistry.
//
// +kubebuilder:object:root=true
type TrustedRegistryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrustedRegistry `json:"items"`
}
