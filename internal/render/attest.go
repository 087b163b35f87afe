package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	policiesv1 "github.com/kyverno/api/api/policies.kyverno.io/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/utils/ptr"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// Attestations (spec.attestations) and signatures stored in another repository
// (spec.signaturesRepository); README.md, "Attestations".
//
// ImageValidatingPolicy: every (predicate type, attestor) pair is an entry of
// spec.attestations of its own, and a signer's attestation counts only if
// verifyAttestationSignatures(image, that entry, [that attestor]) verifies and the payload
// extractPayload returns right after it meets the conditions. Kyverno keeps one verified
// payload per predicate type and image, whichever attestor verified it last, and restores
// cached payloads per attestation entry (pkg/cel/libs/imageverify/impl.go in Kyverno
// 1.19): an entry per attestor makes the payload read the one that attestor signed, never
// one signed by a key another registry trusts.
//
// ClusterPolicy: verifyImages[].attestations with the conditions as Kyverno's JMESPath
// conditions over the predicate. Kyverno checks attestation entries without descending
// into nested attestor sets, so the signer threshold is expressed with flat sets only
// (cpAttestationSets).

// attestReq is one resolved spec.attestations entry.
type attestReq struct {
	uri        string // predicate type URI
	conditions []predCond
}

type predCond struct {
	path   []string
	values []string // equals is a one-value list
	oneOf  bool
}

var (
	predPathKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)
	predTypeRE    = regexp.MustCompile(`^[a-z][a-z0-9+.-]*://[^\s{}]+$`)
	repositoryRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$`)
)

// PredicateTypeURI returns the predicate type URI of a spec.attestations type (a short
// name or a URI), and false when it is neither.
func PredicateTypeURI(t string) (string, bool) {
	if uri, ok := v1alpha1.PredicateTypeShortNames[t]; ok {
		return uri, true
	}
	if len(t) <= 255 && predTypeRE.MatchString(t) {
		return t, true
	}
	return "", false
}

// resolveAttestations checks spec.attestations and spec.signaturesRepository again (the
// CRD may be older than the operator, or the object written with validation off) and
// fills s. Anything it cannot render exactly is an InvalidError: never a weaker policy.
func resolveAttestations(s *settings, spec *v1alpha1.TrustedRegistrySpec) error {
	if r := spec.SignaturesRepository; r != "" {
		if len(r) > 255 || !repositoryRE.MatchString(r) {
			return invalidf("signaturesRepository %q is not a repository reference such as registry.example.com/signatures", r)
		}
		s.sigRepo = r
	}
	seen := map[string]bool{}
	for _, a := range spec.Attestations {
		uri, ok := PredicateTypeURI(a.Type)
		if !ok {
			return invalidf("attestation type %q is neither a known short name nor a predicate type URI", a.Type)
		}
		if seen[a.Type] {
			return invalidf("attestation type %q is listed twice", a.Type)
		}
		seen[a.Type] = true
		req := attestReq{uri: uri}
		for _, c := range a.Conditions {
			pc, err := resolvePredCond(uri, c)
			if err != nil {
				return err
			}
			req.conditions = append(req.conditions, pc)
		}
		s.attestations = append(s.attestations, req)
	}
	if s.engine == v1alpha1.EngineClusterPolicy {
		return cpCheckAttestations(s)
	}
	if len(s.attestations) > 0 && s.ignoreLog {
		// Kyverno 1.19's ImageValidatingPolicy accepts an attestation only with a verified
		// transparency-log entry, even when the attestor ignores the log
		// (pkg/image/verifiers/ivpol/cosign/verifier.go, VerifyAttestationSignature: it
		// requires cosign's bundle-verified result): such a policy would deny every image.
		// README.md, "Attestations".
		return invalidf("attestations with transparencyLog.ignore need the ClusterPolicy engine (spec.policy.engine: ClusterPolicy): Kyverno's ImageValidatingPolicy verifies attestations only with a transparency-log entry, so it would deny every image; or record them in a transparency log (a private one: spec.sigstore.tuf and spec.sigstore.rekor)")
	}
	return nil
}

func resolvePredCond(uri string, c v1alpha1.PredicateCondition) (predCond, error) {
	keys := strings.Split(c.Path, ".")
	if len(keys) > 16 {
		return predCond{}, invalidf("attestation %s: condition path %q has more than 16 keys", uri, c.Path)
	}
	for _, k := range keys {
		if !predPathKeyRE.MatchString(k) {
			return predCond{}, invalidf("attestation %s: condition path %q: key %q must be letters, digits, '_' and '-', starting with a letter or '_'", uri, c.Path, k)
		}
	}
	pc := predCond{path: keys}
	switch {
	case (c.Equals != nil) == (len(c.OneOf) > 0):
		return predCond{}, invalidf("attestation %s: condition on %q must set exactly one of equals or oneOf", uri, c.Path)
	case c.Equals != nil:
		pc.values = []string{*c.Equals}
	default:
		pc.values, pc.oneOf = append([]string(nil), c.OneOf...), true
	}
	for _, v := range pc.values {
		// Kyverno's ClusterPolicy conditions read '*' and '?' as wildcards and "{{" as a
		// variable: an exact comparison cannot be written with them
		if strings.ContainsAny(v, "*?") || strings.Contains(v, "{{") || len(v) > 1024 {
			return predCond{}, invalidf("attestation %s: condition on %q: value %q must not contain '*', '?' or '{{' (and at most 1024 characters)", uri, c.Path, v)
		}
	}
	return pc, nil
}

// describe is how messages name a requirement: its type and conditions.
func (r attestReq) describe() string {
	if len(r.conditions) == 0 {
		return r.uri
	}
	var cs []string
	for _, c := range r.conditions {
		if c.oneOf {
			cs = append(cs, "predicate."+strings.Join(c.path, ".")+" in ["+strings.Join(c.values, ", ")+"]")
		} else {
			cs = append(cs, "predicate."+strings.Join(c.path, ".")+" == "+c.values[0])
		}
	}
	return r.uri + " with " + strings.Join(cs, " and ")
}

// celPredicate is a CEL condition over the in-toto statement st (extractPayload's value):
// every condition holds. A missing field or one of another type is false, never an error.
func (r attestReq) celPredicate(st string) string {
	if len(r.conditions) == 0 {
		return "true"
	}
	var all []string
	for _, c := range r.conditions {
		cur := st
		var terms []string
		for _, k := range append([]string{"predicate"}, c.path...) {
			terms = append(terms, "type("+cur+") == map", celString(k)+" in "+cur)
			cur += "[" + celString(k) + "]"
		}
		if c.oneOf {
			terms = append(terms, cur+" in "+celStringList(c.values))
		} else {
			terms = append(terms, cur+" == "+celString(c.values[0]))
		}
		all = append(all, strings.Join(terms, " && "))
	}
	return "(" + strings.Join(all, ") && (") + ")"
}

// ivpAttestationName names the spec.attestations entry of a predicate type and attestor.
func ivpAttestationName(uri, attestor string) string {
	sum := sha256.Sum256([]byte(uri))
	return "at_" + hex.EncodeToString(sum[:])[:12] + "_" + attestor
}

// ivpAttested is a CEL condition: image img carries an attestation of r signed with the
// attestor and meeting r's conditions.
func ivpAttested(r attestReq, attestor, img string) string {
	a := "attestations." + ivpAttestationName(r.uri, attestor)
	v := "verifyAttestationSignatures(" + img + ", " + a + ", [attestors." + attestor + "]) > 0"
	if len(r.conditions) == 0 {
		return v
	}
	return "(" + v + " && cel.bind(st, extractPayload(" + img + ", " + a + "), " + r.celPredicate("st") + "))"
}

// ivpAttestationThreshold is a CEL condition: s.required distinct signers attested img
// with r. attestorsOf gives a signer's attestor names (per-registry or shared naming).
func ivpAttestationThreshold(s *settings, r attestReq, img string, attestorsOf func(signer) []string) string {
	per := make([]string, 0, len(s.signers))
	for _, sg := range s.signers {
		var alts []string
		for _, a := range attestorsOf(sg) {
			alts = append(alts, ivpAttested(r, a, img))
		}
		t := strings.Join(alts, " || ")
		if len(alts) > 1 {
			t = "(" + t + ")"
		}
		per = append(per, t)
	}
	if s.required == 1 {
		return strings.Join(per, " || ")
	}
	for i := range per {
		per[i] = "(" + per[i] + " ? 1 : 0)"
	}
	return strings.Join(per, " + ") + " >= " + strconv.Itoa(s.required)
}

// attestationTail is the message tail for an image missing r.
func attestationTail(s *settings, r attestReq) string {
	return fmt.Sprintf(" lack(s) an attestation %s signed by %s of TrustedRegistry %s (%s)",
		r.describe(), signerQuantifier(s), s.name, signerNames(s.signers))
}

// ivpAttestationEntries lists spec.attestations entries for the requirements of s with the
// given attestor naming, into m (by name).
func ivpAttestationEntries(m map[string]policiesv1.Attestation, s *settings, attestorsOf func(signer) []string) {
	for _, r := range s.attestations {
		for _, sg := range s.signers {
			for _, a := range attestorsOf(sg) {
				n := ivpAttestationName(r.uri, a)
				m[n] = policiesv1.Attestation{Name: n, InToto: &policiesv1.InToto{Type: r.uri}}
			}
		}
	}
}

func sortedAttestations(m map[string]policiesv1.Attestation) []policiesv1.Attestation {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	names = sortedUnique(names)
	out := make([]policiesv1.Attestation, 0, len(names))
	for _, n := range names {
		out = append(out, m[n])
	}
	return out
}

// ivpSource is the cosign source of every attestor of s: where signatures are stored.
func ivpSource(s *settings) *policiesv1.Source {
	if s.sigRepo == "" {
		return nil
	}
	return &policiesv1.Source{Repository: s.sigRepo}
}

const ivpVarUnattested = "unattested"

// perImageMessage joins [image, tail...] entries into one message.
func perImageMessage(list string) string {
	return list + ".map(x, x.filter(t, t != x[0]).map(t, 'image ' + x[0] + t).join('; ')).join('; ')"
}

// ivpAddAttestations adds the attestation check of a per-registry ImageValidatingPolicy
// (after the signature check: an unsigned image is reported as unsigned).
func ivpAddAttestations(s *settings, spec *policiesv1.ImageValidatingPolicySpec, unchanged string) {
	if len(s.attestations) == 0 {
		return
	}
	perRegistry := func(sg signer) []string {
		var out []string
		for _, k := range sg.keys {
			out = append(out, k.attestor)
		}
		if sg.keyless != nil {
			out = append(out, sg.attestor)
		}
		return out
	}
	m := map[string]policiesv1.Attestation{}
	ivpAttestationEntries(m, s, perRegistry)
	spec.Attestations = sortedAttestations(m)
	var terms []string
	for _, r := range s.attestations {
		terms = append(terms, "(("+ivpAttestationThreshold(s, r, "i", perRegistry)+") ? [] : ["+celString(attestationTail(s, r))+"])")
	}
	spec.Variables = append(spec.Variables, admissionregistrationv1.Variable{
		Name:       ivpVarUnattested,
		Expression: "(images.containers + images.initContainers + images.ephemeralContainers).map(i, [i] + " + strings.Join(terms, " + ") + ").filter(x, size(x) > 1)",
	})
	spec.Validations = append(spec.Validations, admissionregistrationv1.Validation{
		Expression:        unchanged + "size(variables." + ivpVarUnattested + ") == 0",
		Message:           fmt.Sprintf("image(s) lack the attestations TrustedRegistry %s requires", s.name),
		MessageExpression: perImageMessage("variables." + ivpVarUnattested),
	})
}

// --- shared ImageValidatingPolicy -------------------------------------------------------

// sharedKeyAttestorFor is the content-named attestor of one key of a registry (shared.go):
// equal keys with equal settings are one attestor.
func sharedKeyAttestorFor(s *settings, k signerKey) policiesv1.Attestor {
	n := sharedKeyAttestor(k.fingerprint, s.ignoreLog) + repoSuffix(s) + keyTrustSuffix(s)
	return keyAttestor(n, k.pem, s)
}

// sharedKeylessAttestorFor is the content-named attestor of a keyless identity.
func sharedKeylessAttestorFor(s *settings, id *v1alpha1.KeylessIdentity) policiesv1.Attestor {
	n := sharedKeylessAttestor(id, s.ignoreLog, s.sigstore) + repoSuffix(s)
	return keylessAttestor(n, id, s)
}

// repoSuffix distinguishes the attestors of registries whose signatures are stored
// elsewhere: the same key reads another repository.
func repoSuffix(s *settings) string {
	if s.sigRepo == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(s.sigRepo))
	return "_r" + hex.EncodeToString(sum[:])[:12]
}

func sharedAttestorNames(s *settings, sg signer) []string {
	var out []string
	for _, k := range sg.keys {
		out = append(out, sharedKeyAttestorFor(s, k).Name)
	}
	if sg.keyless != nil {
		out = append(out, sharedKeylessAttestorFor(s, sg.keyless).Name)
	}
	return out
}

// sharedIVPAddAttestations adds the attestation check of the branches that require
// attestations to a shared ImageValidatingPolicy (nothing when none does, so the
// policies of registries without attestations are unchanged). Each such branch adds its
// own expression (registries with attestations cost syntax nodes, docs/architecture.md),
// evaluated only for images its patterns match in the namespaces it guards.
func sharedIVPAddAttestations(bs []*branch, spec *policiesv1.ImageValidatingPolicySpec) {
	m := map[string]policiesv1.Attestation{}
	var terms []string
	for i, b := range bs {
		if len(b.s.attestations) == 0 {
			continue
		}
		names := func(sg signer) []string { return sharedAttestorNames(b.s, sg) }
		ivpAttestationEntries(m, b.s, names)
		idx := strconv.Itoa(i)
		for _, r := range b.s.attestations {
			terms = append(terms, "((variables."+shVarMatched+".exists(m, m[0] == p[0] && "+matchedField(regID)+" == ',"+idx+",') && !("+
				ivpAttestationThreshold(b.s, r, "p[0]", names)+")) ? ["+celString(attestationTail(b.s, r))+"] : [])")
		}
	}
	if len(terms) == 0 {
		return
	}
	spec.Attestations = sortedAttestations(m)
	spec.Variables = append(spec.Variables, admissionregistrationv1.Variable{
		Name:       ivpVarUnattested,
		Expression: "variables." + shVarCanonical + ".map(p, [p[0]] + " + strings.Join(terms, " + ") + ").filter(x, size(x) > 1)",
	})
	spec.Validations = append(spec.Validations, admissionregistrationv1.Validation{
		Expression:        "variables." + ivpVarUnchanged + " || size(variables." + ivpVarUnattested + ") == 0",
		Message:           "image(s) lack the attestations required by the TrustedRegistries that guard this namespace",
		MessageExpression: perImageMessage("variables." + ivpVarUnattested),
	})
}

// --- ClusterPolicy ----------------------------------------------------------------------

type cpAttestation struct {
	Type       string               `json:"type"`
	Attestors  []cpAttestorSet      `json:"attestors,omitempty"`
	Conditions []cpAnyAllConditions `json:"conditions,omitempty"`
}

type cpAnyAllConditions struct {
	All []cpCondition `json:"all,omitempty"`
}

type cpCondition struct {
	Key      string `json:"key"`
	Operator string `json:"operator"`
	Value    any    `json:"value"`
}

// maxCPAttestorSets bounds the attestor sets of one ClusterPolicy attestation
// (cpAttestationSets).
const maxCPAttestorSets = 64

// cpAttestationSets expresses "s.required distinct signers" with flat attestor sets, all
// of which must hold. With one required signer, or when every signer has one key, it is a
// single set. Otherwise (a rotating key name has two keys, and more than one signer is
// required) "at least n of m signers" is written as its equivalent "every m-n+1 signers
// include one that attested": one flat set of count 1 per such group.
func cpAttestationSets(s *settings) ([]cpAttestorSet, error) {
	rekor, ctlog := cpKeyLog(s)
	entries := func(sg signer) []cpAttestor {
		if id := sg.keyless; id != nil {
			// the signature's keyless attestor: the same trust roots and log settings
			return []cpAttestor{{Keyless: cpKeylessEntry(id, s.ignoreLog, s.sigstore)}}
		}
		var out []cpAttestor
		for _, k := range sg.keys {
			out = append(out, cpAttestor{Keys: &cpStaticKey{PublicKeys: k.pem, Rekor: rekor, CTLog: ctlog}})
		}
		return out
	}
	multi := false
	for _, sg := range s.signers {
		multi = multi || len(sg.keys) > 1
	}
	if s.required == 1 || !multi {
		var all []cpAttestor
		for _, sg := range s.signers {
			all = append(all, entries(sg)...)
		}
		return []cpAttestorSet{{Count: ptr.To(s.required), Entries: all}}, nil
	}
	m, k := len(s.signers), len(s.signers)-s.required+1
	var sets []cpAttestorSet
	var rec func(start int, chosen []int) bool
	rec = func(start int, chosen []int) bool {
		if len(chosen) == k {
			if len(sets) == maxCPAttestorSets {
				return false
			}
			var es []cpAttestor
			for _, i := range chosen {
				es = append(es, entries(s.signers[i])...)
			}
			sets = append(sets, cpAttestorSet{Count: ptr.To(1), Entries: es})
			return true
		}
		for i := start; i <= m-(k-len(chosen)); i++ {
			if !rec(i+1, append(chosen, i)) {
				return false
			}
		}
		return true
	}
	if !rec(0, nil) {
		return nil, invalidf("attestations with requiredSignatures %d of %d signers while a key is rotating need more than %d attestor sets in a ClusterPolicy; use the ImageValidatingPolicy engine or fewer signers",
			s.required, m, maxCPAttestorSets)
	}
	return sets, nil
}

// jmesPath writes a predicate path as a JMESPath expression (keys quoted when needed).
func jmesPath(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		if strings.Contains(k, "-") {
			q[i] = `"` + k + `"`
		} else {
			q[i] = k
		}
	}
	return strings.Join(q, ".")
}

// cpAttestations renders s's requirements for a ClusterPolicy verifyImages entry.
func cpAttestations(s *settings) ([]cpAttestation, error) {
	if len(s.attestations) == 0 {
		return nil, nil
	}
	sets, err := cpAttestationSets(s)
	if err != nil {
		return nil, err
	}
	var out []cpAttestation
	for _, r := range s.attestations {
		a := cpAttestation{Type: r.uri, Attestors: sets}
		if len(r.conditions) > 0 {
			var all []cpCondition
			for _, c := range r.conditions {
				cond := cpCondition{Key: "{{ " + jmesPath(c.path) + " }}", Operator: "Equals", Value: c.values[0]}
				if c.oneOf {
					vals := make([]any, len(c.values))
					for i, v := range c.values {
						vals[i] = v
					}
					cond.Operator, cond.Value = "AnyIn", vals
				}
				all = append(all, cond)
			}
			a.Conditions = []cpAnyAllConditions{{All: all}}
		}
		out = append(out, a)
	}
	return out, nil
}

// cpContextRoots are the top-level names of Kyverno's JSON context when a ClusterPolicy
// checks attestation conditions. Kyverno merges the predicate into that context's root
// (pkg/engine/internal/utils.go, EvaluateConditions), so a path starting with one of them
// could read the admission request instead of a field the predicate lacks.
var cpContextRoots = map[string]bool{
	"request": true, "images": true, "image": true, "element": true, "elementIndex": true,
	"serviceAccountName": true, "serviceAccountNamespace": true, "target": true, "globalContext": true,
}

// cpCheckAttestations tells whether s's attestations render as a ClusterPolicy exactly.
func cpCheckAttestations(s *settings) error {
	for _, r := range s.attestations {
		for _, c := range r.conditions {
			if cpContextRoots[c.path[0]] {
				return invalidf("attestation %s: condition path %q starts with %q, a name Kyverno's ClusterPolicy context already holds; the condition could read the admission request instead of the predicate (use the ImageValidatingPolicy engine)",
					r.uri, strings.Join(c.path, "."), c.path[0])
			}
		}
	}
	if len(s.attestations) > 0 {
		if _, err := cpAttestationSets(s); err != nil {
			return err
		}
	}
	return nil
}

func cpAttestationsChecked(s *settings) []cpAttestation {
	out, err := cpAttestations(s)
	if err != nil {
		// unreachable: resolve refused the spec (cpCheckAttestations); never render the
		// verification without its attestations
		panic("render: " + err.Error())
	}
	return out
}

// PredicateConditionsHold tells whether an in-toto statement (the decoded DSSE payload)
// meets every condition, with the rendered policies' rules: a field is read under
// "predicate" along the path's keys, must be a string, and equal the value or one of
// oneOf; a missing field or another type fails. Conditions that do not resolve (see
// resolveAttestations) never hold. internal/verify judges attestations with it.
func PredicateConditionsHold(conds []v1alpha1.PredicateCondition, statement map[string]any) bool {
	for _, c := range conds {
		pc, err := resolvePredCond("", c)
		if err != nil {
			return false
		}
		var v any = statement["predicate"]
		for _, k := range pc.path {
			m, ok := v.(map[string]any)
			if !ok {
				return false
			}
			if v, ok = m[k]; !ok {
				return false
			}
		}
		s, ok := v.(string)
		if !ok {
			return false
		}
		match := false
		for _, want := range pc.values {
			match = match || s == want
		}
		if !match {
			return false
		}
	}
	return true
}
