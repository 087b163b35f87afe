package release

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// WriteLayout writes the index as an OCI image layout in dir (replacing what was there), with
// the tag as the org.opencontainers.image.ref.name annotation, as `crane push`, `skopeo copy
// oci:dir:TAG` and `oras cp --from-oci-layout` read it.
func WriteLayout(dir string, idx v1.ImageIndex, tag string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag}))
}

// Push writes the index to ref (REGISTRY/signet:TAG) with the credentials of the default
// keychain (docker login, DOCKER_CONFIG) and returns the pushed digest reference.
func Push(ctx context.Context, idx v1.ImageIndex, ref string, opts ...name.Option) (name.Digest, error) {
	tag, err := name.NewTag(ref, opts...)
	if err != nil {
		return name.Digest{}, err
	}
	if err := remote.WriteIndex(tag, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return name.Digest{}, fmt.Errorf("pushing %s: %w", tag, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	return tag.Context().Digest(d.String()), nil
}

// InstallYAML renders config/default (hack/build-installer.sh, as `make build-installer`)
// with the operator image set to image (REPOSITORY@sha256:…) into out.
func InstallYAML(ctx context.Context, root, kustomize, image, out string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "build-installer.sh"), out)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "IMG="+image, "KUSTOMIZE="+kustomize)
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("hack/build-installer.sh: %w\n%s", err, o)
	}
	return nil
}
