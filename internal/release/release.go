// Package release builds Signet's operator image without Docker (docs/release.md): a static
// binary (CGO_ENABLED=0, version stamped with -ldflags) on a minimal base assembled here
// from files of the build host, as an OCI image index with go-containerregistry. The result
// is reproducible: the same source, Go toolchain and CA bundle give the same digest, because
// every timestamp is fixed (SOURCE_DATE_EPOCH, else the Unix epoch).
//
// The base is scratch plus three things the operator needs and nothing else: /etc/passwd and
// /etc/group with the nonroot user 65532 (runAsNonRoot needs a numeric USER; the names help
// humans), the CA bundle (the operator contacts registries for rotation preview) and an
// empty /tmp. No shell, no package manager, nothing to patch.
package release

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Module is the import path whose internal/cli Version and Commit are stamped.
const Module = "github.com/signet-operator/signet"

// DefaultCABundle is where Debian (and Ubuntu, Alpine) keep the system's CA bundle.
const DefaultCABundle = "/etc/ssl/certs/ca-certificates.crt"

// The nonroot user of the image (the same uid as distroless' nonroot, which the Dockerfile uses).
const (
	UID = 65532
	GID = 65532
)

// Options say what to build.
type Options struct {
	Root      string        // the repository root (main package)
	Version   string        // e.g. v0.1.0
	Commit    string        // git revision
	Platforms []v1.Platform // linux/amd64, linux/arm64, …
	CABundle  string        // PEM file copied to /etc/ssl/certs/ca-certificates.crt (DefaultCABundle when empty)
	Created   time.Time     // timestamp of files and config (zero: SourceDate())
	WorkDir   string        // where binaries are built (a temporary directory when empty)
	Source    string        // org.opencontainers.image.source label
}

// SourceDate is SOURCE_DATE_EPOCH (reproducible-builds.org), else the Unix epoch.
func SourceDate() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		var sec int64
		if _, err := fmt.Sscan(s, &sec); err == nil {
			return time.Unix(sec, 0).UTC()
		}
	}
	return time.Unix(0, 0).UTC()
}

// LDFlags stamps the version and commit that `signet version` prints, and strips the binary.
func LDFlags(version, commit string) string {
	return fmt.Sprintf("-s -w -X %s/internal/cli.Version=%s -X %s/internal/cli.Commit=%s", Module, version, Module, commit)
}

// BuildBinary cross-compiles the operator for a platform: static, trimmed paths, no VCS
// stamp (the commit comes from -ldflags), so the bytes depend only on the source and the
// toolchain.
func BuildBinary(ctx context.Context, root, out string, p v1.Platform, version, commit string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", LDFlags(version, commit), "-o", out, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture, "GOARM=")
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build for %s/%s: %w\n%s", p.OS, p.Architecture, err, o)
	}
	return nil
}

// Build builds the binary for every platform and returns the image index.
func Build(ctx context.Context, o Options) (v1.ImageIndex, error) {
	if len(o.Platforms) == 0 {
		return nil, fmt.Errorf("no platform to build for")
	}
	if o.Created.IsZero() {
		o.Created = SourceDate()
	}
	if o.CABundle == "" {
		o.CABundle = DefaultCABundle
	}
	ca, err := os.ReadFile(o.CABundle)
	if err != nil {
		return nil, fmt.Errorf("reading the CA bundle for the image: %w", err)
	}
	work := o.WorkDir
	if work == "" {
		if work, err = os.MkdirTemp("", "signet-release-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(work)
	}
	base, err := BaseLayer(ca, o.Created)
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.Platforms {
		bin := filepath.Join(work, "signet-"+p.OS+"-"+p.Architecture)
		if err := BuildBinary(ctx, o.Root, bin, p, o.Version, o.Commit); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		img, err := Image(base, data, p, o)
		if err != nil {
			return nil, err
		}
		pp := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &pp}})
	}
	return idx, nil
}

// Image is the operator image for one platform: the base layer, then the binary at /signet.
func Image(base v1.Layer, binary []byte, p v1.Platform, o Options) (v1.Image, error) {
	created := o.Created
	if created.IsZero() {
		created = SourceDate()
	}
	binLayer, err := layer([]file{{name: "signet", mode: 0o555, data: binary}}, created)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "signet release: base (passwd, group, CA certificates, /tmp)"}},
		mutate.Addendum{Layer: binLayer, MediaType: types.OCILayer, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "signet release: /signet " + o.Version}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: created}
	cf.Config.User = fmt.Sprintf("%d:%d", UID, GID)
	cf.Config.Entrypoint = []string{"/signet"}
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       "signet",
		"org.opencontainers.image.description": "Keeps Kyverno image-signature policies, cosign key rotation and report summaries in sync with TrustedRegistry resources",
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Commit,
		"org.opencontainers.image.licenses":    "Apache-2.0",
	}
	if o.Source != "" {
		cf.Config.Labels["org.opencontainers.image.source"] = o.Source
	}
	return mutate.ConfigFile(img, cf)
}

// BaseLayer is the image's base: the nonroot user, the CA bundle and /tmp.
func BaseLayer(caBundle []byte, created time.Time) (v1.Layer, error) {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, GID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", GID)
	return layer([]file{
		{name: "etc/", dir: true, mode: 0o755},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/ssl/", dir: true, mode: 0o755},
		{name: "etc/ssl/certs/", dir: true, mode: 0o755},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: caBundle},
		{name: "home/", dir: true, mode: 0o755},
		{name: "home/nonroot/", dir: true, mode: 0o700, uid: UID, gid: GID},
		{name: "tmp/", dir: true, mode: 0o1777},
	}, created)
}

type file struct {
	name     string
	dir      bool
	mode     int64
	uid, gid int
	data     []byte
}

// layer writes files into an uncompressed tar with fixed timestamps and owners, in name
// order, and returns it as a gzip layer (compressed deterministically by tarball).
func layer(files []file, created time.Time) (v1.Layer, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{
			Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.gid, ModTime: created,
			Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(f.data)),
		}
		if f.dir || strings.HasSuffix(f.name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	return plainLayer{l}, nil
}

// plainLayer hides the tarball layer's own descriptor (with an empty, non-nil annotations
// map), so that the manifest in memory is the manifest as serialised and validate.Index
// holds.
type plainLayer struct{ v1.Layer }
