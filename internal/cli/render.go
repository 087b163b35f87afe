package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
)

const renderHelp = `
Prints, as YAML, the Kyverno policies the operator applies for TrustedRegistry manifests,
byte for byte: each manifest is defaulted and validated as the apiserver does it (the CRD is
embedded in this binary), then passed to the operator's renderer.

--layout shared (the operator's default, --policy-layout=shared) renders every
TrustedRegistry found in the files into the shared policies (signet.ivp.enforce, …,
signet.cpol.all), as the operator would if they were all the cluster's registries; --name
keeps only the policies that hold that registry. --layout per-registry renders the one
policy of a single TrustedRegistry (choose it with --name when the files hold several).

Trust material that spec.sigstore names (Fulcio certificates, Rekor and CT log keys, the TUF
root.json) is read from files: --trust NAME/KEY=PATH for the ConfigMap or Secret NAME and
its data KEY, checked as the operator checks it.

Every key in spec.keys needs --key NAME=PATH (the PEM public key the Secret holds, e.g. the
cosign.pub written by cosign generate-key-pair). They are all Active: rotation state lives in
the cluster; pass a key that is being rotated out with --retiring-key NAME=PATH to see the
policy during the overlap.

The policy's ownerReferences carry the TrustedRegistry's UID only when metadata.uid is in
the manifest (copy it from the cluster to compare with the live policy, content-hash
annotation included); otherwise the uid is left out and the hash covers what is printed.
spec.policy.engine Auto renders an ImageValidatingPolicy unless --engine says otherwise.

-o json prints one JSON object instead, a v1 List whose items are the policies (what
kubectl apply -f and jq take); notes stay on standard error.

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
	var trust trustFlag
	fs.Var(&trust, "trust", "NAME/KEY=PATH: the trust material spec.sigstore names (ConfigMap or Secret NAME, data KEY), e.g. sigstore-roots/fulcio.pem=fulcio.pem; repeatable")
	engineFlag := fs.String("engine", "", "ImageValidatingPolicy or ClusterPolicy, when spec.policy.engine is Auto (default ImageValidatingPolicy)")
	name := fs.String("name", "", "per-registry: the TrustedRegistry to render when the files hold several; shared: print only the policies holding it")
	layout := fs.String("layout", "shared", "shared (the operator's default) or per-registry")
	quiet := fs.Bool("q", false, "no notes on standard error")
	output := fs.String("o", "yaml", "output format: yaml or json (a v1 List of the policies)")
	pos, code, ok := parseFlags(fs, args, s)
	if !ok {
		return code
	}
	if *output != "yaml" && *output != "json" {
		fmt.Fprintf(s.Err, "signet render: -o must be yaml or json, not %q\n", *output)
		return ExitUsage
	}
	asJSON := *output == "json"
	files = append(files, pos...)
	if len(files) == 0 {
		fmt.Fprintln(s.Err, "signet render: -f FILE is required")
		fs.Usage()
		return ExitUsage
	}
	switch *layout {
	case "shared":
		return renderShared(ctx, files, *name, *engineFlag, *quiet, asJSON, active, retiring, trust, s)
	case "per-registry":
	default:
		fmt.Fprintf(s.Err, "signet render: --layout must be shared or per-registry, not %q\n", *layout)
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
	// The registry restriction is the union with the other TrustedRegistries of the
	// input, as the operator renders it with the others of the cluster.
	peers := otherRegistries(ctx, files, tr.Name, s)
	if len(peers) > 0 {
		notes = append(notes, fmt.Sprintf("the registry restriction includes the %d other TrustedRegistries of the input", len(peers)))
	}
	roots, err := trustRootsFor(tr, trust)
	if err != nil {
		fmt.Fprintf(s.Err, "signet render: TrustedRegistry %q: %v\n", tr.Name, err)
		return ExitUsage
	}
	policy, err := render.Render(render.Input{Registry: tr, Keys: ring, Engine: engine, Peers: peers, TrustRoots: roots})
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
	var out []byte
	if asJSON {
		out, err = jsonList([]map[string]any{policy.Object})
	} else {
		out, err = yaml.Marshal(policy.Object)
	}
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

// renderShared prints the shared policies of all TrustedRegistries in the files.
func renderShared(ctx context.Context, files []string, name, engineFlag string, quiet, asJSON bool, active, retiring keyFlag, trust trustFlag, s Streams) int {
	all, code := admitRegistries(ctx, files, "", false, s)
	if all == nil {
		return code
	}
	var ins []render.Input
	var notes []string
	seen := map[string]bool{}
	noUID := false
	for _, a := range all {
		tr := a.registry
		if seen[tr.Name] {
			fmt.Fprintf(s.Err, "signet render: TrustedRegistry %q appears twice\n", tr.Name)
			return ExitUsage
		}
		seen[tr.Name] = true
		ring, n, err := buildRing(tr, active, retiring)
		if err != nil {
			fmt.Fprintf(s.Err, "signet render: TrustedRegistry %q: %v\n", tr.Name, err)
			return ExitUsage
		}
		notes = append(notes, n...)
		engine, note, err := resolveEngine(tr.Spec.Policy.Engine, engineFlag)
		if err != nil {
			fmt.Fprintf(s.Err, "signet render: %v\n", err)
			return ExitUsage
		}
		if note != "" {
			notes = append(notes, note)
		}
		if !a.hasUID {
			tr.UID = types.UID(placeholderUID)
			noUID = true
		}
		roots, err := trustRootsFor(tr, trust)
		if err != nil {
			fmt.Fprintf(s.Err, "signet render: TrustedRegistry %q: %v\n", tr.Name, err)
			return ExitUsage
		}
		ins = append(ins, render.Input{Registry: tr, Keys: ring, Engine: engine, TrustRoots: roots})
	}
	if name != "" && !seen[name] {
		fmt.Fprintf(s.Err, "signet render: no TrustedRegistry named %q in %s\n", name, strings.Join(files, ", "))
		return ExitUsage
	}
	if noUID {
		notes = append(notes, "metadata.uid is not in every manifest: the registries annotation's input hashes differ from the cluster's")
	}
	res, err := render.RenderShared(ins)
	if err != nil {
		fmt.Fprintf(s.Err, "signet render: %v\n", err)
		if render.IsInvalid(err) {
			return ExitFailed
		}
		return ExitUsage
	}
	var out []byte
	var items []map[string]any
	for _, p := range res.Policies {
		if name != "" && res.Placements[name].Policy != p.GetName() {
			continue
		}
		if asJSON {
			items = append(items, p.Object)
			continue
		}
		y, err := yaml.Marshal(p.Object)
		if err != nil {
			fmt.Fprintf(s.Err, "signet render: %v\n", err)
			return ExitUsage
		}
		if len(out) > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, y...)
	}
	if asJSON {
		var err error
		if out, err = jsonList(items); err != nil {
			fmt.Fprintf(s.Err, "signet render: %v\n", err)
			return ExitUsage
		}
	}
	if !quiet {
		for _, n := range sortedUniqueStrings(notes) {
			fmt.Fprintf(s.Err, "note: %s\n", n)
		}
	}
	if _, err := s.Out.Write(out); err != nil {
		return ExitUsage
	}
	return ExitOK
}

// jsonList is the policies as an indented v1 List, newline-terminated.
func jsonList(items []map[string]any) ([]byte, error) {
	if items == nil {
		items = []map[string]any{}
	}
	out, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

func sortedUniqueStrings(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// otherRegistries are the valid TrustedRegistries of the files other than name (none when
// a file is standard input, which can be read only once).
func otherRegistries(ctx context.Context, files []string, name string, s Streams) []*v1alpha1.TrustedRegistry {
	for _, f := range files {
		if f == "-" {
			return nil
		}
	}
	all, _ := admitRegistries(ctx, files, "", false, Streams{In: s.In, Out: io.Discard, Err: io.Discard})
	var out []*v1alpha1.TrustedRegistry
	for _, a := range all {
		if a.registry.Name != name {
			out = append(out, a.registry)
		}
	}
	return out
}

// trustFlag holds --trust NAME/KEY=PATH arguments.
type trustFlag struct{ keyFlag }

func (f *trustFlag) Set(v string) error {
	ref, p, ok := strings.Cut(v, "=")
	if n, k, okRef := strings.Cut(ref, "/"); !ok || !okRef || n == "" || k == "" || p == "" {
		return fmt.Errorf("want NAME/KEY=PATH (the ConfigMap or Secret and data key spec.sigstore names, and a file), got %q", v)
	}
	f.keyFlag = append(f.keyFlag, keyArg{name: ref, path: p})
	return nil
}

// trustRootsFor reads the trust material tr's spec.sigstore names from the --trust files,
// normalised as the operator normalises what it reads from the trust namespace.
func trustRootsFor(tr *v1alpha1.TrustedRegistry, trust trustFlag) (*render.TrustRoots, error) {
	refs := render.TrustMaterialRefs(&tr.Spec)
	if len(refs) == 0 {
		return nil, nil
	}
	paths := map[string]string{}
	for _, a := range trust.keyFlag {
		paths[a.name] = a.path
	}
	roots := &render.TrustRoots{}
	for _, e := range refs {
		id := e.Ref.SecretName + e.Ref.ConfigMapName + "/" + e.Ref.Key
		path, ok := paths[id]
		if !ok {
			return nil, fmt.Errorf("spec.sigstore %s names %s: pass --trust %s=PATH", e.Kind, id, id)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		norm, err := render.NormalizeTrustMaterial(e.Kind, data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		roots.Set(e.Kind, norm)
	}
	return roots, nil
}
