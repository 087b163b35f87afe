package render

import (
	"crypto/ecdh"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// testKeyPEM returns a deterministic ECDSA P-256 public key (PEM) and its fingerprint,
// derived from seed. Only the public half is used, so no signature is ever made with it.
func testKeyPEM(tb testing.TB, seed byte) (pemText, fingerprint string) {
	tb.Helper()
	d := sha256.Sum256([]byte{'s', 'i', 'g', 'n', 'e', 't', seed})
	priv, err := ecdh.P256().NewPrivateKey(d[:])
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(priv.PublicKey())
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), "sha256:" + hex.EncodeToString(sum[:])
}

func testKey(tb testing.TB, name string, seed byte, state v1alpha1.KeyState) Key {
	p, fp := testKeyPEM(tb, seed)
	return Key{Name: name, Fingerprint: fp, PEM: p, State: state}
}

// registry builds a TrustedRegistry as the apiserver stores it (defaults applied), with the
// digest settings explicit as {require: true, mutate: false}: tags denied, which is also how
// registries created before the digest defaults depended on the action are stored.
func registry(name string, mut func(*v1alpha1.TrustedRegistrySpec)) *v1alpha1.TrustedRegistry {
	tr := &v1alpha1.TrustedRegistry{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "TrustedRegistry"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			UID:  types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012x", sha256.Sum256([]byte(name)))[:36]),
		},
		Spec: v1alpha1.TrustedRegistrySpec{
			Images:             []v1alpha1.ImagePattern{"ghcr.io/yourorg/*"},
			Namespaces:         v1alpha1.NamespaceSelection{Names: []string{"production", "staging"}},
			RestrictRegistries: ptr.To(true),
			Action:             v1alpha1.ActionEnforce,
			Keys:               []v1alpha1.PublicKey{{Name: "ci-2026", SecretRef: v1alpha1.SecretKeyReference{Name: "cosign-public-key", Key: "cosign.pub"}}},
			RequiredSignatures: 1,
			Digest:             v1alpha1.DigestPolicy{Require: ptr.To(true), Mutate: ptr.To(false)},
			TransparencyLog:    v1alpha1.TransparencyLog{Ignore: ptr.To(false)},
			Rotation:           v1alpha1.Rotation{Overlap: &metav1.Duration{Duration: 168 * 3600e9}},
			Policy:             v1alpha1.PolicyOptions{Engine: v1alpha1.EngineAuto},
		},
	}
	if mut != nil {
		mut(&tr.Spec)
	}
	return tr
}

func patterns(ps ...string) []v1alpha1.ImagePattern {
	out := make([]v1alpha1.ImagePattern, 0, len(ps))
	for _, p := range ps {
		out = append(out, v1alpha1.ImagePattern(p))
	}
	return out
}

var engines = []struct {
	name   string
	engine v1alpha1.Engine
}{
	{"ivp", v1alpha1.EngineImageValidatingPolicy},
	{"cpol", v1alpha1.EngineClusterPolicy},
}

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)
