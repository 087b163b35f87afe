package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/tuf" //nolint:staticcheck // cosign v2's TrustedTransparencyLogPubKeys.AddTransparencyLogPubKey takes its StatusKind
	"k8s.io/apimachinery/pkg/types"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
	"github.com/signet-operator/signet/internal/verify"
)

const verifyHelp = `
Checks images the way the policy rendered for a TrustedRegistry checks them at admission:
the image must match spec.images (else it is denied when restrictRegistries is true), be
referenced by digest when digest.require is true and digest.mutate false (by default an
Enforce registry pins a tag to the digest it resolves to instead), and carry cosign
signatures by at least requiredSignatures distinct signers (a key name with its retiring
keys counts once). Signatures are verified with cosign against the registry, with the
signed payload's digest checked (a signature copied from another image is refused), and
offline: the transparency log is skipped only when spec.transparencyLog.ignore is true,
otherwise a signer is reported as not verifiable offline unless --rekor-public-key is
given. Keyless identities need --fulcio-roots (and, with the transparency log,
--rekor-public-key and --ctlog-public-key); without them they are reported as not
verifiable offline, never as passing.

Registry credentials come from the Docker config (~/.docker/config.json, credential
helpers). Plain-HTTP registries are used only with --insecure-registry (loopback and private
addresses always are).

Exit codes: 0 every image would be admitted; 1 at least one would be denied (or, in Audit
mode, reported as failing) or could not be verified offline; 2 usage, I/O or registry
errors, or a manifest the apiserver or the operator would refuse.`

func runVerify(ctx context.Context, args []string, s Streams) int {
	fs := newFlagSet("verify", "IMAGE [IMAGE...] -f FILE --key NAME=PATH [flags]", verifyHelp, s)
	var (
		files    stringsFlag
		active   keyFlag
		retiring keyFlag
		rekor    stringsFlag
		ctlog    stringsFlag
	)
	fs.Var(&files, "f", "TrustedRegistry manifest (YAML or JSON; - for standard input); repeatable")
	fs.Var(&active, "key", "NAME=PATH: the PEM public key of spec.keys entry NAME; repeatable")
	fs.Var(&retiring, "retiring-key", "NAME=PATH: a key being rotated out (Retiring), still accepted; repeatable")
	name := fs.String("name", "", "the TrustedRegistry to use when the files hold several")
	insecure := fs.Bool("insecure-registry", false, "allow plain-HTTP registries")
	fulcio := fs.String("fulcio-roots", "", "PEM bundle of Fulcio root (and intermediate) certificates, for keyless identities")
	fs.Var(&rekor, "rekor-public-key", "PEM public key of a Rekor log, to verify transparency-log bundles offline; repeatable")
	fs.Var(&ctlog, "ctlog-public-key", "PEM public key of a CT log, to verify the SCTs of keyless certificates offline; repeatable")
	output := fs.String("o", "text", "output format: text or json")
	concurrency := fs.Int("concurrency", verify.DefaultConcurrency, "images verified in parallel")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	pos, code, ok := parseFlags(fs, args, s)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		fmt.Fprintln(s.Err, "signet verify: no IMAGE given")
		fs.Usage()
		return ExitUsage
	}
	if len(files) == 0 {
		fmt.Fprintln(s.Err, "signet verify: -f FILE is required")
		fs.Usage()
		return ExitUsage
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(s.Err, "signet verify: -o must be text or json, not %q\n", *output)
		return ExitUsage
	}
	a, code := selectRegistry(ctx, files, *name, s)
	if a == nil {
		if code == ExitFailed {
			code = ExitUsage // an invalid manifest is an input error here, not a denial
		}
		return code
	}
	tr := a.registry
	ring, notes, err := buildRing(tr, active, retiring)
	if err != nil {
		fmt.Fprintf(s.Err, "signet verify: %v\n", err)
		return ExitUsage
	}
	for _, n := range notes {
		fmt.Fprintf(s.Err, "note: %s\n", n)
	}
	// the operator applies no policy for a spec it cannot render: say so instead of
	// verifying against a policy that would not exist
	probe := tr.DeepCopy()
	if probe.UID == "" {
		probe.UID = types.UID(placeholderUID)
	}
	if _, err := render.Render(render.Input{Registry: probe, Keys: ring, Engine: probeEngine(tr)}); err != nil {
		fmt.Fprintf(s.Err, "%s: TrustedRegistry %q: %v (the operator would apply no policy)\n", a.doc.loc, tr.Name, err)
		return ExitUsage
	}
	trust, err := loadTrust(*fulcio, rekor, ctlog)
	if err != nil {
		fmt.Fprintf(s.Err, "signet verify: %v\n", err)
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	v := verify.New(verify.Options{AllowInsecure: *insecure, Trust: trust})
	reqs := make([]verify.Request, 0, len(pos))
	for _, img := range pos {
		reqs = append(reqs, verify.Request{Registry: tr, Keys: ring, Image: img})
	}
	outcomes := v.VerifyMany(ctx, reqs, *concurrency)

	exit := ExitOK
	for _, o := range outcomes {
		switch {
		case o.Err != nil:
			exit = ExitUsage
		case !o.Result.OK && exit == ExitOK:
			exit = ExitFailed
		}
	}
	if *output == "json" {
		printJSON(s.Out, pos, outcomes)
	} else {
		for i, o := range outcomes {
			printVerdict(s.Out, pos[i], tr, o)
		}
	}
	return exit
}

func loadTrust(fulcio string, rekor, ctlog []string) (verify.Trust, error) {
	var t verify.Trust
	if fulcio != "" {
		roots, inter, err := loadCertificates(fulcio)
		if err != nil {
			return t, err
		}
		t.FulcioRoots, t.FulcioIntermediates = roots, inter
	}
	load := func(paths []string) (*cosign.TrustedTransparencyLogPubKeys, error) {
		if len(paths) == 0 {
			return nil, nil
		}
		keys := cosign.NewTrustedTransparencyLogPubKeys()
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			if err := keys.AddTransparencyLogPubKey(data, tuf.Active); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
		}
		return &keys, nil
	}
	var err error
	if t.RekorPubKeys, err = load(rekor); err != nil {
		return t, err
	}
	if t.CTLogPubKeys, err = load(ctlog); err != nil {
		return t, err
	}
	return t, nil
}

func printVerdict(w io.Writer, image string, tr *v1alpha1.TrustedRegistry, o verify.Outcome) {
	if o.Err != nil {
		fmt.Fprintf(w, "✗ ERROR    %s: %v\n", image, o.Err)
		return
	}
	r := o.Result
	verdict := "✓ ALLOWED "
	switch {
	case r.OK:
	case r.Inconclusive:
		verdict = "✗ UNVERIFIED (inconclusive offline)"
	case tr.Spec.Action == v1alpha1.ActionAudit:
		verdict = "✗ FAILS (Audit: admitted, reported as failing)"
	default:
		verdict = "✗ DENIED  "
	}
	fmt.Fprintf(w, "%s %s (TrustedRegistry %s)\n", verdict, image, tr.Name)
	if r.Digest != "" && !strings.Contains(image, "@"+r.Digest) {
		fmt.Fprintf(w, "    digest: %s\n", r.Digest)
	}
	fmt.Fprintf(w, "    %s\n", r.Reason)
	if len(r.Signers) > 0 {
		fmt.Fprintf(w, "    signers: %d of %d required verified\n", r.Verified, r.Required)
	}
	width := 0
	for _, sg := range r.Signers {
		width = max(width, len(sg.Name))
	}
	for _, sg := range r.Signers {
		mark := "✓"
		if !sg.Verified {
			mark = "✗"
		}
		line := fmt.Sprintf("      %s %-*s", mark, width, sg.Name)
		if sg.Fingerprint != "" {
			line += "  " + sg.Fingerprint
		}
		if sg.Err != "" {
			line += "  " + sg.Err
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	printAttestations(w, r.Attestations)
}

func printJSON(w io.Writer, images []string, outcomes []verify.Outcome) {
	list := make([]map[string]any, 0, len(outcomes))
	for i, o := range outcomes {
		it := map[string]any{"image": images[i]}
		if o.Result != nil {
			b, err := json.Marshal(o.Result)
			if err == nil {
				_ = json.Unmarshal(b, &it)
			}
		}
		if o.Err != nil {
			it["error"] = o.Err.Error()
		}
		list = append(list, it)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(list)
}
