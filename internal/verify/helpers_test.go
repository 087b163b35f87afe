package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/ocitest"
	"github.com/signet-operator/signet/internal/render"
)

// fixture is an in-process registry with helpers to push and sign images.
type fixture struct {
	t   *testing.T
	ctx context.Context
	reg *ocitest.Registry
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return &fixture{t: t, ctx: ctx, reg: ocitest.NewRegistryT(t)}
}

func (f *fixture) push(repo string) name.Digest {
	f.t.Helper()
	d, err := f.reg.PushRandomImage(f.ctx, repo)
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *fixture) sign(d name.Digest, kp *ocitest.KeyPair) {
	f.t.Helper()
	if err := ocitest.Sign(f.ctx, d, kp.Signer); err != nil {
		f.t.Fatal(err)
	}
}

// ringKey turns a generated key pair into a key of the ring.
func ringKey(t *testing.T, nm string, kp *ocitest.KeyPair, state v1alpha1.KeyState) render.Key {
	t.Helper()
	pk, err := keys.ParsePublicKey(kp.PublicKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return render.Key{Name: nm, Fingerprint: pk.Fingerprint, PEM: pk.PEM, State: state}
}

// registry returns a TrustedRegistry for the fixture's "team/*" repositories, with the
// transparency log ignored (offline signatures) and one spec key per name.
func (f *fixture) registry(mut func(*v1alpha1.TrustedRegistrySpec), keyNames ...string) *v1alpha1.TrustedRegistry {
	tr := &v1alpha1.TrustedRegistry{
		ObjectMeta: metav1.ObjectMeta{Name: "team", UID: "00000000-0000-0000-0000-000000000001"},
		Spec: v1alpha1.TrustedRegistrySpec{
			Images:             []v1alpha1.ImagePattern{v1alpha1.ImagePattern(f.reg.Host() + "/team/*")},
			Namespaces:         v1alpha1.NamespaceSelection{Names: []string{"production"}},
			RestrictRegistries: ptr.To(true),
			Action:             v1alpha1.ActionEnforce,
			RequiredSignatures: 1,
			Digest:             v1alpha1.DigestPolicy{Require: ptr.To(true), Mutate: ptr.To(false)},
			TransparencyLog:    v1alpha1.TransparencyLog{Ignore: ptr.To(true)},
		},
	}
	for _, n := range keyNames {
		tr.Spec.Keys = append(tr.Spec.Keys, v1alpha1.PublicKey{Name: n, SecretRef: v1alpha1.SecretKeyReference{Name: n, Key: "cosign.pub"}})
	}
	if mut != nil {
		mut(&tr.Spec)
	}
	return tr
}

func mustVerify(t *testing.T, v *Verifier, req Request) *Result {
	t.Helper()
	res, err := v.Verify(context.Background(), req)
	if err != nil {
		t.Fatalf("Verify(%s): %v", req.Image, err)
	}
	return res
}

func wantOK(t *testing.T, res *Result, ok bool) {
	t.Helper()
	if res.OK != ok {
		t.Fatalf("OK = %t, want %t; result: %+v", res.OK, ok, *res)
	}
}

func wantReason(t *testing.T, res *Result, substrings ...string) {
	t.Helper()
	for _, s := range substrings {
		if !strings.Contains(res.Reason, s) {
			t.Errorf("reason %q does not contain %q", res.Reason, s)
		}
	}
}

// countingTransport counts registry requests.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// fakeFulcio is a self-made certificate authority issuing Fulcio-like code-signing
// certificates (OIDC issuer extension, e-mail SAN), for offline keyless tests.
type fakeFulcio struct {
	root    *x509.Certificate
	rootKey *ecdsa.PrivateKey
	rootPEM []byte
	pool    *x509.CertPool
}

var (
	oidIssuerV1 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	oidIssuerV2 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}
)

func newFakeFulcio(t *testing.T) *fakeFulcio {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fake fulcio root", Organization: []string{"signet tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &fakeFulcio{root: root, rootKey: key, pool: pool,
		rootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// signKeyless signs d with a fresh key and a certificate for (issuer, email), as cosign
// does in keyless mode without Rekor.
func (ff *fakeFulcio) signKeyless(t *testing.T, f *fixture, d name.Digest, issuer, email string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := asn1.Marshal(issuer)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(time.Now().UnixNano()),
		NotBefore:      time.Now().Add(-time.Minute),
		NotAfter:       time.Now().Add(10 * time.Minute),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		EmailAddresses: []string{email},
		ExtraExtensions: []pkix.Extension{
			{Id: oidIssuerV1, Value: []byte(issuer)},
			{Id: oidIssuerV2, Value: v2},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ff.root, &key.PublicKey, ff.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pl, err := (payload.Cosign{Image: d}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pl)
	raw, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig, err := static.NewSignature(pl, base64.StdEncoding.EncodeToString(raw), static.WithCertChain(certPEM, ff.rootPEM))
	if err != nil {
		t.Fatal(err)
	}
	se, err := ociremote.SignedEntity(d)
	if err != nil {
		t.Fatal(err)
	}
	se, err = mutate.AttachSignatureToEntity(se, sig)
	if err != nil {
		t.Fatal(err)
	}
	if err := ociremote.WriteSignatures(d.Repository, se); err != nil {
		t.Fatal(err)
	}
}
