// Package testenv starts a real kube-apiserver and etcd (controller-runtime envtest) for
// tests, with Signet's CRDs and, on request, Kyverno's CRDs read from the Kyverno module in
// the Go module cache (never copied into this repository).
//
// The control-plane binaries come from bin/k8s (built by hack/build-control-plane.sh) or
// from $KUBEBUILDER_ASSETS.
package testenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
)

// Module paths and the CRD directories inside them.
const (
	kyvernoModule     = "github.com/kyverno/kyverno"
	openReportsModule = "github.com/openreports/reports-api"
)

var kyvernoCRDSubdirs = []string{
	"config/crds/kyverno",
	"config/crds/policies.kyverno.io",
	"config/crds/policyreport",
	"config/crds/reports",
}

// RepoRoot walks up from the working directory to the directory holding Signet's go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && len(data) > 0 && containsModuleLine(data) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: cannot find the repository root (go.mod of github.com/signet-operator/signet)")
		}
		dir = parent
	}
}

func containsModuleLine(gomod []byte) bool {
	const want = "module github.com/signet-operator/signet\n"
	return len(gomod) >= len(want) && string(gomod[:len(want)]) == want
}

// AssetsDir returns the directory holding kube-apiserver, etcd and kubectl:
// $KUBEBUILDER_ASSETS, else <repo>/bin/k8s.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "bin", "k8s")
	if _, err := os.Stat(filepath.Join(dir, "kube-apiserver")); err != nil {
		return "", fmt.Errorf("testenv: no kube-apiserver in %s: run `make control-plane` (or hack/build-control-plane.sh) first", dir)
	}
	return dir, nil
}

var (
	moduleDirsOnce sync.Once
	moduleDirs     map[string]string
	moduleDirsErr  error
)

// ModuleDir returns the module cache directory of a module required by Signet's go.mod,
// downloading it through the module proxy if needed.
func ModuleDir(module string) (string, error) {
	moduleDirsOnce.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			moduleDirsErr = err
			return
		}
		moduleDirs = map[string]string{}
		for _, m := range []string{kyvernoModule, openReportsModule} {
			// -mod=mod so that a vendor directory or GOFLAGS never get in the way;
			// `go mod download` is needed because `go list -m` reports no Dir for a module
			// that is in go.mod but not yet in the cache.
			dl := exec.Command("go", "mod", "download", "-json", m)
			dl.Dir = root
			out, err := dl.Output()
			if err != nil {
				moduleDirsErr = fmt.Errorf("testenv: go mod download %s: %w", m, exitDetail(err))
				return
			}
			var info struct{ Dir, Error string }
			if err := json.Unmarshal(out, &info); err != nil {
				moduleDirsErr = fmt.Errorf("testenv: go mod download %s: %w", m, err)
				return
			}
			if info.Error != "" || info.Dir == "" {
				moduleDirsErr = fmt.Errorf("testenv: go mod download %s: %s", m, info.Error)
				return
			}
			moduleDirs[m] = info.Dir
		}
	})
	if moduleDirsErr != nil {
		return "", moduleDirsErr
	}
	dir, ok := moduleDirs[module]
	if !ok {
		return "", fmt.Errorf("testenv: module %s is not one of the known CRD sources", module)
	}
	return dir, nil
}

func exitDetail(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, ee.Stderr)
	}
	return err
}

// KyvernoCRDDirs returns Kyverno's CRD directories (kyverno.io, policies.kyverno.io,
// wgpolicyk8s.io, reports.kyverno.io) from the Kyverno module in the module cache.
func KyvernoCRDDirs() ([]string, error) {
	dir, err := ModuleDir(kyvernoModule)
	if err != nil {
		return nil, err
	}
	dirs := make([]string, 0, len(kyvernoCRDSubdirs))
	for _, sub := range kyvernoCRDSubdirs {
		dirs = append(dirs, filepath.Join(dir, sub))
	}
	return dirs, nil
}

// OpenReportsCRDDir returns the openreports.io CRD directory from the module cache.
func OpenReportsCRDDir() (string, error) {
	dir, err := ModuleDir(openReportsModule)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "config", "crd"), nil
}

// SignetCRDDir returns config/crd/bases of this repository.
func SignetCRDDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "config", "crd", "bases"), nil
}

// Scheme returns a scheme with client-go's types, apiextensions and Signet's API.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, trustv1alpha1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

type options struct {
	kyverno     bool
	openReports bool
	noSignet    bool
	apiserver   []string
}

// Option configures New and Start.
type Option func(*options)

// WithKyvernoCRDs installs Kyverno's CRDs from the module cache.
func WithKyvernoCRDs() Option { return func(o *options) { o.kyverno = true } }

// WithOpenReportsCRDs installs the openreports.io CRDs from the module cache.
func WithOpenReportsCRDs() Option { return func(o *options) { o.openReports = true } }

// WithoutSignetCRDs leaves out Signet's own CRD (e.g. to test the manager starting without it).
func WithoutSignetCRDs() Option { return func(o *options) { o.noSignet = true } }

// WithAPIServerFlag sets an extra kube-apiserver flag (name without dashes).
func WithAPIServerFlag(name, value string) Option {
	return func(o *options) { o.apiserver = append(o.apiserver, name, value) }
}

// New returns an unstarted envtest environment configured by opts.
func New(opts ...Option) (*envtest.Environment, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	var paths []string
	if !o.noSignet {
		dir, err := SignetCRDDir()
		if err != nil {
			return nil, err
		}
		paths = append(paths, dir)
	}
	if o.kyverno {
		dirs, err := KyvernoCRDDirs()
		if err != nil {
			return nil, err
		}
		paths = append(paths, dirs...)
	}
	if o.openReports {
		dir, err := OpenReportsCRDDir()
		if err != nil {
			return nil, err
		}
		paths = append(paths, dir)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     paths,
		ErrorIfCRDPathMissing: true,
		Scheme:                Scheme(),
	}
	args := env.ControlPlane.GetAPIServer().Configure()
	for i := 0; i+1 < len(o.apiserver); i += 2 {
		args.Set(o.apiserver[i], o.apiserver[i+1])
	}
	return env, nil
}

// Start starts a control plane for one test (or benchmark) and stops it on cleanup.
func Start(tb testing.TB, opts ...Option) (*rest.Config, client.Client) {
	tb.Helper()
	env, err := New(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		tb.Fatalf("testenv: starting kube-apiserver and etcd: %v", err)
	}
	tb.Cleanup(func() {
		if err := env.Stop(); err != nil {
			tb.Logf("testenv: stopping control plane: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		tb.Fatal(err)
	}
	return cfg, c
}

// InstallCRDs installs the CRDs found in dirs into a running control plane and waits until
// they are served (used to add Kyverno to a cluster after the operator started).
func InstallCRDs(cfg *rest.Config, dirs ...string) error {
	_, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: dirs, ErrorIfPathMissing: true})
	return err
}
