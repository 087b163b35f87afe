// Package ocitest provides an in-process OCI registry on 127.0.0.1 and offline cosign
// helpers (key pairs, signing without Rekor, signature replay, verification) for tests,
// the demo and benchmarks.
//
// Signatures are written exactly as `cosign sign --key --tlog-upload=false` writes them:
// a simple-signing payload over the image digest, signed with the key, stored as a layer
// of the `sha256-<digest>.sig` manifest in the image's repository.
package ocitest

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// Registry is an in-memory OCI distribution registry served over plain HTTP on
// 127.0.0.1 (go-containerregistry treats loopback registries as insecure/HTTP, and
// Kyverno reaches it with -allowInsecureRegistry).
type Registry struct {
	srv  *httptest.Server
	host string
}

// NewRegistry starts a registry. Close it when done.
func NewRegistry() *Registry {
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(h) // listens on 127.0.0.1
	return &Registry{srv: srv, host: strings.TrimPrefix(srv.URL, "http://")}
}

// NewRegistryT starts a registry closed at the end of the test.
func NewRegistryT(tb testing.TB) *Registry {
	tb.Helper()
	r := NewRegistry()
	tb.Cleanup(r.Close)
	return r
}

// Host is "127.0.0.1:<port>", the registry part of image references.
func (r *Registry) Host() string { return r.host }

// Close stops the registry.
func (r *Registry) Close() { r.srv.Close() }

// Ref returns "<host>/<repo>" for a repository path such as "team/app".
func (r *Registry) Ref(repo string) string { return r.host + "/" + strings.TrimPrefix(repo, "/") }

// PushRandomImage pushes a small random single-layer image to <host>/<repo>:latest and
// returns its digest reference (<host>/<repo>@sha256:…).
func (r *Registry) PushRandomImage(ctx context.Context, repo string) (name.Digest, error) {
	return PushRandomImage(ctx, r.Ref(repo))
}

// PushRandomImage pushes a random image to repoRef (a repository, optionally with a tag;
// default tag "latest") and returns its digest reference.
func PushRandomImage(ctx context.Context, repoRef string) (name.Digest, error) {
	ref, err := name.ParseReference(repoRef)
	if err != nil {
		return name.Digest{}, fmt.Errorf("ocitest: parsing %q: %w", repoRef, err)
	}
	img, err := random.Image(256, 1)
	if err != nil {
		return name.Digest{}, fmt.Errorf("ocitest: random image: %w", err)
	}
	if err := remote.Write(ref, img, append([]remote.Option{remote.WithContext(ctx)}, authOpts(ctx)...)...); err != nil {
		return name.Digest{}, fmt.Errorf("ocitest: pushing %s: %w", ref, err)
	}
	h, err := img.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	return ref.Context().Digest(h.String()), nil
}

// KeyPair is a cosign key pair, as `cosign generate-key-pair` makes it.
type KeyPair struct {
	// PublicKeyPEM is the PEM "PUBLIC KEY" (what goes into policies and cosign.pub).
	PublicKeyPEM []byte
	// PrivateKeyPEM is the encrypted "ENCRYPTED SIGSTORE PRIVATE KEY" (cosign.key).
	PrivateKeyPEM []byte
	// Password decrypts PrivateKeyPEM (cosign.password).
	Password []byte
	// Signer signs with the private key.
	Signer signature.SignerVerifier
}

// GenerateKeyPair creates an ECDSA P-256 cosign key pair in-process, encrypted with
// password (may be empty).
func GenerateKeyPair(password string) (*KeyPair, error) {
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte(password), nil })
	if err != nil {
		return nil, fmt.Errorf("ocitest: generating key pair: %w", err)
	}
	sv, err := cosign.LoadPrivateKey(kb.PrivateBytes, []byte(password), nil)
	if err != nil {
		return nil, fmt.Errorf("ocitest: loading generated key: %w", err)
	}
	return &KeyPair{PublicKeyPEM: kb.PublicBytes, PrivateKeyPEM: kb.PrivateBytes, Password: []byte(password), Signer: sv}, nil
}

// MustGenerateKeyPair is GenerateKeyPair with an empty password that fails tb on error.
func MustGenerateKeyPair(tb testing.TB) *KeyPair {
	tb.Helper()
	k, err := GenerateKeyPair("")
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// SecretData is the data of the Secret `cosign generate-key-pair k8s://ns/name` writes.
func (k *KeyPair) SecretData() map[string][]byte {
	return map[string][]byte{
		"cosign.pub":      bytes.Clone(k.PublicKeyPEM),
		"cosign.key":      bytes.Clone(k.PrivateKeyPEM),
		"cosign.password": bytes.Clone(k.Password),
	}
}

// SignOption adjusts Sign.
type SignOption func(*signOptions)

type signOptions struct {
	annotations     map[string]any
	claimedIdentity string
	rekor           *Rekor
}

// WithRekor records the signature in the test log r and attaches its bundle, as `cosign
// sign` does with a transparency log.
func WithRekor(r *Rekor) SignOption {
	return func(o *signOptions) { o.rekor = r }
}

// WithAnnotations adds optional annotations to the signed payload (cosign sign -a).
func WithAnnotations(a map[string]any) SignOption {
	return func(o *signOptions) { o.annotations = a }
}

// WithClaimedIdentity sets the payload's docker-reference (default: the repository).
func WithClaimedIdentity(id string) SignOption {
	return func(o *signOptions) { o.claimedIdentity = id }
}

// Sign signs the image at ref offline (no Rekor, no Fulcio) with signer and attaches the
// signature in the registry, next to any existing signatures.
func Sign(ctx context.Context, ref name.Digest, signer signature.Signer, opts ...SignOption) error {
	var o signOptions
	for _, opt := range opts {
		opt(&o)
	}
	pl, err := (payload.Cosign{Image: ref, ClaimedIdentity: o.claimedIdentity, Annotations: o.annotations}).MarshalJSON()
	if err != nil {
		return fmt.Errorf("ocitest: payload: %w", err)
	}
	raw, err := signer.SignMessage(bytes.NewReader(pl))
	if err != nil {
		return fmt.Errorf("ocitest: signing %s: %w", ref, err)
	}
	b64sig := base64.StdEncoding.EncodeToString(raw)
	var sopts []static.Option
	if o.rekor != nil {
		b, err := o.rekor.hashedRekord(pl, b64sig, signer)
		if err != nil {
			return fmt.Errorf("ocitest: transparency log entry: %w", err)
		}
		sopts = append(sopts, static.WithBundle(b))
	}
	sig, err := static.NewSignature(pl, b64sig, sopts...)
	if err != nil {
		return fmt.Errorf("ocitest: %w", err)
	}
	return attach(ctx, ref, sig, signer)
}

// ReplaySignature copies every signature of from (payload and signature unchanged) onto
// to, as an attacker copying a valid signature to another image would. Verification
// with cosign.SimpleClaimVerifier must reject it: the payload names from's digest.
func ReplaySignature(ctx context.Context, from, to name.Digest) error {
	sigs, err := Signatures(ctx, from)
	if err != nil {
		return err
	}
	if len(sigs) == 0 {
		return fmt.Errorf("ocitest: %s has no signatures to replay", from)
	}
	for _, sig := range sigs {
		if err := attach(ctx, to, sig, nil); err != nil {
			return err
		}
	}
	return nil
}

// Signatures returns the cosign signatures attached to ref (none: empty, no error).
func Signatures(ctx context.Context, ref name.Digest) ([]oci.Signature, error) {
	se, err := ociremote.SignedEntity(ref, remoteOpts(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("ocitest: reading %s: %w", ref, err)
	}
	sigs, err := se.Signatures()
	if err != nil {
		return nil, fmt.Errorf("ocitest: signatures of %s: %w", ref, err)
	}
	list, err := sigs.Get()
	if err != nil {
		return nil, fmt.Errorf("ocitest: signatures of %s: %w", ref, err)
	}
	return list, nil
}

// attach adds sig to ref's signatures. When signer is set, an existing signature over the
// same payload that signer's key verifies is replaced (as cosign sign does), so signing
// twice keeps one signature.
func attach(ctx context.Context, ref name.Digest, sig oci.Signature, signer signature.Signer) error {
	opts := remoteOpts(ctx)
	se, err := ociremote.SignedEntity(ref, opts...)
	if err != nil {
		return fmt.Errorf("ocitest: reading %s: %w", ref, err)
	}
	se, err = mutate.AttachSignatureToEntity(se, sig, mutate.WithDupeDetector(dupeDetector{signer: signer}))
	if err != nil {
		return fmt.Errorf("ocitest: attaching signature to %s: %w", ref, err)
	}
	if err := ociremote.WriteSignatures(ref.Repository, se, opts...); err != nil {
		return fmt.Errorf("ocitest: writing signatures of %s: %w", ref, err)
	}
	return nil
}

func remoteOpts(ctx context.Context) []ociremote.Option {
	return []ociremote.Option{ociremote.WithRemoteOptions(append([]remote.Option{remote.WithContext(ctx)}, authOpts(ctx)...)...)}
}

// dupeDetector treats a signature as a duplicate of an existing one with the same
// payload when the signature bytes are identical (replaying twice) or when the signer's
// key verifies the existing one (signing twice: ECDSA signatures are randomised).
type dupeDetector struct{ signer signature.Signer }

func (d dupeDetector) Find(sigs oci.Signatures, sig oci.Signature) (oci.Signature, error) {
	list, err := sigs.Get()
	if err != nil {
		return nil, err
	}
	pl, b64, err := payloadAndSignature(sig)
	if err != nil {
		return nil, err
	}
	for _, s := range list {
		p2, b2, err := payloadAndSignature(s)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(pl, p2) {
			continue
		}
		if b64 == b2 {
			return s, nil
		}
		if v, ok := d.signer.(signature.Verifier); ok {
			raw, err := base64.StdEncoding.DecodeString(b2)
			if err == nil && v.VerifySignature(bytes.NewReader(raw), bytes.NewReader(p2)) == nil {
				return s, nil
			}
		}
	}
	return nil, nil
}

func payloadAndSignature(sig oci.Signature) (payload []byte, b64 string, err error) {
	if payload, err = sig.Payload(); err != nil {
		return nil, "", err
	}
	b64, err = sig.Base64Signature()
	return payload, b64, err
}

// ErrNoValidSignature is wrapped by Verify when no signature verifies.
var ErrNoValidSignature = errors.New("ocitest: no valid signature")

// Verify checks that ref carries a signature made by the key in publicKeyPEM, offline
// (transparency log and SCT ignored) and with cosign.SimpleClaimVerifier, so that a
// signature replayed from another image is rejected. It returns the verified signatures.
func Verify(ctx context.Context, ref name.Digest, publicKeyPEM []byte) ([]oci.Signature, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(publicKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("ocitest: parsing public key: %w", err)
	}
	verifier, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("ocitest: loading verifier: %w", err)
	}
	co := &cosign.CheckOpts{
		SigVerifier:        verifier,
		IgnoreTlog:         true,
		IgnoreSCT:          true,
		ClaimVerifier:      cosign.SimpleClaimVerifier, // without it, replayed signatures pass
		RegistryClientOpts: remoteOpts(ctx),
	}
	sigs, _, err := cosign.VerifyImageSignatures(ctx, ref, co)
	if err != nil {
		return nil, fmt.Errorf("%w for %s: %w", ErrNoValidSignature, ref, err)
	}
	return sigs, nil
}

// Digest returns the digest of ref's manifest.
func Digest(ctx context.Context, ref name.Reference) (v1.Hash, error) {
	desc, err := remote.Head(ref, remote.WithContext(ctx))
	if err != nil {
		return v1.Hash{}, fmt.Errorf("ocitest: %s: %w", ref, err)
	}
	return desc.Digest, nil
}
