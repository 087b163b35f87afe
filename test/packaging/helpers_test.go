package packaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/signet-operator/signet/internal/testenv"
)

// Names in config/default.
const (
	operatorNamespace = "signet-system"
	serviceAccount    = "signet-controller-manager"
	deploymentName    = "signet-controller-manager"
	managerContainer  = "manager"
)

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

var (
	kustomizeOnce sync.Once
	kustomizePath string
	kustomizeErr  error
)

// kustomize returns bin/kustomize, building the version pinned in hack/tools/codegen when it
// is missing.
func kustomize(t testing.TB) string {
	t.Helper()
	root := repoRoot(t)
	kustomizeOnce.Do(func() {
		kustomizePath = filepath.Join(root, "bin", "kustomize")
		if _, err := os.Stat(kustomizePath); err == nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", kustomizePath, "sigs.k8s.io/kustomize/kustomize/v5")
		cmd.Dir = filepath.Join(root, "hack", "tools", "codegen")
		if out, err := cmd.CombinedOutput(); err != nil {
			kustomizeErr = fmt.Errorf("building kustomize: %w\n%s", err, out)
		}
	})
	if kustomizeErr != nil {
		t.Fatal(kustomizeErr)
	}
	return kustomizePath
}

// run runs a command and returns its stdout; it fails the test with stderr on error.
func run(t testing.TB, dir string, stdin []byte, name string, args ...string) (stdout, stderr []byte) {
	t.Helper()
	stdout, stderr, err := runErr(dir, stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr)
	}
	return stdout, stderr
}

func runErr(dir string, stdin []byte, name string, args ...string) (stdout, stderr []byte, err error) {
	return runIn(dir, nil, stdin, name, args...)
}

// runEnv runs a command with extra environment variables.
func runEnv(dir string, env []string, name string, args ...string) (stdout, stderr []byte, err error) {
	return runIn(dir, env, nil, name, args...)
}

func runIn(dir string, env []string, stdin []byte, name string, args ...string) (stdout, stderr []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.Bytes(), e.Bytes(), err
}

// build runs `kustomize build dir` (dir relative to the repository root, or absolute).
func build(t testing.TB, dir string) []*unstructured.Unstructured {
	t.Helper()
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(repoRoot(t), dir)
	}
	out, _ := run(t, "", nil, kustomize(t), "build", dir)
	objs, err := decode(out)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return objs
}

func decode(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(m) > 0 {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
}

// find returns the objects of a kind (and name, unless empty).
func find(objs []*unstructured.Unstructured, kind, name string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			out = append(out, o)
		}
	}
	return out
}

// one returns the single object of kind and name, failing the test otherwise.
func one(t testing.TB, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	found := find(objs, kind, name)
	if len(found) != 1 {
		t.Fatalf("want one %s %q, found %d", kind, name, len(found))
	}
	return found[0]
}

// convert turns an unstructured object into a typed one.
func convert(t testing.TB, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, into, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

// copyTree copies the directory src into dst.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}
