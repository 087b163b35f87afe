package ocitest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// Keyless signing offline: a test CA plays Fulcio. It issues short-lived certificates the
// way Fulcio does for an OIDC identity (the subject as a SAN URI or email, the token's
// issuer in the Fulcio extensions, code-signing usage), and SignKeyless signs like
// `cosign sign --tlog-upload=false` with such a certificate: the signature carries the
// certificate and its chain, and there is no Rekor entry and no SCT.

// Fulcio's certificate extensions (github.com/sigstore/fulcio docs/oid-info.md).
var (
	// OIDIssuerV1 holds the OIDC issuer as raw bytes (deprecated by Fulcio, still read).
	OIDIssuerV1 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	// OIDIssuerV2 holds the OIDC issuer as a DER UTF8String.
	OIDIssuerV2 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}
)

// CA is a test certificate authority standing in for Fulcio.
type CA struct {
	Cert *x509.Certificate
	// PEM is the CA certificate, what spec.sigstore.fulcioCertificates holds.
	PEM []byte
	key *ecdsa.PrivateKey
}

// NewCA creates a self-signed CA valid from an hour ago for a day.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"signet test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ocitest: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}, nil
}

// Identity is what an OIDC token says about the signer.
type Identity struct {
	// Issuer is the token's issuer URL (e.g. https://token.actions.githubusercontent.com).
	Issuer string
	// Subject is a URI (a GitHub workflow ref) or an email address.
	Subject string
}

// KeylessSigner signs with a short-lived certificate issued to an Identity.
type KeylessSigner struct {
	Signer signature.Signer
	// CertPEM is the leaf certificate; ChainPEM the issuing CA certificate(s).
	CertPEM, ChainPEM []byte
}

// Issue makes an ephemeral key and a 10-minute certificate for id, as Fulcio does.
func (ca *CA) Issue(id Identity) (*KeylessSigner, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	issuerV2, err := asn1.MarshalWithParams(id.Issuer, "utf8")
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(10 * time.Minute),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{
			{Id: OIDIssuerV1, Value: []byte(id.Issuer)},
			{Id: OIDIssuerV2, Value: issuerV2},
		},
	}
	if u, err := url.Parse(id.Subject); err == nil && u.Scheme != "" {
		tmpl.URIs = []*url.URL{u}
	} else {
		tmpl.EmailAddresses = []string{id.Subject}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("ocitest: issuing a certificate for %s: %w", id.Subject, err)
	}
	sv, err := signature.LoadECDSASignerVerifier(key, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return &KeylessSigner{
		Signer:   sv,
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		ChainPEM: bytes.Clone(ca.PEM),
	}, nil
}

// SignKeyless signs the image at ref with the certificate's key and attaches the
// signature with its certificate and chain (no Rekor bundle, no SCT).
func SignKeyless(ctx context.Context, ref name.Digest, ks *KeylessSigner) error {
	pl, err := (payload.Cosign{Image: ref}).MarshalJSON()
	if err != nil {
		return fmt.Errorf("ocitest: payload: %w", err)
	}
	raw, err := ks.Signer.SignMessage(bytes.NewReader(pl))
	if err != nil {
		return fmt.Errorf("ocitest: signing %s: %w", ref, err)
	}
	sig, err := static.NewSignature(pl, base64.StdEncoding.EncodeToString(raw), static.WithCertChain(ks.CertPEM, ks.ChainPEM))
	if err != nil {
		return fmt.Errorf("ocitest: %w", err)
	}
	return attach(ctx, ref, sig, nil)
}
