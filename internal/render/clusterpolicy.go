package render

import (
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Minimal typed model of a kyverno.io/v1 ClusterPolicy: only the fields Signet sets, with
// omitempty everywhere except on the verifyImages booleans that Kyverno's CRD defaults to
// true (mutateDigest, verifyDigest, required), which are always written explicitly. Field
// names follow github.com/kyverno/kyverno/api/kyverno/v1 (v1.19.1), which is not imported
// because it drags in cosign, OPA and cloud KMS SDKs.

type cpSpec struct {
	Background    *bool    `json:"background,omitempty"`
	FailurePolicy string   `json:"failurePolicy,omitempty"`
	Rules         []cpRule `json:"rules"`
}

type cpRule struct {
	Name  string  `json:"name"`
	Match cpMatch `json:"match"`
	// CELPreconditions decide whether the rule applies to a request at all.
	CELPreconditions []admissionregistrationv1.MatchCondition `json:"celPreconditions,omitempty"`
	// Preconditions (JMESPath) are evaluated before a validate.cel rule's expressions are
	// compiled, which Kyverno does on every request.
	Preconditions *cpConditions         `json:"preconditions,omitempty"`
	VerifyImages  []cpImageVerification `json:"verifyImages,omitempty"`
	Validate      *cpValidation         `json:"validate,omitempty"`
}

type cpConditions struct {
	Any []cpCondition `json:"any,omitempty"`
}

// cpRespelledPrecondition lets a host-spelling rule run only for Pods with an image that
// cpRespelledRE matches, so that the usual Pod does not pay for compiling its CEL.
var cpRespelledPrecondition = &cpConditions{Any: []cpCondition{{
	Key: "{{ [request.object.spec.containers[].image || `[]`, request.object.spec.initContainers[].image || `[]`, " +
		"request.object.spec.ephemeralContainers[].image || `[]`][] | [?regex_match('" + cpRespelledRE + "', @)] | length(@) }}",
	Operator: "GreaterThan",
	Value:    0,
}}}

type cpMatch struct {
	Any []cpResourceFilter `json:"any,omitempty"`
}

type cpResourceFilter struct {
	Resources cpResources `json:"resources"`
}

type cpResources struct {
	Kinds             []string              `json:"kinds,omitempty"`
	Namespaces        []string              `json:"namespaces,omitempty"`
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	Operations        []string              `json:"operations,omitempty"`
}

type cpImageVerification struct {
	FailureAction   string          `json:"failureAction,omitempty"`
	ImageReferences []string        `json:"imageReferences,omitempty"`
	Attestors       []cpAttestorSet `json:"attestors,omitempty"`
	// ImageRegistryCredentials names pull Secrets in Kyverno's namespace.
	ImageRegistryCredentials *cpCredentials `json:"imageRegistryCredentials,omitempty"`
	MutateDigest             *bool          `json:"mutateDigest"`
	VerifyDigest             *bool          `json:"verifyDigest"`
	Required                 *bool          `json:"required"`
	// Repository and Attestations: spec.signaturesRepository and spec.attestations (attest.go)
	Repository   string          `json:"repository,omitempty"`
	Attestations []cpAttestation `json:"attestations,omitempty"`
}

type cpAttestorSet struct {
	Count   *int         `json:"count,omitempty"`
	Entries []cpAttestor `json:"entries,omitempty"`
}

type cpAttestor struct {
	Keys     *cpStaticKey   `json:"keys,omitempty"`
	Keyless  *cpKeyless     `json:"keyless,omitempty"`
	Attestor *cpAttestorSet `json:"attestor,omitempty"`
}

type cpStaticKey struct {
	PublicKeys string   `json:"publicKeys,omitempty"`
	Rekor      *cpRekor `json:"rekor,omitempty"`
	CTLog      *cpCTLog `json:"ctlog,omitempty"`
}

type cpKeyless struct {
	Issuer        string   `json:"issuer,omitempty"`
	IssuerRegExp  string   `json:"issuerRegExp,omitempty"`
	Subject       string   `json:"subject,omitempty"`
	SubjectRegExp string   `json:"subjectRegExp,omitempty"`
	Roots         string   `json:"roots,omitempty"`
	Rekor         *cpRekor `json:"rekor,omitempty"`
	CTLog         *cpCTLog `json:"ctlog,omitempty"`
}

type cpRekor struct {
	URL        string `json:"url,omitempty"`
	PubKey     string `json:"pubkey,omitempty"`
	IgnoreTlog bool   `json:"ignoreTlog,omitempty"`
}

type cpCTLog struct {
	IgnoreSCT bool   `json:"ignoreSCT,omitempty"`
	PubKey    string `json:"pubkey,omitempty"`
}

type cpCredentials struct {
	Secrets []string `json:"secrets,omitempty"`
}

type cpValidation struct {
	FailureAction           string `json:"failureAction,omitempty"`
	AllowExistingViolations *bool  `json:"allowExistingViolations,omitempty"`
	Message                 string `json:"message,omitempty"`
	CEL                     *cpCEL `json:"cel,omitempty"`
}

type cpCEL struct {
	Variables   []admissionregistrationv1.Variable   `json:"variables,omitempty"`
	Expressions []admissionregistrationv1.Validation `json:"expressions,omitempty"`
}

const (
	cpRuleVerify   = "verify-signatures"
	cpRuleRestrict = "restrict-registries"
	// cpRuleRespelled denies the images of a registry's patterns whose host is spelled in a
	// way Kyverno's verifyImages would not select (cpRespelledRE).
	cpRuleRespelled = "deny-respelled-hosts"
	cpVarImages     = "podImages"
	cpVarUnchanged  = "imagesUnchanged"
	cpVarRespelled  = "respelledImages"

	// cpRespelledRE matches a raw image whose registry host has an upper-case letter or a
	// port with a leading zero. Kyverno matches imageReferences against the host as written
	// and its wildcards cannot ignore case, so the ClusterPolicy denies such spellings of
	// its registries' images instead of verifying them (kyvernoGlobs covers every other
	// spelling: ":443" and Docker Hub's aliases).
	cpRespelledRE = `^[^/]*(?:[A-Z]|:0)[^/]*/`
)

// respelledMessage is the denial message for images of the registry with a respelled host.
func respelledMessage(s *settings, listExpr string) string {
	tail := fmt.Sprintf(": TrustedRegistry %s verifies its images only with the registry host in lower case and a port without leading zeros", s.name)
	if listExpr == "" {
		return "image(s)" + tail
	}
	return "'image(s) ' + " + listExpr + ".join(', ') + " + celString(tail)
}

// cpRespelledRule denies the images of s's patterns whose registry host Kyverno's
// verifyImages would not select (an upper-case letter, a zero-padded port): without it such
// a spelling would match the restriction (hosts compare case-insensitively) yet escape
// verification. It is present whether or not s restricts; the cheap host test runs first.
func cpRespelledRule(name string, match cpMatch, action string, s *settings) cpRule {
	return withPreconditions(cpRespelledPrecondition, cpCELRule(name, match, action, respelledMessage(s, ""), []admissionregistrationv1.Variable{
		{Name: cpVarImages, Expression: celPodImages},
		{Name: cpVarRespelled, Expression: "variables." + cpVarImages + ".filter(i, i.matches(r'" + cpRespelledRE + "') && " + celImageMatch("i", s.patterns.re) + ")"},
		{Name: cpVarUnchanged, Expression: celImagesUnchanged(cpVarImages)},
	}, admissionregistrationv1.Validation{
		Expression:        "variables." + cpVarUnchanged + " || size(variables." + cpVarRespelled + ") == 0",
		MessageExpression: respelledMessage(s, "variables."+cpVarRespelled),
	}))
}

func withPreconditions(c *cpConditions, r cpRule) cpRule {
	r.Preconditions = c
	return r
}

// cpCELRule is a validate.cel rule over Pods with one expression.
func cpCELRule(name string, match cpMatch, action, message string, vars []admissionregistrationv1.Variable, val admissionregistrationv1.Validation) cpRule {
	return cpRule{
		Name:  name,
		Match: match,
		Validate: &cpValidation{
			FailureAction: action,
			// also check UPDATEs of Pods that were already in violation (e.g. an
			// ephemeral container added to a Pod admitted before the policy existed),
			// as the ImageValidatingPolicy does
			AllowExistingViolations: ptr.To(false),
			Message:                 message,
			CEL:                     &cpCEL{Variables: vars, Expressions: []admissionregistrationv1.Validation{val}},
		},
	}
}

// buildClusterPolicy renders the ClusterPolicy spec: with restrictRegistries, the registry
// restriction (validate.cel); the denial of host spellings Kyverno cannot select
// (cpRespelledRule); and a verifyImages rule; all matching Pods (Kyverno adds the
// pods/ephemeralcontainers subresource to the webhook and to matching for kind Pod by
// itself) in the named namespaces OR the selected ones (two match.any filters).
//
// Signatures: one attestor set with count = requiredSignatures and one entry per signer.
// A signer with several public keys (a rotating key name) is a nested attestor set with
// count 1, so it counts once however many of its keys signed. Keys are never put together
// in one publicKeys value: Kyverno splits such a value into separate entries of the
// enclosing set (ExpandStaticKeys), which would count a rotating name twice.
//
// imageReferences are Kyverno wildcards over Kyverno's normalised image string
// (kyvernoGlobs); they cover every image the restriction admits. The restriction itself is
// the same CEL matcher as the ImageValidatingPolicy's, over the raw Pod images.
//
// failureAction is set per rule (spec.validationFailureAction is deprecated and defaults
// to Audit). webhookTimeoutSeconds is left to Kyverno's default. Autogen for pod
// controllers is disabled (annotation), as it is for the ImageValidatingPolicy.
func buildClusterPolicy(s *settings, rs *restriction) cpSpec {
	action := "Audit"
	if s.enforce {
		action = "Enforce"
	}
	match := cpMatchFor(s.ns)
	spec := cpSpec{
		Background:    ptr.To(true),
		FailurePolicy: "Fail",
	}
	if rs != nil {
		spec.Rules = append(spec.Rules, cpRestrictRule(cpRuleRestrict, match, action, rs))
	}
	spec.Rules = append(spec.Rules, cpRespelledRule(cpRuleRespelled, match, action, s))
	spec.Rules = append(spec.Rules, cpRule{
		Name:  cpRuleVerify,
		Match: match,
		VerifyImages: []cpImageVerification{{
			FailureAction:   action,
			ImageReferences: s.patterns.kyvernoGlobs(),
			Attestors:       []cpAttestorSet{{Count: ptr.To(s.required), Entries: cpEntries(s)}},
			MutateDigest:    ptr.To(s.mutateDig),
			VerifyDigest:    ptr.To(s.verifyDig),
			Required:        ptr.To(true),
			Repository:      s.sigRepo,
			// resolve checked that they render (cpCheckAttestations)
			Attestations: cpAttestationsChecked(s),
		}},
	})
	if cs := credentialSecrets(s); len(cs) > 0 {
		spec.Rules[len(spec.Rules)-1].VerifyImages[0].ImageRegistryCredentials = &cpCredentials{Secrets: cs}
	}
	return spec
}

// cpMatchFor matches the Pods of the namespaces ns selects.
func cpMatchFor(ns namespaces) cpMatch {
	var selectors []*metav1.LabelSelector
	if ns.selector != nil {
		selectors = append(selectors, ns.selector)
	}
	return cpMatchNamespaces(ns.names, selectors)
}

// cpMatchNamespaces matches Pod CREATE and UPDATE in the named namespaces or in those any
// of the selectors select.
func cpMatchNamespaces(names []string, selectors []*metav1.LabelSelector) cpMatch {
	ops := []string{"CREATE", "UPDATE"}
	var m cpMatch
	if len(names) > 0 {
		m.Any = append(m.Any, cpResourceFilter{Resources: cpResources{
			Kinds: []string{"Pod"}, Namespaces: names, Operations: ops,
		}})
	}
	for _, sel := range selectors {
		m.Any = append(m.Any, cpResourceFilter{Resources: cpResources{
			Kinds: []string{"Pod"}, NamespaceSelector: sel.DeepCopy(), Operations: ops,
		}})
	}
	return m
}

func cpEntries(s *settings) []cpAttestor {
	rekor, ctlog := cpKeyLog(s)
	var out []cpAttestor
	for _, sg := range s.signers {
		if id := sg.keyless; id != nil {
			out = append(out, cpAttestor{Keyless: cpKeylessEntry(id, s.ignoreLog, s.sigstore)})
			continue
		}
		var keys []cpAttestor
		for _, k := range sg.keys {
			keys = append(keys, cpAttestor{Keys: &cpStaticKey{PublicKeys: k.pem, Rekor: rekor, CTLog: ctlog}})
		}
		if len(keys) == 1 {
			out = append(out, keys[0])
		} else {
			out = append(out, cpAttestor{Attestor: &cpAttestorSet{Count: ptr.To(1), Entries: keys}})
		}
	}
	return out
}

// cpRestrictRule is the registry restriction rs as a validate.cel rule (restrict.go).
func cpRestrictRule(name string, match cpMatch, action string, rs *restriction) cpRule {
	vars := append([]admissionregistrationv1.Variable{
		{Name: cpVarImages, Expression: celPodImages},
		{Name: cpVarUnchanged, Expression: celImagesUnchanged(cpVarImages)},
	}, rs.variables(cpVarImages)...)
	val := rs.validation("variables." + cpVarUnchanged + " || ")
	// Kyverno (Kubernetes' validating admission policy evaluator) evaluates the message on
	// every request, with the variables evaluated afresh: only build it on failure
	msg := "(" + val.Expression + ") ? '' : " + val.MessageExpression
	return cpCELRule(name, match, action, val.Message, vars, admissionregistrationv1.Validation{Expression: val.Expression, MessageExpression: msg})
}
