// Package keys parses cosign public keys, computes their fingerprints and keeps the key
// ring: which keys a generated policy accepts, and for how long a replaced key is still
// accepted (rotation).
//
// The package is pure (StandInPEM aside, which reads crypto/rand): no Kubernetes client,
// no clock reads (time is passed in), no logging. Error messages never contain key material, public or private: they name PEM
// block types, Secret data keys and sizes, never bytes.
package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// Reasons carried by *Error. They are the condition reasons of api/v1alpha1, so the
// controller can copy Error.Reason into the KeysResolved condition unchanged.
const (
	// ReasonInvalidPublicKey: the data is not exactly one supported PEM public key.
	ReasonInvalidPublicKey = v1alpha1.ReasonInvalidPublicKey
	// ReasonPrivateKeyOnly: the data holds private key material and no public key.
	ReasonPrivateKeyOnly = v1alpha1.ReasonPrivateKeyOnly
	// ReasonWeakKey: a public key of an unsupported size or curve.
	ReasonWeakKey = v1alpha1.ReasonWeakKey
	// ReasonSecretKeyNotFound: the Secret lacks the data key named by secretRef.key.
	ReasonSecretKeyNotFound = v1alpha1.ReasonSecretKeyNotFound
)

// DefaultSecretDataKey is the data key `cosign generate-key-pair k8s://<ns>/<name>` writes
// the public key to.
const DefaultSecretDataKey = "cosign.pub"

// cosign generate-key-pair k8s:// also writes these two entries; Signet never reads them.
const (
	cosignPrivateKeyDataKey = "cosign.key"
	cosignPasswordDataKey   = "cosign.password"
)

// Supported RSA modulus sizes, in bits.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// Error is a key resolution failure. Reason is one of the Reason* constants (a condition
// reason); Msg is a human-readable, deterministic message without key material.
type Error struct {
	Reason string
	Msg    string
}

// Error returns the message.
func (e *Error) Error() string { return e.Msg }

// ReasonOf returns the Reason of the first *Error in err's chain, or "" when there is none.
func ReasonOf(err error) string {
	var ke *Error
	if errors.As(err, &ke) {
		return ke.Reason
	}
	return ""
}

func newError(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// PublicKey is a parsed, supported cosign public key.
type PublicKey struct {
	// PEM is the normalised key: one "PUBLIC KEY" PEM block holding the DER
	// SubjectPublicKeyInfo, ending in a newline.
	PEM string
	// Fingerprint is "sha256:" and the lowercase hex SHA-256 of the DER SubjectPublicKeyInfo.
	Fingerprint string
	// Algorithm is ECDSA-P256, ECDSA-P384, ECDSA-P521, RSA-<bits> or Ed25519.
	Algorithm string
}

// Fingerprint returns "sha256:" and the lowercase hex SHA-256 of der, a DER
// SubjectPublicKeyInfo.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// PEM block types.
const (
	pemPublicKey      = string(cryptoutils.PublicKeyPEMType)      // PKIX SubjectPublicKeyInfo
	pemRSAPublicKey   = string(cryptoutils.PKCS1PublicKeyPEMType) // PKCS#1, accepted and normalised
	pemCertificate    = "CERTIFICATE"
	pemTrustedCert    = "TRUSTED CERTIFICATE"
	pemCertRequest    = "CERTIFICATE REQUEST"
	pemNewCertRequest = "NEW CERTIFICATE REQUEST"
	pemSSH2PublicKey  = "SSH2 PUBLIC KEY"
)

// ParsePublicKey parses data holding exactly one PEM public key: a "PUBLIC KEY" block
// (PKIX, what cosign writes) or an "RSA PUBLIC KEY" block (PKCS#1). Whitespace around the
// block and a leading UTF-8 byte order mark are allowed; any other text, a second block
// of any type, a certificate or private key material is refused. Supported keys: ECDSA
// P-256, P-384 and P-521; RSA of 2048 to 8192 bits; Ed25519.
//
// Errors are *Error with reason ReasonInvalidPublicKey, ReasonPrivateKeyOnly or
// ReasonWeakKey.
func ParsePublicKey(data []byte) (*PublicKey, error) {
	blocks, err := splitPEM(data)
	if err != nil {
		return nil, err
	}

	var public, private []*pem.Block
	var others []string
	for _, b := range blocks {
		switch {
		case b.Type == pemPublicKey || b.Type == pemRSAPublicKey:
			public = append(public, b)
		case isPrivateKeyType(b.Type):
			private = append(private, b)
		default:
			others = append(others, b.Type)
		}
	}

	switch {
	case len(private) > 0 && len(public) == 0:
		return nil, newError(ReasonPrivateKeyOnly,
			"the data holds a private key (PEM block %s) and no public key; Signet never reads private keys: store the public key (cosign.pub, a \"PUBLIC KEY\" PEM block) and reference it",
			describeTypes(private))
	case len(private) > 0:
		return nil, newError(ReasonInvalidPublicKey,
			"the data holds a private key (PEM block %s) next to the public key; store only the public key under this data key",
			describeTypes(private))
	case len(others) > 0:
		return nil, unexpectedBlockError(others, len(public))
	case len(public) == 0:
		// splitPEM returns at least one block, so this is unreachable; keep it total.
		return nil, newError(ReasonInvalidPublicKey, "the data holds no PEM public key")
	case len(public) > 1:
		return nil, newError(ReasonInvalidPublicKey,
			"the data holds %d public key PEM blocks; exactly one is supported: put each key under its own Secret data key and list each in spec.keys",
			len(public))
	}
	return parsePublicBlock(public[0])
}

// splitPEM decodes data as a sequence of PEM blocks separated only by whitespace.
func splitPEM(data []byte) ([]*pem.Block, error) {
	// A UTF-8 byte order mark, as some Windows editors write, is not content.
	rest := bytes.TrimSpace(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")))
	if len(rest) == 0 {
		if len(data) == 0 {
			return nil, newError(ReasonInvalidPublicKey, "the data is empty; expected a PEM public key (-----BEGIN PUBLIC KEY-----)")
		}
		return nil, newError(ReasonInvalidPublicKey, "the data holds only whitespace; expected a PEM public key (-----BEGIN PUBLIC KEY-----)")
	}
	begin := []byte("-----BEGIN ")
	var blocks []*pem.Block
	for len(rest) > 0 {
		n := len(blocks) + 1
		if !bytes.HasPrefix(rest, begin) {
			if n == 1 {
				return nil, notPEMError(rest)
			}
			return nil, newError(ReasonInvalidPublicKey,
				"unexpected text after PEM block %d; the data must hold only the PEM public key", n-1)
		}
		block, after := pem.Decode(rest)
		if block == nil {
			return nil, newError(ReasonInvalidPublicKey,
				"PEM block %d is malformed (missing or mismatched -----END line, or invalid base64)", n)
		}
		// pem.Decode skips a block it cannot decode and returns the next one it can: the
		// consumed text must hold exactly one BEGIN line (ours).
		consumed := rest[:len(rest)-len(after)]
		if bytes.Count(consumed, begin) != 1 {
			return nil, newError(ReasonInvalidPublicKey,
				"PEM block %d is malformed (missing or mismatched -----END line, or invalid base64)", n)
		}
		if len(block.Headers) > 0 && !isPrivateKeyType(block.Type) {
			return nil, newError(ReasonInvalidPublicKey,
				"PEM block %d (%s) has headers; a public key block has none", n, describeType(block.Type))
		}
		blocks = append(blocks, block)
		rest = bytes.TrimLeft(after, " \t\r\n")
	}
	return blocks, nil
}

// notPEMError explains non-PEM data, recognising common mistakes. It never quotes data.
func notPEMError(data []byte) *Error {
	switch {
	case bytes.HasPrefix(data, []byte("ssh-")) || bytes.HasPrefix(data, []byte("ecdsa-sha2-")):
		return newError(ReasonInvalidPublicKey,
			"the data is an OpenSSH public key; cosign keys are PEM (-----BEGIN PUBLIC KEY-----), as written by cosign generate-key-pair")
	case bytes.Contains(data, []byte("-----BEGIN ")):
		return newError(ReasonInvalidPublicKey,
			"unexpected text before the first PEM block; the data must hold only the PEM public key")
	case looksDoubleBase64(data):
		return newError(ReasonInvalidPublicKey,
			"the data is base64 of a PEM block, i.e. base64-encoded twice; put the PEM itself in stringData, or base64-encode it once in data")
	case len(data) > 0 && data[0] == 0x30:
		return newError(ReasonInvalidPublicKey,
			"the data looks like binary DER; expected PEM (-----BEGIN PUBLIC KEY-----)")
	default:
		return newError(ReasonInvalidPublicKey,
			"the data is not PEM; expected a public key starting with -----BEGIN PUBLIC KEY-----")
	}
}

func looksDoubleBase64(data []byte) bool {
	const maxLen = 64 << 10
	if len(data) > maxLen {
		return false
	}
	s := strings.Join(strings.Fields(string(data)), "")
	dec, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return false
	}
	return bytes.Contains(dec, []byte("-----BEGIN "))
}

// isPrivateKeyType recognises private key PEM blocks: PKCS#8 ("PRIVATE KEY", "ENCRYPTED
// PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY"), cosign's encrypted
// keys ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY"), OpenSSH, DSA.
func isPrivateKeyType(t string) bool {
	return t == "PRIVATE KEY" || strings.HasSuffix(t, " PRIVATE KEY")
}

func unexpectedBlockError(types []string, publicBlocks int) *Error {
	t := types[0]
	var what string
	switch t {
	case pemCertificate, pemTrustedCert:
		what = "is a certificate, not a public key; Signet accepts a bare public key (extract it with `openssl x509 -pubkey -noout`), or use spec.keyless for Fulcio certificates"
	case pemCertRequest, pemNewCertRequest:
		what = "is a certificate signing request, not a public key"
	case pemSSH2PublicKey:
		what = "is an SSH public key; cosign keys are PEM \"PUBLIC KEY\" blocks"
	default:
		what = "is not a public key; expected a \"PUBLIC KEY\" block"
	}
	suffix := ""
	if publicBlocks > 0 {
		suffix = "; the data must hold only the public key"
	}
	return newError(ReasonInvalidPublicKey, "PEM block %s %s%s", describeType(t), what, suffix)
}

// describeType quotes a PEM block type. Types are labels, not key material, but they come
// from user data: keep only a short, printable form.
func describeType(t string) string {
	const maxLen = 40
	ok := len(t) > 0 && len(t) <= maxLen
	for _, r := range t {
		allowed := r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ' ' || r == '-' || r == '_'
		if !allowed {
			ok = false
			break
		}
	}
	if !ok {
		return "of an unrecognised type"
	}
	return fmt.Sprintf("%q", t)
}

func describeTypes(blocks []*pem.Block) string {
	seen := map[string]bool{}
	var out []string
	for _, b := range blocks {
		d := describeType(b.Type)
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return strings.Join(out, ", ")
}

// OIDs needed to explain unsupported keys that crypto/x509 cannot parse.
var (
	oidPublicKeyECDSA = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidPublicKeyX448  = asn1.ObjectIdentifier{1, 3, 101, 111}
	oidPublicKeyEd448 = asn1.ObjectIdentifier{1, 3, 101, 113}
	curveNames        = map[string]string{
		"1.2.840.10045.3.1.1":   "P-192",
		"1.3.132.0.33":          "P-224",
		"1.3.132.0.10":          "secp256k1",
		"1.3.36.3.3.2.8.1.1.7":  "brainpoolP256r1",
		"1.3.36.3.3.2.8.1.1.11": "brainpoolP384r1",
		"1.3.36.3.3.2.8.1.1.13": "brainpoolP512r1",
	}
)

type spki struct {
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

func parsePublicBlock(block *pem.Block) (*PublicKey, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: block.Bytes}))
	if err != nil {
		return nil, explainParseError(block, err)
	}
	alg, kerr := checkKey(pub)
	if kerr != nil {
		return nil, kerr
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return nil, newError(ReasonInvalidPublicKey, "the %s public key cannot be re-encoded as a SubjectPublicKeyInfo", alg)
	}
	return &PublicKey{
		PEM:         string(cryptoutils.PEMEncode(cryptoutils.PublicKeyPEMType, der)),
		Fingerprint: Fingerprint(der),
		Algorithm:   alg,
	}, nil
}

// explainParseError turns a DER parse failure into a message, telling unsupported curves
// and algorithms (WeakKey / InvalidPublicKey) apart from corrupt data.
func explainParseError(block *pem.Block, err error) *Error {
	if block.Type == pemPublicKey {
		var info spki
		if rest, aerr := asn1.Unmarshal(block.Bytes, &info); aerr == nil && len(rest) == 0 {
			alg := info.Algorithm.Algorithm
			switch {
			case alg.Equal(oidPublicKeyECDSA):
				var curve asn1.ObjectIdentifier
				if _, cerr := asn1.Unmarshal(info.Algorithm.Parameters.FullBytes, &curve); cerr == nil {
					if !isSupportedCurveOID(curve) {
						name, ok := curveNames[curve.String()]
						if !ok {
							name = "with OID " + curve.String()
						}
						return newError(ReasonWeakKey,
							"ECDSA curve %s is not supported; use P-256, P-384 or P-521", name)
					}
				}
			case alg.Equal(oidPublicKeyEd448), alg.Equal(oidPublicKeyX448):
				return newError(ReasonInvalidPublicKey,
					"Ed448/X448 public keys are not supported; use ECDSA (P-256, P-384, P-521), RSA (2048 bits or more) or Ed25519")
			}
		}
	}
	return newError(ReasonInvalidPublicKey,
		"the %s PEM block does not hold a valid public key (%s)", describeType(block.Type), sanitizeErr(err))
}

func isSupportedCurveOID(oid asn1.ObjectIdentifier) bool {
	switch oid.String() {
	case "1.2.840.10045.3.1.7", "1.3.132.0.34", "1.3.132.0.35": // P-256, P-384, P-521
		return true
	}
	return false
}

// sanitizeErr keeps a parser error message only when it is short and printable ASCII.
// crypto/x509 and encoding/asn1 errors describe structure (tags, lengths), never bytes.
func sanitizeErr(err error) string {
	s := err.Error()
	if len(s) > 200 {
		return "malformed DER"
	}
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return "malformed DER"
		}
	}
	return s
}

// checkKey returns the algorithm name of a supported key, or why it is not supported.
func checkKey(pub crypto.PublicKey) (string, *Error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ECDSA-P256", nil
		case elliptic.P384():
			return "ECDSA-P384", nil
		case elliptic.P521():
			return "ECDSA-P521", nil
		}
		return "", newError(ReasonWeakKey, "ECDSA curve %s is not supported; use P-256, P-384 or P-521", curveName(k.Curve))
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits < minRSABits {
			return "", newError(ReasonWeakKey, "RSA key of %d bits is too weak; use at least %d bits", bits, minRSABits)
		}
		if bits > maxRSABits {
			return "", newError(ReasonInvalidPublicKey, "RSA key of %d bits is not supported; the maximum is %d bits", bits, maxRSABits)
		}
		if k.E < 3 || k.E%2 == 0 {
			return "", newError(ReasonWeakKey, "RSA key of %d bits has an unsafe public exponent; use 65537", bits)
		}
		return fmt.Sprintf("RSA-%d", bits), nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", newError(ReasonInvalidPublicKey, "Ed25519 key has %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
		return "Ed25519", nil
	case *ecdh.PublicKey:
		return "", newError(ReasonInvalidPublicKey, "X25519 keys are for key agreement, not signatures; use ECDSA, RSA or Ed25519")
	default:
		return "", newError(ReasonInvalidPublicKey, "%s public keys are not supported; use ECDSA (P-256, P-384, P-521), RSA (2048 bits or more) or Ed25519", keyTypeName(pub))
	}
}

func curveName(c elliptic.Curve) string {
	if c == nil || c.Params() == nil || c.Params().Name == "" {
		return "(unnamed)"
	}
	return c.Params().Name
}

func keyTypeName(pub crypto.PublicKey) string {
	t := fmt.Sprintf("%T", pub)
	if t == "*dsa.PublicKey" {
		return "DSA"
	}
	return strings.TrimPrefix(t, "*")
}

// PublicKeyFromSecretData reads the public key from a Secret's .data. It looks only at
// data[dataKey] (DefaultSecretDataKey when dataKey is ""); other entries are never read,
// only their names are listed when dataKey is missing. It refuses to read cosign's private
// key or password entries even when asked to.
//
// Errors are *Error: ReasonSecretKeyNotFound, or those of ParsePublicKey.
func PublicKeyFromSecretData(data map[string][]byte, dataKey string) (*PublicKey, error) {
	if dataKey == "" {
		dataKey = DefaultSecretDataKey
	}
	switch dataKey {
	case cosignPrivateKeyDataKey:
		return nil, newError(ReasonPrivateKeyOnly,
			"secretRef.key %q names cosign's private key, which Signet never reads; reference the public key %q instead",
			dataKey, DefaultSecretDataKey)
	case cosignPasswordDataKey:
		return nil, newError(ReasonInvalidPublicKey,
			"secretRef.key %q names cosign's private key password, which Signet never reads; reference the public key %q instead",
			dataKey, DefaultSecretDataKey)
	}
	value, ok := data[dataKey]
	if !ok {
		return nil, missingDataKeyError(data, dataKey)
	}
	pk, err := ParsePublicKey(value)
	if err != nil {
		var ke *Error
		if errors.As(err, &ke) {
			return nil, &Error{Reason: ke.Reason, Msg: fmt.Sprintf("data key %q: %s", dataKey, ke.Msg)}
		}
		return nil, err
	}
	return pk, nil
}

func missingDataKeyError(data map[string][]byte, dataKey string) *Error {
	names := make([]string, 0, len(data))
	for k := range data {
		names = append(names, k)
	}
	sort.Strings(names)
	const maxListed = 20
	var present string
	switch {
	case len(names) == 0:
		present = "the Secret has no data"
	case len(names) > maxListed:
		present = fmt.Sprintf("the Secret has data keys %s and %d more", quoteList(names[:maxListed]), len(names)-maxListed)
	default:
		present = "the Secret has data keys " + quoteList(names)
	}
	msg := fmt.Sprintf("data key %q not found; %s", dataKey, present)
	_, hasPrivate := data[cosignPrivateKeyDataKey]
	_, hasPublic := data[DefaultSecretDataKey]
	switch {
	case hasPublic:
		msg += fmt.Sprintf("; did you mean secretRef.key %q?", DefaultSecretDataKey)
		if hasPrivate {
			msg += fmt.Sprintf(" (Signet never reads cosign's private key %q)", cosignPrivateKeyDataKey)
		}
	case hasPrivate:
		msg += fmt.Sprintf("; Signet never reads cosign's private key (%q): the Secret needs the public key under %q, as `cosign generate-key-pair k8s://<namespace>/<name>` writes it",
			cosignPrivateKeyDataKey, DefaultSecretDataKey)
	}
	return &Error{Reason: ReasonSecretKeyNotFound, Msg: msg}
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		const maxLen = 253
		if len(n) > maxLen {
			n = n[:maxLen] + "..."
		}
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
