// Package kit holds what Signet's benchmark programs (test/bench/controller, test/bench/admission)
// share: machine and version facts for their reports, writing them, and a bounded parallel
// loop.
package kit

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/signet-operator/signet/internal/testenv"
)

// Machine is what both reports say of the machine.
type Machine struct {
	NumCPU      int        `json:"nproc"`
	CPUModel    string     `json:"cpuModel"`
	MemTotal    string     `json:"memTotal"`
	LoadAtStart [3]float64 `json:"loadAvgAtStart"`
	LoadAtEnd   [3]float64 `json:"loadAvgAtEnd"` // set by the caller at the end
	Note        string     `json:"note"`
}

// MachineInfo describes this machine now.
func MachineInfo() Machine {
	return Machine{
		NumCPU:      runtime.NumCPU(),
		CPUModel:    ProcField("/proc/cpuinfo", "model name"),
		MemTotal:    ProcField("/proc/meminfo", "MemTotal"),
		LoadAtStart: LoadAvg(),
		Note: "figures are from one run on a shared machine: compare ratios measured in the same run, " +
			"not absolute numbers across runs",
	}
}

// Versions are the versions both reports name.
type Versions struct {
	Go                string `json:"go"`
	KubeAPIServer     string `json:"kubeAPIServer"`
	Etcd              string `json:"etcd"`
	ControllerRuntime string `json:"controllerRuntime"`
	Signet            string `json:"signet"`
}

// VersionInfo returns the versions of this program and the control plane it uses.
func VersionInfo() Versions {
	apiserver, etcd := ControlPlaneVersions()
	return Versions{
		Go: runtime.Version(), KubeAPIServer: apiserver, Etcd: etcd,
		ControllerRuntime: DepVersion("sigs.k8s.io/controller-runtime"),
		Signet:            SignetRevision(),
	}
}

// ResultsDir returns dir, or <repo>/bench/results when dir is empty, and creates it.
func ResultsDir(dir string) (string, error) {
	if dir == "" {
		root, err := testenv.RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bench", "results")
	}
	return dir, os.MkdirAll(dir, 0o755)
}

// WriteJSON writes v as indented JSON to path.
func WriteJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// LoadAvg returns the 1, 5 and 15-minute load averages (zeros when unknown).
func LoadAvg() [3]float64 {
	var l [3]float64
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(data))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}

// ProcField returns the value of the first "prefix: value" line of a /proc file.
func ProcField(file, prefix string) string {
	data, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, prefix) {
			if _, v, ok := strings.Cut(line, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return ""
}

// FirstLine runs bin with args and returns the first line of its output ("unknown" on error).
func FirstLine(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// ControlPlaneVersions returns the version lines of the kube-apiserver and etcd in use.
func ControlPlaneVersions() (kubeAPIServer, etcd string) {
	dir, err := testenv.AssetsDir()
	if err != nil {
		return "unknown", "unknown"
	}
	return FirstLine(filepath.Join(dir, "kube-apiserver"), "--version"), FirstLine(filepath.Join(dir, "etcd"), "--version")
}

// DepVersion returns the version of a module linked into this program ("" if none).
func DepVersion(module string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == module {
				return d.Version
			}
		}
	}
	return ""
}

// SignetRevision returns the short commit of the working tree, marked when it has
// uncommitted changes ("" outside a git checkout).
func SignetRevision() string {
	root, err := testenv.RepoRoot()
	if err != nil {
		return ""
	}
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		rev += " (with uncommitted changes)"
	}
	return rev
}

// DateStamp formats t for result file names.
func DateStamp(t time.Time) string { return t.UTC().Format("2006-01-02T15-04-05Z") }

// Parallel runs f(i) for i in [0, n) on workers goroutines and returns the first error,
// or the context's error when it ended first.
func Parallel(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(ctx, i); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}
