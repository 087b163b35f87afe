package verify

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/utils/ptr"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/ocitest"
	"github.com/signet-operator/signet/internal/render"
)

func TestSignedImageIsAdmitted(t *testing.T) {
	f := newFixture(t)
	kp := ocitest.MustGenerateKeyPair(t)
	d := f.push("team/app")
	f.sign(d, kp)
	ring := []render.Key{ringKey(t, "ci", kp, v1alpha1.KeyActive)}

	res := mustVerify(t, New(Options{}), Request{Registry: f.registry(nil, "ci"), Keys: ring, Image: d.String()})
	wantOK(t, res, true)
	if !res.Covered || res.Verified != 1 || res.Required != 1 || res.Digest != d.DigestStr() {
		t.Fatalf("unexpected result %+v", *res)
	}
	if len(res.Signers) != 1 || !res.Signers[0].Verified || res.Signers[0].Name != "ci" || res.Signers[0].Fingerprint != ring[0].Fingerprint {
		t.Fatalf("signers = %+v", res.Signers)
	}
	wantReason(t, res, "signed by 1 of the 1 required signer(s): ci")
}

func TestUnsignedImageIsDenied(t *testing.T) {
	f := newFixture(t)
	kp := ocitest.MustGenerateKeyPair(t)
	d := f.push("team/app")
	res := mustVerify(t, New(Options{}), Request{Registry: f.registry(nil, "ci"),
		Keys: []render.Key{ringKey(t, "ci", kp, v1alpha1.KeyActive)}, Image: d.String()})
	wantOK(t, res, false)
	if res.Verified != 0 || res.Signers[0].Err != "no signatures found" || res.Inconclusive {
		t.Fatalf("unexpected result %+v", *res)
	}
	wantReason(t, res, "image(s) "+d.String()+" not signed by any trusted signer of TrustedRegistry team (ci)")
}

func TestWrongKeyIsDenied(t *testing.T) {
	f := newFixture(t)
	trusted, other := ocitest.MustGenerateKeyPair(t), ocitest.MustGenerateKeyPair(t)
	d := f.push("team/app")
	f.sign(d, other)
	res := mustVerify(t, New(Options{}), Request{Registry: f.registry(nil, "ci"),
		Keys: []render.Key{ringKey(t, "ci", trusted, v1alpha1.KeyActive)}, Image: d.String()})
	wantOK(t, res, false)
	if !strings.Contains(res.Signers[0].Err, "no matching signatures") {
		t.Fatalf("signer error %q", res.Signers[0].Err)
	}
	t.Logf("wrong key: %s", res.Signers[0].Err)
}

func TestReplayedSignatureIsDenied(t *testing.T) {
	f := newFixture(t)
	kp := ocitest.MustGenerateKeyPair(t)
	signed, victim := f.push("team/app"), f.push("team/evil")
	f.sign(signed, kp)
	if err := ocitest.ReplaySignature(f.ctx, signed, victim); err != nil {
		t.Fatal(err)
	}
	v := New(Options{})
	ring := []render.Key{ringKey(t, "ci", kp, v1alpha1.KeyActive)}
	wantOK(t, mustVerify(t, v, Request{Registry: f.registry(nil, "ci"), Keys: ring, Image: signed.String()}), true)
	res := mustVerify(t, v, Request{Registry: f.registry(nil, "ci"), Keys: ring, Image: victim.String()})
	wantOK(t, res, false)
	if !strings.Contains(res.Signers[0].Err, "invalid or missing digest in claim") || !strings.Contains(res.Signers[0].Err, "replayed") {
		t.Fatalf("signer error %q", res.Signers[0].Err)
	}
}

func TestThresholdTwo(t *testing.T) {
	f := newFixture(t)
	ci, release := ocitest.MustGenerateKeyPair(t), ocitest.MustGenerateKeyPair(t)
	ring := []render.Key{ringKey(t, "ci", ci, v1alpha1.KeyActive), ringKey(t, "release", release, v1alpha1.KeyActive)}
	tr := f.registry(func(s *v1alpha1.TrustedRegistrySpec) { s.RequiredSignatures = 2 }, "ci", "release")
	v := New(Options{})

	one := f.push("team/one")
	f.sign(one, ci)
	res := mustVerify(t, v, Request{Registry: tr, Keys: ring, Image: one.String()})
	wantOK(t, res, false)
	if res.Verified != 1 || res.Required != 2 {
		t.Fatalf("unexpected result %+v", *res)
	}
	wantReason(t, res, "not signed by at least 2 of the 2 trusted signers of TrustedRegistry team (ci, release)", "verified: ci")

	two := f.push("team/two")
	f.sign(two, ci)
	f.sign(two, release)
	res = mustVerify(t, v, Request{Registry: tr, Keys: ring, Image: two.String()})
	wantOK(t, res, true)
	if res.Verified != 2 {
		t.Fatalf("unexpected result %+v", *res)
	}
}

func TestRetiringKeyIsAcceptedAndCountsOnce(t *testing.T) {
	f := newFixture(t)
	oldKey, newKey, release := ocitest.MustGenerateKeyPair(t), ocitest.MustGenerateKeyPair(t), ocitest.MustGenerateKeyPair(t)
	ring := []render.Key{
		ringKey(t, "ci", newKey, v1alpha1.KeyActive),
		ringKey(t, "ci", oldKey, v1alpha1.KeyRetiring),
		ringKey(t, "release", release, v1alpha1.KeyActive),
	}
	v := New(Options{})

	d := f.push("team/app")
	f.sign(d, oldKey)
	res := mustVerify(t, v, Request{Registry: f.registry(nil, "ci", "release"), Keys: ring, Image: d.String()})
	wantOK(t, res, true)
	if res.Signers[0].Name != "ci" || res.Signers[0].Fingerprint != ring[1].Fingerprint {
		t.Fatalf("signers = %+v", res.Signers)
	}

	// signed by the old and the new key of "ci": still one signer, so a threshold of 2 fails
	f.sign(d, newKey)
	tr2 := f.registry(func(s *v1alpha1.TrustedRegistrySpec) { s.RequiredSignatures = 2 }, "ci", "release")
	res = mustVerify(t, v, Request{Registry: tr2, Keys: ring, Image: d.String()})
	wantOK(t, res, false)
	if res.Verified != 1 {
		t.Fatalf("verified = %d, want 1 (old and new key of one name count once)", res.Verified)
	}
}

func TestNamesSharingAKeyAreOneSigner(t *testing.T) {
	f := newFixture(t)
	kp := ocitest.MustGenerateKeyPair(t)
	ring := []render.Key{ringKey(t, "a", kp, v1alpha1.KeyActive), ringKey(t, "b", kp, v1alpha1.KeyActive)}
	tr := f.registry(func(s *v1alpha1.TrustedRegistrySpec) { s.RequiredSignatures = 2 }, "a", "b")
	_, err := New(Options{}).Verify(context.Background(), Request{Registry: tr, Keys: ring, Image: f.reg.Ref("team/x@sha256:" + strings.Repeat("0", 64))})
	if !render.IsInvalid(err) || !strings.Contains(err.Error(), "only 1 distinct signers (a/b)") {
		t.Fatalf("err = %v, want an InvalidError about 1 distinct signer", err)
	}
	// the renderer refuses the same spec with the same words
	_, rerr := render.Render(render.Input{Registry: tr, Keys: ring, Engine: v1alpha1.EngineImageValidatingPolicy})
	if !render.IsInvalid(rerr) || !strings.Contains(rerr.Error(), "only 1 distinct signers (a/b)") {
		t.Fatalf("render err = %v", rerr)
	}
}

func TestTagWithoutDigest(t *testing.T) {
	f := newFixture(t)
	kp := ocitest.MustGenerateKeyPair(t)
	d := f.push("team/app") // also tagged :latest
	f.sign(d, kp)
	ring := []render.Key{ringKey(t, "ci", kp, v1alpha1.KeyActive)}
	v := New(Options{})
	tag := f.reg.Ref("team/app:latest")

	t.Run("require without mutate denies, naming the digest", func(t *testing.T) {
		res := mustVerify(t, v, Request{Registry: f.registry(nil, "ci"), Keys: ring, Image: tag})
		wantOK(t, res, false)
		if res.Digest != d.DigestStr() || res.Verified != 1 {
			t.Fatalf("unexpected result %+v", *res)
		}
		wantReason(t, res, "image "+tag+" does not have a digest", "reference it as "+d.String(), "signed by ci")
	})
	t.Run("require with mutate admits the resolved digest", func(t *testing.T) {
		tr := f.registry(func(s *v1alpha1.TrustedRegistrySpec) { s.Digest.Mutate = ptr.To(true) }, "ci")
		res := mustVerify(t, v, Request{Registry: tr, Keys: ring, Image: tag})
		wantOK(t, res, true)
		wantReason(t, res, "Kyverno pins the tag to "+d.DigestStr()+" at admission")
	})
	t.Run("no requirement verifies what the tag points to", func(t *testing.T) {
		tr := f.registry(func(s *v1alpha1.TrustedRegistrySpec) { s.Digest.Require = ptr.To(false) }, "ci")
		res := mustVerify(t, v, Request{Registry: tr, Keys: ring, Image: f.reg.Ref("team/app")})
		wantOK(t, res, true)
		unsigned := f.push("team/other")
		res = mustVerify(t, v, Request{Registry: tr, Keys: ring, Image: f.reg.Ref("team/other:latest")})
		wantOK(t, res, false)
		if res.Digest != unsigned.DigestStr() {
			t.Fatalf("digest %s, want %s", res.Digest, unsigned.DigestStr())
		}
	})
	t.Run("unknown tag is an error", func(t *testing.T) {
		tr := f.registry(func(s *v1alpha1.TrustedRegistrySpec) { s.Digest.Require = ptr.To(false) }, "ci")
		res, err := v.Verify(context.Background(), Request{Registry: tr, Keys: ring, Image: f.reg.Ref("team/app:nope")})
		if err == nil || res == nil || res.OK {
			t.Fatalf("want an error and a failed result, got %v, %+v", err, res)
		}
	})
}

func TestCoverage(t *testing.T) {
	f := newFixture(t)
	kp := ocitest.MustGenerateKeyPair(t)
	ring := []render.Key{ringKey(t, "ci", kp, v1alpha1.KeyActive)}
	v := New(Options{})
	for _, img := range []string{"nginx", f.reg.Ref("other/app:1"), f.reg.Host() + "0/team/app"} {
		res := mustVerify(t, v, Request{Registry: f.registry(nil, "ci"), Keys: ring, Image: img})
		wantOK(t, res, false)
		if res.Covered {
			t.Fatalf("%s covered", img)
		}
		wantReason(t, res, "not covered by this TrustedRegistry", "would be denied by restrictRegistries")

		open := f.registry(func(s *v1alpha1.TrustedRegistrySpec) { s.RestrictRegistries = ptr.To(false) }, "ci")
		res = mustVerify(t, v, Request{Registry: open, Keys: ring, Image: img})
		wantOK(t, res, true)
		wantReason(t, res, "not covered by this TrustedRegistry", "restrictRegistries is false")
	}
}

func TestCacheHit(t *testing.T) {
	f := newFixture(t)
	kp := ocitest.MustGenerateKeyPair(t)
	d := f.push("team/app")
	f.sign(d, kp)
	ring := []render.Key{ringKey(t, "ci", kp, v1alpha1.KeyActive)}
	ct := &countingTransport{}
	now := time.Unix(1_700_000_000, 0)
	v := New(Options{Transport: ct, Now: func() time.Time { return now }})
	req := Request{Registry: f.registry(nil, "ci"), Keys: ring, Image: d.String()}

	first := mustVerify(t, v, req)
	wantOK(t, first, true)
	if first.Cached {
		t.Fatal("first verification reported as cached")
	}
	requests := ct.n.Load()
	if requests == 0 {
		t.Fatal("no registry request was made through the transport")
	}
	second := mustVerify(t, v, req)
	wantOK(t, second, true)
	if !second.Cached || ct.n.Load() != requests {
		t.Fatalf("second verification: cached=%t, registry requests %d -> %d", second.Cached, requests, ct.n.Load())
	}
	if st := v.CacheStats(); st.Hits != 1 || st.Entries != 1 {
		t.Fatalf("stats %+v", st)
	}

	// another key set is another entry
	other := ocitest.MustGenerateKeyPair(t)
	res := mustVerify(t, v, Request{Registry: f.registry(nil, "ci"), Keys: []render.Key{ringKey(t, "ci", other, v1alpha1.KeyActive)}, Image: d.String()})
	wantOK(t, res, false)
	if res.Cached {
		t.Fatal("a different key set hit the cache")
	}

	// expiry makes the entry go away
	now = now.Add(DefaultCacheTTL + time.Second) // an entry is good up to and including its TTL
	third := mustVerify(t, v, req)
	if third.Cached {
		t.Fatal("expired entry was used")
	}

	// a denial is cached only briefly: signing afterwards is seen after NegativeCacheTTL
	u := f.push("team/late")
	ureq := Request{Registry: f.registry(nil, "ci"), Keys: ring, Image: u.String()}
	wantOK(t, mustVerify(t, v, ureq), false)
	f.sign(u, kp)
	if r := mustVerify(t, v, ureq); r.OK || !r.Cached {
		t.Fatalf("within the negative TTL: %+v", *r)
	}
	now = now.Add(DefaultNegativeCacheTTL + time.Second)
	wantOK(t, mustVerify(t, v, ureq), true)
}

func TestCacheIsPerRepository(t *testing.T) {
	f := newFixture(t)
	kp := ocitest.MustGenerateKeyPair(t)
	ring := []render.Key{ringKey(t, "ci", kp, v1alpha1.KeyActive)}
	d := f.push("team/app")
	f.sign(d, kp)
	// the same image content pushed to another repository, without its signature
	img, err := remote.Image(d)
	if err != nil {
		t.Fatal(err)
	}
	copyTag, err := name.ParseReference(f.reg.Ref("team/copy:v1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(copyTag, img); err != nil {
		t.Fatal(err)
	}
	copyRef := f.reg.Ref("team/copy@" + d.DigestStr())
	v := New(Options{})
	wantOK(t, mustVerify(t, v, Request{Registry: f.registry(nil, "ci"), Keys: ring, Image: d.String()}), true)
	res := mustVerify(t, v, Request{Registry: f.registry(nil, "ci"), Keys: ring, Image: copyRef})
	if res.Cached || res.OK {
		t.Fatalf("verdict of another repository reused: %+v", *res)
	}
}

func TestVerifyManyKeepsOrderAndSharesWork(t *testing.T) {
	f := newFixture(t)
	kp := ocitest.MustGenerateKeyPair(t)
	ring := []render.Key{ringKey(t, "ci", kp, v1alpha1.KeyActive)}
	tr := f.registry(nil, "ci")
	signed := f.push("team/signed")
	f.sign(signed, kp)
	unsigned := f.push("team/unsigned")

	var reqs []Request
	for i := 0; i < 12; i++ {
		img := signed.String()
		switch i % 3 {
		case 1:
			img = unsigned.String()
		case 2:
			img = "docker.io/library/nginx:1.27"
		}
		reqs = append(reqs, Request{Registry: tr, Keys: ring, Image: img})
	}
	v := New(Options{})
	out := v.VerifyMany(context.Background(), reqs, 3)
	if len(out) != len(reqs) {
		t.Fatalf("%d outcomes for %d requests", len(out), len(reqs))
	}
	for i, o := range out {
		if o.Err != nil {
			t.Fatalf("request %d: %v", i, o.Err)
		}
		if o.Result.Image != reqs[i].Image || o.Result.OK != (i%3 == 0) {
			t.Fatalf("request %d (%s): %+v", i, reqs[i].Image, *o.Result)
		}
	}
	// two distinct digests: every other verification was served by the cache or by the
	// in-flight verification of the same key
	if st := v.CacheStats(); st.Entries != 2 {
		t.Fatalf("cache stats %+v, want 2 entries", st)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, o := range v.VerifyMany(ctx, reqs[:1], 1) {
		if o.Err == nil && (o.Result == nil || !o.Result.Cached) {
			t.Fatalf("cancelled context: %+v", o)
		}
	}
}

func TestConcurrentVerifyOfOneDigestVerifiesOnce(t *testing.T) {
	f := newFixture(t)
	kp := ocitest.MustGenerateKeyPair(t)
	d := f.push("team/app")
	f.sign(d, kp)
	ct := &countingTransport{}
	v := New(Options{Transport: ct})
	req := Request{Registry: f.registry(nil, "ci"), Keys: []render.Key{ringKey(t, "ci", kp, v1alpha1.KeyActive)}, Image: d.String()}
	// one sequential verification to learn how many requests it costs
	single := New(Options{Transport: &countingTransport{}})
	mustVerify(t, single, req)
	perVerification := single.opts.Transport.(*countingTransport).n.Load()

	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res, err := v.Verify(context.Background(), req); err != nil || !res.OK {
				t.Errorf("verify: %v %+v", err, res)
			}
		}()
	}
	wg.Wait()
	if got := ct.n.Load(); got != perVerification {
		t.Fatalf("8 concurrent verifications made %d registry requests, one makes %d", got, perVerification)
	}
}

func TestKeylessNotVerifiableOffline(t *testing.T) {
	f := newFixture(t)
	kp := ocitest.MustGenerateKeyPair(t)
	d := f.push("team/app")
	f.sign(d, kp)
	tr := f.registry(func(s *v1alpha1.TrustedRegistrySpec) {
		s.Keyless = []v1alpha1.KeylessIdentity{{Name: "github", Issuer: "https://token.actions.githubusercontent.com", SubjectRegExp: "^https://github.com/org/.+$"}}
	})
	res := mustVerify(t, New(Options{}), Request{Registry: tr, Image: d.String()})
	wantOK(t, res, false)
	if !res.Inconclusive || len(res.Signers) != 1 || !res.Signers[0].Unchecked || !res.Signers[0].Keyless ||
		!strings.Contains(res.Signers[0].Err, "keyless not verifiable offline") {
		t.Fatalf("unexpected result %+v", *res)
	}
	wantReason(t, res, "inconclusive")

	// a key signer carries the verdict on its own: the keyless identity does not matter
	tr.Spec.Keys = []v1alpha1.PublicKey{{Name: "ci"}}
	res = mustVerify(t, New(Options{}), Request{Registry: tr, Keys: []render.Key{ringKey(t, "ci", kp, v1alpha1.KeyActive)}, Image: d.String()})
	wantOK(t, res, true)
	if res.Signers[0].Name != "ci" || res.Signers[1].Name != "keyless:github" || !res.Signers[1].Unchecked {
		t.Fatalf("signers %+v", res.Signers)
	}
}

func TestTransparencyLogRequiredIsNotVerifiableOffline(t *testing.T) {
	f := newFixture(t)
	kp := ocitest.MustGenerateKeyPair(t)
	d := f.push("team/app")
	f.sign(d, kp)
	tr := f.registry(func(s *v1alpha1.TrustedRegistrySpec) { s.TransparencyLog.Ignore = ptr.To(false) }, "ci")
	res := mustVerify(t, New(Options{}), Request{Registry: tr, Keys: []render.Key{ringKey(t, "ci", kp, v1alpha1.KeyActive)}, Image: d.String()})
	wantOK(t, res, false)
	if !res.Inconclusive || !res.Signers[0].Unchecked || !strings.Contains(res.Signers[0].Err, "not verifiable offline") {
		t.Fatalf("unexpected result %+v", *res)
	}
}

func TestKeylessWithTrustMaterial(t *testing.T) {
	f := newFixture(t)
	ca := newFakeFulcio(t)
	const issuer = "https://token.actions.githubusercontent.com"
	d := f.push("team/app")
	ca.signKeyless(t, f, d, issuer, "release@example.com")
	other := f.push("team/other")
	ca.signKeyless(t, f, other, "https://accounts.google.com", "release@example.com")

	tr := f.registry(func(s *v1alpha1.TrustedRegistrySpec) {
		s.Keyless = []v1alpha1.KeylessIdentity{{Name: "release", Issuer: issuer, SubjectRegExp: `^release@example\.com$`}}
	})
	v := New(Options{Trust: Trust{FulcioRoots: ca.pool}})
	res := mustVerify(t, v, Request{Registry: tr, Image: d.String()})
	wantOK(t, res, true)
	if !res.Signers[0].Verified || res.Signers[0].Name != "keyless:release" {
		t.Fatalf("signers %+v", res.Signers)
	}
	res = mustVerify(t, v, Request{Registry: tr, Image: other.String()})
	wantOK(t, res, false)
	if res.Inconclusive || res.Signers[0].Unchecked {
		t.Fatalf("a wrong issuer is a verdict, not an offline limitation: %+v", *res)
	}
	if !strings.Contains(res.Signers[0].Err, "issuer") {
		t.Fatalf("wrong issuer: error %q does not name the issuer", res.Signers[0].Err)
	}
	t.Logf("wrong issuer: %s", res.Signers[0].Err)

	// another CA's certificates do not verify
	res = mustVerify(t, New(Options{Trust: Trust{FulcioRoots: newFakeFulcio(t).pool}}), Request{Registry: tr, Image: d.String()})
	wantOK(t, res, false)
	t.Logf("other CA: %s", res.Signers[0].Err)
}

func TestInvalidKeysAreErrors(t *testing.T) {
	f := newFixture(t)
	kp := ocitest.MustGenerateKeyPair(t)
	good := ringKey(t, "ci", kp, v1alpha1.KeyActive)
	for name, k := range map[string]render.Key{
		"bad name":            {Name: "CI", Fingerprint: good.Fingerprint, PEM: good.PEM, State: good.State},
		"bad fingerprint":     {Name: "ci", Fingerprint: "sha256:abc", PEM: good.PEM, State: good.State},
		"mismatching PEM":     {Name: "ci", Fingerprint: "sha256:" + strings.Repeat("0", 64), PEM: good.PEM, State: good.State},
		"not a PEM":           {Name: "ci", Fingerprint: good.Fingerprint, PEM: "nope", State: good.State},
		"unknown state":       {Name: "ci", Fingerprint: good.Fingerprint, PEM: good.PEM, State: "Revoked"},
		"private key as data": {Name: "ci", Fingerprint: good.Fingerprint, PEM: string(kp.PrivateKeyPEM), State: good.State},
	} {
		if _, err := New(Options{}).Verify(context.Background(), Request{Registry: f.registry(nil, "ci"), Keys: []render.Key{k}, Image: "x"}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := New(Options{}).Verify(context.Background(), Request{Image: "x"}); err == nil {
		t.Error("nil registry: no error")
	}
	if _, err := New(Options{}).Verify(context.Background(), Request{Registry: f.registry(nil), Image: "x"}); !render.IsInvalid(err) {
		t.Errorf("no signers: %v", err)
	}
}

// TestSignersMatchRenderer checks that verify groups and names signers exactly as the
// rendered policy does, by comparing with the signer list in the policy's own message.
func TestSignersMatchRenderer(t *testing.T) {
	f := newFixture(t)
	a, b, c := ocitest.MustGenerateKeyPair(t), ocitest.MustGenerateKeyPair(t), ocitest.MustGenerateKeyPair(t)
	rings := map[string][]render.Key{
		"one":      {ringKey(t, "ci", a, v1alpha1.KeyActive)},
		"rotation": {ringKey(t, "ci", a, v1alpha1.KeyActive), ringKey(t, "ci", b, v1alpha1.KeyRetiring)},
		"shared":   {ringKey(t, "zeta", a, v1alpha1.KeyActive), ringKey(t, "alpha", a, v1alpha1.KeyActive), ringKey(t, "mid", c, v1alpha1.KeyActive)},
		"chain":    {ringKey(t, "x", a, v1alpha1.KeyActive), ringKey(t, "y", a, v1alpha1.KeyRetiring), ringKey(t, "y", b, v1alpha1.KeyActive), ringKey(t, "z", b, v1alpha1.KeyRetiring), ringKey(t, "w", c, v1alpha1.KeyActive)},
	}
	msgRE := regexp.MustCompile(`not signed by any trusted signer of TrustedRegistry team \(([^)]*)\)`)
	unsigned := f.push("team/unsigned")
	for name, ring := range rings {
		t.Run(name, func(t *testing.T) {
			tr := f.registry(func(s *v1alpha1.TrustedRegistrySpec) {
				s.Keyless = []v1alpha1.KeylessIdentity{{Name: "gh", Issuer: "https://issuer.example", Subject: "me"}}
			})
			policy, err := render.Render(render.Input{Registry: tr, Keys: ring, Engine: v1alpha1.EngineImageValidatingPolicy})
			if err != nil {
				t.Fatal(err)
			}
			m := msgRE.FindStringSubmatch(fmt.Sprint(policy.Object["spec"]))
			if m == nil {
				t.Fatal("no signature message in the rendered policy")
			}
			res := mustVerify(t, New(Options{}), Request{Registry: tr, Keys: ring, Image: unsigned.String()})
			var names []string
			for _, s := range res.Signers {
				names = append(names, s.Name)
			}
			if got := strings.Join(names, ", "); got != m[1] {
				t.Fatalf("verify signers %q, policy signers %q", got, m[1])
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	for in, want := range map[string]string{
		"no matching signatures: a\n b\n a":        "no matching signatures: a (2 signatures); b",
		"no matching signatures: x: y\n x: y":      "no matching signatures: x: y (2 signatures)",
		"no signatures found":                      "no signatures found",
		"cert verification failed:  two  spaces\n": "cert verification failed: two spaces",
	} {
		if got := summarize(in); got != want {
			t.Errorf("summarize(%q) = %q, want %q", in, got, want)
		}
	}
}
