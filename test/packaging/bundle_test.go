package packaging

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// committedBundleInputs reads the generator inputs that are not in config/ back from the
// committed bundle (version, image, channels, replaces, createdAt), so that regenerating
// reproduces it exactly when config/ has not changed.
func committedBundleInputs(t *testing.T, root string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "bundle", "manifests", "signet.clusterserviceversion.yaml"))
	if err != nil {
		t.Fatalf("%v (generate it with hack/generate-bundle.sh)", err)
	}
	var csv struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec struct {
			Version  string `json:"version"`
			Replaces string `json:"replaces"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &csv); err != nil {
		t.Fatal(err)
	}
	data, err = os.ReadFile(filepath.Join(root, "bundle", "metadata", "annotations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ann struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := yaml.Unmarshal(data, &ann); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--version", csv.Spec.Version,
		"--image", csv.Metadata.Annotations["containerImage"],
		"--channels", ann.Annotations["operators.operatorframework.io.bundle.channels.v1"],
		"--default-channel", ann.Annotations["operators.operatorframework.io.bundle.channel.default.v1"],
		"--icon", filepath.Join(root, "config", "manifests", "bases", "signet-icon.svg"),
	}
	if csv.Spec.Replaces != "" {
		args = append(args, "--replaces", csv.Spec.Replaces)
	}
	if c := csv.Metadata.Annotations["createdAt"]; c != "" {
		args = append(args, "--created-at", c)
	}
	return args
}

// generate runs hack/generate-bundle on `kustomize build config/manifests` into a fresh
// directory and returns it; the Dockerfile is written as <dir>/bundle.Dockerfile.
func generate(t *testing.T, root string, args []string) string {
	t.Helper()
	manifests, _ := run(t, root, nil, kustomize(t), "build", filepath.Join(root, "config", "manifests"))
	out := t.TempDir()
	run(t, root, manifests, "go", append([]string{"run", "./hack/generate-bundle",
		"--output-dir", filepath.Join(out, "bundle"),
		"--dockerfile", filepath.Join(out, "bundle.Dockerfile")}, args...)...)
	return out
}

// tree returns the files under dir (relative path → content).
func tree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[rel], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func diffTrees(t *testing.T, what string, want, got map[string][]byte) {
	t.Helper()
	var names []string
	for n := range want {
		names = append(names, n)
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		w, inWant := want[n]
		g, inGot := got[n]
		switch {
		case !inGot:
			t.Errorf("%s: %s is missing", what, n)
		case !inWant:
			t.Errorf("%s: unexpected %s", what, n)
		case !bytes.Equal(w, g):
			t.Errorf("%s: %s differs: %s", what, n, firstDiff(w, g))
		}
	}
}

func firstDiff(a, b []byte) string {
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return "line " + strconv.Itoa(i+1) + ": committed " + quote(x) + ", regenerated " + quote(y)
		}
	}
	return "same lines, different bytes"
}

func quote(s string) string {
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return "«" + s + "»"
}

// TestBundleUpToDate regenerates the bundle twice from config/ and requires both runs to be
// byte-identical to each other and to the committed bundle/ and bundle.Dockerfile. It fails
// when config/ (the CRD, the RBAC markers, the Deployment, the samples, the CSV base) changed
// without `hack/generate-bundle.sh`.
func TestBundleUpToDate(t *testing.T) {
	root := repoRoot(t)
	args := committedBundleInputs(t, root)
	first := generate(t, root, args)
	second := generate(t, root, args)
	diffTrees(t, "two generator runs", tree(t, first), tree(t, second))

	want := tree(t, filepath.Join(root, "bundle"))
	got := tree(t, filepath.Join(first, "bundle"))
	diffTrees(t, "bundle/ is stale (run hack/generate-bundle.sh with VERSION="+args[1]+")", want, got)
	committedDF, err := os.ReadFile(filepath.Join(root, "bundle.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if regenerated := tree(t, first)["bundle.Dockerfile"]; !bytes.Equal(committedDF, regenerated) {
		t.Errorf("bundle.Dockerfile is stale: %s", firstDiff(committedDF, regenerated))
	}
}

// TestBundleValidates runs hack/validate-bundle.sh: the operator-framework validators
// (default + suite=operatorframework) and Signet's checks, failing on any error or warning.
// The first run compiles operator-framework/api in hack/tools/validate-bundle (about a minute).
func TestBundleValidates(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the operator-framework validators")
	}
	root := repoRoot(t)
	out, stderr := run(t, root, nil, filepath.Join(root, "hack", "validate-bundle.sh"))
	t.Logf("%s%s", out, stderr)
}
