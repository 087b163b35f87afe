package render

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// Key is one public key of the key ring that the policy must accept.
type Key struct {
	// Name is the spec.keys name (a Retiring key keeps the name it had). All fingerprints
	// under one name are one signer for requiredSignatures.
	Name string `json:"name"`
	// Fingerprint is "sha256:" and the hex SHA-256 of the DER SubjectPublicKeyInfo.
	Fingerprint string `json:"fingerprint"`
	// PEM is the normalised "PUBLIC KEY" PEM block.
	PEM string `json:"pem"`
	// State is Active or Retiring.
	State v1alpha1.KeyState `json:"state"`
}

// Input is everything Render needs.
type Input struct {
	// Registry as stored (apiserver defaults applied). Unset optional fields get the secure
	// default: action Enforce, restrictRegistries true, transparency log not ignored,
	// requiredSignatures 1, and the digest settings of the action (DigestPolicy.Resolve).
	Registry *v1alpha1.TrustedRegistry
	// Keys are the active and retiring public keys.
	Keys []Key
	// Engine is the resolved policy kind: EngineImageValidatingPolicy or EngineClusterPolicy.
	Engine v1alpha1.Engine
	// Peers are the other TrustedRegistries, for Render's registry restriction: in a
	// namespace guarded by several restricting registries the allowed images are the union
	// of their patterns (restrict.go). Only their action, restrictRegistries, images and
	// namespaces are read; one that does not resolve is left out (which can only narrow
	// what is allowed). RenderShared ignores Peers: it renders all registries together.
	Peers []*v1alpha1.TrustedRegistry
	// TrustRoots is the trust material spec.sigstore names (nil without spec.sigstore).
	TrustRoots *TrustRoots
}

const (
	// FieldOwner is the server-side apply field manager for generated policies.
	FieldOwner = "signet"
	// AnnotationHash holds "sha256:<hex>" of the canonical rendered content (everything but
	// this annotation), so an unchanged policy need not be applied again.
	AnnotationHash = "trust.signet.dev/content-hash"
	// LabelManagedBy is set to ManagedByValue on every generated object (policies, key rings).
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the one value of LabelManagedBy: the cache and the watches select
	// Signet's objects by it.
	ManagedByValue = "signet"
	// LabelRegistry is set to the name of the TrustedRegistry a policy enforces.
	LabelRegistry = "trust.signet.dev/registry"

	policyPrefix = "signet-"

	// annotationAutogen disables Kyverno's pod-controller rule generation for ClusterPolicy
	// (the ImageValidatingPolicy gets none either: it matches a subresource).
	annotationAutogen = "pod-policies.kyverno.io/autogen-controllers"
)

// Kyverno kinds and API versions.
const (
	ivpGroup   = "policies.kyverno.io"
	ivpVersion = "v1"
	ivpKind    = "ImageValidatingPolicy"
	cpGroup    = "kyverno.io"
	cpVersion  = "v1"
	cpKind     = "ClusterPolicy"
)

// InvalidError says that the spec cannot be rendered into a policy that enforces what it
// asks for (e.g. no attestors, requiredSignatures above the number of signers). The
// controller reports it with reason InvalidSpec and does not retry until the spec changes.
type InvalidError struct{ Msg string }

func (e InvalidError) Error() string { return "invalid TrustedRegistry spec: " + e.Msg }

// As lets errors.As fill an InvalidError value target as well as a *InvalidError one.
func (e *InvalidError) As(target any) bool {
	if t, ok := target.(*InvalidError); ok {
		*t = *e
		return true
	}
	return false
}

// IsInvalid reports whether err is (or wraps) an InvalidError.
func IsInvalid(err error) bool {
	var ie *InvalidError
	if errors.As(err, &ie) {
		return true
	}
	var iv InvalidError
	return errors.As(err, &iv)
}

func invalidf(format string, args ...any) error {
	return &InvalidError{Msg: fmt.Sprintf(format, args...)}
}

// PolicyName is the name of the policy generated for the TrustedRegistry registryName.
func PolicyName(registryName string) string { return policyPrefix + registryName }

// GVK returns the kind of policy generated for a resolved engine (empty for any other).
func GVK(engine v1alpha1.Engine) schema.GroupVersionKind {
	switch engine {
	case v1alpha1.EngineImageValidatingPolicy:
		return schema.GroupVersionKind{Group: ivpGroup, Version: ivpVersion, Kind: ivpKind}
	case v1alpha1.EngineClusterPolicy:
		return schema.GroupVersionKind{Group: cpGroup, Version: cpVersion, Kind: cpKind}
	}
	return schema.GroupVersionKind{}
}

// settings is the TrustedRegistry spec with every default resolved.
type settings struct {
	name      string
	engine    v1alpha1.Engine
	enforce   bool
	restrict  bool
	verifyDig bool
	mutateDig bool
	ignoreLog bool
	required  int
	patterns  *patternSet
	ns        namespaces
	signers   []signer
	// spec.attestations and spec.signaturesRepository (attest.go)
	attestations []attestReq
	sigRepo      string
	// sigstore is spec.sigstore with its trust material (nil: public Sigstore);
	// credentials is the name of the credentials copy in Kyverno's namespace ("": none).
	sigstore    *sigstoreSettings
	credentials string
}

func resolve(in Input) (*settings, error) {
	tr := in.Registry
	if tr == nil {
		return nil, errors.New("render: nil TrustedRegistry")
	}
	if tr.Name == "" {
		return nil, errors.New("render: TrustedRegistry has no name")
	}
	if errs := validation.IsDNS1123Subdomain(PolicyName(tr.Name)); len(errs) > 0 || len(PolicyName(tr.Name)) > validation.LabelValueMaxLength {
		return nil, invalidf("name %q is too long or invalid for the generated policy name %q", tr.Name, PolicyName(tr.Name))
	}
	if tr.UID == "" {
		return nil, errors.New("render: TrustedRegistry has no UID (pass the object as stored)")
	}
	spec := &tr.Spec
	s := &settings{name: tr.Name, engine: in.Engine}
	switch spec.Action {
	case "", v1alpha1.ActionEnforce:
		s.enforce = true
	case v1alpha1.ActionAudit:
		s.enforce = false
	default:
		return nil, invalidf("unknown action %q", spec.Action)
	}
	s.restrict = boolOr(spec.RestrictRegistries, true)
	s.verifyDig, s.mutateDig = spec.Digest.Resolve(spec.Action)
	s.ignoreLog = boolOr(spec.TransparencyLog.Ignore, false)
	if s.mutateDig && !s.enforce {
		return nil, invalidf("digest.mutate cannot be used with action Audit: Kyverno rejects mutateDigest unless it enforces")
	}
	s.required = int(spec.RequiredSignatures)
	if s.required < 1 {
		s.required = 1
	}
	images := make([]string, 0, len(spec.Images))
	for _, p := range spec.Images {
		images = append(images, string(p))
	}
	var err error
	if s.patterns, err = newPatternSet(images); err != nil {
		return nil, err
	}
	if s.ns, err = resolveNamespaces(spec.Namespaces); err != nil {
		return nil, err
	}
	if s.sigstore, err = resolveSigstore(spec.Sigstore, in.TrustRoots); err != nil {
		return nil, err
	}
	if spec.Credentials != nil {
		s.credentials = v1alpha1.CredentialsCopyName
	}
	if s.signers, err = buildSigners(in.Keys, spec.Keyless); err != nil {
		return nil, err
	}
	if len(s.signers) == 0 {
		return nil, invalidf("no usable key or keyless identity: a policy without attestors would verify nothing")
	}
	if err := checkClusterPolicySigstore(s); err != nil {
		return nil, err
	}
	if s.required > len(s.signers) {
		return nil, invalidf("requiredSignatures is %d but there are only %d distinct signers (%s); keys that share a public key count once",
			s.required, len(s.signers), signerNames(s.signers))
	}
	if err := resolveAttestations(s, spec); err != nil {
		return nil, err
	}
	return s, nil
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// Render builds the Kyverno policy for a TrustedRegistry: an ImageValidatingPolicy or a
// ClusterPolicy as in.Engine says, with name, labels, the content-hash annotation and a
// controller owner reference to the TrustedRegistry. It is pure and deterministic.
func Render(in Input) (*unstructured.Unstructured, error) {
	s, err := resolve(in)
	if err != nil {
		return nil, err
	}
	var (
		spec        any
		annotations = map[string]string{}
	)
	switch in.Engine {
	case v1alpha1.EngineImageValidatingPolicy:
		ivp := buildIVP(s, restrictionFor(s, resolvePeers(in.Peers)))
		spec = &ivp
	case v1alpha1.EngineClusterPolicy:
		cp := buildClusterPolicy(s, restrictionFor(s, resolvePeers(in.Peers)))
		spec = &cp
		annotations[annotationAutogen] = "none"
	default:
		return nil, fmt.Errorf("render: engine %q is not a resolved policy kind", in.Engine)
	}
	specMap, err := toUnstructured(spec)
	if err != nil {
		return nil, err
	}
	gvk := GVK(in.Engine)
	tr := in.Registry
	meta := map[string]any{
		"name": PolicyName(tr.Name),
		"labels": map[string]any{
			LabelManagedBy: ManagedByValue,
			LabelRegistry:  tr.Name,
		},
		"ownerReferences": []any{ownerReferenceField(tr)},
	}
	if len(annotations) > 0 {
		a := map[string]any{}
		for k, v := range annotations {
			a[k] = v
		}
		meta["annotations"] = a
	}
	obj := map[string]any{
		"apiVersion": gvk.GroupVersion().String(),
		"kind":       gvk.Kind,
		"metadata":   meta,
		"spec":       specMap,
	}
	hash, err := contentHash(obj)
	if err != nil {
		return nil, err
	}
	a, _ := meta["annotations"].(map[string]any)
	if a == nil {
		a = map[string]any{}
		meta["annotations"] = a
	}
	a[AnnotationHash] = hash
	return &unstructured.Unstructured{Object: obj}, nil
}

// contentHash is "sha256:" and the hex SHA-256 of the canonical JSON (sorted map keys) of
// the object without the hash annotation.
func contentHash(obj map[string]any) (string, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return "", fmt.Errorf("render: hashing policy: %w", err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// toUnstructured converts a typed spec and removes what must not be sent: null values
// (fields without omitempty in Kyverno's Go types) and empty objects or lists, which under
// server-side apply would claim fields and fight Kyverno's defaults.
func toUnstructured(v any) (map[string]any, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(v)
	if err != nil {
		return nil, fmt.Errorf("render: converting policy spec: %w", err)
	}
	prune(m)
	return m, nil
}

func prune(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case map[string]any:
		for k, c := range t {
			if prune(c) {
				delete(t, k)
			}
		}
		return len(t) == 0
	case []any:
		for _, c := range t {
			prune(c)
		}
		return len(t) == 0
	}
	return false
}

// namespaces is the resolved namespace selection.
type namespaces struct {
	names    []string
	selector *metav1.LabelSelector // normalised copy, nil when absent
}

func resolveNamespaces(sel v1alpha1.NamespaceSelection) (namespaces, error) {
	var out namespaces
	for _, n := range sel.Names {
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			return out, invalidf("namespace name %q: %s", n, errs[0])
		}
	}
	out.names = sortedUnique(sel.Names)
	if sel.Selector != nil {
		ls := sel.Selector.DeepCopy()
		if len(ls.MatchLabels) == 0 && len(ls.MatchExpressions) == 0 {
			return out, invalidf("namespaces.selector is empty: it would select every namespace; name the labels")
		}
		if _, err := metav1.LabelSelectorAsSelector(ls); err != nil {
			return out, invalidf("namespaces.selector: %v", err)
		}
		if len(ls.MatchLabels) == 0 {
			ls.MatchLabels = nil
		}
		for i := range ls.MatchExpressions {
			ls.MatchExpressions[i].Values = sortedUnique(ls.MatchExpressions[i].Values)
			if len(ls.MatchExpressions[i].Values) == 0 {
				ls.MatchExpressions[i].Values = nil
			}
		}
		sort.SliceStable(ls.MatchExpressions, func(i, j int) bool {
			a, b := ls.MatchExpressions[i], ls.MatchExpressions[j]
			if a.Key != b.Key {
				return a.Key < b.Key
			}
			if a.Operator != b.Operator {
				return a.Operator < b.Operator
			}
			return fmt.Sprint(a.Values) < fmt.Sprint(b.Values)
		})
		out.selector = ls
	}
	if len(out.names) == 0 && out.selector == nil {
		return out, invalidf("namespaces needs names, a selector, or both: without them the policy would guard nothing or everything")
	}
	return out, nil
}

func resolvePeers(peers []*v1alpha1.TrustedRegistry) []*settings {
	var out []*settings
	for _, p := range peers {
		if ps, ok := resolvePeer(p); ok {
			out = append(out, ps)
		}
	}
	return out
}
