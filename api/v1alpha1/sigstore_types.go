package v1alpha1

// Private Sigstore trust roots and registry credentials (README.md, "Keyless signatures
// with your own Sigstore" and "Private registries").

// SigstoreTrust names the trust material that keyless identities are verified against,
// for a private Sigstore deployment or for signatures made offline. Without it Kyverno
// uses the public Sigstore roots, which it fetches over the network (TUF).
//
// Skipping a check must be acknowledged in acceptRisks, so that a manifest that weakens
// verification says so in words:
// +kubebuilder:validation:XValidation:rule="!(has(self.ignoreTlog) && self.ignoreTlog) || (has(self.acceptRisks) && 'NoTransparencyLog' in self.acceptRisks)",message="ignoreTlog: true accepts keyless signatures that were never recorded in a transparency log: a leaked OIDC token or a mis-issued certificate can then sign without leaving a public trace, and nothing proves the signature was made while the short-lived certificate was valid. Add 'NoTransparencyLog' to acceptRisks to confirm"
// +kubebuilder:validation:XValidation:rule="!(has(self.ignoreSCT) && self.ignoreSCT) || (has(self.acceptRisks) && 'NoCertificateTimestamp' in self.acceptRisks)",message="ignoreSCT: true accepts Fulcio certificates that carry no signed certificate timestamp, i.e. certificates the CA never published to a certificate transparency log, so a mis-issued certificate goes unnoticed. Add 'NoCertificateTimestamp' to acceptRisks to confirm"
// +kubebuilder:validation:XValidation:rule="!has(self.acceptRisks) || !('NoTransparencyLog' in self.acceptRisks) || (has(self.ignoreTlog) && self.ignoreTlog)",message="acceptRisks lists NoTransparencyLog but ignoreTlog is not true: remove it, so that the acknowledgement always matches what is skipped"
// +kubebuilder:validation:XValidation:rule="!has(self.acceptRisks) || !('NoCertificateTimestamp' in self.acceptRisks) || (has(self.ignoreSCT) && self.ignoreSCT)",message="acceptRisks lists NoCertificateTimestamp but ignoreSCT is not true: remove it, so that the acknowledgement always matches what is skipped"
// +kubebuilder:validation:XValidation:rule="has(self.fulcioCertificates) || has(self.rekor) || has(self.ctLog) || has(self.tuf) || (has(self.ignoreTlog) && self.ignoreTlog) || (has(self.ignoreSCT) && self.ignoreSCT)",message="sigstore is empty: name tuf, fulcioCertificates, rekor or ctLog, or remove it"
type SigstoreTrust struct {
	// TUF is the TUF repository that distributes the deployment's trust root
	// (trusted_root.json: Fulcio, Rekor and CT log keys), as sigstore's scaffolding sets
	// one up. Kyverno's ImageValidatingPolicy reads its trust material from a TUF
	// repository for every keyless check, so with that engine a private Sigstore needs
	// one (without it Kyverno fetches the public one, which fails where it is not
	// reachable). The ClusterPolicy engine does not read TUF: with it, name
	// fulcioCertificates too.
	// +optional
	TUF *TUFTrust `json:"tuf,omitempty"`

	// FulcioCertificates holds the PEM root certificate(s) of the Fulcio CA that issued
	// the signing certificates, optionally followed by its intermediate certificates.
	// Each one is trusted as an anchor.
	// +optional
	FulcioCertificates *TrustMaterialReference `json:"fulcioCertificates,omitempty"`

	// Rekor is the transparency log that keyless signatures must be recorded in.
	// +optional
	Rekor *RekorTrust `json:"rekor,omitempty"`

	// CTLog holds the public key of the certificate transparency log whose signed
	// certificate timestamps (SCTs) the Fulcio certificates must carry.
	// +optional
	CTLog *CTLogTrust `json:"ctLog,omitempty"`

	// IgnoreTlog skips the Rekor transparency log check for keyless identities
	// (signatures made with `cosign sign --tlog-upload=false`). Needs NoTransparencyLog
	// in acceptRisks.
	// +optional
	IgnoreTlog *bool `json:"ignoreTlog,omitempty"`

	// IgnoreSCT skips the certificate transparency check of the Fulcio certificates.
	// Needs NoCertificateTimestamp in acceptRisks.
	// +optional
	IgnoreSCT *bool `json:"ignoreSCT,omitempty"`

	// AcceptRisks acknowledges each check that is skipped.
	// +kubebuilder:validation:MaxItems=2
	// +listType=set
	// +optional
	AcceptRisks []SigstoreRisk `json:"acceptRisks,omitempty"`
}

// SigstoreRisk names a Sigstore check that a TrustedRegistry skips on purpose.
// +kubebuilder:validation:Enum=NoTransparencyLog;NoCertificateTimestamp
type SigstoreRisk string

const (
	// RiskNoTransparencyLog acknowledges ignoreTlog.
	RiskNoTransparencyLog SigstoreRisk = "NoTransparencyLog"
	// RiskNoCertificateTimestamp acknowledges ignoreSCT.
	RiskNoCertificateTimestamp SigstoreRisk = "NoCertificateTimestamp"
)

// TUFTrust is a TUF repository and the root metadata that anchors trust in it.
type TUFTrust struct {
	// Mirror is the base URL of the TUF repository (where root.json, timestamp.json and
	// targets/ are served), e.g. https://tuf.sigstore.internal.example.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://') || self.startsWith('http://')",message="tuf.mirror must be an http(s):// URL"
	Mirror string `json:"mirror"`

	// Root is the repository's initial root.json (the TUF root metadata, JSON), the
	// anchor from which every later version is verified.
	Root TrustMaterialReference `json:"root"`
}

// RekorTrust is a Rekor transparency log.
type RekorTrust struct {
	// URL of the Rekor server, e.g. https://rekor.internal.example.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://') || self.startsWith('http://')",message="rekor.url must be an http(s):// URL"
	URL string `json:"url"`

	// PublicKey is the PEM public key that signs the log's entries.
	// +optional
	PublicKey *TrustMaterialReference `json:"publicKey,omitempty"`
}

// CTLogTrust is a certificate transparency log.
type CTLogTrust struct {
	// PublicKey is the PEM public key of the log.
	PublicKey TrustMaterialReference `json:"publicKey"`
}

// TrustMaterialReference points at one data key of a Secret or a ConfigMap in the trust
// namespace. Trust roots are public, so a ConfigMap is fine; a Secret suits clusters that
// manage all trust material as Secrets.
// +kubebuilder:validation:XValidation:rule="has(self.secretName) != has(self.configMapName)",message="set exactly one of secretName or configMapName"
type TrustMaterialReference struct {
	// SecretName names a Secret in the trust namespace.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="secretName must be a DNS subdomain"
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// ConfigMapName names a ConfigMap in the trust namespace.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="configMapName must be a DNS subdomain"
	// +optional
	ConfigMapName string `json:"configMapName,omitempty"`

	// Key is the data key that holds the material (PEM; JSON for tuf.root).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-._a-zA-Z0-9]+$')",message="key must be a valid data key"
	Key string `json:"key"`
}

// RegistryCredentials names the pull credentials Kyverno uses to read the images and
// their signatures.
type RegistryCredentials struct {
	// SecretName names a kubernetes.io/dockerconfigjson Secret in the trust namespace.
	// Kyverno reads credentials only from its own namespace, so Signet keeps a copy there
	// (in the Secret signet-registry-credentials, merged with those of the other
	// TrustedRegistries) for as long as this TrustedRegistry uses it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="secretName must be a DNS subdomain"
	SecretName string `json:"secretName"`
}

// CredentialsCopyName is the name of the Secret in Kyverno's namespace that holds the
// credentials of every TrustedRegistry that names some (one merged docker config), so that
// Signet's access to Secrets there is limited to this one name.
const CredentialsCopyName = "signet-registry-credentials"

// Condition of the credentials copy, written by its own controller.
const (
	// ConditionCredentialsSynced is True when the copy of spec.credentials.secretName in
	// Kyverno's namespace matches the Secret in the trust namespace.
	ConditionCredentialsSynced = "CredentialsSynced"
	// ReasonCredentialsCopied: the copy is up to date.
	ReasonCredentialsCopied = "CredentialsCopied"
	// ReasonCredentialsSecretNotFound: the named Secret does not exist in the trust
	// namespace; Kyverno cannot read the registry, so its images are denied.
	ReasonCredentialsSecretNotFound = "CredentialsSecretNotFound"
	// ReasonCredentialsInvalid: the Secret is not a kubernetes.io/dockerconfigjson Secret
	// with a .dockerconfigjson key.
	ReasonCredentialsInvalid = "CredentialsInvalid"
	// ReasonCredentialsConflict: another TrustedRegistry's Secret has other credentials for
	// the same registry host; the first by registry name is used.
	ReasonCredentialsConflict = "CredentialsConflict"
	// ReasonCredentialsCopyFailed: writing the copy in Kyverno's namespace failed.
	ReasonCredentialsCopyFailed = "CredentialsCopyFailed"

	// ReasonInvalidTrustRoot: trust material named by spec.sigstore is not a PEM CA
	// certificate (Fulcio) or public key (Rekor, CT log). Reported on KeysResolved.
	ReasonInvalidTrustRoot = "InvalidTrustRoot"
)
