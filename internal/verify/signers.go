package verify

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/render"
)

// signer is what requiredSignatures counts, grouped exactly as internal/render groups
// attestors (render/signers.go): all public keys of one key name, Active and Retiring, are
// alternatives of one signer; names that share a public key are merged into one signer; each
// keyless identity is a signer of its own.
type signer struct {
	name    string // "ci", "ci/ci-old" for names sharing a key, "keyless:<name>"
	keys    []signerKey
	keyless *v1alpha1.KeylessIdentity
}

type signerKey struct {
	fingerprint string
	pem         string
	state       v1alpha1.KeyState
	verifier    signature.Verifier
}

var fingerprintRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// checkKey applies the renderer's rules to a key of the ring and loads its verifier.
func checkKey(k render.Key) (signature.Verifier, error) {
	if errs := validation.IsDNS1123Label(k.Name); len(errs) > 0 {
		return nil, fmt.Errorf("verify: key name %q: %s", k.Name, errs[0])
	}
	if !fingerprintRE.MatchString(k.Fingerprint) {
		return nil, fmt.Errorf("verify: key %q: fingerprint %q is not sha256:<64 lowercase hex>", k.Name, k.Fingerprint)
	}
	if k.State != v1alpha1.KeyActive && k.State != v1alpha1.KeyRetiring {
		return nil, fmt.Errorf("verify: key %q (%s): unknown state %q", k.Name, k.Fingerprint, k.State)
	}
	pk, err := keys.ParsePublicKey([]byte(k.PEM))
	if err != nil {
		return nil, fmt.Errorf("verify: key %q (%s): %w", k.Name, k.Fingerprint, err)
	}
	if pk.Fingerprint != k.Fingerprint {
		return nil, fmt.Errorf("verify: key %q: PEM does not match fingerprint %s", k.Name, k.Fingerprint)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(pk.PEM))
	if err != nil {
		return nil, fmt.Errorf("verify: key %q (%s): %w", k.Name, k.Fingerprint, err)
	}
	// cosign's default for every key type: SHA-256 (ignored for Ed25519)
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("verify: key %q (%s): %w", k.Name, k.Fingerprint, err)
	}
	return v, nil
}

// buildSigners takes the renderer's signer groups (render.Signers: the single definition of
// what requiredSignatures counts) and loads a verifier for every key.
func buildSigners(ring []render.Key, keyless []v1alpha1.KeylessIdentity) ([]signer, error) {
	for _, k := range ring {
		if _, err := checkKey(k); err != nil {
			return nil, err
		}
	}
	groups, err := render.Signers(ring, keyless)
	if err != nil {
		return nil, err
	}
	out := make([]signer, 0, len(groups))
	for _, g := range groups {
		s := signer{name: g.Name, keyless: g.Keyless}
		for _, k := range g.Keys {
			v, err := checkKey(render.Key{Name: k.Name, Fingerprint: k.Fingerprint, PEM: k.PEM, State: k.State})
			if err != nil {
				return nil, err
			}
			s.keys = append(s.keys, signerKey{fingerprint: k.Fingerprint, pem: k.PEM, state: k.State, verifier: v})
		}
		out = append(out, s)
	}
	return out, nil
}

func signerNames(ss []signer) string {
	names := make([]string, 0, len(ss))
	for _, s := range ss {
		names = append(names, s.name)
	}
	return strings.Join(names, ", ")
}

// keysetID identifies everything a cached signature verdict depends on besides the image:
// the signers with their keys and identities, the threshold and the transparency-log
// setting.
func keysetID(ss []signer, required int, ignoreLog bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "required=%d;ignoreLog=%t\n", required, ignoreLog)
	for _, s := range ss {
		fmt.Fprintf(&b, "signer %q\n", s.name)
		for _, k := range s.keys {
			fmt.Fprintf(&b, " key %s\n", k.fingerprint)
		}
		if id := s.keyless; id != nil {
			fmt.Fprintf(&b, " keyless %q %q %q %q\n", id.Issuer, id.IssuerRegExp, id.Subject, id.SubjectRegExp)
		}
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

func invalidf(format string, args ...any) error {
	return &render.InvalidError{Msg: fmt.Sprintf(format, args...)}
}
