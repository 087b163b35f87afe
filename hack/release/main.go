// Command release builds Signet's release artifacts without Docker (`make release`; see
// docs/release.md):
//
//	dist/oci/          the operator image as an OCI image layout (an index, one image per platform)
//	dist/install.yaml  config/default with the image pinned by digest
//	dist/image.txt     the image reference, by tag and by digest
//
// and, with -registry (REGISTRY=… make release), pushes the image to REGISTRY/signet:TAG.
// The digest is reproducible: the same commit and Go toolchain give the same image.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/signet-operator/signet/internal/release"
)

func main() {
	var (
		version    = flag.String("version", "v0.0.0-dev", "the release version (a tag such as v0.1.0)")
		commit     = flag.String("commit", "", "the git revision stamped into the binary")
		platforms  = flag.String("platforms", "linux/amd64,linux/arm64", "comma-separated OS/ARCH list")
		repository = flag.String("repository", "ghcr.io/signet-operator/signet", "the image repository named in install.yaml when nothing is pushed")
		registry   = flag.String("registry", "", "push to REGISTRY/signet:VERSION (e.g. ghcr.io/yourorg); install.yaml then names that repository")
		out        = flag.String("out", "dist", "output directory")
		caBundle   = flag.String("ca-bundle", release.DefaultCABundle, "the CA bundle copied into the image")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "release: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *version, *commit, *platforms, *repository, *registry, *out, *caBundle); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, version, commit, platforms, repository, registry, out, caBundle string) error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	var ps []v1.Platform
	for _, p := range strings.Split(platforms, ",") {
		os, arch, ok := strings.Cut(strings.TrimSpace(p), "/")
		if !ok {
			return fmt.Errorf("platform %q: want OS/ARCH", p)
		}
		ps = append(ps, v1.Platform{OS: os, Architecture: arch})
	}
	idx, err := release.Build(ctx, release.Options{
		Root: root, Version: version, Commit: commit, Platforms: ps, CABundle: caBundle,
		Source: "https://github.com/signet-operator/signet",
	})
	if err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := release.WriteLayout(filepath.Join(out, "oci"), idx, version); err != nil {
		return err
	}
	if registry != "" {
		repository = strings.TrimSuffix(registry, "/") + "/signet"
		pushed, err := release.Push(ctx, idx, repository+":"+version)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "pushed %s\n", pushed)
	}
	image := repository + "@" + digest.String()
	kustomize := os.Getenv("KUSTOMIZE")
	if kustomize == "" {
		kustomize = filepath.Join(root, "bin", "kustomize")
	}
	if err := release.InstallYAML(ctx, root, kustomize, image, filepath.Join(out, "install.yaml")); err != nil {
		return err
	}
	ref := fmt.Sprintf("%s:%s\n%s\n", repository, version, image)
	if err := os.WriteFile(filepath.Join(out, "image.txt"), []byte(ref), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s/oci (%s), %s/install.yaml, %s/image.txt\n", out, image, out, out)
	return nil
}
