package cli

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/internal/render"
)

const renderHelp = `
Prints, as YAML, the Kyverno policy the operator applies for a TrustedRegistry manifest,
byte for byte: the manifest is defaulted and validated as the apiserver does it (the CRD is
embedded in this binary), then passed to the operator's renderer.

Every key in spec.keys needs --key NAME=PATH (the PEM public key the Secret holds, e.g. the
cosign.pub written by cosign generate-key-pair). They are all Active: rotation state lives in
the cluster; pass a key that is being rotated out with --retiring-key NAME=PATH to see the
policy during the overlap.

The policy's ownerReferences carry the TrustedRegistry's UID only when metadata.uid is in
the manifest (copy it from the cluster to compare with the live policy, content-hash
annotation included); otherwise the uid is left out and the hash covers what is printed.
spec.policy.engine Auto renders an ImageValidatingPolicy unless --engine says otherwise.

Exit codes: 0 printed; 1 the manifest is invalid or no policy can be rendered for it
(the operator would report InvalidSpec); 2 usage or I/O error.`

func runRender(ctx context.Context, args []string, s Streams) int {
	fs := newFlagSet("render", "-f FILE --key NAME=PATH [--key ...] [flags]", renderHelp, s)
	var (
		files    stringsFlag
		active   keyFlag
		retiring keyFlag
	)
	fs.Var(&files, "f", "TrustedRegistry manifest (YAML or JSON; - for standard input); repeatable")
	fs.Var(&active, "key", "NAME=PATH: the PEM public key of spec.keys entry NAME; repeatable")
	fs.Var(&retiring, "retiring-key", "NAME=PATH: a key being rotated out (Retiring), still accepted during the overlap; repeatable")
	engineFlag := fs.String("engine", "", "ImageValidatingPolicy or ClusterPolicy, when spec.policy.engine is Auto (default ImageValidatingPolicy)")
	name := fs.String("name", "", "the TrustedRegistry to render when the files hold several")
	quiet := fs.Bool("q", false, "no notes on standard error")
	pos, code, ok := parseFlags(fs, args, s)
	if !ok {
		return code
	}
	files = append(files, pos...)
	if len(files) == 0 {
		fmt.Fprintln(s.Err, "signet render: -f FILE is required")
		fs.Usage()
		return ExitUsage
	}
	a, code := selectRegistry(ctx, files, *name, s)
	if a == nil {
		return code
	}
	tr := a.registry
	ring, notes, err := buildRing(tr, active, retiring)
	if err != nil {
		fmt.Fprintf(s.Err, "signet render: %v\n", err)
		return ExitUsage
	}
	engine, note, err := resolveEngine(tr.Spec.Policy.Engine, *engineFlag)
	if err != nil {
		fmt.Fprintf(s.Err, "signet render: %v\n", err)
		return ExitUsage
	}
	if note != "" {
		notes = append(notes, note)
	}
	if !a.hasUID {
		tr.UID = types.UID(placeholderUID)
		notes = append(notes, "metadata.uid is not in the manifest: the owner reference is printed without it")
	}
	policy, err := render.Render(render.Input{Registry: tr, Keys: ring, Engine: engine})
	if err != nil {
		fmt.Fprintf(s.Err, "%s: TrustedRegistry %q: %v\n", a.doc.loc, tr.Name, err)
		if render.IsInvalid(err) {
			return ExitFailed
		}
		return ExitUsage
	}
	if !a.hasUID {
		if err := withoutOwnerUID(policy.Object); err != nil {
			fmt.Fprintf(s.Err, "signet render: %v\n", err)
			return ExitUsage
		}
	}
	out, err := yaml.Marshal(policy.Object)
	if err != nil {
		fmt.Fprintf(s.Err, "signet render: %v\n", err)
		return ExitUsage
	}
	if !*quiet {
		for _, n := range notes {
			fmt.Fprintf(s.Err, "note: %s\n", n)
		}
	}
	if _, err := s.Out.Write(out); err != nil {
		return ExitUsage
	}
	return ExitOK
}
