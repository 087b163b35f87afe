package verify

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
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

func stateRank(s v1alpha1.KeyState) int {
	if s == v1alpha1.KeyActive {
		return 0
	}
	return 1
}

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

// buildSigners groups the key ring and the keyless identities into signers, sorted like the
// renderer's: key signers by name, then keyless identities by name; within a signer,
// Active keys first, then by fingerprint.
func buildSigners(ring []render.Key, keyless []v1alpha1.KeylessIdentity) ([]signer, error) {
	type fpInfo struct {
		name     string
		pem      string
		state    v1alpha1.KeyState
		verifier signature.Verifier
	}
	fps := map[string]*fpInfo{}
	parent := map[string]string{}
	var find func(string) string
	find = func(n string) string {
		p, ok := parent[n]
		if !ok {
			parent[n] = n
			return n
		}
		if p == n {
			return n
		}
		r := find(p)
		parent[n] = r
		return r
	}
	union := func(a, b string) {
		ra, rb := find(a), find(b)
		switch {
		case ra == rb:
		case ra < rb:
			parent[rb] = ra
		default:
			parent[ra] = rb
		}
	}
	firstName := map[string]string{}
	for _, k := range ring {
		v, err := checkKey(k)
		if err != nil {
			return nil, err
		}
		find(k.Name)
		if n, ok := firstName[k.Fingerprint]; ok {
			union(n, k.Name)
		} else {
			firstName[k.Fingerprint] = k.Name
		}
		cur := fps[k.Fingerprint]
		if cur == nil {
			fps[k.Fingerprint] = &fpInfo{name: k.Name, pem: k.PEM, state: k.State, verifier: v}
			continue
		}
		if stateRank(k.State) < stateRank(cur.state) || (k.State == cur.state && k.Name < cur.name) {
			cur.name, cur.state = k.Name, k.State
		}
	}
	members := map[string][]string{}
	for n := range parent {
		r := find(n)
		members[r] = append(members[r], n)
	}
	groups := map[string]*signer{}
	for r, names := range members {
		sort.Strings(names)
		groups[r] = &signer{name: strings.Join(names, "/")}
	}
	for fp, info := range fps {
		g := groups[find(info.name)]
		g.keys = append(g.keys, signerKey{fingerprint: fp, pem: info.pem, state: info.state, verifier: info.verifier})
	}
	out := make([]signer, 0, len(groups)+len(keyless))
	for _, g := range groups {
		sort.Slice(g.keys, func(i, j int) bool {
			a, b := g.keys[i], g.keys[j]
			if stateRank(a.state) != stateRank(b.state) {
				return stateRank(a.state) < stateRank(b.state)
			}
			return a.fingerprint < b.fingerprint
		})
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })

	kl := append([]v1alpha1.KeylessIdentity(nil), keyless...)
	sort.Slice(kl, func(i, j int) bool { return kl[i].Name < kl[j].Name })
	for i := range kl {
		id := kl[i]
		if errs := validation.IsDNS1123Label(id.Name); len(errs) > 0 {
			return nil, invalidf("keyless identity name %q: %s", id.Name, errs[0])
		}
		if i > 0 && kl[i-1].Name == id.Name {
			return nil, invalidf("keyless identity %q is listed twice", id.Name)
		}
		if (id.Issuer == "") == (id.IssuerRegExp == "") {
			return nil, invalidf("keyless identity %q: set exactly one of issuer or issuerRegExp", id.Name)
		}
		if (id.Subject == "") == (id.SubjectRegExp == "") {
			return nil, invalidf("keyless identity %q: set exactly one of subject or subjectRegExp", id.Name)
		}
		out = append(out, signer{name: "keyless:" + id.Name, keyless: &kl[i]})
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
