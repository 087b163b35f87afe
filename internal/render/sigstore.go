package render

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"sort"
	"strconv"
	"strings"

	policiesv1 "github.com/kyverno/api/api/policies.kyverno.io/v1"
	// TUFRoot has no alias in v1 (Kyverno API): the same type, from the package that defines it
	policiesv1alpha1 "github.com/kyverno/api/api/policies.kyverno.io/v1alpha1"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// TrustRoots is the trust material spec.sigstore names, as read from its Secrets or
// ConfigMaps (README.md, "Keyless signatures with your own Sigstore"). It is part of the
// recorded input, so a changed root certificate renders a new policy like a changed key.
type TrustRoots struct {
	// Fulcio is the PEM of the Fulcio root (and intermediate) certificates.
	Fulcio string `json:"fulcio,omitempty"`
	// Rekor is the PEM public key of the Rekor log.
	Rekor string `json:"rekor,omitempty"`
	// CTLog is the PEM public key of the certificate transparency log.
	CTLog string `json:"ctlog,omitempty"`
	// TUFRoot is the TUF root metadata (JSON) of spec.sigstore.tuf.
	TUFRoot string `json:"tufRoot,omitempty"`
}

// Kinds of trust material, for NormalizeTrustMaterial.
const (
	TrustFulcio = "fulcioCertificates"
	TrustRekor  = "rekor.publicKey"
	TrustCTLog  = "ctLog.publicKey"
	TrustTUF    = "tuf.root"
)

// TrustMaterialRef is one piece of trust material spec.sigstore names, with its kind.
type TrustMaterialRef struct {
	Kind string
	Ref  *v1alpha1.TrustMaterialReference
}

// TrustMaterialRefs lists the trust material spec.sigstore names (the operator reads each
// from the trust namespace, `signet render` from files).
func TrustMaterialRefs(spec *v1alpha1.TrustedRegistrySpec) []TrustMaterialRef {
	ss := spec.Sigstore
	if ss == nil {
		return nil
	}
	var out []TrustMaterialRef
	if ss.TUF != nil {
		out = append(out, TrustMaterialRef{TrustTUF, &ss.TUF.Root})
	}
	if ss.FulcioCertificates != nil {
		out = append(out, TrustMaterialRef{TrustFulcio, ss.FulcioCertificates})
	}
	if ss.Rekor != nil && ss.Rekor.PublicKey != nil {
		out = append(out, TrustMaterialRef{TrustRekor, ss.Rekor.PublicKey})
	}
	if ss.CTLog != nil {
		out = append(out, TrustMaterialRef{TrustCTLog, &ss.CTLog.PublicKey})
	}
	return out
}

// Set stores normalised material of the given kind.
func (t *TrustRoots) Set(kind, norm string) {
	switch kind {
	case TrustFulcio:
		t.Fulcio = norm
	case TrustRekor:
		t.Rekor = norm
	case TrustCTLog:
		t.CTLog = norm
	case TrustTUF:
		t.TUFRoot = norm
	}
}

// maxTUFRoot bounds a TUF root.json (the public Sigstore one is ~7 KB).
const maxTUFRoot = 64 << 10

// maxFulcioCertificates bounds the certificates of one fulcioCertificates entry (Kyverno
// refuses long chains, and a root bundle is a handful).
const maxFulcioCertificates = 10

// NormalizeTrustMaterial checks PEM trust material of the given kind (TrustFulcio:
// one or more CERTIFICATE blocks that parse as CA certificates; TrustRekor, TrustCTLog:
// exactly one PUBLIC KEY block) and returns it re-encoded, so that whitespace or comments
// around the blocks never change the rendered policy.
func NormalizeTrustMaterial(kind string, data []byte) (string, error) {
	if kind == TrustTUF {
		return normalizeTUFRoot(data)
	}
	var out bytes.Buffer
	n := 0
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n++
		switch kind {
		case TrustFulcio:
			if block.Type != "CERTIFICATE" {
				return "", fmt.Errorf("%s: PEM block %d is a %q, want CERTIFICATE", kind, n, block.Type)
			}
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return "", fmt.Errorf("%s: certificate %d: %w", kind, n, err)
			}
			if !cert.IsCA {
				return "", fmt.Errorf("%s: certificate %d (%s) is not a CA certificate", kind, n, cert.Subject)
			}
		default:
			if block.Type != "PUBLIC KEY" {
				return "", fmt.Errorf("%s: PEM block is a %q, want PUBLIC KEY", kind, block.Type)
			}
			if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
				return "", fmt.Errorf("%s: %w", kind, err)
			}
		}
		_ = pem.Encode(&out, &pem.Block{Type: block.Type, Bytes: block.Bytes})
	}
	switch {
	case n == 0:
		return "", fmt.Errorf("%s: no PEM data", kind)
	case len(bytes.TrimSpace(rest)) != 0:
		return "", fmt.Errorf("%s: data after the last PEM block", kind)
	case kind == TrustFulcio && n > maxFulcioCertificates:
		return "", fmt.Errorf("%s: %d certificates, at most %d", kind, n, maxFulcioCertificates)
	case kind != TrustFulcio && n != 1:
		return "", fmt.Errorf("%s: %d PEM blocks, want exactly one public key", kind, n)
	}
	return out.String(), nil
}

// normalizeTUFRoot checks that data is TUF root metadata and returns it without surrounding
// whitespace. The bytes are kept as they are: TUF verifies the signatures over the
// canonical form of "signed" itself, and Kyverno is handed exactly what the user gave.
func normalizeTUFRoot(data []byte) (string, error) {
	data = bytes.TrimSpace(data)
	if len(data) > maxTUFRoot {
		return "", fmt.Errorf("%s: %d bytes, at most %d", TrustTUF, len(data), maxTUFRoot)
	}
	var md struct {
		Signed struct {
			Type    string         `json:"_type"`
			Version int            `json:"version"`
			Keys    map[string]any `json:"keys"`
			Roles   map[string]any `json:"roles"`
		} `json:"signed"`
		Signatures []any `json:"signatures"`
	}
	if err := json.Unmarshal(data, &md); err != nil {
		return "", fmt.Errorf("%s: not JSON: %w", TrustTUF, err)
	}
	switch {
	case md.Signed.Type != "root":
		return "", fmt.Errorf("%s: signed._type is %q, want \"root\" (the repository's root.json)", TrustTUF, md.Signed.Type)
	case md.Signed.Version < 1 || len(md.Signed.Keys) == 0 || len(md.Signed.Roles) == 0 || len(md.Signatures) == 0:
		return "", fmt.Errorf("%s: root metadata without version, keys, roles or signatures", TrustTUF)
	}
	return string(data), nil
}

// sigstoreSettings is spec.sigstore resolved with its trust material. The zero value is
// public Sigstore with every check on.
type sigstoreSettings struct {
	roots      string
	rekorURL   string
	rekorKey   string
	ctlogKey   string
	ignoreTlog bool
	ignoreSCT  bool
	tufMirror  string
	tufRoot    string // JSON
	digest     string // key(), computed once when resolved: attestor names use it per signer
}

func resolveSigstore(spec *v1alpha1.SigstoreTrust, tr *TrustRoots) (*sigstoreSettings, error) {
	if spec == nil {
		return nil, nil
	}
	have := TrustRoots{}
	if tr != nil {
		have = *tr
	}
	s := &sigstoreSettings{}
	material := func(ref *v1alpha1.TrustMaterialReference, kind, data string) (string, error) {
		if ref == nil {
			return "", nil
		}
		if data == "" {
			return "", fmt.Errorf("render: sigstore %s is named but its material was not read", kind)
		}
		return NormalizeTrustMaterial(kind, []byte(data))
	}
	var err error
	if s.roots, err = material(spec.FulcioCertificates, TrustFulcio, have.Fulcio); err != nil {
		return nil, invalidf("%v", err)
	}
	if spec.TUF != nil {
		s.tufMirror = spec.TUF.Mirror
		if have.TUFRoot == "" {
			return nil, invalidf("render: sigstore %s is named but its material was not read", TrustTUF)
		}
		if s.tufRoot, err = NormalizeTrustMaterial(TrustTUF, []byte(have.TUFRoot)); err != nil {
			return nil, invalidf("%v", err)
		}
	}
	if spec.Rekor != nil {
		s.rekorURL = spec.Rekor.URL
		if s.rekorKey, err = material(spec.Rekor.PublicKey, TrustRekor, have.Rekor); err != nil {
			return nil, invalidf("%v", err)
		}
	}
	if spec.CTLog != nil {
		ref := spec.CTLog.PublicKey
		if s.ctlogKey, err = material(&ref, TrustCTLog, have.CTLog); err != nil {
			return nil, invalidf("%v", err)
		}
	}
	accepted := map[v1alpha1.SigstoreRisk]bool{}
	for _, r := range spec.AcceptRisks {
		accepted[r] = true
	}
	// the CRD refuses an unacknowledged opt-out; checked again for objects stored before
	s.ignoreTlog = boolOr(spec.IgnoreTlog, false)
	if s.ignoreTlog && !accepted[v1alpha1.RiskNoTransparencyLog] {
		return nil, invalidf("sigstore.ignoreTlog needs NoTransparencyLog in sigstore.acceptRisks")
	}
	s.ignoreSCT = boolOr(spec.IgnoreSCT, false)
	if s.ignoreSCT && !accepted[v1alpha1.RiskNoCertificateTimestamp] {
		return nil, invalidf("sigstore.ignoreSCT needs NoCertificateTimestamp in sigstore.acceptRisks")
	}
	s.digest = s.computeKey()
	return s, nil
}

// key is a short digest of everything that changes how a keyless attestor verifies, for
// content-derived attestor names ("" for public Sigstore).
func (s *sigstoreSettings) key() string {
	if s == nil {
		return ""
	}
	return s.digest
}

func (s *sigstoreSettings) computeKey() string {
	sum := sha256.Sum256([]byte(strings.Join([]string{s.roots, s.rekorURL, s.rekorKey, s.ctlogKey,
		strconv.FormatBool(s.ignoreTlog), strconv.FormatBool(s.ignoreSCT), s.tufMirror, s.tufRoot}, "\x00")))
	return hex.EncodeToString(sum[:])[:16]
}

// ivpKeylessCosign is the cosign attestor of a keyless identity: the identity, the Fulcio
// roots, and the transparency settings (ignoreLog is spec.transparencyLog.ignore, which
// skips both checks for every signer).
func ivpKeylessCosign(id *v1alpha1.KeylessIdentity, ignoreLog bool, ss *sigstoreSettings) *policiesv1.Cosign {
	c := &policiesv1.Cosign{Keyless: &policiesv1.Keyless{Identities: []policiesv1.Identity{{
		Issuer: id.Issuer, IssuerRegExp: id.IssuerRegExp, Subject: id.Subject, SubjectRegExp: id.SubjectRegExp,
	}}}}
	if ignoreLog {
		c.CTLog = &policiesv1.CTLog{InsecureIgnoreTlog: true, InsecureIgnoreSCT: true}
	}
	if ss == nil {
		return c
	}
	c.Keyless.Roots = ss.roots
	c.TUF = ss.tuf()
	c.CTLog = &policiesv1.CTLog{
		URL: ss.rekorURL, RekorPubKey: ss.rekorKey, CTLogPubKey: ss.ctlogKey,
		InsecureIgnoreTlog: ignoreLog || ss.ignoreTlog, InsecureIgnoreSCT: ignoreLog || ss.ignoreSCT,
	}
	return c
}

// keyLogApplies reports whether spec.sigstore's log settings apply to the key signers:
// the transparency log is checked (not transparencyLog.ignore) and a private TUF
// repository or Rekor is named. Keys have no certificates, so the Fulcio roots and the
// keyless opt-outs never apply to them.
func keyLogApplies(s *settings) bool {
	return !s.ignoreLog && s.sigstore != nil && (s.sigstore.tufMirror != "" || s.sigstore.rekorURL != "")
}

// ivpKeyLog is the transparency-log part of a key attestor: Kyverno's defaults (public
// Sigstore) unless keyLogApplies, then the private TUF repository and Rekor.
func ivpKeyLog(s *settings) (*policiesv1.CTLog, *policiesv1.TUF) {
	if s.ignoreLog {
		return &policiesv1.CTLog{InsecureIgnoreTlog: true, InsecureIgnoreSCT: true}, nil
	}
	if !keyLogApplies(s) {
		return nil, nil
	}
	ss := s.sigstore
	var ctlog *policiesv1.CTLog
	if ss.rekorURL != "" {
		ctlog = &policiesv1.CTLog{URL: ss.rekorURL, RekorPubKey: ss.rekorKey, CTLogPubKey: ss.ctlogKey}
	}
	return ctlog, ss.tuf()
}

// cpKeyLog is ivpKeyLog for the ClusterPolicy's key entries (which never read TUF).
func cpKeyLog(s *settings) (*cpRekor, *cpCTLog) {
	if s.ignoreLog {
		return &cpRekor{IgnoreTlog: true}, &cpCTLog{IgnoreSCT: true}
	}
	if !keyLogApplies(s) || s.sigstore.rekorURL == "" {
		return nil, nil
	}
	// A key signature has no certificate, so there is no SCT to check; but Kyverno's
	// ClusterPolicy loads CT log keys for key entries too, from public Sigstore's TUF unless
	// the entry names one or skips the check, and that first TUF use also binds Kyverno's
	// process-wide TUF client to the public mirror (README.md, "Keyless signatures with your
	// own Sigstore").
	ct := &cpCTLog{PubKey: s.sigstore.ctlogKey}
	if ct.PubKey == "" {
		ct = &cpCTLog{IgnoreSCT: true}
	}
	return &cpRekor{URL: s.sigstore.rekorURL, PubKey: s.sigstore.rekorKey}, ct
}

// keyTrustSuffix distinguishes the shared attestors of a key verified against a private
// log from the same key verified against public Sigstore's.
func keyTrustSuffix(s *settings) string {
	if !keyLogApplies(s) {
		return ""
	}
	return "_t" + s.sigstore.key()[:12]
}

func (s *sigstoreSettings) tuf() *policiesv1.TUF {
	if s == nil || s.tufMirror == "" {
		return nil
	}
	return &policiesv1.TUF{Mirror: s.tufMirror, Root: policiesv1alpha1.TUFRoot{Data: base64.StdEncoding.EncodeToString([]byte(s.tufRoot))}}
}

// checkClusterPolicySigstore refuses what the ClusterPolicy engine cannot honour: it never
// reads TUF, so the trust material a TUF repository would have given must be named
// directly, or the policy would verify against public Sigstore's roots and log.
func checkClusterPolicySigstore(s *settings) error {
	ss := s.sigstore
	if s.engine != v1alpha1.EngineClusterPolicy || ss == nil || ss.tufMirror == "" {
		return nil
	}
	keyless, keys := false, false
	for _, sg := range s.signers {
		keyless = keyless || sg.keyless != nil
		keys = keys || len(sg.keys) > 0
	}
	var missing []string
	if keyless && ss.roots == "" {
		missing = append(missing, "sigstore.fulcioCertificates (the Fulcio roots)")
	}
	logChecked := !s.ignoreLog && (keys || (keyless && !ss.ignoreTlog))
	if logChecked && ss.rekorKey == "" {
		missing = append(missing, "sigstore.rekor with its publicKey (the transparency log)")
	}
	if len(missing) == 0 {
		return nil
	}
	return invalidf("sigstore.tuf is read only by the ImageValidatingPolicy engine; with the ClusterPolicy engine name %s as well", strings.Join(missing, " and "))
}

// defaultRekorURL is public Sigstore's Rekor, Kyverno's default.
const defaultRekorURL = "https://rekor.sigstore.dev"

// cpKeylessEntry is the ClusterPolicy keyless attestor of an identity (see
// ivpKeylessCosign).
func cpKeylessEntry(id *v1alpha1.KeylessIdentity, ignoreLog bool, ss *sigstoreSettings) *cpKeyless {
	k := &cpKeyless{Issuer: id.Issuer, IssuerRegExp: id.IssuerRegExp, Subject: id.Subject, SubjectRegExp: id.SubjectRegExp}
	// Kyverno's policy validation refuses a keyless attestor with neither a Rekor URL nor
	// roots ("Either Rekor URL or roots are required"), and a rekor block without a URL
	// even when the log is ignored and so never contacted: its documented default is named
	// (test/kyvernocli, TestGoldensPassKyvernoValidation).
	k.Rekor = &cpRekor{URL: defaultRekorURL, IgnoreTlog: ignoreLog}
	if ignoreLog {
		k.CTLog = &cpCTLog{IgnoreSCT: true}
	}
	if ss == nil {
		return k
	}
	k.Roots = ss.roots
	k.Rekor = &cpRekor{URL: cmp.Or(ss.rekorURL, defaultRekorURL), PubKey: ss.rekorKey, IgnoreTlog: ignoreLog || ss.ignoreTlog}
	if ss.ctlogKey != "" || ignoreLog || ss.ignoreSCT {
		k.CTLog = &cpCTLog{PubKey: ss.ctlogKey, IgnoreSCT: ignoreLog || ss.ignoreSCT}
	}
	return k
}

// credentialSecrets lists the credentials copies (in Kyverno's namespace) the given
// settings need, sorted and without duplicates.
func credentialSecrets(ss ...*settings) []string {
	var out []string
	for _, s := range ss {
		if s.credentials != "" {
			out = append(out, s.credentials)
		}
	}
	sort.Strings(out)
	return sortedUnique(out)
}
