package ocitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"sync"
	"time"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
	"github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Rekor stands in for a Rekor transparency log when signing offline: it issues the bundle
// `cosign sign` and `cosign attest` attach after uploading an entry — the entry's body as
// Rekor canonicalises it (hashedrekord for a signature, intoto for an attestation) and a
// signed entry timestamp (SET) over it made with the log's key. Verifiers check the SET
// with the log's public key, offline, exactly as they check a bundle from a real log; no
// inclusion proof is made, as cosign's bundles carry none.
type Rekor struct {
	key *ecdsa.PrivateKey
	// PublicKeyPEM is the log's public key (spec.sigstore.rekor.publicKey).
	PublicKeyPEM []byte
	// LogID is the log's ID: the hex SHA-256 of its DER public key.
	LogID string
	mu    sync.Mutex
	index int64
}

// RekorURL is the test log's URL in trust roots and policies; nothing listens there, so a
// verifier that tried to reach the log instead of checking the bundle would fail.
const RekorURL = "https://rekor.sigstore.test"

// NewRekor makes a log key.
func NewRekor() (*Rekor, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	id := sha256.Sum256(der)
	return &Rekor{key: k, PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), LogID: hex.EncodeToString(id[:])}, nil
}

// entry returns the bundle of a canonical entry body.
func (r *Rekor) entry(body any) (*bundle.RekorBundle, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.index++
	idx := r.index
	r.mu.Unlock()
	p := bundle.RekorPayload{
		Body:           base64.StdEncoding.EncodeToString(raw),
		IntegratedTime: time.Now().Add(-time.Minute).Unix(),
		LogIndex:       idx,
		LogID:          r.LogID,
	}
	pj, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	canon, err := jsoncanonicalizer.Transform(pj)
	if err != nil {
		return nil, fmt.Errorf("ocitest: canonicalising the SET payload: %w", err)
	}
	sum := sha256.Sum256(canon)
	set, err := ecdsa.SignASN1(rand.Reader, r.key, sum[:])
	if err != nil {
		return nil, err
	}
	return &bundle.RekorBundle{SignedEntryTimestamp: set, Payload: p}, nil
}

func signerPEM(s signature.Signer) (string, error) {
	pub, err := s.PublicKey()
	if err != nil {
		return "", err
	}
	b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// hashedRekord is the bundle of a signature entry: the payload's hash, the signature and
// the signer's public key.
func (r *Rekor) hashedRekord(payload []byte, b64sig string, signer signature.Signer) (*bundle.RekorBundle, error) {
	pk, err := signerPEM(signer)
	if err != nil {
		return nil, err
	}
	return r.entry(map[string]any{
		"apiVersion": "0.0.1", "kind": "hashedrekord",
		"spec": map[string]any{
			"data":      map[string]any{"hash": map[string]any{"algorithm": "sha256", "value": sha256Hex(payload)}},
			"signature": map[string]any{"content": b64sig, "publicKey": map[string]any{"content": pk}},
		},
	})
}

// intoto is the bundle of an attestation entry: the hashes of the DSSE envelope and of its
// payload, and the signer's public key.
func (r *Rekor) intoto(envelope, statement []byte, signer signature.Signer) (*bundle.RekorBundle, error) {
	pk, err := signerPEM(signer)
	if err != nil {
		return nil, err
	}
	return r.entry(map[string]any{
		"apiVersion": "0.0.1", "kind": "intoto",
		"spec": map[string]any{
			"content": map[string]any{
				"hash":        map[string]any{"algorithm": "sha256", "value": sha256Hex(envelope)},
				"payloadHash": map[string]any{"algorithm": "sha256", "value": sha256Hex(statement)},
			},
			"publicKey": pk,
		},
	})
}
