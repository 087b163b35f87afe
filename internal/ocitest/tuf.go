package ocitest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// A private Sigstore deployment distributes its trust root (trusted_root.json: the Fulcio
// CA, the Rekor and CT log keys) through a TUF repository, which Kyverno's
// ImageValidatingPolicy reads for every keyless check. TUFRepository is such a repository
// on 127.0.0.1 with the test CA as Fulcio: one version of each role, signed by one ed25519
// key, without consistent snapshots (the layout both go-tuf clients Kyverno uses read).

// TUFRepository serves TUF metadata and the trusted_root.json target.
type TUFRepository struct {
	srv *httptest.Server
	// Mirror is the repository's base URL (spec.sigstore.tuf.mirror).
	Mirror string
	// RootJSON is the initial root.json (spec.sigstore.tuf.root).
	RootJSON []byte
	// TrustedRoot is the trusted_root.json target.
	TrustedRoot []byte
	files       map[string][]byte
}

// Close stops the server.
func (r *TUFRepository) Close() { r.srv.Close() }

// NewTUFRepository starts a TUF repository whose trusted root names ca as the Fulcio CA,
// rekor's key as the transparency log (a new key when rekor is nil) and a new CT log key
// (Kyverno wants a key of each in the trust root even where a check is skipped).
func NewTUFRepository(ca *CA, rekor *Rekor) (*TUFRepository, error) {
	if rekor == nil {
		var err error
		if rekor, err = NewRekor(); err != nil {
			return nil, err
		}
	}
	trusted, err := trustedRootJSON(ca, rekor)
	if err != nil {
		return nil, err
	}
	r := &TUFRepository{TrustedRoot: trusted, files: map[string][]byte{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, ok := r.files[strings.TrimPrefix(req.URL.Path, "/")]
		if !ok {
			http.NotFound(w, req) // e.g. 2.root.json: no newer root
			return
		}
		_, _ = w.Write(b)
	}))
	r.Mirror = r.srv.URL
	if err := r.build(); err != nil {
		r.srv.Close()
		return nil, err
	}
	return r, nil
}

func (r *TUFRepository) build() error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	signer, err := signature.LoadED25519Signer(priv)
	if err != nil {
		return err
	}
	key, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return err
	}
	expires := time.Now().Add(24 * time.Hour).UTC()

	targets := metadata.Targets(expires)
	tf, err := metadata.TargetFile().FromBytes("trusted_root.json", r.TrustedRoot, "sha256")
	if err != nil {
		return err
	}
	targets.Signed.Targets["trusted_root.json"] = tf
	targetsJSON, err := signed(targets, signer)
	if err != nil {
		return err
	}

	snapshot := metadata.Snapshot(expires)
	snapshot.Signed.Meta["targets.json"] = metaFile(targetsJSON)
	snapshotJSON, err := signed(snapshot, signer)
	if err != nil {
		return err
	}

	timestamp := metadata.Timestamp(expires)
	timestamp.Signed.Meta["snapshot.json"] = metaFile(snapshotJSON)
	timestampJSON, err := signed(timestamp, signer)
	if err != nil {
		return err
	}

	rootMD := metadata.Root(expires)
	rootMD.Signed.ConsistentSnapshot = false
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		if err := rootMD.Signed.AddKey(key, role); err != nil {
			return err
		}
	}
	rootJSON, err := signed(rootMD, signer)
	if err != nil {
		return err
	}

	r.RootJSON = rootJSON
	r.files["1.root.json"] = rootJSON
	r.files["root.json"] = rootJSON
	r.files["timestamp.json"] = timestampJSON
	r.files["snapshot.json"] = snapshotJSON
	r.files["targets.json"] = targetsJSON
	r.files["targets/trusted_root.json"] = r.TrustedRoot
	return nil
}

// signed signs md and returns its JSON.
func signed[T metadata.Roles](md *metadata.Metadata[T], signer signature.Signer) ([]byte, error) {
	if _, err := md.Sign(signer); err != nil {
		return nil, err
	}
	return md.ToBytes(false)
}

// metaFile describes a metadata file by version, length and hash (the older go-tuf client
// checks both).
func metaFile(b []byte) *metadata.MetaFiles {
	m := metadata.MetaFile(1)
	sum := sha256.Sum256(b)
	m.Length = int64(len(b))
	m.Hashes = metadata.Hashes{"sha256": sum[:]}
	return m
}

// trustedRootJSON is a Sigstore trusted root with ca as Fulcio, rekor's key and a new CT
// log key.
func trustedRootJSON(ca *CA, rekorLog *Rekor) ([]byte, error) {
	start := time.Now().Add(-time.Hour)
	logOf := func(url string, pub *ecdsa.PublicKey) (map[string]*root.TransparencyLog, error) {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, err
		}
		id := sha256.Sum256(der)
		return map[string]*root.TransparencyLog{hex.EncodeToString(id[:]): {
			BaseURL: url, ID: id[:], ValidityPeriodStart: start, HashFunc: crypto.SHA256,
			PublicKey: pub, SignatureHashFunc: crypto.SHA256,
		}}, nil
	}
	rekor, err := logOf(RekorURL, &rekorLog.key.PublicKey)
	if err != nil {
		return nil, err
	}
	ctKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ctlog, err := logOf("https://ctfe.sigstore.test", &ctKey.PublicKey)
	if err != nil {
		return nil, err
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01,
		[]root.CertificateAuthority{&root.FulcioCertificateAuthority{Root: ca.Cert, ValidityPeriodStart: start, URI: "https://fulcio.sigstore.test"}},
		ctlog, nil, rekor)
	if err != nil {
		return nil, fmt.Errorf("ocitest: trusted root: %w", err)
	}
	return tr.MarshalJSON()
}
