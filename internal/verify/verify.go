package verify

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"golang.org/x/sync/singleflight"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
)

// Defaults of Options.
const (
	DefaultCacheSize        = 4096
	DefaultCacheTTL         = 10 * time.Minute
	DefaultNegativeCacheTTL = 30 * time.Second
	DefaultConcurrency      = 4
)

// Trust is the Sigstore trust material for checks that cosign would otherwise fetch from
// the public Sigstore TUF repository (which Signet never does: verification stays offline).
// Every field is optional; a check that needs a missing one reports its signer as not
// verifiable offline instead of passing.
type Trust struct {
	// FulcioRoots and FulcioIntermediates verify the certificates of keyless signatures.
	FulcioRoots         *x509.CertPool
	FulcioIntermediates *x509.CertPool
	// RekorPubKeys verify the transparency-log bundles attached to signatures; needed when
	// spec.transparencyLog.ignore is false.
	RekorPubKeys *cosign.TrustedTransparencyLogPubKeys
	// CTLogPubKeys verify the SCTs embedded in Fulcio certificates; needed for keyless
	// signatures when spec.transparencyLog.ignore is false.
	CTLogPubKeys *cosign.TrustedTransparencyLogPubKeys
}

// Options configure a Verifier. The zero value is usable.
type Options struct {
	// Keychain authenticates to registries when a Request has none (default
	// authn.DefaultKeychain: the Docker config of the user running the process).
	Keychain authn.Keychain
	// AllowInsecure lets references to registries that are not loopback or RFC 1918
	// addresses use plain HTTP (go-containerregistry's name.Insecure). Off by default.
	AllowInsecure bool
	// Transport is the HTTP transport towards registries (default remote.DefaultTransport).
	Transport http.RoundTripper
	// Trust is optional Sigstore trust material (see Trust).
	Trust Trust
	// CacheSize bounds the number of cached verdicts (0: DefaultCacheSize; negative: no
	// cache).
	CacheSize int
	// CacheTTL is how long a verdict that met the threshold is reused (0: DefaultCacheTTL).
	CacheTTL time.Duration
	// NegativeCacheTTL is how long a verdict that did not meet the threshold is reused, so
	// that an image signed a moment later is not denied for long (0:
	// DefaultNegativeCacheTTL; negative: not cached).
	NegativeCacheTTL time.Duration
	// Now is the clock of the cache (default time.Now).
	Now func() time.Time
}

// Request is one image to check against one TrustedRegistry.
type Request struct {
	// Registry is the TrustedRegistry, as stored (apiserver defaults applied); unset
	// optional fields get the same secure defaults as in the renderer.
	Registry *v1alpha1.TrustedRegistry
	// Keys is the key ring the policy accepts, exactly what is passed to render.Render.
	Keys []render.Key
	// Image is the reference as written in a Pod spec ("nginx", "ghcr.io/org/app:1",
	// "ghcr.io/org/app@sha256:…").
	Image string
	// Keychain authenticates to the image's registry (default: Options.Keychain), e.g. one
	// built from the Pod's imagePullSecrets.
	Keychain authn.Keychain
}

// SignerResult is the outcome of one signer (see the package documentation for what a
// signer is).
type SignerResult struct {
	// Name is the key name ("ci"), the names sharing one public key ("ci/ci-copy") or
	// "keyless:<identity name>", as in the policy's messages.
	Name string `json:"name"`
	// Verified is true when a signature of the image verified with one of the signer's keys
	// (or certificate identity).
	Verified bool `json:"verified"`
	// Fingerprint is the key that verified, or the signer's preferred (Active) key when none
	// did; empty for keyless signers.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Keyless is true for a keyless identity.
	Keyless bool `json:"keyless,omitempty"`
	// Unchecked is true when the signer could not be checked because trust material is
	// not available offline (see Trust); Verified is then false.
	Unchecked bool `json:"unchecked,omitempty"`
	// Err says why the signer did not verify the image.
	Err string `json:"error,omitempty"`
}

// Result is the verdict for one image.
type Result struct {
	// Image is the reference that was checked, as given.
	Image string `json:"image"`
	// Registry is the name of the TrustedRegistry.
	Registry string `json:"registry"`
	// Digest is the digest that was (or would be) verified: the reference's own, or the
	// one its tag resolves to now. Empty when the image is not covered.
	Digest string `json:"digest,omitempty"`
	// Covered is true when the image matches spec.images.
	Covered bool `json:"covered"`
	// Signers is one entry per signer, in the renderer's order. Empty when not covered.
	Signers []SignerResult `json:"signers,omitempty"`
	// Verified is how many signers verified the image; Required is spec.requiredSignatures.
	Verified int `json:"verified"`
	Required int `json:"required"`
	// OK is true when the policy would admit the image (in Audit mode: report it as
	// passing).
	OK bool `json:"ok"`
	// Inconclusive is true when OK is false only because some signers could not be
	// checked offline (they could have made up the threshold).
	Inconclusive bool `json:"inconclusive,omitempty"`
	// Attestations is one entry per spec.attestations entry, checked once the signatures
	// meet the threshold (attest.go).
	Attestations []AttestationResult `json:"attestations,omitempty"`
	// Cached is true when the signature verdict came from the cache.
	Cached bool `json:"cached,omitempty"`
	// Reason explains the verdict in one sentence, in the words of the policy's message
	// where there is one.
	Reason string `json:"reason"`
}

// Outcome is one element of VerifyMany's answer.
type Outcome struct {
	Result *Result
	Err    error
}

// Verifier verifies images; it holds the options and the verdict cache. It is safe for
// concurrent use.
type Verifier struct {
	opts   Options
	cache  *verdictCache
	flight singleflight.Group
}

// New returns a Verifier.
func New(opts Options) *Verifier {
	if opts.Keychain == nil {
		opts.Keychain = authn.DefaultKeychain
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	if opts.NegativeCacheTTL == 0 {
		opts.NegativeCacheTTL = DefaultNegativeCacheTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Verifier{opts: opts, cache: newVerdictCache(opts.CacheSize, opts.Now)}
}

// CacheStats reports the verdict cache's size and hit counts.
func (v *Verifier) CacheStats() CacheStats { return v.cache.stats() }

// Verify checks req.Image against req.Registry. The error is non-nil when the check could
// not be completed: invalid keys or spec (render.IsInvalid), an unparsable reference, or a
// registry that could not be reached or answered with an error other than "no signature".
// A denial is not an error: it is a Result with OK false. A Result is returned with the
// error whenever part of the verdict is known.
func (v *Verifier) Verify(ctx context.Context, req Request) (*Result, error) {
	tr := req.Registry
	if tr == nil {
		return nil, errors.New("verify: nil TrustedRegistry")
	}
	res := &Result{Image: req.Image, Registry: tr.Name}
	spec := &tr.Spec
	signers, err := buildSigners(req.Keys, spec.Keyless)
	if err != nil {
		return nil, err
	}
	res.Required = int(spec.RequiredSignatures)
	if res.Required < 1 {
		res.Required = 1
	}
	if len(signers) == 0 {
		return nil, invalidf("no usable key or keyless identity: a policy without attestors would verify nothing")
	}
	if res.Required > len(signers) {
		return nil, invalidf("requiredSignatures is %d but there are only %d distinct signers (%s); keys that share a public key count once",
			res.Required, len(signers), signerNames(signers))
	}
	restrict := boolOr(spec.RestrictRegistries, true)
	requireDigest, mutateDigest := spec.Digest.Resolve(spec.Action)
	ignoreLog := boolOr(spec.TransparencyLog.Ignore, false)

	patterns := make([]string, 0, len(spec.Images))
	for _, p := range spec.Images {
		patterns = append(patterns, string(p))
	}
	res.Covered = render.MatchImage(patterns, req.Image)
	if !res.Covered {
		if restrict {
			res.Reason = fmt.Sprintf("not covered by this TrustedRegistry (images: %s): would be denied by restrictRegistries (only images matching these patterns may run in its namespaces)",
				strings.Join(patterns, ", "))
			return res, nil
		}
		res.OK = true
		res.Reason = fmt.Sprintf("not covered by this TrustedRegistry (images: %s): admitted without signature verification because restrictRegistries is false",
			strings.Join(patterns, ", "))
		return res, nil
	}

	var nameOpts []name.Option
	if v.opts.AllowInsecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	ref, err := name.ParseReference(req.Image, nameOpts...)
	if err != nil {
		return res, fmt.Errorf("verify: parsing image reference %q: %w", req.Image, err)
	}
	kc := req.Keychain
	if kc == nil {
		kc = v.opts.Keychain
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithUserAgent("signet-verify")}
	if v.opts.Transport != nil {
		ropts = append(ropts, remote.WithTransport(v.opts.Transport))
	}
	dig, hasDigest := ref.(name.Digest)
	if !hasDigest {
		dig, err = resolve(ref, ropts)
		if err != nil {
			res.Reason = "cannot resolve the tag to a digest: " + err.Error()
			return res, err
		}
	}
	res.Digest = dig.DigestStr()

	sigRepo, err := signaturesRepository(spec, nameOpts)
	if err != nil {
		return res, err
	}
	vd, cached, err := v.signatures(ctx, dig, signers, res.Required, ignoreLog, ropts, nameOpts, sigRepo)
	if err != nil {
		res.Reason = "cannot check signatures: " + err.Error()
		return res, err
	}
	res.Cached = cached
	res.Signers = vd.signers
	unchecked := 0
	var verifiedNames []string
	for _, s := range res.Signers {
		switch {
		case s.Verified:
			res.Verified++
			verifiedNames = append(verifiedNames, s.Name)
		case s.Unchecked:
			unchecked++
		}
	}
	signed := res.Verified >= res.Required

	if !hasDigest && requireDigest && !mutateDigest {
		// Kyverno checks the digest before any signature (ImageValidatingPolicy:
		// "image X does not have a digest"; ClusterPolicy: "missing digest for X").
		res.Reason = fmt.Sprintf("image %s does not have a digest: spec.digest.require is true and digest.mutate is false, so the policy denies it before checking signatures; reference it as %s",
			req.Image, dig.String())
		if signed {
			res.Reason += fmt.Sprintf(" (that digest is signed by %s)", strings.Join(verifiedNames, ", "))
		}
		return res, nil
	}
	if !signed {
		res.Reason = signatureMessage(tr.Name, req.Image, signers, res.Required, verifiedNames)
		if res.Verified+unchecked >= res.Required {
			res.Inconclusive = true
			res.Reason += fmt.Sprintf("; %d signer(s) could not be checked offline (see their errors), so this verdict is inconclusive", unchecked)
		}
		return res, nil
	}
	// attestations (attest.go): each requirement needs requiredSignatures signers too
	if ok, err := v.attestations(ctx, req, res, dig, signers, ignoreLog, ropts, nameOpts, sigRepo); err != nil || !ok {
		return res, err
	}
	res.OK = true
	res.Reason = fmt.Sprintf("signed by %d of the %d required signer(s): %s", res.Verified, res.Required, strings.Join(verifiedNames, ", "))
	if len(res.Attestations) > 0 {
		res.Reason += "; " + attestationsSummary(res.Attestations)
	}
	if !hasDigest {
		if mutateDigest {
			res.Reason += fmt.Sprintf("; Kyverno pins the tag to %s at admission (digest.mutate)", dig.DigestStr())
		} else {
			res.Reason += fmt.Sprintf("; the tag resolves to %s now and may move later (digest.require is false)", dig.DigestStr())
		}
	}
	return res, nil
}

// signatureMessage is the policy's denial message for a failed threshold (see render's
// signatureMessage), followed by which signers did verify.
func signatureMessage(registry, image string, ss []signer, required int, verified []string) string {
	var msg string
	if required == 1 {
		msg = fmt.Sprintf("image(s) %s not signed by any trusted signer of TrustedRegistry %s (%s)", image, registry, signerNames(ss))
	} else {
		msg = fmt.Sprintf("image(s) %s not signed by at least %d of the %d trusted signers of TrustedRegistry %s (%s)",
			image, required, len(ss), registry, signerNames(ss))
	}
	if len(verified) > 0 {
		msg += fmt.Sprintf("; verified: %s", strings.Join(verified, ", "))
	}
	return msg
}

// VerifyMany verifies reqs with at most concurrency verifications at a time (<= 0:
// DefaultConcurrency) and returns one Outcome per request, in order. Requests for the same
// repository, digest and key set share the cache and in-flight verifications.
func (v *Verifier) VerifyMany(ctx context.Context, reqs []Request, concurrency int) []Outcome {
	if concurrency <= 0 {
		concurrency = DefaultConcurrency
	}
	out := make([]Outcome, len(reqs))
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i := range reqs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			for j := i; j < len(reqs); j++ {
				out[j].Err = ctx.Err()
			}
			wg.Wait()
			return out
		}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			out[i].Result, out[i].Err = v.Verify(ctx, reqs[i])
		}(i)
	}
	wg.Wait()
	return out
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// resolve returns the digest a tag points to now: HEAD first (cheap, not counted against
// Docker Hub's pull limit), then GET for registries that do not answer HEAD.
func resolve(ref name.Reference, ropts []remote.Option) (name.Digest, error) {
	desc, err := remote.Head(ref, ropts...)
	if err == nil {
		return ref.Context().Digest(desc.Digest.String()), nil
	}
	got, gerr := remote.Get(ref, ropts...)
	if gerr != nil {
		return name.Digest{}, fmt.Errorf("%s: %w", ref, gerr)
	}
	return ref.Context().Digest(got.Digest.String()), nil
}

// signatures returns every signer's outcome for the digest, from the cache when possible.
func (v *Verifier) signatures(ctx context.Context, dig name.Digest, ss []signer, required int, ignoreLog bool,
	ropts []remote.Option, nameOpts []name.Option, sigRepo *name.Repository) (verdict, bool, error) {
	// The repository is part of the key: signatures live next to the image, so the same
	// digest can be signed in one repository and not in another (or in
	// spec.signaturesRepository).
	key := dig.Context().Name() + "@" + dig.DigestStr() + "|" + keysetID(ss, required, ignoreLog)
	if sigRepo != nil {
		key += "|signatures in " + sigRepo.Name()
	}
	if vd, ok := v.cache.get(key); ok {
		return vd, true, nil
	}
	// Concurrent requests for the same verdict share one verification; each caller still
	// stops waiting when its own context ends.
	ran := false // set only by the caller whose function runs (before its result is sent)
	ch := v.flight.DoChan(key, func() (any, error) {
		ran = true
		vd, err := v.check(ctx, dig, ss, ignoreLog, ropts, nameOpts, sigRepo)
		if err != nil {
			return verdict{}, err
		}
		n := 0
		for _, s := range vd.signers {
			if s.Verified {
				n++
			}
		}
		ttl := v.opts.CacheTTL
		if n < required {
			ttl = v.opts.NegativeCacheTTL
		}
		if ttl > 0 {
			v.cache.put(key, vd, ttl)
		}
		return vd, nil
	})
	select {
	case res := <-ch:
		vd, _ := res.Val.(verdict)
		return vd, !ran && res.Err == nil, res.Err
	case <-ctx.Done():
		return verdict{}, false, ctx.Err()
	}
}

// check verifies every signer against the digest. It returns an error only for failures
// that are not a verdict (registry unreachable, context cancelled, …).
func (v *Verifier) check(ctx context.Context, dig name.Digest, ss []signer, ignoreLog bool,
	ropts []remote.Option, nameOpts []name.Option, sigRepo *name.Repository) (verdict, error) {
	base := cosign.CheckOpts{
		RegistryClientOpts: registryClientOpts(ropts, nameOpts, sigRepo),
		// Without it a signature copied from another image (its payload names that image's
		// digest) would be accepted.
		ClaimVerifier: cosign.SimpleClaimVerifier,
		IgnoreTlog:    ignoreLog,
		IgnoreSCT:     ignoreLog,
		RekorPubKeys:  v.opts.Trust.RekorPubKeys,
		CTLogPubKeys:  v.opts.Trust.CTLogPubKeys,
	}
	out := verdict{signers: make([]SignerResult, 0, len(ss))}
	for _, s := range ss {
		sr := SignerResult{Name: s.name, Keyless: s.keyless != nil}
		if s.keyless != nil {
			if msg := v.keylessUnavailable(ignoreLog); msg != "" {
				sr.Unchecked, sr.Err = true, msg
				out.signers = append(out.signers, sr)
				continue
			}
			co := base
			co.RootCerts = v.opts.Trust.FulcioRoots
			co.IntermediateCerts = v.opts.Trust.FulcioIntermediates
			co.Identities = []cosign.Identity{{
				Issuer: s.keyless.Issuer, IssuerRegExp: s.keyless.IssuerRegExp,
				Subject: s.keyless.Subject, SubjectRegExp: s.keyless.SubjectRegExp,
			}}
			ok, msg, err := verifyOnce(ctx, dig, &co)
			if err != nil {
				return verdict{}, err
			}
			sr.Verified = ok
			if !ok {
				sr.Unchecked, sr.Err = classifyOffline(msg)
			}
			out.signers = append(out.signers, sr)
			continue
		}
		if !ignoreLog && v.opts.Trust.RekorPubKeys == nil {
			sr.Fingerprint = s.keys[0].fingerprint
			sr.Unchecked = true
			sr.Err = "not verifiable offline: spec.transparencyLog.ignore is false, so the signature's Rekor entry must be verified, and no Rekor public key is available offline"
			out.signers = append(out.signers, sr)
			continue
		}
		var errs []string
		allUnchecked := true
		for _, k := range s.keys {
			co := base
			co.SigVerifier = k.verifier
			ok, msg, err := verifyOnce(ctx, dig, &co)
			if err != nil {
				return verdict{}, err
			}
			if ok {
				sr.Verified, sr.Fingerprint = true, k.fingerprint
				break
			}
			unchecked, m := classifyOffline(msg)
			allUnchecked = allUnchecked && unchecked
			if len(s.keys) > 1 {
				m = fmt.Sprintf("key %s (%s): %s", shortFP(k.fingerprint), k.state, m)
			}
			errs = append(errs, m)
		}
		if !sr.Verified {
			sr.Fingerprint = s.keys[0].fingerprint
			sr.Unchecked = allUnchecked
			sr.Err = strings.Join(errs, "; ")
		}
		out.signers = append(out.signers, sr)
	}
	return out, nil
}

func (v *Verifier) keylessUnavailable(ignoreLog bool) string {
	t := v.opts.Trust
	switch {
	case t.FulcioRoots == nil:
		return "keyless not verifiable offline: no Fulcio root certificates are available (they come from the Sigstore TUF repository, which is not contacted)"
	case !ignoreLog && t.RekorPubKeys == nil:
		return "keyless not verifiable offline: spec.transparencyLog.ignore is false and no Rekor public key is available"
	case !ignoreLog && t.CTLogPubKeys == nil:
		return "keyless not verifiable offline: spec.transparencyLog.ignore is false and no CT log public key is available to check the certificate's SCT"
	}
	return ""
}

// verifyOnce runs cosign.VerifyImageSignatures. ok with no error: verified; not ok with a
// message: a verification failure (a verdict); an error: the check could not be done.
func verifyOnce(ctx context.Context, dig name.Digest, co *cosign.CheckOpts) (bool, string, error) {
	_, _, err := cosign.VerifyImageSignatures(ctx, dig, co)
	if err == nil {
		return true, "", nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return false, "", ctxErr
	}
	var (
		noSigs   *cosign.ErrNoSignaturesFound
		noMatch  *cosign.ErrNoMatchingSignatures
		failure  *cosign.VerificationFailure
		noCert   *cosign.ErrNoCertificateFoundOnSignature
		notFound *cosign.ErrImageTagNotFound
	)
	switch {
	case errors.As(err, &noSigs):
		return false, "no signatures found", nil
	case errors.As(err, &noMatch), errors.As(err, &failure), errors.As(err, &noCert), errors.As(err, &notFound):
		msg := summarize(err.Error())
		if strings.Contains(msg, "invalid or missing digest in claim") {
			msg += " (a signature made for another image: copied or replayed)"
		}
		return false, msg, nil
	}
	return false, "", err
}

// summarize turns cosign's "no matching signatures: e1\n e2\n e1" into one line with each
// distinct reason once, counted when repeated.
func summarize(msg string) string {
	head, rest, found := strings.Cut(msg, ": ")
	if !found {
		return strings.Join(strings.Fields(msg), " ")
	}
	var order []string
	count := map[string]int{}
	for _, part := range strings.Split(rest, "\n") {
		part = strings.Join(strings.Fields(part), " ")
		if part == "" {
			continue
		}
		if count[part] == 0 {
			order = append(order, part)
		}
		count[part]++
	}
	for i, part := range order {
		if n := count[part]; n > 1 {
			order[i] = fmt.Sprintf("%s (%d signatures)", part, n)
		}
	}
	return head + ": " + strings.Join(order, "; ")
}

// classifyOffline recognises verification failures that only mean "this needs an online
// service": a signature without a Rekor bundle when the transparency log is required.
func classifyOffline(msg string) (bool, string) {
	if strings.Contains(msg, "rekor client not provided") {
		return true, "not verifiable offline: spec.transparencyLog.ignore is false and the signature carries no Rekor bundle, so Rekor would have to be queried (" + msg + ")"
	}
	return false, msg
}

func shortFP(fp string) string {
	if len(fp) > len("sha256:")+12 {
		return fp[:len("sha256:")+12]
	}
	return fp
}
