package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/render"
)

const lintHelp = `
Validates TrustedRegistry manifests offline, as the apiserver validates them on create:
unknown fields (refused by kubectl's default strict field validation), the OpenAPI schema
with its defaults, list uniqueness and the CEL x-kubernetes-validations rules of the CRD
embedded in this binary. Messages are the apiserver's, prefixed with the file, the line
where the document starts and the object.

Then, for manifests the apiserver accepts, the operator's own checks (the renderer's, with
a distinct stand-in key per spec.keys entry): what would make it report InvalidSpec.
Finally, a TrustedRegistry name defined twice across the inputs is an error.

Inputs are files (several YAML documents each, and kind: List), directories (walked for
*.yaml, *.yml and *.json) and - for standard input. Objects of other kinds are skipped.

-o json prints one JSON object instead of lines: {"valid", "checked", "invalid",
"results": [{"location", "object", "ok", "problems"}]}, one result per TrustedRegistry or
unreadable document, in input order (-q leaves out the valid ones).

Exit codes: 0 every TrustedRegistry is valid; 1 at least one problem, or no TrustedRegistry
found; 2 usage or I/O error.`

// lintReport is the -o json output of signet lint.
type lintReport struct {
	Valid   bool         `json:"valid"`
	Checked int          `json:"checked"`
	Invalid int          `json:"invalid"`
	Results []lintResult `json:"results"`
}

// lintResult is one TrustedRegistry (or one document that does not parse).
type lintResult struct {
	Location string   `json:"location"` // file:line where the document starts
	Object   string   `json:"object"`   // Kind "name"
	OK       bool     `json:"ok"`
	Problems []string `json:"problems,omitempty"`
}

func runLint(ctx context.Context, args []string, s Streams) int {
	fs := newFlagSet("lint", "[-f FILE]... [FILE|DIR|-]... [flags]", lintHelp, s)
	var files stringsFlag
	fs.Var(&files, "f", "manifest file or directory (- for standard input); repeatable")
	quiet := fs.Bool("q", false, "print only problems")
	skipOperator := fs.Bool("schema-only", false, "only the apiserver's checks, not the operator's")
	output := fs.String("o", "text", "output format: text or json")
	pos, code, ok := parseFlags(fs, args, s)
	if !ok {
		return code
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(s.Err, "signet lint: -o must be text or json, not %q\n", *output)
		return ExitUsage
	}
	files = append(files, pos...)
	if len(files) == 0 {
		fmt.Fprintln(s.Err, "signet lint: no input: pass -f FILE (or FILE, DIR, -)")
		fs.Usage()
		return ExitUsage
	}
	docs, err := readDocuments(files, s.In)
	if err != nil {
		fmt.Fprintf(s.Err, "signet lint: %v\n", err)
		return ExitUsage
	}
	v, err := trValidator()
	if err != nil {
		fmt.Fprintf(s.Err, "signet lint: %v\n", err)
		return ExitUsage
	}
	var (
		checked, invalid int
		seen             = map[string]string{}
		results          []lintResult
	)
	// report records one finding ("ok" for a valid object) and prints it in text mode.
	report := func(loc, what, msg string) {
		if *output == "text" {
			fmt.Fprintf(s.Out, "%s: %s: %s\n", loc, what, msg)
		}
		if n := len(results); n > 0 && results[n-1].Location == loc && results[n-1].Object == what {
			results[n-1].Problems = append(results[n-1].Problems, msg)
			return
		}
		r := lintResult{Location: loc, Object: what, OK: msg == "ok"}
		if !r.OK {
			r.Problems = []string{msg}
		}
		results = append(results, r)
	}
	for _, d := range docs {
		if d.err != nil {
			invalid++
			report(d.loc, "document", d.err.Error())
			continue
		}
		if !v.Handles(d.obj) {
			continue
		}
		checked++
		what := d.describe()
		a, problems, err := admit(ctx, v, d)
		if err != nil {
			fmt.Fprintf(s.Err, "signet lint: %v\n", err)
			return ExitUsage
		}
		if len(problems) > 0 {
			invalid++
			for _, p := range problems {
				report(d.loc, what, p)
			}
			continue
		}
		var bad bool
		if prev, dup := seen[a.registry.Name]; dup {
			report(d.loc, what, fmt.Sprintf("defined twice: also at %s (one cluster holds one TrustedRegistry of a name)", prev))
			bad = true
		} else {
			seen[a.registry.Name] = d.loc
		}
		if !*skipOperator {
			if msg := operatorCheck(a.registry); msg != "" {
				report(d.loc, what, "operator: "+msg+" (the operator would report PolicyApplied=False, reason InvalidSpec, and apply no policy)")
				bad = true
			}
		}
		if bad {
			invalid++
			continue
		}
		if !*quiet {
			report(d.loc, what, "ok")
		}
	}
	if *output == "json" {
		if results == nil {
			results = []lintResult{}
		}
		rep := lintReport{Valid: checked > 0 && invalid == 0, Checked: checked, Invalid: invalid, Results: results}
		enc := json.NewEncoder(s.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return ExitUsage
		}
		if !rep.Valid {
			return ExitFailed
		}
		return ExitOK
	}
	switch {
	case checked == 0 && invalid == 0:
		fmt.Fprintf(s.Out, "signet lint: no TrustedRegistry found in %d document(s)\n", len(docs))
		return ExitFailed
	case invalid > 0:
		fmt.Fprintf(s.Out, "signet lint: %d of %d TrustedRegistr%s invalid\n", invalid, checked, plural(checked, "y", "ies"))
		return ExitFailed
	}
	if !*quiet {
		fmt.Fprintf(s.Out, "signet lint: %d TrustedRegistr%s valid\n", checked, plural(checked, "y", "ies"))
	}
	return ExitOK
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// operatorCheck renders the TrustedRegistry with a distinct stand-in key per spec.keys
// entry (the most favourable ring: keys that share material can only lower the number of
// signers) and returns the renderer's complaint, if any.
func operatorCheck(tr *v1alpha1.TrustedRegistry) string {
	probe := tr.DeepCopy()
	if probe.UID == "" {
		probe.UID = types.UID(placeholderUID)
	}
	ring := make([]render.Key, 0, len(probe.Spec.Keys))
	names := make([]string, 0, len(probe.Spec.Keys))
	for _, k := range probe.Spec.Keys {
		names = append(names, k.Name)
	}
	sort.Strings(names)
	for _, n := range names {
		pk, err := standInKey()
		if err != nil {
			return "" // cannot happen; do not turn it into a lint finding
		}
		ring = append(ring, render.Key{Name: n, Fingerprint: pk.Fingerprint, PEM: pk.PEM, State: v1alpha1.KeyActive})
	}
	engine := probe.Spec.Policy.Engine
	if engine != v1alpha1.EngineClusterPolicy {
		engine = v1alpha1.EngineImageValidatingPolicy
	}
	in := render.Input{Registry: probe, Keys: ring, Engine: engine}
	if probe.Spec.Sigstore != nil {
		// the trust material is in the cluster: stand-ins of the right kinds
		roots, err := standInTrustRoots()
		if err != nil {
			return ""
		}
		in.TrustRoots = roots
	}
	if _, err := render.Render(in); err != nil {
		return err.Error()
	}
	return ""
}

// standInTUFRoot has the shape of TUF root metadata; lint only renders with it.
const standInTUFRoot = `{"signed":{"_type":"root","version":1,"keys":{"k":{}},"roles":{"root":{}}},"signatures":[{}]}`

// standInTrustRoots is a self-signed CA certificate and two public keys, for the trust
// material spec.sigstore names.
func standInTrustRoots() (*render.TrustRoots, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "signet lint stand-in"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return nil, err
	}
	pk, err := standInKey()
	if err != nil {
		return nil, err
	}
	return &render.TrustRoots{Fulcio: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), Rekor: pk.PEM, CTLog: pk.PEM, TUFRoot: standInTUFRoot}, nil
}

func standInKey() (*keys.PublicKey, error) {
	pemKey, err := keys.StandInPEM()
	if err != nil {
		return nil, err
	}
	return keys.ParsePublicKey(pemKey)
}
