package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/cosign/v2/pkg/cosign"
)

// testKeys are generated once per test binary; RSA generation is slow on busy machines.
type testKeySet struct {
	p256, p384, p521, p224 *ecdsa.PrivateKey
	rsa2048, rsa3072       *rsa.PrivateKey
	rsa1024                *rsa.PrivateKey
	ed                     ed25519.PrivateKey
	x25519                 *ecdh.PrivateKey
	cosignPriv, cosignPub  []byte
}

var (
	keysOnce sync.Once
	keySet   testKeySet
)

func testKeys(t testing.TB) *testKeySet {
	t.Helper()
	keysOnce.Do(func() {
		must := func(err error) {
			if err != nil {
				panic(err)
			}
		}
		var err error
		keySet.p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		keySet.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(err)
		keySet.p521, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		must(err)
		keySet.p224, err = ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
		must(err)
		keySet.rsa2048, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		keySet.rsa3072, err = rsa.GenerateKey(rand.Reader, 3072)
		must(err)
		keySet.rsa1024, err = rsa.GenerateKey(rand.Reader, 1024)
		must(err)
		_, keySet.ed, err = ed25519.GenerateKey(rand.Reader)
		must(err)
		keySet.x25519, err = ecdh.X25519().GenerateKey(rand.Reader)
		must(err)
		kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("test-password"), nil })
		must(err)
		keySet.cosignPriv, keySet.cosignPub = kb.PrivateBytes, kb.PublicBytes
	})
	return &keySet
}

func spkiDER(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("MarshalPKIXPublicKey: %v", err)
	}
	return der
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func spkiPEM(t testing.TB, pub crypto.PublicKey) []byte {
	return pemBlock("PUBLIC KEY", spkiDER(t, pub))
}

// independentFingerprint is computed without the package: sha256 over
// x509.MarshalPKIXPublicKey.
func independentFingerprint(t testing.TB, pub crypto.PublicKey) string {
	sum := sha256.Sum256(spkiDER(t, pub))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func selfSignedCertPEM(t testing.TB, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "signet-test"},
		NotBefore:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	return pemBlock("CERTIFICATE", der)
}

// secp256k1SPKI builds a SubjectPublicKeyInfo for a curve crypto/x509 does not know.
func secp256k1SPKI(t testing.TB) []byte {
	t.Helper()
	curveOID, err := asn1.Marshal(asn1.ObjectIdentifier{1, 3, 132, 0, 10})
	if err != nil {
		t.Fatal(err)
	}
	point := append([]byte{4}, bytes.Repeat([]byte{0x11}, 64)...)
	der, err := asn1.Marshal(spki{
		Algorithm: pkix.AlgorithmIdentifier{
			Algorithm:  oidPublicKeyECDSA,
			Parameters: asn1.RawValue{FullBytes: curveOID},
		},
		PublicKey: asn1.BitString{Bytes: point, BitLength: len(point) * 8},
	})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// rawSPKI builds a SubjectPublicKeyInfo with any algorithm, optional OID parameter and key.
func rawSPKI(t testing.TB, alg asn1.ObjectIdentifier, param asn1.ObjectIdentifier, key []byte) []byte {
	t.Helper()
	ai := pkix.AlgorithmIdentifier{Algorithm: alg}
	if param != nil {
		p, err := asn1.Marshal(param)
		if err != nil {
			t.Fatal(err)
		}
		ai.Parameters = asn1.RawValue{FullBytes: p}
	}
	der, err := asn1.Marshal(spki{Algorithm: ai, PublicKey: asn1.BitString{Bytes: key, BitLength: len(key) * 8}})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// dsaSPKI builds a (toy) DSA SubjectPublicKeyInfo; crypto/x509 parses but cannot marshal DSA.
func dsaSPKI(t testing.TB) []byte {
	t.Helper()
	params, err := asn1.Marshal(struct{ P, Q, G *big.Int }{big.NewInt(23), big.NewInt(11), big.NewInt(4)})
	if err != nil {
		t.Fatal(err)
	}
	y, err := asn1.Marshal(big.NewInt(8))
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(spki{
		Algorithm: pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}, Parameters: asn1.RawValue{FullBytes: params}},
		PublicKey: asn1.BitString{Bytes: y, BitLength: len(y) * 8},
	})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestParsePublicKeyValid(t *testing.T) {
	k := testKeys(t)
	cosignPub, err := cryptoPublicFromPEM(k.cosignPub)
	if err != nil {
		t.Fatalf("cosign public key: %v", err)
	}
	pkcs1 := pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.rsa2048.PublicKey))
	crlf := bytes.ReplaceAll(spkiPEM(t, k.p256.Public()), []byte("\n"), []byte("\r\n"))

	tests := []struct {
		name    string
		data    []byte
		pub     crypto.PublicKey
		wantAlg string
	}{
		{"ECDSA P-256", spkiPEM(t, k.p256.Public()), k.p256.Public(), "ECDSA-P256"},
		{"ECDSA P-384", spkiPEM(t, k.p384.Public()), k.p384.Public(), "ECDSA-P384"},
		{"ECDSA P-521", spkiPEM(t, k.p521.Public()), k.p521.Public(), "ECDSA-P521"},
		{"RSA 2048", spkiPEM(t, k.rsa2048.Public()), k.rsa2048.Public(), "RSA-2048"},
		{"RSA 3072", spkiPEM(t, k.rsa3072.Public()), k.rsa3072.Public(), "RSA-3072"},
		{"Ed25519", spkiPEM(t, k.ed.Public()), k.ed.Public(), "Ed25519"},
		{"cosign generate-key-pair public key", k.cosignPub, cosignPub, "ECDSA-P256"},
		{"PKCS#1 RSA PUBLIC KEY is normalised to PKIX", pkcs1, k.rsa2048.Public(), "RSA-2048"},
		{"surrounding whitespace", append(append([]byte("\n\n  "), spkiPEM(t, k.p256.Public())...), "\n\t\n"...), k.p256.Public(), "ECDSA-P256"},
		{"CRLF line endings", crlf, k.p256.Public(), "ECDSA-P256"},
		{"UTF-8 byte order mark", append([]byte("\xef\xbb\xbf"), spkiPEM(t, k.p384.Public())...), k.p384.Public(), "ECDSA-P384"},
		{"no trailing newline", bytes.TrimSpace(spkiPEM(t, k.ed.Public())), k.ed.Public(), "Ed25519"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePublicKey(tc.data)
			if err != nil {
				t.Fatalf("ParsePublicKey: %v", err)
			}
			if got.Algorithm != tc.wantAlg {
				t.Errorf("Algorithm = %q, want %q", got.Algorithm, tc.wantAlg)
			}
			if want := independentFingerprint(t, tc.pub); got.Fingerprint != want {
				t.Errorf("Fingerprint = %s, want %s (sha256 over x509.MarshalPKIXPublicKey)", got.Fingerprint, want)
			}
			if want := string(spkiPEM(t, tc.pub)); got.PEM != want {
				t.Errorf("PEM not normalised:\n%s\nwant:\n%s", got.PEM, want)
			}
			if !strings.HasSuffix(got.PEM, "-----END PUBLIC KEY-----\n") || strings.Count(got.PEM, "-----BEGIN") != 1 {
				t.Errorf("PEM is not a single PUBLIC KEY block with a trailing newline: %q", got.PEM)
			}
			// Parsing the normalised form is a fixed point.
			again, err := ParsePublicKey([]byte(got.PEM))
			if err != nil || *again != *got {
				t.Errorf("re-parsing the normalised PEM = %+v, %v; want %+v", again, err, got)
			}
		})
	}
}

func cryptoPublicFromPEM(data []byte) (crypto.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM")
	}
	return x509.ParsePKIXPublicKey(b.Bytes)
}

func TestParsePublicKeyErrors(t *testing.T) {
	k := testKeys(t)
	p256 := spkiPEM(t, k.p256.Public())
	ed := spkiPEM(t, k.ed.Public())
	pkcs8, err := x509.MarshalPKCS8PrivateKey(k.p256)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(k.p256)
	if err != nil {
		t.Fatal(err)
	}
	cosignPrivBlock, _ := pem.Decode(k.cosignPriv)
	if cosignPrivBlock == nil || cosignPrivBlock.Type != "ENCRYPTED SIGSTORE PRIVATE KEY" {
		t.Fatalf("cosign.GenerateKeyPair private key is not an ENCRYPTED SIGSTORE PRIVATE KEY block")
	}
	legacyCosign := pemBlock("ENCRYPTED COSIGN PRIVATE KEY", cosignPrivBlock.Bytes)
	truncatedDER := spkiDER(t, k.p256.Public())
	truncatedDER = truncatedDER[:len(truncatedDER)-5]
	withTrailingDER := append(spkiDER(t, k.p256.Public()), 0, 0)
	withHeaders := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"Comment": "x"}, Bytes: spkiDER(t, k.p256.Public())})
	openssh := []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGv0QHkJ9m5t7p1ZJq0a1Fh0Jx7V9rY5l8K2cM3nB4dE user@host\n")
	noEnd := bytes.Replace(p256, []byte("-----END PUBLIC KEY-----"), nil, 1)
	badBase64 := bytes.Replace(p256, []byte("\n"), []byte("\n!!!!\n"), 2)
	mismatchedEnd := bytes.Replace(p256, []byte("-----END PUBLIC KEY-----"), []byte("-----END PRIVATE KEY-----"), 1)

	tests := []struct {
		name       string
		data       []byte
		wantReason string
		wantMsg    []string // substrings
	}{
		{"nil", nil, ReasonInvalidPublicKey, []string{"empty"}},
		{"empty", []byte{}, ReasonInvalidPublicKey, []string{"empty"}},
		{"whitespace", []byte(" \n\t\r\n"), ReasonInvalidPublicKey, []string{"only whitespace"}},
		{"garbage", []byte("hello, world"), ReasonInvalidPublicKey, []string{"not PEM"}},
		{"binary DER", spkiDER(t, k.p256.Public()), ReasonInvalidPublicKey, []string{"binary DER"}},
		{"double base64", []byte(base64.StdEncoding.EncodeToString(p256)), ReasonInvalidPublicKey, []string{"base64-encoded twice"}},
		{"OpenSSH public key", openssh, ReasonInvalidPublicKey, []string{"OpenSSH public key"}},
		{"text before the block", append([]byte("my key:\n"), p256...), ReasonInvalidPublicKey, []string{"before the first PEM block"}},
		{"trailing garbage", append(append([]byte{}, p256...), "garbage"...), ReasonInvalidPublicKey, []string{"unexpected text after PEM block 1"}},
		{"trailing garbage on the END line", append(append([]byte{}, bytes.TrimSpace(p256)...), " trailing junk\n"...), ReasonInvalidPublicKey, []string{"malformed"}},
		{"missing END line", noEnd, ReasonInvalidPublicKey, []string{"PEM block 1 is malformed"}},
		{"mismatched END line", mismatchedEnd, ReasonInvalidPublicKey, []string{"malformed"}},
		{"invalid base64", badBase64, ReasonInvalidPublicKey, []string{"malformed"}},
		{"public block with headers", withHeaders, ReasonInvalidPublicKey, []string{"has headers"}},
		{"two public keys", append(append([]byte{}, p256...), ed...), ReasonInvalidPublicKey, []string{"2 public key PEM blocks", "exactly one"}},
		{"same public key twice", append(append([]byte{}, p256...), p256...), ReasonInvalidPublicKey, []string{"2 public key PEM blocks"}},
		{"truncated DER", pemBlock("PUBLIC KEY", truncatedDER), ReasonInvalidPublicKey, []string{"does not hold a valid public key"}},
		{"trailing DER", pemBlock("PUBLIC KEY", withTrailingDER), ReasonInvalidPublicKey, []string{"does not hold a valid public key"}},
		{"PKCS#1 body in a PUBLIC KEY block", pemBlock("PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.rsa2048.PublicKey)), ReasonInvalidPublicKey, []string{"does not hold a valid public key"}},
		{"certificate", selfSignedCertPEM(t, k.p256), ReasonInvalidPublicKey, []string{`"CERTIFICATE"`, "is a certificate, not a public key", "openssl x509 -pubkey", "keyless"}},
		{"certificate after the key", append(append([]byte{}, p256...), selfSignedCertPEM(t, k.p256)...), ReasonInvalidPublicKey, []string{"is a certificate", "only the public key"}},
		{"unknown block type", pemBlock("FOO BAR", []byte{1, 2, 3}), ReasonInvalidPublicKey, []string{`"FOO BAR"`, "is not a public key"}},
		{"unprintable block type", pemBlock("foo\x01", []byte{1, 2, 3}), ReasonInvalidPublicKey, []string{"unrecognised type"}},
		{"RSA 1024", spkiPEM(t, k.rsa1024.Public()), ReasonWeakKey, []string{"RSA key of 1024 bits is too weak", "at least 2048"}},
		{"ECDSA P-224", spkiPEM(t, k.p224.Public()), ReasonWeakKey, []string{"P-224", "not supported"}},
		{"ECDSA secp256k1", pemBlock("PUBLIC KEY", secp256k1SPKI(t)), ReasonWeakKey, []string{"secp256k1", "not supported"}},
		{"X25519", spkiPEM(t, k.x25519.PublicKey()), ReasonInvalidPublicKey, []string{"X25519"}},
		{"cosign private key only", k.cosignPriv, ReasonPrivateKeyOnly, []string{`"ENCRYPTED SIGSTORE PRIVATE KEY"`, "never reads private keys", "cosign.pub"}},
		{"legacy cosign private key only", legacyCosign, ReasonPrivateKeyOnly, []string{`"ENCRYPTED COSIGN PRIVATE KEY"`}},
		{"PKCS#8 private key", pemBlock("PRIVATE KEY", pkcs8), ReasonPrivateKeyOnly, []string{`"PRIVATE KEY"`}},
		{"EC private key", pemBlock("EC PRIVATE KEY", sec1), ReasonPrivateKeyOnly, []string{`"EC PRIVATE KEY"`}},
		{"RSA private key", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.rsa2048)), ReasonPrivateKeyOnly, []string{`"RSA PRIVATE KEY"`}},
		{"DSA", pemBlock("PUBLIC KEY", dsaSPKI(t)), ReasonInvalidPublicKey, []string{"DSA public keys are not supported"}},
		{"Ed448", pemBlock("PUBLIC KEY", rawSPKI(t, asn1.ObjectIdentifier{1, 3, 101, 113}, nil, make([]byte, 57))), ReasonInvalidPublicKey, []string{"Ed448"}},
		{"unknown curve OID", pemBlock("PUBLIC KEY", rawSPKI(t, oidPublicKeyECDSA, asn1.ObjectIdentifier{1, 2, 3, 4}, make([]byte, 65))), ReasonWeakKey, []string{"ECDSA curve with OID 1.2.3.4 is not supported"}},
		{"RSA exponent 1", spkiPEM(t, &rsa.PublicKey{N: k.rsa2048.N, E: 1}), ReasonWeakKey, []string{"unsafe public exponent"}},
		{"RSA even exponent", spkiPEM(t, &rsa.PublicKey{N: k.rsa2048.N, E: 65536}), ReasonWeakKey, []string{"unsafe public exponent"}},
		{"RSA over 8192 bits", spkiPEM(t, &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), 8200), E: 65537}), ReasonInvalidPublicKey, []string{"8201 bits is not supported", "maximum is 8192"}},
		{"private and public key together", append(append([]byte{}, k.cosignPriv...), k.cosignPub...), ReasonInvalidPublicKey, []string{"private key", "next to the public key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePublicKey(tc.data)
			if err == nil {
				t.Fatalf("ParsePublicKey = %+v, want error", got)
			}
			var ke *Error
			if !errors.As(err, &ke) {
				t.Fatalf("error %T is not *keys.Error: %v", err, err)
			}
			if ke.Reason != tc.wantReason || ReasonOf(err) != tc.wantReason {
				t.Errorf("Reason = %q, want %q (message %q)", ke.Reason, tc.wantReason, ke.Msg)
			}
			for _, s := range tc.wantMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q does not contain %q", err.Error(), s)
				}
			}
			assertNoKeyMaterial(t, err.Error(), tc.data)
		})
	}
}

var base64Line = regexp.MustCompile(`^[A-Za-z0-9+/=]{16,}$`)

// assertNoKeyMaterial fails when msg contains any base64 line of the data (a PEM body line), any 16-character window
// of the base64 of a PEM block's bytes, or the hex of a block's first 8 bytes.
func assertNoKeyMaterial(t testing.TB, msg string, data ...[]byte) {
	t.Helper()
	for _, d := range data {
		for _, line := range strings.Split(string(d), "\n") {
			line = strings.TrimSpace(line)
			if base64Line.MatchString(line) && strings.Contains(msg, line) {
				t.Fatalf("message contains data line %q: %s", line, msg)
			}
		}
		rest := d
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if len(b.Bytes) < 16 {
				continue
			}
			enc := base64.StdEncoding.EncodeToString(b.Bytes)
			for i := 0; i+16 <= len(enc); i += 8 {
				if strings.Contains(msg, enc[i:i+16]) {
					t.Fatalf("message contains base64 key material %q: %s", enc[i:i+16], msg)
				}
			}
			if h := hex.EncodeToString(b.Bytes[:8]); strings.Contains(strings.ToLower(msg), h) {
				t.Fatalf("message contains hex key material: %s", msg)
			}
		}
	}
}

func TestFingerprintMatchesIndependentComputation(t *testing.T) {
	k := testKeys(t)
	for _, pub := range []crypto.PublicKey{k.p256.Public(), k.p384.Public(), k.p521.Public(), k.rsa2048.Public(), k.ed.Public()} {
		got, err := ParsePublicKey(spkiPEM(t, pub))
		if err != nil {
			t.Fatal(err)
		}
		if want := independentFingerprint(t, pub); got.Fingerprint != want {
			t.Errorf("%T: Fingerprint = %s, want %s", pub, got.Fingerprint, want)
		}
		if got.Fingerprint != Fingerprint(spkiDER(t, pub)) {
			t.Errorf("%T: Fingerprint() disagrees with ParsePublicKey", pub)
		}
	}
	// Fixed vector: the fingerprint is over the DER, not the PEM text.
	if got, want := Fingerprint([]byte("abc")), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("Fingerprint(abc) = %s, want %s", got, want)
	}
}

func TestPublicKeyFromSecretData(t *testing.T) {
	k := testKeys(t)
	pub := spkiPEM(t, k.p256.Public())
	want, err := ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	password := []byte("super-secret-password-value")
	// What `cosign generate-key-pair k8s://ns/name` writes.
	cosignSecret := map[string][]byte{"cosign.key": k.cosignPriv, "cosign.password": password, "cosign.pub": pub}
	noPub := map[string][]byte{"cosign.key": k.cosignPriv, "cosign.password": password}

	tests := []struct {
		name       string
		data       map[string][]byte
		dataKey    string
		wantReason string // "" = success
		wantMsg    []string
		notMsg     []string
	}{
		{name: "default data key", data: cosignSecret, dataKey: ""},
		{name: "explicit cosign.pub", data: cosignSecret, dataKey: "cosign.pub"},
		{name: "custom data key", data: map[string][]byte{"release.pem": pub}, dataKey: "release.pem"},
		{
			name: "cosign Secret without cosign.pub", data: noPub, dataKey: "",
			wantReason: ReasonSecretKeyNotFound,
			wantMsg:    []string{`data key "cosign.pub" not found`, `"cosign.key", "cosign.password"`, "never reads cosign's private key", "cosign generate-key-pair k8s://"},
		},
		{
			name: "custom data key missing, cosign.pub present", data: cosignSecret, dataKey: "release.pem",
			wantReason: ReasonSecretKeyNotFound,
			wantMsg:    []string{`data key "release.pem" not found`, `"cosign.key", "cosign.password", "cosign.pub"`, `did you mean secretRef.key "cosign.pub"`, "never reads cosign's private key"},
		},
		{
			name: "unrelated keys", data: map[string][]byte{"b": []byte("x"), "a": []byte("y")}, dataKey: "",
			wantReason: ReasonSecretKeyNotFound,
			wantMsg:    []string{`data keys "a", "b"`},
			notMsg:     []string{"private key", "did you mean"},
		},
		{
			name: "empty Secret", data: nil, dataKey: "",
			wantReason: ReasonSecretKeyNotFound,
			wantMsg:    []string{"the Secret has no data"},
		},
		{
			name: "secretRef.key points at cosign.key", data: cosignSecret, dataKey: "cosign.key",
			wantReason: ReasonPrivateKeyOnly,
			wantMsg:    []string{`"cosign.key" names cosign's private key`, `"cosign.pub"`},
		},
		{
			name: "secretRef.key points at cosign.password", data: cosignSecret, dataKey: "cosign.password",
			wantReason: ReasonInvalidPublicKey,
			wantMsg:    []string{"password"},
		},
		{
			name: "private key stored under cosign.pub", data: map[string][]byte{"cosign.pub": k.cosignPriv}, dataKey: "",
			wantReason: ReasonPrivateKeyOnly,
			wantMsg:    []string{`data key "cosign.pub": the data holds a private key`},
		},
		{
			name: "empty value", data: map[string][]byte{"cosign.pub": {}}, dataKey: "",
			wantReason: ReasonInvalidPublicKey,
			wantMsg:    []string{`data key "cosign.pub": the data is empty`},
		},
		{
			name: "weak key", data: map[string][]byte{"cosign.pub": spkiPEM(t, k.rsa1024.Public())}, dataKey: "",
			wantReason: ReasonWeakKey,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PublicKeyFromSecretData(tc.data, tc.dataKey)
			if tc.wantReason == "" {
				if err != nil {
					t.Fatalf("PublicKeyFromSecretData: %v", err)
				}
				if *got != *want {
					t.Errorf("got %+v, want %+v", got, want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %+v, want error %s", got, tc.wantReason)
			}
			if r := ReasonOf(err); r != tc.wantReason {
				t.Errorf("Reason = %q, want %q (message %q)", r, tc.wantReason, err)
			}
			for _, s := range tc.wantMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q does not contain %q", err, s)
				}
			}
			for _, s := range tc.notMsg {
				if strings.Contains(err.Error(), s) {
					t.Errorf("message %q contains %q", err, s)
				}
			}
			for _, v := range tc.data {
				assertNoKeyMaterial(t, err.Error(), v)
			}
			if strings.Contains(err.Error(), string(password)) {
				t.Errorf("message contains the cosign password: %s", err)
			}
		})
	}
}

func TestPublicKeyFromSecretDataListsManyKeysBriefly(t *testing.T) {
	data := map[string][]byte{}
	for i := 0; i < 30; i++ {
		data[string(rune('a'+i%26))+strings.Repeat("x", i/26)] = []byte("v")
	}
	_, err := PublicKeyFromSecretData(data, "cosign.pub")
	if err == nil || !strings.Contains(err.Error(), "and 10 more") {
		t.Fatalf("error = %v, want a list truncated with \"and 10 more\"", err)
	}
}

func TestParsePublicKeyDeterministicMessages(t *testing.T) {
	k := testKeys(t)
	inputs := [][]byte{nil, []byte("x"), k.cosignPriv, spkiPEM(t, k.rsa1024.Public()), selfSignedCertPEM(t, k.p256)}
	for _, in := range inputs {
		_, e1 := ParsePublicKey(in)
		_, e2 := ParsePublicKey(in)
		if e1 == nil || e2 == nil || e1.Error() != e2.Error() {
			t.Errorf("messages differ or missing: %v / %v", e1, e2)
		}
	}
}
