package ocitest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/cosign/v2/pkg/types"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

func payloadFor(ref name.Digest) payload.Cosign { return payload.Cosign{Image: ref} }

func b64(raw []byte) string { return base64.StdEncoding.EncodeToString(raw) }

// Attest attaches an in-toto attestation of predicateType (a URI) with predicate to the
// image at ref, signed offline with signer, as `cosign attest --key --tlog-upload=false
// --type <uri>` does: a DSSE envelope over an in-toto statement whose subject is ref's
// digest, stored in the `sha256-<digest>.att` manifest next to the image (or in
// sigRepo when given, as with COSIGN_REPOSITORY).
func Attest(ctx context.Context, ref name.Digest, signer signature.Signer, predicateType string, predicate any, sigRepo ...name.Repository) error {
	return attest(ctx, ref, signer, nil, predicateType, predicate, sigRepo...)
}

// AttestWithRekor attests like Attest and records the attestation in the test log r, whose
// bundle it carries (`cosign attest` with a transparency log).
func AttestWithRekor(ctx context.Context, ref name.Digest, signer signature.Signer, r *Rekor, predicateType string, predicate any) error {
	return attest(ctx, ref, signer, r, predicateType, predicate)
}

func attest(ctx context.Context, ref name.Digest, signer signature.Signer, rekor *Rekor, predicateType string, predicate any, sigRepo ...name.Repository) error {
	st := map[string]any{
		"_type":         "https://in-toto.io/Statement/v0.1",
		"predicateType": predicateType,
		"subject": []any{map[string]any{
			"name":   ref.Repository.Name(),
			"digest": map[string]any{"sha256": strings.TrimPrefix(ref.DigestStr(), "sha256:")},
		}},
		"predicate": predicate,
	}
	body, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("ocitest: statement: %w", err)
	}
	env, err := dsse.WrapSigner(signer, types.IntotoPayloadType).SignMessage(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("ocitest: signing the attestation of %s: %w", ref, err)
	}
	var sopts []static.Option
	if rekor != nil {
		b, err := rekor.intoto(env, body, signer)
		if err != nil {
			return fmt.Errorf("ocitest: transparency log entry: %w", err)
		}
		sopts = append(sopts, static.WithBundle(b))
	}
	att, err := static.NewAttestation(env, sopts...)
	if err != nil {
		return fmt.Errorf("ocitest: %w", err)
	}
	opts := remoteOpts(ctx)
	repo := ref.Repository
	if len(sigRepo) > 0 {
		repo = sigRepo[0]
		opts = append(opts, ociremote.WithTargetRepository(repo))
	}
	se, err := ociremote.SignedEntity(ref, opts...)
	if err != nil {
		return fmt.Errorf("ocitest: reading %s: %w", ref, err)
	}
	if se, err = mutate.AttachAttestationToEntity(se, att); err != nil {
		return fmt.Errorf("ocitest: attaching the attestation to %s: %w", ref, err)
	}
	if err := ociremote.WriteAttestations(repo, se, opts...); err != nil {
		return fmt.Errorf("ocitest: writing the attestations of %s: %w", ref, err)
	}
	return nil
}

// SignTo signs the image at ref like Sign, but stores the signature in sigRepo, as
// `COSIGN_REPOSITORY=<sigRepo> cosign sign` does.
func SignTo(ctx context.Context, ref name.Digest, signer signature.Signer, sigRepo name.Repository) error {
	pl, err := (payloadFor(ref)).MarshalJSON()
	if err != nil {
		return fmt.Errorf("ocitest: payload: %w", err)
	}
	raw, err := signer.SignMessage(bytes.NewReader(pl))
	if err != nil {
		return fmt.Errorf("ocitest: signing %s: %w", ref, err)
	}
	sig, err := static.NewSignature(pl, b64(raw))
	if err != nil {
		return fmt.Errorf("ocitest: %w", err)
	}
	opts := append(remoteOpts(ctx), ociremote.WithTargetRepository(sigRepo))
	se, err := ociremote.SignedEntity(ref, opts...)
	if err != nil {
		return fmt.Errorf("ocitest: reading %s: %w", ref, err)
	}
	if se, err = mutate.AttachSignatureToEntity(se, sig); err != nil {
		return fmt.Errorf("ocitest: attaching signature to %s: %w", ref, err)
	}
	if err := ociremote.WriteSignatures(sigRepo, se, opts...); err != nil {
		return fmt.Errorf("ocitest: writing signatures of %s to %s: %w", ref, sigRepo, err)
	}
	return nil
}
