package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// TestNothingRunsByAccident: a typo, a bare operator flag or a stray argument is a usage
// error (exit 2, usage on standard error, nothing on standard output). The binary runs
// without a kubeconfig, so an operator started by mistake would fail differently (exit 1,
// "loading kubeconfig").
func TestNothingRunsByAccident(t *testing.T) {
	cases := []struct {
		args []string
		want []string // on standard error
	}{
		{nil, []string{"Usage:", "signet <command>"}},
		{[]string{"lnit", "deploy/"}, []string{`unknown command "lnit"`, "Usage:"}},
		{[]string{"--leader-elect"}, []string{"signet manager --leader-elect", "Usage:"}},
		{[]string{"-metrics-bind-address=0"}, []string{"is not a command"}},
		{[]string{"version", "now"}, []string{"takes no arguments"}},
		{[]string{"help", "lint", "please"}, []string{"takes one command"}},
		{[]string{"lint", "-o", "xml", seedSample}, []string{"-o must be text or json"}},
		{[]string{"render", "-o", "table", "-f", seedSample}, []string{"-o must be yaml or json"}},
	}
	eachRunner(t, func(t *testing.T, r runner) {
		for _, tc := range cases {
			res := r.run(t, "", tc.args...)
			if res.code != 2 || res.out != "" {
				t.Errorf("signet %q: exit %d, stdout %q; want exit 2 and nothing on stdout\nstderr: %s", tc.args, res.code, res.out, res.err)
				continue
			}
			for _, w := range tc.want {
				if !strings.Contains(res.err, w) {
					t.Errorf("signet %q: stderr lacks %q:\n%s", tc.args, w, res.err)
				}
			}
		}
	})
}

// TestManagerIsExplicit: only `signet manager` (or `signet run`) starts the operator; its
// stray arguments are usage errors before it touches a cluster.
func TestManagerIsExplicit(t *testing.T) {
	b := signetBinary(t)
	b.run(t, "", "manager", "extra").want(t, 2, `unexpected argument "extra"`, "Usage: signet manager")
	b.run(t, "", "run", "--no-such-flag").want(t, 2, "flag provided but not defined")
	b.run(t, "", "manager", "--policy-layout=sharded").want(t, 2, `--policy-layout must be "shared" or "per-registry", not "sharded"`)
	res := b.run(t, "", "manager", "-h")
	res.want(t, 0, "-leader-elect", "-trust-namespace")
	if !strings.Contains(res.out, "Usage: signet manager") {
		t.Errorf("manager -h does not print its usage on stdout:\n%s", res.out)
	}
	// With flags only, it is the operator: it gets as far as the (absent) kubeconfig.
	for _, cmd := range []string{"manager", "run"} {
		b.run(t, "", cmd, "--metrics-bind-address=0", "--health-probe-bind-address=0").want(t, 1, "signet manager: loading kubeconfig")
	}
}

// TestVersionStamp: `signet version` prints the version and commit given by -ldflags.
func TestVersionStamp(t *testing.T) {
	res := signetBinary(t).run(t, "", "version")
	res.want(t, 0)
	if want := "signet " + stampVersion + " (commit " + stampCommit[:12] + ") go1."; !strings.HasPrefix(res.out, want) {
		t.Fatalf("version: %q, want prefix %q", res.out, want)
	}
}

// TestLintJSON: -o json is one object a pipeline can read, with the text mode's verdicts.
func TestLintJSON(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`apiVersion: trust.signet.dev/v1alpha1
kind: TrustedRegistry
metadata: {name: bad}
spec:
  images: ["*/*"]
  namespaces: {selector: {}}
  keys: [{name: ci, secretRef: {name: k}}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	type result struct {
		Location string   `json:"location"`
		Object   string   `json:"object"`
		OK       bool     `json:"ok"`
		Problems []string `json:"problems"`
	}
	type report struct {
		Valid   bool     `json:"valid"`
		Checked int      `json:"checked"`
		Invalid int      `json:"invalid"`
		Results []result `json:"results"`
	}
	parse := func(t *testing.T, out string) report {
		t.Helper()
		var rep report
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rep); err != nil {
			t.Fatalf("not one JSON report: %v\n%s", err, out)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			t.Fatalf("more than one JSON value:\n%s", out)
		}
		return rep
	}
	eachRunner(t, func(t *testing.T, r runner) {
		res := r.run(t, "", "lint", "-o", "json", samplesDir)
		res.want(t, 0)
		rep := parse(t, res.out)
		if !rep.Valid || rep.Checked != 6 || rep.Invalid != 0 || len(rep.Results) != 6 {
			t.Fatalf("samples: %+v", rep)
		}
		for _, x := range rep.Results {
			if !x.OK || len(x.Problems) != 0 || !strings.HasPrefix(x.Object, "TrustedRegistry ") || !strings.Contains(x.Location, ".yaml:") {
				t.Errorf("sample result %+v", x)
			}
		}

		res = r.run(t, "", "lint", "-o", "json", "-f", seedSample, "-f", bad)
		res.want(t, 1)
		rep = parse(t, res.out)
		if rep.Valid || rep.Checked != 2 || rep.Invalid != 1 || len(rep.Results) != 2 {
			t.Fatalf("seed + bad: %+v", rep)
		}
		got := rep.Results[1]
		if got.OK || got.Object != `TrustedRegistry "bad"` || got.Location != bad+":1" || len(got.Problems) != 2 {
			t.Fatalf("bad result: %+v", got)
		}
		for i, want := range []string{"image pattern must start with a registry host", "selector must have matchLabels or matchExpressions"} {
			if !strings.Contains(got.Problems[i], want) {
				t.Errorf("problem %d %q lacks %q", i, got.Problems[i], want)
			}
		}

		res = r.run(t, "", "lint", "-o", "json", "-q", "-f", seedSample, "-f", bad)
		res.want(t, 1)
		if rep = parse(t, res.out); len(rep.Results) != 1 || rep.Results[0].OK {
			t.Fatalf("-q keeps only problems: %+v", rep)
		}
	})
}

// TestRenderJSON: -o json prints the same policies as the YAML output, as one v1 List.
func TestRenderJSON(t *testing.T) {
	for _, layout := range []string{"per-registry", "shared"} {
		t.Run(layout, func(t *testing.T) {
			args := []string{"render", "-q", "--layout", layout, "-f", "testdata/rotation-threshold.yaml",
				"--key", "ci=testdata/keys/ci-2026.pub", "--key", "release=testdata/keys/release.pub", "--retiring-key", "ci=testdata/keys/ci-2025.pub"}
			eachRunner(t, func(t *testing.T, r runner) {
				y := r.run(t, "", args...)
				y.want(t, 0)
				j := r.run(t, "", append(args, "-o", "json")...)
				j.want(t, 0)
				var list struct {
					APIVersion string           `json:"apiVersion"`
					Kind       string           `json:"kind"`
					Items      []map[string]any `json:"items"`
				}
				if err := json.Unmarshal([]byte(j.out), &list); err != nil {
					t.Fatalf("not JSON: %v\n%s", err, j.out)
				}
				if list.APIVersion != "v1" || list.Kind != "List" {
					t.Fatalf("not a v1 List: %s %s", list.APIVersion, list.Kind)
				}
				var docs []map[string]any
				dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(y.out)), 4096)
				for {
					var m map[string]any
					if err := dec.Decode(&m); err != nil {
						if errors.Is(err, io.EOF) {
							break
						}
						t.Fatal(err)
					}
					docs = append(docs, m)
				}
				if len(docs) == 0 || !reflect.DeepEqual(normalize(t, docs), normalize(t, list.Items)) {
					t.Fatalf("JSON items differ from the YAML documents (%d vs %d)", len(list.Items), len(docs))
				}
			})
		})
	}
}

// normalize round-trips through JSON so that numbers compare alike.
func normalize(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
