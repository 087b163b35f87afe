package v1alpha1

// Condition types set on a TrustedRegistry. Ready summarises the others; Reconciling and
// Stalled follow the kstatus conventions so that Argo CD, Flux and kstatus-aware tools can
// tell "still working" from "stuck until someone changes something".
const (
	// ConditionReady is True when the desired Kyverno policy is applied and Kyverno reports it
	// ready, with every key resolved.
	ConditionReady = "Ready"
	// ConditionKeysResolved is True when every key in spec.keys was read from its Secret and
	// parsed as a public key.
	ConditionKeysResolved = "KeysResolved"
	// ConditionPolicyApplied is True when the generated Kyverno policy matches the desired one.
	ConditionPolicyApplied = "PolicyApplied"
	// ConditionPolicyReady mirrors the Ready condition Kyverno sets on the generated policy.
	ConditionPolicyReady = "PolicyReady"
	// ConditionReconciling is True while the controller is making progress (kstatus).
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when the controller cannot make progress without a change to
	// the spec, a Secret or the cluster (kstatus).
	ConditionStalled = "Stalled"
	// ConditionRotationSafe is True when every running image in the guarded namespaces is
	// signed by the keys that remain once the retiring keys are gone; present only while
	// keys are retiring and rotation preview is enabled.
	ConditionRotationSafe = "RotationSafe"
	// ConditionAuditViolations is True when the policy runs in Audit mode and Kyverno reports
	// failing resources: these would be blocked under Enforce.
	ConditionAuditViolations = "AuditViolations"
)

// Condition reasons. They are part of the API: alerting rules and scripts match on them.
const (
	// ReasonReady: everything is in place.
	ReasonReady = "Ready"
	// ReasonProgressing: the controller is working towards the desired state.
	ReasonProgressing = "Progressing"

	// ReasonKeysResolved: every key was read and parsed.
	ReasonKeysResolved = "KeysResolved"
	// ReasonSecretNotFound: a key Secret does not exist in the trust namespace.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretKeyNotFound: the Secret exists but lacks the data key named by secretRef.key.
	ReasonSecretKeyNotFound = "SecretKeyNotFound"
	// ReasonInvalidPublicKey: the data is not a supported PEM public key.
	ReasonInvalidPublicKey = "InvalidPublicKey"
	// ReasonPrivateKeyOnly: the data holds a private key and no public key. Signet never reads
	// private key material; store cosign.pub next to it.
	ReasonPrivateKeyOnly = "PrivateKeyOnly"
	// ReasonWeakKey: the key is of an unsupported size or curve (e.g. RSA < 2048 bits).
	ReasonWeakKey = "WeakKey"

	// ReasonApplied: the generated policy is up to date.
	ReasonApplied = "Applied"
	// ReasonApplyFailed: the apiserver refused or failed the server-side apply.
	ReasonApplyFailed = "ApplyFailed"
	// ReasonKyvernoNotInstalled: no supported Kyverno policy kind is served by the apiserver.
	ReasonKyvernoNotInstalled = "KyvernoNotInstalled"
	// ReasonEngineNotServed: spec.policy.engine names a kind this cluster does not serve.
	ReasonEngineNotServed = "EngineNotServed"
	// ReasonNoUsableKeys: no key could be resolved and no previous policy exists, so no policy
	// was created. Nothing is enforced yet.
	ReasonNoUsableKeys = "NoUsableKeys"
	// ReasonKeptLastGoodPolicy: an error prevents rendering the desired policy; the last
	// applied policy stays in force (fail closed).
	ReasonKeptLastGoodPolicy = "KeptLastGoodPolicy"
	// ReasonSharedPolicyPending: the current spec and keys are recorded and wait for the
	// shared policy to take them; the previous branch (if any) stays in force meanwhile.
	ReasonSharedPolicyPending = "SharedPolicyPending"
	// ReasonInvalidSpec: the spec is valid for the CRD schema but cannot be rendered.
	ReasonInvalidSpec = "InvalidSpec"

	// ReasonPolicyReady: Kyverno reports the policy ready (webhook configured).
	ReasonPolicyReady = "PolicyReady"
	// ReasonPolicyNotReady: Kyverno has not (yet) marked the policy ready.
	ReasonPolicyNotReady = "PolicyNotReady"
	// ReasonPolicyStatusUnknown: Kyverno has not written a status for the policy yet.
	ReasonPolicyStatusUnknown = "PolicyStatusUnknown"

	// ReasonNoViolations: no failing results in Audit mode.
	ReasonNoViolations = "NoViolations"
	// ReasonViolationsFound: failing results exist in Audit mode.
	ReasonViolationsFound = "ViolationsFound"
	// ReasonNoReportAPI: no Kyverno report API is served, so results cannot be read.
	ReasonNoReportAPI = "NoReportAPI"

	// ReasonRemainingKeysCover: every running image verifies with the remaining keys.
	ReasonRemainingKeysCover = "RemainingKeysCover"
	// ReasonImagesAtRisk: some running images verify only with retiring keys.
	ReasonImagesAtRisk = "ImagesAtRisk"
	// ReasonPreviewPending: the running images are being checked.
	ReasonPreviewPending = "PreviewPending"
	// ReasonPreviewInconclusive: some images could not be checked.
	ReasonPreviewInconclusive = "PreviewInconclusive"
)
