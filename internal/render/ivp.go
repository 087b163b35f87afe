package render

import (
	"fmt"
	"strings"

	policiesv1 "github.com/kyverno/api/api/policies.kyverno.io/v1"
	policiesv1alpha1 "github.com/kyverno/api/api/policies.kyverno.io/v1alpha1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// Names of the CEL variables, validations and match conditions of the
// ImageValidatingPolicy. They show up in Kyverno's messages and reports.
const (
	ivpVarPodImages   = "podImages"
	ivpVarUnsigned    = "unsignedImages"
	ivpVarUnchanged   = "imagesUnchanged"
	ivpVarUndigested  = "undigestedImages"
	ivpMatchNamespace = "signet-guarded-namespace"

	// message listing limits: Kubernetes shows the whole denial message to the user
	maxPatternsInMessage = 10
)

// buildIVP renders the ImageValidatingPolicy spec.
//
// Evaluation order in Kyverno 1.19 (pkg/image/verification/evaluator): matchConstraints
// and matchConditions select the request; the images of containers, initContainers and
// ephemeralContainers that match matchImageReferences are extracted into `images`; with
// verifyDigest each of them must carry a digest; then the validations run in order and the
// first false one denies (Deny) or is reported (Audit). Images matching no
// matchImageReferences are invisible to `images` and to verifyImageSignatures (it returns
// 0 for them), so the registry restriction must read the Pod itself (`object`).
//
// Registry restriction (rs, nil without restrictRegistries): the union of the patterns of
// the restricting registries that guard the namespace (restrict.go), as a validation in
// the same policy rather than a separate ValidatingPolicy. Each policy costs Kyverno ~10 ms
// per Pod admission in a matched namespace whatever it contains (README.md, "Policy
// layout"), so one policy per TrustedRegistry is half the cost of two, and the restriction
// and the signature check can never disagree on which namespaces they guard. It comes
// first: it is cheap and needs no registry access.
//
// The same CEL matcher (celImageMatch) selects the images to verify
// (matchImageReferences) and the images allowed to run, so an image is admitted by the
// restriction only if it is also subject to signature verification.
func buildIVP(s *settings, rs *restriction) policiesv1.ImageValidatingPolicySpec {
	spec := ivpSkeleton(s.enforce, s.mutateDig)
	spec.MatchImageReferences = []policiesv1.MatchImageReference{{Expression: celImageMatch("ref", s.patterns.re)}}
	ivpNamespaces(s, &spec)
	spec.Attestors = ivpAttestors(s)
	if cs := credentialSecrets(s); len(cs) > 0 {
		spec.Credentials = &policiesv1alpha1.Credentials{Secrets: cs}
	}

	spec.Variables = append(spec.Variables,
		admissionregistrationv1.Variable{Name: ivpVarPodImages, Expression: celPodImages},
		admissionregistrationv1.Variable{Name: ivpVarUnchanged, Expression: celImagesUnchanged(ivpVarPodImages)},
	)
	// CEL variables are lazy: for an UPDATE that changes no image, nothing is verified.
	unchanged := "variables." + ivpVarUnchanged + " || "
	if rs != nil {
		spec.Variables = append(spec.Variables, rs.variables(ivpVarPodImages)...)
		spec.Validations = append(spec.Validations, rs.validation(unchanged))
	}
	if s.verifyDig {
		// With mutateDigest, Kyverno's mutating webhook has already pinned matched tags to
		// digests when this runs, so only images it could not pin are left.
		spec.Variables = append(spec.Variables, admissionregistrationv1.Variable{
			Name:       ivpVarUndigested,
			Expression: "(images.containers + images.initContainers + images.ephemeralContainers).filter(i, !i.contains('@sha256:'))",
		})
		spec.Validations = append(spec.Validations, admissionregistrationv1.Validation{
			Expression:        unchanged + "size(variables." + ivpVarUndigested + ") == 0",
			Message:           digestMessage(s, ""),
			MessageExpression: digestMessage(s, "variables."+ivpVarUndigested),
		})
	}
	spec.Variables = append(spec.Variables, admissionregistrationv1.Variable{
		Name:       ivpVarUnsigned,
		Expression: "(images.containers + images.initContainers + images.ephemeralContainers).filter(i, !(" + ivpThreshold(s, "i") + "))",
	})
	spec.Validations = append(spec.Validations, admissionregistrationv1.Validation{
		Expression:        unchanged + "size(variables." + ivpVarUnsigned + ") == 0",
		Message:           signatureMessage(s, ""),
		MessageExpression: signatureMessage(s, "variables."+ivpVarUnsigned),
	})
	ivpAddAttestations(s, &spec, unchanged)
	return spec
}

// ivpSkeleton is what every Signet ImageValidatingPolicy, per-registry or shared, has in
// common: Pods on CREATE and UPDATE, failure policy Fail, background scans, Kyverno's own
// digest and required checks off, and Deny (enforce) or Audit.
func ivpSkeleton(enforce, mutateDigest bool) policiesv1.ImageValidatingPolicySpec {
	spec := policiesv1.ImageValidatingPolicySpec{
		FailurePolicy: ptr.To(admissionregistrationv1.Fail),
		MatchConstraints: &admissionregistrationv1.MatchResources{
			ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule: admissionregistrationv1.Rule{
						APIGroups:   []string{""},
						APIVersions: []string{"v1"},
						// pods/ephemeralcontainers is how `kubectl debug` adds containers to a
						// running Pod; listing it also turns off Kyverno's autogen (which only
						// handles a rule with the single resource "pods"), so only Pods are
						// evaluated, as with the ClusterPolicy.
						Resources: []string{"pods", "pods/ephemeralcontainers"},
					},
				},
			}},
		},
		// The type exists only in v1alpha1; v1 aliases the whole spec.
		//
		// Kyverno's own verifyDigest and required checks run on every request, UPDATEs
		// included: a Pod that predates the policy (tag, unsigned) could then never be
		// relabelled or have a finalizer removed. Both are done by the validations
		// instead, skipped only for UPDATEs that change no image. required is covered by
		// the signature validation, which is stricter (it counts signers against
		// requiredSignatures; required only asks for one verified attestor).
		ValidationConfigurations: policiesv1alpha1.ValidationConfiguration{
			VerifyDigest: ptr.To(false),
			MutateDigest: ptr.To(mutateDigest),
			Required:     ptr.To(false),
		},
		EvaluationConfiguration: &policiesv1.EvaluationConfiguration{
			// background scans produce the PolicyReports that Audit (and status) rely on
			Background: &policiesv1.BackgroundConfiguration{Enabled: ptr.To(true)},
		},
	}
	if enforce {
		spec.ValidationAction = []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}
	} else {
		spec.ValidationAction = []admissionregistrationv1.ValidationAction{admissionregistrationv1.Audit}
	}
	return spec
}

// namespaceNameSelector selects the namespaces with the given names.
func namespaceNameSelector(names []string) *metav1.LabelSelector {
	return &metav1.LabelSelector{
		MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key:      "kubernetes.io/metadata.name",
			Operator: metav1.LabelSelectorOpIn,
			Values:   names,
		}},
	}
}

// ivpNamespaces restricts the policy to the guarded namespaces: those named plus those the
// selector selects (a union).
//
//   - names only: namespaceSelector kubernetes.io/metadata.name In names;
//   - selector only: that selector;
//   - both: a label selector cannot express "named OR labelled", so there is no
//     namespaceSelector and a matchCondition decides: request.namespace in names ||
//     selector(namespaceObject.metadata.labels). Kyverno's ImageValidatingPolicy CEL
//     environment declares namespaceObject (Kubernetes evaluation mode) and fills it from
//     its namespace lister, with a live GET on a cache miss, at admission and in background
//     scans (pkg/image/verification/evaluator/policy.go, pkg/cel/engine/namespace.go).
//     Kyverno leaves conditions that read namespaceObject out of the webhook's own
//     matchConditions, because the apiserver binds it to null there
//     (pkg/controllers/webhook/match_conditions.go), so the apiserver sends every Pod
//     admission to Kyverno and Kyverno filters. If the namespace cannot be resolved at all,
//     the selector part fails with an error: with failurePolicy Fail that denies (fails
//     closed) unless the namespace is one of the names.
//     Cost: a policy with matchConditions gets its own ("fine-grained") webhook in
//     Kyverno's configuration, without a namespaceSelector.
func ivpNamespaces(s *settings, spec *policiesv1.ImageValidatingPolicySpec) {
	names, sel := s.ns.names, s.ns.selector
	switch {
	case sel == nil:
		spec.MatchConstraints.NamespaceSelector = namespaceNameSelector(names)
	case len(names) == 0:
		spec.MatchConstraints.NamespaceSelector = sel.DeepCopy()
	default:
		spec.MatchConditions = []admissionregistrationv1.MatchCondition{{
			Name:       ivpMatchNamespace,
			Expression: "request.namespace in " + celStringList(names) + " || (" + celSelector(sel) + ")",
		}}
	}
}

// ivpAttestors returns one cosign attestor per public key and per keyless identity.
func ivpAttestors(s *settings) []policiesv1.Attestor {
	var out []policiesv1.Attestor
	for _, sg := range s.signers {
		for _, k := range sg.keys {
			out = append(out, keyAttestor(k.attestor, k.pem, s))
		}
		if id := sg.keyless; id != nil {
			out = append(out, keylessAttestor(sg.attestor, id, s))
		}
	}
	return out
}

// keyAttestor is a cosign attestor of a public key (PEM) of registry s: the one place
// where the per-registry and the shared policies build it.
func keyAttestor(name, pem string, s *settings) policiesv1.Attestor {
	ctlog, tuf := ivpKeyLog(s)
	return policiesv1.Attestor{
		Name:   name,
		Cosign: &policiesv1.Cosign{Key: &policiesv1.Key{Data: pem}, CTLog: ctlog, TUF: tuf, Source: ivpSource(s)},
	}
}

// keylessAttestor is a cosign attestor of a keyless identity of registry s (like
// keyAttestor).
func keylessAttestor(name string, id *v1alpha1.KeylessIdentity, s *settings) policiesv1.Attestor {
	c := ivpKeylessCosign(id, s.ignoreLog, s.sigstore)
	c.Source = ivpSource(s)
	return policiesv1.Attestor{Name: name, Cosign: c}
}

// ivpSignerVerified is a CEL condition: image img carries a valid signature of signer sg.
//
// verifyImageSignatures(image, [attestors…]) returns how many of the listed attestors
// verified the image (0 when it matches no matchImageReferences); Kyverno caches a success
// per (policy, sorted attestor names, image) only when every listed attestor verified
// (pkg/cel/libs/imageverify/impl.go). So each key is checked on its own: a success is
// cached, and the old and new key of a rotating name are alternatives (||), which counts
// the name once whichever signed.
func ivpSignerVerified(sg signer, img string) string {
	var alts []string
	for _, k := range sg.keys {
		alts = append(alts, fmt.Sprintf("verifyImageSignatures(%s, [attestors.%s]) > 0", img, k.attestor))
	}
	if sg.keyless != nil {
		alts = append(alts, fmt.Sprintf("verifyImageSignatures(%s, [attestors.%s]) > 0", img, sg.attestor))
	}
	if len(alts) == 1 {
		return alts[0]
	}
	return "(" + strings.Join(alts, " || ") + ")"
}

// ivpThreshold is a CEL condition: image img is signed by at least s.required distinct
// signers. With one required signature it is a short-circuit OR over the signers.
func ivpThreshold(s *settings, img string) string {
	if s.required == 1 {
		var alts []string
		for _, sg := range s.signers {
			alts = append(alts, ivpSignerVerified(sg, img))
		}
		return strings.Join(alts, " || ")
	}
	var terms []string
	for _, sg := range s.signers {
		terms = append(terms, "("+ivpSignerVerified(sg, img)+" ? 1 : 0)")
	}
	return strings.Join(terms, " + ") + fmt.Sprintf(" >= %d", s.required)
}

// digestMessage is the denial message of the digest requirement.
func digestMessage(s *settings, listExpr string) string {
	tail := fmt.Sprintf(" must be referenced by digest (image@sha256:...): TrustedRegistry %s requires digests", s.name)
	if listExpr == "" {
		return "image(s)" + tail
	}
	return "'image(s) ' + " + listExpr + ".join(', ') + " + celString(tail)
}

// signatureMessage is the denial message of the signature check.
func signatureMessage(s *settings, listExpr string) string {
	var tail string
	if s.required == 1 {
		tail = fmt.Sprintf(" not signed by any trusted signer of TrustedRegistry %s (%s)", s.name, signerNames(s.signers))
	} else {
		tail = fmt.Sprintf(" not signed by at least %d of the %d trusted signers of TrustedRegistry %s (%s)",
			s.required, len(s.signers), s.name, signerNames(s.signers))
	}
	if listExpr == "" {
		return "image(s)" + tail
	}
	return "'image(s) ' + " + listExpr + ".join(', ') + " + celString(tail)
}
