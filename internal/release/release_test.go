package release

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/signet-operator/signet/internal/testenv"
)

// TestBuild builds the real operator image for this machine's platform and checks what a
// cluster will run: an OCI index whose image runs /signet as 65532 with a CA bundle, whose
// binary is the stamped operator, reproducibly (the same digest twice), and that survives a
// round trip through an OCI layout.
func TestBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not building the operator")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the image's binary runs on linux only")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	opts := Options{Root: root, Version: "v1.2.3-test", Commit: "feedfacecafebeef0000", Platforms: []v1.Platform{p}, WorkDir: t.TempDir()}
	idx, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("invalid index: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Platform == nil || im.Manifests[0].Platform.Architecture != runtime.GOARCH {
		t.Fatalf("index manifests %+v", im.Manifests)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || strings.Join(cf.Config.Entrypoint, " ") != "/signet" || cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("config: user %q entrypoint %v platform %s/%s", cf.Config.User, cf.Config.Entrypoint, cf.OS, cf.Architecture)
	}
	if cf.Config.Labels["org.opencontainers.image.version"] != "v1.2.3-test" || cf.Config.Labels["org.opencontainers.image.revision"] != opts.Commit {
		t.Errorf("labels %v", cf.Config.Labels)
	}

	files := flatten(t, img)
	for _, want := range []string{"signet", "etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt", "tmp", "home/nonroot"} {
		if _, ok := files[want]; !ok {
			t.Errorf("the image lacks /%s", want)
		}
	}
	if !strings.Contains(string(files["etc/passwd"].data), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd: %s", files["etc/passwd"].data)
	}
	if h := files["signet"]; h.mode&0o111 == 0 {
		t.Errorf("/signet mode %o is not executable", h.mode)
	}
	if len(files) != 10 { // the 9 base entries (etc/, etc/ssl/, …) and /signet: nothing else
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		t.Errorf("the image holds %d entries: %v", len(files), names)
	}
	// The binary in the image is the operator, statically linked and stamped.
	bin := filepath.Join(t.TempDir(), "signet")
	if err := os.WriteFile(bin, files["signet"].data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "signet v1.2.3-test (commit feedfacecafe) go") {
		t.Fatalf("/signet version: %v: %s", err, out)
	}
	if out, err := exec.Command("file", bin).CombinedOutput(); err == nil && !strings.Contains(string(out), "statically linked") {
		t.Errorf("the binary is not static: %s", out)
	}

	// Reproducible: a second build (the Go build cache makes it quick) has the same digest.
	d1, _ := idx.Digest()
	opts.WorkDir = t.TempDir()
	again, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if d2, _ := again.Digest(); d1 != d2 {
		t.Errorf("two builds of the same source: %s and %s", d1, d2)
	}

	// The OCI layout holds the same index, tagged.
	dir := filepath.Join(t.TempDir(), "oci")
	if err := WriteLayout(dir, idx, "v1.2.3-test"); err != nil {
		t.Fatal(err)
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	outer, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	om, err := outer.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(om.Manifests) != 1 || om.Manifests[0].Digest != d1 || om.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "v1.2.3-test" {
		t.Fatalf("layout index %+v, want %s tagged v1.2.3-test", om.Manifests, d1)
	}
	inner, err := outer.ImageIndex(d1)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(inner); err != nil {
		t.Fatalf("the layout's index does not validate: %v", err)
	}
}

type entry struct {
	mode int64
	data []byte
}

// flatten reads the image's filesystem (every layer, in order).
func flatten(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]entry{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(h.Name, "/")] = entry{mode: h.Mode, data: data}
	}
}
