package keys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
)

// StandInPEM returns a fresh ECDSA P-256 public key in PEM, as cosign writes it. Its
// private key is discarded at once, so nothing it could sign exists: it stands in where a
// well-formed key is needed but no signature ever is (the lint probe render, the
// benchmarks' registries that never sign).
func StandInPEM() ([]byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
