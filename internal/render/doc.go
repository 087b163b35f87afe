// Package render turns a TrustedRegistry and its key ring into the Kyverno policy that
// enforces it: a policies.kyverno.io/v1 ImageValidatingPolicy or a kyverno.io/v1
// ClusterPolicy. Everything here is pure and deterministic: no client, clock, environment
// or randomness; equal input gives byte-identical output.
//
// # Image patterns
//
// A TrustedRegistry lists image patterns (spec.images). An image, as written in a Pod
// ("nginx", "nginx:1.27", "ghcr.io/org/app@sha256:…"), matches a pattern when, after both
// are resolved the way the container runtime resolves references, they agree:
//
//   - The registry host is literal, compared after folding its spellings: letter case is
//     ignored, ":443" and a port's leading zeros are dropped (":80" is kept). A reference
//     without a host is on Docker Hub; "docker.io", "index.docker.io" and
//     "registry-1.docker.io" are the same host; a single-component Docker Hub name is an
//     official image: "nginx" = "docker.io/library/nginx". A first component is a host
//     when it contains '.' or ':' (or an upper-case letter) or is "localhost" and a '/'
//     follows it, as in distribution/reference.
//   - A pattern without tag and digest ("ghcr.io/org/app", "nginx") matches that repository
//     with any tag, any digest, or neither.
//   - '*' matches any characters of the repository path, including '/', never the registry
//     host (which cannot contain '*') and never the ':' or '@' of a tag or digest; the tag
//     and digest then follow as above. So "ghcr.io/yourorg/*" matches
//     "ghcr.io/yourorg/app:1" and "ghcr.io/yourorg/team/app@sha256:…", and never
//     "ghcr.io/yourorg-evil/app", "ghcr.io.evil.com/yourorg/app" or
//     "evil.io/ghcr.io/yourorg/app". A wildcard Docker Hub pattern whose path has a single
//     component ("docker.io/*", "docker.io/app-*") means both official images
//     (docker.io/library/…) and user repositories.
//   - A pattern with a tag ("nginx:1.27", "app:v1.*") matches that tag, optionally pinned by
//     a digest ("nginx:1.27@sha256:…": the tag is then informational, the runtime pulls the
//     digest, whose signature is verified). An image without tag and digest is ":latest".
//   - A pattern with a digest matches exactly that digest, with any tag or none.
//
// MatchImage implements this in Go. The policies implement it in CEL (the same
// canonicalisation and the same anchored RE2 expression), used by the
// ImageValidatingPolicy both to select the images to verify (matchImageReferences) and to
// restrict the images allowed to run, and by the ClusterPolicy's restriction rule. The
// ClusterPolicy's verifyImages.imageReferences are Kyverno wildcards over Kyverno's own
// normalised image string (Kyverno's ImageInfo.String(): "docker.io/" prepended without
// "library/", ":latest" added, the tag dropped when a digest is present, the host as
// written); they select a superset of the images MatchImage admits whose host is in lower
// case without a zero-padded port, and the ClusterPolicy denies the images of its patterns
// spelled otherwise, so nothing admitted escapes verification.
// Assumes Kyverno's defaultRegistry is docker.io (its default).
//
// # Namespaces
//
// A TrustedRegistry guards the named namespaces plus those its selector selects (a union).
// See ivpNamespaces and cpMatchFor for how each engine expresses it.
//
// # Signatures
//
// requiredSignatures counts distinct signers. A signer is a key name (all public keys the
// ring holds under that name, Active or Retiring, are alternatives: an image signed by the
// old or the new key of "ci" counts once) or a keyless identity. Names that share a public
// key are one signer. An image must be signed by at least requiredSignatures signers.
package render
