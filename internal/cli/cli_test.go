package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/ocitest"
	"github.com/signet-operator/signet/internal/render"
)

type run struct {
	code     int
	out, err string
}

func runCLI(t *testing.T, stdin string, args ...string) run {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, Streams{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return run{code, out.String(), errb.String()}
}

func (r run) want(t *testing.T, code int, substrings ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.out, r.err)
	}
	for _, s := range substrings {
		if !strings.Contains(r.out+r.err, s) {
			t.Errorf("output does not contain %q\nstdout:\n%s\nstderr:\n%s", s, r.out, r.err)
		}
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeKey(t *testing.T, dir, name string) (string, *ocitest.KeyPair) {
	t.Helper()
	kp := ocitest.MustGenerateKeyPair(t)
	return writeFile(t, dir, name+".pub", string(kp.PublicKeyPEM)), kp
}

const seedSample = "../../config/samples/trust_v1alpha1_trustedregistry.yaml"

// TestDispatchIsExplicit: nothing but a named command runs, and only the manager command
// reaches the operator; a typo, a bare operator flag or a stray argument is a usage error.
func TestDispatchIsExplicit(t *testing.T) {
	var managerArgs [][]string
	old := Manager
	Manager = func(_ context.Context, args []string, _ Streams) int {
		managerArgs = append(managerArgs, args)
		return ExitOK
	}
	defer func() { Manager = old }()
	for _, tc := range []struct {
		args []string
		code int
		want string // on stderr
	}{
		{nil, ExitUsage, "Usage:"},
		{[]string{"lnit", "deploy/"}, ExitUsage, `unknown command "lnit"`},
		{[]string{"--leader-elect"}, ExitUsage, "signet manager --leader-elect"},
		{[]string{"-trust-namespace=x"}, ExitUsage, "is not a command"},
		{[]string{"Manager"}, ExitUsage, "unknown command"},
		{[]string{"version", "extra"}, ExitUsage, "takes no arguments"},
		{[]string{"help", "lint", "extra"}, ExitUsage, "takes one command"},
		{[]string{"help", "nope"}, ExitUsage, "unknown command"},
	} {
		r := runCLI(t, "", tc.args...)
		if r.code != tc.code || !strings.Contains(r.err, tc.want) {
			t.Errorf("signet %q: exit %d, stderr %q; want exit %d and %q", tc.args, r.code, r.err, tc.code, tc.want)
		}
	}
	if len(managerArgs) != 0 {
		t.Fatalf("the operator ran for %q", managerArgs)
	}
	runCLI(t, "", "manager", "--leader-elect").want(t, ExitOK)
	runCLI(t, "", "run", "-workers=2").want(t, ExitOK)
	if fmt.Sprint(managerArgs) != "[[--leader-elect] [-workers=2]]" {
		t.Fatalf("manager got %q", managerArgs)
	}
	runCLI(t, "", "-h").want(t, ExitOK, "signet manager")
	Manager = nil
	runCLI(t, "", "manager").want(t, ExitUsage, "without the operator")
}

func TestHelpAndVersion(t *testing.T) {
	runCLI(t, "", "help").want(t, ExitOK, "signet render", "signet verify", "signet lint", "Exit codes")
	runCLI(t, "", "help", "render").want(t, ExitOK, "--key", "metadata.uid")
	runCLI(t, "", "render", "-h").want(t, ExitOK, "Usage: signet render")
	runCLI(t, "", "verify", "--help").want(t, ExitOK, "--insecure-registry")
	runCLI(t, "", "help", "nope").want(t, ExitUsage, "unknown command")
	runCLI(t, "", "version").want(t, ExitOK, "signet ")
	old := Version
	Version = "v9.9.9"
	defer func() { Version = old }()
	oldCommit := Commit
	Commit = "0123456789abcdef0123"
	defer func() { Commit = oldCommit }()
	if r := runCLI(t, "", "version"); !strings.HasPrefix(r.out, "signet v9.9.9 (commit 0123456789ab) go1.") {
		t.Fatalf("version output %q", r.out)
	}
	runCLI(t, "", "render", "--bogus").want(t, ExitUsage, "flag provided but not defined")
	runCLI(t, "", "render").want(t, ExitUsage, "-f FILE is required")
}

// decodeTR reads a manifest as the operator would see it after the apiserver defaulted it.
func decodeTR(t *testing.T, path string) *v1alpha1.TrustedRegistry {
	return decodeTRNamed(t, path, "")
}

// decodeTRNamed is decodeTR for the document named name ("" : the first).
func decodeTRNamed(t *testing.T, path, name string) *v1alpha1.TrustedRegistry {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	docs, _ := splitDocuments(data)
	var obj map[string]any
	for _, d := range docs {
		o, err := decode(d)
		if err != nil {
			t.Fatal(err)
		}
		if md, _ := o["metadata"].(map[string]any); name == "" || (md != nil && md["name"] == name) {
			obj = o
			break
		}
	}
	if obj == nil {
		t.Fatalf("no document named %q in %s", name, path)
	}
	v, err := trValidator()
	if err != nil {
		t.Fatal(err)
	}
	res := v.Create(context.Background(), obj)
	if !res.OK() {
		t.Fatal(res.Messages())
	}
	tr := &v1alpha1.TrustedRegistry{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(res.Object, tr); err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestRenderSeedEqualsRendererOutput(t *testing.T) {
	dir := t.TempDir()
	keyPath, kp := writeKey(t, dir, "ci")
	pk, err := keys.ParsePublicKey(kp.PublicKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	// with metadata.uid: byte-identical to the renderer's output for the defaulted object
	data, err := os.ReadFile(seedSample)
	if err != nil {
		t.Fatal(err)
	}
	withUID := writeFile(t, dir, "tr.yaml", strings.Replace(string(data), "  name: yourorg\n", "  name: yourorg\n  uid: 6a1f0c4e-8f0e-4a57-9d0c-2f1b1f0e9a11\n", 1))
	for _, engine := range []v1alpha1.Engine{v1alpha1.EngineImageValidatingPolicy, v1alpha1.EngineClusterPolicy} {
		r := runCLI(t, "", "render", "--layout", "per-registry", "-f", withUID, "--key", "ci-2026="+keyPath, "--engine", string(engine))
		r.want(t, ExitOK)
		tr := decodeTR(t, withUID)
		policy, err := render.Render(render.Input{Registry: tr, Engine: engine,
			Keys: []render.Key{{Name: "ci-2026", Fingerprint: pk.Fingerprint, PEM: pk.PEM, State: v1alpha1.KeyActive}}})
		if err != nil {
			t.Fatal(err)
		}
		wantRendererOutput(t, engine, r.out, policy.Object)
		// rehash reproduces the renderer's hash
		cp := runtime.DeepCopyJSON(policy.Object)
		if err := rehash(cp); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(cp, policy.Object) {
			t.Fatalf("%s: rehash changed the content hash", engine)
		}
	}

	// without metadata.uid: no uid in the owner reference, and a note says so
	r := runCLI(t, "", "render", "--layout", "per-registry", "-f", seedSample, "--key", "ci-2026="+keyPath)
	r.want(t, ExitOK, "metadata.uid is not in the manifest", "spec.policy.engine is Auto")
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(r.out), &obj); err != nil {
		t.Fatal(err)
	}
	ref := obj["metadata"].(map[string]any)["ownerReferences"].([]any)[0].(map[string]any)
	if _, ok := ref["uid"]; ok || ref["name"] != "yourorg" || obj["kind"] != "ImageValidatingPolicy" {
		t.Fatalf("owner reference %v, kind %v", ref, obj["kind"])
	}
	// stdin and quiet
	r2 := runCLI(t, string(data), "render", "--layout", "per-registry", "-q", "-f", "-", "--key", "ci-2026="+keyPath)
	r2.want(t, ExitOK)
	if r2.err != "" || r2.out != r.out {
		t.Fatalf("stdin render differs or is noisy: %q", r2.err)
	}
}

func TestRenderRefusals(t *testing.T) {
	dir := t.TempDir()
	keyPath, _ := writeKey(t, dir, "ci")
	other, _ := writeKey(t, dir, "other")
	runCLI(t, "", "render", "-f", seedSample).want(t, ExitUsage, `spec.keys lists "ci-2026" without a public key`)
	runCLI(t, "", "render", "-f", seedSample, "--key", "ci-2026="+keyPath, "--key", "typo="+other).
		want(t, ExitUsage, "--key typo: not in spec.keys")
	runCLI(t, "", "render", "-f", seedSample, "--key", "ci-2026="+dir+"/missing.pub").want(t, ExitUsage, "missing.pub")
	runCLI(t, "", "render", "-f", seedSample, "--key", "ci-2026="+writeFile(t, dir, "bad.pub", "nope")).want(t, ExitUsage, `key "ci-2026"`)
	runCLI(t, "", "render", "-f", seedSample, "--key", "ci-2026").want(t, ExitUsage, "want NAME=PATH")
	runCLI(t, "", "render", "-f", seedSample, "--key", "ci-2026="+keyPath, "--engine", "Gatekeeper").want(t, ExitUsage, "--engine must be")

	forced := writeFile(t, dir, "cp.yaml", `apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: cp}
spec:
  images: [ghcr.io/org/*]
  namespaces: {names: [prod]}
  keys: [{name: ci, secretRef: {name: k}}]
  policy: {engine: ClusterPolicy}
`)
	runCLI(t, "", "render", "-f", forced, "--key", "ci="+keyPath, "--engine", "ImageValidatingPolicy").want(t, ExitUsage, "contradicts spec.policy.engine ClusterPolicy")
	runCLI(t, "", "render", "-f", forced, "--key", "ci="+keyPath).want(t, ExitOK, "kind: ClusterPolicy")

	invalid := writeFile(t, dir, "bad.yaml", `apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: bad}
spec:
  images: ["*"]
  namespaces: {names: [prod]}
  keys: [{name: ci, secretRef: {name: k}}]
`)
	runCLI(t, "", "render", "-f", invalid, "--key", "ci="+keyPath).
		want(t, ExitFailed, `bad.yaml:1: TrustedRegistry "bad": spec.images[0]: Invalid value: "*": image pattern must start with a registry host`)

	two := writeFile(t, dir, "two.yaml", string(mustRead(t, seedSample))+"\n---\n"+strings.ReplaceAll(string(mustRead(t, seedSample)), "yourorg", "second"))
	runCLI(t, "", "render", "--layout", "per-registry", "-f", two, "--key", "ci-2026="+keyPath).want(t, ExitUsage, "2 TrustedRegistries found", "--name")
	runCLI(t, "", "render", "--layout", "per-registry", "-f", two, "--name", "second", "--key", "ci-2026="+keyPath).want(t, ExitOK, "name: signet-second")

	// a keyless regular expression that the CRD accepts but Go cannot compile
	badRE := writeFile(t, dir, "re.yaml", `apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: re}
spec:
  images: [ghcr.io/org/*]
  namespaces: {names: [prod]}
  keyless: [{name: gh, issuer: "https://issuer.example", subjectRegExp: "^(unclosed$"}]
`)
	runCLI(t, "", "render", "-f", badRE).want(t, ExitFailed, "invalid TrustedRegistry spec")
}

func TestRenderRetiringKey(t *testing.T) {
	dir := t.TempDir()
	newKey, _ := writeKey(t, dir, "new")
	oldKey, _ := writeKey(t, dir, "old")
	r := runCLI(t, "", "render", "--layout", "per-registry", "-q", "-f", seedSample, "--key", "ci-2026="+newKey, "--retiring-key", "ci-2026="+oldKey)
	r.want(t, ExitOK)
	if n := strings.Count(r.out, "BEGIN PUBLIC KEY"); n != 2 {
		t.Fatalf("%d keys inlined, want 2", n)
	}
	if !strings.Contains(r.out, " || verifyImageSignatures") {
		t.Fatal("the old and new key are not alternatives of one signer")
	}
	runCLI(t, "", "render", "-f", seedSample, "--key", "ci-2026="+newKey, "--retiring-key", "ci-2026="+newKey).
		want(t, ExitOK, "so it is Active, not Retiring")
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLint(t *testing.T) {
	runCLI(t, "", "lint", "../../config/samples").want(t, ExitOK, "6 TrustedRegistries valid", `TrustedRegistry "yourorg": ok`)
	runCLI(t, "", "lint", "-q", "-f", seedSample).want(t, ExitOK)

	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", `# a comment
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated}
---
apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: bad}
spec:
  images: ["ghcr.io/**"]
  namespaces: {names: [prod]}
  keys: [{name: ci, secretRef: {name: k}}]
  colour: blue
---
apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: good}
spec:
  images: ["ghcr.io/org/*"]
  namespaces: {names: [prod]}
  keys: [{name: ci, secretRef: {name: k}}]
---
apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: good}
spec:
  images: ["ghcr.io/org/*"]
  namespaces: {names: [prod]}
  keyless: [{name: gh, issuer: "https://issuer.example", subjectRegExp: "^(unclosed$"}]
`)
	r := runCLI(t, "", "lint", "-f", bad)
	r.want(t, ExitFailed,
		`bad.yaml:6: TrustedRegistry "bad": unknown field "spec.colour"`,
		`bad.yaml:6: TrustedRegistry "bad": spec.images[0]: Invalid value: "ghcr.io/**": image pattern must not contain '**'`,
		`bad.yaml:15: TrustedRegistry "good": ok`,
		`bad.yaml:23: TrustedRegistry "good": defined twice: also at `,
		`bad.yaml:23: TrustedRegistry "good": operator: invalid TrustedRegistry spec: keyless identity "gh": regular expression`,
		"signet lint: 2 of 3 TrustedRegistries invalid")
	if strings.Contains(r.out, "unrelated") {
		t.Error("a ConfigMap was linted")
	}
	runCLI(t, "", "lint", "--schema-only", "-f", bad).want(t, ExitFailed, "defined twice")

	// patterns are globs: regular-expression syntax is refused with the glob to write
	regexps := writeFile(t, dir, "regexp.yaml", `apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: regexp}
spec:
  images: ["ghcr.io/org/.*", '^quay\.io/team/app-.+$', "ghcr.io/org/app:v1.*"]
  namespaces: {names: [prod]}
  keys: [{name: ci, secretRef: {name: k}}]
`)
	r = runCLI(t, "", "lint", regexps)
	r.want(t, ExitFailed,
		`regexp.yaml:1: TrustedRegistry "regexp": spec.images[0]: Invalid value: "ghcr.io/org/.*": "ghcr.io/org/.*" looks like a regular expression; image patterns are globs ('*' matches any characters, '/' included): use "ghcr.io/org/*"`,
		`regexp.yaml:1: TrustedRegistry "regexp": spec.images[1]: Invalid value: "^quay\\.io/team/app-.+$": "^quay\.io/team/app-.+$" looks like a regular expression; image patterns are globs ('*' matches any characters, '/' included): use "quay.io/team/app-*"`,
		"signet lint: 1 of 1 TrustedRegistry invalid")
	if strings.Contains(r.out, "images[2]") {
		t.Errorf("a glob in a tag (v1.*) was refused:\n%s", r.out)
	}

	// standard input, and a List
	list := `{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "trust.signet.dev/v1alpha1", "kind": "TrustedRegistry",
	  "metadata": {"name": "x"}, "spec": {"images": ["nginx"], "namespaces": {"names": ["a"]}, "requiredSignatures": 2, "keys": [{"name": "k", "secretRef": {"name": "s"}}]}}]}`
	runCLI(t, list, "lint", "-").want(t, ExitFailed,
		`<stdin>:1 item 1: TrustedRegistry "x": spec: Invalid value: requiredSignatures cannot exceed the number of keys plus keyless identities`)

	runCLI(t, "", "lint", writeFile(t, dir, "none.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n")).
		want(t, ExitFailed, "no TrustedRegistry found")
	runCLI(t, "", "lint", writeFile(t, dir, "dup.yaml", "a: 1\na: 2\n")).want(t, ExitFailed, `dup.yaml:1: document: `)
	runCLI(t, "", "lint", dir+"/nope.yaml").want(t, ExitUsage, "no such file")
	runCLI(t, "", "lint").want(t, ExitUsage, "no input")
}

func TestVerifyCommand(t *testing.T) {
	ctx := context.Background()
	reg := ocitest.NewRegistryT(t)
	dir := t.TempDir()
	keyPath, kp := writeKey(t, dir, "ci")
	trFile := writeFile(t, dir, "tr.yaml", `apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: team}
spec:
  images: ["`+reg.Host()+`/team/*"]
  namespaces: {names: [production]}
  keys: [{name: ci, secretRef: {name: cosign-public-key}}]
  transparencyLog: {ignore: true}
`)
	signed, err := reg.PushRandomImage(ctx, "team/signed")
	if err != nil {
		t.Fatal(err)
	}
	if err := ocitest.Sign(ctx, signed, kp.Signer); err != nil {
		t.Fatal(err)
	}
	unsigned, err := reg.PushRandomImage(ctx, "team/unsigned")
	if err != nil {
		t.Fatal(err)
	}
	replayed, err := reg.PushRandomImage(ctx, "team/replayed")
	if err != nil {
		t.Fatal(err)
	}
	if err := ocitest.ReplaySignature(ctx, signed, replayed); err != nil {
		t.Fatal(err)
	}
	args := []string{"-f", trFile, "--key", "ci=" + keyPath}

	runCLI(t, "", append([]string{"verify", signed.String()}, args...)...).
		want(t, ExitOK, "✓ ALLOWED", "signed by 1 of the 1 required signer(s): ci", "✓ ci")
	runCLI(t, "", append([]string{"verify", unsigned.String()}, args...)...).
		want(t, ExitFailed, "✗ DENIED", "not signed by any trusted signer of TrustedRegistry team (ci)", "✗ ci", "no signatures found")
	runCLI(t, "", append([]string{"verify", replayed.String()}, args...)...).
		want(t, ExitFailed, "✗ DENIED", "invalid or missing digest in claim")
	// by default an Enforce registry pins a signed tag to its digest
	runCLI(t, "", append([]string{"verify", reg.Ref("team/signed:latest")}, args...)...).
		want(t, ExitOK, "✓ ALLOWED", "Kyverno pins the tag to "+signed.DigestStr()+" at admission")
	runCLI(t, "", append([]string{"verify", reg.Ref("team/unsigned:latest")}, args...)...).
		want(t, ExitFailed, "✗ DENIED", "not signed by any trusted signer of TrustedRegistry team (ci)")
	runCLI(t, "", append([]string{"verify", "ghcr.io/elsewhere/app:1"}, args...)...).
		want(t, ExitFailed, "not covered by this TrustedRegistry", "would be denied by restrictRegistries")

	r := runCLI(t, "", append([]string{"verify", "-o", "json", signed.String(), unsigned.String()}, args...)...)
	r.want(t, ExitFailed)
	var out []map[string]any
	if err := json.Unmarshal([]byte(r.out), &out); err != nil {
		t.Fatalf("json output: %v\n%s", err, r.out)
	}
	if len(out) != 2 || out[0]["ok"] != true || out[1]["ok"] != false || out[1]["image"] != unsigned.String() {
		t.Fatalf("json output %v", out)
	}

	// keyless identities cannot be checked offline without Fulcio roots: never a pass
	keyless := writeFile(t, dir, "keyless.yaml", `apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: keyless}
spec:
  images: ["`+reg.Host()+`/team/*"]
  namespaces: {names: [production]}
  keyless: [{name: gh, issuer: "https://token.actions.githubusercontent.com", subjectRegExp: "^https://github.com/org/.+$"}]
  transparencyLog: {ignore: true}
`)
	runCLI(t, "", "verify", signed.String(), "-f", keyless).
		want(t, ExitFailed, "✗ UNVERIFIED (inconclusive offline)", "keyless not verifiable offline")
	runCLI(t, "", "verify", signed.String(), "-f", keyless, "--fulcio-roots", keyPath).want(t, ExitUsage, "no PEM CERTIFICATE block")
	runCLI(t, "", "verify", signed.String(), "-f", keyless, "--rekor-public-key", writeFile(t, dir, "x.pem", "nope")).want(t, ExitUsage, "x.pem")

	// Audit mode says the image is admitted but reported
	audit := writeFile(t, dir, "audit.yaml", strings.Replace(string(mustRead(t, trFile)), "  transparencyLog", "  action: Audit\n  transparencyLog", 1))
	runCLI(t, "", "verify", unsigned.String(), "-f", audit, "--key", "ci="+keyPath).want(t, ExitFailed, "✗ FAILS (Audit: admitted, reported as failing)")

	// usage and input errors
	runCLI(t, "", "verify", "-f", trFile).want(t, ExitUsage, "no IMAGE")
	runCLI(t, "", "verify", signed.String(), "-f", trFile).want(t, ExitUsage, "without a public key")
	runCLI(t, "", append([]string{"verify", reg.Ref("team/signed:nope"), "--timeout", "20s"}, args...)...).want(t, ExitUsage, "✗ ERROR")
	bad := writeFile(t, dir, "bad.yaml", strings.Replace(string(mustRead(t, trFile)), "[production]", "[Production]", 1))
	runCLI(t, "", "verify", signed.String(), "-f", bad, "--key", "ci="+keyPath).want(t, ExitUsage, "namespace names must be DNS labels")
}

func TestLoadCertificates(t *testing.T) {
	var rootKey *ecdsa.PrivateKey
	mk := func(cn string, parent *x509.Certificate, serial int64) (*x509.Certificate, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		signer := key
		if parent != nil {
			signer = rootKey
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
		if err != nil {
			t.Fatal(err)
		}
		if parent == tmpl {
			rootKey = key
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	root, rootPEM := mk("root", nil, 1)
	inter, interPEM := mk("intermediate", root, 2)
	dir := t.TempDir()
	p := writeFile(t, dir, "bundle.pem", string(interPEM)+string(rootPEM))
	roots, inters, err := loadCertificates(p)
	if err != nil {
		t.Fatal(err)
	}
	wantRoots, wantInters := x509.NewCertPool(), x509.NewCertPool()
	wantRoots.AddCert(root)
	wantInters.AddCert(inter)
	if !roots.Equal(wantRoots) || !inters.Equal(wantInters) {
		t.Fatal("roots and intermediates not told apart")
	}
	if _, _, err := loadCertificates(writeFile(t, dir, "empty.pem", "")); err == nil {
		t.Fatal("an empty bundle was accepted")
	}
}

// TestRenderSharedLayout: the default layout prints the shared policies of every
// TrustedRegistry in the files, exactly as render.RenderShared renders them; --name keeps
// the policies that hold one registry.
func TestRenderSharedLayout(t *testing.T) {
	dir := t.TempDir()
	keyPath, kp := writeKey(t, dir, "cosign.pub")
	pk, err := keys.ParsePublicKey(kp.PublicKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	seed := string(mustRead(t, seedSample))
	two := writeFile(t, dir, "two.yaml", seed+"\n---\n"+strings.ReplaceAll(strings.ReplaceAll(seed, "yourorg", "second"), "name: second\n", "name: second\n  uid: 6a1f0c4e-8f0e-4a57-9d0c-2f1b1f0e9a12\n"))
	r := runCLI(t, "", "render", "-q", "-f", two, "--key", "ci-2026="+keyPath)
	r.want(t, ExitOK, "name: signet.ivp.enforce", `"second":`, `"yourorg":`)

	var ins []render.Input
	for _, name := range []string{"yourorg", "second"} {
		tr := decodeTRNamed(t, two, name)
		if tr.UID == "" {
			tr.UID = "00000000-0000-0000-0000-000000000000"
		}
		ins = append(ins, render.Input{Registry: tr, Engine: v1alpha1.EngineImageValidatingPolicy,
			Keys: []render.Key{{Name: "ci-2026", Fingerprint: pk.Fingerprint, PEM: pk.PEM, State: v1alpha1.KeyActive}}})
	}
	res, err := render.RenderShared(ins)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range res.Policies {
		y, err := yaml.Marshal(p.Object)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, string(y))
	}
	if got := r.out; got != strings.Join(want, "---\n") {
		t.Fatalf("signet render differs from RenderShared\n--- cli\n%s\n--- renderer\n%s", got, strings.Join(want, "---\n"))
	}
	runCLI(t, "", "render", "-q", "-f", two, "--name", "second", "--key", "ci-2026="+keyPath).want(t, ExitOK, "name: signet.ivp.enforce")
	runCLI(t, "", "render", "-q", "-f", two, "--name", "third", "--key", "ci-2026="+keyPath).want(t, ExitUsage, `no TrustedRegistry named "third"`)
	runCLI(t, "", "render", "-f", two, "--layout", "sideways", "--key", "ci-2026="+keyPath).want(t, ExitUsage, "--layout must be")
}

// TestRenderTrustMaterial: `signet render` reads what spec.sigstore names from --trust
// files, refuses a missing or malformed one, and renders what the operator renders from
// the same material.
func TestRenderTrustMaterial(t *testing.T) {
	dir := t.TempDir()
	ca, err := ocitest.NewCA("render fulcio")
	if err != nil {
		t.Fatal(err)
	}
	repo, err := ocitest.NewTUFRepository(ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	repo.Close() // only its root.json is needed
	manifest := writeFile(t, dir, "keyless.yaml", `apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: keyless}
spec:
  images: [ghcr.io/org/*]
  namespaces: {names: [prod]}
  keyless: [{name: gh, issuer: "https://token.actions.githubusercontent.com", subject: "https://github.com/org/app/.github/workflows/release.yml@refs/heads/main"}]
  sigstore:
    tuf: {mirror: "https://tuf.internal.example", root: {configMapName: sigstore-roots, key: root.json}}
    fulcioCertificates: {secretName: fulcio, key: roots.pem}
    rekor: {url: "https://rekor.internal.example", publicKey: {configMapName: sigstore-roots, key: rekor.pub}}
`)
	rootPath := writeFile(t, dir, "root.json", string(repo.RootJSON))
	caPath := writeFile(t, dir, "ca.pem", string(ca.PEM))
	log, err := ocitest.NewRekor()
	if err != nil {
		t.Fatal(err)
	}
	rekorPath := writeFile(t, dir, "rekor.pub", string(log.PublicKeyPEM))

	runCLI(t, "", "render", "-f", manifest, "--trust", "sigstore-roots/root.json="+rootPath).
		want(t, ExitUsage, "spec.sigstore fulcioCertificates names fulcio/roots.pem: pass --trust fulcio/roots.pem=PATH")
	runCLI(t, "", "render", "-f", manifest, "--trust", "sigstore-roots/root.json="+caPath, "--trust", "fulcio/roots.pem="+caPath, "--trust", "sigstore-roots/rekor.pub="+rekorPath).
		want(t, ExitUsage, "tuf.root: not JSON")
	runCLI(t, "", "render", "-f", manifest, "--trust", "sigstore-roots").want(t, ExitUsage, "want NAME/KEY=PATH")

	for _, engine := range []v1alpha1.Engine{v1alpha1.EngineImageValidatingPolicy, v1alpha1.EngineClusterPolicy} {
		r := runCLI(t, "", "render", "--layout", "per-registry", "-q", "-f", manifest, "--engine", string(engine),
			"--trust", "sigstore-roots/root.json="+rootPath, "--trust", "fulcio/roots.pem="+caPath, "--trust", "sigstore-roots/rekor.pub="+rekorPath)
		r.want(t, ExitOK)
		tr := decodeTR(t, manifest)
		tr.UID = placeholderUID
		fulcio, err := render.NormalizeTrustMaterial(render.TrustFulcio, ca.PEM)
		if err != nil {
			t.Fatal(err)
		}
		policy, err := render.Render(render.Input{Registry: tr, Engine: engine,
			TrustRoots: &render.TrustRoots{Fulcio: fulcio, Rekor: string(log.PublicKeyPEM), TUFRoot: string(repo.RootJSON)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := withoutOwnerUID(policy.Object); err != nil {
			t.Fatal(err)
		}
		wantRendererOutput(t, engine, r.out, policy.Object)
	}
}

// wantRendererOutput fails unless the CLI printed exactly the renderer's policy as YAML.
func wantRendererOutput(t *testing.T, engine v1alpha1.Engine, out string, policy map[string]any) {
	t.Helper()
	want, err := yaml.Marshal(policy)
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Fatalf("%s: CLI output differs from the renderer's\n--- cli\n%s\n--- renderer\n%s", engine, out, want)
	}
}
