package verify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
)

// AttestationResult is the outcome of one spec.attestations entry.
type AttestationResult struct {
	// Type is the predicate type URI.
	Type string `json:"type"`
	// Verified names the signers whose attestations of the type verified and met the
	// conditions; Required is spec.requiredSignatures.
	Verified []string `json:"verified,omitempty"`
	Required int      `json:"required"`
	OK       bool     `json:"ok"`
	// Errors says, per signer that did not count, why.
	Errors []string `json:"errors,omitempty"`
}

// signaturesRepository is spec.signaturesRepository as a repository (nil when unset):
// where cosign stored the signatures and attestations (COSIGN_REPOSITORY).
func signaturesRepository(spec *v1alpha1.TrustedRegistrySpec, nameOpts []name.Option) (*name.Repository, error) {
	if spec.SignaturesRepository == "" {
		return nil, nil
	}
	r, err := name.NewRepository(spec.SignaturesRepository, nameOpts...)
	if err != nil {
		return nil, invalidf("signaturesRepository %q: %v", spec.SignaturesRepository, err)
	}
	return &r, nil
}

func registryClientOpts(ropts []remote.Option, nameOpts []name.Option, sigRepo *name.Repository) []ociremote.Option {
	out := []ociremote.Option{ociremote.WithRemoteOptions(ropts...), ociremote.WithNameOptions(nameOpts...)}
	if sigRepo != nil {
		out = append(out, ociremote.WithTargetRepository(*sigRepo))
	}
	return out
}

// attestations checks spec.attestations as the policies do (README.md, "Attestations"):
// for each entry, requiredSignatures signers must have signed an in-toto attestation of
// the type whose predicate meets the conditions. A signer counts only when every one of
// its attestations of the type meets them (as Kyverno's ClusterPolicy judges; the
// ImageValidatingPolicy reads one of them), so this never admits what a policy denies.
// It fills res.Attestations and, when an entry fails, res.Reason.
func (v *Verifier) attestations(ctx context.Context, req Request, res *Result, dig name.Digest, ss []signer, ignoreLog bool,
	ropts []remote.Option, nameOpts []name.Option, sigRepo *name.Repository) (bool, error) {
	spec := &req.Registry.Spec
	ok := true
	var missing []string
	for _, a := range spec.Attestations {
		uri, known := render.PredicateTypeURI(a.Type)
		if !known {
			return false, invalidf("attestation type %q is neither a known short name nor a predicate type URI", a.Type)
		}
		ar := AttestationResult{Type: uri, Required: res.Required}
		for _, s := range ss {
			counted, why, err := v.signerAttested(ctx, dig, s, uri, a.Conditions, ignoreLog, ropts, nameOpts, sigRepo)
			if err != nil {
				res.Reason = "cannot check attestations: " + err.Error()
				return false, err
			}
			if counted {
				ar.Verified = append(ar.Verified, s.name)
			} else {
				ar.Errors = append(ar.Errors, s.name+": "+why)
			}
		}
		ar.OK = len(ar.Verified) >= ar.Required
		if !ar.OK {
			ok = false
			missing = append(missing, describe(uri, a.Conditions))
		}
		res.Attestations = append(res.Attestations, ar)
	}
	if !ok {
		res.Reason = fmt.Sprintf("image %s lack(s) an attestation %s signed by %s of TrustedRegistry %s (%s)",
			req.Image, strings.Join(missing, " and an attestation "), quantifier(res.Required, len(ss)), req.Registry.Name, signerNames(ss))
	}
	return ok, nil
}

func describe(uri string, conds []v1alpha1.PredicateCondition) string {
	var cs []string
	for _, c := range conds {
		if c.Equals != nil {
			cs = append(cs, "predicate."+c.Path+" == "+*c.Equals)
		} else {
			cs = append(cs, "predicate."+c.Path+" in ["+strings.Join(c.OneOf, ", ")+"]")
		}
	}
	if len(cs) == 0 {
		return uri
	}
	return uri + " with " + strings.Join(cs, " and ")
}

func quantifier(required, signers int) string {
	if required == 1 {
		return "any trusted signer"
	}
	return fmt.Sprintf("at least %d of the %d trusted signers", required, signers)
}

func attestationsSummary(rs []AttestationResult) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("attestation %s by %s", r.Type, strings.Join(r.Verified, ", ")))
	}
	return strings.Join(parts, "; ")
}

// signerAttested tells whether signer s signed an attestation of type uri meeting conds.
func (v *Verifier) signerAttested(ctx context.Context, dig name.Digest, s signer, uri string, conds []v1alpha1.PredicateCondition,
	ignoreLog bool, ropts []remote.Option, nameOpts []name.Option, sigRepo *name.Repository) (bool, string, error) {
	if s.keyless != nil {
		// keyless attestations need the same trust material as keyless signatures
		if msg := v.keylessUnavailable(ignoreLog); msg != "" {
			return false, msg, nil
		}
	} else if !ignoreLog && v.opts.Trust.RekorPubKeys == nil {
		return false, "not verifiable offline: spec.transparencyLog.ignore is false and no Rekor public key is available", nil
	}
	base := cosign.CheckOpts{
		RegistryClientOpts: registryClientOpts(ropts, nameOpts, sigRepo),
		// the statement's subject must name this digest: an attestation copied from
		// another image never counts
		ClaimVerifier: cosign.IntotoSubjectClaimVerifier,
		IgnoreTlog:    ignoreLog,
		IgnoreSCT:     ignoreLog,
		RekorPubKeys:  v.opts.Trust.RekorPubKeys,
		CTLogPubKeys:  v.opts.Trust.CTLogPubKeys,
	}
	var opts []cosign.CheckOpts
	if s.keyless != nil {
		co := base
		co.RootCerts, co.IntermediateCerts = v.opts.Trust.FulcioRoots, v.opts.Trust.FulcioIntermediates
		co.Identities = []cosign.Identity{{Issuer: s.keyless.Issuer, IssuerRegExp: s.keyless.IssuerRegExp,
			Subject: s.keyless.Subject, SubjectRegExp: s.keyless.SubjectRegExp}}
		opts = append(opts, co)
	}
	for _, k := range s.keys {
		co := base
		co.SigVerifier = k.verifier
		opts = append(opts, co)
	}
	var whys []string
	for i := range opts {
		atts, _, err := cosign.VerifyImageAttestations(ctx, dig, &opts[i])
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return false, "", ctxErr
			}
			var noMatch *cosign.ErrNoMatchingAttestations
			var failure *cosign.VerificationFailure
			var notFound *cosign.ErrImageTagNotFound
			if errors.As(err, &noMatch) || errors.As(err, &failure) || errors.As(err, &notFound) {
				whys = append(whys, summarize(err.Error()))
				continue
			}
			return false, "", err
		}
		found, all := false, true
		for _, att := range atts {
			st, err := statement(att)
			if err != nil {
				whys = append(whys, err.Error())
				all = false
				continue
			}
			if st["predicateType"] != uri {
				continue
			}
			found = true
			all = all && render.PredicateConditionsHold(conds, st)
		}
		switch {
		case found && all:
			return true, "", nil
		case found:
			whys = append(whys, "an attestation of type "+uri+" does not meet the conditions")
		default:
			whys = append(whys, "no attestation of type "+uri)
		}
	}
	return false, strings.Join(whys, "; "), nil
}

// statement decodes the in-toto statement of a DSSE attestation.
func statement(att interface{ Payload() ([]byte, error) }) (map[string]any, error) {
	raw, err := att.Payload()
	if err != nil {
		return nil, err
	}
	var env struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("attestation is not a DSSE envelope: %w", err)
	}
	body, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("attestation payload: %w", err)
	}
	var st map[string]any
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("attestation payload is not an in-toto statement: %w", err)
	}
	return st, nil
}
