package render

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// testCAPEM returns a deterministic self-signed CA certificate (Ed25519 signatures are
// deterministic), so that goldens holding it never change.
func testCAPEM(tb testing.TB, cn string) string {
	tb.Helper()
	seed := sha256.Sum256([]byte("signet-ca-" + cn))
	priv := ed25519.NewKeyFromSeed(seed[:])
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"signet test"}},
		NotBefore:             time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(strings.NewReader(strings.Repeat("x", 1024)), tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// testTUFRoot has the shape of TUF root metadata (render checks the shape only; Kyverno
// verifies the signatures).
const testTUFRoot = `{"signed":{"_type":"root","spec_version":"1.0.31","version":1,"expires":"2036-01-01T00:00:00Z","consistent_snapshot":false,` +
	`"keys":{"k1":{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"00"}}},` +
	`"roles":{"root":{"keyids":["k1"],"threshold":1},"snapshot":{"keyids":["k1"],"threshold":1},"targets":{"keyids":["k1"],"threshold":1},"timestamp":{"keyids":["k1"],"threshold":1}}},` +
	`"signatures":[{"keyid":"k1","sig":"00"}]}`

// sigstoreScenarios are the golden cases of spec.sigstore and spec.credentials.
func sigstoreScenarios() []scenario {
	return []scenario{
		{"private-sigstore", func(t testing.TB) Input {
			rekorKey, _ := testKeyPEM(t, 40)
			ctKey, _ := testKeyPEM(t, 41)
			return Input{
				Registry: registry("private-sigstore", func(s *v1alpha1.TrustedRegistrySpec) {
					s.Keyless = []v1alpha1.KeylessIdentity{{
						Name:          "github-main",
						Issuer:        "https://token.actions.githubusercontent.com",
						SubjectRegExp: `^https://github.com/yourorg/.+@refs/heads/main$`,
					}}
					s.Sigstore = &v1alpha1.SigstoreTrust{
						FulcioCertificates: &v1alpha1.TrustMaterialReference{ConfigMapName: "sigstore-roots", Key: "fulcio.pem"},
						Rekor: &v1alpha1.RekorTrust{URL: "https://rekor.internal.example",
							PublicKey: &v1alpha1.TrustMaterialReference{ConfigMapName: "sigstore-roots", Key: "rekor.pub"}},
						CTLog: &v1alpha1.CTLogTrust{PublicKey: v1alpha1.TrustMaterialReference{SecretName: "ctlog", Key: "ctfe.pub"}},
					}
					s.Credentials = &v1alpha1.RegistryCredentials{SecretName: "ghcr-pull"}
				}),
				Keys:       []Key{testKey(t, "ci-2026", 1, v1alpha1.KeyActive)},
				TrustRoots: &TrustRoots{Fulcio: testCAPEM(t, "fulcio-root") + testCAPEM(t, "fulcio-intermediate"), Rekor: rekorKey, CTLog: ctKey},
			}
		}},
		{"offline-keyless", func(t testing.TB) Input {
			return Input{
				Registry: registry("offline-keyless", func(s *v1alpha1.TrustedRegistrySpec) {
					s.Keys = nil
					s.Keyless = []v1alpha1.KeylessIdentity{{Name: "ci", Issuer: "https://issuer.internal", Subject: "builder@internal"}}
					s.Sigstore = &v1alpha1.SigstoreTrust{
						FulcioCertificates: &v1alpha1.TrustMaterialReference{SecretName: "fulcio", Key: "root.pem"},
						IgnoreTlog:         ptr.To(true),
						IgnoreSCT:          ptr.To(true),
						AcceptRisks:        []v1alpha1.SigstoreRisk{v1alpha1.RiskNoTransparencyLog, v1alpha1.RiskNoCertificateTimestamp},
					}
				}),
				TrustRoots: &TrustRoots{Fulcio: testCAPEM(t, "offline-root")},
			}
		}},
		{"private-tuf", func(t testing.TB) Input {
			rekorKey, _ := testKeyPEM(t, 42)
			return Input{
				Registry: registry("private-tuf", func(s *v1alpha1.TrustedRegistrySpec) {
					s.Keys = nil
					s.Keyless = []v1alpha1.KeylessIdentity{{
						Name:          "github-main",
						Issuer:        "https://token.actions.githubusercontent.com",
						SubjectRegExp: `^https://github.com/yourorg/.+@refs/heads/main$`,
					}}
					s.Sigstore = &v1alpha1.SigstoreTrust{
						TUF: &v1alpha1.TUFTrust{Mirror: "https://tuf.sigstore.internal.example",
							Root: v1alpha1.TrustMaterialReference{ConfigMapName: "sigstore-tuf", Key: "root.json"}},
						// the ClusterPolicy engine does not read TUF: it needs the roots and the log too
						FulcioCertificates: &v1alpha1.TrustMaterialReference{ConfigMapName: "sigstore-tuf", Key: "fulcio.pem"},
						Rekor: &v1alpha1.RekorTrust{URL: "https://rekor.sigstore.internal.example",
							PublicKey: &v1alpha1.TrustMaterialReference{ConfigMapName: "sigstore-tuf", Key: "rekor.pub"}},
					}
				}),
				TrustRoots: &TrustRoots{Fulcio: testCAPEM(t, "tuf-fulcio"), Rekor: rekorKey, TUFRoot: testTUFRoot},
			}
		}},
		{"credentials", func(t testing.TB) Input {
			return Input{
				Registry: registry("private", func(s *v1alpha1.TrustedRegistrySpec) {
					s.Credentials = &v1alpha1.RegistryCredentials{SecretName: "regcred"}
				}),
				Keys: []Key{testKey(t, "ci-2026", 1, v1alpha1.KeyActive)},
			}
		}},
	}
}

func TestNormalizeTrustMaterial(t *testing.T) {
	ca := testCAPEM(t, "root")
	pub, _ := testKeyPEM(t, 7)
	for _, tc := range []struct {
		name, kind, data, err string
	}{
		{"root", TrustFulcio, ca, ""},
		{"root with comments", TrustFulcio, "# roots\n" + ca + "\n\n", ""},
		{"two roots", TrustFulcio, ca + testCAPEM(t, "other"), ""},
		{"empty", TrustFulcio, "", "no PEM data"},
		{"key as root", TrustFulcio, pub, `is a "PUBLIC KEY", want CERTIFICATE`},
		{"garbage after", TrustFulcio, ca + "junk", "data after the last PEM block"},
		{"rekor key", TrustRekor, pub, ""},
		{"rekor cert", TrustRekor, ca, `is a "CERTIFICATE", want PUBLIC KEY`},
		{"two keys", TrustCTLog, pub + pub, "want exactly one public key"},
		{"broken key", TrustCTLog, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "ctLog.publicKey"},
		{"tuf root", TrustTUF, "\n" + testTUFRoot + "\n", ""},
		{"tuf targets", TrustTUF, strings.Replace(testTUFRoot, `"_type":"root"`, `"_type":"targets"`, 1), `want "root"`},
		{"tuf unsigned", TrustTUF, strings.Replace(testTUFRoot, `[{"keyid":"k1","sig":"00"}]`, `[]`, 1), "without version, keys, roles or signatures"},
		{"tuf not json", TrustTUF, ca, "not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizeTrustMaterial(tc.kind, []byte(tc.data))
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.kind == TrustTUF {
					if got != testTUFRoot {
						t.Errorf("TUF root changed: %q", got)
					}
					return
				}
				if strings.Contains(got, "#") || !strings.HasPrefix(got, "-----BEGIN ") {
					t.Errorf("not normalised: %q", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// A TrustedRegistry that names trust material Render was not given is refused (the
// controller must never render public-Sigstore verification for it), as is an opt-out
// without its acknowledgement.
func TestSigstoreFailsClosed(t *testing.T) {
	base := sigstoreScenarios()[1].in(t)
	for _, tc := range []struct {
		name string
		mut  func(in *Input)
		want string
	}{
		{"material missing", func(in *Input) { in.TrustRoots = nil }, "fulcioCertificates is named but its material was not read"},
		{"material broken", func(in *Input) { in.TrustRoots = &TrustRoots{Fulcio: "x"} }, "no PEM data"},
		{"tlog not acknowledged", func(in *Input) {
			in.Registry.Spec.Sigstore.AcceptRisks = []v1alpha1.SigstoreRisk{v1alpha1.RiskNoCertificateTimestamp}
		}, "ignoreTlog needs NoTransparencyLog"},
		{"sct not acknowledged", func(in *Input) {
			in.Registry.Spec.Sigstore.AcceptRisks = []v1alpha1.SigstoreRisk{v1alpha1.RiskNoTransparencyLog}
		}, "ignoreSCT needs NoCertificateTimestamp"},
	} {
		for _, e := range engines {
			t.Run(tc.name+"/"+e.name, func(t *testing.T) {
				in := base
				in.Registry = base.Registry.DeepCopy()
				in.Engine = e.engine
				tc.mut(&in)
				_, err := Render(in)
				if err == nil || !IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want InvalidError with %q", err, tc.want)
				}
				if _, err := RenderShared([]Input{in}); err == nil {
					t.Fatal("RenderShared accepted it")
				}
			})
		}
	}
}

// With spec.sigstore.tuf, the ImageValidatingPolicy's keyless attestors name the mirror and
// carry the root (Kyverno reads the trust root from there); the ClusterPolicy engine, which
// never reads TUF, refuses a TUF-only spec instead of verifying against public Fulcio.
func TestSigstoreTUF(t *testing.T) {
	in := sigstoreScenarios()[2].in(t) // private-tuf
	in.Registry.Spec.Sigstore.FulcioCertificates, in.Registry.Spec.Sigstore.Rekor = nil, nil
	in.TrustRoots.Fulcio, in.TrustRoots.Rekor = "", ""

	in.Engine = v1alpha1.EngineImageValidatingPolicy
	res, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	y := string(mustYAML(t, res.Object))
	for _, want := range []string{"mirror: https://tuf.sigstore.internal.example", "data: " + base64.StdEncoding.EncodeToString([]byte(testTUFRoot))} {
		if !strings.Contains(y, want) {
			t.Errorf("ImageValidatingPolicy lacks %q:\n%s", want, y)
		}
	}
	if strings.Contains(y, "roots:") {
		t.Errorf("TUF-only spec renders keyless roots:\n%s", y)
	}

	in.Engine = v1alpha1.EngineClusterPolicy
	if _, err := Render(in); err == nil || !IsInvalid(err) || !strings.Contains(err.Error(), "sigstore.tuf is read only by the ImageValidatingPolicy engine") {
		t.Fatalf("ClusterPolicy with TUF only: error %v, want InvalidError naming the engine", err)
	}
	in.TrustRoots.TUFRoot = ""
	in.Engine = v1alpha1.EngineImageValidatingPolicy
	if _, err := Render(in); err == nil || !IsInvalid(err) || !strings.Contains(err.Error(), "tuf.root is named but its material was not read") {
		t.Fatalf("TUF root not read: error %v, want InvalidError", err)
	}
}

// In the shared policies, the same identity under other trust roots is another attestor
// (never one that verifies against the wrong roots), and the policy reads the pull
// Secrets of all its registries.
func TestSharedSigstoreAndCredentials(t *testing.T) {
	off := sigstoreScenarios()[1].in(t)
	other := sigstoreScenarios()[1].in(t)
	other.Registry = registry("other-roots", func(s *v1alpha1.TrustedRegistrySpec) {
		*s = *off.Registry.Spec.DeepCopy()
		s.Credentials = &v1alpha1.RegistryCredentials{SecretName: "pull"}
	})
	other.TrustRoots = &TrustRoots{Fulcio: testCAPEM(t, "another-root")}
	public := Input{Registry: registry("public", func(s *v1alpha1.TrustedRegistrySpec) {
		*s = *off.Registry.Spec.DeepCopy()
		s.Sigstore = nil
	})}
	creds := sigstoreScenarios()[3].in(t) // credentials
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			var ins []Input
			for _, in := range []Input{off, other, public, creds} {
				in.Engine = e.engine
				ins = append(ins, in)
			}
			sp, err := RenderShared(ins)
			if err != nil {
				t.Fatal(err)
			}
			if len(sp.Policies) != 1 {
				t.Fatalf("%d policies", len(sp.Policies))
			}
			y := string(mustYAML(t, sp.Policies[0].Object))
			for _, root := range []string{off.TrustRoots.Fulcio, other.TrustRoots.Fulcio} {
				lines := strings.Split(strings.TrimSpace(root), "\n")
				if n := strings.Count(y, lines[len(lines)-2]); n != 1 { // the signature: unique
					t.Errorf("a Fulcio root appears %d times, want once", n)
				}
			}
			switch e.engine {
			case v1alpha1.EngineImageValidatingPolicy:
				if n := strings.Count(y, "issuer: https://issuer.internal"); n != 3 {
					t.Errorf("%d keyless attestors for the identity, want 3 (two private roots, public)\n%s", n, y)
				}
				if !strings.Contains(y, "credentials:\n    secrets:\n    - signet-registry-credentials\n") {
					t.Errorf("credentials are not the union of the branches':\n%s", y)
				}
			case v1alpha1.EngineClusterPolicy:
				if n := strings.Count(y, "imageRegistryCredentials:"); n != 2 {
					t.Errorf("%d imageRegistryCredentials, want one per registry with credentials\n%s", n, y)
				}
			}
		})
	}
}

func mustYAML(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Key signers follow spec.sigstore's log when the transparency log is checked: their
// attestors name the private TUF repository and Rekor (never public Sigstore's), and the
// ClusterPolicy engine refuses a TUF repository without the log key it cannot read from it.
func TestSigstoreKeySigners(t *testing.T) {
	rekorKey, _ := testKeyPEM(t, 43)
	base := func() Input {
		return Input{
			Registry: registry("logged-keys", func(s *v1alpha1.TrustedRegistrySpec) {
				s.TransparencyLog.Ignore = ptr.To(false)
				s.Sigstore = &v1alpha1.SigstoreTrust{
					TUF: &v1alpha1.TUFTrust{Mirror: "https://tuf.internal.example", Root: v1alpha1.TrustMaterialReference{ConfigMapName: "s", Key: "root.json"}},
					Rekor: &v1alpha1.RekorTrust{URL: "https://rekor.internal.example",
						PublicKey: &v1alpha1.TrustMaterialReference{ConfigMapName: "s", Key: "rekor.pub"}},
				}
			}),
			Keys:       []Key{testKey(t, "ci-2026", 1, v1alpha1.KeyActive)},
			TrustRoots: &TrustRoots{Rekor: rekorKey, TUFRoot: testTUFRoot},
		}
	}
	for _, tc := range []struct {
		name   string
		engine v1alpha1.Engine
		mut    func(*Input)
		want   []string
		absent []string
		err    string
	}{
		{name: "ivp", engine: v1alpha1.EngineImageValidatingPolicy,
			want: []string{"mirror: https://tuf.internal.example", "url: https://rekor.internal.example", "rekorPubKey:"}},
		{name: "cpol", engine: v1alpha1.EngineClusterPolicy,
			want: []string{"url: https://rekor.internal.example", "ignoreSCT: true"}, absent: []string{"tuf", "ignoreTlog: true"}},
		{name: "ivp, log ignored", engine: v1alpha1.EngineImageValidatingPolicy,
			mut:  func(in *Input) { in.Registry.Spec.TransparencyLog.Ignore = ptr.To(true) },
			want: []string{"insecureIgnoreTlog: true"}, absent: []string{"mirror:", "rekor.internal.example"}},
		{name: "cpol, TUF without the log key", engine: v1alpha1.EngineClusterPolicy,
			mut: func(in *Input) { in.Registry.Spec.Sigstore.Rekor = nil },
			err: "with the ClusterPolicy engine name sigstore.rekor with its publicKey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			in.Engine = tc.engine
			if tc.mut != nil {
				tc.mut(&in)
			}
			p, err := Render(in)
			if tc.err != "" {
				if err == nil || !IsInvalid(err) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want InvalidError with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			y := string(mustYAML(t, p.Object))
			for _, w := range tc.want {
				if !strings.Contains(y, w) {
					t.Errorf("lacks %q:\n%s", w, y)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(y, a) {
					t.Errorf("has %q:\n%s", a, y)
				}
			}
		})
	}
}
