package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"regexp"
	"regexp/syntax"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// A signer is what requiredSignatures counts: a key name with all the public keys it has
// (its Active key and the Retiring ones it replaced: a signature by any of them counts
// once), or one keyless identity. Names that share a public key are merged into one
// signer, so the same key material can never count twice.
type signer struct {
	display string // "ci" or, for names sharing a key, "ci/ci-old"
	keys    []signerKey
	keyless *v1alpha1.KeylessIdentity
	// attestor is the attestor name of a keyless signer
	attestor string
}

type signerKey struct {
	attestor    string // attestor name, a CEL identifier
	fingerprint string
	pem         string
	state       v1alpha1.KeyState
}

var fingerprintRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func stateRank(s v1alpha1.KeyState) int {
	if s == v1alpha1.KeyActive {
		return 0
	}
	return 1
}

// identifier turns a DNS-label name into a CEL identifier fragment ('-' is the only
// character that needs replacing, and '_' never occurs in a DNS label, so it is injective).
func identifier(name string) string { return strings.ReplaceAll(name, "-", "_") }

func checkKey(k Key) error {
	if errs := validation.IsDNS1123Label(k.Name); len(errs) > 0 {
		return fmt.Errorf("render: key name %q: %s", k.Name, errs[0])
	}
	if !fingerprintRE.MatchString(k.Fingerprint) {
		return fmt.Errorf("render: key %q: fingerprint %q is not sha256:<64 lowercase hex>", k.Name, k.Fingerprint)
	}
	if k.State != v1alpha1.KeyActive && k.State != v1alpha1.KeyRetiring {
		return fmt.Errorf("render: key %q (%s): unknown state %q", k.Name, k.Fingerprint, k.State)
	}
	block, rest := pem.Decode([]byte(k.PEM))
	if block == nil || block.Type != "PUBLIC KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return fmt.Errorf("render: key %q (%s): PEM is not exactly one PUBLIC KEY block", k.Name, k.Fingerprint)
	}
	sum := sha256.Sum256(block.Bytes)
	if "sha256:"+hex.EncodeToString(sum[:]) != k.Fingerprint {
		return fmt.Errorf("render: key %q: PEM does not match fingerprint %s", k.Name, k.Fingerprint)
	}
	return nil
}

// buildSigners groups keys into signers and appends the keyless identities. The result is
// sorted (key signers by name, then keyless identities by name), and so are the keys of
// each signer (Active first, then by name and fingerprint).
func buildSigners(keys []Key, keyless []v1alpha1.KeylessIdentity) ([]signer, error) {
	// one entry per fingerprint: the best (Active, then smallest) name, the PEM, and the
	// best state; names sharing a fingerprint are joined (union-find over names)
	type fpInfo struct {
		name  string
		pem   string
		state v1alpha1.KeyState
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
		if ra == rb {
			return
		}
		if ra < rb {
			parent[rb] = ra
		} else {
			parent[ra] = rb
		}
	}
	firstNameOfFP := map[string]string{}
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return nil, err
		}
		find(k.Name)
		if n, ok := firstNameOfFP[k.Fingerprint]; ok {
			union(n, k.Name)
		} else {
			firstNameOfFP[k.Fingerprint] = k.Name
		}
		cur := fps[k.Fingerprint]
		if cur == nil {
			fps[k.Fingerprint] = &fpInfo{name: k.Name, pem: k.PEM, state: k.State}
			continue
		}
		if stateRank(k.State) < stateRank(cur.state) || (k.State == cur.state && k.Name < cur.name) {
			cur.name, cur.state = k.Name, k.State
		}
	}
	groups := map[string]*signer{}
	members := map[string][]string{}
	for n := range parent {
		r := find(n)
		members[r] = append(members[r], n)
	}
	for r, names := range members {
		sort.Strings(names)
		groups[r] = &signer{display: strings.Join(names, "/")}
	}
	fpList := make([]string, 0, len(fps))
	for fp := range fps {
		fpList = append(fpList, fp)
	}
	sort.Strings(fpList)
	for _, fp := range fpList {
		info := fps[fp]
		g := groups[find(info.name)]
		g.keys = append(g.keys, signerKey{fingerprint: fp, pem: info.pem, state: info.state,
			attestor: "key_" + identifier(info.name) + "_" + strings.TrimPrefix(fp, "sha256:")[:12]})
	}
	// attestor names must be unique; a 48-bit fingerprint prefix collision under one name is
	// unlikely but cheap to rule out
	seen := map[string]bool{}
	collision := false
	for _, g := range groups {
		for _, k := range g.keys {
			if seen[k.attestor] {
				collision = true
			}
			seen[k.attestor] = true
		}
	}
	out := make([]signer, 0, len(groups)+len(keyless))
	for _, g := range groups {
		if collision {
			for i := range g.keys {
				k := &g.keys[i]
				k.attestor = k.attestor[:strings.LastIndex(k.attestor, "_")+1] + strings.TrimPrefix(k.fingerprint, "sha256:")
			}
		}
		sort.Slice(g.keys, func(i, j int) bool {
			a, b := g.keys[i], g.keys[j]
			if stateRank(a.state) != stateRank(b.state) {
				return stateRank(a.state) < stateRank(b.state)
			}
			if a.attestor != b.attestor {
				return a.attestor < b.attestor
			}
			return a.fingerprint < b.fingerprint
		})
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].display < out[j].display })

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
		for _, re := range []string{id.IssuerRegExp, id.SubjectRegExp} {
			if re == "" {
				continue
			}
			if !strings.HasPrefix(re, "^") || !strings.HasSuffix(re, "$") {
				return nil, invalidf("keyless identity %q: regular expression %q must be anchored with ^ and $", id.Name, re)
			}
			if _, err := regexp.Compile(re); err != nil {
				return nil, invalidf("keyless identity %q: regular expression %q: %v", id.Name, re, err)
			}
			parsed, err := syntax.Parse(re, syntax.Perl) // what regexp.Compile parses
			if err != nil {
				return nil, invalidf("keyless identity %q: regular expression %q: %v", id.Name, re, err)
			}
			if !anchoredAt(parsed, true) || !anchoredAt(parsed, false) {
				return nil, invalidf("keyless identity %q: regular expression %q is not anchored on every alternative: "+
					"a top-level '|' escapes ^ and $ (write ^(?:a|b)$)", id.Name, re)
			}
		}
		out = append(out, signer{display: "keyless:" + id.Name, keyless: &kl[i], attestor: "keyless_" + identifier(id.Name)})
	}
	return out, nil
}

func signerNames(ss []signer) string {
	names := make([]string, 0, len(ss))
	for _, s := range ss {
		names = append(names, s.display)
	}
	return strings.Join(names, ", ")
}

// Signer is one of what requiredSignatures counts, exactly as the rendered policies group
// attestors: all public keys of one key name (Active and Retiring) are alternatives, names
// that share a public key are merged, and each keyless identity stands alone. Other code
// that must judge an image the way the policy does (internal/verify) uses these groups, so
// the threshold semantics live in one place.
type Signer struct {
	// Name is the key name ("ci"), the names sharing one public key ("ci/ci-copy"), or
	// "keyless:<identity name>", as in the policies' messages.
	Name string
	// Keys are the signer's public keys, Active first.
	Keys []SignerKey
	// Keyless is set for a keyless identity (then Keys is empty).
	Keyless *v1alpha1.KeylessIdentity
}

// SignerKey is one public key of a Signer.
type SignerKey struct {
	Fingerprint string
	PEM         string
	State       v1alpha1.KeyState
	// Name is the key name the policy's attestor for this key is named after.
	Name string
}

// Signers groups a key ring and keyless identities into signers, in the policies' order.
// Errors are those of Render for the same keys (InvalidError for an unusable spec).
func Signers(keys []Key, keyless []v1alpha1.KeylessIdentity) ([]Signer, error) {
	ss, err := buildSigners(keys, keyless)
	if err != nil {
		return nil, err
	}
	nameOf := map[string]string{}
	for _, k := range keys {
		if cur, ok := nameOf[k.Fingerprint]; !ok || k.Name < cur {
			nameOf[k.Fingerprint] = k.Name
		}
	}
	out := make([]Signer, 0, len(ss))
	for _, s := range ss {
		sg := Signer{Name: s.display, Keyless: s.keyless}
		for _, k := range s.keys {
			sg.Keys = append(sg.Keys, SignerKey{Fingerprint: k.fingerprint, PEM: k.pem, State: k.state, Name: nameOf[k.fingerprint]})
		}
		out = append(out, sg)
	}
	return out, nil
}

// anchoredAt reports whether every match of re starts at the beginning of the text (start)
// or ends at its end (!start), judged on the parsed expression: "^x|.*$" starts and ends
// with an anchor, yet its second alternative matches any identity. Kyverno and cosign
// match identities with an unanchored MatchString. Conservative: an expression anchored
// in some unusual way (an anchor inside a repetition, "(?m)^") is refused, never accepted.
func anchoredAt(re *syntax.Regexp, start bool) bool {
	switch re.Op {
	case syntax.OpBeginText:
		return start
	case syntax.OpEndText:
		return !start
	case syntax.OpCapture:
		return anchoredAt(re.Sub[0], start)
	case syntax.OpConcat:
		if len(re.Sub) == 0 {
			return false
		}
		if start {
			return anchoredAt(re.Sub[0], start)
		}
		return anchoredAt(re.Sub[len(re.Sub)-1], start)
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			if !anchoredAt(sub, start) {
				return false
			}
		}
		return true
	}
	return false
}
